import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CentralMetrics } from '@sitesync/central';
import { PeripheralMetrics } from '@sitesync/peripheral';
import { REPO } from '../../support/wait.js';

interface Rule {
  alert: string;
  expr: string;
  labels: { severity: string };
  annotations: { summary: string };
}

const rules = (
  parse(readFileSync(join(REPO, 'deploy/prometheus/alerts.yml'), 'utf8')) as { groups: Array<{ rules: Rule[] }> }
).groups.flatMap((g) => g.rules);

describe('deploy/prometheus/alerts.yml', () => {
  it('names only metrics the agents export', async () => {
    const exported = new Set<string>();
    for (const registry of [new CentralMetrics().registry, new PeripheralMetrics().registry])
      for (const m of await registry.getMetricsAsJSON()) exported.add(m.name);
    const used = new Set(rules.flatMap((r) => r.expr.match(/\bsitesync_[a-z_]+/g) ?? []));
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(exported, name).toContain(name);
  });

  it('gives every alert a severity, a summary and a runbook entry in docs/operations.md', () => {
    const runbook = readFileSync(join(REPO, 'docs/operations.md'), 'utf8');
    expect(rules.length).toBeGreaterThan(5);
    for (const r of rules) {
      expect(['warning', 'critical'], r.alert).toContain(r.labels.severity);
      expect(r.annotations.summary.length, r.alert).toBeGreaterThan(10);
      expect(runbook, `docs/operations.md has no "### ${r.alert}" section`).toContain(`### ${r.alert}`);
    }
  });
});

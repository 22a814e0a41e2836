import { listedSite, type DeadLetter } from '../dlq/dead-letters';
import { formatAge } from '../status/site-status';
import { summarize, type DeadLetterSummary } from './supervision-data';

/** Dead letters of a group listed one by one on the page (the newest); the counts cover all. */
export const LETTERS_SHOWN_PER_GROUP = 50;

/** The dead letters of one site and reason, as the page shows them. */
export interface DeadLetterGroup {
  /**
   * The site they are listed under: the one their verified route names, else the one their header
   * claims (unverified: shown, never acted on); null when neither is known.
   */
  site: number | null;
  reason: string;
  count: number;
  /** `signed` or `broker`: a replay can use their route. */
  verified: number;
  /** Never replayed from the page (`syncctl dlq replay --force` with an explicit route). */
  unverified: number;
  types: string[];
  queues: string[];
  oldestAgeSeconds: number | null;
  newestAgeSeconds: number | null;
  oldest: string;
  newest: string;
  /** The newest `LETTERS_SHOWN_PER_GROUP` of them, newest first. */
  letters: DeadLetterSummary[];
}

/** Groups dead letters by listed site and reason, sites in order (unknown last), then reasons. */
export function groupDeadLetters(letters: readonly DeadLetter[]): DeadLetterGroup[] {
  const bySiteAndReason = new Map<string, { site: number | null; reason: string; letters: DeadLetter[] }>();
  for (const d of letters) {
    const site = listedSite(d) ?? null;
    const key = JSON.stringify([site, d.reason]);
    const group = bySiteAndReason.get(key) ?? { site, reason: d.reason, letters: [] };
    group.letters.push(d);
    bySiteAndReason.set(key, group);
  }
  const groups = [...bySiteAndReason.values()].map(({ site, reason, letters: ls }): DeadLetterGroup => {
    const ages = ls.map((d) => d.ageSeconds).filter((a): a is number => a !== undefined);
    const oldestAgeSeconds = ages.length ? Math.max(...ages) : null;
    const newestAgeSeconds = ages.length ? Math.min(...ages) : null;
    const newestFirst = [...ls].sort((a, b) => (a.ageSeconds ?? Infinity) - (b.ageSeconds ?? Infinity));
    const verified = ls.filter((d) => d.trust !== 'unverified').length;
    return {
      site,
      reason,
      count: ls.length,
      verified,
      unverified: ls.length - verified,
      types: [...new Set(ls.map((d) => d.type))].sort(),
      queues: [...new Set(ls.map((d) => d.queue))].sort(),
      oldestAgeSeconds,
      newestAgeSeconds,
      oldest: formatAge(oldestAgeSeconds),
      newest: formatAge(newestAgeSeconds),
      letters: newestFirst.slice(0, LETTERS_SHOWN_PER_GROUP).map(summarize),
    };
  });
  return groups.sort(
    (a, b) =>
      (a.site ?? Number.MAX_SAFE_INTEGER) - (b.site ?? Number.MAX_SAFE_INTEGER) || a.reason.localeCompare(b.reason),
  );
}

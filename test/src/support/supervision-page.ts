import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startHttpServer } from '@sitesync/protocol';
import {
  hashPassword,
  supervisionRoutes,
  type CentralAgent,
  type HttpUser,
  type SupervisedCentral,
} from '@sitesync/central';
import type { TestWorld } from './harness.js';

/** The supervision page's browser tests: Debian's Chromium, driven by playwright-core. */
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const hasChromium = existsSync(CHROMIUM);

export interface Credentials {
  username: string;
  password: string;
}

export const VIEWER: Credentials = { username: 'vera', password: 'viewer-password-1' };
export const OPERATOR: Credentials = { username: 'olga', password: 'operator-password-1' };
export const TOKEN = 'a-long-enough-test-token';
// Cheap hashes: the format and checks are the same, the test just does not wait for a real cost.
const TEST_COST = { N: 1024, r: 8, p: 1 };

export function basic(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** Serves the central's page and API on a free port until teardown; returns its base URL. */
export async function serve(
  world: TestWorld,
  central: SupervisedCentral & Pick<CentralAgent, 'metrics'>,
): Promise<string> {
  const server = await startHttpServer(
    0,
    central.metrics.registry,
    async () => ({ ok: true, detail: {} }),
    supervisionRoutes(central),
  );
  world.onTeardown(() => new Promise((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A central with the viewer and operator users and the API token (and `overrides` of its config). */
export async function startSupervisedCentral(
  world: TestWorld,
  dbUrl = world.dbUrl('sqlite', 'central'),
  overrides: Record<string, unknown> = {},
): Promise<CentralAgent> {
  const users: HttpUser[] = [
    { name: VIEWER.username, passwordHash: await hashPassword(VIEWER.password, TEST_COST), role: 'viewer' },
    { name: OPERATOR.username, passwordHash: await hashPassword(OPERATOR.password, TEST_COST), role: 'operator' },
  ];
  return world.startCentral(dbUrl, { users, apiToken: TOKEN, ...overrides });
}

/** A headless Chromium closed at teardown. */
export async function launchBrowser(world: TestWorld): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  world.onTeardown(() => browser.close());
  return browser;
}

/**
 * Opens the page as `who`; page errors and console errors are collected into `problems` (a test
 * expects none).
 */
export async function openPage(browser: Browser, base: string, who: Credentials, problems: string[]): Promise<Page> {
  const context = await browser.newContext({ httpCredentials: who, viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()} (${m.location().url})`);
  });
  await page.goto(base);
  return page;
}

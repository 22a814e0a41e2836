import { describe, expect, it } from 'vitest';
import { HEADER_ERROR, HEADER_REASON, type HashingFileInput } from '@sitesync/protocol';
import { Database, resolvePipeline } from '@sitesync/db';
import { registerSite } from '@sitesync/central';
import { type DbKind, type TestWorld, worldPerTest } from '../support/harness.js';
import { amqpUrl, mysqlUrl, postgresUrl, localDbKinds } from '../support/services.js';
import { syncctl, until } from '../support/wait.js';
import { checkCentralDatabase, verifySite } from '@sitesync/syncctl';

const broker = amqpUrl();
if (!broker) console.log('[sitesync tests] skipping exact keys: no RabbitMQ available');
const kinds: DbKind[] = localDbKinds();

const SITE = 101;
const HEADERS = 'kt_orders';
const DETAILS = 'kt_lines';
/** Keys a site keeps apart that MariaDB's and SQL Server's default collations hold as one. */
const CODES = ['abc', 'ABC', 'abc '];

const PIPELINE: HashingFileInput = {
  name: 'kt',
  baseEntity: HEADERS,
  linkEntities: [HEADERS, { entity: DETAILS, join: { code: 'code' } }],
};

/** A SQLite site whose header keys differ only by case or trailing spaces, each with its own values and lines. */
async function prepareSite(world: TestWorld): Promise<string> {
  const url = world.dbUrl('sqlite', 'site');
  const db = await Database.open(url, { role: 'site' });
  try {
    await db.query(`CREATE TABLE ${HEADERS} (code TEXT NOT NULL PRIMARY KEY, amount INTEGER, label TEXT)`);
    await db.query(
      `CREATE TABLE ${DETAILS} (code TEXT NOT NULL, line INTEGER NOT NULL, note TEXT, PRIMARY KEY (code, line))`,
    );
    for (const [i, code] of CODES.entries()) {
      await db.execute(`INSERT INTO ${HEADERS} (code, amount, label) VALUES (?, ?, ?)`, [
        code,
        i + 1,
        `label of ${code}`,
      ]);
      await db.execute(`INSERT INTO ${DETAILS} (code, line, note) VALUES (?, 1, ?)`, [code, `line of ${code}`]);
    }
  } finally {
    await db.close();
  }
  return url;
}

async function centralRows(db: Database, table: string, cols: string): Promise<string[]> {
  const rows = await db.query<Record<string, unknown>>(
    `SELECT ${cols} FROM ${db.dialect.quote(table)} WHERE id_efector = ?`,
    [SITE],
  );
  return rows.map((r) => JSON.stringify(cols.split(', ').map((c) => String(r[c])))).sort();
}

describe.skipIf(!broker).each(kinds)('keys that differ only by case or trailing spaces (central on %s)', (kind) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('stay three rows centrally with their own values; the session ends complete and verify finds no difference', async () => {
    const central = await world.startCentral(world.dbUrl(kind, 'central'));
    const cdb = central.database!;
    await world.registerSite(cdb, SITE, { header: HEADERS, detail: DETAILS, pipeline: 'kt' });
    const siteUrl = await prepareSite(world);
    const site = await world.startSite(world.siteConfig(SITE, siteUrl, { pipelines: [PIPELINE] }));

    const r = await site.runSession();
    expect(r.status, r.error).toBe('ok');
    expect(r.ack?.status).toBe('complete');
    expect(await centralRows(cdb, HEADERS, 'code, amount, label')).toEqual(
      CODES.map((c, i) => JSON.stringify([c, String(i + 1), `label of ${c}`])).sort(),
    );
    expect(await centralRows(cdb, DETAILS, 'code, line, note')).toEqual(
      CODES.map((c) => JSON.stringify([c, '1', `line of ${c}`])).sort(),
    );

    const sdb = await world.open(siteUrl, 'site');
    const [v] = await verifySite(sdb, cdb, SITE, [await resolvePipeline(sdb, PIPELINE)]);
    expect(v!.differences).toBe(0);
    expect(v!.site).toMatchObject({ headers: 3, details: 3 });

    // And nothing is left to send.
    const again = await site.runSession();
    expect(again.status).toBe('ok');
    expect(again.totals.headers).toBe(0);
  });
});

/** A legacy target table whose key column merges keys a site keeps apart, one per dialect's way of doing it. */
interface LegacyTable {
  kind: DbKind;
  /** What the table is, for the test names. */
  what: string;
  /** Statements creating it (the site column, `code`, `amount`, `label`; keyed by site and code). */
  ddl: string[];
  /** How db check and sites add describe its key column. */
  described: string;
  /** The collation the merge's refusal names. */
  collation: RegExp;
  /** Two keys of CODES that are one key there. */
  colliding: RegExp;
}

const LEGACY_TABLES: LegacyTable[] = [
  ...(mysqlUrl()
    ? [
        {
          kind: 'mysql' as const,
          what: "MariaDB's default collation",
          ddl: [
            `CREATE TABLE ${HEADERS} (id_efector INT NOT NULL, code VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL, ` +
              `amount BIGINT, label TEXT, PRIMARY KEY (id_efector, code))`,
          ],
          described: 'kt_orders.code (collation utf8mb4_general_ci: ignores case, accents, trailing spaces)',
          collation: /collation utf8mb4_general_ci/,
          colliding: /keys '(abc|ABC|abc )' and '(abc|ABC|abc )' are one key/,
        },
      ]
    : []),
  ...(postgresUrl()
    ? [
        {
          kind: 'postgres' as const,
          what: 'a PostgreSQL citext column',
          ddl: [
            `CREATE EXTENSION IF NOT EXISTS citext`,
            `CREATE TABLE ${HEADERS} (id_efector INT NOT NULL, code citext NOT NULL, amount BIGINT, label TEXT, PRIMARY KEY (id_efector, code))`,
          ],
          described: 'kt_orders.code (collation citext: ignores case)',
          collation: /collation citext/,
          colliding: /keys '(abc|ABC)' and '(abc|ABC)' are one key/,
        },
        {
          kind: 'postgres' as const,
          what: 'a PostgreSQL nondeterministic ICU collation',
          ddl: [
            `CREATE COLLATION IF NOT EXISTS kt_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`,
            `CREATE TABLE ${HEADERS} (id_efector INT NOT NULL, code TEXT COLLATE kt_ci NOT NULL, amount BIGINT, label TEXT, PRIMARY KEY (id_efector, code))`,
          ],
          described:
            'kt_orders.code (collation kt_ci (nondeterministic, und-u-ks-level2): ignores case, Unicode normalization)',
          collation: /collation kt_ci \(nondeterministic, und-u-ks-level2\)/,
          colliding: /keys '(abc|ABC)' and '(abc|ABC)' are one key/,
        },
      ]
    : []),
  {
    kind: 'sqlite',
    what: 'a SQLite NOCASE column',
    ddl: [
      `CREATE TABLE ${HEADERS} (id_efector INT NOT NULL, code TEXT COLLATE NOCASE NOT NULL, amount BIGINT, label TEXT, PRIMARY KEY (id_efector, code))`,
    ],
    described: 'kt_orders.code (collation NOCASE: ignores ASCII case)',
    collation: /collation NOCASE/,
    colliding: /keys '(abc|ABC)' and '(abc|ABC)' are one key/,
  },
];

describe.skipIf(!broker).each(LEGACY_TABLES)('a legacy target table keyed by $what', (legacy) => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  /** The operator's table, made before sitesync came. */
  async function legacyCentral(): Promise<{ url: string; db: Database }> {
    const url = world.dbUrl(legacy.kind, 'central');
    const db = await world.open(url, 'central');
    for (const sql of legacy.ddl) await db.query(sql);
    return { url, db };
  }
  it('is reported by db check and refused by sites add unless the operator accepts it', async () => {
    const { url, db } = await legacyCentral();
    const add = (...more: string[]) =>
      syncctl([
        '--db',
        url,
        'sites',
        'add',
        String(SITE),
        '--pipeline',
        'kt',
        '--header-table',
        HEADERS,
        '--no-broker',
        ...more,
      ]);

    const refused = await add();
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(legacy.described);
    expect(refused.stderr).toContain('--accept-case-insensitive-keys');
    expect(await db.query(`SELECT id_efector FROM ${db.dialect.quote('EstadoSyncGeneral')}`)).toEqual([]);

    // Registered some other way (an older syncctl, by hand): db check reports the table.
    await db.execute(
      `INSERT INTO ${db.dialect.quote('EstadoSyncGeneral')} (id_efector, pipeline, tabla_encabezado, status, header_count, detail_count, deletion_count) VALUES (?, 'kt', ?, 'new', 0, 0, 0)`,
      [SITE, HEADERS],
    );
    const findings = await checkCentralDatabase(db);
    expect(findings.map((f) => f.kind)).toEqual(['inexact-keys']);
    expect(findings[0]!.keys).toEqual([legacy.described]);
    await db.execute(`DELETE FROM ${db.dialect.quote('EstadoSyncGeneral')}`);

    const accepted = await add('--accept-case-insensitive-keys');
    expect(accepted.code, accepted.stderr).toBe(0);
    // Accepted and recorded: db check no longer holds it against an upgrade.
    expect(await checkCentralDatabase(db)).toEqual([]);
  });

  it('refuses a batch whose keys are one key there as a whole, naming the keys: nothing applied, nothing acked', async () => {
    const { url, db } = await legacyCentral();
    await registerSite(db, {
      siteId: SITE,
      pipeline: 'kt',
      headerTable: HEADERS,
      detailTable: DETAILS,
      brokerUser: 'guest',
      acceptInexactKeys: true,
    });
    await db.execute(`INSERT INTO ${HEADERS} (id_efector, code, amount, label) VALUES (?, 'abc', 99, 'before')`, [
      SITE,
    ]);
    const central = await world.startCentral(url);
    const siteUrl = await prepareSite(world);
    const site = await world.startSite(world.siteConfig(SITE, siteUrl, { pipelines: [PIPELINE] }));

    const r = await site.runSession();
    expect(r.status).toBe('incomplete');
    expect(await centralRows(db, HEADERS, 'code, amount, label')).toEqual([JSON.stringify(['abc', '99', 'before'])]);
    const rejected = await db.query<{ reason: string }>(`SELECT reason FROM sync_rejected WHERE id_efector = ?`, [
      SITE,
    ]);
    expect(rejected.map((x) => x.reason)).toEqual(['bad-content']);
    expect(await db.query(`SELECT header_key FROM sync_ledger WHERE id_efector = ?`, [SITE])).toEqual([]);

    // The dead letter says which keys and which column.
    const ch = await world.rawChannel();
    const dead = await until(
      'the dead letter',
      async () => (await ch.get(world.topology.siteRejectsQueue(SITE), { noAck: true })) || undefined,
    );
    const h = (dead.properties.headers ?? {}) as Record<string, unknown>;
    expect(h[HEADER_REASON]).toBe('bad-content');
    expect(String(h[HEADER_ERROR])).toMatch(legacy.colliding);
    expect(String(h[HEADER_ERROR])).toMatch(legacy.collation);

    // Nothing was acked: the site still has all three to send.
    const again = await site.runSession();
    expect(again.totals.headers).toBe(3);
    void central;
  });
});

describe.skipIf(!broker || !mysqlUrl())('a MariaDB ledger from before the exact-key migration', () => {
  let world: TestWorld;
  worldPerTest(broker, (w) => (world = w));

  it('a ledger still comparing keys case-insensitively refuses the batch instead of crashing or acking it', async () => {
    const url = world.dbUrl('mysql', 'central');
    const central = await world.startCentral(url);
    const db = central.database!;
    await world.registerSite(db, SITE, { header: HEADERS, detail: DETAILS, pipeline: 'kt' });
    // As before the migration: the server's default collation on the ledger's key.
    await db.query(
      `ALTER TABLE sync_ledger MODIFY header_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL`,
    );
    const siteUrl = world.dbUrl('sqlite', 'site');
    const sdb = await world.open(siteUrl, 'site');
    await sdb.query(`CREATE TABLE ${HEADERS} (code TEXT NOT NULL PRIMARY KEY, amount INTEGER, label TEXT)`);
    await sdb.query(
      `CREATE TABLE ${DETAILS} (code TEXT NOT NULL, line INTEGER NOT NULL, note TEXT, PRIMARY KEY (code, line))`,
    );
    await sdb.execute(`INSERT INTO ${HEADERS} (code, amount, label) VALUES ('abc', 1, 'first')`);
    const site = await world.startSite(world.siteConfig(SITE, siteUrl, { pipelines: [PIPELINE] }));
    expect((await site.runSession()).status).toBe('ok');

    // A later batch carrying only 'ABC': the ledger finds the row of 'abc' by it.
    await sdb.execute(`INSERT INTO ${HEADERS} (code, amount, label) VALUES ('ABC', 2, 'second')`);
    const r = await site.runSession();
    expect(r.status).toBe('incomplete');
    const rejected = await db.query<{ reason: string }>(`SELECT reason FROM sync_rejected WHERE id_efector = ?`, [
      SITE,
    ]);
    expect(rejected.map((x) => x.reason)).toEqual(['bad-content']);
    expect(await centralRows(db, HEADERS, 'code, amount, label')).toEqual([JSON.stringify(['abc', '1', 'first'])]);
    const ch = await world.rawChannel();
    const dead = await until(
      'the dead letter',
      async () => (await ch.get(world.topology.siteRejectsQueue(SITE), { noAck: true })) || undefined,
    );
    const error = String((dead.properties.headers as Record<string, unknown>)[HEADER_ERROR]);
    expect(error).toContain('sync_ledger.header_key');
    expect(error).not.toMatch(/reading 'op'/);
    // Not acked: 'ABC' is still to send.
    expect((await site.runSession()).totals.headers).toBe(1);
  });
});

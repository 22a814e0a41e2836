import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { columns, dialectOf } from './column-types';

/** Procedure versions and interventions, on every system (central and sites). */
async function createCommon(qr: QueryRunner): Promise<void> {
  const c = columns(dialectOf(qr));
  await qr.createTable(
    new Table({
      name: 'procedure_version',
      columns: [
        { ...c.text('code', 64), isPrimary: true },
        { ...c.int('version'), isPrimary: true },
        c.text('name', 200),
        c.text('definition'),
        c.ts('created_at', false),
      ],
    }),
  );
  await qr.createTable(
    new Table({
      name: 'intervention',
      columns: [
        c.id(),
        c.text('guid', 36),
        c.text('procedure_code', 64),
        c.int('procedure_version'),
        c.bool('finished', false),
        c.text('payload'),
        /** active | pending (received, source not yet deleted) | outbound (in transit, locked) */
        { ...c.text('state', 20), default: "'active'" },
        c.text('transfer_id', 36, true),
        /** Set by the site's application (or `sync-peripheral transfer`) to move it to the central. */
        c.bool('transfer_requested', false),
        c.ts('updated_at', false),
      ],
      uniques: [{ name: 'UQ_intervention_guid', columnNames: ['guid'] }],
    }),
  );
}

/** Central: which procedure versions each site holds, and the transfer log operators supervise. */
export class CentralInterventions1732600000000 implements MigrationInterface {
  name = 'CentralInterventions1732600000000';

  async up(qr: QueryRunner): Promise<void> {
    const c = columns(dialectOf(qr));
    await createCommon(qr);
    await qr.createTable(
      new Table({
        name: 'site_procedure',
        columns: [
          { ...c.int('id_efector'), isPrimary: true },
          { ...c.text('code', 64), isPrimary: true },
          { ...c.int('version'), isPrimary: true },
          /** queued (to publish) | sent | held (in the site's catalogue) */
          c.text('state', 20),
          c.ts('updated_at', false),
        ],
      }),
    );
    await qr.createTable(
      new Table({
        name: 'intervention_transfer',
        columns: [
          { ...c.text('transfer_id', 36), isPrimary: true },
          c.text('guid', 36),
          /** null = the central */
          c.int('from_site', true),
          c.int('to_site', true),
          c.int('from_local_id', true),
          c.int('to_local_id', true),
          c.text('procedure_code', 64),
          c.int('procedure_version'),
          c.text('state', 30),
          c.text('reason', 2000, true),
          c.text('requested_by', 128, true),
          c.ts('created_at', false),
          c.ts('updated_at', false),
        ],
      }),
    );
    await qr.createIndex(
      'intervention_transfer',
      new TableIndex({ name: 'IX_intervention_transfer_state', columnNames: ['state'] }),
    );
    await qr.createIndex(
      'intervention_transfer',
      new TableIndex({ name: 'IX_intervention_transfer_guid', columnNames: ['guid'] }),
    );
  }

  async down(qr: QueryRunner): Promise<void> {
    for (const t of ['intervention_transfer', 'site_procedure', 'intervention', 'procedure_version']) {
      await qr.dropTable(t, true);
    }
  }
}

/** Site: what it sent or received, so a repeated order is answered the same way. */
export class SiteInterventions1732600000000 implements MigrationInterface {
  name = 'SiteInterventions1732600000000';

  async up(qr: QueryRunner): Promise<void> {
    const c = columns(dialectOf(qr));
    await createCommon(qr);
    await qr.createTable(
      new Table({
        name: 'intervention_transfer',
        columns: [
          { ...c.text('transfer_id', 36), isPrimary: true },
          c.text('guid', 36),
          /** out (to the central) | in (from the central) */
          c.text('direction', 4),
          /** sent | source-deleted | conflict | rejected | stored | refused */
          c.text('state', 20),
          c.int('local_id', true),
          /** Hash of the intervention as sent: it may only be deleted if unchanged. */
          c.text('sent_hash', 64, true),
          c.text('reason', 2000, true),
          c.ts('created_at', false),
          c.ts('updated_at', false),
        ],
      }),
    );
  }

  async down(qr: QueryRunner): Promise<void> {
    for (const t of ['intervention_transfer', 'intervention', 'procedure_version']) await qr.dropTable(t, true);
  }
}

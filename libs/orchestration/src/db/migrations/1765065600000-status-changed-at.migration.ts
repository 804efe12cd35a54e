import type { MigrationInterface, QueryRunner } from 'typeorm';

const TABLES = ['sweeps', 'runs', 'evaluations'] as const;

/**
 * When each sweep, run and evaluation last changed status (`status_changed_at`), so that a status
 * event replayed from the database (the first event of an SSE stream) carries the time of the
 * change, not of the connection. A trigger sets it on every update that changes the status, so no
 * repository query can forget it; existing rows get their best known time.
 */
export class StatusChangedAt1765065600000 implements MigrationInterface {
  name = 'StatusChangedAt1765065600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION ice_status_changed_at() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.status IS DISTINCT FROM OLD.status THEN
          NEW.status_changed_at := now();
        END IF;
        RETURN NEW;
      END $$`);
    for (const t of TABLES) {
      await q.query(`ALTER TABLE ${t} ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now()`);
      await q.query(`
        CREATE TRIGGER ${t}_status_changed_at BEFORE UPDATE OF status ON ${t}
        FOR EACH ROW EXECUTE FUNCTION ice_status_changed_at()`);
    }
    await q.query(`UPDATE sweeps SET status_changed_at = coalesce(finished_at, updated_at)`);
    for (const t of ['runs', 'evaluations'])
      await q.query(
        `UPDATE ${t} SET status_changed_at = CASE WHEN status = 'queued' THEN created_at WHEN status = 'running' THEN coalesce(started_at, updated_at)
           ELSE coalesce(finished_at, updated_at) END`,
      );
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of TABLES) {
      await q.query(`DROP TRIGGER ${t}_status_changed_at ON ${t}`);
      await q.query(`ALTER TABLE ${t} DROP COLUMN status_changed_at`);
    }
    await q.query(`DROP FUNCTION ice_status_changed_at()`);
  }
}

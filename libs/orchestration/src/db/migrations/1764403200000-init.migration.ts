import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Sweeps, runs (one per sweep × cell × seed), metric series and evaluations. */
export class Init1764403200000 implements MigrationInterface {
  name = 'Init1764403200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE sweeps (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        name text,
        spec jsonb NOT NULL,
        axes jsonb NOT NULL,
        status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued','running','succeeded','partial','failed','cancelled')),
        run_count integer NOT NULL,
        finished_at timestamptz
      )`);
    await q.query(`CREATE INDEX sweeps_created_at_idx ON sweeps (created_at DESC)`);
    await q.query(`
      CREATE TABLE runs (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        sweep_id uuid REFERENCES sweeps(id) ON DELETE CASCADE,
        cell_key text NOT NULL DEFAULT '',
        cell jsonb NOT NULL DEFAULT '{}',
        seed integer NOT NULL,
        config jsonb NOT NULL,
        status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued','running','succeeded','failed','cancelled')),
        attempts integer NOT NULL DEFAULT 0,
        progress jsonb,
        metrics jsonb,
        checkpoint text,
        last_checkpoint text,
        resumed_from_step integer,
        error text,
        worker_id text,
        cancel_requested boolean NOT NULL DEFAULT false,
        started_at timestamptz,
        finished_at timestamptz,
        duration_ms integer
      )`);
    await q.query(`CREATE UNIQUE INDEX runs_sweep_cell_seed_key ON runs (sweep_id, cell_key, seed)`);
    await q.query(`CREATE INDEX runs_status_created_idx ON runs (status, created_at DESC)`);
    await q.query(`
      CREATE TABLE metric_points (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        run_id uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name text NOT NULL,
        step integer NOT NULL,
        value double precision NOT NULL
      )`);
    await q.query(`CREATE UNIQUE INDEX metric_points_run_name_step_key ON metric_points (run_id, name, step)`);
    await q.query(`
      CREATE TABLE evaluations (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        spec jsonb NOT NULL,
        run_id uuid REFERENCES runs(id) ON DELETE SET NULL,
        status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued','running','succeeded','failed','cancelled')),
        result jsonb,
        error text,
        started_at timestamptz,
        finished_at timestamptz
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE evaluations`);
    await q.query(`DROP TABLE metric_points`);
    await q.query(`DROP TABLE runs`);
    await q.query(`DROP TABLE sweeps`);
  }
}

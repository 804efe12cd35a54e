import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Evaluations of the paper's map protocols: one evaluation_results row per method (unique per
 * evaluation × method, so a redelivered job writes one set), and on the evaluation its protocol
 * (for list filters), progress, cancel flag, attempts, worker and duration.
 */
export class EvaluationResults1764576000000 implements MigrationInterface {
  name = 'EvaluationResults1764576000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE evaluations
        ADD COLUMN protocol text NOT NULL DEFAULT 'accuracy',
        ADD COLUMN progress jsonb,
        ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
        ADD COLUMN attempts integer NOT NULL DEFAULT 0,
        ADD COLUMN worker_id text,
        ADD COLUMN duration_ms integer`);
    await q.query(`UPDATE evaluations SET protocol = coalesce(spec->>'protocol', 'accuracy')`);
    await q.query(`CREATE INDEX evaluations_created_at_idx ON evaluations (created_at DESC)`);
    await q.query(`CREATE INDEX evaluations_run_id_idx ON evaluations (run_id)`);
    await q.query(`
      CREATE TABLE evaluation_results (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        evaluation_id uuid NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
        position integer NOT NULL,
        method text NOT NULL,
        label text NOT NULL,
        metrics jsonb NOT NULL,
        images integer NOT NULL,
        images_per_second double precision,
        seconds double precision NOT NULL
      )`);
    await q.query(`CREATE UNIQUE INDEX evaluation_results_evaluation_method_key ON evaluation_results (evaluation_id, method)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE evaluation_results`);
    await q.query(`DROP INDEX evaluations_run_id_idx`);
    await q.query(`DROP INDEX evaluations_created_at_idx`);
    await q.query(`
      ALTER TABLE evaluations
        DROP COLUMN duration_ms, DROP COLUMN worker_id, DROP COLUMN attempts,
        DROP COLUMN cancel_requested, DROP COLUMN progress, DROP COLUMN protocol`);
  }
}

/**
 * The one door to PostgreSQL (an external server, or the embedded PGlite server): the connection,
 * the migrations and the statement helpers the per-entity repositories use. State transitions are
 * single guarded UPDATEs (see the repositories), so that a job delivered twice, or a cancel racing
 * a finish, cannot write two outcomes.
 */
import {
  DataSource,
  QueryResult,
  type DataSourceOptions,
  type EntityManager,
  type EntityTarget,
  type ObjectLiteral,
  type Repository,
} from 'typeorm';
import type { OnApplicationShutdown } from '@nestjs/common';
import { embeddedDatabaseUrl, type OrchestrationConfig } from '../config/orchestration.config';
import { EmbeddedPostgres } from './embedded-postgres';
import { ENTITIES } from './entities';
import { MIGRATIONS } from './migrations';

// Any constant works; it only has to be the same in every process that migrates this database.
const MIGRATION_LOCK = 0x1ce0_0001;

export class OrchestrationDatabase implements OnApplicationShutdown {
  private constructor(
    readonly dataSource: DataSource,
    private readonly embedded: EmbeddedPostgres | null,
  ) {}

  static dataSourceOptions(url: string, poolSize: number): DataSourceOptions {
    return {
      type: 'postgres',
      url,
      entities: ENTITIES,
      migrations: MIGRATIONS,
      migrationsTableName: 'typeorm_migrations',
      synchronize: false,
      poolSize,
      extra: { max: poolSize, connectionTimeoutMillis: 10_000 },
    };
  }

  /**
   * Connects and brings the schema up to date. The API migrates (under an advisory lock, so that
   * several API replicas can start together); a worker waits until the schema is current. With
   * no DATABASE_URL the API hosts the embedded server and the workers connect to it.
   */
  static async open(config: OrchestrationConfig, opts: { migrate?: boolean } = {}): Promise<OrchestrationDatabase> {
    let embedded: EmbeddedPostgres | null = null;
    let url = config.databaseUrl;
    if (!url) {
      if (config.role === 'api') embedded = await EmbeddedPostgres.start(config.embeddedDb);
      url = embeddedDatabaseUrl(config);
    }
    // The embedded server executes one statement at a time; one pooled connection per process is all it can use.
    const ds = new DataSource(OrchestrationDatabase.dataSourceOptions(url, embedded || !config.databaseUrl ? 1 : 10));
    try {
      await ds.initialize();
      const db = new OrchestrationDatabase(ds, embedded);
      if (opts.migrate ?? config.role === 'api') await db.migrate();
      else await db.waitForSchema();
      return db;
    } catch (e) {
      if (ds.isInitialized) await ds.destroy();
      await embedded?.stop();
      throw e;
    }
  }

  async migrate(): Promise<void> {
    const pooled = (this.dataSource.options as { poolSize?: number }).poolSize ?? 1;
    if (pooled < 2) {
      await this.dataSource.runMigrations({ transaction: 'all' });
      return;
    }
    const qr = this.dataSource.createQueryRunner();
    await qr.connect();
    try {
      await qr.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      await this.dataSource.runMigrations({ transaction: 'all' });
    } finally {
      await qr.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
      await qr.release();
    }
  }

  private async waitForSchema(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (await this.dataSource.showMigrations()) {
      if (Date.now() > deadline) throw new Error('the database schema is not migrated; start the API (it migrates) or run the migrations');
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    await this.embedded?.stop();
  }

  async ping(): Promise<void> {
    await this.dataSource.query('SELECT 1');
  }

  repository<E extends ObjectLiteral>(entity: EntityTarget<E>): Repository<E> {
    return this.dataSource.getRepository(entity);
  }

  transaction<T>(work: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.dataSource.transaction(work);
  }

  /** Rows of a statement, whatever its kind (TypeORM shapes UPDATE results differently from SELECT). */
  async rows<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const qr = this.dataSource.createQueryRunner();
    try {
      const r = (await qr.query(text, params, true)) as QueryResult<T[]>;
      return (r.records ?? []) as T[];
    } finally {
      await qr.release();
    }
  }

  /** Runs `work` in one transaction on one connection; `rows` inside it are that transaction's statements. */
  async inTransaction<T>(work: (rows: <R>(text: string, params?: unknown[]) => Promise<R[]>) => Promise<T>): Promise<T> {
    const qr = this.dataSource.createQueryRunner();
    await qr.connect();
    await qr.startTransaction();
    try {
      const out = await work(async <R>(text: string, params: unknown[] = []) => {
        const r = (await qr.query(text, params, true)) as QueryResult<R[]>;
        return (r.records ?? []) as R[];
      });
      await qr.commitTransaction();
      return out;
    } catch (e) {
      await qr.rollbackTransaction().catch(() => undefined);
      throw e;
    } finally {
      await qr.release();
    }
  }
}

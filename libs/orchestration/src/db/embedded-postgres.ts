import * as fs from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/**
 * The default database when no DATABASE_URL is configured: PGlite (PostgreSQL compiled to
 * WebAssembly) on a local data directory, served over the PostgreSQL wire protocol so that the
 * API, the workers and TypeORM talk to it exactly as to a real server. PGlite runs one query at a
 * time; the socket server multiplexes connections and pins a transaction to its connection.
 */
export class EmbeddedPostgres {
  private constructor(
    private readonly db: PGlite,
    private readonly server: PGLiteSocketServer,
    readonly url: string,
  ) {}

  static async start(opts: { dataDir: string; host: string; port: number; maxConnections: number }): Promise<EmbeddedPostgres> {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    const db = await PGlite.create(opts.dataDir);
    const server = new PGLiteSocketServer({ db, host: opts.host, port: opts.port, maxConnections: opts.maxConnections });
    try {
      await server.start();
    } catch (e) {
      await db.close();
      throw e;
    }
    return new EmbeddedPostgres(db, server, `postgresql://postgres@${opts.host}:${opts.port}/postgres`);
  }

  async stop(): Promise<void> {
    await this.server.stop();
    await this.db.close();
  }
}

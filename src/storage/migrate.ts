import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renameLegacyObjects } from './datasets.js';
import type { Db, Queryable } from './db.js';
import { migratePreDatasetJobs } from './pre-dataset-jobs.js';
import { LOCK_KEYS } from '../core/lock-keys.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

export interface MigrationContext {
  /** The schema of the datasets' tables (DATASET_SCHEMA): a migration that moves rows into datasets needs it. */
  datasetSchema?: string;
}

/** A numbered step: a script in migrations/, or code for a data migration SQL alone cannot write. */
export type Migration = { version: number; name: string } & (
  { sql: string } | { run: (tx: Queryable, context: MigrationContext) => Promise<void> }
);

// Data migrations: they use the naming rule of datasets/ and the datasets schema of the configuration.
const CODE_MIGRATIONS: Migration[] = [
  { version: 14, name: '014_pre_dataset_jobs', run: (tx, context) => migratePreDatasetJobs(tx, context.datasetSchema) },
];

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const scripts: Migration[] = readdirSync(dir)
    .filter((file) => /^\d{3}_[a-z0-9_]+\.sql$/.test(file))
    .map((file) => ({
      version: Number.parseInt(file.slice(0, 3), 10),
      name: file.replace(/\.sql$/, ''),
      sql: readFileSync(dir + file, 'utf8'),
    }));
  return [...scripts, ...CODE_MIGRATIONS].sort((a, b) => a.version - b.version);
}

/**
 * Applies pending migrations in order, in one transaction, under an advisory lock: processes
 * starting together wait for each other, and the later ones find nothing left to do.
 * Returns the names of the migrations this call applied.
 */
export async function migrate(db: Db, migrations = loadMigrations(), context: MigrationContext = {}): Promise<string[]> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEYS.migrations]);
    await tx.query(`CREATE TABLE IF NOT EXISTS intake_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    )`);
    const { rows } = await tx.query<{ version: number }>('SELECT version FROM intake_migrations');
    const applied = new Set(rows.map((row) => row.version));
    const done: string[] = [];
    for (const migration of migrations) {
      if (applied.has(migration.version)) continue;
      if ('sql' in migration) await tx.exec(migration.sql);
      else await migration.run(tx, context);
      await tx.query('INSERT INTO intake_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      done.push(migration.name);
    }
    return done;
  });
}

/**
 * The schema of the datasets, made once, and the objects of datasets an older Intake made
 * given today's names (under the migrations' lock: processes start together).
 */
export async function ensureSchema(db: Db, schema: string): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEYS.migrations]);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await renameLegacyObjects(tx, schema);
  });
}

import type { Queryable } from './db.js';

/** A connection as the API shows it: never its secret. */
export interface ConnectionRow {
  id: string;
  type: 'jira';
  name: string;
  base_url: string;
  email: string;
  created_at: Date;
}

const COLUMNS = 'id, type, name, base_url, email, created_at';

export async function insertConnection(db: Queryable, row: Omit<ConnectionRow, 'created_at'> & { secret: string }): Promise<ConnectionRow> {
  const { rows } = await db.query<ConnectionRow>(
    `INSERT INTO intake_connections (id, type, name, base_url, email, secret) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
    [row.id, row.type, row.name, row.base_url, row.email, row.secret],
  );
  return rows[0]!;
}

export async function listConnections(db: Queryable): Promise<ConnectionRow[]> {
  return (await db.query<ConnectionRow>(`SELECT ${COLUMNS} FROM intake_connections ORDER BY created_at, id LIMIT 1000`)).rows;
}

export async function findConnection(db: Queryable, id: string): Promise<(ConnectionRow & { secret: string }) | undefined> {
  return (await db.query<ConnectionRow & { secret: string }>(`SELECT ${COLUMNS}, secret FROM intake_connections WHERE id = $1`, [id])).rows[0];
}

export async function deleteConnection(db: Queryable, id: string): Promise<boolean> {
  return ((await db.query('DELETE FROM intake_connections WHERE id = $1', [id])).rowCount ?? 0) > 0;
}

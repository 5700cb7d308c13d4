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
  return (await db.query<ConnectionRow & { secret: string }>(`SELECT ${COLUMNS}, secret FROM intake_connections WHERE id = $1`, [id]))
    .rows[0];
}

export async function deleteConnection(db: Queryable, id: string): Promise<boolean> {
  return ((await db.query('DELETE FROM intake_connections WHERE id = $1', [id])).rowCount ?? 0) > 0;
}

/** A Jira sync's high-water mark (epoch ms of the newest `updated` its last completed run saw). */
export async function findJiraMark(db: Queryable, connectionId: string, jql: string, dataset: string): Promise<number | undefined> {
  const { rows } = await db.query<{ mark_ms: string }>(
    'SELECT mark_ms::text FROM intake_jira_marks WHERE connection_id = $1 AND jql = $2 AND dataset = $3',
    [connectionId, jql, dataset],
  );
  return rows[0] ? Number(rows[0].mark_ms) : undefined;
}

export async function saveJiraMark(db: Queryable, connectionId: string, jql: string, dataset: string, markMs: number): Promise<void> {
  await db.query(
    `INSERT INTO intake_jira_marks (connection_id, jql, dataset, mark_ms) VALUES ($1, $2, $3, $4)
     ON CONFLICT (connection_id, jql, dataset) DO UPDATE SET mark_ms = GREATEST(intake_jira_marks.mark_ms, EXCLUDED.mark_ms), updated_at = now()`,
    [connectionId, jql, dataset, markMs],
  );
}

/** The ids Intake makes (jobs, schedules, connections) are UUIDs in their text form. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Whether `value` is a UUID (any case). Anything else names nothing: checked before a query,
 * it answers "not found" instead of reaching PostgreSQL's uuid cast, which would fail.
 */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

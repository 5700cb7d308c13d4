/**
 * The keys of Intake's advisory locks, in one place so that no two guards share a key (a
 * shared key makes unrelated work wait, and a try-lock skip, for the other). A key must be the
 * same in every process of the database, of every version running at once: a process whose
 * key differs is not excluded by the others.
 *
 * scheduleCount and scheduleBudget were moved off keys they shared with retention and
 * datasetCount. During a rolling upgrade from a version that used the shared keys, the old
 * and the new processes do not exclude each other for these two: MAX_SCHEDULES or the
 * per-minute budget of scheduled jobs may be passed by one per process of the old version.
 */
export const LOCK_KEYS = {
  /** Migrations, the dataset schema and the SQL role's grants: processes starting together wait for each other. */
  migrations: 7_277_461,
  /** The reconciler: whoever holds it is the one active reconciler (a try-lock). */
  reconciler: 7_277_462,
  /** The retention sweep: one process at a time sweeps (a try-lock). */
  retention: 7_277_463,
  /** A publish that makes a new dataset: the count against MAX_DATASETS and the new table as one. */
  datasetCount: 7_277_464,
  /** A new schedule: the count against MAX_SCHEDULES and the insert as one. */
  scheduleCount: 7_277_465,
  /** A schedule's beat: the count of scheduled jobs in the last minute and the job it makes as one. */
  scheduleBudget: 7_277_466,
} as const;

/**
 * The first key of a dataset's two-key lock, the second being hashtext(name): one publish (or
 * delete) at a time per dataset. PostgreSQL keeps two-key locks apart from one-key locks, so
 * this cannot collide with LOCK_KEYS even where the numbers are equal.
 */
export const DATASET_LOCK_CLASS = 7_277_462;

import { ConfigError, loadConfig } from '../config.js';
import { DataDirLockedError } from '../storage/data-dir-lock.js';
import { CLIENT_COMMANDS, ClientError } from './client.js';
import { DATASET_COMMANDS } from './datasets.js';

class UsageError extends Error {}

const USAGE = `Usage: intake <command>

Run Intake:
  serve     run the HTTP API and the web console, with workers unless WORKER_CONCURRENCY=0 (npm start)
  worker    run ingestion workers only (scale-out mode: needs DATABASE_URL and REDIS_URL)
  migrate   apply pending database migrations and exit
  doctor    check this machine and the configuration (Node, DATA_DIR, PostgreSQL, Redis) and say what it found
  --version print Intake's version
  Configuration comes from the environment; see .env.example.

Talk to a running Intake at INTAKE_URL (default http://localhost:8000; INTAKE_TOKEN if it has API_TOKENS):
  upload FILE [--dataset NAME] [--mode append|replace|merge] [--key COLUMNS] [--schema JSON] [--widen]
              [--delimiter D] [--quote Q] [--escape double|backslash] [--header-row N] [--skip-lines N]
              [--ragged error|pad|ignore_extra] [--no-header] [--encoding E] [--locale L] [--date-order DMY|MDY]
              [--null-values V] [--sheet S] [--format F] [--callback-url URL] [--max-errors N] [--wait] [--json]
            submit a .csv, .tsv, .json, .ndjson, .jsonl or .xlsx file (or one gzipped, zstd-compressed or
            zipped) to load into dataset NAME (by default named after the file); prints the job id. --mode append (the default) adds the rows,
            replace swaps the dataset's rows for them, merge updates the rows whose --key columns
            (comma-separated) match and adds the others. --schema '{"qty":"bigint"}' declares
            column types (bigint numeric boolean date timestamptz text jsonb); --widen lets the
            job widen a column that a value does not fit. A CSV's dialect is detected unless given:
            --delimiter (, ; | tab space or comma_space), --quote (" or '), --escape, --header-row (the
            header's line), --skip-lines (lines above the table), --ragged (rows of more or fewer fields
            than the header); --no-header: no header row; --encoding windows-1252 (or
            another: see the README) for a file that is not UTF-8. --sheet: a workbook's sheet (name or
            position; the first by default). --format csv|json|ndjson|xlsx when the name does not say. With --wait, shows progress until the
            job ends and exits 0 only if it completed (1 if it failed)
  preview FILE [--schema JSON] [--delimiter D] [… the reading options of upload] [--json]
            how Intake would read the file, nothing stored: its encoding and dialect, a table of its
            columns (type, and the evidence for it) and its first rows as they would load, row errors and
            warnings (the start of the file only: a load types each column over the whole file)
  import URL [--dataset NAME] [--mode M] [--key COLUMNS] [--format F] [… as upload] [--wait] [--json]
            import https://… or s3://bucket/key: Intake's worker reads it (the API never holds it);
            the same options as upload. A URL that resolves to a loopback, private or link-local
            address is refused unless the server has IMPORT_ALLOW_PRIVATE=true.
            import jira --connection ID --jql "project = ABC" [--dataset NAME]: pull Jira issues
            through a saved connection, merged on their id; later runs pull only what changed
  status JOB_ID [--json]
            one job: status, dataset, counters, rows loaded, timestamps, error
  jobs [--status S] [--dataset NAME] [--limit N] [--cursor C] [--json]
            jobs, newest first
  cancel JOB_ID [--json]
            stop a queued or running job (its dataset stays as it was)
  retry JOB_ID [--max-errors N] [--encoding E] [--wait] [--json]
            run a failed or canceled job again, from the start, under the same id (--encoding:
            read its file in that encoding, as a UTF-8 error may suggest)
  delete JOB_ID
            delete a job with its row errors and stored upload (the rows it loaded stay)
  datasets [NAME] [--json]
            the datasets: rows, columns, when last loaded. With NAME, one dataset and its
            columns (name, type, name in the input). --json: one JSON object per dataset
  export NAME [--format csv|ndjson]
            every row of a dataset, streamed to stdout as CSV (the default) or NDJSON
            (intake export orders > orders.csv)
  sql "SELECT …" [--json]
            one read-only query of the datasets, each a table by its name (SELECT … FROM orders);
            prints the rows as a table, or with --json one JSON object per row

Exit codes: 0 done, 1 the job failed or was canceled (--wait), 2 a usage, connection or request error.`;

async function main(argv: string[]): Promise<void> {
  const [command] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return;
  }
  if (command === '--version' || command === '-V' || command === 'version') {
    const { version } = await import('./doctor.js');
    console.log(`intake ${version()} (Node.js ${process.versions.node})`);
    return;
  }
  if (command === 'doctor') {
    const { doctor } = await import('./doctor.js');
    process.exitCode = await doctor(process.env, process.stdout);
    return;
  }
  const client = [CLIENT_COMMANDS, DATASET_COMMANDS].find((commands) => Object.hasOwn(commands, command))?.[command];
  if (client) {
    // The reader of the output has gone (`intake export orders | head`): there is nothing left to do.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') console.error(`intake: cannot write the output: ${err.message}`);
      process.exit(err.code === 'EPIPE' ? 0 : 2);
    });
    process.exitCode = await client(argv.slice(1), { env: process.env, stdout: process.stdout, stderr: process.stderr });
    return;
  }
  const config = loadConfig();
  switch (command) {
    case 'serve': {
      const { serve } = await import('../server.js');
      await serve(config);
      return;
    }
    case 'worker': {
      if (!config.redisUrl)
        throw new UsageError('the worker command needs REDIS_URL (and DATABASE_URL): in embedded mode `intake serve` runs the workers');
      if (config.workerConcurrency === 0) throw new UsageError('WORKER_CONCURRENCY=0 leaves a worker nothing to do');
      const { work } = await import('../server.js');
      await work(config);
      return;
    }
    case 'migrate': {
      const { createLogger, openStorage } = await import('../server.js');
      const { loadMigrations, migrate } = await import('../storage/migrate.js');
      const log = createLogger(config);
      const db = await openStorage(config, log);
      try {
        const applied = await migrate(db, loadMigrations(), { datasetSchema: config.datasetSchema });
        console.log(applied.length > 0 ? `applied: ${applied.join(', ')}` : 'the database is up to date');
      } finally {
        await db.close();
      }
      return;
    }
    default:
      throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  // One clear line for what the user can fix; a stack trace only for what they cannot.
  if (err instanceof ConfigError) console.error(`intake: invalid configuration: ${err.message}`);
  else if (err instanceof DataDirLockedError || err instanceof UsageError || err instanceof ClientError)
    console.error(`intake: ${err.message}`);
  else if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    const { address, port } = err as { address?: string; port?: number };
    console.error(
      `intake: port ${port ?? process.env.PORT} on ${address ?? 'this machine'} is already in use (is Intake already running?): set PORT to another port`,
    );
  } else console.error(`intake: ${process.argv[2] === 'serve' || process.argv[2] === 'worker' ? 'failed to start' : 'failed'}:`, err);
  process.exit(2);
});

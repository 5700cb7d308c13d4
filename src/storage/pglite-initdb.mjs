// Makes a new embedded data directory (PGlite's initdb) in a process of its own, which then
// exits: initdb runs a second PostgreSQL instance and copies its memory, and the serving process
// kept about 100 MB of that, for good, when it did this itself. Plain JavaScript: it is run as is.
import { PGlite } from '@electric-sql/pglite';

const [dir, options] = process.argv.slice(2);
const pg = await PGlite.create(dir, JSON.parse(options));
await pg.close();

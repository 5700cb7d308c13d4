/**
 * The V8 flags of an Intake process, wherever it is started: `npm start` and `npm run worker`
 * (package.json), the installed command (bin/intake.js's first line), and the tests and
 * benches that start processes. Semi-spaces of 32 MB instead of V8's 16: under load a request
 * is often still waiting on Redis or the database at a scavenge, so its objects were promoted
 * and the old generation needed a mark-compact every half second (README, Performance, has
 * the measurement). The young generation only grows to this under load: an idle process
 * holds no more.
 */
export const NODE_FLAGS = ['--max-semi-space-size=32'];

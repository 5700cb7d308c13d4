#!/usr/bin/env -S node --max-semi-space-size=32
// (The flag: see src/cli/node-flags.ts.)
// The installed command: the compiled CLI in dist/ (npm run build makes it; npm pack ships it).
try {
  await import('../dist/cli/main.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/cli/main.js')) throw err;
  console.error('intake: not built yet: run `npm run build` in the Intake checkout first');
  process.exit(2);
}

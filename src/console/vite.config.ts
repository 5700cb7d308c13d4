import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The console is built ahead (npm start runs this) into dist/console, which Intake serves.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../../dist/console', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
  },
  // Production JSX always, also when built from the test run (where NODE_ENV is "test").
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact', development: false } },
});

#!/usr/bin/env node
// The installed command: runs the TypeScript sources through tsx's loader.
import { register } from 'node:module';
register('tsx/esm', import.meta.url);
await import('../src/cli.ts');

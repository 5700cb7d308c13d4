#!/usr/bin/env -S node --max-semi-space-size=32
// (The flag: see src/cli/node-flags.ts.)
// The installed command: runs the TypeScript sources through tsx's loader.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');

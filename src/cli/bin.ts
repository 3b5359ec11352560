#!/usr/bin/env -S node --max-semi-space-size=4
/** Entry point of the `smartproc` command: V8 flags first (see node-flags.ts), then the CLI. */
import v8 from 'node:v8';
import { NODE_FLAGS } from './node-flags.js';

const given = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
for (const flag of NODE_FLAGS) {
  if (!given.includes(flag.split('=')[0])) v8.setFlagsFromString(flag);
}
await import('./main.js');

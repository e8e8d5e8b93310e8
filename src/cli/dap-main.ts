#!/usr/bin/env node
// The stand-alone debug adapter over stdio (`node dist/dap.js`): what `avic dap` runs, as its own
// entry point for clients that launch an adapter executable with no arguments.

import { dapCommand } from './dap-command';

dapCommand(process.argv.slice(2), (s) => process.stderr.write(s.endsWith('\n') ? s : s + '\n'));

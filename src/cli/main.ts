#!/usr/bin/env node
// The `avic` command line: entry point and sub-command dispatch. Exit codes follow
// contracts/run-json.md: 0 success, 1 bad input, 3 an internal failure of the tool.

import { asmCommand, ASM_USAGE } from './asm-command';
import { dapCommand, DAP_USAGE } from './dap-command';
import { UsageError } from './args';
import { runCommand, RUN_USAGE } from './run-command';

const USAGE = `usage:
  ${ASM_USAGE}
      assemble a guest program (NASM syntax) to a flat binary; --listing prints a NASM-style listing
  ${RUN_USAGE}
      run a guest program on the emulated machine: its console output and a summary, or --json
  ${DAP_USAGE}
      the debug adapter (Debug Adapter Protocol) over stdio, or over TCP on 127.0.0.1:N`;

export function main(argv: readonly string[]): number {
  const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : s + '\n');
  const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : s + '\n');
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'asm':
        return asmCommand(rest, out, err);
      case 'run':
        return runCommand(rest, out, err);
      case 'dap':
        dapCommand(rest, err);
        return -1;
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        out(USAGE);
        return command === undefined ? 1 : 0;
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`avic: ${e.message}\n${USAGE}`);
      return 1;
    }
    err(`avic: internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    return 3;
  }
}

if (require.main === module) {
  const code = main(process.argv.slice(2));
  if (code >= 0) process.exitCode = code; // -1: a server that lives on (avic dap)
}

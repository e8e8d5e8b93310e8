// `avic dap [--port N]`: the debug adapter for any DAP client, over stdio (the default) or over
// TCP on 127.0.0.1 only (one session per connection), for nvim-dap, Emacs dap-mode, Theia and
// the tests' DebugClient.

import { createServer } from 'node:net';
import { AvicDebugSession } from '../debug/session';
import type { RuntimeHost } from '../debug/runtime';
import { parseArgs, UsageError } from './args';
import { bundledIncludeDir, nodeFileReader } from './files';

export const DAP_USAGE = 'avic dap [--port N]';

function host(): RuntimeHost {
  return { reader: nodeFileReader, includeDir: bundledIncludeDir(), defer: (f) => setImmediate(f) };
}

/** Starts the adapter; the process lives as long as its streams or its server. */
export function dapCommand(argv: readonly string[], err: (s: string) => void): void {
  const args = parseArgs(argv, { '--port': { value: true } });
  if (args.positionals.length > 0) throw new UsageError(`unexpected '${args.positionals[0]}': ${DAP_USAGE}`);
  const portText = args.flags.get('--port')?.[0];
  if (portText === undefined) {
    const session = new AvicDebugSession(host());
    session.start(process.stdin, process.stdout);
    return;
  }
  if (!/^\d+$/.test(portText) || Number(portText) > 65535) throw new UsageError(`--port ${portText}: expected a port number 0..65535`);
  const server = createServer((socket) => {
    const session = new AvicDebugSession(host());
    session.setRunAsServer(true);
    session.start(socket, socket);
  });
  server.listen(Number(portText), '127.0.0.1', () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : portText;
    err(`avic dap: listening on 127.0.0.1:${port}`);
  });
}

// Finding the host's commands the oracles and the benchmark peers need (nasm, Bochs, QEMU).

import * as fs from 'node:fs';
import * as path from 'node:path';

/** The path of an executable `cmd` (a name looked up on PATH, or a path), or undefined. */
export function which(cmd: string): string | undefined {
  if (cmd.includes('/')) return fs.existsSync(cmd) ? cmd : undefined;
  for (const d of (process.env.PATH || '').split(path.delimiter)) {
    if (!d) continue;
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

// Node file access for the CLI and the Node extension host: the assembler's FileReader over fs,
// and where the bundled include folder is.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FileReader } from '../asm/preprocessor';

export const nodeFileReader: FileReader = {
  readFile(path: string): string | undefined {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
};

/** The bundled include folder: next to dist/ in a build or a .vsix, at the repo root from sources. */
export function bundledIncludeDir(): string {
  for (const up of [['..'], ['..', '..'], ['..', '..', '..']]) {
    const dir = join(__dirname, ...up, 'include');
    if (existsSync(join(dir, 'avic.inc'))) return dir;
  }
  return join(__dirname, '..', 'include');
}

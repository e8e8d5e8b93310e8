// Shared helpers for the assembler tests: assemble a string with the bundled include folder.

import { readFileSync } from 'node:fs';
import { assemble, type AssembleResult } from '../../src/asm/assembler';
import { formatDiagnostic } from '../../src/asm/diagnostics';
import { INCLUDE_DIR } from './nasm';

export const nodeReader = {
  readFile(path: string): string | undefined {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
};

export function asm(text: string, opts: { file?: string; requireStart?: boolean; files?: Record<string, string> } = {}): AssembleResult {
  const files = opts.files ?? {};
  return assemble({
    file: opts.file ?? 'test.vasm',
    text,
    reader: { readFile: (p) => files[p] ?? nodeReader.readFile(p) },
    includeDirs: [INCLUDE_DIR],
    requireStart: opts.requireStart ?? false,
  });
}

export function errorsOf(r: AssembleResult): string[] {
  return r.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic);
}

export function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

// nasm, the oracle for the assembler's bytes: runs `nasm -f bin` on a source and reports the
// image, the lines it rejected and the lines it warned about. Under CI a missing nasm fails the
// tests that need it (so a broken install step shows); elsewhere they are skipped with a reason.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const INCLUDE_DIR = join(__dirname, '..', '..', 'include');

export interface NasmResult {
  readonly ok: boolean;
  readonly image: Uint8Array;
  readonly errorLines: Map<number, string>;
  readonly warningLines: Map<number, string>;
  readonly stderr: string;
}

let available: { ok: boolean; reason: string } | undefined;

export function nasmAvailable(): { ok: boolean; reason: string } {
  if (!available) {
    const r = spawnSync('nasm', ['-v'], { encoding: 'utf8' });
    available = r.status === 0 ? { ok: true, reason: r.stdout.trim() } : { ok: false, reason: 'nasm is not installed (apt-get install -y nasm)' };
  }
  return available;
}

/** Skips the calling suite when nasm is missing, but fails under CI. */
export function requireNasm(ctx: Mocha.Context): void {
  const a = nasmAvailable();
  if (a.ok) return;
  if (process.env.CI === 'true') throw new Error(`nasm is required under CI: ${a.reason}`);
  console.log(`      nasm oracle unavailable: ${a.reason}; skipping`);
  ctx.skip();
}

/** Assembles `source` (already containing its `org`) with `nasm -f bin`. */
export function runNasm(source: string, extraIncludeDirs: readonly string[] = []): NasmResult {
  const dir = mkdtempSync(join(tmpdir(), 'avic-nasm-'));
  try {
    const src = join(dir, 'in.asm');
    const out = join(dir, 'out.bin');
    writeFileSync(src, source);
    const includes = [...extraIncludeDirs, INCLUDE_DIR].flatMap((d) => ['-I', d.endsWith('/') ? d : d + '/']);
    const r = spawnSync('nasm', ['-f', 'bin', ...includes, '-o', out, src], { encoding: 'utf8' });
    const errorLines = new Map<number, string>();
    const warningLines = new Map<number, string>();
    for (const line of r.stderr.split('\n')) {
      const m = /^[^:]*in\.asm:(\d+): (error|warning): (.*)$/.exec(line);
      if (m) (m[2] === 'error' ? errorLines : warningLines).set(Number(m[1]), m[3]);
    }
    let image = new Uint8Array(0);
    if (r.status === 0) image = new Uint8Array(readFileSync(out));
    return { ok: r.status === 0, image, errorLines, warningLines, stderr: r.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// `npm run bench [-- --json]`: performance figures, measured in one run on this machine (the
// machines are small and noisy: compare ratios, never absolute times across runs).
//   asm_lines_per_s      assembling the generated nasm corpus (thousands of lines), steady state
//   asm_cli_cold_ms      `node dist/cli.js asm examples/hello.vasm`, whole process, median of 5
//   nasm_cli_cold_ms     the same example through `nasm -f bin` (the reference), median of 5
// Later issues add keys (guest_mips, ...); keys are never renamed.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assemble } from '../src/asm/assembler';
import { corpusSource, FIRST_LINE, generateCorpus } from '../test/asm/corpus';

const ROOT = join(__dirname, '..');
const json = process.argv.includes('--json');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timeProcess(cmd: string, args: string[]): number | null {
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { cwd: ROOT });
    if (r.status !== 0) return null;
    runs.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return median(runs);
}

const reasons: Record<string, string> = {};
const reader = { readFile: () => undefined };
// the generated corpus, without the lines it contains on purpose that do not assemble
const all = generateCorpus();
const rejected = new Set(assemble({ file: 'warmup.vasm', text: corpusSource(all), reader }).diagnostics
  .filter((d) => d.severity === 'error').map((d) => (d.line - FIRST_LINE) / 2));
const lines = all.filter((_, i) => !rejected.has(i));
const source = corpusSource(lines);
const times: number[] = [];
for (let i = 0; i < 3; i++) {
  const t = process.hrtime.bigint();
  const r = assemble({ file: 'bench.vasm', text: source, reader, requireStart: false });
  times.push(Number(process.hrtime.bigint() - t) / 1e9);
  if (!r.ok) throw new Error('the corpus did not assemble');
}
const asmLinesPerS = Math.round((2 * lines.length) / median(times)); // each corpus line comes with an `align`

const tmp = mkdtempSync(join(tmpdir(), 'avic-bench-'));
const example = join(ROOT, 'examples', 'hello.vasm');
const cli = timeProcess(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'asm', example, '-o', join(tmp, 'a.bin')]);
if (cli === null) reasons.asm_cli_cold_ms = 'dist/cli.js failed: run npm run build';
writeFileSync(join(tmp, 'hello.asm'), `org 0x100000\n${readFileSync(example, 'utf8')}`);
const nasm = timeProcess('nasm', ['-f', 'bin', '-I', join(ROOT, 'include') + '/', '-I', join(ROOT, 'examples') + '/', '-o', join(tmp, 'n.bin'), join(tmp, 'hello.asm')]);
if (nasm === null) reasons.nasm_cli_cold_ms = 'nasm is not installed';

const result = { asm_lines_per_s: asmLinesPerS, asm_cli_cold_ms: cli && Math.round(cli), nasm_cli_cold_ms: nasm && Math.round(nasm), reasons };
if (json) console.log(JSON.stringify(result));
else {
  console.log(`assembler:  ${asmLinesPerS.toLocaleString('en')} lines/s (generated corpus, ${lines.length} instructions)`);
  console.log(`avic asm:   ${result.asm_cli_cold_ms ?? 'n/a'} ms per run of examples/hello.vasm (whole process)`);
  console.log(`nasm:       ${result.nasm_cli_cold_ms ?? 'n/a'} ms per run of the same source` +
    (cli && nasm ? ` (avic asm takes ${(cli / nasm).toFixed(1)}x as long)` : ''));
  for (const [k, v] of Object.entries(reasons)) console.log(`${k}: ${v}`);
}

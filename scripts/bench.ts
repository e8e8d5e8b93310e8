// The benchmarks (run with `npm run bench [-- --json] [-- --no-peers]`): guest execution speed and
// its peers on the same loop image, measured in one run on this machine, and the assembler.
// The machine is small and noisy: compare the ratios of one run; each figure is the best of its
// runs (the least disturbed). Keys are only ever added, never renamed:
//   guest_mips                   one vCPU, the loop of scripts/peers (add, xor, dec, jnz), no breakpoints
//   guest_mips_1000_breakpoints  the same with 1,000 armed breakpoints that never hit
//   guest_mips_64_vcpus          64 vCPUs each running the loop, aggregate
//   bochs_mips, qemu_tcg_mips, kvm_mips   the peers on the same loop (scripts/peers); null + reasons
//   asm_lines_per_s, asm_cli_cold_ms, nasm_cli_cold_ms   the assembler and its reference
//   ipi_pingpong_us(_avic_off), kvm_ipi_pingpong_us   an x2APIC IPI round trip, ours and real KVM's (scripts/peers/pingpong.ts)
//   dap_*                        the debug adapter over stdio (scripts/bench-dap.ts)

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assemble } from '../src/asm/assembler';
import { DEFAULT_OPTIONS, Machine } from '../src/machine/machine';
import { corpusSource, FIRST_LINE, generateCorpus } from '../test/asm/corpus';
import { measureDap } from './bench-dap';
import { expectedChecksum, INSTRUCTIONS_PER_ITERATION, loopImage, machineInfo, measurePeers } from './peers/peers';
import { measurePingPong } from './peers/pingpong';

const ROOT = join(__dirname, '..');
const json = process.argv.includes('--json');
const withPeers = !process.argv.includes('--no-peers');
const reasons: Record<string, string> = {};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// ---- guest execution ------------------------------------------------------------------------------

interface GuestFigure {
  readonly mips: number;
  readonly seconds: number;
  readonly instructions: number;
}

/** Runs the loop guest on `vcpus` vCPUs; checks every vCPU's checksum line; best of `repeats`. */
function measureGuest(iterations: number, vcpus: number, breakpoints: number, repeats = 3): GuestFigure {
  const guest = loopImage(iterations);
  const expected = expectedChecksum(iterations);
  let best: GuestFigure | undefined;
  for (let k = 0; k < repeats; k++) {
    const m = new Machine({ ...DEFAULT_OPTIONS, vcpus, maxSteps: Number.MAX_SAFE_INTEGER }, guest.image);
    if (breakpoints > 0) {
      // armed on addresses the guest never executes, past the end of its code
      const base = 0x100000 + guest.image.length + 0x1000;
      m.setBreakpoints(Array.from({ length: breakpoints }, (_, i) => base + 3 * i));
    }
    const t = process.hrtime.bigint();
    const stop = m.run();
    const seconds = Number(process.hrtime.bigint() - t) / 1e9;
    if (stop.kind !== 'end' || stop.status !== 'done') throw new Error(`the loop guest did not finish: ${JSON.stringify(stop)}`);
    // every vCPU's checksums (R8 = RAX, R9 = RBX after the loop; the printed lines of many vCPUs interleave)
    for (const cpu of m.cpus) {
      if (cpu.reg64(8) !== expected.rax || cpu.reg64(9) !== expected.rbx) throw new Error(`vCPU ${cpu.index}: wrong checksum ${cpu.reg64(8).toString(16)} ${cpu.reg64(9).toString(16)}`);
    }
    const figure = { mips: m.instructions / seconds / 1e6, seconds, instructions: m.instructions };
    if (!best || figure.mips > best.mips) best = figure;
  }
  return best!;
}

/** An iteration count that makes one run take about `seconds` at the rate a short run shows. */
function calibrate(vcpus: number, seconds: number): number {
  measureGuest(2_000_000, vcpus, 0, 1); // warm up the JIT first
  const probe = measureGuest(2_000_000, vcpus, 0, 1);
  const perSecond = probe.mips * 1e6 / INSTRUCTIONS_PER_ITERATION / vcpus;
  return Math.max(100_000, Math.round(perSecond * seconds));
}

const iterations = calibrate(1, 1.5);
const single = measureGuest(iterations, 1, 0);
const withBreakpoints = measureGuest(iterations, 1, 1000);
const many = measureGuest(Math.max(50_000, Math.round(iterations / 64)), 64, 0);

// ---- the assembler --------------------------------------------------------------------------------

const reader = { readFile: () => undefined };
const all = generateCorpus();
const rejected = new Set(assemble({ file: 'warmup.vasm', text: corpusSource(all), reader }).diagnostics
  .filter((d) => d.severity === 'error').map((d) => (d.line - FIRST_LINE) / 2));
const lines = all.filter((_, i) => !rejected.has(i));
const source = corpusSource(lines);
const asmTimes: number[] = [];
for (let i = 0; i < 3; i++) {
  const t = process.hrtime.bigint();
  assemble({ file: 'bench.vasm', text: source, reader, requireStart: false });
  asmTimes.push(Number(process.hrtime.bigint() - t) / 1e9);
}
const asmLinesPerS = Math.round((2 * lines.length) / median(asmTimes)); // each corpus line comes with an `align`

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
const tmp = mkdtempSync(join(tmpdir(), 'avic-bench-'));
const example = join(ROOT, 'examples', 'hello.vasm');
const cli = timeProcess(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'asm', example, '-o', join(tmp, 'a.bin')]);
if (cli === null) reasons.asm_cli_cold_ms = 'dist/cli.js failed: run npm run build';
writeFileSync(join(tmp, 'hello.asm'), `org 0x100000\n${readFileSync(example, 'utf8')}`);
const nasm = timeProcess('nasm', ['-f', 'bin', '-I', join(ROOT, 'include') + '/', '-o', join(tmp, 'n.bin'), join(tmp, 'hello.asm')]);
if (nasm === null) reasons.nasm_cli_cold_ms = 'nasm is not installed';

// ---- peers ------------------------------------------------------------------------------------------

let peers: ReturnType<typeof measurePeers> | undefined;
if (withPeers) peers = measurePeers();
else for (const k of ['bochs_mips', 'qemu_tcg_mips', 'kvm_mips']) reasons[k] = 'not measured (--no-peers)';
Object.assign(reasons, peers?.reasons ?? {});

const pingPong = measurePingPong(withPeers);
Object.assign(reasons, pingPong.reasons);

void (async () => {
const dap = await measureDap(ROOT);
const round = (x: number | null | undefined) => (x === null || x === undefined ? null : Math.round(x * 10) / 10);
const result = {
  guest_mips: round(single.mips),
  guest_mips_1000_breakpoints: round(withBreakpoints.mips),
  guest_mips_64_vcpus: round(many.mips),
  bochs_mips: round(peers?.bochs_mips),
  qemu_tcg_mips: round(peers?.qemu_tcg_mips),
  kvm_mips: round(peers?.kvm_mips),
  asm_lines_per_s: asmLinesPerS,
  asm_cli_cold_ms: cli && Math.round(cli),
  nasm_cli_cold_ms: nasm && Math.round(nasm),
  ipi_pingpong_us: pingPong.ipi_pingpong_us,
  ipi_pingpong_us_avic_off: pingPong.ipi_pingpong_us_avic_off,
  kvm_ipi_pingpong_us: pingPong.kvm_ipi_pingpong_us,
  ...dap,
  reasons,
  machine: machineInfo(),
};

if (json) console.log(JSON.stringify(result));
else {
  const ratio = (a: number | null, b: number | null) => (a !== null && b !== null ? `${(a / b).toFixed(2)}x` : 'n/a');
  const row = (k: string, v: number | null, note = '') => console.log(`${k.padEnd(30)} ${String(v ?? 'n/a').padStart(10)}  ${note}`);
  console.log(`machine: ${result.machine.cpu}, ${result.machine.cpus} CPUs, Node ${process.version}`);
  row('guest_mips', result.guest_mips, `loop ${iterations} iterations, ${single.seconds.toFixed(2)} s`);
  row('guest_mips_1000_breakpoints', result.guest_mips_1000_breakpoints, `${ratio(result.guest_mips_1000_breakpoints, result.guest_mips)} of guest_mips (target >= 0.90x)`);
  row('guest_mips_64_vcpus', result.guest_mips_64_vcpus, `${ratio(result.guest_mips_64_vcpus, result.guest_mips)} of guest_mips`);
  row('bochs_mips', result.bochs_mips, `guest_mips / bochs_mips = ${ratio(result.guest_mips, result.bochs_mips)} (target >= 1.5x)`);
  row('qemu_tcg_mips', result.qemu_tcg_mips, `guest_mips / qemu_tcg_mips = ${ratio(result.guest_mips, result.qemu_tcg_mips)} (a JIT: the mark to approach)`);
  row('kvm_mips', result.kvm_mips, `guest_mips / kvm_mips = ${ratio(result.guest_mips, result.kvm_mips)} (native, CPL3)`);
  row('asm_lines_per_s', result.asm_lines_per_s);
  row('asm_cli_cold_ms', result.asm_cli_cold_ms, `nasm: ${result.nasm_cli_cold_ms ?? 'n/a'} ms`);
  row('ipi_pingpong_us', result.ipi_pingpong_us, `x2APIC IPI round trip between two vCPUs, AVIC + x2AVIC (AVIC off: ${result.ipi_pingpong_us_avic_off} us)`);
  row('kvm_ipi_pingpong_us', result.kvm_ipi_pingpong_us, `real KVM: ours takes ${ratio(result.ipi_pingpong_us, result.kvm_ipi_pingpong_us)} its time (target < 1x)`);
  row('dap_launch_to_stop_ms', result.dap_launch_to_stop_ms, 'launch to the first stop over stdio, median of 5 (target < 300 ms)');
  row('dap_step_p50_ms_1_vcpu', result.dap_step_p50_ms_1_vcpu, `p99 ${result.dap_step_p99_ms_1_vcpu} ms (instruction step round trip)`);
  row('dap_step_p50_ms_64_vcpus', result.dap_step_p50_ms_64_vcpus, `p99 ${result.dap_step_p99_ms_64_vcpus} ms (target p99 < 10 ms)`);
  row('dap_continue_mips', result.dap_continue_mips, `${ratio(result.dap_continue_mips, result.plain_run_mips_same_program)} of the plain run of the same program (${result.plain_run_mips_same_program} M/s): a continue to a breakpoint 10^8 instructions away`);
  for (const [k, v] of Object.entries(reasons)) console.log(`${k}: ${v}`);
}
})();

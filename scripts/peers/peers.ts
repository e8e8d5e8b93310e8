// peers.ts - speed of peer x86-64 executors on the benchmark's guest loop, measured in the same
// run as our interpreter: Bochs 2.7 (test/oracle/bochs harness), QEMU TCG (`qemu-system-x86_64
// -accel tcg` with our own ROM, qemu-rom.asm) and the host's /dev/kvm (test/oracle/kvm harness,
// loop at CPL3, where this host's kvm-pvm runs guest code natively). Every run prints a checksum
// of RAX/RBX to port 0xE9 that is checked against the value computed here, so a figure always
// comes from a loop that really ran. Missing peers give `mips: null` and a reason, never a throw.
// Method and measured figures: README.md (same folder). Node built-ins only, plus the harnesses.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoPath, repoRoot } from '../../test/oracle/repo';
import { which } from '../../test/oracle/commands';
import { assemble } from '../../src/asm/assembler';
import { bochsAvailable, runOnBochs } from '../../test/oracle/bochs/bochs';
import { kvmAvailable, runOnKvm } from '../../test/oracle/kvm/kvm';

// ---------------------------------------------------------------------------------------------
// The guest

/** The benchmark loop, the same for every peer and for our interpreter: 4 instructions per iteration. */
export const LOOP_BODY = `        mov     rcx, ITERATIONS
.loop:  add     rax, rcx
        xor     rbx, rax
        dec     rcx
        jnz     .loop
`;
export const INSTRUCTIONS_PER_ITERATION = 4;
export const LOAD_ADDRESS = 0x100000;
/** AL at the done site (the '\n' of the checksum line); QEMU's isa-debug-exit then exits with 2*AL+1. */
export const DONE_AL = 10;
export const QEMU_DONE_EXIT = (DONE_AL << 1) | 1;

function checkIterations(iterations: number): void {
  if (!Number.isSafeInteger(iterations) || iterations < 1) {
    throw new RangeError(`iterations must be an integer in 1..2^53-1, got ${iterations}`);
  }
}

/** LOOP_BODY with ITERATIONS replaced. */
export function loopBody(iterations: number): string {
  checkIterations(iterations);
  return LOOP_BODY.replace('ITERATIONS', String(iterations));
}

/**
 * After the loop: RAX and RBX as 16 lower-case hex digits each, a space between, '\n' after,
 * on port 0xE9 (about 300 instructions, no stack, runs at CPL3 with IOPL=3), then the done site.
 */
const CHECKSUM_AND_DONE = `        mov     r8, rax
        mov     r9, rbx
        mov     rsi, r8
        mov     edx, 16
.hex1:  rol     rsi, 4
        mov     eax, esi
        and     eax, 15
        cmp     eax, 10
        jb      .dig1
        add     eax, 'a' - '0' - 10
.dig1:  add     eax, '0'
        out     0xe9, al
        dec     edx
        jnz     .hex1
        mov     al, ' '
        out     0xe9, al
        mov     rsi, r9
        mov     edx, 16
.hex2:  rol     rsi, 4
        mov     eax, esi
        and     eax, 15
        cmp     eax, 10
        jb      .dig2
        add     eax, 'a' - '0' - 10
.dig2:  add     eax, '0'
        out     0xe9, al
        dec     edx
        jnz     .hex2
        mov     al, ${DONE_AL}
        out     0xe9, al
done:   out     0xf4, al
`;

/** The contract guest (org 0x100000, `_start` at offset 0): the loop, the checksum, `out 0xf4, al`. */
export function loopSource(iterations: number): string {
  return `; benchmark loop guest (scripts/peers/peers.ts): ${iterations} iterations
        org     0x${LOAD_ADDRESS.toString(16)}
        bits    64
_start:
${loopBody(iterations)}${CHECKSUM_AND_DONE}`;
}

/**
 * The KVM variant: the same loop and checksum at CPL3. At CPL0 (emulated by kvm-pvm, so kept
 * short) it sets U/S in PML4[0], PDPT[0] and PD[0][0] (the 2 MiB page holding this image),
 * flushes the TLB, installs its own GDT with DPL3 code/data and `iretq`s to ring 3 with
 * RFLAGS.IOPL = 3 so the `out`s work there. RAX is zeroed again (it held CR3), RBX is still 0.
 */
export function kvmUserLoopSource(iterations: number): string {
  return `; benchmark loop guest at CPL3 for kvm-pvm (scripts/peers/peers.ts): ${iterations} iterations
        org     0x${LOAD_ADDRESS.toString(16)}
        bits    64
_start:
        or      qword [0x2000], 4       ; PML4[0].U
        or      qword [0x3000], 4       ; PDPT[0].U
        or      qword [0x4000], 4       ; PD[0][0].U: 0..2 MiB, this image
        mov     rax, cr3
        mov     cr3, rax
        lgdt    [user_gdtr]
        push    0x1b                    ; SS: user data, RPL 3
        push    0x1ff000                ; RSP (unused at CPL3)
        push    0x3002                  ; RFLAGS: IOPL = 3, IF = 0
        push    0x23                    ; CS: user 64-bit code, RPL 3
        push    user
        iretq
user:
        xor     eax, eax
${loopBody(iterations)}${CHECKSUM_AND_DONE}
        align   8
user_gdt:
        dq      0
        dq      0x00af9a000000ffff      ; 0x08 64-bit code, DPL 0 (the contract's)
        dq      0x00cf92000000ffff      ; 0x10 data, DPL 0
        dq      0x00cff2000000ffff      ; 0x18 data, DPL 3
        dq      0x00affa000000ffff      ; 0x20 64-bit code, DPL 3
user_gdtr:
        dw      5 * 8 - 1
        dq      user_gdt
`;
}

export interface GuestImage {
  image: Uint8Array;
  /** address of the `out 0xf4, al` */
  doneSites: number[];
  /** which assembler built it: ours (src/asm) or nasm as a fallback when ours reports errors */
  assembler?: 'avic' | 'nasm';
}

const REPO_ROOT = repoRoot();
const BUILD_DIR = path.join(REPO_ROOT, '.build', 'peers');
const QEMU_ROM_SRC = repoPath('scripts', 'peers', 'qemu-rom.asm');

function withTempDir<T>(prefix: string, f: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  try {
    return f(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Assembles a 64-bit flat guest with our assembler; with nasm if ours reports errors. Throws if neither works. */
function assembleGuest(file: string, text: string): GuestImage {
  const r = assemble({ file, text, reader: { readFile: () => undefined } });
  const done = r.symbols.find((s) => s.name === 'done');
  if (r.ok && done) return { image: r.image, doneSites: [Number(done.value)], assembler: 'avic' };
  const ours = r.diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.line}: ${d.message}`).join('; ') || 'no `done` label';
  if (!which('nasm')) throw new Error(`our assembler failed on ${file} (${ours}) and nasm is not installed`);
  return withTempDir('avic-peers-nasm-', (dir) => {
    const src = path.join(dir, 'g.asm');
    fs.writeFileSync(src, text);
    const n = spawnSync('nasm', ['-f', 'bin', '-l', path.join(dir, 'g.lst'), '-o', path.join(dir, 'g.bin'), src], { encoding: 'utf8' });
    if (n.error || n.status !== 0) throw new Error(`our assembler failed on ${file} (${ours}); nasm too: ${n.error?.message ?? n.stderr}`);
    const lst = fs.readFileSync(path.join(dir, 'g.lst'), 'latin1');
    const m = /^\s*\d+\s+([0-9A-F]{8})\s+E6F4\s+done:/m.exec(lst);
    if (!m) throw new Error(`nasm listing of ${file} has no 'done: out 0xf4, al' line`);
    return { image: new Uint8Array(fs.readFileSync(path.join(dir, 'g.bin'))), doneSites: [LOAD_ADDRESS + parseInt(m[1], 16)], assembler: 'nasm' };
  });
}

/** The contract guest running the loop `iterations` times, then the checksum line and `out 0xf4, al`. */
export function loopImage(iterations: number): GuestImage {
  return assembleGuest(`loop-${iterations}.vasm`, loopSource(iterations));
}

/** The CPL3 variant for the KVM peer (kvmUserLoopSource). */
export function kvmUserLoopImage(iterations: number): GuestImage {
  return assembleGuest(`kvm-user-loop-${iterations}.vasm`, kvmUserLoopSource(iterations));
}

// ---------------------------------------------------------------------------------------------
// The checksum

// RBX after the loop has no closed form; a tiny WebAssembly function computes it at about
// 0.6 ns per iteration (3e9 iterations in ~2 s; plain JS needs ~6 ns). Hand-assembled module:
// (func (export "f") (param $n i64) (result i64) (local $a i64) (local $b i64)
//   block  (br_if 0 (i64.eqz n))  loop  a += n; b ^= a; n -= 1; (br_if 0 (n != 0))  end end  b)
const WASM_BODY = [
  0x01, 0x02, 0x7e, // locals: 2 x i64
  0x02, 0x40, 0x20, 0x00, 0x50, 0x0d, 0x00, // block; n == 0 -> out
  0x03, 0x40, // loop
  0x20, 0x01, 0x20, 0x00, 0x7c, 0x21, 0x01, // a = a + n
  0x20, 0x02, 0x20, 0x01, 0x85, 0x21, 0x02, // b = b ^ a
  0x20, 0x00, 0x42, 0x01, 0x7d, 0x21, 0x00, // n = n - 1
  0x20, 0x00, 0x50, 0x45, 0x0d, 0x00, // n != 0 -> loop
  0x0b, 0x0b, 0x20, 0x02, 0x0b, // end, end, b
];
const WASM_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x06, 0x01, 0x60, 0x01, 0x7e, 0x01, 0x7e, // type: (i64) -> i64
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, // export "f"
  0x0a, WASM_BODY.length + 2, 0x01, WASM_BODY.length, ...WASM_BODY,
]);
let wasmXor: ((n: bigint) => bigint) | undefined;
/** The global WebAssembly object (the project's `lib: ES2022` has no WebAssembly types). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}
const wasmApi = (): WasmApi => (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** RAX, RBX after the loop (both start at 0) and the console line the guest prints. */
export function expectedChecksum(iterations: number): { rax: bigint; rbx: bigint; console: string } {
  checkIterations(iterations);
  const n = BigInt(iterations);
  const rax = BigInt.asUintN(64, (n * (n + 1n)) / 2n);
  wasmXor ??= new (wasmApi().Instance)(new (wasmApi().Module)(WASM_MODULE)).exports.f as (n: bigint) => bigint;
  const rbx = BigInt.asUintN(64, wasmXor(n));
  const hex = (v: bigint) => v.toString(16).padStart(16, '0');
  return { rax, rbx, console: `${hex(rax)} ${hex(rbx)}\n` };
}

// ---------------------------------------------------------------------------------------------
// One run on one peer

export type PeerName = 'bochs' | 'qemu_tcg' | 'kvm';

export interface PeerRun {
  /** 'ok' = the guest reached the done site and printed the expected checksum */
  status: 'ok' | 'failed';
  iterations: number;
  /**
   * The time the figures use. Bochs and QEMU: wall time from spawning the emulator to its exit.
   * KVM: the harness's `elapsed_ms` (from releasing the vCPU to its done exit; whole ms).
   */
  seconds: number;
  /** wall time of the whole process (for KVM also VM set-up; equal to `seconds` otherwise) */
  wallSeconds: number;
  console: string;
  expectedConsole: string;
  error?: string;
}

export interface PeerRunOptions {
  timeoutMs?: number;
}

function finishRun(iterations: number, seconds: number, wallSeconds: number, consoleText: string, error?: string): PeerRun {
  const expectedConsole = expectedChecksum(iterations).console;
  if (!error && consoleText !== expectedConsole) {
    error = `checksum mismatch: the guest printed ${JSON.stringify(consoleText)}, expected ${JSON.stringify(expectedConsole)}`;
  }
  return { status: error ? 'failed' : 'ok', iterations, seconds, wallSeconds, console: consoleText, expectedConsole, ...(error ? { error } : {}) };
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The loop on Bochs, through runOnBochs (its ROM, SYSENTER-patched done site). */
export function runLoopOnBochs(iterations: number, opts: PeerRunOptions = {}): PeerRun {
  let g: GuestImage;
  try {
    g = loopImage(iterations);
  } catch (e) {
    return finishRun(iterations, 0, 0, '', describeError(e));
  }
  const r = runOnBochs(g.image, { doneSites: g.doneSites, timeoutMs: opts.timeoutMs ?? 600000 });
  const s = r.elapsedMs / 1000;
  const error = r.status === 'done' ? undefined : `Bochs status ${r.status}${r.error ? `: ${r.error}` : ''}`;
  return finishRun(iterations, s, s, r.console, error);
}

let qemuRomPath: string | undefined;
/** Builds (or reuses) .build/peers/qemu-rom-<hash>.bin from qemu-rom.asm with nasm. */
export function buildQemuRom(): string {
  if (qemuRomPath && fs.existsSync(qemuRomPath)) return qemuRomPath;
  const src = fs.readFileSync(QEMU_ROM_SRC);
  const out = path.join(BUILD_DIR, `qemu-rom-${createHash('sha256').update(src).digest('hex').slice(0, 16)}.bin`);
  if (!fs.existsSync(out)) {
    fs.mkdirSync(BUILD_DIR, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    const r = spawnSync('nasm', ['-f', 'bin', '-o', tmp, QEMU_ROM_SRC], { encoding: 'utf8', timeout: 60000 });
    if (r.error || r.status !== 0) {
      fs.rmSync(tmp, { force: true });
      throw new Error(`nasm failed on ${QEMU_ROM_SRC}: ${r.error?.message ?? ''}${r.stderr ?? ''}`.trim());
    }
    fs.renameSync(tmp, out);
  }
  qemuRomPath = out;
  return out;
}

export const QEMU_BIN = 'qemu-system-x86_64';

/** The QEMU command line for a guest file (ROM, loader, debug-exit on port 0xF4, console to a file). */
export function qemuArgs(rom: string, guestFile: string, consoleFile: string): string[] {
  return [
    '-nodefaults', '-machine', 'pc', '-accel', 'tcg', '-cpu', 'max', '-m', '64',
    '-display', 'none', '-serial', 'none', '-monitor', 'none', '-no-reboot',
    '-bios', rom,
    '-device', `loader,file=${guestFile},addr=0x${LOAD_ADDRESS.toString(16)},force-raw=on`,
    '-device', 'isa-debug-exit,iobase=0xf4,iosize=1',
    '-debugcon', `file:${consoleFile}`,
  ];
}

/** The loop on QEMU TCG, booted by qemu-rom.asm; ends through isa-debug-exit (exit status 2*AL+1 = 21). */
export function runLoopOnQemu(iterations: number, opts: PeerRunOptions = {}): PeerRun {
  let g: GuestImage;
  let rom: string;
  try {
    g = loopImage(iterations);
    rom = buildQemuRom();
  } catch (e) {
    return finishRun(iterations, 0, 0, '', describeError(e));
  }
  return withTempDir('avic-peers-qemu-', (dir) => {
    const guestFile = path.join(dir, 'guest.bin');
    const consoleFile = path.join(dir, 'console.txt');
    fs.writeFileSync(guestFile, g.image);
    const timeoutMs = opts.timeoutMs ?? 600000;
    const t0 = process.hrtime.bigint();
    const r = spawnSync(QEMU_BIN, qemuArgs(rom, guestFile, consoleFile), {
      stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'latin1',
    });
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    let consoleText = '';
    try { consoleText = fs.readFileSync(consoleFile, 'latin1'); } catch { /* QEMU never opened it */ }
    let error: string | undefined;
    if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') error = `QEMU timed out after ${timeoutMs} ms`;
    else if (r.error) error = `cannot run ${QEMU_BIN}: ${r.error.message}`;
    else if (r.status !== QEMU_DONE_EXIT) {
      const why = r.status === 0 ? ' (0: the guest reset or triple-faulted, -no-reboot)' : '';
      error = `QEMU exited with ${r.status ?? r.signal}${why}, expected ${QEMU_DONE_EXIT} (guest done); stderr: ${(r.stderr ?? '').trim().slice(0, 500)}`;
    }
    return finishRun(iterations, s, s, consoleText, error);
  });
}

/** The loop at CPL3 on /dev/kvm through the avic-kvm harness; `seconds` = its elapsed_ms. */
export function runLoopOnKvm(iterations: number, opts: PeerRunOptions = {}): PeerRun {
  let g: GuestImage;
  try {
    g = kvmUserLoopImage(iterations);
  } catch (e) {
    return finishRun(iterations, 0, 0, '', describeError(e));
  }
  const t0 = process.hrtime.bigint();
  try {
    const r = runOnKvm(g.image, { timeoutMs: opts.timeoutMs ?? 600000 });
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const error = r.status === 'done' ? undefined : `KVM status ${r.status}${r.error ? `: ${r.error}` : ''}${r.stderr ? `; stderr: ${r.stderr.trim().slice(0, 500)}` : ''}`;
    return finishRun(iterations, r.elapsed_ms / 1000, wall, r.console, error);
  } catch (e) {
    return finishRun(iterations, 0, Number(process.hrtime.bigint() - t0) / 1e9, '', describeError(e));
  }
}

// ---------------------------------------------------------------------------------------------
// Availability

let qemuAvail: { ok: boolean; reason: string } | undefined;
/** QEMU (with TCG) and nasm (for the ROM). */
export function qemuAvailable(): { ok: boolean; reason: string } {
  if (qemuAvail) return qemuAvail;
  const missing: string[] = [];
  if (!which(QEMU_BIN)) missing.push(`'${QEMU_BIN}' not on PATH (apt-get install -y --no-install-recommends qemu-system-x86)`);
  else {
    const r = spawnSync(QEMU_BIN, ['-accel', 'help'], { encoding: 'utf8', timeout: 20000 });
    if (r.error || r.status !== 0) missing.push(`'${QEMU_BIN} -accel help' failed: ${r.error?.message ?? r.stderr}`);
    else if (!/^tcg$/m.test(r.stdout)) missing.push(`this ${QEMU_BIN} has no TCG accelerator`);
  }
  if (!which('nasm')) missing.push(`'nasm' not on PATH (apt-get install -y nasm; builds qemu-rom.asm)`);
  qemuAvail = missing.length ? { ok: false, reason: missing.join('; ') } : { ok: true, reason: `${QEMU_BIN} with TCG and nasm found` };
  return qemuAvail;
}

/** A one-line version string of a peer, for the report. */
export function peerVersion(peer: PeerName): string {
  const first = (cmd: string, args: string[], re: RegExp) => {
    const r = spawnSync(cmd, args, { encoding: 'latin1', timeout: 20000 });
    return re.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[0]?.trim() ?? 'unknown';
  };
  if (peer === 'bochs') return first('bochs', ['--help', 'cpu'], /Bochs x86 Emulator [^\n]*/);
  if (peer === 'qemu_tcg') return first(QEMU_BIN, ['--version'], /QEMU emulator version [^\n]*/);
  return `kvm on Linux ${os.release()}`;
}

// ---------------------------------------------------------------------------------------------
// Measurement

export interface PeerMips {
  /** guest instructions per second / 1e6 over the measured run, start-up subtracted; null if the peer is missing or failed */
  mips: number | null;
  reason?: string;
  /** time of the measured run (PeerRun.seconds; the fastest of `repeats`), start-up included */
  seconds: number;
  /** loop iterations of the measured run (4 instructions each) */
  iterations: number;
  /** median time of near-empty runs (1 iteration) */
  startupSeconds?: number;
  /** seconds - startupSeconds: the time the MIPS figure divides by */
  loopSeconds?: number;
  /** startupSeconds / seconds: below 0.05 unless `iterations` was forced */
  startupFraction?: number;
  /** how the iteration count was chosen */
  method?: string;
  /** seconds of every measured run (the fastest gives `seconds` and `mips`) */
  runs?: number[];
  /** calibration runs (iterations, seconds) */
  calibration?: { iterations: number; seconds: number }[];
  /** wall time of the whole measured process (differs from seconds for KVM) */
  wallSeconds?: number;
  version?: string;
}

export interface MeasureOptions {
  /** force the iteration count of the measured run (no calibration) */
  iterations?: number;
  /** aim for a loop time of at least this many seconds (and at least 24 x the start-up) */
  targetSeconds?: number;
  /** near-empty runs for the start-up cost (median), default 3 */
  startupRuns?: number;
  /** measured runs of the chosen size; the fastest one gives the figure (least disturbed by noise), default 2 */
  repeats?: number;
  timeoutMs?: number;
}

interface PeerSpec {
  name: PeerName;
  label: string;
  available(): { ok: boolean; reason: string };
  run(iterations: number, opts: PeerRunOptions): PeerRun;
  /** default targetSeconds */
  target: number;
  /** first calibration iteration count (about 0.1-0.5 s on the machine of README.md) */
  firstGuess: number;
}

const PEERS: Record<PeerName, PeerSpec> = {
  bochs: { name: 'bochs', label: 'Bochs', available: bochsAvailable, run: runLoopOnBochs, target: 5, firstGuess: 5e6 },
  qemu_tcg: { name: 'qemu_tcg', label: 'QEMU TCG', available: qemuAvailable, run: runLoopOnQemu, target: 3, firstGuess: 1e8 },
  kvm: { name: 'kvm', label: 'KVM (CPL3)', available: kvmAvailable, run: runLoopOnKvm, target: 1.5, firstGuess: 2e8 },
};

/** Start-up stays below 1/25 = 4% of a measured run: the loop time is at least 24 x the start-up. */
const STARTUP_FACTOR = 24;
/** a calibration run is usable once its loop time is this long (and 3 x the start-up) */
const CALIBRATION_MIN_SECONDS = 0.3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const round = (x: number, digits = 4) => Number(x.toPrecision(digits));

/**
 * Measures one peer: start-up = median of `startupRuns` 1-iteration runs; then (unless
 * `iterations` is given) calibration runs growing 2-10x until the loop takes >= 0.3 s, and a
 * measured run sized for max(targetSeconds, 24 x start-up) of loop time, run `repeats` times
 * (resized once if noise made it too short for start-up < 5%). From the fastest run:
 * mips = 4 x iterations / (seconds - startupSeconds) / 1e6. Never throws.
 */
export function measurePeer(peer: PeerName, opts: MeasureOptions = {}): PeerMips {
  const spec = PEERS[peer];
  const empty = (reason: string, extra: Partial<PeerMips> = {}): PeerMips => ({ mips: null, reason, seconds: 0, iterations: 0, ...extra });
  try {
    const avail = spec.available();
    if (!avail.ok) return empty(`${spec.label} unavailable: ${avail.reason}`);
    const runOpts = { timeoutMs: opts.timeoutMs };
    const version = peerVersion(peer);
    const startups: number[] = [];
    for (let i = 0; i < Math.max(1, opts.startupRuns ?? 3); i++) {
      const r = spec.run(1, runOpts);
      if (r.status !== 'ok') return empty(`${spec.label}: the near-empty run failed: ${r.error}`, { version });
      startups.push(r.seconds);
    }
    const startup = median(startups);
    const target = Math.max(opts.targetSeconds ?? spec.target, STARTUP_FACTOR * startup);
    const calibration: { iterations: number; seconds: number }[] = [];
    let iterations: number;
    let method: string;
    if (opts.iterations !== undefined) {
      checkIterations(opts.iterations);
      iterations = opts.iterations;
      method = `fixed ${iterations} iterations; start-up = median of ${startups.length} 1-iteration runs, subtracted`;
    } else {
      let n = spec.firstGuess;
      let rate = 0;
      for (let k = 0; k < 8; k++) {
        const r = spec.run(n, runOpts);
        if (r.status !== 'ok') return empty(`${spec.label}: calibration run (${n} iterations) failed: ${r.error}`, { version, startupSeconds: startup });
        calibration.push({ iterations: n, seconds: r.seconds });
        const loop = r.seconds - startup;
        if (loop >= Math.max(CALIBRATION_MIN_SECONDS, 3 * startup)) {
          rate = n / loop;
          break;
        }
        // grow toward ~0.5 s of loop: x2..x10 (x10 while the loop time is lost in the noise)
        const grow = loop > 0.02 ? Math.min(10, Math.max(2, Math.ceil(0.5 / loop))) : 10;
        n = Math.min(n * grow, Number.MAX_SAFE_INTEGER);
      }
      if (!rate) return empty(`${spec.label}: calibration never reached ${CALIBRATION_MIN_SECONDS} s of loop time`, { version, startupSeconds: startup, calibration });
      iterations = Math.min(Number.MAX_SAFE_INTEGER, Math.max(1, Math.ceil((rate * target) / 1e6) * 1e6));
      method = `start-up = median of ${startups.length} 1-iteration runs, subtracted; iterations sized from calibration ` +
        `(${calibration.map((c) => `${c.iterations}: ${round(c.seconds)} s`).join(', ')}) for ${round(target, 3)} s of loop ` +
        `= max(${opts.targetSeconds ?? spec.target} s, ${STARTUP_FACTOR} x start-up)`;
    }
    const repeats = Math.max(1, opts.repeats ?? 2);
    const runs: number[] = [];
    let best: PeerRun | undefined;
    let resized = false;
    for (let k = 0; k < repeats; k++) {
      const r = spec.run(iterations, runOpts);
      if (r.status !== 'ok') {
        return empty(`${spec.label}: the measured run (${iterations} iterations) failed: ${r.error}`, { version, startupSeconds: startup, calibration, iterations });
      }
      runs.push(r.seconds);
      if (!best || r.seconds < best.seconds) best = r;
      // A calibration slowed down by noise makes the measured runs too short: once, resize from
      // this run's rate and start the repeats again, so that start-up stays below 5%.
      if (opts.iterations === undefined && !resized && startup / r.seconds >= 0.05 && r.seconds > startup) {
        resized = true;
        iterations = Math.min(Number.MAX_SAFE_INTEGER, Math.ceil(((iterations / (r.seconds - startup)) * target) / 1e6) * 1e6);
        method += `; resized to ${iterations} iterations after a ${round(r.seconds)} s run`;
        runs.length = 0;
        best = undefined;
        k = -1;
      }
    }
    const r = best as PeerRun;
    const loopSeconds = r.seconds - startup;
    if (!(loopSeconds > 0)) {
      return empty(`${spec.label}: the measured run (${round(r.seconds)} s) was not longer than the start-up (${round(startup)} s); use more iterations`,
        { version, startupSeconds: startup, iterations, seconds: r.seconds });
    }
    return {
      mips: round((INSTRUCTIONS_PER_ITERATION * iterations) / loopSeconds / 1e6),
      seconds: r.seconds,
      iterations,
      startupSeconds: startup,
      loopSeconds: round(loopSeconds),
      startupFraction: round(startup / r.seconds, 3),
      method: `${method}; fastest of ${runs.length} measured run(s)`,
      runs,
      ...(calibration.length ? { calibration } : {}),
      wallSeconds: r.wallSeconds,
      version,
    };
  } catch (e) {
    return empty(`${spec.label}: ${describeError(e)}`);
  }
}

export const bochsMips = (opts?: MeasureOptions): PeerMips => measurePeer('bochs', opts);
export const qemuTcgMips = (opts?: MeasureOptions): PeerMips => measurePeer('qemu_tcg', opts);
export const kvmMips = (opts?: MeasureOptions): PeerMips => measurePeer('kvm', opts);

export interface MachineInfo {
  cpu: string;
  cpus: number;
  kernel: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch { /* not Linux */ }
  return { cpu, cpus: os.cpus().length, kernel: os.release(), date: new Date().toISOString() };
}

export interface PeersResult {
  bochs_mips: number | null;
  qemu_tcg_mips: number | null;
  kvm_mips: number | null;
  /** why a figure is null, keyed like the figure */
  reasons: Record<string, string>;
  details: { bochs: PeerMips; qemu_tcg: PeerMips; kvm: PeerMips; machine: MachineInfo };
}

/** Measures the three peers one after the other (about a minute on a 2-core machine). Never throws. */
export function measurePeers(opts: Partial<Record<PeerName, MeasureOptions>> = {}): PeersResult {
  const bochs = bochsMips(opts.bochs);
  const qemu = qemuTcgMips(opts.qemu_tcg);
  const kvm = kvmMips(opts.kvm);
  const reasons: Record<string, string> = {};
  if (bochs.mips === null) reasons.bochs_mips = bochs.reason ?? 'unknown';
  if (qemu.mips === null) reasons.qemu_tcg_mips = qemu.reason ?? 'unknown';
  if (kvm.mips === null) reasons.kvm_mips = kvm.reason ?? 'unknown';
  return {
    bochs_mips: bochs.mips,
    qemu_tcg_mips: qemu.mips,
    kvm_mips: kvm.mips,
    reasons,
    details: { bochs, qemu_tcg: qemu, kvm, machine: machineInfo() },
  };
}

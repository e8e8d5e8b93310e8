// bochs.ts - Bochs 2.7 reference executor ("oracle"): boots a flat guest image on Bochs with N
// processors in the start state of the guest contract (the guest contract, contracts/guest.md of the design docs), using
// our own system ROM (rom.asm, built with nasm into <repo>/.build/oracle/, cached by content
// hash), and reports the port-0xE9 console output and which processors reached a done site.
// Node built-ins only. See README.md in this directory for the method and its deviations.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoPath, repoRoot } from '../repo';
import { which } from '../commands';

/** Largest processor count Bochs 2.7 runs with this configuration (timer table limit). */
export const BOCHS_MAX_VCPUS = 18;

/** Physical bytes the ROM itself uses at run time (zero when the guest starts). */
export const BOCHS_SCRATCH = { start: 0xf000, end: 0xf040 };

export interface BochsRunOptions {
  /** Processors (1..BOCHS_MAX_VCPUS), default 1. */
  vcpus?: number;
  /** RAM in MiB, default 64. */
  memoryMiB?: number;
  /** Where the image is loaded and where every processor starts, default 0x100000. */
  loadAddress?: number;
  /** Addresses of the guest's port-0xF4 writes (`out 0xf4, al|ax|eax`, `out dx, al|ax|eax`). */
  doneSites: number[];
  /** Wall-clock limit for the Bochs process, default 30000 ms. */
  timeoutMs?: number;
}

export type BochsStatus = 'done' | 'timeout' | 'triple-fault' | 'error';

export interface BochsRunResult {
  status: BochsStatus;
  /** Bytes written to port 0xE9, one char (code 0..255) per byte. */
  console: string;
  /** Indices of the processors that reached a done site, ascending. */
  done: number[];
  /** Wall time of the whole Bochs run (spawn to exit), ms. */
  elapsedMs: number;
  error?: string;
}

const MARK_BEGIN = Buffer.from('\x01AVIC-BOCHS-ORACLE-BEGIN-5f3c9a\x02', 'latin1');
const MARK_END = Buffer.from('\x01AVIC-BOCHS-ORACLE-END-5f3c9a\x02', 'latin1');
const MARK_BADID = Buffer.from('\x01AVIC-BOCHS-ORACLE-ERROR-BAD-APIC-ID\x02', 'latin1');
const VGA_ROM = '/usr/share/vgabios/vgabios.bin';
const ROM_SRC = repoPath('test', 'oracle', 'bochs', 'rom.asm');
const BOCHS_BIN = process.env.BOCHS_BIN || 'bochs';
const NASM_BIN = process.env.NASM_BIN || 'nasm';

// Bochs debugger text printed on stdout when execution stops (breakpoint stops and the end of a
// run that did not end through the shutdown port): "Next at t=N", "(cpu) Breakpoint n, ...",
// "(cpu) [0xphys] sel:offset (ctxt): disassembly", "(cpu).[t] [0xphys] ...".
const DBG_LINE =
  /(?:Next at t=\d+|\(\d+\) Breakpoint \d+, 0x[0-9a-f]+ in \?\? \(\)|\(\d+\)\.?(?:\[\d+\])? \[0x[0-9a-f]+\] [0-9a-f]{4}:[0-9a-f]+ \([^)\n]*\): [^\n]*)\n?/;
const DBG_BLOCK = new RegExp(`(?:${DBG_LINE.source})+`, 'g');
const DBG_TAIL = new RegExp(`(?:${DBG_LINE.source})+$`);

let availability: { ok: boolean; reason: string } | undefined;

/** Whether Bochs, its VGA ROM and nasm are installed; reason says what is missing. */
export function bochsAvailable(): { ok: boolean; reason: string } {
  if (availability) return availability;
  const missing: string[] = [];
  if (!which(BOCHS_BIN)) missing.push(`'${BOCHS_BIN}' not on PATH (apt-get install bochs bochsbios)`);
  if (!fs.existsSync(VGA_ROM)) missing.push(`${VGA_ROM} missing (apt-get install vgabios)`);
  if (!which(NASM_BIN)) missing.push(`'${NASM_BIN}' not on PATH (apt-get install nasm)`);
  if (missing.length === 0) {
    const r = spawnSync(BOCHS_BIN, ['--help', 'cpu'], { encoding: 'latin1', timeout: 20000 });
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    if (r.error) missing.push(`cannot run ${BOCHS_BIN}: ${r.error.message}`);
    else if (!/Bochs x86 Emulator 2\./.test(text)) missing.push(`${BOCHS_BIN} --help did not identify Bochs 2.x`);
    else if (!/corei7_icelake_u/.test(text)) missing.push('this Bochs build has no corei7_icelake_u CPU model');
  }
  availability = missing.length ? { ok: false, reason: missing.join('; ') } : { ok: true, reason: 'Bochs 2.x and nasm found' };
  return availability;
}

let unshareOk: boolean | undefined;
/** `unshare -n` gives each Bochs its own network namespace, so rfb ports never clash. */
function canUnshare(): boolean {
  if (unshareOk === undefined) {
    const r = spawnSync('unshare', ['-n', 'true'], { timeout: 10000 });
    unshareOk = !r.error && r.status === 0;
  }
  return unshareOk;
}

function sha256(...parts: (string | Uint8Array)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Builds (or reuses) the ROM for this processor count and load address; returns its path. */
export function buildRom(vcpus: number, loadAddress: number): string {
  const src = fs.readFileSync(ROM_SRC);
  const defs = [`-DNCPU=${vcpus}`, `-DLOAD_ADDR=0x${loadAddress.toString(16)}`];
  const key = sha256(src, '\0', defs.join(' ')).slice(0, 20);
  const dir = path.join(repoRoot(), '.build', 'oracle');
  const out = path.join(dir, `bochs-rom-${key}.bin`);
  if (fs.existsSync(out)) return out;
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync(NASM_BIN, ['-f', 'bin', ...defs, '-o', tmp, ROM_SRC], { encoding: 'utf8', timeout: 60000 });
  if (r.error || r.status !== 0) {
    try { fs.unlinkSync(tmp); } catch { /* none */ }
    throw new Error(`nasm failed on ${ROM_SRC}: ${r.error?.message ?? ''}${r.stderr ?? ''}`.trim());
  }
  fs.renameSync(tmp, out);
  return out;
}

const LEGACY_PREFIXES = new Set([0x66, 0x67, 0xf2, 0xf3, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65]);

/**
 * Patches the done sites of a copy of the image: every `out` to port 0xF4 that is at least two
 * bytes long becomes SYSENTER (0F 34) into the ROM's done routine; a one-byte `out dx, al|eax`
 * (EE/EF) cannot hold it and is returned for a debugger breakpoint instead.
 */
export function patchDoneSites(image: Uint8Array, loadAddress: number, doneSites: number[]):
  { patched: Uint8Array; breakpointSites: number[] } {
  const patched = Uint8Array.from(image);
  const breakpointSites: number[] = [];
  for (const site of [...new Set(doneSites)]) {
    const hex = `0x${site.toString(16)}`;
    const off = site - loadAddress;
    if (!Number.isInteger(site) || off < 0 || off >= image.length) {
      throw new Error(`done site ${hex} is outside the image (0x${loadAddress.toString(16)}..0x${(loadAddress + image.length).toString(16)})`);
    }
    let i = off;
    while (i < image.length && (LEGACY_PREFIXES.has(image[i]) || (image[i] & 0xf0) === 0x40)) i++;
    const op = image[i];
    let len: number;
    if (op === 0xe6 || op === 0xe7) {
      if (image[i + 1] !== 0xf4) {
        throw new Error(`done site ${hex}: 'out 0x${(image[i + 1] ?? 0).toString(16)}, ...' does not write port 0xF4`);
      }
      len = i + 2 - off;
    } else if (op === 0xee || op === 0xef) {
      len = i + 1 - off;
    } else {
      const bytes = Array.from(image.subarray(off, off + 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
      throw new Error(`done site ${hex} is not an 'out' instruction (bytes ${bytes})`);
    }
    if (len >= 2) {
      patched[off] = 0x0f;
      patched[off + 1] = 0x34;
    } else {
      breakpointSites.push(site);
    }
  }
  return { patched, breakpointSites };
}

/** The ROM's done routine (rom.asm puts it at offset 0xE000 of the image, mirrored at 0xF0000). */
export const ROM_DONE_ENTRY = 0xfe000;

/**
 * Debugger script. Without 1-byte sites: run, quit. With them: a linear breakpoint on each such
 * `out dx` site S and on S+1, and after every stop, for every processor, RIP := done_entry if
 * (RIP == S or RIP == S+1) and DX == 0xF4. S+1 is needed because Bochs 2.7's SMP debugger skips
 * the breakpoint check on the first instruction of each processor's time slice; a processor
 * that slipped through has executed the `out` (port 0xF4 is unassigned on Bochs) and is caught
 * at S+1 (which is the 2nd instruction of its slice). DX == 0xF4 keeps processors that reach S
 * with another port (or S+1 along another path) running.
 */
function debuggerScript(vcpus: number, breakpointSites: number[]): { script: string; stops: number } {
  if (breakpointSites.length === 0) return { script: 'c\nquit\n', stops: 0 };
  const done = `0x${ROM_DONE_ENTRY.toString(16)}`;
  const eq = (x: string, c: string) => `(1 - ((((${x}) ^ ${c}) | (0 - ((${x}) ^ ${c}))) >> 63))`;
  const lines: string[] = [];
  for (const s of breakpointSites) lines.push(`lb 0x${s.toString(16)}`, `lb 0x${(s + 1).toString(16)}`);
  const fix: string[] = [];
  for (let cpu = 0; cpu < vcpus; cpu++) {
    fix.push(`set $cpu = ${cpu}`);
    for (const s of breakpointSites) {
      const atSite = `(${eq('rip', `0x${s.toString(16)}`)} + ${eq('rip', `0x${(s + 1).toString(16)}`)})`;
      fix.push(`set rip = rip + ${atSite} * ${eq('rdx & 0xffff', '0xf4')} * (${done} - rip)`);
    }
  }
  // Each processor stops at most twice at a site (S, S+1) before it is done; allow spare stops
  // for sites reached with DX != 0xF4.
  const stops = 4 * vcpus + 16;
  for (let k = 0; k < stops; k++) lines.push('c', ...fix);
  lines.push('c', 'quit');
  return { script: lines.join('\n') + '\n', stops };
}

function indexOfBuf(hay: Buffer, needle: Buffer, from = 0): number {
  return hay.indexOf(needle, from);
}

/** Runs the image on Bochs; synchronous. Never throws for guest behaviour, only reports. */
export function runOnBochs(image: Uint8Array, opts: BochsRunOptions): BochsRunResult {
  const vcpus = opts.vcpus ?? 1;
  const memoryMiB = opts.memoryMiB ?? 64;
  const loadAddress = opts.loadAddress ?? 0x100000;
  const timeoutMs = opts.timeoutMs ?? 30000;
  const fail = (error: string, elapsedMs = 0): BochsRunResult => ({ status: 'error', console: '', done: [], elapsedMs, error });

  const avail = bochsAvailable();
  if (!avail.ok) return fail(`Bochs oracle unavailable: ${avail.reason}`);
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > BOCHS_MAX_VCPUS) {
    return fail(`vcpus = ${vcpus}: Bochs 2.7 runs 1..${BOCHS_MAX_VCPUS} processors here`);
  }
  if (!Number.isInteger(memoryMiB) || memoryMiB < 2 || memoryMiB > 3072) return fail(`memoryMiB = ${memoryMiB}: expected 2..3072`);
  const end = loadAddress + image.length;
  const overlaps = (a: number, b: number) => loadAddress < b && end > a;
  if (!Number.isInteger(loadAddress) || loadAddress < 0 || end > memoryMiB * 0x100000) {
    return fail(`image 0x${loadAddress.toString(16)}..0x${end.toString(16)} does not fit in ${memoryMiB} MiB of RAM`);
  }
  if (overlaps(0x1000, 0x8000) || overlaps(BOCHS_SCRATCH.start, BOCHS_SCRATCH.end) || overlaps(0xa0000, 0x100000)) {
    return fail(`image 0x${loadAddress.toString(16)}..0x${end.toString(16)} overlaps the GDT/page tables (0x1000..0x7fff), the ROM scratch (0xf000..0xf03f) or 0xa0000..0xfffff`);
  }

  let patched: Uint8Array;
  let breakpointSites: number[];
  let rom: string;
  let script: string;
  let stops: number;
  try {
    ({ patched, breakpointSites } = patchDoneSites(image, loadAddress, opts.doneSites));
    rom = buildRom(vcpus, loadAddress);
    ({ script, stops } = debuggerScript(vcpus, breakpointSites));
  } catch (e) {
    return fail((e as Error).message);
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'avic-bochs-'));
  try {
    const guestFile = path.join(dir, 'guest.bin');
    const logFile = path.join(dir, 'bochs.log');
    const rcFile = path.join(dir, 'bochsrc');
    const dbgFile = path.join(dir, 'debugger.rc');
    fs.writeFileSync(guestFile, patched);
    fs.writeFileSync(dbgFile, script);
    fs.writeFileSync(rcFile, [
      '# generated by test/oracle/bochs/bochs.ts',
      `memory: guest=${memoryMiB}, host=${Math.min(memoryMiB, 2048)}`, // Bochs 2.7: host <= 2048
      `romimage: file="${rom}"`,
      `vgaromimage: file="${VGA_ROM}"`,
      `optramimage1: file="${guestFile}", address=0x${loadAddress.toString(16)}`,
      `cpu: model=corei7_icelake_u, count=${vcpus}, reset_on_triple_fault=0, ignore_bad_msrs=0`,
      'pci: enabled=0',
      'plugin_ctrl: serial=0, parallel=0, gameport=0, speaker=0, extfpuirq=0, iodebug=0',
      'display_library: rfb, options="timeout=0"',
      'port_e9_hack: enabled=1',
      `log: "${logFile}"`,
      'panic: action=fatal',
      'error: action=report',
      'info: action=report',
      'debug: action=ignore',
      'clock: sync=none, time0=946684800',
      'sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy',
      '',
    ].join('\n'));

    const bochsArgs = ['-q', '-f', rcFile, '-rc', dbgFile];
    const [cmd, args] = canUnshare() ? ['unshare', ['-n', BOCHS_BIN, ...bochsArgs]] : [BOCHS_BIN, bochsArgs];
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, args, {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      maxBuffer: 1 << 30,
    });
    const elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const stdout: Buffer = r.stdout ?? Buffer.alloc(0);
    const stderr = (r.stderr ?? Buffer.alloc(0)).toString('latin1');
    let log = '';
    try { log = fs.readFileSync(logFile, 'latin1'); } catch { /* Bochs never opened it */ }

    const done = [...new Set([...log.matchAll(/\[BIOS\s*\] AVIC-DONE (\d+)/g)].map((m) => Number(m[1])))].sort((a, b) => a - b);
    const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
    const exitMsg = /Bochs is exiting with the following message:\n([^\n]*)/.exec(stderr)?.[1]?.trim();
    const panic = /p\[[^\]]*\] >>PANIC<< ([^\n]*)/.exec(log)?.[1]?.trim();
    const begin = indexOfBuf(stdout, MARK_BEGIN);
    if (begin < 0) {
      if (r.error && !timedOut) return fail(`cannot run Bochs: ${r.error.message}`, elapsedMs);
      const why = indexOfBuf(stdout, MARK_BADID) >= 0 ? 'ROM: a processor has an APIC ID >= vcpus'
        : exitMsg ?? panic ?? (timedOut ? `timed out after ${timeoutMs} ms` : `exit status ${r.status}`);
      return fail(`Bochs did not reach the guest: ${why}\n${tail(stderr)}`, elapsedMs);
    }
    const from = begin + MARK_BEGIN.length;
    const endAt = indexOfBuf(stdout, MARK_END, from);
    let raw = stdout.subarray(from, endAt >= 0 ? endAt : stdout.length).toString('latin1');
    if (breakpointSites.length) raw = raw.replace(DBG_BLOCK, '');
    if (endAt >= 0) return { status: 'done', console: raw, done, elapsedMs };
    raw = raw.replace(DBG_TAIL, '');
    if (/exception\(\): 3rd \(\d+\) exception with no resolution/.test(log)) {
      return { status: 'triple-fault', console: raw, done, elapsedMs };
    }
    if (timedOut) return { status: 'timeout', console: raw, done, elapsedMs };
    const bpStops = (stdout.toString('latin1').match(/\(\d+\) Breakpoint \d+,/g) ?? []).length;
    if (breakpointSites.length && bpStops >= stops) {
      return { status: 'error', console: raw, done, elapsedMs, error: `the 1-byte done sites stopped Bochs ${bpStops} times (budget ${stops}): are they reached with DX != 0xF4?` };
    }
    return { status: 'error', console: raw, done, elapsedMs, error: `Bochs stopped: ${exitMsg ?? panic ?? `exit status ${r.status}`}` };
  } finally {
    // AVIC_BOCHS_KEEP=1 keeps bochsrc, debugger.rc, guest.bin and bochs.log for a run by hand.
    if (process.env.AVIC_BOCHS_KEEP) console.error(`bochs oracle: kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}

function tail(text: string, lines = 15): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Bytes of `mov rcx, n; .l: dec rcx; jnz .l; out 0xf4, al` at any load address. */
export function loopGuest(iterations: bigint | number): { image: Uint8Array; doneSites: number[]; siteOffset: number } {
  const n = BigInt(iterations);
  const image = new Uint8Array(10 + 3 + 2 + 2);
  image.set([0x48, 0xb9], 0); // mov rcx, imm64
  for (let i = 0; i < 8; i++) image[2 + i] = Number((n >> BigInt(8 * i)) & 0xffn);
  image.set([0x48, 0xff, 0xc9], 10); // dec rcx
  image.set([0x75, 0xfb], 13); // jnz -5
  image.set([0xe6, 0xf4], 15); // out 0xf4, al
  return { image, doneSites: [0x100000 + 15], siteOffset: 15 };
}

/**
 * Times `iterations` x `dec rcx; jnz` on one processor, and an empty run (iterations = 1) for
 * the startup cost. loopMs = elapsedMs - startupMs estimates the loop alone.
 */
export function timeBochsLoop(iterations: bigint | number, opts: { timeoutMs?: number } = {}):
  { status: BochsStatus; elapsedMs: number; startupMs: number; loopMs: number; error?: string } {
  const empty = loopGuest(1);
  const base = runOnBochs(empty.image, { doneSites: empty.doneSites, timeoutMs: opts.timeoutMs });
  const loop = loopGuest(iterations);
  const run = runOnBochs(loop.image, { doneSites: loop.doneSites, timeoutMs: opts.timeoutMs ?? 600000 });
  const error = base.error ?? run.error;
  return {
    status: base.status === 'done' ? run.status : base.status,
    elapsedMs: run.elapsedMs,
    startupMs: base.elapsedMs,
    loopMs: run.elapsedMs - base.elapsedMs,
    ...(error ? { error } : {}),
  };
}

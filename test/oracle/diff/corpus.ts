// corpus.ts - the differential test corpus: a deterministic generator (seeded PRNG, same output
// on every run) of short x86-64 instruction sequences grouped into guest images, plus exception
// delivery guests with their own IDT. Each sequence loads every GPR and RFLAGS (popfq), runs
// 1-6 instructions and calls a dump routine that prints, to port 0xE9, a line with the sequence
// id, the 16 GPRs and RFLAGS in hex, and lines with any memory the sequence wrote. Guests are
// assembled with our assembler (src/asm), once per process (`corpusGuests()` caches them).
//
// Console format (one record per line, all numbers lower-case hex):
//   G <guest name>                                  first line of every guest
//   #<id:4> <rax> <rbx> <rcx> <rdx> <rsi> <rdi> <rbp> <rsp> <r8>..<r15> <rflags>   (16 digits each)
//   m <addr> <qword> ...                            memory after the sequence (follows its # line)
//   x <id:4> <vec:2> <ec|-> <cr2> <rip> <cs> <rflags> <rsp> <ss> <frame> <hflags>   exception taken
//   o <text>                                        string output of an `io` sequence (rep outsb)
//   E                                               last line (the guest reached its done site)
// `x` and `o` lines precede the `#` line of their sequence; `<frame>` is the address of the saved
// RIP in the exception frame (the 16-byte aligned old RSP minus 40, SDM Vol. 3A 6.14.2);
// `<hflags>` is RFLAGS inside the handler (IF cleared by an interrupt gate, kept by a trap gate).

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assemble } from '../../../src/asm/assembler';
import { formatDiagnostic } from '../../../src/asm/diagnostics';
import { conditionFlags, FLAG, flagEffect, type InsnInfo, maskedCount, sequenceUndefined, STATUS } from './undefined-flags';

/** Bump when the generator changes in a way that should be visible in the recording. */
export const CORPUS_VERSION = 1;
export const CORPUS_SEED = 0x5eed_a71cn;

export const GPR_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const;
export type Gpr = (typeof GPR_NAMES)[number];
/** Fields of a `#` line, in order. */
export const DUMP_FIELDS = [...GPR_NAMES, 'rflags'] as const;
export type DumpField = (typeof DUMP_FIELDS)[number];
/** Fields of an `x` line after the sequence id, in order. */
export const EXC_FIELDS = ['vec', 'ec', 'cr2', 'rip', 'cs', 'rflags', 'rsp', 'ss', 'frame', 'hflags'] as const;
export type ExcField = (typeof EXC_FIELDS)[number];

/** The SDM's expectation for an exception record (checked on every oracle and the emulator). */
export interface ExcExpect {
  vec: number;
  /** the error code pushed, or null for a vector without one */
  ec: number | null;
  /** saved RIP: the faulting instruction, the next one (traps), or a fixed address */
  rip: 'fault' | 'next' | 'undefined' | number;
  cr2?: number;
}

export interface CorpusSequence {
  /** unique over the corpus; printed as 4 hex digits */
  id: number;
  guest: string;
  /** what it tests, one line */
  title: string;
  /** the assembly of the whole sequence (set-up, instructions, dump call) as in the guest */
  source: string;
  /** the instructions under test (no set-up) */
  body: string[];
  /** the instructions as the flag model sees them */
  insns: InsnInfo[];
  /** classification tags (category, mnemonic:width, exception:#XX, ...), used by deviations.ts */
  tags: string[];
  /** initial register values (rsp excluded: it is the guest's stack) */
  regsIn: Partial<Record<Gpr, bigint>>;
  /** initial memory the sequence sets (address expression as in the source, qword value) */
  memIn: { addr: string; value: bigint }[];
  rflagsIn: number;
  /** RFLAGS bits the SDM leaves undefined after the sequence */
  undefinedFlags: number;
  /** ids of the undefined-flags.ts rules behind undefinedFlags */
  undefinedRules: string[];
  /** 64-bit registers whose value the SDM leaves undefined after the sequence */
  undefinedRegs: Gpr[];
  /** exception records expected before the dump (0 for most sequences) */
  exceptions: number;
  /** x-line fields the SDM leaves undefined for this sequence's exceptions */
  undefinedExcFields: ExcField[];
  /** SDM expectation for the exception record, with addresses resolved (rip as a number) */
  expect?: { vec: number; ec: number | null; rip: number | null; cr2?: number };
}

export interface CorpusGuest {
  name: string;
  /** the .vasm text */
  source: string;
  image: Uint8Array;
  /** addresses of the `out 0xf4, al` instructions */
  doneSites: number[];
  vcpus: number;
  /** how the run ends on a correct machine */
  expectStatus: 'done' | 'triple-fault';
  /** real KVM cannot run this guest: the deviations.ts entry that says why */
  kvmDeviation?: string;
  sequences: CorpusSequence[];
  /** sha256 of the image, hex */
  imageSha256: string;
}

// ---------------------------------------------------------------------------------------------
// deterministic PRNG (splitmix64)

class Rng {
  private s: bigint;
  constructor(seed: bigint) { this.s = seed & M64; }
  next64(): bigint {
    this.s = (this.s + 0x9e3779b97f4a7c15n) & M64;
    let z = this.s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
    return z ^ (z >> 31n);
  }
  /** 0 <= n < k */
  int(k: number): number { return Number(this.next64() % BigInt(k)); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  chance(p: number): boolean { return this.int(1000) < p * 1000; }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) { const j = this.int(i + 1); [xs[i], xs[j]] = [xs[j], xs[i]]; }
    return xs;
  }
}

function seedFor(name: string): bigint {
  const h = createHash('sha256').update(`${CORPUS_SEED}:${name}`).digest();
  return h.readBigUInt64LE(0);
}

const M64 = (1n << 64n) - 1n;
const mask = (w: number): bigint => (w === 64 ? M64 : (1n << BigInt(w)) - 1n);
const hex = (v: bigint): string => `0x${(v & M64).toString(16)}`;
const toSigned = (v: bigint, w: number): bigint => { v &= mask(w); return v >> BigInt(w - 1) ? v - (1n << BigInt(w)) : v; };

/** The operand values the brief asks for, as 64-bit patterns. */
export const EDGE_VALUES: readonly bigint[] = [
  0n, 1n, M64, 0x7fn, 0x80n, 0x7fffn, 0x8000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n,
  0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn,
];

/** An operand value for width w: an edge (truncated, or width-specific extreme) or random. */
function edge(r: Rng, w: number): bigint {
  const k = r.int(10);
  if (k < 5) return r.pick(EDGE_VALUES) & mask(w);
  if (k < 7) return r.pick([0n, 1n, 2n, mask(w), mask(w) - 1n, (1n << BigInt(w - 1)) - 1n, 1n << BigInt(w - 1), (1n << BigInt(w - 1)) + 1n]);
  if (k < 8) return BigInt(r.int(256));
  return r.next64() & mask(w);
}

/** A full 64-bit register holding `low` in its low w bits; the rest random or zero. */
function withUpper(r: Rng, w: number, low: bigint): bigint {
  if (w === 64) return low & M64;
  const upper = r.chance(0.6) ? r.next64() & ~mask(w) & M64 : 0n;
  return upper | (low & mask(w));
}

// ---------------------------------------------------------------------------------------------
// registers

const R64 = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
type R64 = (typeof R64)[number];
const SUB: Record<R64, { 32: string; 16: string; 8: string }> = {
  rax: { 32: 'eax', 16: 'ax', 8: 'al' }, rbx: { 32: 'ebx', 16: 'bx', 8: 'bl' },
  rcx: { 32: 'ecx', 16: 'cx', 8: 'cl' }, rdx: { 32: 'edx', 16: 'dx', 8: 'dl' },
  rsi: { 32: 'esi', 16: 'si', 8: 'sil' }, rdi: { 32: 'edi', 16: 'di', 8: 'dil' },
  rbp: { 32: 'ebp', 16: 'bp', 8: 'bpl' },
  r8: { 32: 'r8d', 16: 'r8w', 8: 'r8b' }, r9: { 32: 'r9d', 16: 'r9w', 8: 'r9b' },
  r10: { 32: 'r10d', 16: 'r10w', 8: 'r10b' }, r11: { 32: 'r11d', 16: 'r11w', 8: 'r11b' },
  r12: { 32: 'r12d', 16: 'r12w', 8: 'r12b' }, r13: { 32: 'r13d', 16: 'r13w', 8: 'r13b' },
  r14: { 32: 'r14d', 16: 'r14w', 8: 'r14b' }, r15: { 32: 'r15d', 16: 'r15w', 8: 'r15b' },
};
const HIGH8: Record<string, R64> = { ah: 'rax', ch: 'rcx', dh: 'rdx', bh: 'rbx' };
const LEGACY8 = ['al', 'cl', 'dl', 'bl', 'ah', 'ch', 'dh', 'bh'];

/** An operand register of width w (64-bit parent, name, and whether it is ah..bh). */
interface Reg { r64: R64; name: string; high: boolean }
function regOf(r64: R64, w: number, high = false): Reg {
  if (high) {
    const name = Object.keys(HIGH8).find((k) => HIGH8[k] === r64);
    if (!name) throw new Error(`${r64} has no high byte register`);
    return { r64, name, high: true };
  }
  return { r64, name: w === 64 ? r64 : SUB[r64][w as 32 | 16 | 8], high: false };
}
function parentOf8(name: string): Reg {
  if (name in HIGH8) return { r64: HIGH8[name], name, high: true };
  const r64 = R64.find((r) => SUB[r][8] === name);
  if (!r64) throw new Error(`no register ${name}`);
  return { r64, name, high: false };
}
const cc16 = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];
const ccAlias: Record<string, string[]> = {
  b: ['c', 'nae'], ae: ['nc', 'nb'], e: ['z'], ne: ['nz'], be: ['na'], a: ['nbe'], p: ['pe'], np: ['po'],
  l: ['nge'], ge: ['nl'], le: ['ng'], g: ['nle'],
};

// ---------------------------------------------------------------------------------------------
// sequence builder

/** Memory regions: scratch (in the image, RIP-relative reachable) and a bit-string area. */
const SCRATCH_BYTES = 0x100;
const BT_BASE = 0x800000; // bit-string base for bt on memory with large offsets (RAM, zero at start)
const PDE_16M = 0x4040; // page-directory entry mapping 0x1000000..0x11fffff (PD 0 at 0x4000)

class Seq {
  readonly regs = new Map<R64, bigint>();
  rflags = 0x2;
  readonly memInit: { addr: string; value: bigint }[] = [];
  readonly dumps: { addr: string; qwords: number }[] = [];
  readonly lines: string[] = [];
  readonly insns: InsnInfo[] = [];
  readonly tags: string[] = [];
  /** registers loaded with an address (lea) after the value loads */
  readonly bases = new Map<R64, string>();
  /** reserved registers the operand pickers must not hand out */
  readonly used = new Set<R64>();
  resume = false;
  exceptions = 0;
  undefinedExcFields: ExcField[] = [];
  /** extra set-up lines run after the register loads, before popfq */
  readonly late: string[] = [];
  /** extra set-up lines run before the register loads */
  readonly early: string[] = [];
  /** lines after the resume label, before the dump (undo what the sequence did to RSP) */
  readonly post: string[] = [];
  expect?: ExcExpect;
  kvmDeviation?: string;
  ownGuest = false;
  constructor(readonly r: Rng, readonly title: string) {}

  set(reg: R64, v: bigint): void { this.regs.set(reg, v & M64); this.used.add(reg); }
  /** a free 64-bit register (never rsp) */
  free(exclude: readonly R64[] = []): R64 {
    const c = R64.filter((x) => !this.used.has(x) && !exclude.includes(x));
    if (!c.length) throw new Error('out of registers');
    const x = this.r.pick(c);
    this.used.add(x);
    return x;
  }
  /** a register operand of width w, optionally allowing ah..bh, loaded with `value` in its low bits */
  operand(w: number, value: bigint, opts: { allowHigh?: boolean; noRex?: boolean; exclude?: R64[] } = {}): Reg {
    if (w === 8 && (opts.allowHigh || opts.noRex)) {
      const names = LEGACY8.filter((n) => {
        const p = parentOf8(n);
        return !this.used.has(p.r64) && !(opts.exclude ?? []).includes(p.r64) && (opts.allowHigh || !p.high);
      });
      const n = this.r.pick(names);
      const p = parentOf8(n);
      this.used.add(p.r64);
      const full = p.high ? withUpper(this.r, 64, this.r.next64() & ~0xff00n) | ((value & 0xffn) << 8n) : withUpper(this.r, 8, value);
      this.regs.set(p.r64, full & M64);
      return p;
    }
    const legacy: R64[] = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp'];
    const r64 = this.free([...(opts.exclude ?? []), ...(opts.noRex ? R64.filter((x) => !legacy.includes(x)) : [])]);
    this.regs.set(r64, withUpper(this.r, w, value));
    return regOf(r64, w);
  }
  /** a base register holding the address `addr` (an assembler expression) */
  base(addr: string, exclude: R64[] = []): R64 {
    const b = this.free(exclude);
    this.bases.set(b, addr);
    return b;
  }
  insn(text: string, info: InsnInfo): void { this.lines.push(text); this.insns.push(info); }
  /** a line that is not an instruction under test (labels, helpers without flag effects) */
  raw(text: string): void { this.lines.push(text); }
  mem(addr: string, value: bigint): void { this.memInit.push({ addr, value: value & M64 }); }
  dump(addr: string, qwords: number): void { this.dumps.push({ addr, qwords }); }
  flags(v: number): void { this.rflags = (v | 0x2) & 0xffffffff; }
}

/** A random RFLAGS input: status flags, sometimes DF. */
function randomFlags(r: Rng, allowDf = true): number {
  const k = r.int(8);
  let f: number;
  if (k === 0) f = 0;
  else if (k === 1) f = STATUS;
  else f = Number(r.next64() & BigInt(STATUS));
  if (allowDf && r.chance(0.15)) f |= FLAG.DF;
  return f | 0x2;
}

// ---------------------------------------------------------------------------------------------
// sequence emission

let labelCounter = 0;

function emitSequence(s: Seq, id: number, guest: string, out: string[]): CorpusSequence {
  const idHex = id.toString(16).padStart(4, '0');
  const L: string[] = [];
  L.push(`; ---- ${idHex}: ${s.title}`);
  L.push(`s${idHex}:`);
  L.push(`    mov dword [rel cur_seq], 0x${idHex}`);
  if (s.resume) L.push(`    mov qword [rel resume], s${idHex}_r`);
  for (const m of s.memInit) {
    L.push(`    mov rax, ${hex(m.value)}`);
    L.push(`    mov [${m.addr}], rax`);
  }
  s.dumps.forEach((d, i) => {
    L.push(`    mov qword [rel dm_tab + ${16 * i}], ${d.addr.replace(/^rel /, '')}`);
    L.push(`    mov qword [rel dm_tab + ${16 * i + 8}], ${d.qwords}`);
  });
  for (const e of s.early) L.push(`    ${e}`);
  for (const reg of R64) {
    if (s.bases.has(reg)) continue;
    let v = s.regs.get(reg);
    if (v === undefined) { v = s.r.next64(); s.regs.set(reg, v); }
    L.push(`    mov ${reg}, ${hex(v)}`);
  }
  for (const [reg, addr] of s.bases) L.push(`    lea ${reg}, [${addr}]`);
  for (const e of s.late) L.push(`    ${e}`);
  L.push(`    push 0x${s.rflags.toString(16)}`);
  L.push('    popfq');
  const body = s.lines.map((l) => (l.endsWith(':') ? l : `    ${l}`));
  if (s.resume && body.length) body.splice(body.length - 1, 0, `s${idHex}_f:`);
  L.push(...body);
  if (s.resume) L.push(`s${idHex}_r:`);
  for (const p of s.post) L.push(`    ${p}`);
  L.push('    call dump');
  out.push(...L, '');
  const u = sequenceUndefined(s.insns);
  const regsIn: Partial<Record<Gpr, bigint>> = {};
  for (const [k, v] of s.regs) regsIn[k] = v;
  return {
    id, guest, title: s.title, source: L.join('\n'), body: s.lines, insns: s.insns, tags: s.tags,
    regsIn, memIn: s.memInit.map((m) => ({ addr: m.addr.replace(/^rel /, ''), value: m.value })), rflagsIn: s.rflags, undefinedFlags: u.flags, undefinedRules: u.rules, undefinedRegs: u.regs as Gpr[],
    exceptions: s.exceptions, undefinedExcFields: s.undefinedExcFields,
    ...(s.expect ? { expect: { vec: s.expect.vec, ec: s.expect.ec, rip: null, ...(s.expect.cr2 !== undefined ? { cr2: s.expect.cr2 } : {}) } } : {}),
  };
}

/** Assembler spelling of an immediate for an operation of width w (sign-extended imm32 for 64). */
function imm(v: bigint, w: number): string {
  if (w === 64) {
    const s = toSigned(v, 32);
    return s < 0n ? `-0x${(-s).toString(16)}` : `0x${s.toString(16)}`;
  }
  return hex(v & mask(w));
}
const SIZE: Record<number, string> = { 8: 'byte', 16: 'word', 32: 'dword', 64: 'qword' };

/** A memory operand addressing `addr` (an assembler expression such as `scratch+16`) in one of
 * several forms: RIP-relative, base+disp, base+index*scale+disp, 32-bit address size. */
function memOperand(s: Seq, addr: string, w: number, opts: { noRex?: boolean } = {}): string {
  const r = s.r;
  const k = r.int(opts.noRex ? 3 : 5);
  const size = SIZE[w];
  if (k === 0) return `${size} [rel ${addr}]`;
  const legacy: R64[] = ['rbx', 'rsi', 'rdi', 'rbp', 'rcx', 'rdx', 'rax'];
  const pickFree = (cands: R64[]): R64 => {
    const c = cands.filter((x) => !s.used.has(x));
    const x = r.pick(c.length ? c : R64.filter((y) => !s.used.has(y)));
    s.used.add(x);
    return x;
  };
  if (k === 1) {
    const d = r.pick([0, 8, 0x40, 0x1000]);
    const b = pickFree(opts.noRex ? legacy : [...R64]);
    s.bases.set(b, `rel ${addr}-${d}`);
    return `${size} [${b}+${d}]`;
  }
  if (k === 2) {
    const scale = r.pick([1, 2, 4, 8]);
    const idx = r.int(5);
    const d = r.pick([0, 0x10, 0x7f]);
    const b = pickFree(opts.noRex ? legacy : [...R64]);
    const ix = pickFree((opts.noRex ? legacy : [...R64]).filter((x) => x !== b));
    s.bases.set(b, `rel ${addr}-${d + idx * scale}`);
    s.regs.set(ix, BigInt(idx));
    return `${size} [${b}+${ix}*${scale}+${d}]`;
  }
  if (k === 3) {
    // [r12] and [r13] need a SIB byte / a disp8 in their encodings
    const b = pickFree(['r12', 'r13']);
    s.bases.set(b, `rel ${addr}`);
    return `${size} [${b}]`;
  }
  // 32-bit address size: the base holds the address in its low half and garbage above, which
  // the 0x67 prefix must ignore (set-up runs before popfq, so bts may clobber flags there)
  const b = pickFree(['rbx', 'rsi', 'r9', 'r14']);
  s.late.push(`lea ${SUB[b][32]}, [rel ${addr}]`, `bts ${b}, 45`, `bts ${b}, 62`);
  s.regs.set(b, 0n);
  return `${size} [${SUB[b][32]}]`;
}

// ---------------------------------------------------------------------------------------------
// generators, one per category; each returns its sequences in order

type Gen = (r: Rng) => Seq[];

const ALU2 = ['add', 'adc', 'sub', 'sbb', 'and', 'or', 'xor', 'cmp', 'test'] as const;
const WIDTHS = [8, 16, 32, 64] as const;

/** One ALU instruction of width w with a random form; returns its text. */
function aluInsn(s: Seq, mn: string, w: number, form?: string): void {
  const r = s.r;
  const f = form ?? r.pick(['rr', 'ri', 'rm', 'mr', 'mi', 'rr']);
  const allowHigh = w === 8 && r.chance(0.4);
  const info: InsnInfo = { mn, width: w as 8 };
  if (f === 'rr') {
    const a = s.operand(w, edge(r, w), { allowHigh, noRex: allowHigh });
    const b = r.chance(0.1) ? a : s.operand(w, edge(r, w), { allowHigh, noRex: allowHigh });
    s.tags.push(`${mn}:${w}:rr`);
    s.insn(`${mn} ${a.name}, ${b.name}`, info);
  } else if (f === 'ri') {
    const a = s.operand(w, edge(r, w), { allowHigh, noRex: allowHigh });
    const v = r.chance(0.3) ? BigInt(r.pick([0, 1, 0x7f, 0x80, 0xff])) : edge(r, Math.min(w, 32));
    s.tags.push(`${mn}:${w}:ri`);
    s.insn(`${mn} ${a.name}, ${imm(v, w)}`, info);
  } else {
    const off = 8 * r.int(SCRATCH_BYTES / 8 - 1);
    s.mem(`rel scratch+${off}`, r.next64() & ~mask(w) | edge(r, w));
    s.dump(`scratch+${off}`, 1);
    const m = memOperand(s, `scratch+${off}`, w, { noRex: allowHigh });
    if (f === 'mi') {
      s.tags.push(`${mn}:${w}:mi`);
      s.insn(`${mn} ${m}, ${imm(edge(r, Math.min(w, 32)), w)}`, info);
    } else {
      const a = s.operand(w, edge(r, w), { allowHigh, noRex: allowHigh });
      if (f === 'rm' && mn !== 'test') {
        s.tags.push(`${mn}:${w}:rm`);
        s.insn(`${mn} ${a.name}, ${m}`, info);
      } else {
        s.tags.push(`${mn}:${w}:mr`);
        s.insn(`${mn} ${m}, ${a.name}`, info);
      }
    }
  }
}

const genAlu: Gen = (r) => {
  const out: Seq[] = [];
  for (const mn of ALU2) {
    for (const w of WIDTHS) {
      for (const form of ['rr', 'ri', r.pick(['rm', 'mr', 'mi'])]) {
        const s = new Seq(r, `${mn} ${w}-bit ${form}`);
        s.tags.push('alu');
        s.flags(randomFlags(r));
        aluInsn(s, mn, w, form);
        // 0-2 followers of the same width reading/writing flags (chains)
        const n = r.int(3);
        for (let k = 0; k < n; k++) aluInsn(s, r.pick(['adc', 'sbb', 'add', 'sub', 'cmp', 'xor']), w, 'rr');
        out.push(s);
      }
    }
  }
  return out;
};

const genUnary: Gen = (r) => {
  const out: Seq[] = [];
  for (const mn of ['not', 'neg', 'inc', 'dec']) {
    for (const w of WIDTHS) {
      for (const where of ['reg', 'reg', 'mem']) {
        const s = new Seq(r, `${mn} ${w}-bit ${where}`);
        s.tags.push('unary', `${mn}:${w}`);
        s.flags(randomFlags(r));
        const info: InsnInfo = { mn, width: w };
        if (where === 'reg') {
          const a = s.operand(w, edge(r, w), { allowHigh: w === 8 && r.chance(0.4) });
          s.insn(`${mn} ${a.name}`, info);
        } else {
          const off = 8 * r.int(SCRATCH_BYTES / 8);
          s.mem(`rel scratch+${off}`, r.next64() & ~mask(w) | edge(r, w));
          s.dump(`scratch+${off}`, 1);
          s.insn(`${mn} ${memOperand(s, `scratch+${off}`, w)}`, info);
        }
        if (r.chance(0.4)) {
          // a carry consumer after inc/dec (CF passes through) or after neg/not
          const b = s.operand(w, edge(r, w));
          const c = s.operand(w, edge(r, w));
          s.insn(`adc ${b.name}, ${c.name}`, { mn: 'adc', width: w });
        }
        out.push(s);
      }
    }
  }
  return out;
};

const SHIFTS = ['shl', 'sal', 'shr', 'sar', 'rol', 'ror', 'rcl', 'rcr'] as const;

const genShift: Gen = (r) => {
  const out: Seq[] = [];
  for (const mn of SHIFTS) {
    for (const w of WIDTHS) {
      // counts: by-1 form, imm 0, >= width, masked (33/65), random, by cl
      const counts: { c: number; how: '1' | 'imm' | 'cl' }[] = [
        { c: 1, how: '1' },
        { c: 0, how: r.pick(['imm', 'cl'] as const) },
        { c: 1, how: 'cl' },
        { c: 2 + r.int(w - 2), how: 'imm' },
        { c: r.pick([w - 1, w]), how: r.pick(['imm', 'cl'] as const) },
        { c: r.pick(w === 64 ? [64, 65, 127] : [w + 1, 31, 32, 33]), how: r.pick(['imm', 'cl'] as const) },
        { c: r.pick(w === 64 ? [63, 33, 32] : w === 32 ? [31, 33, 65] : [w + 1, 17, 9, 24, 0xff]), how: 'cl' },
        { c: r.int(256), how: r.pick(['imm', 'cl'] as const) },
      ];
      for (const { c, how } of counts) {
        const s = new Seq(r, `${mn} ${w}-bit by ${how === '1' ? '1' : how === 'cl' ? `cl=${c}` : c}`);
        s.tags.push('shift', `${mn}:${w}`, `${mn}:${w}:${maskedCount(w, c) === 0 ? 'count0' : maskedCount(w, c) === 1 ? 'count1' : 'countn'}`);
        s.flags(randomFlags(r));
        const info: InsnInfo = { mn, width: w, count: c };
        let dst: string;
        const inMem = r.chance(0.15);
        if (how === 'cl') {
          s.set('rcx', (r.next64() & ~0xffn) | BigInt(c));
        }
        if (inMem) {
          const off = 8 * r.int(SCRATCH_BYTES / 8);
          s.mem(`rel scratch+${off}`, r.next64() & ~mask(w) | edge(r, w));
          s.dump(`scratch+${off}`, 1);
          dst = memOperand(s, `scratch+${off}`, w);
        } else {
          dst = s.operand(w, edge(r, w), { allowHigh: w === 8 && r.chance(0.3), exclude: ['rcx'] }).name;
        }
        const src = how === '1' ? '1' : how === 'cl' ? 'cl' : String(c);
        s.insn(`${mn} ${dst}, ${src}`, info);
        out.push(s);
      }
    }
  }
  // 8/16-bit rotates whose masked count is a multiple of the rotation period (no bit moves)
  const period: [string, 8 | 16, number[]][] = [
    ['rcl', 8, [9, 18, 27]], ['rcr', 8, [9, 18, 27]], ['rcl', 16, [17]], ['rcr', 16, [17]],
    ['rol', 8, [8, 16, 24]], ['ror', 8, [8, 24]], ['rol', 16, [16]], ['ror', 16, [16]],
  ];
  for (const [mn, w, cs] of period) {
    for (const c of cs) {
      for (const how of ['imm', 'cl'] as const) {
        const s = new Seq(r, `${mn} ${w}-bit by ${how === 'cl' ? `cl=${c}` : c} (whole periods)`);
        s.tags.push('shift', `${mn}:${w}`, `${mn}:${w}:period`);
        s.flags(randomFlags(r));
        if (how === 'cl') s.set('rcx', (r.next64() & ~0xffn) | BigInt(c));
        const d = s.operand(w, edge(r, w), { exclude: ['rcx'] });
        s.insn(`${mn} ${d.name}, ${how === 'cl' ? 'cl' : c}`, { mn, width: w, count: c });
        out.push(s);
      }
    }
  }
  // a few chains: a 1-bit shift feeding adc/rcl (multi-word shifts), defined flags throughout
  for (let k = 0; k < 8; k++) {
    const w = r.pick([32, 64] as const);
    const s = new Seq(r, `${w}-bit multi-word shift chain`);
    s.tags.push('shift', 'shift-chain');
    s.flags(randomFlags(r));
    const a = s.operand(w, edge(r, w));
    const b = s.operand(w, edge(r, w));
    const c = s.operand(w, edge(r, w));
    if (k % 2) {
      s.insn(`shl ${a.name}, 1`, { mn: 'shl', width: w, count: 1 });
      s.insn(`rcl ${b.name}, 1`, { mn: 'rcl', width: w, count: 1 });
      s.insn(`rcl ${c.name}, 1`, { mn: 'rcl', width: w, count: 1 });
    } else {
      s.insn(`shr ${c.name}, 1`, { mn: 'shr', width: w, count: 1 });
      s.insn(`rcr ${b.name}, 1`, { mn: 'rcr', width: w, count: 1 });
      s.insn(`rcr ${a.name}, 1`, { mn: 'rcr', width: w, count: 1 });
      s.insn(`adc ${a.name}, 0`, { mn: 'adc', width: w });
    }
    out.push(s);
  }
  return out;
};

/** Dividend/divisor for div/idiv of width w whose quotient fits (no #DE). */
function divOperands(r: Rng, w: number, signed: boolean): { hi: bigint; lo: bigint; d: bigint } {
  const W = BigInt(w);
  for (;;) {
    let d = edge(r, w);
    if ((d & mask(w)) === 0n) d = 1n + BigInt(r.int(1000));
    const kind = r.int(4);
    let dividend: bigint; // as an unsigned 2w-bit pattern
    if (kind === 0) dividend = edge(r, w); // high half zero
    else if (kind === 1) dividend = ((r.next64() & mask(w)) << W) | (r.next64() & mask(w));
    else if (kind === 2) dividend = (mask(w) << W) | edge(r, w); // sign-extended negative
    else dividend = ((r.next64() % (d === 0n ? 1n : d)) << W) | (r.next64() & mask(w)); // unsigned-safe
    dividend &= (1n << (2n * W)) - 1n;
    if (!signed) {
      const q = dividend / (d & mask(w));
      if (q <= mask(w)) return { hi: dividend >> W, lo: dividend & mask(w), d: d & mask(w) };
    } else {
      const n = dividend >> (2n * W - 1n) ? dividend - (1n << (2n * W)) : dividend;
      const ds = toSigned(d, w);
      if (ds === 0n) continue;
      const q = n / ds; // BigInt division truncates toward zero, as idiv does
      if (q >= -(1n << (W - 1n)) && q < 1n << (W - 1n)) return { hi: dividend >> W, lo: dividend & mask(w), d: d & mask(w) };
    }
  }
}

const genMulDiv: Gen = (r) => {
  const out: Seq[] = [];
  const mulEdges = (w: number): bigint => (r.chance(0.5) ? edge(r, w) : r.pick([mask(w), 1n << BigInt(w - 1), 2n, 3n, (1n << BigInt(w / 2)) + 1n]) & mask(w));
  for (const mn of ['mul', 'imul'] as const) {
    for (const w of WIDTHS) {
      for (let k = 0; k < 4; k++) {
        const s = new Seq(r, `${mn} ${w}-bit one operand`);
        s.tags.push('muldiv', `${mn}:${w}:1op`);
        s.flags(randomFlags(r));
        s.set('rax', withUpper(r, w, mulEdges(w)));
        if (w > 8) s.set('rdx', r.next64());
        let src: string;
        if (k === 3) {
          const off = 8 * r.int(SCRATCH_BYTES / 8);
          s.mem(`rel scratch+${off}`, r.next64() & ~mask(w) | mulEdges(w));
          src = memOperand(s, `scratch+${off}`, w);
        } else {
          src = s.operand(w, mulEdges(w), { allowHigh: w === 8 && k === 1, exclude: ['rax', 'rdx'] }).name;
        }
        s.insn(`${mn} ${src}`, { mn, width: w });
        out.push(s);
      }
    }
  }
  for (const w of [16, 32, 64] as const) {
    for (let k = 0; k < 5; k++) {
      const s = new Seq(r, `imul ${w}-bit ${k < 3 ? 'two' : 'three'} operands`);
      s.tags.push('muldiv', `imul:${w}:${k < 3 ? '2op' : '3op'}`);
      s.flags(randomFlags(r));
      const a = s.operand(w, mulEdges(w));
      let src: string;
      if (k === 2 || k === 4) {
        const off = 8 * r.int(SCRATCH_BYTES / 8);
        s.mem(`rel scratch+${off}`, r.next64() & ~mask(w) | mulEdges(w));
        src = memOperand(s, `scratch+${off}`, w);
      } else {
        src = s.operand(w, mulEdges(w)).name;
      }
      if (k < 3) s.insn(`imul ${a.name}, ${src}`, { mn: 'imul', width: w });
      else {
        const iv = r.chance(0.5) ? BigInt(r.pick([-1, 127, -128, 2, 3])) : edge(r, Math.min(w, 32));
        s.insn(`imul ${a.name}, ${src}, ${imm(iv, w)}`, { mn: 'imul', width: w });
      }
      out.push(s);
    }
  }
  for (const mn of ['div', 'idiv'] as const) {
    for (const w of WIDTHS) {
      for (let k = 0; k < 4; k++) {
        const s = new Seq(r, `${mn} ${w}-bit`);
        s.tags.push('muldiv', `${mn}:${w}`);
        s.flags(randomFlags(r));
        const { hi, lo, d } = divOperands(r, w, mn === 'idiv');
        if (w === 8) {
          s.set('rax', (r.next64() & ~0xffffn) | (hi << 8n) | lo);
        } else {
          s.set('rax', withUpper(r, w, lo));
          s.set('rdx', withUpper(r, w, hi));
        }
        let src: string;
        if (k === 3) {
          const off = 8 * r.int(SCRATCH_BYTES / 8);
          s.mem(`rel scratch+${off}`, r.next64() & ~mask(w) | d);
          src = memOperand(s, `scratch+${off}`, w, { noRex: true });
        } else {
          src = s.operand(w, d, { allowHigh: w === 8 && k === 1, exclude: ['rax', 'rdx'] }).name;
        }
        s.insn(`${mn} ${src}`, { mn, width: w });
        out.push(s);
      }
    }
  }
  return out;
};

const genExchange: Gen = (r) => {
  const out: Seq[] = [];
  for (const w of WIDTHS) {
    // xchg reg,reg / reg,mem (and the xchg eax,eax special case in 64-bit mode)
    for (let k = 0; k < 3; k++) {
      const s = new Seq(r, `xchg ${w}-bit`);
      s.tags.push('exchange', `xchg:${w}`);
      s.flags(randomFlags(r));
      const a = s.operand(w, edge(r, w), { allowHigh: w === 8 && k === 0 });
      if (k === 2) {
        const off = 8 * r.int(SCRATCH_BYTES / 8);
        s.mem(`rel scratch+${off}`, r.next64());
        s.dump(`scratch+${off}`, 1);
        s.insn(`xchg ${memOperand(s, `scratch+${off}`, w, { noRex: a.high })}, ${a.name}`, { mn: 'xchg', width: w });
      } else {
        const b = k === 1 && w === 32 ? a : s.operand(w, edge(r, w), { allowHigh: w === 8 && k === 0, noRex: a.high });
        s.insn(`xchg ${a.name}, ${b.name}`, { mn: 'xchg', width: w });
      }
      out.push(s);
    }
    for (let k = 0; k < 3; k++) {
      const s = new Seq(r, `xadd ${w}-bit`);
      s.tags.push('exchange', `xadd:${w}`);
      s.flags(randomFlags(r));
      const a = s.operand(w, edge(r, w));
      if (k === 2) {
        const off = 8 * r.int(SCRATCH_BYTES / 8);
        s.mem(`rel scratch+${off}`, r.next64() & ~mask(w) | edge(r, w));
        s.dump(`scratch+${off}`, 1);
        s.insn(`xadd ${memOperand(s, `scratch+${off}`, w)}, ${a.name}`, { mn: 'xadd', width: w });
      } else {
        const b = k === 1 ? a : s.operand(w, edge(r, w));
        s.insn(`xadd ${b.name}, ${a.name}`, { mn: 'xadd', width: w });
      }
      out.push(s);
    }
    // cmpxchg: equal and unequal, register and memory destination
    for (let k = 0; k < 4; k++) {
      const s = new Seq(r, `cmpxchg ${w}-bit ${k % 2 ? 'equal' : 'unequal'} ${k < 2 ? 'reg' : 'mem'}`);
      s.tags.push('exchange', `cmpxchg:${w}`, `cmpxchg:${w}:${k < 2 ? 'reg' : 'mem'}-${k % 2 ? 'equal' : 'unequal'}`);
      s.flags(randomFlags(r));
      const acc = edge(r, w);
      s.set('rax', withUpper(r, w, acc));
      const destVal = k % 2 ? acc : (acc ^ (1n + BigInt(r.int(7)))) & mask(w);
      const src = s.operand(w, edge(r, w), { exclude: ['rax'] });
      if (k < 2) {
        const d = s.operand(w, destVal, { exclude: ['rax'] });
        s.insn(`cmpxchg ${d.name}, ${src.name}`, { mn: 'cmpxchg', width: w });
      } else {
        const off = 8 * r.int(SCRATCH_BYTES / 8);
        s.mem(`rel scratch+${off}`, (r.next64() & ~mask(w)) | destVal);
        s.dump(`scratch+${off}`, 1);
        s.insn(`${r.chance(0.5) ? 'lock ' : ''}cmpxchg ${memOperand(s, `scratch+${off}`, w)}, ${src.name}`, { mn: 'cmpxchg', width: w });
      }
      out.push(s);
    }
  }
  return out;
};

const genBits: Gen = (r) => {
  const out: Seq[] = [];
  for (const mn of ['bt', 'bts', 'btr', 'btc'] as const) {
    for (const w of [16, 32, 64] as const) {
      // reg,reg (offset masked by width) and reg,imm
      for (let k = 0; k < 2; k++) {
        const s = new Seq(r, `${mn} ${w}-bit reg, ${k ? 'imm' : 'reg'}`);
        s.tags.push('bits', `${mn}:${w}`);
        s.flags(randomFlags(r));
        const a = s.operand(w, edge(r, w));
        const off = r.pick([0, 1, w - 1, w, w + 1, 63, 64, 200, r.int(256)]);
        if (k) s.insn(`${mn} ${a.name}, ${off & 0xff}`, { mn, width: w });
        else s.insn(`${mn} ${a.name}, ${s.operand(w, withUpper(r, w, BigInt(off))).name}`, { mn, width: w });
        out.push(s);
      }
      // mem,imm (offset masked by width) and mem,reg with large and negative bit offsets
      for (let k = 0; k < 2; k++) {
        const s = new Seq(r, `${mn} ${w}-bit mem, ${k ? 'reg (large bit offset)' : 'imm'}`);
        s.tags.push('bits', `${mn}:${w}:mem`);
        s.flags(randomFlags(r));
        if (k === 0) {
          const off = 8 * r.int(SCRATCH_BYTES / 8);
          s.mem(`rel scratch+${off}`, r.next64());
          s.dump(`scratch+${off}`, 1);
          s.insn(`${mn} ${memOperand(s, `scratch+${off}`, w)}, ${r.int(256)}`, { mn, width: w });
        } else {
          const lim = w === 16 ? 0x7fff : 0xfffff;
          let bit = BigInt(r.int(2 * lim + 1) - lim);
          if (r.chance(0.2)) bit = BigInt(r.pick([-1, -w, w * 3 + 5, lim, -lim - 1]));
          // operand-size bit string: the w-bit unit at base + (bit >> log2 w) * w/8
          const unit = (bit >> BigInt(Math.log2(w))) * BigInt(w / 8);
          const at = BT_BASE + Number(unit);
          const q = at & ~7;
          s.mem(`0x${q.toString(16)}`, r.next64());
          s.dump(`0x${q.toString(16)}`, q + 8 < at + w / 8 ? 2 : 1);
          const b = s.base(`0x${BT_BASE.toString(16)}`);
          const o = s.operand(w, bit & mask(w), { exclude: [b] });
          s.insn(`${mn} ${SIZE[w]} [${b}], ${o.name}`, { mn, width: w });
        }
        out.push(s);
      }
    }
  }
  for (const mn of ['bsf', 'bsr'] as const) {
    for (const w of [16, 32, 64] as const) {
      for (let k = 0; k < 6; k++) {
        const zero = k === 0 || k >= 4;
        const s = new Seq(r, `${mn} ${w}-bit${zero ? ' zero source' : ''}`);
        s.tags.push('bits', `${mn}:${w}`, ...(zero ? [`${mn}:zero`] : []));
        s.flags(k === 5 ? randomFlags(r) ^ STATUS : randomFlags(r));
        const srcVal = zero ? 0n : k === 3 ? (1n << BigInt(r.int(w))) : edge(r, w) || 0x10n;
        const d = s.operand(w, r.next64());
        if (zero) s.set(d.r64, r.next64() | (1n << 63n)); // garbage above a 16/32-bit destination
        let src: string;
        if (k === 2 || k === 5) {
          const off = 8 * r.int(SCRATCH_BYTES / 8);
          s.mem(`rel scratch+${off}`, r.next64() & ~mask(w) | srcVal);
          src = memOperand(s, `scratch+${off}`, w);
        } else {
          src = s.operand(w, srcVal).name;
        }
        s.insn(`${mn} ${d.name}, ${src}`, { mn, width: w, srcZero: srcVal === 0n, dstReg64: d.r64 });
        out.push(s);
      }
    }
  }
  return out;
};

const genCond: Gen = (r) => {
  const out: Seq[] = [];
  for (const cc of cc16) {
    const names = [cc, ...(ccAlias[cc] ?? [])];
    const ccFlags = conditionFlags(cc);
    for (let k = 0; k < 4; k++) {
      const s = new Seq(r, `set/cmov/j${cc}`);
      s.tags.push('cond', `cc:${cc}`);
      // flag inputs: all combinations of the tested flags appear over the 4 runs, plus noise
      let f = Number(r.next64() & BigInt(STATUS));
      const bits = [CFb, PFb, ZFb, SFb, OFb].filter((b) => ccFlags & b);
      bits.forEach((b, i) => { f = (k >> i) & 1 ? f | b : f & ~b; });
      if (cc === 'l' || cc === 'ge' || cc === 'le' || cc === 'g') {
        if (k === 3) f = (f | SFb) & ~OFb;
      }
      s.flags(f);
      const n = () => r.pick(names);
      const a = s.operand(8, r.next64(), { allowHigh: r.chance(0.4) });
      s.insn(`set${n()} ${a.name}`, { mn: `set${cc}`, width: 8 });
      const w = r.pick([16, 32, 64] as const);
      const d = s.operand(w, edge(r, w));
      if (r.chance(0.3)) {
        const off = 8 * r.int(SCRATCH_BYTES / 8);
        s.mem(`rel scratch+${off}`, r.next64());
        s.insn(`cmov${n()} ${d.name}, ${memOperand(s, `scratch+${off}`, w)}`, { mn: `cmov${cc}`, width: w });
      } else {
        s.insn(`cmov${n()} ${d.name}, ${s.operand(w, edge(r, w)).name}`, { mn: `cmov${cc}`, width: w });
      }
      if (r.chance(0.3)) {
        const off = 8 * r.int(SCRATCH_BYTES / 8);
        s.mem(`rel scratch+${off}`, r.next64());
        s.dump(`scratch+${off}`, 1);
        s.insn(`set${n()} byte [rel scratch+${off}]`, { mn: `set${cc}`, width: 8 });
      }
      const t = s.operand(64, r.next64());
      const lbl = `cc_${++labelCounter}`;
      const near = r.chance(0.3);
      s.insn(`j${n()} ${near ? 'near ' : ''}${lbl}`, { mn: `j${cc}`, width: 0 });
      s.raw(`lea ${t.name}, [${t.name}+1]`);
      s.raw(`${lbl}:`);
      out.push(s);
    }
  }
  return out;
};
const CFb = FLAG.CF, PFb = FLAG.PF, ZFb = FLAG.ZF, SFb = FLAG.SF, OFb = FLAG.OF;

const genMisc: Gen = (r) => {
  const out: Seq[] = [];
  // multi-precision adc/sbb chains with carry in and out
  for (let k = 0; k < 16; k++) {
    const w = k < 10 ? 64 : r.pick([8, 16, 32] as const);
    const sub = k % 2 === 1;
    const s = new Seq(r, `${w * 4}-bit ${sub ? 'sbb' : 'adc'} chain, CF in ${k % 4 >= 2 ? 1 : 0}`);
    s.tags.push('misc', 'carry-chain');
    s.flags((randomFlags(r) & ~CFb) | (k % 4 >= 2 ? CFb : 0));
    const n = 2 + r.int(3);
    for (let i = 0; i < n; i++) {
      const a = s.operand(w, r.chance(0.5) ? mask(w) : edge(r, w));
      const b = s.operand(w, r.chance(0.5) ? (r.chance(0.5) ? 1n : 0n) : edge(r, w));
      const mn = i === 0 && r.chance(0.5) ? (sub ? 'sub' : 'add') : sub ? 'sbb' : 'adc';
      s.insn(`${mn} ${a.name}, ${b.name}`, { mn, width: w });
    }
    if (r.chance(0.5)) {
      const c = s.operand(8, 0n);
      s.insn(`setc ${c.name}`, { mn: 'setb', width: 8 });
    }
    out.push(s);
  }
  // lea forms
  const leaForms = [
    (b: string, i: string) => `[${b}+${i}*8+0x7f]`, (b: string, i: string) => `[${b}+${i}*2-0x80]`,
    (b: string) => `[${b}+${b}*4]`, (_b: string, i: string) => `[${i}*4+0x12345678]`,
    (b: string) => `[${b}-1]`, (b: string, i: string) => `[${b}+${i}]`,
  ];
  for (let k = 0; k < 16; k++) {
    const s = new Seq(r, 'lea');
    s.tags.push('misc', 'lea');
    s.flags(randomFlags(r));
    const w = r.pick([16, 32, 64, 64] as const);
    const d = s.operand(w, r.next64());
    const b = s.operand(64, edge(r, 64));
    const i = s.operand(64, edge(r, 64));
    if (k === 14) s.insn(`lea ${d.name}, [rel scratch+0x20]`, { mn: 'lea', width: w });
    else if (k === 15) s.insn(`lea ${regOf(d.r64, 64).name}, [${SUB[b.r64][32]}+${SUB[i.r64][32]}*2+0x10]`, { mn: 'lea', width: 64 });
    else s.insn(`lea ${d.name}, ${r.pick(leaForms)(b.name, i.name)}`, { mn: 'lea', width: w });
    out.push(s);
  }
  // movzx / movsx / movsxd
  const ext: { mn: string; dw: number; sw: number }[] = [
    { mn: 'movzx', dw: 16, sw: 8 }, { mn: 'movzx', dw: 32, sw: 8 }, { mn: 'movzx', dw: 64, sw: 8 },
    { mn: 'movzx', dw: 32, sw: 16 }, { mn: 'movzx', dw: 64, sw: 16 }, { mn: 'movsx', dw: 16, sw: 8 },
    { mn: 'movsx', dw: 32, sw: 8 }, { mn: 'movsx', dw: 64, sw: 8 }, { mn: 'movsx', dw: 32, sw: 16 },
    { mn: 'movsx', dw: 64, sw: 16 }, { mn: 'movsxd', dw: 64, sw: 32 },
  ];
  for (const e of ext) {
    for (let k = 0; k < 2; k++) {
      const s = new Seq(r, `${e.mn} r${e.dw}, ${k ? 'm' : 'r'}${e.sw}`);
      s.tags.push('misc', `${e.mn}:${e.dw}:${e.sw}`);
      s.flags(randomFlags(r));
      const v = r.pick([0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn, 0x7fffffffn, 0x80000000n, r.next64()]) & mask(e.sw);
      const high = e.sw === 8 && k === 0 && e.dw < 64 && r.chance(0.5);
      const d = s.operand(e.dw, r.next64(), { noRex: high });
      let src: string;
      if (k) {
        const off = 8 * r.int(SCRATCH_BYTES / 8);
        s.mem(`rel scratch+${off}`, (r.next64() & ~mask(e.sw)) | v);
        src = memOperand(s, `scratch+${off}`, e.sw, { noRex: high });
      } else {
        src = s.operand(e.sw, v, { allowHigh: high, noRex: high }).name;
      }
      s.insn(`${e.mn} ${d.name}, ${src}`, { mn: e.mn, width: e.dw as 64 });
      out.push(s);
    }
  }
  // cbw cwde cdqe cwd cdq cqo
  for (const mn of ['cbw', 'cwde', 'cdqe', 'cwd', 'cdq', 'cqo']) {
    for (let k = 0; k < 3; k++) {
      const s = new Seq(r, mn);
      s.tags.push('misc', mn);
      s.flags(randomFlags(r));
      const w = { cbw: 8, cwde: 16, cdqe: 32, cwd: 16, cdq: 32, cqo: 64 }[mn] as number;
      const v = k === 0 ? 1n << BigInt(w - 1) : k === 1 ? (1n << BigInt(w - 1)) - 1n : r.next64();
      s.set('rax', (r.next64() & ~mask(w)) | (v & mask(w)));
      s.set('rdx', r.next64());
      s.insn(mn, { mn, width: 0 });
      out.push(s);
    }
  }
  // pushfq / popfq round trips, lahf / sahf, cmc / clc / stc / cld / std
  const popValues = [0x0, 0xffffffff & ~0x100, 0x3002, 0x40002, 0x200002, 0x4002, 0x8d7, 0x28, 0x8000, 0x10002, 0x20002, 0x80000 | 0x100000 | 0x2];
  for (const v of popValues) {
    const s = new Seq(r, `popfq 0x${v.toString(16)}; pushfq`);
    s.tags.push('misc', 'pushf-popf');
    s.flags(randomFlags(r));
    const t = s.operand(64, BigInt(v));
    s.insn(`push ${t.name}`, { mn: 'push', width: 64 });
    s.insn('popfq', { mn: 'popfq', width: 64 });
    s.insn('pushfq', { mn: 'pushfq', width: 64 });
    const u = s.operand(64, r.next64());
    s.insn(`pop ${u.name}`, { mn: 'pop', width: 64 });
    out.push(s);
  }
  for (let k = 0; k < 8; k++) {
    const s = new Seq(r, k < 4 ? 'lahf' : 'sahf');
    s.tags.push('misc', k < 4 ? 'lahf' : 'sahf');
    s.flags(k % 2 ? (randomFlags(r) | STATUS) : randomFlags(r));
    s.set('rax', r.next64());
    s.insn(k < 4 ? 'db 0x9f ; lahf' : 'db 0x9e ; sahf', { mn: k < 4 ? 'lahf' : 'sahf', width: 8 });
    out.push(s);
  }
  for (const mn of ['cmc', 'clc', 'stc', 'cld', 'std']) {
    const s = new Seq(r, mn);
    s.tags.push('misc', mn);
    s.flags(randomFlags(r));
    s.insn(mn, { mn, width: 0 });
    const a = s.operand(32, edge(r, 32));
    const b = s.operand(32, edge(r, 32));
    s.insn(`adc ${a.name}, ${b.name}`, { mn: 'adc', width: 32 });
    out.push(s);
  }
  return out;
};

const STR: Record<string, { w: number; acc: boolean; cmp: boolean }> = {
  movs: { w: 0, acc: false, cmp: false }, stos: { w: 0, acc: true, cmp: false }, lods: { w: 0, acc: true, cmp: false },
  cmps: { w: 0, acc: false, cmp: true }, scas: { w: 0, acc: true, cmp: true },
};

const genString: Gen = (r) => {
  const out: Seq[] = [];
  const suffix: Record<number, string> = { 8: 'b', 16: 'w', 32: 'd', 64: 'q' };
  for (const op of Object.keys(STR)) {
    for (const w of WIDTHS) {
      for (let k = 0; k < 3; k++) {
        const df = k === 2 || (k === 1 && r.chance(0.3));
        const rep = k === 0 ? '' : STR[op].cmp ? r.pick(['repe', 'repne']) : 'rep';
        const count = k === 0 ? 1 : r.pick([0, 1, 3, 5, 0, 4]);
        const s = new Seq(r, `${rep ? `${rep} ` : ''}${op}${suffix[w]} DF=${df ? 1 : 0} rcx=${count}`);
        s.tags.push('string', `${op}:${w}`, ...(rep ? [`${rep}-${op}`] : []), ...(df ? ['string-df1'] : []));
        s.flags((randomFlags(r, false) & ~FLAG.DF) | (df ? FLAG.DF : 0));
        // src = scratch+0x00..0x3f, dst = scratch+0x40..0x7f; for compares make dst mostly equal
        const srcQ: bigint[] = [];
        for (let i = 0; i < 8; i++) srcQ.push(r.next64());
        const dstQ = srcQ.map((q) => (STR[op].cmp && r.chance(0.7) ? q : r.next64()));
        const unit = w / 8;
        // for cmps/scas, plant a difference (or a match for scas) somewhere in the first elements
        let accVal = r.next64();
        if (op === 'scas') {
          const e = r.int(5);
          const byteOff = df ? 0x40 - unit * (e + 1) : unit * e; // element e from the start position
          const q = Math.floor((0x40 + byteOff) / 8) - 8;
          const sh = BigInt(((0x40 + byteOff) % 8) * 8);
          const elem = (dstQ[q] >> sh) & mask(w);
          accVal = rep === 'repne' ? (r.next64() & ~mask(w)) | elem : (r.next64() & ~mask(w)) | (elem ^ (r.chance(0.5) ? 0n : 1n));
        }
        for (let i = 0; i < 8; i++) s.mem(`rel scratch+${8 * i}`, srcQ[i]);
        for (let i = 0; i < 8; i++) s.mem(`rel scratch+${0x40 + 8 * i}`, dstQ[i]);
        if (op !== 'lods' && op !== 'cmps' && op !== 'scas') s.dump('scratch+0x40', 8);
        s.set('rcx', k === 0 ? r.next64() : count === 0 && r.chance(0.5) ? 0n : BigInt(count));
        s.set('rax', accVal);
        s.used.add('rsi'); s.used.add('rdi');
        const startSrc = df ? `rel scratch+${0x40 - unit}` : 'rel scratch';
        const startDst = df ? `rel scratch+${0x80 - unit}` : 'rel scratch+0x40';
        s.bases.set('rsi', startSrc);
        s.bases.set('rdi', startDst);
        const mn = `${op}${suffix[w]}`;
        const info: InsnInfo = { mn: rep && STR[op].cmp ? `rep-${op}` : mn, width: w };
        s.insn(`${rep ? `${rep} ` : ''}${mn}`, info);
        out.push(s);
      }
    }
  }
  return out;
};

const genLoop: Gen = (r) => {
  const out: Seq[] = [];
  const cases: { mn: string; rcx: bigint; zf?: boolean }[] = [
    { mn: 'loop', rcx: 1n }, { mn: 'loop', rcx: 3n }, { mn: 'loop', rcx: 5n },
    { mn: 'loope', rcx: 4n, zf: true }, { mn: 'loope', rcx: 4n, zf: false }, { mn: 'loope', rcx: 0n, zf: false },
    { mn: 'loopne', rcx: 4n, zf: false }, { mn: 'loopne', rcx: 4n, zf: true }, { mn: 'loopz', rcx: 2n, zf: true },
    { mn: 'loopnz', rcx: 0n, zf: true },
    { mn: 'jrcxz', rcx: 0n }, { mn: 'jrcxz', rcx: 1n }, { mn: 'jrcxz', rcx: 0x100000000n },
    { mn: 'jecxz', rcx: 0x100000000n }, { mn: 'jecxz', rcx: 1n }, { mn: 'jecxz', rcx: 0n },
  ];
  for (const c of cases) {
    const s = new Seq(r, `${c.mn} rcx=${hex(c.rcx)}${c.zf === undefined ? '' : ` ZF=${c.zf ? 1 : 0}`}`);
    s.tags.push('loop', c.mn);
    let f = randomFlags(r);
    if (c.zf !== undefined) f = c.zf ? f | ZFb : f & ~ZFb;
    s.flags(f);
    s.set('rcx', c.rcx);
    const t = s.operand(64, r.next64());
    const lbl = `lp_${++labelCounter}`;
    if (c.mn.startsWith('loop')) {
      s.raw(`${lbl}:`);
      s.raw(`lea ${t.name}, [${t.name}+1]`);
      s.insn(`${c.mn} ${lbl}`, { mn: c.mn, width: 0 });
    } else {
      s.insn(`${c.mn} ${lbl}`, { mn: c.mn, width: 0 });
      s.raw(`lea ${t.name}, [${t.name}+1]`);
      s.raw(`${lbl}:`);
    }
    out.push(s);
  }
  return out;
};

/** Console strings for the string-output sequences: forward, and reversed for DF=1. */
const IO_TEXT = 'o outs-ABCDEFGHIJKLMNOPQRSTUVWXYZ';

const genIo: Gen = (r) => {
  const out: Seq[] = [];
  const n = IO_TEXT.length + 1; // with the newline
  const cases: { title: string; df: boolean; lines: string[]; rcx: number }[] = [
    { title: 'rep outsb DF=0', df: false, rcx: n, lines: ['db 0xf3, 0x6e ; rep outsb'] },
    { title: 'rep outsb DF=1 (reversed copy reads forward)', df: true, rcx: n, lines: ['db 0xf3, 0x6e ; rep outsb'] },
    { title: 'rep outsb rcx=0 (no output)', df: false, rcx: 0, lines: ['db 0xf3, 0x6e ; rep outsb'] },
    { title: 'rep outsb rcx=0 DF=1', df: true, rcx: 0, lines: ['db 0xf3, 0x6e ; rep outsb'] },
    { title: 'outsb, outsb, rep outsb DF=0', df: false, rcx: n - 2, lines: ['db 0x6e ; outsb', 'db 0x6e ; outsb', 'db 0xf3, 0x6e ; rep outsb'] },
    { title: 'outsb, outsb, rep outsb DF=1', df: true, rcx: n - 2, lines: ['db 0x6e ; outsb', 'db 0x6e ; outsb', 'db 0xf3, 0x6e ; rep outsb'] },
    { title: 'out 0xe9, al / out dx, al, then rep outsb', df: false, rcx: n - 2, lines: ['mov al, [rsi]', 'out 0xe9, al', 'mov al, [rsi+1]', 'out dx, al', 'add rsi, 2', 'db 0xf3, 0x6e ; rep outsb'] },
  ];
  for (const c of cases) {
    const s = new Seq(r, c.title);
    s.tags.push('io', c.df ? 'io:df1' : 'io:df0');
    s.flags((randomFlags(r, false) & ~FLAG.DF) | (c.df ? FLAG.DF : 0));
    s.set('rcx', BigInt(c.rcx));
    s.set('rdx', (r.next64() & ~0xffffn) | 0xe9n);
    s.used.add('rsi');
    s.bases.set('rsi', c.df ? `rel iotext_rev + ${n - 1}` : 'rel iotext');
    for (const l of c.lines) {
      const mn = /rep outsb/.test(l) ? 'rep-outsb' : /outsb/.test(l) ? 'outsb' : l.split(' ')[0];
      s.insn(l, { mn, width: mn === 'add' ? 64 : 8 });
    }
    out.push(s);
  }
  return out;
};

// ---------------------------------------------------------------------------------------------
// exception guests

interface ExcCase {
  title: string;
  tag: string;
  /** instructions; the last one faults (or traps) */
  body: string[];
  regs?: Partial<Record<R64, bigint>>;
  flags?: number;
  /** set-up after the register loads (e.g. breaking the IDT or a page-directory entry) */
  late?: string[];
  /** restore after the exception, run after the dump of this sequence (prepended to the next) */
  exceptions?: number;
  mem?: { addr: string; qwords: number }[];
  undefinedExc?: ExcField[];
  /** after the resume label (the handler resumes there, skipping the rest of body) */
  after?: string[];
  /** what the SDM says the exception record must show; omitted for no-exception cases */
  expect?: ExcExpect;
  /** real KVM cannot run this case (deviations.ts id); implies ownGuest */
  kvmDeviation?: string;
  /** a guest of its own (an oracle fails or leaves odd state behind) */
  ownGuest?: boolean;
}

function excCases(): ExcCase[] {
  const big = 0x8000000000000000n;
  const pde = (v: number | bigint) => [`mov rax, ${hex(BigInt(v))}`, `mov [0x${PDE_16M.toString(16)}], rax`, 'invlpg [0x1000000]'];
  const present = 0x1000000 | 0x83; // 2 MiB page, present, writable
  const DE: ExcExpect = { vec: 0, ec: null, rip: 'fault' };
  const UD: ExcExpect = { vec: 6, ec: null, rip: 'fault' };
  const GP0: ExcExpect = { vec: 13, ec: 0, rip: 'fault' };
  const pf = (ec: number, cr2: number, rip: 'fault' | number = 'fault'): ExcExpect => ({ vec: 14, ec, rip, cr2 });
  const NOINT = 'kvm-emulator-int'; // deviations.ts: kvm-pvm's emulator cannot run INT n/INT3/INT1 at CPL0
  return [
    // #DE
    { title: 'div by zero 8-bit', tag: 'exc:de', body: ['div bl'], regs: { rax: 0x1234n, rbx: 0xff00n }, expect: DE },
    { title: 'div by zero 16-bit', tag: 'exc:de', body: ['div cx'], regs: { rcx: 0xffff0000n }, expect: DE },
    { title: 'div by zero 32-bit', tag: 'exc:de', body: ['div r9d'], regs: { r9: 0xffffffff00000000n }, expect: DE },
    { title: 'div by zero 64-bit', tag: 'exc:de', body: ['div r10'], regs: { r10: 0n }, flags: STATUS, expect: DE },
    { title: 'div quotient too large', tag: 'exc:de', body: ['div rbx'], regs: { rdx: 5n, rbx: 5n }, expect: DE },
    { title: 'idiv -2^63 / -1', tag: 'exc:de', body: ['idiv rcx'], regs: { rax: big, rdx: M64, rcx: M64 }, expect: DE },
    { title: 'idiv -2^31 / -1', tag: 'exc:de', body: ['idiv ecx'], regs: { rax: 0x80000000n, rdx: 0xffffffffn, rcx: 0xffffffffn }, expect: DE },
    { title: 'idiv -128 / -1 8-bit', tag: 'exc:de', body: ['idiv bl'], regs: { rax: 0xff80n, rbx: 0xffn }, expect: DE },
    { title: 'div by zero from memory', tag: 'exc:de', body: ['mov qword [rel scratch], 0', 'div qword [rel scratch]'], expect: DE },
    { title: 'faults keep RFLAGS: #DE after popfq with all status flags and DF', tag: 'exc:de', body: ['div r11'], regs: { r11: 0n }, flags: STATUS | FLAG.DF, expect: DE },
    // #UD
    { title: 'ud2', tag: 'exc:ud', body: ['ud2'], expect: UD },
    { title: 'push es (0x06, invalid in 64-bit mode)', tag: 'exc:ud', body: ['db 0x06'], expect: UD },
    { title: 'into (0xce, invalid in 64-bit mode)', tag: 'exc:ud', body: ['db 0xce'], expect: UD },
    { title: 'lock with a register destination', tag: 'exc:ud', body: ['db 0xf0, 0x01, 0xd8 ; lock add eax, ebx'], expect: UD },
    { title: 'ud2 (interrupt gate) with IF=1', tag: 'exc:ud', body: ['ud2'], flags: 0x202, expect: UD },
    // #GP
    { title: 'wrmsr to a non-existent MSR', tag: 'exc:gp-msr', body: ['wrmsr'], regs: { rcx: 0x12345678n, rax: 1n, rdx: 0n }, expect: GP0 },
    { title: 'rdmsr of a non-existent MSR', tag: 'exc:gp-msr', body: ['rdmsr'], regs: { rcx: 0x12345678n }, expect: GP0 },
    { title: '#GP with RSP misaligned by 8', tag: 'exc:gp-msr', body: ['push rax', 'rdmsr'], regs: { rcx: 0x12345678n }, after: ['pop rax'], expect: GP0 },
    // add/sub (not bts/or) so that every flag in the frame is defined
    { title: 'mov cr4 with reserved bit 15', tag: 'exc:gp-cr', body: ['mov rax, cr4', 'add rax, rdx', 'mov cr4, rax'], regs: { rdx: 0x8000n }, expect: GP0 },
    { title: 'mov cr0 with PG=1 PE=0', tag: 'exc:gp-cr', body: ['mov rax, cr0', 'sub rax, rdx', 'mov cr0, rax'], regs: { rdx: 1n }, expect: GP0 },
    { title: 'load from a non-canonical address', tag: 'exc:gp-canon', body: ['mov rbx, [rax]'], regs: { rax: 0x0000800000000000n }, expect: GP0 },
    { title: 'store to a non-canonical address', tag: 'exc:gp-canon', body: ['mov [rsi+8], rax'], regs: { rsi: 0x00007ffffffffff8n }, expect: GP0 },
    { title: 'jmp to a non-canonical address', tag: 'exc:gp-canon', body: ['jmp rax'], regs: { rax: big }, expect: GP0 },
    { title: 'rbp-based non-canonical load (#SS)', tag: 'exc:ss', body: ['mov rax, [rbp]'], regs: { rbp: big }, expect: { vec: 12, ec: 0, rip: 'fault' } },
    // #DF
    { title: '#GP through a not-present gate: #NP during delivery -> #DF', tag: 'exc:df', late: ['and byte [rel idt + 13*16 + 5], 0x7f'], body: ['wrmsr'], regs: { rcx: 0x12345678n }, undefinedExc: ['rip'], expect: { vec: 8, ec: 0, rip: 'undefined' } },
    // #PF
    { title: '#PF read of a not-present 2 MiB page', tag: 'exc:pf', late: pde(0), body: ['mov rax, [rbx]'], regs: { rbx: 0x1000008n }, expect: pf(0, 0x1000008) },
    { title: '#PF write to a not-present 2 MiB page', tag: 'exc:pf', late: pde(0), body: ['mov [rbx], eax'], regs: { rbx: 0x11ffffcn }, expect: pf(2, 0x11ffffc) },
    { title: '#PF fetch from a not-present page (EFER.NXE=0: no I/D bit)', tag: 'exc:pf', late: pde(0), body: ['jmp rbx'], regs: { rbx: 0x1000000n }, expect: pf(0, 0x1000000, 0x1000000) },
    { title: 'read of a read-only page (no fault)', tag: 'exc:pf-none', late: pde(0x1000081), body: ['mov rax, [rbx]'], regs: { rbx: 0x1000010n }, exceptions: 0 },
    { title: '#PF write to a read-only page (CR0.WP=1)', tag: 'exc:pf', late: pde(0x1000081), body: ['mov [rbx], rax'], regs: { rbx: 0x1000010n }, expect: pf(3, 0x1000010) },
    { title: '#PF reserved bit 13 in a 2 MiB PDE', tag: 'exc:pf-rsvd', late: pde(present | 0x2000), body: ['mov rax, [rbx]'], regs: { rbx: 0x1000020n }, expect: pf(9, 0x1000020) },
    { title: '#PF beyond 4 GiB (PDPT entry not present)', tag: 'exc:pf', body: ['mov rax, [rbx]'], regs: { rbx: 0x100000000n }, expect: pf(0, 0x100000000) },
    { title: '#PF store to an unmapped high canonical address', tag: 'exc:pf', body: ['mov [rsi+8], rax'], regs: { rsi: 0xffff7ffffffffff8n }, expect: { vec: 14, ec: 2, rip: 'fault' } },
    { title: 'PDE accessed/dirty bits after a read and a write', tag: 'exc:pf-ad', late: pde(present), body: ['mov rax, [rbx]', 'mov [rbx+8], rax'], regs: { rbx: 0x1000030n }, exceptions: 0, mem: [{ addr: `0x${PDE_16M.toString(16)}`, qwords: 1 }] },
    // software interrupts, #NP/#GP from INT n, invalid opcodes KVM's emulator does not decode
    { title: 'int3', tag: 'exc:bp', body: ['int3'], expect: { vec: 3, ec: null, rip: 'next' }, kvmDeviation: NOINT },
    { title: 'int 3 (CD 03)', tag: 'exc:bp', body: ['int 3'], expect: { vec: 3, ec: null, rip: 'next' }, kvmDeviation: NOINT },
    { title: 'int3 (trap gate) with IF=1', tag: 'exc:bp', body: ['int3'], flags: 0x202 | STATUS, expect: { vec: 3, ec: null, rip: 'next' }, kvmDeviation: NOINT },
    { title: 'int 0x80', tag: 'exc:int', body: ['int 0x80'], expect: { vec: 0x80, ec: null, rip: 'next' }, kvmDeviation: NOINT },
    { title: 'int 0 (software, no error code)', tag: 'exc:int', body: ['int 0'], expect: { vec: 0, ec: null, rip: 'next' }, kvmDeviation: NOINT },
    { title: 'int 0x80 with RSP misaligned by 8', tag: 'exc:int', body: ['sub rsp, 8', 'int 0x80'], after: ['add rsp, 8'], expect: { vec: 0x80, ec: null, rip: 'next' }, kvmDeviation: NOINT },
    { title: 'int1 (icebp)', tag: 'exc:db', body: ['int1'], expect: { vec: 1, ec: null, rip: 'next' }, kvmDeviation: NOINT },
    { title: 'int n through a not-present gate (#NP)', tag: 'exc:np', late: ['and byte [rel idt + 0x81*16 + 5], 0x7f'], body: ['int 0x81'], expect: { vec: 11, ec: 0x81 * 8 + 2, rip: 'fault' }, kvmDeviation: NOINT },
    { title: 'int n beyond the IDT limit (#GP)', tag: 'exc:gp-idt', body: ['int 0xf0'], expect: { vec: 13, ec: 0xf0 * 8 + 2, rip: 'fault' }, kvmDeviation: NOINT },
    { title: 'aaa (0x37, invalid in 64-bit mode)', tag: 'exc:ud', body: ['db 0x37'], expect: UD, kvmDeviation: 'kvm-emulator-ud' },
    { title: 'ud1 eax, eax', tag: 'exc:ud', body: ['db 0x0f, 0xb9, 0xc0 ; ud1 eax, eax'], expect: UD, kvmDeviation: 'kvm-emulator-ud' },
    { title: 'mov cr4 with reserved bit 63 (CR4 read back after)', tag: 'exc:gp-cr4-high', body: ['mov rax, cr4', 'add rax, rdx', 'mov cr4, rax'], regs: { rdx: big }, after: ['mov rax, cr4'], expect: GP0, ownGuest: true },
  ];
}

const EXC_WITH_ERROR_CODE = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
/** Vectors whose IDT gate is a trap gate (the others are interrupt gates). */
export const TRAP_GATE_VECTORS: ReadonlySet<number> = new Set([1, 3]);
const IDT_VECTORS = [...Array.from({ length: 32 }, (_, i) => i), 0x80, 0x81];

function genExceptions(r: Rng): Seq[] {
  const out: Seq[] = [];
  for (const c of excCases()) {
    const s = new Seq(r, c.title);
    s.tags.push('exception', c.tag);
    s.resume = true;
    s.exceptions = c.exceptions ?? 1;
    s.undefinedExcFields = c.undefinedExc ?? [];
    s.flags(c.flags ?? randomFlags(r, false));
    for (const [k, v] of Object.entries(c.regs ?? {})) s.set(k as R64, v as bigint);
    // restore what the previous exception sequence may have broken, before loading registers
    s.early.push(`mov rax, ${hex(BigInt(0x1000000 | 0x83))}`, `mov [0x${PDE_16M.toString(16)}], rax`, 'invlpg [0x1000000]',
      'or byte [rel idt + 13*16 + 5], 0x80', 'or byte [rel idt + 0x81*16 + 5], 0x80');
    for (const l of c.late ?? []) {
      // late lines may use rax: do them before the register loads instead
      s.early.push(l);
    }
    for (const m of c.mem ?? []) s.dump(m.addr, m.qwords);
    for (const b of c.body) s.raw(b);
    s.post.push(...(c.after ?? []));
    if (c.expect) s.expect = c.expect;
    if (c.kvmDeviation) s.kvmDeviation = c.kvmDeviation;
    if (c.ownGuest || c.kvmDeviation) s.ownGuest = true;
    out.push(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// guest assembly

const DUMP_ROUTINE = String.raw`
; dump: prints "#<id> <rax> ... <r15> <rflags>\n" and the memory listed in dm_tab, then returns
; with every register and RFLAGS as they were at the call (RSP printed as at the call).
dump:
    pushfq
    mov [rel sv + 0*8], rax
    mov [rel sv + 1*8], rbx
    mov [rel sv + 2*8], rcx
    mov [rel sv + 3*8], rdx
    mov [rel sv + 4*8], rsi
    mov [rel sv + 5*8], rdi
    mov [rel sv + 6*8], rbp
    mov [rel sv + 8*8], r8
    mov [rel sv + 9*8], r9
    mov [rel sv + 10*8], r10
    mov [rel sv + 11*8], r11
    mov [rel sv + 12*8], r12
    mov [rel sv + 13*8], r13
    mov [rel sv + 14*8], r14
    mov [rel sv + 15*8], r15
    pop rax
    mov [rel sv + 16*8], rax
    lea rax, [rsp + 8]
    mov [rel sv + 7*8], rax
    cld
    lea rsi, [rel hexdig]
    lea rdi, [rel outbuf]
    mov byte [rdi], '#'
    inc rdi
    mov eax, [rel cur_seq]
    shl rax, 48
    mov ecx, 4
    call hexn
    lea rbx, [rel sv]
    mov ebp, 17
.reg:
    mov byte [rdi], ' '
    inc rdi
    mov rax, [rbx]
    add rbx, 8
    mov ecx, 16
    call hexn
    dec ebp
    jnz .reg
    mov byte [rdi], 10
    inc rdi
    lea rbx, [rel dm_tab]
.mem:
    mov r12, [rbx]
    mov r13, [rbx + 8]
    test r13, r13
    jz .flush
    mov qword [rbx + 8], 0
    mov byte [rdi], 'm'
    inc rdi
    mov byte [rdi], ' '
    inc rdi
    mov rax, r12
    mov ecx, 16
    call hexn
.q:
    mov byte [rdi], ' '
    inc rdi
    mov rax, [r12]
    add r12, 8
    mov ecx, 16
    call hexn
    dec r13
    jnz .q
    mov byte [rdi], 10
    inc rdi
    add rbx, 16
    jmp .mem
.flush:
    call flush
    push qword [rel sv + 16*8]
    mov rax, [rel sv + 0*8]
    mov rbx, [rel sv + 1*8]
    mov rcx, [rel sv + 2*8]
    mov rdx, [rel sv + 3*8]
    mov rsi, [rel sv + 4*8]
    mov rdi, [rel sv + 5*8]
    mov rbp, [rel sv + 6*8]
    mov r8, [rel sv + 8*8]
    mov r9, [rel sv + 9*8]
    mov r10, [rel sv + 10*8]
    mov r11, [rel sv + 11*8]
    mov r12, [rel sv + 12*8]
    mov r13, [rel sv + 13*8]
    mov r14, [rel sv + 14*8]
    mov r15, [rel sv + 15*8]
    popfq
    ret

; hexn: writes the top ECX nibbles of RAX as hex digits at [RDI] (RSI = hexdig); RDI advances
hexn:
    rol rax, 4
    mov edx, eax
    and edx, 15
    mov dl, [rsi + rdx]
    mov [rdi], dl
    inc rdi
    dec ecx
    jnz hexn
    ret

; flush: writes outbuf..RDI to the console with one rep outsb (one port exit on KVM)
flush:
    lea rsi, [rel outbuf]
    mov rcx, rdi
    sub rcx, rsi
    mov edx, PORT_CONSOLE
    db 0xf3, 0x6e                 ; rep outsb
    ret

; puts: writes the NUL-terminated string at RSI to the console
puts:
    lea rdi, [rel outbuf]
.c:
    mov al, [rsi]
    test al, al
    jz .f
    mov [rdi], al
    inc rdi
    inc rsi
    jmp .c
.f:
    jmp flush
`;

const EXC_HANDLER = String.raw`
; exception entry: stubs push a dummy error code (vector | 0x100 marks "none") and the vector
exc_common:
    pushfq
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    cld
    ; frame: [rsp+15*8] = handler RFLAGS, +16*8 = vector, +17*8 = error code, +18*8 = RIP, CS, RFLAGS, RSP, SS
    lea rsi, [rel hexdig]
    lea rdi, [rel outbuf]
    mov byte [rdi], 'x'
    inc rdi
    mov byte [rdi], ' '
    inc rdi
    mov eax, [rel cur_seq]
    shl rax, 48
    mov ecx, 4
    call hexn
    mov byte [rdi], ' '
    inc rdi
    mov rax, [rsp + 16*8]
    mov rbx, rax
    shl rax, 56
    mov ecx, 2
    call hexn
    mov byte [rdi], ' '
    inc rdi
    test ebx, 0x100
    jz .ec
    mov byte [rdi], '-'
    inc rdi
    jmp .cr2
.ec:
    mov rax, [rsp + 17*8]
    mov ecx, 16
    call hexn
.cr2:
    mov byte [rdi], ' '
    inc rdi
    mov rax, cr2
    mov ecx, 16
    call hexn
    lea rbx, [rsp + 18*8]
    mov ebp, 5
.fr:
    mov byte [rdi], ' '
    inc rdi
    mov rax, [rbx]
    add rbx, 8
    mov ecx, 16
    call hexn
    dec ebp
    jnz .fr
    mov byte [rdi], ' '
    inc rdi
    lea rax, [rsp + 18*8]
    mov ecx, 16
    call hexn
    mov byte [rdi], ' '
    inc rdi
    mov rax, [rsp + 15*8]
    mov ecx, 16
    call hexn
    mov byte [rdi], 10
    inc rdi
    call flush
    mov rax, [rel resume]
    mov [rsp + 18*8], rax
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 24
    iretq
`;

const DATA = (idt: boolean) => String.raw`
align 16
sv:         times 17 dq 0
cur_seq:    dd 0, 0
resume:     dq 0
dm_tab:     times 10 dq 0
hexdig:     db "0123456789abcdef"
iotext:     db "${IO_TEXT}", 10
iotext_rev: db 10, "${[...IO_TEXT].reverse().join('')}"
align 64
scratch:    times ${SCRATCH_BYTES} db 0
            times 0x40 db 0             ; room for memory operands that run past the end
outbuf:     times 1024 db 0
${idt ? `align 16
idt:        times ${(0x82 * 16)} db 0
idtr:       dw ${0x82 * 16 - 1}
            dq idt` : ''}
`;

function idtSetup(): string[] {
  const L: string[] = ['; build the IDT: 64-bit interrupt gates (trap gates for #DB and #BP), selector 0x08'];
  for (const v of IDT_VECTORS) {
    const type = TRAP_GATE_VECTORS.has(v) ? 0x8f : 0x8e;
    L.push(`    lea rax, [rel vec_${v.toString(16)}]`, `    lea rbx, [rel idt + ${v * 16}]`,
      '    mov [rbx], ax', '    mov word [rbx + 2], 0x08', `    mov word [rbx + 4], 0x${(type << 8).toString(16)}`,
      '    shr rax, 16', '    mov [rbx + 6], ax', '    shr rax, 16', '    mov [rbx + 8], eax', '    mov dword [rbx + 12], 0');
  }
  L.push('    lidt [rel idtr]');
  return L;
}

function idtStubs(): string[] {
  const L: string[] = [];
  for (const v of IDT_VECTORS) {
    L.push(`vec_${v.toString(16)}:`);
    if (!EXC_WITH_ERROR_CODE.has(v)) L.push('    push 0');
    L.push(`    push 0x${(EXC_WITH_ERROR_CODE.has(v) ? v : v | 0x100).toString(16)}`, '    jmp exc_common');
  }
  return L;
}

interface GuestPlan { name: string; seqs: Seq[]; idt: boolean; tripleFault?: boolean; kvmDeviation?: string }

function guestSource(plan: GuestPlan, firstId: number, metas: CorpusSequence[]): string {
  const L: string[] = [
    `; corpus guest ${plan.name}: generated by test/oracle/diff/corpus.ts (version ${CORPUS_VERSION}); do not edit`,
    '%include "avic.inc"',
    'bits 64',
    '_start:',
    '    jmp main',
    DUMP_ROUTINE,
  ];
  if (plan.idt) L.push(EXC_HANDLER, ...idtStubs());
  L.push('main:');
  L.push('    lea rsi, [rel banner]', '    call puts');
  if (plan.idt) L.push(...idtSetup());
  if (plan.tripleFault) {
    L.push('; no IDT (limit 0): ud2 -> #GP on delivery -> #DF -> triple fault',
      'tf_site:', '    ud2', '    lea rsi, [rel trailer]', '    call puts', 'done_site:', '    out PORT_DONE, al', '    jmp $');
  } else {
    const body: string[] = [];
    plan.seqs.forEach((s, i) => metas.push(emitSequence(s, firstId + i, plan.name, body)));
    L.push('', ...body);
    L.push('; epilogue: known registers and flags at the done site (DF=0 before puts)',
      '    push 0x2', '    popfq', '    lea rsi, [rel trailer]', '    call puts');
    for (const reg of R64) L.push(`    xor ${SUB[reg][32]}, ${SUB[reg][32]}`);
    L.push('    push 0x2', '    popfq', 'done_site:', '    out PORT_DONE, al', '    jmp $');
  }
  L.push(DATA(plan.idt));
  L.push(`banner:     db "G ${plan.name}", 10, 0`, 'trailer:    db "E", 10, 0');
  return `${L.join('\n')}\n`;
}

const CATEGORIES: { name: string; gen: Gen; perGuest: number }[] = [
  { name: 'alu', gen: genAlu, perGuest: 44 },
  { name: 'unary', gen: genUnary, perGuest: 48 },
  { name: 'shift', gen: genShift, perGuest: 44 },
  { name: 'muldiv', gen: genMulDiv, perGuest: 44 },
  { name: 'exchange', gen: genExchange, perGuest: 40 },
  { name: 'bits', gen: genBits, perGuest: 42 },
  { name: 'cond', gen: genCond, perGuest: 32 },
  { name: 'misc', gen: genMisc, perGuest: 48 },
  { name: 'string', gen: genString, perGuest: 30 },
  { name: 'loop', gen: genLoop, perGuest: 48 },
  { name: 'io', gen: genIo, perGuest: 48 },
];

export const INCLUDE_DIR = path.resolve(__dirname, '..', '..', '..', 'include');

const nodeReader = {
  readFile(p: string): string | undefined {
    try { return fs.readFileSync(p, 'utf8'); } catch { return undefined; }
  },
};

function buildGuest(plan: GuestPlan, firstId: number): CorpusGuest {
  const metas: CorpusSequence[] = [];
  const source = guestSource(plan, firstId, metas);
  const file = `corpus/${plan.name}.vasm`;
  const res = assemble({ file, text: source, reader: nodeReader, includeDirs: [INCLUDE_DIR] });
  if (!res.ok) {
    const errs = res.diagnostics.filter((d) => d.severity === 'error').slice(0, 10).map(formatDiagnostic);
    const lines = source.split('\n');
    const ctx = res.diagnostics.filter((d) => d.severity === 'error').slice(0, 3).map((d) => `  ${d.line}: ${lines[d.line - 1]}`);
    throw new Error(`corpus guest ${plan.name} does not assemble:\n${errs.join('\n')}\n${ctx.join('\n')}`);
  }
  const sym = (name: string): number => {
    const x = res.symbols.find((y) => y.name === name);
    if (!x) throw new Error(`corpus guest ${plan.name}: no label ${name}`);
    return Number(x.value);
  };
  plan.seqs.forEach((sq, i) => {
    const e = sq.expect;
    const m = metas[i];
    if (!e || !m.expect) return;
    const idHex = m.id.toString(16).padStart(4, '0');
    m.expect.rip = e.rip === 'fault' ? sym(`s${idHex}_f`) : e.rip === 'next' ? sym(`s${idHex}_r`) : e.rip === 'undefined' ? null : e.rip;
  });
  const site = res.symbols.find((x) => x.name === 'done_site');
  if (!site) throw new Error(`corpus guest ${plan.name}: no done_site label`);
  const image = res.image;
  return {
    name: plan.name, source, image, doneSites: [Number(site.value)], vcpus: 1,
    expectStatus: plan.tripleFault ? 'triple-fault' : 'done', sequences: metas,
    ...(plan.kvmDeviation ? { kvmDeviation: plan.kvmDeviation } : {}),
    imageSha256: createHash('sha256').update(image).digest('hex'),
  };
}

function plans(): GuestPlan[] {
  const out: GuestPlan[] = [];
  for (const c of CATEGORIES) {
    const seqs = c.gen(new Rng(seedFor(c.name)));
    const n = Math.ceil(seqs.length / c.perGuest);
    const per = Math.ceil(seqs.length / n);
    for (let g = 0; g < n; g++) out.push({ name: `${c.name}-${g + 1}`, seqs: seqs.slice(g * per, (g + 1) * per), idt: false });
  }
  const exc = genExceptions(new Rng(seedFor('exceptions')));
  const common = exc.filter((e) => !e.ownGuest);
  const half = Math.ceil(common.length / 2);
  out.push({ name: 'exceptions-1', seqs: common.slice(0, half), idt: true });
  out.push({ name: 'exceptions-2', seqs: common.slice(half), idt: true });
  // cases real KVM cannot run (or that leave odd state): one guest each, so that one failure
  // hides no other case
  exc.filter((e) => e.ownGuest).forEach((e, i) => {
    out.push({ name: `exceptions-kvm-${String(i + 1).padStart(2, '0')}`, seqs: [e], idt: true, kvmDeviation: e.kvmDeviation });
  });
  out.push({ name: 'triple-fault', seqs: [], idt: false, tripleFault: true });
  return out;
}

let cache: CorpusGuest[] | undefined;

/** Every corpus guest, generated and assembled once per process. */
export function corpusGuests(): readonly CorpusGuest[] {
  if (cache) return cache;
  labelCounter = 0;
  const guests: CorpusGuest[] = [];
  let id = 0;
  for (const p of plans()) {
    const g = buildGuest(p, id);
    id += p.seqs.length;
    // every sequence's flags are checked against the model once here (throws on a generator bug)
    for (const s of g.sequences) for (const i of s.insns) flagEffect(i);
    guests.push(g);
  }
  cache = guests;
  return guests;
}

/** All sequences of the corpus by id. */
export function corpusSequences(): Map<number, CorpusSequence> {
  const m = new Map<number, CorpusSequence>();
  for (const g of corpusGuests()) for (const s of g.sequences) m.set(s.id, s);
  return m;
}

/** A hash over every guest image (and the corpus version): changes whenever any guest does. */
export function corpusHash(): string {
  const h = createHash('sha256').update(`corpus v${CORPUS_VERSION}\n`);
  for (const g of corpusGuests()) h.update(`${g.name} ${g.imageSha256}\n`);
  return h.digest('hex');
}


/**
 * Assembles a guest's source with nasm (`org 0x100000` prepended, as contracts/guest.md says)
 * and reports whether the bytes equal our assembler's image; undefined when nasm is missing.
 */
export function nasmCrossCheck(guest: CorpusGuest): { same: boolean; detail: string } | undefined {
  const probe = spawnSync(process.env.NASM_BIN || 'nasm', ['-v'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'avic-corpus-nasm-'));
  try {
    const src = path.join(dir, `${guest.name}.asm`);
    fs.writeFileSync(src, `org 0x100000\n${guest.source}`);
    const r = spawnSync(process.env.NASM_BIN || 'nasm', ['-f', 'bin', '-I', `${INCLUDE_DIR}/`, '-o', `${src}.bin`, src], { encoding: 'utf8' });
    if (r.status !== 0) return { same: false, detail: `nasm failed: ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}` };
    const b = fs.readFileSync(`${src}.bin`);
    if (Buffer.compare(b, Buffer.from(guest.image)) === 0) return { same: true, detail: 'identical' };
    let i = 0;
    while (i < b.length && i < guest.image.length && b[i] === guest.image[i]) i++;
    return { same: false, detail: `first difference at image offset 0x${i.toString(16)} (nasm ${b.length} bytes, ours ${guest.image.length})` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The data of the DAP `disassemble` request: guest code at a linear address decoded with
// iced-x86 (64-bit, NASM syntax, lowercase `0x` hex), read through the debugger's side-effect-free
// path (machine/cpu/peek.ts: no A/D bits, no TLB fill, no MMIO), with source lines and labels
// from the assembler's line table and symbols. Decoded instructions are cached per physical
// address; an entry is reused only while the bytes in memory are still the bytes it decoded.

import type * as Iced from 'iced-x86';
import type { AssembleResult, AsmSymbol } from '../asm/assembler';
import { iced } from '../asm/iced';
import { dirname, isAbsolute, join } from '../asm/paths';
import type { Cpu } from '../machine/cpu/cpu';
import { peekLinear, peekTranslate } from '../machine/cpu/peek';
import type { PhysicalMemory } from '../machine/memory';

/** Where an address comes from in the source. */
export interface SourceLine {
  readonly path: string;
  readonly line: number;
  /** the label at or before the address: `name` or `name+0xN` */
  readonly symbol?: string;
  /** where the bytes of that source line start: a known instruction boundary for code */
  readonly start?: bigint;
}

export type LineLookup = (address: bigint) => SourceLine | undefined;

/** DAP's DisassembledInstruction (the fields this adapter fills in). */
export interface DisassembledInstruction {
  /** `0x` and 16 lowercase hex digits */
  address: string;
  /** the instruction's bytes as lowercase hex pairs separated by spaces (`b8 01 00 00 00`) */
  instructionBytes?: string;
  instruction: string;
  symbol?: string;
  location?: { name: string; path: string };
  line?: number;
  /** `invalid` for unreadable memory */
  presentationHint?: 'normal' | 'invalid';
}

export const UNREADABLE = '<unreadable>';
/** an opcode that does not decode (the CPU raises #UD there); the listing advances one byte */
export const BAD = '(bad)';

const MAX_INSN = 15;
const U64 = (v: bigint): bigint => BigInt.asUintN(64, v);

/** One decoded (or unreadable) instruction at a linear address. */
interface Decoded {
  readonly addr: bigint;
  /** where the next instruction starts */
  readonly next: bigint;
  readonly bytes: Uint8Array;
  readonly text: string;
  readonly unreadable: boolean;
}

interface CacheEntry {
  readonly ip: bigint;
  readonly bytes: Uint8Array;
  readonly text: string;
}

/** per machine (its RAM): physical address -> last instruction decoded there */
const caches = new WeakMap<PhysicalMemory, Map<number, CacheEntry>>();
const MAX_CACHE = 1 << 16;

class Disassembler {
  private readonly I = iced();
  private readonly formatter: Iced.Formatter;
  private readonly instr: Iced.Instruction;
  private readonly cache: Map<number, CacheEntry>;

  constructor(private readonly cpu: Cpu) {
    const I = this.I;
    this.formatter = new I.Formatter(I.FormatterSyntax.Nasm);
    this.formatter.hexPrefix = '0x';
    this.formatter.hexSuffix = '';
    this.formatter.uppercaseHex = false;
    this.formatter.spaceAfterOperandSeparator = true;
    this.formatter.branchLeadingZeros = false;
    this.formatter.showBranchSize = false;
    this.instr = new I.Instruction();
    const mem = cpu.bus.mem;
    let cache = caches.get(mem);
    if (!cache) caches.set(mem, (cache = new Map()));
    this.cache = cache;
  }

  free(): void {
    this.formatter.free();
    this.instr.free();
  }

  /** The instruction at `addr`: from the cache while memory holds the same bytes, else decoded. */
  decode(addr: bigint): Decoded {
    const window = peekLinear(this.cpu, addr, MAX_INSN);
    const n = window.readable;
    if (n === 0) return { addr, next: U64((addr | 0xfffn) + 1n), bytes: window.bytes, text: UNREADABLE, unreadable: true };
    const t = peekTranslate(this.cpu, addr);
    const phys = 'phys' in t ? t.phys : -1;
    const hit = this.cache.get(phys);
    if (hit !== undefined && hit.ip === addr && hit.bytes.length <= n && sameBytes(hit.bytes, window.bytes)) {
      return { addr, next: U64(addr + BigInt(hit.bytes.length)), bytes: hit.bytes, text: hit.text, unreadable: false };
    }
    const I = this.I;
    const decoder = new I.Decoder(64, window.bytes, I.DecoderOptions.None);
    let error: number;
    try {
      decoder.ip = addr;
      decoder.decodeOut(this.instr);
      error = decoder.lastError;
    } finally {
      decoder.free();
    }
    if (this.instr.isInvalid) {
      // out of bytes below 15: the instruction runs into memory that cannot be read
      if (error === I.DecoderError.NoMoreBytes) return { addr, next: U64(addr + BigInt(n)), bytes: window.bytes, text: UNREADABLE, unreadable: true };
      return { addr, next: U64(addr + 1n), bytes: window.bytes.slice(0, 1), text: BAD, unreadable: false };
    }
    const bytes = window.bytes.slice(0, this.instr.length);
    const text = this.formatter.format(this.instr);
    if (this.cache.size >= MAX_CACHE) this.cache.clear();
    this.cache.set(phys, { ip: addr, bytes, text });
    return { addr, next: U64(addr + BigInt(bytes.length)), bytes, text, unreadable: false };
  }

  /** `count` instructions from `addr` on. */
  forward(addr: bigint, count: number): Decoded[] {
    const out: Decoded[] = [];
    for (let a = addr; out.length < count;) {
      const d = this.decode(a);
      out.push(d);
      if (d.next <= a) break; // wrapped around the address space
      a = d.next;
    }
    while (out.length < count) out.push(unreadableAt(U64(addr + BigInt(out.length))));
    return out;
  }

  /** The instructions from `from` up to `to`, and whether the last one ends exactly at `to`. */
  private until(from: bigint, to: bigint): { run: Decoded[]; landed: boolean } {
    const run: Decoded[] = [];
    let a = from;
    while (a < to) {
      const d = this.decode(a);
      run.push(d);
      if (d.next <= a) break;
      a = d.next;
    }
    return { run, landed: a === to };
  }

  /**
   * The `count` instructions before `addr`. x86 does not decode backwards, so decode forward
   * from an anchor before it and keep the run whose boundaries land exactly on `addr`. With a
   * line table, source lines are taken back one by one from their known starts while each decodes
   * exactly into its bytes (code, not data): exact for assembled code. Otherwise the anchors are
   * 15 bytes per instruction wanted back, at 15 successive offsets (or, when unreadable
   * memory or address 0 is nearer, the start of the readable span and the 14 bytes after it).
   * x86 decoding resynchronizes within a few instructions, so one of them nearly always lands;
   * without a line table, padding or data before the code may still decode as other
   * instructions that land too (zeros are `add [rax], al`). If none lands, the run whose last
   * instruction starts closest to `addr` is taken (that instruction may overlap `addr`). An
   * unreadable page before `addr` is one unreadable entry at the page's start (as `forward`
   * gives). Below linear address 0 the list is padded with unreadable entries at the addresses
   * that wrap around from 2^64.
   */
  backward(addr: bigint, count: number, lines?: LineLookup): Decoded[] {
    const out: Decoded[] = [];
    let cur = addr;
    while (out.length < count && cur > 0n) {
      const need = count - out.length;
      if (!this.readable(cur - 1n)) {
        const page = (cur - 1n) & ~0xfffn;
        out.unshift({ ...unreadableAt(page), next: cur });
        cur = page;
        continue;
      }
      const far = BigInt(MAX_INSN * need + MAX_INSN - 1);
      const lo = cur > far ? cur - far : 0n;
      const start = this.spanStart(cur, lo);
      // bounded by unreadable memory or address 0: anchors at the span's start and after it
      const bounded = start > lo || start === 0n;
      let best: Decoded[] | undefined;
      let chosen: Decoded[] | undefined;
      // the line table knows where source lines start: exact, as far back as lines decode as code
      const known = lines ? this.lineRun(cur, start, need, lines) : [];
      if (known.length > 0) {
        const take = known.slice(-need);
        out.unshift(...take);
        cur = take[0].addr;
        continue;
      }
      for (let d = 0; d < MAX_INSN; d++) {
        const anchor = bounded ? start + BigInt(d) : lo + BigInt(MAX_INSN - 1 - d);
        if (anchor >= cur) break;
        const { run, landed } = this.until(anchor, cur);
        if (landed) {
          chosen = run;
          break;
        }
        if (run.length > 0 && (best === undefined || run[run.length - 1].addr > best[best.length - 1].addr)) best = run;
      }
      const run = chosen ?? best;
      if (run === undefined || run.length === 0) break;
      const take = run.slice(-need);
      out.unshift(...take);
      cur = take[0].addr;
    }
    while (out.length < count) {
      const first = out.length > 0 ? out[0].addr : addr;
      out.unshift(unreadableAt(U64(first - 1n)));
    }
    return out;
  }

  /**
   * The instructions of the source lines before `cur`, line by line back to `lo`, while a line
   * decodes exactly into its bytes (code, not data); at least `need` if there are that many.
   */
  private lineRun(cur: bigint, lo: bigint, need: number, lines: LineLookup): Decoded[] {
    const acc: Decoded[] = [];
    let b = cur;
    while (b > lo && acc.length < need) {
      const s = lines(b - 1n)?.start;
      if (s === undefined || s >= b || s < lo) break;
      const { run, landed } = this.until(s, b);
      if (!landed) break;
      acc.unshift(...run);
      b = s;
    }
    return acc;
  }

  private readable(addr: bigint): boolean {
    return peekLinear(this.cpu, addr, 1).readable === 1;
  }

  /** The lowest address >= lo from which everything up to `cur` can be read. */
  private spanStart(cur: bigint, lo: bigint): bigint {
    let s = cur;
    while (s > lo && this.readable(s - 1n)) {
      const page = (s - 1n) & ~0xfffn;
      s = page > lo ? page : lo;
    }
    return s;
  }
}

function unreadableAt(addr: bigint): Decoded {
  return { addr, next: U64((addr | 0xfffn) + 1n), bytes: new Uint8Array(0), text: UNREADABLE, unreadable: true };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function formatAddress(addr: bigint): string {
  return '0x' + U64(addr).toString(16).padStart(16, '0');
}

function hexBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

function basename(path: string): string {
  return path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);
}

function toDap(d: Decoded, lines: LineLookup | undefined): DisassembledInstruction {
  const e: DisassembledInstruction = { address: formatAddress(d.addr), instruction: d.text };
  if (d.bytes.length > 0) e.instructionBytes = hexBytes(d.bytes);
  if (d.unreadable) {
    e.presentationHint = 'invalid';
    return e;
  }
  const src = lines?.(d.addr);
  if (src !== undefined) {
    e.location = { name: basename(src.path), path: src.path };
    e.line = src.line;
    if (src.symbol !== undefined) e.symbol = src.symbol;
  }
  return e;
}

/**
 * Exactly `instructionCount` instructions starting `instructionOffset` instructions from the
 * one at `address` (negative: before it, see `backward`), read as the debugger reads: nothing in
 * the machine changes. Unreadable memory gives `<unreadable>` entries, one per 4 KiB page (or
 * for the readable head of an instruction that runs into such a page).
 */
export function disassemble(cpu: Cpu, address: bigint, instructionOffset: number, instructionCount: number, lines?: LineLookup): DisassembledInstruction[] {
  const count = Math.max(0, Math.floor(instructionCount));
  if (count === 0) return [];
  const offset = Math.trunc(instructionOffset);
  const at = U64(address);
  const dis = new Disassembler(cpu);
  try {
    let list: Decoded[];
    if (offset >= 0) list = dis.forward(at, offset + count).slice(offset);
    else {
      const before = dis.backward(at, -offset, lines);
      list = count <= -offset ? before.slice(0, count) : before.concat(dis.forward(at, count + offset));
    }
    return list.map((d) => toDap(d, lines));
  } finally {
    dis.free();
  }
}

/**
 * A LineLookup over an assembly result: the line table's file:line for an address, with the
 * label at or before it in the same section. The main source file (`result.files[0]`) is reported
 * as `sourcePath` when given (the adapter's absolute path), and relative %include paths are
 * rebased from the main file's folder to `sourcePath`'s.
 */
export function lineLookupFor(result: AssembleResult, sourcePath?: string): LineLookup {
  const main = result.files[0];
  const mainDir = main !== undefined ? dirname(main) : '.';
  const mapPath = (file: string): string => {
    if (sourcePath === undefined) return file;
    if (file === main) return sourcePath;
    if (isAbsolute(file)) return file;
    const prefix = mainDir === '.' ? '' : mainDir;
    const rel = prefix !== '' && (file.startsWith(prefix + '/') || file.startsWith(prefix + '\\')) ? file.slice(prefix.length + 1) : file;
    return join(dirname(sourcePath), rel);
  };
  const labels = new Map<string, AsmSymbol[]>();
  for (const s of result.symbols) {
    if (s.kind !== 'label' || s.section === undefined) continue;
    const list = labels.get(s.section);
    if (list) list.push(s);
    else labels.set(s.section, [s]);
  }
  for (const list of labels.values()) list.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  const symbolAt = (address: bigint): string | undefined => {
    const a = Number(address);
    const section = result.sections.find((s) => a >= s.start && a < s.start + s.size);
    const list = section && labels.get(section.name);
    if (!list) return undefined;
    let found: AsmSymbol | undefined;
    for (const s of list) {
      if (s.value > address) break;
      found = s;
    }
    if (!found) return undefined;
    const off = address - found.value;
    return off === 0n ? found.name : `${found.name}+0x${off.toString(16)}`;
  };
  return (address) => {
    if (address < 0n || address > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const hit = result.lines.lookup(Number(address));
    if (hit === undefined) return undefined;
    const symbol = symbolAt(address);
    return { path: mapPath(hit.file), line: hit.line, start: BigInt(hit.start), ...(symbol !== undefined ? { symbol } : {}) };
  };
}

// Decoded basic blocks: straight-line runs of compiled instructions, decoded once with iced-x86
// and kept per linear start address (and CR3). A block ends at a control transfer or at an
// instruction whose effects the runner must see (I/O, MSR, CLI/STI, ...), at a page end, or just
// before an armed breakpoint, so a breakpoint costs nothing until it is reached. A write to bytes
// that decoded code came from invalidates the blocks made of them (self-modifying code,
// loaders); a write to data beside the code on the same page leaves the code alone.
// Blocks chain to their successors so that a loop does not go back to the cache.

import type * as Iced from 'iced-x86';
import { iced } from '../../asm/iced';
import { ACCESS_FETCH, type Cpu, hiOf, loOf } from './cpu';
import { GuestFault, hasErrorCode, PF, UD } from './exceptions';
import { toInsn } from './insn';
import { compile } from './ops/compile';
import { logicBeforeIncDec, overwritesAllButCF, overwritesFlags, quietAlu } from './ops/alu';
import { fuse } from './ops/fuse';
import { MAX_BLOCK_INSNS, ONE_EACH, type Op } from './ops/op';
import type { Insn } from './insn';
import type { PhysicalMemory } from '../memory';

const MAX_INSNS = MAX_BLOCK_INSNS;

/** Bytes of one physical page that a block was decoded from. */
export interface CodeSpan {
  readonly page: number;
  readonly from: number;
  readonly to: number;
}
const PAGE = 4096;

export class Block {
  valid = true;
  /** the block starts at an armed breakpoint */
  breakpoint = false;
  private succA: Block | null = null;
  private succB: Block | null = null;
  /** the ops for a run of the whole block (fused pairs), with per-op counts and addresses */
  readonly fused: readonly Op[];
  /** instructions executed after each fused op (cumulative) */
  readonly fusedCounts: Int32Array;
  /** address of each fused op's first instruction, and after its last */
  readonly fusedAddrs: readonly number[];
  readonly fusedNexts: readonly number[];
  /**
   * The block is a loop over registers only: every instruction but the last touches no memory
   * and cannot end the block, and the last jumps back to the start. Such a block can run again
   * and again without the runner's per-instruction checks.
   */
  tightLoop = false;

  constructor(
    readonly start: number,
    readonly cr3: number,
    /** one op per instruction */
    readonly ops: readonly Op[],
    /** address of each instruction */
    readonly addrs: readonly number[],
    /** address after each instruction */
    readonly nexts: readonly number[],
    /** the bytes it came from, per physical page: offsets [from, to) within the page */
    readonly spans: readonly CodeSpan[],
    /** fusion of instruction i with i + 1, where the pair fuses */
    fusedPairs: ReadonlyMap<number, Op> = new Map(),
    /** instruction i without its flags, where the next one overwrites them (alu.ts, "dead flags") */
    quiet: ReadonlyMap<number, Op> = new Map(),
  ) {
    if (fusedPairs.size === 0 && quiet.size === 0) {
      this.fused = ops;
      this.fusedCounts = ONE_EACH;
      this.fusedAddrs = addrs;
      this.fusedNexts = nexts;
      return;
    }
    const fused: Op[] = [];
    const counts: number[] = [];
    const fa: number[] = [];
    const fn: number[] = [];
    for (let i = 0; i < ops.length; i++) {
      const pair = fusedPairs.get(i);
      fa.push(addrs[i]);
      if (pair && i + 1 < ops.length) {
        fused.push(pair);
        i++;
      } else fused.push(quiet.get(i) ?? ops[i]);
      counts.push(i + 1);
      fn.push(nexts[i]);
    }
    this.fused = fused;
    this.fusedCounts = Int32Array.from(counts);
    this.fusedAddrs = fa;
    this.fusedNexts = fn;
  }

  /** A known successor starting at `rip`, or null. */
  successor(rip: number): Block | null {
    const a = this.succA;
    if (a !== null && a.start === rip && a.valid) return a;
    const b = this.succB;
    if (b !== null && b.start === rip && b.valid) return b;
    return null;
  }

  link(next: Block): void {
    if (this.succA === null || !this.succA.valid) this.succA = next;
    else if (this.succA !== next) this.succB = next;
  }

  get end(): number {
    return this.nexts[this.nexts.length - 1];
  }
}

export class BlockCache {
  private readonly map = new Map<number, Block>();
  private readonly byPage = new Map<number, Block[]>();
  /** per code page, how many valid blocks were decoded from each byte */
  private readonly decoded = new Map<number, Uint16Array>();
  private breakpointSet = new Set<number>();
  private instr: Iced.Instruction | undefined;
  /** blocks built so far (statistics) */
  built = 0;

  constructor(
    private readonly mem: PhysicalMemory,
    /** called when a physical page first holds decoded code: vCPUs must stop writing it directly */
    private readonly onCodePage: (page: number) => void,
  ) {}

  get breakpoints(): ReadonlySet<number> {
    return this.breakpointSet;
  }

  /** Arms exactly these instruction breakpoints (linear addresses); the affected blocks are rebuilt. */
  setBreakpoints(addresses: Iterable<number>): void {
    const next = new Set(addresses);
    const changed = [...next].filter((a) => !this.breakpointSet.has(a)).concat([...this.breakpointSet].filter((a) => !next.has(a)));
    this.breakpointSet = next;
    if (changed.length === 0) return;
    for (const block of [...this.map.values()]) {
      if (changed.some((a) => a >= block.start && a < block.end)) this.drop(block);
    }
  }

  /** The block at the CPU's RIP, built if needed; null when its first byte could not be fetched (the fault was delivered). */
  lookup(cpu: Cpu): Block | null {
    const known = this.map.get(cpu.rip);
    if (known !== undefined && known.valid && known.cr3 === cpu.cr3) return known;
    let block: Block;
    try {
      block = this.build(cpu);
    } catch (e) {
      if (!(e instanceof GuestFault)) throw e;
      if (e.vector === PF) cpu.cr2 = e.address ?? 0;
      cpu.deliver(e.vector, hasErrorCode(e.vector) ? e.errorCode ?? 0 : undefined);
      return null;
    }
    if (known !== undefined) this.drop(known);
    this.map.set(block.start, block);
    for (const { page, from, to } of block.spans) {
      const list = this.byPage.get(page);
      if (list) list.push(block);
      else this.byPage.set(page, [block]);
      let counts = this.decoded.get(page);
      if (!counts) this.decoded.set(page, (counts = new Uint16Array(PAGE)));
      for (let i = from; i < to; i++) counts[i]++;
      if (!this.mem.codePages[page] && page < this.mem.codePages.length) {
        this.mem.codePages[page] = 1;
        this.onCodePage(page);
      }
    }
    return block;
  }

  /**
   * A write to `size` bytes at a physical address on a code page: drops the blocks decoded from
   * any of those bytes. Returns whether it dropped one (the writer ends its block: it may be one).
   */
  invalidateRange(phys: number, size: number): boolean {
    let dropped = false;
    for (let at = phys, left = size; left > 0;) {
      const page = Math.floor(at / PAGE);
      const from = at - page * PAGE;
      const to = Math.min(PAGE, from + left);
      const counts = this.decoded.get(page);
      let hit = false;
      if (counts) for (let i = from; i < to && !hit; i++) hit = counts[i] !== 0;
      if (hit) {
        for (const b of [...(this.byPage.get(page) ?? [])]) {
          if (b.spans.some((s) => s.page === page && s.from < to && from < s.to)) this.drop(b);
        }
        dropped = true;
      }
      left -= to - from;
      at += to - from;
    }
    return dropped;
  }

  /** Paging changed under the decoded code: everything is rebuilt on demand. */
  invalidateAll(): void {
    for (const b of this.map.values()) b.valid = false;
    for (const list of this.byPage.values()) for (const b of list) b.valid = false;
    this.map.clear();
    for (const p of this.byPage.keys()) this.mem.codePages[p] = 0;
    this.byPage.clear();
    this.decoded.clear();
  }

  /** Forgets a block: it is not run again, and its bytes no longer count as code. */
  private drop(b: Block): void {
    if (this.map.get(b.start) === b) this.map.delete(b.start);
    if (!b.valid) return;
    b.valid = false;
    for (const { page, from, to } of b.spans) {
      const list = this.byPage.get(page);
      const i = list ? list.indexOf(b) : -1;
      if (i >= 0) list!.splice(i, 1);
      const counts = this.decoded.get(page);
      if (counts) for (let k = from; k < to; k++) counts[k]--;
      if (list && list.length === 0) {
        // no code left on the page: writes there go straight to RAM again
        this.byPage.delete(page);
        this.decoded.delete(page);
        this.mem.codePages[page] = 0;
      }
    }
  }

  /** Reads up to `max` instruction bytes at a linear address through the CPU's page tables (fetch access). */
  private fetch(cpu: Cpu, lo: number, hi: number, max: number): { bytes: Uint8Array; page: number; offset: number } {
    const phys = cpu.translate(lo, hi, ACCESS_FETCH);
    const inPage = Math.min(max, PAGE - (lo & 0xfff));
    const bytes = new Uint8Array(inPage + 15);
    const ram = this.mem.ram;
    let n = 0;
    for (; n < inPage; n++) bytes[n] = phys + n < this.mem.size ? ram[phys + n] : 0xff;
    return { bytes: bytes.subarray(0, n), page: Math.floor(phys / PAGE), offset: phys % PAGE };
  }

  private build(cpu: Cpu): Block {
    const I = iced();
    const start = cpu.rip;
    const lo = loOf(start);
    const hi = hiOf(start);
    const first = this.fetch(cpu, lo, hi, 512);
    let bytes = first.bytes;
    let nextPage: number | undefined;
    // an instruction may run into the next page: take up to 15 more bytes from it when it is mapped
    let crossFault: GuestFault | undefined;
    if (bytes.length < 512) {
      const nlo = lo + bytes.length;
      try {
        const more = this.fetch(cpu, nlo >= 4294967296 ? nlo - 4294967296 : nlo, nlo >= 4294967296 ? (hi + 1) | 0 : hi, 15);
        const joined = new Uint8Array(bytes.length + more.bytes.length);
        joined.set(bytes);
        joined.set(more.bytes, bytes.length);
        bytes = joined;
        nextPage = more.page;
      } catch (e) {
        if (!(e instanceof GuestFault)) throw e;
        crossFault = e;
      }
    }
    const firstPageBytes = first.bytes.length;
    const ops: Op[] = [];
    const addrs: number[] = [];
    const nexts: number[] = [];
    const insns: (Insn | undefined)[] = [];
    const instr = (this.instr ??= new I.Instruction());
    const decoder = new I.Decoder(64, bytes, I.DecoderOptions.None);
    try {
      decoder.ip = BigInt.asUintN(64, BigInt(start));
      let offset = 0;
      while (ops.length < MAX_INSNS) {
        const addr = start + offset;
        if (ops.length > 0 && (offset >= firstPageBytes || this.breakpointSet.has(addr))) break;
        if (!decoder.canDecode) {
          // the instruction runs into a page that cannot be fetched: #PF there when it executes
          const fault = crossFault ?? new GuestFault(UD, undefined);
          ops.push(() => {
            throw fault;
          });
          addrs.push(addr);
          nexts.push(addr);
          break;
        }
        decoder.decodeOut(instr);
        const length = instr.length;
        if (instr.isInvalid) {
          // it runs past the bytes fetched for this block (the window, or the page): it starts the
          // next block, which fetches from its address and sees all of it (or the fault)
          if (decoder.lastError === I.DecoderError.NoMoreBytes && ops.length > 0) break;
          const truncated = decoder.lastError === I.DecoderError.NoMoreBytes && crossFault;
          const fault = truncated ? crossFault! : new GuestFault(UD, undefined);
          ops.push(() => {
            throw fault;
          });
          addrs.push(addr);
          nexts.push(addr + Math.max(length, 1));
          break;
        }
        // a later instruction that crosses into the next page starts its own block
        if (ops.length > 0 && offset + length > firstPageBytes) break;
        const insn = toInsn(instr, addr);
        const compiled = compile(insn);
        insns[ops.length] = insn;
        ops.push(compiled.op);
        addrs.push(addr);
        nexts.push(insn.next);
        offset += length;
        if (compiled.ends) break;
      }
    } finally {
      decoder.free();
    }
    // the bytes decoded: in the first page, and in the next one only when the last instruction reaches into it
    const length = nexts[nexts.length - 1] - start;
    const spans: CodeSpan[] = [{ page: first.page, from: first.offset, to: first.offset + Math.min(length, firstPageBytes) }];
    if (length > firstPageBytes && nextPage !== undefined) spans.push({ page: nextPage, from: 0, to: length - firstPageBytes });
    const pairs = new Map<number, Op>();
    const quiet = new Map<number, Op>();
    for (let i = 0; i + 1 < ops.length; i++) {
      const a = insns[i];
      const b = insns[i + 1];
      const f = a && b ? fuse(a, b) : undefined;
      if (f) {
        pairs.set(i, f);
        i++;
        continue;
      }
      const q = !a || !b ? undefined : overwritesFlags(b) ? quietAlu(a) : overwritesAllButCF(b) ? logicBeforeIncDec(a) : undefined;
      if (q) quiet.set(i, q);
    }
    const block = new Block(start, cpu.cr3, ops, addrs, nexts, spans, pairs, quiet);
    block.tightLoop = isTightLoop(insns, ops.length, start);
    block.breakpoint = this.breakpointSet.has(start);
    this.built++;
    return block;
  }
}

const REGISTER_ONLY = new Set(['add', 'sub', 'cmp', 'and', 'or', 'xor', 'test', 'inc', 'dec', 'neg', 'not', 'adc', 'sbb', 'mov',
  'shl', 'shr', 'sar', 'rol', 'ror', 'imul', 'movzx', 'movsx', 'movsxd', 'xchg', 'nop', 'pause', 'bt', 'bts', 'btr', 'btc',
  'bsf', 'bsr', 'cmove', 'cmovne', 'sete', 'setne', 'cdqe', 'cqo', 'cwde', 'cdq']);

/** See Block.tightLoop: register-only instructions, then a jump back to the block's start. */
function isTightLoop(insns: readonly (Insn | undefined)[], n: number, start: number): boolean {
  if (n < 2) return false;
  const last = insns[n - 1];
  const target = last?.ops[0];
  if (!last || target?.kind !== 'branch' || target.target !== start || !/^(J|Loop)/.test(last.mnemonicName)) return false;
  for (let i = 0; i < n - 1; i++) {
    const insn = insns[i];
    if (!insn || !REGISTER_ONLY.has(insn.mnemonicName.toLowerCase()) || insn.ops.some((o) => o.kind !== 'reg' && o.kind !== 'imm')) return false;
  }
  return true;
}


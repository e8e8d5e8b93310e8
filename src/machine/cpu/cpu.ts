// One x86-64 vCPU (long mode): registers, RFLAGS with lazy arithmetic flags, control and
// descriptor-table registers, the MMU (4-level paging with a software TLB), exception and
// interrupt delivery through the IDT, and the loop that runs decoded blocks.
//
// Hand-written, not a library: no maintained JS x86-64 emulator exists (v86 is 32-bit), and the
// debugger needs to own every piece of state. Registers are 32-bit halves in an Int32Array
// (r[2i] low, r[2i+1] high): no BigInt and no allocation on the per-instruction path.

import { AC, ARITH, DF as DF_FLAG, FIXED1, type FlagState, ID, IF, IOPL, materialize, NT, RF, TF } from './flags';
import { DF, faultClass, GP, GuestFault, hasErrorCode, NP, PF, PFEC_FETCH, PFEC_PRESENT, PFEC_RSVD, PFEC_USER, PFEC_WRITE, SS } from './exceptions';
import { type DeviceAccess, SVM_EXIT_IOIO, SVM_EXIT_NPF, SVM_EXIT_SHUTDOWN, type VmExit, VmExitSignal } from './vmexit';
import type { PhysicalMemory } from '../memory';
import type { Block, BlockCache } from './blocks';
import { ONE_EACH, type Op } from './ops/op';
import { CpuMsrs } from './ops/system';

/**
 * What a vCPU asks of the machine it sits in. Intercepted instructions (most MSRs, CPUID, HLT,
 * VMMCALL, the SVM instructions) never come here: they throw a VmExitSignal (vmexit.ts).
 */
export interface CpuBus {
  readonly mem: PhysicalMemory;
  readonly blocks: BlockCache;
  /** the machine's virtual time stamp counter */
  tsc(): bigint;
  /** CR8 is the local APIC's task priority (bits 7:4 of TPR) */
  getCr8(cpu: Cpu): number;
  setCr8(cpu: Cpu, value: number): void;
  /** an exception or interrupt is about to be delivered through the IDT (for the event log) */
  exception(cpu: Cpu, vector: number, errorCode: number | undefined): void;
  /**
   * A guest-physical access outside RAM, answered now: by hardware (AVIC's backing page, with or
   * without a trap) or by the host's device model. It records the VM exit it causes, if any,
   * with `Cpu.postExit`.
   */
  mmioRead(cpu: Cpu, gpa: number, size: number): number;
  mmioWrite(cpu: Cpu, gpa: number, size: number, value: number): void;
  /** a write hit a page with a debugger watch (mem.watchPages): the machine checks the exact range */
  watchedWrite(cpu: Cpu, phys: number, size: number): void;
  /** the value an IN gets (port I/O always exits; the CPU records the IOIO exit itself) */
  pioIn(cpu: Cpu, port: number, size: number): number;
  /**
   * An MSR the CPU does not keep itself, when hardware completes the access without an intercept
   * (x2AVIC's x2APIC MSRs): the value read (0n for a write); undefined when it is intercepted.
   */
  hwMsr(cpu: Cpu, msr: number, write: boolean, value: bigint): bigint | undefined;
}

/** What the CPU model offers the guest (CPUID and the reserved-bit checks follow it). */
export interface CpuFeatures {
  /** SVM for nested guests (EFER.SVME can be set) */
  readonly svm: boolean;
}

/**
 * How an event reaches the IDT: a fault (or abort) from an instruction, a trap after it (INT1),
 * a software interrupt (INT n, INT3: the gate's DPL is checked), or an external interrupt.
 */
export type EventKind = 'fault' | 'trap' | 'software' | 'external';

/** Why `run` returned before its budget was spent. */
export const STOP_NONE = 0;
export const STOP_BREAKPOINT = 4;
/** a #VMEXIT (also a shutdown): `vmexit` says what the guest did */
export const STOP_VMEXIT = 5;
/** the debugger asked (an event breakpoint, a data breakpoint, pause) */
export const STOP_DEBUG = 6;

/** Watches calls and returns for the debugger's guest frames (a shadow stack). */
export interface CallObserver {
  /** a CALL (or an interrupt or exception delivered through the IDT) from `from` to `to` that returns to `ret` */
  call(cpu: Cpu, from: number, to: number, ret: number, interrupt: boolean): void;
  /** a RET or IRET to `to`, with RSP after it */
  ret(cpu: Cpu, to: number): void;
}

const TLB_BITS = 10;
const TLB_SIZE = 1 << TLB_BITS;
const TLB_MASK = TLB_SIZE - 1;
const TWO32 = 4294967296;

export const CR0_PE = 0x1;
export const CR0_MP = 0x2;
export const CR0_EM = 0x4;
export const CR0_TS = 0x8;
export const CR0_ET = 0x10;
export const CR0_NE = 0x20;
export const CR0_WP = 0x10000;
export const CR0_AM = 0x40000;
export const CR0_NW = 0x20000000;
export const CR0_CD = 0x40000000;
export const CR0_PG = 0x80000000 | 0;
export const CR4_PAE = 0x20;
export const EFER_SCE = 0x1;
export const EFER_LME = 0x100;
export const EFER_LMA = 0x400;
export const EFER_NXE = 0x800;
export const EFER_SVME = 0x1000;

/** Arithmetic flags as a flag-setting instruction leaves the lazy record (see flags.ts). */
export class Cpu implements FlagState {
  readonly r = new Int32Array(32);
  /** the canonical 64-bit RIP as a signed number (exact: canonical addresses fit in 48 bits) */
  rip = 0;

  // RFLAGS: `flags` holds every bit except the arithmetic ones still lazy
  flags = FIXED1;
  lazy = 0;
  lazyKind = 0;
  lazySize = 8;
  lazyAlo = 0;
  lazyAhi = 0;
  lazyRlo = 0;
  lazyRhi = 0;

  cr0 = 0;
  cr2 = 0;
  cr3 = 0;
  cr4 = 0;
  cr8 = 0;
  efer = 0;
  gdtBase = 0;
  gdtLimit = 0;
  idtBase = 0;
  idtLimit = 0;
  cs = 0;
  ss = 0;
  ds = 0;
  es = 0;
  fs = 0;
  gs = 0;
  fsBase = 0;
  gsBase = 0;
  kernelGsBase = 0;
  cpl = 0;
  /** DR0..DR7 (kept, not acted on: hardware breakpoints are not emulated) */
  readonly dr = [0, 0, 0, 0, 0, 0, 0xffff0ff0, 0x400];
  readonly msrs = new CpuMsrs();

  /** scratch: the high half of a 64-bit load, an effective address */
  tmpHi = 0;
  eaLo = 0;
  eaHi = 0;

  /** instructions retired */
  icount = 0;
  /** interrupts are inhibited until icount reaches this (STI, MOV SS shadow) */
  shadowEnd = 0;
  stiShadow = false;
  stopReason = STOP_NONE;
  /** an instruction asks the runner to end the block after it (MMIO write, self-modifying code) */
  exitReq = 0;
  /** set when `run` must look at pending events (interrupts, kicks) at the next block boundary */
  eventPending = false;
  /** an interrupt waits for IF: setting IF sets `eventPending` */
  irqWaiting = false;
  /** NMIs are blocked (one is being handled) until the next IRET */
  nmiBlocked = false;
  /** the VM exit that stopped `run` (stopReason STOP_VMEXIT) */
  vmexit: VmExit | null = null;
  /** the address of the instruction that exited (-1 while no exit is pending) */
  exitRip = -1;
  /** where the guest goes on once the host has emulated an intercepted instruction (NRIP) */
  exitNextRip = 0;
  /** the debugger's shadow stack, when one is attached */
  calls: CallObserver | null = null;
  /** resume from a breakpoint address without stopping on it again */
  skipBreakpoint = false;

  // software TLB: tags are virtual page numbers of 32-bit linear addresses (-1 empty)
  private readonly tlbR = new Int32Array(TLB_SIZE).fill(-1);
  private readonly tlbRP = new Uint32Array(TLB_SIZE);
  private readonly tlbW = new Int32Array(TLB_SIZE).fill(-1);
  private readonly tlbWP = new Uint32Array(TLB_SIZE);
  private readonly view: DataView;
  private readonly ram: Uint8Array;
  private readonly ramSize: number;
  /** block to try first at the next dispatch (the successor chain), and the block that ran last */
  private last: Block | null = null;
  private prev: Block | null = null;
  /** exception being delivered, for double/triple fault detection (-1: none) */
  private delivering = -1;

  constructor(readonly index: number, readonly bus: CpuBus, readonly features: CpuFeatures) {
    this.view = bus.mem.view;
    this.ram = bus.mem.ram;
    this.ramSize = bus.mem.size;
  }

  // ---- registers ---------------------------------------------------------------------------------

  /** A 64-bit register as a bigint (debugger, JSON; never on the hot path). */
  reg64(i: number): bigint {
    return (BigInt(this.r[2 * i + 1] >>> 0) << 32n) | BigInt(this.r[2 * i] >>> 0);
  }

  setReg64(i: number, v: bigint): void {
    this.r[2 * i] = Number(v & 0xffffffffn) | 0;
    this.r[2 * i + 1] = Number((v >> 32n) & 0xffffffffn) | 0;
  }

  /** RIP as an unsigned 64-bit value. */
  rip64(): bigint {
    return BigInt.asUintN(64, BigInt(this.rip));
  }

  getRflags(): number {
    return materialize(this) | FIXED1;
  }

  /** Sets RFLAGS as far as software can (reserved bits stay as they must be). */
  setRflags(v: number): void {
    this.lazy = 0;
    this.flags = (v & (ARITH | TF | IF | DF_FLAG | IOPL | NT | RF | AC | ID)) | FIXED1;
    if (v & IF && this.irqWaiting) this.eventPending = true;
  }

  // ---- memory: fast paths through the TLB --------------------------------------------------------

  rd8(lo: number, hi: number): number {
    if (hi === 0) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (this.tlbR[i] === vp) return this.ram[this.tlbRP[i] + (lo & 0xfff)];
    }
    return this.readSlow(lo, hi, 1);
  }

  rd16(lo: number, hi: number): number {
    if (hi === 0 && (lo & 0xfff) <= 0xffe) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (this.tlbR[i] === vp) return this.view.getUint16(this.tlbRP[i] + (lo & 0xfff), true);
    }
    return this.readSlow(lo, hi, 2);
  }

  rd32(lo: number, hi: number): number {
    if (hi === 0 && (lo & 0xfff) <= 0xffc) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (this.tlbR[i] === vp) return this.view.getInt32(this.tlbRP[i] + (lo & 0xfff), true);
    }
    return this.readSlow(lo, hi, 4);
  }

  /** Returns the low half; the high half is left in `tmpHi`. */
  rd64(lo: number, hi: number): number {
    if (hi === 0 && (lo & 0xfff) <= 0xff8) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (this.tlbR[i] === vp) {
        const p = this.tlbRP[i] + (lo & 0xfff);
        this.tmpHi = this.view.getInt32(p + 4, true);
        return this.view.getInt32(p, true);
      }
    }
    const a = addLo(lo, hi, 4);
    const ahi = ADD_HI;
    // both halves readable before either is read; the low half first, so CR2 names the first byte
    this.translate(lo, hi, ACCESS_READ);
    this.translate(a, ahi, ACCESS_READ);
    const l = this.readSlow(lo, hi, 4);
    this.tmpHi = this.readSlow(a, ahi, 4);
    return l;
  }

  wr8(lo: number, hi: number, v: number): void {
    if (hi === 0) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (this.tlbW[i] === vp) {
        this.ram[this.tlbWP[i] + (lo & 0xfff)] = v;
        return;
      }
    }
    this.writeSlow(lo, hi, 1, v);
  }

  wr16(lo: number, hi: number, v: number): void {
    if (hi === 0 && (lo & 0xfff) <= 0xffe) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (this.tlbW[i] === vp) {
        this.view.setUint16(this.tlbWP[i] + (lo & 0xfff), v, true);
        return;
      }
    }
    this.writeSlow(lo, hi, 2, v);
  }

  wr32(lo: number, hi: number, v: number): void {
    if (hi === 0 && (lo & 0xfff) <= 0xffc) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (this.tlbW[i] === vp) {
        this.view.setInt32(this.tlbWP[i] + (lo & 0xfff), v, true);
        return;
      }
    }
    this.writeSlow(lo, hi, 4, v);
  }

  wr64(lo: number, hi: number, vlo: number, vhi: number): void {
    if (hi === 0 && (lo & 0xfff) <= 0xff8) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (this.tlbW[i] === vp) {
        const p = this.tlbWP[i] + (lo & 0xfff);
        this.view.setInt32(p, vlo, true);
        this.view.setInt32(p + 4, vhi, true);
        return;
      }
    }
    // both halves must be writable before either is written (a fault leaves memory unchanged)
    const a = addLo(lo, hi, 4);
    const ahi = ADD_HI;
    this.translate(lo, hi, ACCESS_WRITE);
    this.translate(a, ahi, ACCESS_WRITE);
    this.writeSlow(lo, hi, 4, vlo);
    this.writeSlow(a, ahi, 4, vhi);
  }

  /** Write-permission check for read-modify-write instructions before they change anything. */
  probeWrite(lo: number, hi: number, size: number): void {
    this.translate(lo, hi, ACCESS_WRITE);
    if (((lo & 0xfff) + size) > PAGE) {
      const a = addLo(lo, hi, size - 1);
      this.translate(a, ADD_HI, ACCESS_WRITE);
    }
  }

  // ---- memory: slow paths -------------------------------------------------------------------------

  private readSlow(lo: number, hi: number, size: number): number {
    lo >>>= 0;
    if ((lo & 0xfff) + size > PAGE) {
      // crosses a page: every page translated (and checked) before any byte is read
      const phys: number[] = [];
      for (let k = 0; k < size; k++) {
        const a = addLo(lo, hi, k);
        phys.push(this.translate(a, ADD_HI, ACCESS_READ));
      }
      let v = 0;
      for (let k = 0; k < size; k++) v |= this.readPhys(phys[k], 1) << (8 * k);
      return size === 2 ? v & 0xffff : v;
    }
    return this.readPhys(this.translate(lo, hi, ACCESS_READ), size);
  }

  private writeSlow(lo: number, hi: number, size: number, v: number): void {
    lo >>>= 0;
    if ((lo & 0xfff) + size > PAGE) {
      const phys: number[] = [];
      for (let k = 0; k < size; k++) {
        const a = addLo(lo, hi, k);
        phys.push(this.translate(a, ADD_HI, ACCESS_WRITE));
      }
      for (let k = 0; k < size; k++) this.writePhys(phys[k], 1, (v >>> (8 * k)) & 0xff);
      return;
    }
    this.writePhys(this.translate(lo, hi, ACCESS_WRITE), size, v);
  }

  /** A physical read: RAM, or outside RAM the bus (AVIC hardware or the host's device model). */
  readPhys(phys: number, size: number): number {
    if (phys + size <= this.ramSize) {
      switch (size) {
        case 1: return this.ram[phys];
        case 2: return this.view.getUint16(phys, true);
        default: return this.view.getInt32(phys, true);
      }
    }
    return this.bus.mmioRead(this, phys, size);
  }

  writePhys(phys: number, size: number, v: number): void {
    if (phys + size <= this.ramSize) {
      const first = phys >>> 12;
      const last = (phys + size - 1) >>> 12;
      const code = this.bus.mem.codePages;
      // self-modifying code: drop the blocks decoded from these bytes, and end the current block after this instruction
      if ((code[first] | code[last]) !== 0 && this.bus.blocks.invalidateRange(phys, size)) this.exitReq = 1;
      switch (size) {
        case 1: this.ram[phys] = v; break;
        case 2: this.view.setUint16(phys, v, true); break;
        default: this.view.setInt32(phys, v, true);
      }
      const watch = this.bus.mem.watchPages;
      if ((watch[first] | watch[last]) !== 0) this.bus.watchedWrite(this, phys, size);
      return;
    }
    this.bus.mmioWrite(this, phys, size, v);
    this.exitReq = 1; // a device may have raised an interrupt: look at it before the next instruction
  }

  /**
   * Records a VM exit that happens after the current instruction (a device access, an AVIC
   * trap): the runner ends the block there and stops. The accesses of one instruction that
   * exits for NPF are gathered in one exit.
   */
  postExit(e: VmExit): void {
    const prev = this.vmexit;
    if (prev !== null && prev.code === SVM_EXIT_NPF && e.code === SVM_EXIT_NPF) prev.accesses.push(...e.accesses);
    else if (prev === null) this.vmexit = e;
    this.stopReason = STOP_VMEXIT;
    this.exitReq = 1;
  }

  /** A port access: always intercepted (KVM's I/O permission map is all ones). */
  portIo(port: number, size: number, write: boolean, value: number): number {
    const mask = size === 1 ? 0xff : size === 2 ? 0xffff : -1;
    const v = ((write ? value : this.bus.pioIn(this, port, size)) & mask) >>> 0;
    const access: DeviceAccess = { where: port, size, write, value: v };
    this.postExit({ code: SVM_EXIT_IOIO, access });
    return v;
  }

  /** Takes the exit that stopped `run` (the host handles it; the vCPU can run again). */
  takeExit(): VmExit {
    const e = this.vmexit;
    if (e === null || this.stopReason !== STOP_VMEXIT) throw new Error(`vCPU ${this.index}: no VM exit to take`);
    this.vmexit = null;
    this.stopReason = STOP_NONE;
    if (this.exitRip === -1) this.exitRip = this.rip; // posted outside an instruction (event delivery)
    return e;
  }

  /** The debugger wants this vCPU stopped at the next instruction boundary (after a VM exit, if one is pending). */
  requestStop(): void {
    if (this.stopReason === STOP_NONE) this.stopReason = STOP_DEBUG;
    this.exitReq = 1;
  }

  /** The host emulated the intercepted instruction: go on after it (kvm_skip_emulated_instruction). */
  skipInstruction(): void {
    this.rip = this.exitNextRip;
    this.icount++;
    this.clearInterruptShadow();
  }

  /** An emulated instruction ends any STI or MOV SS shadow. */
  clearInterruptShadow(): void {
    this.shadowEnd = this.icount;
    this.stiShadow = false;
  }

  /**
   * Linear -> physical through the 4-level page tables (SDM vol. 3, 4.5), setting accessed and
   * dirty bits as the hardware does and filling the TLB; throws #GP (#SS for the stack) for a
   * non-canonical address and #PF, with the faulting address and the error code, for a missing
   * or forbidden mapping.
   */
  translate(lo: number, hi: number, access: number): number {
    lo >>>= 0;
    if (!isCanonical(hi)) throw new GuestFault(access === ACCESS_STACK ? SS : GP, 0);
    const write = access === ACCESS_WRITE;
    const fetch = access === ACCESS_FETCH;
    if (hi === 0) {
      const vp = lo >>> 12;
      const i = vp & TLB_MASK;
      if (write) {
        if (this.tlbW[i] === vp) return this.tlbWP[i] + (lo & 0xfff);
      } else if (!fetch && this.tlbR[i] === vp) return this.tlbRP[i] + (lo & 0xfff);
    }
    const user = this.cpl === 3;
    const nxe = (this.efer & EFER_NXE) !== 0;
    const fail = (present: boolean, rsvd = false): never => {
      const code = (present ? PFEC_PRESENT : 0) | (write ? PFEC_WRITE : 0) | (user ? PFEC_USER : 0) |
        (rsvd ? PFEC_RSVD : 0) | (fetch && nxe ? PFEC_FETCH : 0);
      throw new GuestFault(PF, code, hi * TWO32 + lo);
    };
    // linear address bits: 47:39 PML4, 38:30 PDPT, 29:21 PD, 20:12 PT
    const indices = [(hi >>> 7) & 0x1ff, ((hi & 0x7f) << 2) | (lo >>> 30), (lo >>> 21) & 0x1ff, (lo >>> 12) & 0x1ff];
    let table = (this.cr3 & ~0xfff) >>> 0;
    let writable = true;
    let userOk = true;
    let nx = false;
    for (let level = 4; level >= 1; level--) {
      const ea = table + indices[4 - level] * 8;
      if (ea + 8 > this.ramSize) fail(false); // a table outside RAM has nothing present in it
      let elo = this.view.getInt32(ea, true);
      const ehi = this.view.getInt32(ea + 4, true);
      if (!(elo & 1)) fail(false);
      if (ehi < 0 && !nxe) fail(true, true); // XD set without EFER.NXE is a reserved bit
      writable &&= (elo & 2) !== 0;
      userOk &&= (elo & 4) !== 0;
      nx ||= ehi < 0;
      const large = (level === 3 || level === 2) && (elo & 0x80) !== 0;
      if (!(elo & 0x20)) {
        elo |= 0x20; // accessed
        this.view.setInt32(ea, elo, true);
      }
      if (!large && level > 1) {
        table = (ehi & 0xfffff) * TWO32 + ((elo & ~0xfff) >>> 0);
        continue;
      }
      const spanMask = level === 3 ? 0x3fffffff : level === 2 ? 0x1fffff : 0xfff;
      // a large page's address bits below its size, except PAT (bit 12), are reserved
      if (large && (elo & spanMask & ~0x1fff) !== 0) fail(true, true);
      if (write && !writable && (user || this.cr0 & CR0_WP)) fail(true);
      if (user && !userOk) fail(true);
      if (fetch && nx) fail(true);
      if (write && !(elo & 0x40)) this.view.setInt32(ea, elo | 0x40, true); // dirty
      const frame = (ehi & 0xfffff) * TWO32 + ((elo & ~spanMask) >>> 0);
      const phys = frame + (lo & spanMask);
      if (hi === 0) this.fillTlb(lo >>> 12, phys - (lo & 0xfff), access, writable || (!user && !(this.cr0 & CR0_WP)));
      return phys;
    }
    return fail(false);
  }

  private fillTlb(vp: number, pageBase: number, access: number, writable: boolean): void {
    if (pageBase + PAGE > this.ramSize) return; // MMIO pages always take the slow path
    const i = vp & TLB_MASK;
    this.tlbR[i] = vp;
    this.tlbRP[i] = pageBase;
    // a write entry only where a write can go straight to RAM: writable, dirty already set, no decoded code
    const page = pageBase >>> 12;
    if (access === ACCESS_WRITE && writable && !this.bus.mem.codePages[page] && !this.bus.mem.watchPages[page]) {
      this.tlbW[i] = vp;
      this.tlbWP[i] = pageBase;
    }
  }

  flushTlb(): void {
    this.tlbR.fill(-1);
    this.tlbW.fill(-1);
  }

  /** Drops write entries that point at a physical page (it now holds decoded code). */
  dropWriteEntries(page: number): void {
    const base = page * PAGE;
    for (let i = 0; i < TLB_SIZE; i++) if (this.tlbW[i] !== -1 && this.tlbWP[i] === base) this.tlbW[i] = -1;
  }

  /** CR0.PG/WP, CR3, CR4 paging bits or a page mapping changed: drop translations and decoded code. */
  pagingChanged(): void {
    this.flushTlb();
    this.bus.blocks.invalidateAll();
    this.last = null;
  }

  invlpg(lo: number, hi: number): void {
    if (hi !== 0) return;
    const vp = lo >>> 12;
    const i = vp & TLB_MASK;
    if (this.tlbR[i] === vp) this.tlbR[i] = -1;
    if (this.tlbW[i] === vp) this.tlbW[i] = -1;
  }

  // ---- stack ------------------------------------------------------------------------------------

  push64(lo: number, hi: number): void {
    const r = this.r;
    let slo = (r[8] - 8) | 0;
    let shi = r[9];
    if ((r[8] >>> 0) < 8) shi = (shi - 1) | 0;
    this.wr64Stack(slo, shi, lo, hi);
    r[8] = slo;
    r[9] = shi;
  }

  /** Pops into (return value lo, tmpHi). */
  pop64(): number {
    const r = this.r;
    const lo = this.rdStack64(r[8], r[9]);
    const hi = this.tmpHi;
    const nlo = (r[8] + 8) | 0;
    if ((nlo >>> 0) < (r[8] >>> 0)) r[9] = (r[9] + 1) | 0;
    r[8] = nlo;
    this.tmpHi = hi;
    return lo;
  }

  private wr64Stack(lo: number, hi: number, vlo: number, vhi: number): void {
    if (!isCanonical(hi)) throw new GuestFault(SS, 0);
    this.wr64(lo, hi, vlo, vhi);
  }

  private rdStack64(lo: number, hi: number): number {
    if (!isCanonical(hi)) throw new GuestFault(SS, 0);
    return this.rd64(lo, hi);
  }

  // ---- exceptions and interrupts ------------------------------------------------------------------

  /**
   * Delivers an exception or interrupt through the 64-bit IDT (SDM vol. 3, 6.14): gate checks,
   * the 16-byte-aligned frame SS, RSP, RFLAGS, CS, RIP [, error code], IF cleared by interrupt
   * gates. A fault while delivering becomes #DF (contributory or page-fault pairs, SDM table
   * 6-5), handled serially otherwise; a fault while delivering #DF is a triple fault.
   * RIP must already be the address to return to: the faulting instruction for faults, the next
   * one for traps and software interrupts.
   */
  deliver(vector: number, errorCode: number | undefined, kind: EventKind = 'fault', instructionAddress?: number): void {
    this.bus.exception(this, vector, errorCode);
    const outer = this.delivering;
    this.delivering = vector;
    try {
      this.deliverThroughIdt(vector, errorCode, kind);
      this.delivering = outer;
    } catch (e) {
      if (!(e instanceof GuestFault)) throw e;
      this.delivering = outer;
      if (e.vector === PF) this.cr2 = e.address ?? 0;
      // an INT n whose delivery faults did not complete: the fault is reported at the INT itself
      if (instructionAddress !== undefined) this.rip = instructionAddress;
      const first = faultClass(vector);
      const second = faultClass(e.vector);
      if (vector === DF) this.tripleFault();
      else if ((first === 'contributory' && second === 'contributory') || (first === 'page' && second !== 'benign')) this.deliver(DF, 0);
      else this.deliver(e.vector, hasErrorCode(e.vector) ? e.errorCode ?? 0 : undefined);
    }
  }

  private deliverThroughIdt(vector: number, errorCode: number | undefined, kind: EventKind): void {
    const software = kind === 'software';
    // error code for a fault on the IDT itself: the vector, IDT bit, EXT when not software-initiated
    const idtError = vector * 8 + 2 + (software ? 0 : 1);
    if (vector * 16 + 15 > this.idtLimit) throw new GuestFault(GP, idtError);
    const baseLo = loOf(this.idtBase);
    const baseHi = hiOf(this.idtBase);
    const gLo = addLo(baseLo, baseHi, vector * 16);
    const gHi = ADD_HI;
    const w0 = this.rd32(gLo, gHi);
    const w1 = this.rd32(addLo(gLo, gHi, 4), ADD_HI);
    const w2 = this.rd32(addLo(gLo, gHi, 8), ADD_HI);
    const type = (w1 >>> 8) & 0x1f;
    const dpl = (w1 >>> 13) & 3;
    if (type !== 0xe && type !== 0xf) throw new GuestFault(GP, idtError);
    if (software && dpl < this.cpl) throw new GuestFault(GP, idtError);
    if (!(w1 & 0x8000)) throw new GuestFault(NP, idtError);
    const selector = w0 >>> 16;
    const offLo = ((w0 & 0xffff) | (w1 & 0xffff0000)) >>> 0;
    const offHi = w2;
    const newCpl = this.checkCodeSelector(selector);
    if (!isCanonical(offHi)) throw new GuestFault(GP, 0);
    if (newCpl < this.cpl || (w1 & 0x7) !== 0) {
      // a privilege change or an IST stack needs a TSS, which a guest of this machine cannot load
      throw new GuestFault(GP, selector & ~3);
    }
    // a fault's frame has RF set, so that IRETQ back to the instruction does not hit its breakpoint again
    const rflags = this.getRflags() | (kind === 'fault' ? RF : 0);
    const r = this.r;
    const oldRspLo = r[8];
    const oldRspHi = r[9];
    // the frame goes below RSP aligned down to 16 bytes; every slot is checked before RSP moves
    let slo = (oldRspLo & ~0xf) | 0;
    let shi = oldRspHi;
    const words = [this.ss, 0, oldRspLo, oldRspHi, rflags, 0, this.cs, 0, loOf(this.rip), hiOf(this.rip)];
    if (errorCode !== undefined) words.push(errorCode, 0);
    for (let k = 0; k < words.length; k += 2) {
      slo = addLo(slo, shi, -8);
      shi = ADD_HI;
      if (!isCanonical(shi)) throw new GuestFault(SS, 0);
      this.wr64(slo, shi, words[k], words[k + 1]);
    }
    r[8] = slo | 0;
    r[9] = shi;
    this.cs = selector;
    this.cpl = newCpl;
    const from = this.rip;
    this.rip = offHi * TWO32 + offLo;
    if (this.calls !== null) this.calls.call(this, from, this.rip, from, true);
    let f = this.flags & ~(TF | NT | RF);
    if (type === 0xe) f &= ~IF;
    this.flags = f;
  }

  /** A code selector's DPL, after checking it names a present 64-bit code segment in the GDT. */
  checkCodeSelector(selector: number): number {
    const index = selector & ~7;
    if (index === 0 || selector & 4 || index + 7 > this.gdtLimit) throw new GuestFault(GP, selector & ~3);
    const dLo = addLo(loOf(this.gdtBase), hiOf(this.gdtBase), index + 4);
    const hiWord = this.rd32(dLo, ADD_HI);
    const isCode = (hiWord & 0x1800) === 0x1800;
    const longMode = (hiWord & 0x200000) !== 0;
    if (!isCode || !longMode) throw new GuestFault(GP, selector & ~3);
    if (!(hiWord & 0x8000)) throw new GuestFault(NP, selector & ~3);
    return (hiWord >>> 13) & 3;
  }

  /** A fault while delivering #DF: shutdown, which SVM intercepts (KVM reports KVM_EXIT_SHUTDOWN). */
  tripleFault(): void {
    this.delivering = -1;
    this.vmexit = null;
    this.postExit({ code: SVM_EXIT_SHUTDOWN });
  }

  /** Can an external interrupt be taken now (IF set, no STI/MOV SS shadow)? */
  interruptible(): boolean {
    return (this.flags & IF) !== 0 && this.icount >= this.shadowEnd;
  }

  // ---- running ----------------------------------------------------------------------------------

  /**
   * Runs guest code for up to `budget` instructions, stopping early at a VM exit (`vmexit`) or a
   * breakpoint (`breakpoints` of the block cache). Returns the number of instructions executed;
   * `stopReason` says why it stopped early.
   */
  run(budget: number): number {
    let executed = 0;
    this.exitRip = -1;
    this.exitReq = 0;
    const blocks = this.bus.blocks;
    let block = this.last;
    while (executed < budget) {
      if (this.stopReason !== STOP_NONE || this.eventPending) {
        if (this.stopReason !== STOP_NONE) break;
        if (this.onEvents !== null && this.onEvents(this)) break;
        block = this.last;
      }
      if (block === null || block.start !== this.rip || !block.valid || block.cr3 !== this.cr3) {
        block = blocks.lookup(this);
        if (block === null) {
          executed++;
          this.icount++;
          this.prev = null;
          continue;
        }
        if (this.prev !== null) this.prev.link(block);
      }
      this.prev = block;
      if (block.breakpoint) {
        if (!this.skipBreakpoint) {
          this.stopReason = STOP_BREAKPOINT;
          break;
        }
        this.skipBreakpoint = false;
      }
      // the whole block runs with its fused ops; a budget or an interrupt shadow ending inside it runs
      // instruction by instruction
      const room = budget - executed;
      const whole = room >= block.ops.length && this.icount >= this.shadowEnd;
      let ops: readonly Op[];
      let counts: Int32Array;
      let addrs: readonly number[];
      let nexts: readonly number[];
      let n: number;
      if (whole) {
        ops = block.fused;
        counts = block.fusedCounts;
        addrs = block.fusedAddrs;
        nexts = block.fusedNexts;
        n = ops.length;
      } else {
        ops = block.ops;
        counts = ONE_EACH;
        addrs = block.addrs;
        nexts = block.nexts;
        n = ops.length;
        if (n > room) n = room;
        if (this.icount < this.shadowEnd && n > this.shadowEnd - this.icount) n = this.shadowEnd - this.icount;
      }
      let i = 0;
      let done = 0;
      let exited = false;
      if (whole && block.tightLoop && !block.breakpoint) {
        // a register-only loop: nothing in it can fault, exit early or change the CPU's state flags
        const per = block.ops.length;
        const last = n - 1;
        const start = block.start;
        // nothing in the loop reads the instruction count: it is added up once, after it
        const most = Math.floor((budget - executed) / per);
        let rounds = 0;
        for (;;) {
          for (i = 0; i < last; i++) ops[i](this);
          ops[last](this);
          rounds++;
          if (this.rip !== start || rounds >= most) break;
        }
        executed += rounds * per;
        this.icount += rounds * per;
        block = block.successor(this.rip);
        this.last = block;
        continue;
      }
      try {
        for (;;) {
          for (; i < n; i++) {
            if (ops[i](this) !== 0) {
              // the instruction set RIP itself (branch, I/O, system instruction)
              exited = true;
              break;
            }
            if (this.exitReq !== 0) {
              // MMIO or self-modifying code: stop after this instruction
              this.rip = nexts[i];
              exited = true;
              break;
            }
          }
          done = exited ? counts[i] : counts[n - 1];
          // a loop that branches back to its own start runs again without a dispatch (as block chaining does)
          if (!exited || ops !== block.fused || this.rip !== block.start || this.exitReq !== 0 || this.stopReason !== STOP_NONE ||
            this.eventPending || !block.valid || block.breakpoint || this.stiShadow) break;
          if (budget - executed - done < block.ops.length) break;
          executed += done;
          this.icount += done;
          i = 0;
          exited = false;
        }
      } catch (e) {
        if (e instanceof VmExitSignal) {
          // an intercepted instruction: it has not run; RIP stays at it, the host emulates it
          this.rip = addrs[i];
          done = i > 0 ? counts[i - 1] : 0;
          this.icount += done;
          executed += done;
          this.exitReq = 0;
          this.last = null;
          this.prev = null;
          this.vmexit = e.exit;
          this.exitRip = this.rip;
          this.exitNextRip = e.nextRip;
          this.stopReason = STOP_VMEXIT;
          break;
        }
        if (!(e instanceof GuestFault)) throw e;
        // op i faulted at its first instruction: it counts as executed, RIP is its address
        this.rip = addrs[i];
        done = (i > 0 ? counts[i - 1] : 0) + 1;
        this.icount += done;
        executed += done;
        this.exitReq = 0;
        this.last = null;
        this.prev = null;
        block = null;
        if (e.vector === PF) this.cr2 = e.address ?? 0;
        this.deliver(e.vector, hasErrorCode(e.vector) ? e.errorCode ?? 0 : undefined);
        continue;
      }
      this.exitReq = 0;
      this.icount += done;
      executed += done;
      if ((this.stopReason as number) === STOP_VMEXIT && this.exitRip === -1) this.exitRip = addrs[exited ? i : n - 1];
      if (exited) {
        if (this.stiShadow) {
          this.stiShadow = false;
          this.shadowEnd = this.icount + 1;
        }
      } else {
        this.rip = nexts[n - 1];
      }
      block = block.successor(this.rip);
      this.last = block;
    }
    return executed;
  }

  /** The machine's hook for pending events (interrupts, INIT): return true to stop running. */
  onEvents: ((cpu: Cpu) => boolean) | null = null;

  /** Drops the successor chain (the block cache changed). */
  forgetChain(): void {
    this.last = null;
    this.prev = null;
  }
}

export const ACCESS_READ = 0;
export const ACCESS_WRITE = 1;
export const ACCESS_FETCH = 2;
export const ACCESS_STACK = 3;
const PAGE = 4096;

/** bits 63:47 all equal, given the high half */
export function isCanonical(hi: number): boolean {
  return hi >= -0x8000 && hi <= 0x7fff;
}

/** the high half of the last addLo result */
export let ADD_HI = 0;

/** (lo, hi) + k for a small signed k: returns the low half (unsigned), leaves the high half in ADD_HI. */
export function addLo(lo: number, hi: number, k: number): number {
  const s = (lo >>> 0) + k;
  if (s >= TWO32) {
    ADD_HI = (hi + 1) | 0;
    return s - TWO32;
  }
  if (s < 0) {
    ADD_HI = (hi - 1) | 0;
    return s + TWO32;
  }
  ADD_HI = hi;
  return s;
}

/** Low (unsigned) and high (int32) halves of a canonical address held as a signed number. */
export function loOf(v: number): number {
  return ((v % TWO32) + TWO32) % TWO32;
}

export function hiOf(v: number): number {
  return Math.floor(v / TWO32) | 0;
}

// System instructions: in/out, rdmsr/wrmsr (MSRs SVM passes through run here; the rest exit to
// the KVM model, which uses the CPU's own MSR state below for EFER, PAT, TSC, TSC_AUX), cpuid
// (always an exit), rdtsc/rdtscp, lgdt/lidt/sgdt/sidt, mov to and from control, debug and segment
// registers, pop sreg, popfq, cli/sti and the flag instructions, invlpg, wbinvd, swapgs,
// syscall/sysret, the SVM instructions, the fences.

import {
  CR0_CD, CR0_NW, CR0_PE, CR0_PG, CR0_WP, CR4_PAE, type Cpu, EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, EFER_SVME, isCanonical,
} from '../cpu';
import {
  SVM_EXIT_CLGI, SVM_EXIT_CPUID, SVM_EXIT_INVLPGA, SVM_EXIT_MSR, SVM_EXIT_SKINIT, SVM_EXIT_STGI, SVM_EXIT_VMLOAD, SVM_EXIT_VMMCALL,
  SVM_EXIT_VMRUN, SVM_EXIT_VMSAVE, type VmExit, VmExitSignal,
} from '../vmexit';
import { GP, GuestFault, NP, SS as SS_FAULT, UD } from '../exceptions';
import { CF, DF, IF } from '../flags';
import type { Insn } from '../insn';
import { continues, ends, type Compiled } from './op';
import { access, makeEa, regPut } from './operands';

const TWO32 = 4294967296;

function requireCpl0(c: Cpu): void {
  if (c.cpl !== 0) throw new GuestFault(GP, 0);
}

/** Splits a canonical signed number into (lo, hi). */
function split(v: number): [number, number] {
  return [((v % TWO32) + TWO32) % TWO32 | 0, Math.floor(v / TWO32) | 0];
}

function join(lo: number, hi: number): number {
  return hi * TWO32 + (lo >>> 0);
}

// ---- port I/O ------------------------------------------------------------------------------------

export function portIo(insn: Insn, out: boolean): Compiled {
  // the width is the accumulator's (AL/AX/EAX), not DX's
  const acc = out ? insn.ops[1] : insn.ops[0];
  const size = acc.kind === 'reg' ? acc.reg.size : 1;
  const portOp = out ? insn.ops[0] : insn.ops[1];
  const fixedPort = portOp.kind === 'imm' ? portOp.lo & 0xff : -1;
  const next = insn.next;
  return ends((c) => {
    if (c.cpl > ((c.flags >>> 12) & 3)) throw new GuestFault(GP, 0); // no TSS, so no I/O permission bitmap
    const port = fixedPort >= 0 ? fixedPort : c.r[4] & 0xffff;
    const r = c.r;
    if (out) {
      c.portIo(port, size, true, size === 1 ? r[0] & 0xff : size === 2 ? r[0] & 0xffff : r[0]);
    } else {
      const v = c.portIo(port, size, false, 0);
      if (size === 1) r[0] = (r[0] & ~0xff) | (v & 0xff);
      else if (size === 2) r[0] = (r[0] & ~0xffff) | (v & 0xffff);
      else {
        r[0] = v;
        r[1] = 0;
      }
    }
    c.rip = next;
    return 1;
  });
}

// ---- MSRs -----------------------------------------------------------------------------------------

export const MSR_TSC = 0x10;
export const MSR_SYSENTER_CS = 0x174;
export const MSR_SYSENTER_ESP = 0x175;
export const MSR_SYSENTER_EIP = 0x176;
export const MSR_PAT = 0x277;
export const MSR_EFER = 0xc0000080;
export const MSR_STAR = 0xc0000081;
export const MSR_LSTAR = 0xc0000082;
export const MSR_CSTAR = 0xc0000083;
export const MSR_SFMASK = 0xc0000084;
export const MSR_FS_BASE = 0xc0000100;
export const MSR_GS_BASE = 0xc0000101;
export const MSR_KERNEL_GS_BASE = 0xc0000102;
export const MSR_TSC_AUX = 0xc0000103;

/**
 * MSRs SVM lets the guest access without an exit: KVM clears their bits in the MSR permission
 * map (svm.c :: direct_access_msrs @ v6.3). Every other RDMSR/WRMSR exits to KVM.
 */
export function msrPassthrough(msr: number): boolean {
  switch (msr) {
    case MSR_FS_BASE: case MSR_GS_BASE: case MSR_KERNEL_GS_BASE: case MSR_STAR: case MSR_LSTAR: case MSR_CSTAR:
    case MSR_SFMASK: case MSR_SYSENTER_CS: case MSR_SYSENTER_ESP: case MSR_SYSENTER_EIP:
      return true;
    default:
      return false;
  }
}

/** MSR state the CPU keeps itself (the VMCB save area's, for the ones KVM handles). */
export class CpuMsrs {
  star = [0, 0];
  lstar = 0;
  cstar = 0;
  sfmask = 0;
  sysenterCs = 0;
  sysenterEsp = 0;
  sysenterEip = 0;
  pat = [0x00070406, 0x00070406];
  tscAux = 0;
  tscOffset = 0n;
}

/** The CPU's own MSRs: [lo, hi], or undefined where it has none (the caller raises #GP or looks elsewhere). */
export function hwReadMsr(c: Cpu, msr: number): [number, number] | undefined {
  const m = c.msrs;
  switch (msr) {
    case MSR_EFER: return [c.efer, 0];
    case MSR_FS_BASE: return split(c.fsBase);
    case MSR_GS_BASE: return split(c.gsBase);
    case MSR_KERNEL_GS_BASE: return split(c.kernelGsBase);
    case MSR_STAR: return [m.star[0], m.star[1]];
    case MSR_LSTAR: return split(m.lstar);
    case MSR_CSTAR: return split(m.cstar);
    case MSR_SFMASK: return [m.sfmask, 0];
    case MSR_SYSENTER_CS: return [m.sysenterCs, 0];
    case MSR_SYSENTER_ESP: return split(m.sysenterEsp);
    case MSR_SYSENTER_EIP: return split(m.sysenterEip);
    case MSR_PAT: return [m.pat[0], m.pat[1]];
    case MSR_TSC_AUX: return [m.tscAux, 0];
    case MSR_TSC: {
      const t = BigInt.asUintN(64, c.bus.tsc() + m.tscOffset);
      return [Number(t & 0xffffffffn) | 0, Number(t >> 32n) | 0];
    }
    default: return undefined;
  }
}

/** Writes one of the CPU's own MSRs; false: #GP(0), undefined: the CPU has no such MSR. */
export function hwWriteMsr(c: Cpu, msr: number, lo: number, hi: number): boolean | undefined {
  const m = c.msrs;
  const canonical = () => isCanonical(hi);
  switch (msr) {
    case MSR_EFER: {
      // SCE, LME, LMA (read-only), NXE, and SVME when the guest has SVM (KVM: efer_reserved_bits)
      const allowed = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE | (c.features.svm ? EFER_SVME : 0);
      if (hi !== 0 || (lo & ~allowed) !== 0) return false;
      // LME cannot change while paging is on (SDM vol. 3, 9.8.5)
      if (c.cr0 & CR0_PG && ((lo ^ c.efer) & EFER_LME) !== 0) return false;
      c.efer = (lo & ~EFER_LMA) | (c.efer & EFER_LMA);
      c.flushTlb();
      return true;
    }
    case MSR_FS_BASE: if (!canonical()) return false; c.fsBase = join(lo, hi); return true;
    case MSR_GS_BASE: if (!canonical()) return false; c.gsBase = join(lo, hi); return true;
    case MSR_KERNEL_GS_BASE: if (!canonical()) return false; c.kernelGsBase = join(lo, hi); return true;
    case MSR_STAR: m.star = [lo, hi]; return true;
    case MSR_LSTAR: if (!canonical()) return false; m.lstar = join(lo, hi); return true;
    case MSR_CSTAR: if (!canonical()) return false; m.cstar = join(lo, hi); return true;
    case MSR_SFMASK: if (hi !== 0) return false; m.sfmask = lo; return true;
    case MSR_SYSENTER_CS: m.sysenterCs = lo & 0xffff; return true;
    case MSR_SYSENTER_ESP: if (!canonical()) return false; m.sysenterEsp = join(lo, hi); return true;
    case MSR_SYSENTER_EIP: if (!canonical()) return false; m.sysenterEip = join(lo, hi); return true;
    case MSR_PAT: {
      // each of the 8 entries must be a valid memory type: 0, 1, 4, 5, 6, 7
      for (let k = 0; k < 8; k++) {
        const t = ((k < 4 ? lo : hi) >>> ((k % 4) * 8)) & 0xff;
        if (t > 7 || t === 2 || t === 3) return false;
      }
      m.pat = [lo, hi];
      return true;
    }
    case MSR_TSC_AUX: if (hi !== 0) return false; m.tscAux = lo; return true;
    case MSR_TSC: {
      const want = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
      m.tscOffset = want - c.bus.tsc();
      return true;
    }
    default: return undefined;
  }
}

export function msrAccess(insn: Insn, write: boolean): Compiled {
  const next = insn.next;
  return ends((c) => {
    requireCpl0(c);
    const r = c.r;
    const msr = r[2] >>> 0;
    if (!msrPassthrough(msr)) {
      const value = write ? (BigInt(r[4] >>> 0) << 32n) | BigInt(r[0] >>> 0) : 0n;
      const hw = c.bus.hwMsr(c, msr, write, value);
      if (hw === undefined) throw new VmExitSignal({ code: SVM_EXIT_MSR, write, msr }, next);
      if (!write) {
        r[0] = Number(hw & 0xffffffffn) | 0;
        r[1] = 0;
        r[4] = Number(hw >> 32n) | 0;
        r[5] = 0;
      }
      c.rip = next;
      return 1;
    }
    if (write) {
      if (!hwWriteMsr(c, msr, r[0], r[4])) throw new GuestFault(GP, 0);
    } else {
      const v = hwReadMsr(c, msr) as [number, number];
      r[0] = v[0];
      r[1] = 0;
      r[4] = v[1];
      r[5] = 0;
    }
    c.rip = next;
    return 1;
  });
}

// ---- cpuid, time stamp counter ---------------------------------------------------------------------

const CPUID_EXIT: VmExit = { code: SVM_EXIT_CPUID };

/** CPUID: always intercepted under SVM (KVM's kvm_emulate_cpuid answers it). */
export function cpuid(insn: Insn): Compiled {
  const next = insn.next;
  return ends(() => {
    throw new VmExitSignal(CPUID_EXIT, next);
  });
}

export function rdtsc(insn: Insn, withAux: boolean): Compiled {
  const next = insn.next;
  return ends((c) => {
    const t = BigInt.asUintN(64, c.bus.tsc() + c.msrs.tscOffset);
    const r = c.r;
    r[0] = Number(t & 0xffffffffn) | 0; r[1] = 0;
    r[4] = Number(t >> 32n) | 0; r[5] = 0;
    if (withAux) {
      r[2] = c.msrs.tscAux;
      r[3] = 0;
    }
    c.rip = next;
    return 1;
  });
}

// ---- descriptor tables ----------------------------------------------------------------------------

export function descriptorTable(insn: Insn, table: 'gdt' | 'idt', load: boolean): Compiled {
  const m = insn.ops[0];
  if (m.kind !== 'mem') throw new Error(`${insn.mnemonicName} needs a memory operand`);
  const ea = makeEa(m.mem);
  const next = insn.next;
  return ends((c) => {
    ea(c);
    if (load) {
      requireCpl0(c);
      const limit = c.rd16(c.eaLo, c.eaHi);
      const lo2 = addr(c.eaLo + 2, c.eaHi);
      const base = c.rd64(lo2.lo, lo2.hi);
      const baseHi = c.tmpHi;
      if (!isCanonical(baseHi)) throw new GuestFault(GP, 0);
      if (table === 'gdt') {
        c.gdtLimit = limit;
        c.gdtBase = join(base, baseHi);
      } else {
        c.idtLimit = limit;
        c.idtBase = join(base, baseHi);
      }
    } else {
      const [base, limit] = table === 'gdt' ? [c.gdtBase, c.gdtLimit] : [c.idtBase, c.idtLimit];
      const [blo, bhi] = split(base);
      const a2 = addr(c.eaLo + 2, c.eaHi);
      c.probeWrite(c.eaLo, c.eaHi, 10);
      c.wr16(c.eaLo, c.eaHi, limit);
      c.wr64(a2.lo, a2.hi, blo, bhi);
    }
    c.rip = next;
    return 1;
  });
}

function addr(lo: number, hi: number): { lo: number; hi: number } {
  return lo >= TWO32 ? { lo: lo - TWO32, hi: (hi + 1) | 0 } : { lo, hi };
}

// ---- control, debug and segment registers ----------------------------------------------------------

const CR4_ALLOWED = 0x7ff & ~0x800 | 0x20; // VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT (no UMIP, LA57, ...)

export function movCr(insn: Insn): Compiled {
  const [a, b] = insn.ops;
  const next = insn.next;
  if (a.kind === 'cr' && b.kind === 'reg') {
    const n = a.n;
    const s = 2 * b.reg.index;
    if (![0, 2, 3, 4, 8].includes(n)) return ud();
    return ends((c) => {
      requireCpl0(c);
      const lo = c.r[s];
      const hi = c.r[s + 1];
      switch (n) {
        case 0: {
          // bits 63:32 reserved; PG without PE, NW without CD, and leaving paging in long mode are illegal
          if (hi !== 0 || (lo & CR0_PG && !(lo & CR0_PE)) || (lo & CR0_NW && !(lo & CR0_CD)) || (c.efer & EFER_LMA && !(lo & CR0_PG))) throw new GuestFault(GP, 0);
          const changed = (c.cr0 ^ lo) & (CR0_PG | CR0_WP | CR0_PE);
          c.cr0 = lo | 0x10; // ET is hard-wired to 1
          if (changed) c.pagingChanged();
          break;
        }
        case 2: c.cr2 = join(lo, hi); break;
        case 3:
          if ((hi & ~0xfffff) !== 0) throw new GuestFault(GP, 0); // beyond MAXPHYADDR (52)
          c.cr3 = join(lo, hi);
          c.pagingChanged();
          break;
        case 4:
          if (hi !== 0 || (lo & ~CR4_ALLOWED) !== 0 || (c.efer & EFER_LMA && !(lo & CR4_PAE))) throw new GuestFault(GP, 0);
          if (((c.cr4 ^ lo) & 0xb0) !== 0) c.pagingChanged(); // PSE, PAE, PGE
          c.cr4 = lo;
          break;
        default:
          if (hi !== 0 || (lo & ~0xf) !== 0) throw new GuestFault(GP, 0);
          c.bus.setCr8(c, lo & 0xf);
      }
      c.rip = next;
      return 1;
    });
  }
  if (a.kind === 'reg' && b.kind === 'cr') {
    const n = b.n;
    const d = 2 * a.reg.index;
    if (![0, 2, 3, 4, 8].includes(n)) return ud();
    return ends((c) => {
      requireCpl0(c);
      let v: [number, number];
      switch (n) {
        case 0: v = [c.cr0, 0]; break;
        case 2: v = split(c.cr2); break;
        case 3: v = split(c.cr3); break;
        case 4: v = [c.cr4, 0]; break;
        default: v = [c.bus.getCr8(c), 0];
      }
      c.r[d] = v[0];
      c.r[d + 1] = v[1];
      c.rip = next;
      return 1;
    });
  }
  throw new Error('mov cr: unexpected operands');
}

export function movDr(insn: Insn): Compiled {
  const [a, b] = insn.ops;
  const next = insn.next;
  const toDr = a.kind === 'dr';
  const n = toDr ? (a as { n: number }).n : (b as { n: number }).n;
  const g = toDr ? b : a;
  if (g.kind !== 'reg' || n > 7) return ud();
  const i = 2 * g.reg.index;
  return ends((c) => {
    requireCpl0(c);
    let k = n;
    if (k === 4 || k === 5) {
      if (c.cr4 & 0x8) throw new GuestFault(UD, undefined); // CR4.DE: DR4/DR5 are reserved
      k += 2; // otherwise aliases of DR6/DR7
    }
    if (toDr) {
      if ((k === 6 || k === 7) && c.r[i + 1] !== 0) throw new GuestFault(GP, 0);
      c.dr[k] = join(c.r[i], c.r[i + 1]);
    } else {
      const [lo, hi] = split(c.dr[k]);
      c.r[i] = lo;
      c.r[i + 1] = hi;
    }
    c.rip = next;
    return 1;
  });
}

type SegName = 'es' | 'cs' | 'ss' | 'ds' | 'fs' | 'gs';

/** Loads a data segment register: null is fine except for SS above CPL 0; the descriptor must fit. */
function loadSegment(c: Cpu, name: SegName, selector: number): void {
  const index = selector & ~7;
  if (index === 0) {
    if (name === 'ss' && (c.cpl === 3 || (selector & 3) !== c.cpl)) throw new GuestFault(GP, 0);
    c[name] = selector;
    if (name === 'fs') c.fsBase = 0;
    if (name === 'gs') c.gsBase = 0;
    return;
  }
  if (selector & 4 || index + 7 > c.gdtLimit) throw new GuestFault(GP, index);
  const [bLo, bHi] = split(c.gdtBase);
  const a = addr(bLo + index, bHi);
  const w0 = c.rd32(a.lo, a.hi);
  const a4 = addr(a.lo + 4, a.hi);
  const w1 = c.rd32(a4.lo, a4.hi);
  const type = (w1 >>> 8) & 0x1f; // S bit and type
  const dpl = (w1 >>> 13) & 3;
  const isData = (type & 0x18) === 0x10;
  const readableCode = (type & 0x1a) === 0x1a;
  if (name === 'ss') {
    if (!isData || !(type & 2) || dpl !== c.cpl || (selector & 3) !== c.cpl) throw new GuestFault(GP, index);
  } else if (!isData && !readableCode) throw new GuestFault(GP, index);
  if (!(w1 & 0x8000)) throw new GuestFault(name === 'ss' ? SS_FAULT : NP, index);
  c[name] = selector;
  // in 64-bit mode a selector load sets the FS/GS base from the descriptor's 32-bit base
  const base = ((w0 >>> 16) | ((w1 & 0xff) << 16) | (w1 & 0xff000000)) >>> 0;
  if (name === 'fs') c.fsBase = base;
  if (name === 'gs') c.gsBase = base;
}

export function movSreg(insn: Insn): Compiled {
  const [a, b] = insn.ops;
  if (a.kind === 'sreg') {
    if (a.name === 'cs') return ud();
    const name = a.name;
    const src = access(b, 2);
    const ea = src.ea;
    const get = src.get;
    const next = insn.next;
    return ends((c) => {
      if (ea) ea(c);
      loadSegment(c, name, get(c) & 0xffff);
      if (name === 'ss') c.stiShadow = true; // MOV SS inhibits interrupts for one instruction
      c.rip = next;
      return 1;
    });
  }
  if (b.kind !== 'sreg') throw new Error('mov sreg: unexpected operands');
  const name = b.name;
  const dst = access(a, a.kind === 'mem' ? 2 : insn.opSize);
  const ea = dst.ea;
  const put = dst.put!;
  return continues((c) => {
    if (ea) ea(c);
    put(c, c[name], 0); // a 32/64-bit register destination is zero-extended
    return 0;
  });
}

export function popSreg(insn: Insn): Compiled {
  const seg = insn.ops[0];
  if (seg.kind !== 'sreg') throw new Error('pop sreg: unexpected operand');
  const name = seg.name;
  const size = insn.opSize === 2 ? 2 : 8;
  const next = insn.next;
  return ends((c) => {
    const r = c.r;
    const v = size === 8 ? c.rd64(r[8] >>> 0, r[9]) : c.rd16(r[8] >>> 0, r[9]);
    loadSegment(c, name, v & 0xffff);
    const s = (r[8] >>> 0) + size;
    r[8] = s | 0;
    if (s >= TWO32) r[9] = (r[9] + 1) | 0;
    c.rip = next;
    return 1;
  });
}

// ---- flags ------------------------------------------------------------------------------------------

export function popf(insn: Insn): Compiled {
  const size = insn.opSize === 2 ? 2 : 8;
  const next = insn.next;
  return ends((c) => {
    const r = c.r;
    const v = size === 8 ? c.rd64(r[8] >>> 0, r[9]) : c.rd16(r[8] >>> 0, r[9]);
    const old = c.getRflags();
    // CPL 0 may change IF and IOPL; above it IOPL stays and IF changes only with CPL <= IOPL
    let mask = 0x3f7fd5; // CF PF AF ZF SF TF IF DF OF IOPL NT AC ID (not RF, VM, VIF, VIP)
    if (c.cpl > 0) mask &= ~0x3000;
    if (c.cpl > ((old >>> 12) & 3)) mask &= ~IF;
    if (size === 2) mask &= 0xffff;
    const wasIf = old & IF;
    c.setRflags((old & ~mask) | (v & mask));
    const s = (r[8] >>> 0) + size;
    r[8] = s | 0;
    if (s >= TWO32) r[9] = (r[9] + 1) | 0;
    if (!wasIf && c.flags & IF) c.stiShadow = false; // POPF does not create an interrupt shadow
    c.rip = next;
    return 1;
  });
}

/** lahf: AH = SF:ZF:0:AF:0:PF:1:CF; sahf: those flags from AH (valid in 64-bit mode: CPUID 80000001h ECX[0]). */
export function ahFlags(load: boolean): Compiled {
  return continues((c) => {
    const r = c.r;
    const f = c.getRflags();
    if (load) r[0] = (r[0] & ~0xff00) | (((f & 0xd5) | 2) << 8);
    else c.setRflags((f & ~0xd5) | ((r[0] >>> 8) & 0xd5));
    return 0;
  });
}

export function flagOp(insn: Insn, kind: 'cli' | 'sti' | 'clc' | 'stc' | 'cmc' | 'cld' | 'std'): Compiled {
  const next = insn.next;
  if (kind === 'cli' || kind === 'sti') {
    return ends((c) => {
      if (c.cpl > ((c.flags >>> 12) & 3)) throw new GuestFault(GP, 0);
      if (kind === 'cli') c.flags &= ~IF;
      else {
        if (!(c.flags & IF)) c.stiShadow = true; // the instruction after STI runs before any interrupt
        c.flags |= IF;
        if (c.irqWaiting) c.eventPending = true;
      }
      c.rip = next;
      return 1;
    });
  }
  return continues((c) => {
    if (kind === 'cld') c.flags &= ~DF;
    else if (kind === 'std') c.flags |= DF;
    else {
      const f = c.getRflags();
      c.setRflags(kind === 'clc' ? f & ~CF : kind === 'stc' ? f | CF : f ^ CF);
    }
    return 0;
  });
}

// ---- paging, gs, fast system calls ----------------------------------------------------------------

export function invlpg(insn: Insn): Compiled {
  const m = insn.ops[0];
  if (m.kind !== 'mem') throw new Error('invlpg needs a memory operand');
  const ea = makeEa(m.mem);
  const next = insn.next;
  return ends((c) => {
    requireCpl0(c);
    ea(c);
    c.invlpg(c.eaLo, c.eaHi);
    c.pagingChanged();
    c.rip = next;
    return 1;
  });
}

export function privilegedNop(insn: Insn): Compiled {
  const next = insn.next;
  return ends((c) => {
    requireCpl0(c);
    c.rip = next;
    return 1;
  });
}

export function swapgs(insn: Insn): Compiled {
  const next = insn.next;
  return ends((c) => {
    requireCpl0(c);
    const t = c.gsBase;
    c.gsBase = c.kernelGsBase;
    c.kernelGsBase = t;
    c.rip = next;
    return 1;
  });
}

export function syscall(insn: Insn): Compiled {
  const next = insn.next;
  return ends((c) => {
    if (!(c.efer & EFER_SCE)) throw new GuestFault(UD, undefined);
    const r = c.r;
    const [nlo, nhi] = split(next);
    r[2] = nlo;
    r[3] = nhi;
    r[22] = c.getRflags() & ~0x10000;
    r[23] = 0;
    c.setRflags(c.getRflags() & ~c.msrs.sfmask);
    const sel = c.msrs.star[1] & 0xffff;
    c.cs = sel & ~3;
    c.ss = (sel + 8) & ~3;
    c.cpl = 0;
    c.flushTlb();
    c.rip = c.msrs.lstar;
    return 1;
  });
}

export function sysret(insn: Insn): Compiled {
  const q = /q$/i.test(insn.codeName);
  return ends((c) => {
    if (!(c.efer & EFER_SCE)) throw new GuestFault(UD, undefined);
    requireCpl0(c);
    const r = c.r;
    if (q && !isCanonical(r[3])) throw new GuestFault(GP, 0);
    const sel = (c.msrs.star[1] >>> 16) & 0xffff;
    c.cs = ((sel + (q ? 16 : 0)) & 0xffff) | 3;
    c.ss = ((sel + 8) & 0xffff) | 3;
    c.setRflags((r[22] & 0x3c7fd7) | 2);
    c.cpl = 3;
    c.flushTlb();
    c.rip = q ? join(r[2], r[3]) : r[2] >>> 0;
    return 1;
  });
}

const SVM_EXITS: Readonly<Record<string, VmExit>> = {
  vmrun: { code: SVM_EXIT_VMRUN }, vmload: { code: SVM_EXIT_VMLOAD }, vmsave: { code: SVM_EXIT_VMSAVE },
  stgi: { code: SVM_EXIT_STGI }, clgi: { code: SVM_EXIT_CLGI }, invlpga: { code: SVM_EXIT_INVLPGA }, skinit: { code: SVM_EXIT_SKINIT },
};

/**
 * vmrun, vmload, vmsave, stgi, clgi, invlpga, skinit: KVM intercepts them all and checks EFER.SVME
 * and CPL itself (nested.c :: nested_svm_check_permissions), since the hardware EFER of a guest
 * always has SVME set.
 */
export function svm(insn: Insn, name: string): Compiled {
  const next = insn.next;
  const exit = SVM_EXITS[name];
  return ends(() => {
    throw new VmExitSignal(exit, next);
  });
}

const VMMCALL_EXIT: VmExit = { code: SVM_EXIT_VMMCALL };

/** vmmcall: a hypercall, always intercepted (KVM's kvm_emulate_hypercall). */
export function vmmcall(insn: Insn): Compiled {
  const next = insn.next;
  return ends(() => {
    throw new VmExitSignal(VMMCALL_EXIT, next);
  });
}

function ud(): Compiled {
  return ends(() => {
    throw new GuestFault(UD, undefined);
  });
}

void regPut;

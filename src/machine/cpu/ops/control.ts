// Control transfer: jmp, jcc, call, ret, loop/loope/loopne, jrcxz/jecxz, int3/int n/int1, ud2,
// iretq, hlt. Every op here sets RIP itself and ends its block.

import { type Cpu, isCanonical } from '../cpu';
import { SVM_EXIT_HLT, VmExitSignal } from '../vmexit';
import { BP, DB, GP, GuestFault, UD } from '../exceptions';
import { condition, getZF } from '../flags';
import type { Insn } from '../insn';
import { ends, type Compiled } from './op';
import { access } from './operands';

const TWO32 = 4294967296;

function targetOf(insn: Insn): number {
  const op = insn.ops[0];
  if (op.kind !== 'branch') throw new Error(`${insn.mnemonicName}: expected a branch target`);
  return op.target;
}

/** An indirect target (lo, hi) must be canonical, else #GP at the jump itself. */
function setRipChecked(c: Cpu, lo: number, hi: number): void {
  if (!isCanonical(hi)) throw new GuestFault(GP, 0);
  c.rip = hi * TWO32 + (lo >>> 0);
}

export function jmp(insn: Insn): Compiled {
  const op = insn.ops[0];
  if (op.kind === 'branch') {
    const t = op.target;
    return ends((c) => {
      c.rip = t;
      return 1;
    });
  }
  const a = access(op, 8);
  const ea = a.ea;
  const get = a.get;
  return ends((c) => {
    if (ea) ea(c);
    const lo = get(c);
    setRipChecked(c, lo, c.tmpHi);
    return 1;
  });
}

export function jcc(insn: Insn): Compiled {
  const t = targetOf(insn);
  const next = insn.next;
  const cc = insn.cc;
  if (cc === 4 || cc === 5) {
    // je/jne: ZF straight from the lazy record when it is lazy
    const want = cc === 4;
    return ends((c) => {
      c.rip = getZF(c) === want ? t : next;
      return 1;
    });
  }
  return ends((c) => {
    c.rip = condition(c, cc) ? t : next;
    return 1;
  });
}

export function call(insn: Insn): Compiled {
  const next = insn.next;
  const self = insn.ip;
  const nlo = ((next % TWO32) + TWO32) % TWO32;
  const nhi = Math.floor(next / TWO32) | 0;
  const op = insn.ops[0];
  if (op.kind === 'branch') {
    const t = op.target;
    return ends((c) => {
      c.push64(nlo | 0, nhi);
      c.rip = t;
      if (c.calls !== null) c.calls.call(c, self, t, next, false);
      return 1;
    });
  }
  const a = access(op, 8);
  const ea = a.ea;
  const get = a.get;
  return ends((c) => {
    if (ea) ea(c);
    const lo = get(c);
    const hi = c.tmpHi;
    if (!isCanonical(hi)) throw new GuestFault(GP, 0);
    c.push64(nlo | 0, nhi);
    c.rip = hi * TWO32 + (lo >>> 0);
    if (c.calls !== null) c.calls.call(c, self, c.rip, next, false);
    return 1;
  });
}

export function ret(insn: Insn): Compiled {
  const extra = insn.ops[0]?.kind === 'imm' ? insn.ops[0].lo & 0xffff : 0;
  return ends((c) => {
    const r = c.r;
    const lo = c.rd64(r[8] >>> 0, r[9]);
    const hi = c.tmpHi;
    if (!isCanonical(hi)) throw new GuestFault(GP, 0);
    const s = (r[8] >>> 0) + 8 + extra;
    r[8] = s | 0;
    if (s >= TWO32) r[9] = (r[9] + 1) | 0;
    c.rip = hi * TWO32 + (lo >>> 0);
    if (c.calls !== null) c.calls.ret(c, c.rip);
    return 1;
  });
}

export type LoopKind = 'loop' | 'loope' | 'loopne' | 'jrcxz';

/** loop*: RCX (ECX with 0x67) -= 1, jump while non-zero (and ZF as asked); jrcxz/jecxz: jump if zero. */
export function loop(insn: Insn, kind: LoopKind): Compiled {
  const t = targetOf(insn);
  const next = insn.next;
  const ecx = /ECX|Jecxz/.test(insn.codeName);
  return ends((c) => {
    const r = c.r;
    if (kind === 'jrcxz') {
      c.rip = (ecx ? r[2] : r[2] | r[3]) === 0 ? t : next;
      return 1;
    }
    let zero: boolean;
    if (ecx) {
      r[2] = (r[2] - 1) | 0;
      r[3] = 0;
      zero = r[2] === 0;
    } else {
      if (r[2] === 0) r[3] = (r[3] - 1) | 0;
      r[2] = (r[2] - 1) | 0;
      zero = (r[2] | r[3]) === 0;
    }
    const take = !zero && (kind === 'loop' || (kind === 'loope' ? getZF(c) : !getZF(c)));
    c.rip = take ? t : next;
    return 1;
  });
}

/** int3, int n, int1: software interrupts (traps: the frame's RIP is the next instruction). */
export function softInt(insn: Insn, vector: number | 'imm'): Compiled {
  const v = vector === 'imm' ? (insn.ops[0].kind === 'imm' ? insn.ops[0].lo & 0xff : 0) : vector;
  const next = insn.next;
  // int1 (ICEBP) is delivered like a hardware #DB trap, not a software interrupt: no DPL check
  const kind = vector === DB ? 'trap' : 'software';
  const self = insn.ip;
  return ends((c) => {
    c.rip = next;
    c.deliver(v, undefined, kind, self);
    return 1;
  });
}

export function ud(): Compiled {
  return ends(() => {
    throw new GuestFault(UD, undefined);
  });
}

const HLT_EXIT = { code: SVM_EXIT_HLT } as const;

export function hlt(insn: Insn): Compiled {
  const next = insn.next;
  return ends((c) => {
    if (c.cpl !== 0) throw new GuestFault(GP, 0);
    throw new VmExitSignal(HLT_EXIT, next); // KVM always intercepts HLT (kvm_emulate_halt)
  });
}

/** iretq (and the 32-bit iretd): pop RIP, CS, RFLAGS, RSP, SS. */
export function iret(insn: Insn): Compiled {
  const q = insn.opSize === 8 || /q$/i.test(insn.codeName);
  const n = q ? 8 : 4;
  return ends((c) => {
    const r = c.r;
    const read = (k: number): [number, number] => {
      const off = (r[8] >>> 0) + k * n;
      const lo = off % TWO32;
      const hi = (r[9] + Math.floor(off / TWO32)) | 0;
      if (q) {
        const v = c.rd64(lo, hi);
        return [v, c.tmpHi];
      }
      return [c.rd32(lo, hi), 0];
    };
    const [ripLo, ripHi0] = read(0);
    const [cs] = read(1);
    const [flags] = read(2);
    const [rspLo, rspHi0] = read(3);
    const [ss] = read(4);
    const ripHi = q ? ripHi0 : 0;
    const rspHi = q ? rspHi0 : 0;
    const selector = cs & 0xffff;
    const dpl = c.checkCodeSelector(selector);
    if ((selector & 3) < c.cpl || dpl !== (selector & 3)) throw new GuestFault(GP, selector & ~3);
    if (!isCanonical(ripHi)) throw new GuestFault(GP, 0);
    const newCpl = selector & 3;
    // at CPL 0 every flag software may set is restored (IOPL and IF included)
    const keep = c.getRflags();
    const mask = c.cpl === 0 ? -1 : ~(0x3000 | (c.cpl > ((keep >>> 12) & 3) ? 0x200 : 0));
    c.setRflags((flags & mask) | (keep & ~mask));
    c.cs = selector;
    c.ss = ss & 0xffff;
    c.cpl = newCpl;
    r[8] = rspLo;
    r[9] = rspHi;
    c.rip = ripHi * TWO32 + (ripLo >>> 0);
    if (c.calls !== null) c.calls.ret(c, c.rip);
    if (c.nmiBlocked) {
      // IRET ends NMI blocking (SDM vol. 3, 6.7.1): a pending NMI may now be taken
      c.nmiBlocked = false;
      c.eventPending = true;
    }
    return 1;
  });
}

export function nop(insn: Insn): Compiled {
  void insn;
  return { op: () => 0, ends: false };
}

void BP;

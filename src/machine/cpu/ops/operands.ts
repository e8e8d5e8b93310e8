// Operand access for compiled instructions: effective-address closures specialised by
// addressing shape, and value getters/setters for registers, memory and immediates. A getter
// returns the low 32 bits normalised to the width (8/16 bits zero-extended, 32 bits as int32) and
// leaves the high half of a 64-bit value in `cpu.tmpHi`; a setter takes (lo, hi).

import type { Cpu } from '../cpu';
import { GuestFault, SS } from '../exceptions';
import type { Gpr, MemRef, Operand } from '../insn';

const TWO32 = 4294967296;

export type Ea = (c: Cpu) => void;
export type Get = (c: Cpu) => number;
export type Put = (c: Cpu, lo: number, hi: number) => void;

/**
 * Effective address into (c.eaLo, c.eaHi): unsigned low half, int32 high half. `access`: the
 * address is used to access memory (false for lea, which only computes it).
 */
export function makeEa(m: MemRef, access = true): Ea {
  const disp = m.disp;
  if (m.ripRelative) {
    const lo = ((disp % TWO32) + TWO32) % TWO32;
    const hi = Math.floor(disp / TWO32) | 0;
    return withSegment(m, access, (c) => {
      c.eaLo = lo;
      c.eaHi = hi;
    });
  }
  const b = m.base >= 0 ? 2 * m.base : -1;
  const x = m.index >= 0 ? 2 * m.index : -1;
  const s = m.scale;
  if (m.addressSize === 4) {
    // 0x67: the address is computed in 32 bits and zero-extended
    return withSegment(m, access, (c) => {
      const r = c.r;
      c.eaLo = ((b >= 0 ? r[b] : 0) + (x >= 0 ? Math.imul(r[x], s) : 0) + disp) >>> 0;
      c.eaHi = 0;
    });
  }
  let ea: Ea;
  if (b >= 0 && x < 0) {
    ea = (c) => {
      const r = c.r;
      const lo = (r[b] >>> 0) + disp;
      if (lo >= TWO32) {
        c.eaLo = lo - TWO32;
        c.eaHi = (r[b + 1] + 1) | 0;
      } else if (lo < 0) {
        c.eaLo = lo + TWO32;
        c.eaHi = (r[b + 1] - 1) | 0;
      } else {
        c.eaLo = lo;
        c.eaHi = r[b + 1];
      }
    };
  } else if (b >= 0) {
    ea = (c) => {
      const r = c.r;
      const sum = (r[b] >>> 0) + (r[x] >>> 0) * s + disp;
      const carry = Math.floor(sum / TWO32);
      c.eaLo = sum - carry * TWO32;
      c.eaHi = (r[b + 1] + Math.imul(r[x + 1], s) + carry) | 0;
    };
  } else if (x >= 0) {
    ea = (c) => {
      const r = c.r;
      const sum = (r[x] >>> 0) * s + disp;
      const carry = Math.floor(sum / TWO32);
      c.eaLo = sum - carry * TWO32;
      c.eaHi = (Math.imul(r[x + 1], s) + carry) | 0;
    };
  } else {
    // absolute: the disp32 is sign-extended to 64 bits
    const lo = ((disp % TWO32) + TWO32) % TWO32;
    const hi = disp < 0 ? -1 : 0;
    ea = (c) => {
      c.eaLo = lo;
      c.eaHi = hi;
    };
  }
  return withSegment(m, access, ea);
}

/**
 * FS/GS overrides add the segment base in 64-bit mode (the others have base 0). An operand based
 * on RSP or RBP is in SS: a non-canonical address there is #SS(0), not #GP(0).
 */
function withSegment(m: MemRef, access: boolean, ea: Ea): Ea {
  if (!m.segment) {
    if (!access || (m.base !== 4 && m.base !== 5)) return ea;
    return (c) => {
      ea(c);
      if (c.eaHi < -0x8000 || c.eaHi > 0x7fff) throw new GuestFault(SS, 0);
    };
  }
  const fs = m.segment === 'fs';
  return (c) => {
    ea(c);
    const base = fs ? c.fsBase : c.gsBase;
    const bLo = ((base % TWO32) + TWO32) % TWO32;
    const bHi = Math.floor(base / TWO32) | 0;
    const sum = c.eaLo + bLo;
    const carry = sum >= TWO32 ? 1 : 0;
    c.eaLo = sum - carry * TWO32;
    c.eaHi = (c.eaHi + bHi + carry) | 0;
  };
}

export function regGet(g: Gpr): Get {
  const i = 2 * g.index;
  switch (g.size) {
    case 8:
      return (c) => {
        c.tmpHi = c.r[i + 1];
        return c.r[i];
      };
    case 4:
      return (c) => c.r[i];
    case 2:
      return (c) => c.r[i] & 0xffff;
    default:
      return g.high ? (c) => (c.r[i] >>> 8) & 0xff : (c) => c.r[i] & 0xff;
  }
}

export function regPut(g: Gpr): Put {
  const i = 2 * g.index;
  switch (g.size) {
    case 8:
      return (c, lo, hi) => {
        c.r[i] = lo;
        c.r[i + 1] = hi;
      };
    case 4:
      // a 32-bit register write zero-extends into the whole register
      return (c, lo) => {
        c.r[i] = lo;
        c.r[i + 1] = 0;
      };
    case 2:
      return (c, lo) => {
        c.r[i] = (c.r[i] & ~0xffff) | (lo & 0xffff);
      };
    default:
      return g.high
        ? (c, lo) => {
          c.r[i] = (c.r[i] & ~0xff00) | ((lo & 0xff) << 8);
        }
        : (c, lo) => {
          c.r[i] = (c.r[i] & ~0xff) | (lo & 0xff);
        };
  }
}

/** Memory getter at (c.eaLo, c.eaHi), which the instruction computes first. */
export function memGet(size: number): Get {
  switch (size) {
    case 1: return (c) => c.rd8(c.eaLo, c.eaHi);
    case 2: return (c) => c.rd16(c.eaLo, c.eaHi);
    case 4: return (c) => c.rd32(c.eaLo, c.eaHi);
    default: return (c) => c.rd64(c.eaLo, c.eaHi);
  }
}

export function memPut(size: number): Put {
  switch (size) {
    case 1: return (c, lo) => c.wr8(c.eaLo, c.eaHi, lo);
    case 2: return (c, lo) => c.wr16(c.eaLo, c.eaHi, lo);
    case 4: return (c, lo) => c.wr32(c.eaLo, c.eaHi, lo);
    default: return (c, lo, hi) => c.wr64(c.eaLo, c.eaHi, lo, hi);
  }
}

/** An immediate as the operation's width sees it (already sign-extended by the decoder). */
export function immGet(lo: number, hi: number, size: number): Get {
  const v = size === 1 ? lo & 0xff : size === 2 ? lo & 0xffff : lo | 0;
  if (size === 8) {
    return (c) => {
      c.tmpHi = hi;
      return v;
    };
  }
  return () => v;
}

/** Access to one operand: `ea` (or null for a register/immediate), a getter, a setter. */
export interface Access {
  readonly ea: Ea | null;
  readonly get: Get;
  readonly put: Put | null;
  readonly isMem: boolean;
}

export function access(op: Operand, size: number): Access {
  switch (op.kind) {
    case 'reg':
      return { ea: null, get: regGet(op.reg), put: regPut(op.reg), isMem: false };
    case 'mem':
      return { ea: makeEa(op.mem), get: memGet(size), put: memPut(size), isMem: true };
    case 'imm':
      return { ea: null, get: immGet(op.lo, op.hi, size), put: null, isMem: false };
    default:
      throw new Error(`operand kind ${op.kind} has no value access`);
  }
}

/** Normalizes a 32-bit pattern to a width as getters return it. */
export function normalize(size: number, v: number): number {
  return size === 1 ? v & 0xff : size === 2 ? v & 0xffff : v | 0;
}

/** The mask of a width's low 32 bits. */
export function maskOf(size: number): number {
  return size === 1 ? 0xff : size === 2 ? 0xffff : -1;
}

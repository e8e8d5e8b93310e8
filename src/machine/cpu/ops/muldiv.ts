// mul, imul (one, two and three operands), div, idiv. Products are computed exactly from 16-bit
// limbs in doubles; only the 128-by-64-bit divide uses BigInt (a divide is never a hot path).
// Flags: mul/imul set CF = OF = "the result did not fit"; SF, ZF, AF and PF are undefined by the
// SDM: here, as on the real-KVM oracle's Intel host, SF is the sign of the low half (one operand)
// or of the destination, PF its low byte's parity, ZF = 0 even for a zero result, AF = 0. div and
// idiv leave every flag undefined: unchanged here, as there. A zero divisor or a quotient that does not
// fit raises #DE.

import type { Cpu } from '../cpu';
import { DE, GuestFault } from '../exceptions';
import { AF, CF, OF, PF, SF, ZF, zsp } from '../flags';
import type { Insn } from '../insn';
import { continues, type Compiled } from './op';
import { access, normalize } from './operands';

const TWO32 = 4294967296;
const TWO16 = 65536;

// results of the helpers (no allocation)
let p0 = 0;
let p1 = 0;
let p2 = 0;
let p3 = 0;

/** Unsigned 32x32 -> 64: (p0 low, p1 high), both as unsigned numbers. */
function umul32(a: number, b: number): void {
  a >>>= 0;
  b >>>= 0;
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const mid = al * bh + ah * bl;
  const low = al * bl + (mid % TWO16) * TWO16;
  p0 = low % TWO32;
  p1 = ah * bh + Math.floor(mid / TWO16) + Math.floor(low / TWO32);
}

/** Unsigned 64x64 -> 128 into p0..p3 (unsigned 32-bit words, low first). */
function umul64(alo: number, ahi: number, blo: number, bhi: number): void {
  umul32(alo, blo);
  const w0 = p0;
  let w1 = p1;
  umul32(alo, bhi);
  let x0 = p0;
  let x1 = p1;
  umul32(ahi, blo);
  x0 += p0;
  x1 += p1;
  umul32(ahi, bhi);
  let w2 = p0;
  let w3 = p1;
  w1 += x0;
  w2 += x1 + Math.floor(w1 / TWO32);
  w1 %= TWO32;
  w3 += Math.floor(w2 / TWO32);
  w2 %= TWO32;
  p0 = w0;
  p1 = w1;
  p2 = w2;
  p3 = w3 % TWO32;
}

/** Signed 64x64 -> 128: the unsigned product with the high half corrected for negative factors. */
function smul64(alo: number, ahi: number, blo: number, bhi: number): void {
  umul64(alo, ahi, blo, bhi);
  let hlo = p2;
  let hhi = p3;
  if (ahi < 0) {
    // high -= b
    const s = hlo - (blo >>> 0);
    hhi = hhi - (bhi >>> 0) - (s < 0 ? 1 : 0);
    hlo = (s + TWO32) % TWO32;
  }
  if (bhi < 0) {
    const s = hlo - (alo >>> 0);
    hhi = hhi - (ahi >>> 0) - (s < 0 ? 1 : 0);
    hlo = (s + TWO32) % TWO32;
  }
  p2 = hlo;
  p3 = ((hhi % TWO32) + TWO32) % TWO32;
}

function mulFlags(c: Cpu, size: number, overflow: boolean, lo: number, hi: number): void {
  const f = c.getRflags() & ~(CF | OF | SF | ZF | PF | AF);
  c.setRflags(f | (overflow ? CF | OF : 0) | (zsp(size, lo, hi) & (SF | PF)));
}

/** One-operand mul/imul: AL/AX/EAX/RAX times the operand into AX, DX:AX, EDX:EAX or RDX:RAX. */
export function mulAcc(insn: Insn, signed: boolean): Compiled {
  const size = insn.opSize;
  const src = access(insn.ops[0], size);
  const ea = src.ea;
  const get = src.get;
  return continues((c) => {
    if (ea) ea(c);
    const b = get(c);
    const bhi = size === 8 ? c.tmpHi : 0;
    const r = c.r;
    if (size === 1 || size === 2) {
      const bits = size * 8;
      const a = signed ? (r[0] << (32 - bits)) >> (32 - bits) : r[0] & (size === 1 ? 0xff : 0xffff);
      const bb = signed ? (b << (32 - bits)) >> (32 - bits) : b;
      const prod = a * bb; // |prod| < 2^31
      const lo = normalize(size, prod);
      const hi = normalize(size, prod >> bits);
      if (size === 1) r[0] = (r[0] & ~0xffff) | (prod & 0xffff);
      else {
        r[0] = (r[0] & ~0xffff) | lo;
        r[4] = (r[4] & ~0xffff) | hi;
      }
      const fits = signed ? ((lo << (32 - bits)) >> (32 - bits)) === prod : hi === 0;
      mulFlags(c, size, !fits, lo, 0);
      return 0;
    }
    if (size === 4) {
      umul32(r[0], b);
      let lo = p0;
      let hi = p1;
      if (signed) {
        if (r[0] < 0) hi -= b >>> 0;
        if (b < 0) hi -= r[0] >>> 0;
        hi = ((hi % TWO32) + TWO32) % TWO32;
      }
      lo |= 0;
      hi |= 0;
      r[0] = lo;
      r[1] = 0;
      r[4] = hi;
      r[5] = 0;
      mulFlags(c, 4, signed ? hi !== lo >> 31 : hi !== 0, lo, 0);
      return 0;
    }
    if (signed) smul64(r[0], r[1], b, bhi);
    else umul64(r[0], r[1], b, bhi);
    const lo = p0 | 0;
    const hi = p1 | 0;
    r[0] = lo;
    r[1] = hi;
    r[4] = p2 | 0;
    r[5] = p3 | 0;
    const overflow = signed ? (p2 | 0) !== hi >> 31 || (p3 | 0) !== hi >> 31 : (p2 | p3) !== 0;
    mulFlags(c, 8, overflow, lo, hi);
    return 0;
  });
}

/** imul r, r/m and imul r, r/m, imm: the truncated signed product. */
export function imulTruncating(insn: Insn): Compiled {
  const size = insn.opSize;
  const dst = access(insn.ops[0], size);
  const a = access(insn.ops[1], size);
  const b = insn.ops.length === 3 ? access(insn.ops[2], size) : access(insn.ops[0], size);
  const [x, y] = insn.ops.length === 3 ? [a, b] : [a, dst];
  const ea = a.ea;
  const getX = x.get;
  const getY = y.get;
  const put = dst.put!;
  return continues((c) => {
    if (ea) ea(c);
    const xlo = getX(c);
    const xhi = size === 8 ? c.tmpHi : 0;
    const ylo = getY(c);
    const yhi = size === 8 ? c.tmpHi : 0;
    if (size <= 2) {
      const bits = size * 8;
      const prod = ((xlo << (32 - bits)) >> (32 - bits)) * ((ylo << (32 - bits)) >> (32 - bits));
      const lo = normalize(size, prod);
      put(c, lo, 0);
      mulFlags(c, size, ((lo << (32 - bits)) >> (32 - bits)) !== prod, lo, 0);
      return 0;
    }
    if (size === 4) {
      umul32(xlo, ylo);
      let hi = p1;
      if (xlo < 0) hi -= ylo >>> 0;
      if (ylo < 0) hi -= xlo >>> 0;
      const lo = p0 | 0;
      hi = (((hi % TWO32) + TWO32) % TWO32) | 0;
      put(c, lo, 0);
      mulFlags(c, 4, hi !== lo >> 31, lo, 0);
      return 0;
    }
    smul64(xlo, xhi, ylo, yhi);
    const lo = p0 | 0;
    const hi = p1 | 0;
    put(c, lo, hi);
    mulFlags(c, 8, (p2 | 0) !== hi >> 31 || (p3 | 0) !== hi >> 31, lo, hi);
    return 0;
  });
}

/** div/idiv: (AH:AL | DX:AX | EDX:EAX | RDX:RAX) / operand -> quotient, remainder. */
export function divide(insn: Insn, signed: boolean): Compiled {
  const size = insn.opSize;
  const src = access(insn.ops[0], size);
  const ea = src.ea;
  const get = src.get;
  const bits = BigInt(size * 8);
  return continues((c) => {
    if (ea) ea(c);
    const dlo = get(c);
    const dhi = size === 8 ? c.tmpHi : 0;
    if ((dlo | dhi) === 0 || (size < 8 && normalize(size, dlo) === 0)) throw new GuestFault(DE, undefined);
    const r = c.r;
    // the dividend and divisor as bigints: a divide is rare enough to afford it
    let dividend: bigint;
    let divisor: bigint;
    const u = (lo: number) => BigInt(lo >>> 0);
    switch (size) {
      case 1: dividend = BigInt(r[0] & 0xffff); divisor = BigInt(dlo & 0xff); break;
      case 2: dividend = (BigInt(r[4] & 0xffff) << 16n) | BigInt(r[0] & 0xffff); divisor = BigInt(dlo & 0xffff); break;
      case 4: dividend = (u(r[4]) << 32n) | u(r[0]); divisor = u(dlo); break;
      default: dividend = (u(r[5]) << 96n) | (u(r[4]) << 64n) | (u(r[1]) << 32n) | u(r[0]); divisor = (u(dhi) << 32n) | u(dlo);
    }
    if (signed) {
      dividend = BigInt.asIntN(Number(bits) * 2, dividend);
      divisor = BigInt.asIntN(Number(bits), divisor);
    }
    const q = dividend / divisor; // truncates toward zero, as idiv does
    const rem = dividend % divisor;
    const fits = signed ? q >= -(1n << (bits - 1n)) && q < 1n << (bits - 1n) : q < 1n << bits;
    if (!fits) throw new GuestFault(DE, undefined);
    const qu = BigInt.asUintN(Number(bits), q);
    const ru = BigInt.asUintN(Number(bits), rem);
    switch (size) {
      case 1:
        r[0] = (r[0] & ~0xffff) | Number(qu) | (Number(ru) << 8);
        break;
      case 2:
        r[0] = (r[0] & ~0xffff) | Number(qu);
        r[4] = (r[4] & ~0xffff) | Number(ru);
        break;
      case 4:
        r[0] = Number(qu) | 0;
        r[1] = 0;
        r[4] = Number(ru) | 0;
        r[5] = 0;
        break;
      default:
        r[0] = Number(qu & 0xffffffffn) | 0;
        r[1] = Number(qu >> 32n) | 0;
        r[4] = Number(ru & 0xffffffffn) | 0;
        r[5] = Number(ru >> 32n) | 0;
    }
    return 0;
  });
}

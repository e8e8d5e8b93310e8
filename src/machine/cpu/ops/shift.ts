// Shifts and rotates: shl/sal, shr, sar, rol, ror, rcl, rcr by 1, by imm8 or by CL. The count is
// masked to 5 bits (6 for 64-bit operands); a masked count of 0 changes nothing, flags included.
// Flags (SDM vol. 2, SAL/SAR/SHL/SHR and RCL/RCR/ROL/ROR): CF is the last bit shifted out (for
// 8/16-bit shl/shr by at least the width, the bit the zero-extended operand gives, 0 past it); OF
// is defined for a count of 1 and undefined above: here, as on the Intel host of the real-KVM
// oracle, it is the 1-bit rule applied to the original operand for every count (shl: bit w-1 XOR
// bit w-2, shr: bit w-1, sar: 0; rol/rcl: bit w-1 XOR bit w-2, ror: bit 0 XOR bit w-1, rcr: bit
// w-1 XOR the old CF; test/oracle/diff/undefined-flags.ts has the evidence); AF is undefined and 0.
// A count of 0 changes no flag, but a 32-bit register destination is still written (zero-extended).
// 64-bit values are (lo, hi) int32 pairs: no BigInt here.

import type { Cpu } from '../cpu';
import { AF, CF, getCF, OF, PF, SF, ZF, zsp } from '../flags';
import type { Insn } from '../insn';
import { continues, type Compiled } from './op';
import { access } from './operands';

export type ShiftKind = 'rol' | 'ror' | 'rcl' | 'rcr' | 'shl' | 'shr' | 'sar';

/** Result of a shift of a (lo, hi) value: the new value and the bit shifted out last. */
let outLo = 0;
let outHi = 0;

/** Logical left shift of a 64-bit (lo, hi) by 0..63. */
function shl64(lo: number, hi: number, n: number): void {
  if (n === 0) {
    outLo = lo;
    outHi = hi;
  } else if (n < 32) {
    outHi = (hi << n) | (lo >>> (32 - n));
    outLo = lo << n;
  } else {
    outHi = lo << (n - 32);
    outLo = 0;
  }
}

function shr64(lo: number, hi: number, n: number, arithmetic: boolean): void {
  if (n === 0) {
    outLo = lo;
    outHi = hi;
  } else if (n < 32) {
    outLo = (lo >>> n) | (hi << (32 - n));
    outHi = arithmetic ? hi >> n : hi >>> n;
  } else {
    outLo = arithmetic ? hi >> (n - 32) : hi >>> (n - 32);
    outHi = arithmetic ? hi >> 31 : 0;
  }
}

/** bit k (0..63) of (lo, hi) */
function bit64(lo: number, hi: number, k: number): number {
  return k < 32 ? (lo >>> k) & 1 : (hi >>> (k - 32)) & 1;
}

export function shift(insn: Insn, kind: ShiftKind): Compiled {
  const size = insn.opSize;
  const bits = size * 8;
  const dst = access(insn.ops[0], size);
  const countOp = insn.ops[1];
  const ea = dst.ea;
  const get = dst.get;
  const put = dst.put!;
  const fromCl = countOp?.kind === 'reg';
  const fixed = countOp === undefined ? 1 : countOp.kind === 'imm' ? countOp.lo & 0xff : 0;
  const countMask = size === 8 ? 0x3f : 0x1f;
  const mask = size === 1 ? 0xff : size === 2 ? 0xffff : -1;
  const top = bits - 1;
  return continues((c: Cpu) => {
    const count = (fromCl ? c.r[2] & 0xff : fixed) & countMask;
    if (ea) ea(c);
    const vlo = get(c);
    const vhi = size === 8 ? c.tmpHi : 0;
    if (count === 0) {
      if (size === 4 && !ea) put(c, vlo, 0); // the register is written: bits 63:32 cleared
      return 0;
    }
    // bits w-1 and w-2 of the original operand, for OF
    const top1 = size === 8 ? (vhi >>> 31) & 1 : (vlo >>> top) & 1;
    const top2 = size === 8 ? (vhi >>> 30) & 1 : (vlo >>> (top - 1)) & 1;
    let rlo: number;
    let rhi = 0;
    let cf: number;
    let of: number;
    let arith = true; // shifts set ZF/SF/PF; rotates do not
    switch (kind) {
      case 'shl':
        if (size === 8) {
          shl64(vlo, vhi, count);
          rlo = outLo;
          rhi = outHi;
          cf = bit64(vlo, vhi, 64 - count);
        } else {
          rlo = count < 32 ? (vlo << count) & mask : 0;
          cf = count <= bits ? ((vlo >>> (bits - count)) & 1) : 0;
        }
        of = top1 ^ top2;
        break;
      case 'shr':
        if (size === 8) {
          shr64(vlo, vhi, count, false);
          rlo = outLo;
          rhi = outHi;
          cf = bit64(vlo, vhi, count - 1);
        } else {
          const u = vlo & mask;
          rlo = count < 32 ? u >>> count : 0;
          cf = count <= bits ? (u >>> (count - 1)) & 1 : 0;
        }
        of = top1; // the original sign bit
        break;
      case 'sar':
        if (size === 8) {
          shr64(vlo, vhi, count, true);
          rlo = outLo;
          rhi = outHi;
          cf = bit64(vlo, vhi, count - 1);
        } else {
          const s = (vlo << (32 - bits)) >> (32 - bits); // sign-extend the width to 32 bits
          const n = Math.min(count, 31);
          rlo = (s >> n) & mask;
          cf = (s >> Math.min(count - 1, 31)) & 1;
        }
        of = 0;
        break;
      case 'rol':
      case 'ror': {
        arith = false;
        const n = count % bits;
        if (size === 8) {
          const k = kind === 'rol' ? n : (64 - n) % 64;
          shl64(vlo, vhi, k);
          const aLo = outLo;
          const aHi = outHi;
          shr64(vlo, vhi, (64 - k) % 64, false);
          rlo = k === 0 ? vlo : aLo | outLo;
          rhi = k === 0 ? vhi : aHi | outHi;
        } else {
          const u = vlo & mask;
          const k = kind === 'rol' ? n : (bits - n) % bits;
          rlo = k === 0 ? u : ((u << k) | (u >>> (bits - k))) & mask;
        }
        if (kind === 'rol') {
          cf = rlo & 1;
          of = top1 ^ top2;
        } else {
          cf = size === 8 ? rhi >>> 31 : (rlo >>> top) & 1;
          of = (vlo & 1) ^ top1;
        }
        break;
      }
      default: {
        // rcl/rcr: a rotate through CF over bits+1 positions; 8/16-bit counts are taken modulo 9/17
        arith = false;
        const n = size <= 2 ? count % (bits + 1) : count;
        if (n === 0) return 0;
        let lo = vlo;
        let hi = vhi;
        const carryIn = getCF(c) ? 1 : 0;
        let carry = carryIn;
        for (let k = 0; k < n; k++) {
          if (kind === 'rcl') {
            const out = size === 8 ? hi >>> 31 : (lo >>> top) & 1;
            if (size === 8) {
              hi = (hi << 1) | (lo >>> 31);
              lo = (lo << 1) | carry;
            } else lo = ((lo << 1) | carry) & mask;
            carry = out;
          } else {
            const out = lo & 1;
            if (size === 8) {
              lo = (lo >>> 1) | (hi << 31);
              hi = (hi >>> 1) | (carry << 31);
            } else lo = ((lo & mask) >>> 1) | (carry << top);
            carry = out;
          }
        }
        rlo = size === 4 ? lo | 0 : lo;
        rhi = hi;
        cf = carry;
        of = kind === 'rcl' ? top1 ^ top2 : top1 ^ carryIn;
      }
    }
    if (size === 4) rlo |= 0;
    put(c, rlo, size === 8 ? rhi : 0);
    let f = c.getRflags() & ~(CF | OF);
    if (arith) f = (f & ~(ZF | SF | PF | AF)) | zsp(size, rlo, size === 8 ? rhi : 0);
    c.setRflags(f | (cf ? CF : 0) | (of ? OF : 0));
    return 0;
  });
}

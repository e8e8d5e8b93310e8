// Bit instructions: bt/bts/btr/btc (register, immediate and memory bit strings), bsf/bsr, setcc
// and cmovcc. bt* set CF to the bit; ZF is unchanged and OF, SF, AF, PF are undefined by the SDM
// (left unchanged here, as on the real-KVM oracle's Intel host). bsf/bsr: ZF says whether the
// source was 0; CF, OF, SF, AF, PF are undefined: as on that host, they are 0 and PF is the parity
// of the bit index (1 for a zero source, whose destination stays unchanged).

import type { Cpu } from '../cpu';
import { AF, CF, condition, OF, parity, PF, SF, ZF } from '../flags';
import type { Insn } from '../insn';
import { continues, type Compiled } from './op';
import { access, makeEa, memGet, memPut, regGet } from './operands';

export type BitKind = 'bt' | 'bts' | 'btr' | 'btc';

export function bitTest(insn: Insn, kind: BitKind): Compiled {
  const size = insn.opSize;
  const bits = size * 8;
  const [dst, off] = insn.ops;
  const offGet = off.kind === 'reg' ? regGet(off.reg) : null;
  const immOffset = off.kind === 'imm' ? off.lo & (bits - 1) : 0;
  const setCf = (c: Cpu, bit: number) => c.setRflags((c.getRflags() & ~CF) | bit);
  if (dst.kind === 'reg') {
    const a = access(dst, size);
    const get = a.get;
    const put = a.put!;
    return continues((c) => {
      const n = offGet ? offGet(c) & (bits - 1) : immOffset;
      let lo = get(c);
      let hi = size === 8 ? c.tmpHi : 0;
      const bit = n < 32 ? (lo >>> n) & 1 : (hi >>> (n - 32)) & 1;
      if (kind !== 'bt') {
        const set = kind === 'bts' ? 1 : kind === 'btr' ? 0 : bit ^ 1;
        if (n < 32) lo = set ? lo | (1 << n) : lo & ~(1 << n);
        else hi = set ? hi | (1 << (n - 32)) : hi & ~(1 << (n - 32));
        put(c, size === 4 ? lo | 0 : lo, hi);
      }
      setCf(c, bit);
      return 0;
    });
  }
  if (dst.kind !== 'mem') throw new Error('bt: destination must be a register or memory');
  const ea = makeEa(dst.mem);
  // a register bit offset reaches beyond the operand: a signed bit index into memory
  const unit = size;
  const getU = memGet(unit);
  const putU = memPut(unit);
  return continues((c) => {
    ea(c);
    let n: number;
    if (offGet) {
      let index = offGet(c);
      if (size === 8) {
        // 64-bit signed bit index: (hi, lo) -> byte displacement; keep it exact up to 2^53
        const hi = c.tmpHi;
        index = hi * 4294967296 + (index >>> 0);
      } else if (size === 4) index |= 0;
      else index = (index << 16) >> 16;
      const unitIndex = Math.floor(index / bits);
      n = index - unitIndex * bits;
      const delta = unitIndex * unit;
      const sum = c.eaLo + delta;
      const carry = Math.floor(sum / 4294967296);
      c.eaLo = sum - carry * 4294967296;
      c.eaHi = (c.eaHi + carry) | 0;
    } else n = immOffset;
    let lo = getU(c);
    let hi = unit === 8 ? c.tmpHi : 0;
    const bit = n < 32 ? (lo >>> n) & 1 : (hi >>> (n - 32)) & 1;
    if (kind !== 'bt') {
      const set = kind === 'bts' ? 1 : kind === 'btr' ? 0 : bit ^ 1;
      if (n < 32) lo = set ? lo | (1 << n) : lo & ~(1 << n);
      else hi = set ? hi | (1 << (n - 32)) : hi & ~(1 << (n - 32));
      putU(c, unit === 1 ? lo & 0xff : unit === 2 ? lo & 0xffff : lo, hi);
    }
    setCf(c, bit);
    return 0;
  });
}

export function bitScan(insn: Insn, reverse: boolean): Compiled {
  const size = insn.opSize;
  const dst = access(insn.ops[0], size);
  const src = access(insn.ops[1], size);
  const ea = src.ea;
  const get = src.get;
  const put = dst.put!;
  return continues((c) => {
    if (ea) ea(c);
    const lo = get(c);
    const hi = size === 8 ? c.tmpHi : 0;
    const f = c.getRflags() & ~(CF | OF | SF | AF | PF | ZF);
    if ((lo | hi) === 0) {
      c.setRflags(f | ZF | PF);
      return 0;
    }
    let n: number;
    if (reverse) n = hi !== 0 ? 63 - Math.clz32(hi) : 31 - Math.clz32(lo);
    else n = lo !== 0 ? 31 - Math.clz32(lo & -lo) : 32 + 31 - Math.clz32(hi & -hi);
    put(c, n, 0);
    c.setRflags(f | parity(n));
    return 0;
  });
}

export function setcc(insn: Insn): Compiled {
  const cc = insn.cc;
  const dst = access(insn.ops[0], 1);
  const ea = dst.ea;
  const put = dst.put!;
  return continues((c) => {
    if (ea) ea(c);
    put(c, condition(c, cc) ? 1 : 0, 0);
    return 0;
  });
}

/** cmovcc: the source is read (and may fault) either way; a 32-bit destination is zero-extended either way. */
export function cmovcc(insn: Insn): Compiled {
  const size = insn.opSize;
  const cc = insn.cc;
  const dst = access(insn.ops[0], size);
  const src = access(insn.ops[1], size);
  const ea = src.ea;
  const get = src.get;
  const getDst = dst.get;
  const put = dst.put!;
  return continues((c) => {
    if (ea) ea(c);
    const lo = get(c);
    const hi = size === 8 ? c.tmpHi : 0;
    if (condition(c, cc)) put(c, lo, hi);
    else if (size === 4) put(c, getDst(c), 0);
    return 0;
  });
}


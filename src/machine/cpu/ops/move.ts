// Data movement: mov (register, memory, immediate), movzx, movsx, movsxd, lea, xchg, xadd,
// cmpxchg, cbw/cwde/cdqe, cwd/cdq/cqo, and the stack: push, pop, pushfq, popfq, leave.

import type { Cpu } from '../cpu';
import { LAZY_ADD, LAZY_SUB, recordLazy } from '../flags';
import type { Insn } from '../insn';
import { continues, type Compiled } from './op';
import { access, makeEa, normalize } from './operands';

export function mov(insn: Insn): Compiled {
  const size = insn.opSize;
  const [dst, src] = insn.ops;
  // the hot forms: register <- register / immediate / memory, memory <- register
  if (dst.kind === 'reg' && size === 8) {
    const d = 2 * dst.reg.index;
    if (src.kind === 'reg') {
      const s = 2 * src.reg.index;
      return continues((c) => {
        c.r[d] = c.r[s];
        c.r[d + 1] = c.r[s + 1];
        return 0;
      });
    }
    if (src.kind === 'imm') {
      const lo = src.lo;
      const hi = src.hi;
      return continues((c) => {
        c.r[d] = lo;
        c.r[d + 1] = hi;
        return 0;
      });
    }
    if (src.kind === 'mem') {
      const ea = makeEa(src.mem);
      return continues((c) => {
        ea(c);
        const lo = c.rd64(c.eaLo, c.eaHi);
        c.r[d] = lo;
        c.r[d + 1] = c.tmpHi;
        return 0;
      });
    }
  }
  if (dst.kind === 'reg' && size === 4) {
    const d = 2 * dst.reg.index;
    if (src.kind === 'reg') {
      const s = 2 * src.reg.index;
      return continues((c) => {
        c.r[d] = c.r[s];
        c.r[d + 1] = 0;
        return 0;
      });
    }
    if (src.kind === 'imm') {
      const v = src.lo;
      return continues((c) => {
        c.r[d] = v;
        c.r[d + 1] = 0;
        return 0;
      });
    }
    if (src.kind === 'mem') {
      const ea = makeEa(src.mem);
      return continues((c) => {
        ea(c);
        c.r[d] = c.rd32(c.eaLo, c.eaHi);
        c.r[d + 1] = 0;
        return 0;
      });
    }
  }
  if (dst.kind === 'mem' && src.kind === 'reg' && (size === 8 || size === 4)) {
    const ea = makeEa(dst.mem);
    const s = 2 * src.reg.index;
    if (size === 8) {
      return continues((c) => {
        ea(c);
        c.wr64(c.eaLo, c.eaHi, c.r[s], c.r[s + 1]);
        return 0;
      });
    }
    return continues((c) => {
      ea(c);
      c.wr32(c.eaLo, c.eaHi, c.r[s]);
      return 0;
    });
  }
  const d = access(dst, size);
  const s = access(src, size);
  const ea = d.ea ?? s.ea;
  const get = s.get;
  const put = d.put!;
  return continues((c) => {
    if (ea) ea(c);
    const lo = get(c);
    put(c, lo, size === 8 ? c.tmpHi : 0);
    return 0;
  });
}

/** movzx / movsx / movsxd: the source width is the memory or register operand's own. */
export function movExtend(insn: Insn, signed: boolean): Compiled {
  const size = insn.opSize;
  const dst = access(insn.ops[0], size);
  const srcOp = insn.ops[1];
  const srcSize = srcOp.kind === 'reg' ? srcOp.reg.size : srcOp.kind === 'mem' ? srcOp.mem.size : 4;
  const src = access(srcOp, srcSize);
  const ea = src.ea;
  const get = src.get;
  const put = dst.put!;
  const shift = 32 - srcSize * 8;
  return continues((c) => {
    if (ea) ea(c);
    let v = get(c);
    if (signed && shift > 0) v = (v << shift) >> shift;
    else if (signed) v |= 0;
    const lo = normalize(size, v);
    put(c, lo, size === 8 ? (signed ? v >> 31 : 0) : 0);
    return 0;
  });
}

export function lea(insn: Insn): Compiled {
  const size = insn.opSize;
  const dst = insn.ops[0];
  const m = insn.ops[1];
  if (dst.kind !== 'reg' || m.kind !== 'mem') throw new Error('lea needs a register and an address');
  const ea = makeEa({ ...m.mem, segment: undefined }, false); // lea ignores the segment base and accesses nothing
  const d = 2 * dst.reg.index;
  const put = access(dst, size).put!;
  return continues((c) => {
    ea(c);
    if (size === 8) {
      c.r[d] = c.eaLo | 0;
      c.r[d + 1] = c.eaHi;
    } else put(c, normalize(size, c.eaLo), 0);
    return 0;
  });
}

export function xchg(insn: Insn): Compiled {
  const size = insn.opSize;
  const a = access(insn.ops[0], size);
  const b = access(insn.ops[1], size);
  const ea = a.ea ?? b.ea;
  const memFirst = a.isMem ? a : b;
  const other = a.isMem ? b : a;
  return continues((c) => {
    if (ea) ea(c);
    const xlo = memFirst.get(c);
    const xhi = size === 8 ? c.tmpHi : 0;
    const ylo = other.get(c);
    const yhi = size === 8 ? c.tmpHi : 0;
    memFirst.put!(c, ylo, yhi); // memory first: a faulting write leaves the register as it was
    other.put!(c, xlo, xhi);
    return 0;
  });
}

/** xadd: TEMP = SRC + DEST; SRC = DEST; DEST = TEMP; flags as add. */
export function xadd(insn: Insn): Compiled {
  const size = insn.opSize;
  const dst = access(insn.ops[0], size);
  const src = access(insn.ops[1], size);
  const ea = dst.ea;
  return continues((c) => {
    if (ea) ea(c);
    const alo = dst.get(c);
    const ahi = size === 8 ? c.tmpHi : 0;
    const blo = src.get(c);
    const bhi = size === 8 ? c.tmpHi : 0;
    let lo: number;
    let hi = 0;
    if (size === 8) {
      lo = (alo + blo) | 0;
      hi = (ahi + bhi + ((lo >>> 0) < (alo >>> 0) ? 1 : 0)) | 0;
    } else lo = normalize(size, alo + blo);
    if (dst.isMem) {
      dst.put!(c, lo, hi); // memory first: a faulting write changes nothing
      src.put!(c, alo, ahi);
    } else {
      src.put!(c, alo, ahi); // SRC = DEST, then DEST = sum: `xadd eax, eax` leaves the sum
      dst.put!(c, lo, hi);
    }
    recordLazy(c, LAZY_ADD, size, alo, ahi, lo, hi);
    return 0;
  });
}

/** cmpxchg: compare the accumulator with DEST; equal: DEST = SRC, else accumulator = DEST. Flags as cmp. */
export function cmpxchg(insn: Insn): Compiled {
  const size = insn.opSize;
  const dst = access(insn.ops[0], size);
  const src = access(insn.ops[1], size);
  const acc = access({ kind: 'reg', reg: { index: 0, size: size as 1 | 2 | 4 | 8, high: false } }, size);
  const ea = dst.ea;
  return continues((c) => {
    if (ea) ea(c);
    if (dst.isMem) c.probeWrite(c.eaLo, c.eaHi, size); // the destination is written either way
    const dlo = dst.get(c);
    const dhi = size === 8 ? c.tmpHi : 0;
    const alo = acc.get(c);
    const ahi = size === 8 ? c.tmpHi : 0;
    let lo: number;
    let hi = 0;
    if (size === 8) {
      lo = (alo - dlo) | 0;
      hi = (ahi - dhi - ((alo >>> 0) < (dlo >>> 0) ? 1 : 0)) | 0;
    } else lo = normalize(size, alo - dlo);
    if ((lo | hi) === 0) {
      const slo = src.get(c);
      dst.put!(c, slo, size === 8 ? c.tmpHi : 0);
    } else {
      dst.put!(c, dlo, dhi); // written back either way (a 32-bit register is zero-extended)
      acc.put!(c, dlo, dhi);
    }
    recordLazy(c, LAZY_SUB, size, alo, ahi, lo, hi);
    return 0;
  });
}

/** cbw/cwde/cdqe: sign-extend the accumulator's lower half into itself. */
export function extendAccumulator(size: number): Compiled {
  return continues((c) => {
    const r = c.r;
    if (size === 2) r[0] = (r[0] & ~0xffff) | (((r[0] << 24) >> 24) & 0xffff);
    else if (size === 4) {
      r[0] = (r[0] << 16) >> 16;
      r[1] = 0;
    } else r[1] = r[0] >> 31;
    return 0;
  });
}

/** cwd/cdq/cqo: the accumulator's sign into DX/EDX/RDX. */
export function signIntoDx(size: number): Compiled {
  return continues((c) => {
    const r = c.r;
    if (size === 2) r[4] = (r[4] & ~0xffff) | (((r[0] << 16) >> 31) & 0xffff);
    else if (size === 4) {
      r[4] = r[0] >> 31;
      r[5] = 0;
    } else {
      r[4] = r[1] >> 31;
      r[5] = r[1] >> 31;
    }
    return 0;
  });
}

// ---- the stack ------------------------------------------------------------------------------------

/** RSP -= n; write (lo, hi) of width n at the new RSP; the write happens before RSP moves. */
function pushValue(c: Cpu, n: number, lo: number, hi: number): void {
  const r = c.r;
  const s = (r[8] >>> 0) - n;
  const newLo = s < 0 ? s + 4294967296 : s;
  const newHi = s < 0 ? (r[9] - 1) | 0 : r[9];
  if (n === 8) c.wr64(newLo, newHi, lo, hi);
  else c.wr16(newLo, newHi, lo);
  r[8] = newLo | 0;
  r[9] = newHi;
}

export function push(insn: Insn): Compiled {
  const src = insn.ops[0];
  const size = insn.opSize === 2 ? 2 : 8;
  if (src.kind === 'reg' && size === 8) {
    const s = 2 * src.reg.index;
    return continues((c) => {
      c.push64(c.r[s], c.r[s + 1]);
      return 0;
    });
  }
  if (src.kind === 'imm') {
    const lo = src.lo;
    const hi = size === 8 ? src.lo >> 31 : 0;
    return continues((c) => {
      pushValue(c, size, size === 2 ? lo & 0xffff : lo, hi);
      return 0;
    });
  }
  if (src.kind === 'sreg') {
    const name = src.name;
    return continues((c) => {
      pushValue(c, size, c[name], 0);
      return 0;
    });
  }
  const a = access(src, size);
  const ea = a.ea;
  const get = a.get;
  return continues((c) => {
    if (ea) ea(c);
    const lo = get(c);
    pushValue(c, size, lo, size === 8 ? c.tmpHi : 0);
    return 0;
  });
}

export function pop(insn: Insn): Compiled {
  const dst = insn.ops[0];
  const size = insn.opSize === 2 ? 2 : 8;
  if (dst.kind === 'reg' && size === 8) {
    const d = 2 * dst.reg.index;
    return continues((c) => {
      const lo = c.pop64();
      c.r[d] = lo;
      c.r[d + 1] = c.tmpHi;
      return 0;
    });
  }
  if (dst.kind === 'sreg') throw new Error('pop of a segment register is compiled by system.ts');
  const a = access(dst, size);
  const ea = a.ea;
  const put = a.put!;
  return continues((c) => {
    const r = c.r;
    const lo = size === 8 ? c.rd64(r[8] >>> 0, r[9]) : c.rd16(r[8] >>> 0, r[9]);
    const hi = c.tmpHi;
    // pop [rsp+x] computes the address with RSP already incremented (SDM vol. 2, POP)
    const oldLo = r[8];
    const oldHi = r[9];
    const s = (r[8] >>> 0) + size;
    r[8] = s | 0;
    if (s >= 4294967296) r[9] = (r[9] + 1) | 0;
    try {
      if (ea) ea(c);
      put(c, lo, size === 8 ? hi : 0);
    } catch (e) {
      r[8] = oldLo;
      r[9] = oldHi;
      throw e;
    }
    return 0;
  });
}

export function pushf(insn: Insn): Compiled {
  const size = insn.opSize === 2 ? 2 : 8;
  return continues((c) => {
    // RF and VM are cleared in the image that is pushed
    pushValue(c, size, c.getRflags() & ~0x30000 & (size === 2 ? 0xffff : -1), 0);
    return 0;
  });
}

export function leave(): Compiled {
  return continues((c) => {
    const r = c.r;
    const lo = c.rd64(r[10] >>> 0, r[11]); // [rbp]
    const hi = c.tmpHi;
    const s = (r[10] >>> 0) + 8;
    r[8] = s | 0;
    r[9] = s >= 4294967296 ? (r[11] + 1) | 0 : r[11];
    r[10] = lo;
    r[11] = hi;
    return 0;
  });
}


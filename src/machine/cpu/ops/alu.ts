// Integer ALU instructions: add, or, adc, sbb, and, sub, xor, cmp, test (two operands) and inc,
// dec, neg, not. Flags are lazy except for adc/sbb (their carry-in makes the lazy record
// ambiguous), which compute them at once. The register and immediate forms used in loops get
// their own closures (generated: alu.generated.ts); everything else goes through the generic
// getter/setter path.

import type { Cpu } from '../cpu';
import { AF, ARITH, CF, getCF, keepCF, LAZY_ADD, LAZY_DEC, LAZY_INC, LAZY_LOGIC, LAZY_SUB, OF, recordLazy, setArith, signBit, zsp } from '../flags';
import type { Insn } from '../insn';
import { CF_CLEAR, FAST, QUIET } from './alu.generated';
import { continues, type Compiled } from './op';
import { access, normalize } from './operands';

export type AluKind = 'add' | 'or' | 'adc' | 'sbb' | 'and' | 'sub' | 'xor' | 'cmp' | 'test';

function lazyKindOf(k: AluKind): number {
  return k === 'add' ? LAZY_ADD : k === 'sub' || k === 'cmp' ? LAZY_SUB : LAZY_LOGIC;
}

export function binaryAlu(insn: Insn, kind: AluKind): Compiled {
  const size = insn.opSize;
  const [dst, src] = insn.ops;
  if (size === 8 && dst.kind === 'reg' && (src.kind === 'reg' || src.kind === 'imm') && kind !== 'adc' && kind !== 'sbb') {
    return continues(fast64(kind, 2 * dst.reg.index, src.kind === 'reg' ? 2 * src.reg.index : -1, src.kind === 'imm' ? src.lo : 0, src.kind === 'imm' ? src.hi : 0));
  }
  if (size === 4 && dst.kind === 'reg' && (src.kind === 'reg' || src.kind === 'imm') && kind !== 'adc' && kind !== 'sbb') {
    return continues(fast32(kind, 2 * dst.reg.index, src.kind === 'reg' ? 2 * src.reg.index : -1, src.kind === 'imm' ? src.lo : 0));
  }
  return continues(generic(insn, kind));
}

// the register and immediate forms loops use: one generated literal per operation, width and form
function fast64(kind: AluKind, d: number, s: number, ilo: number, ihi: number): (c: Cpu) => number {
  return FAST[`${kind}64${s < 0 ? 'i' : 'r'}`](d, s, ilo, ihi);
}

function fast32(kind: AluKind, d: number, s: number, ilo: number): (c: Cpu) => number {
  return FAST[`${kind}32${s < 0 ? 'i' : 'r'}`](d, s, ilo, 0);
}

function generic(insn: Insn, kind: AluKind): (c: Cpu) => number {
  const size = insn.opSize;
  const a = access(insn.ops[0], size);
  const b = access(insn.ops[1], size);
  const ea = a.ea ?? b.ea;
  const getA = a.get;
  const getB = b.get;
  const put = kind === 'cmp' || kind === 'test' ? null : a.put;
  const lk = lazyKindOf(kind);
  const wide = size === 8;
  return (c) => {
    if (ea) ea(c);
    const alo = getA(c);
    const ahi = wide ? c.tmpHi : 0;
    const blo = getB(c);
    const bhi = wide ? c.tmpHi : 0;
    let lo: number;
    let hi = 0;
    let carryIn = 0;
    switch (kind) {
    case 'add':
      if (wide) {
        lo = (alo + blo) | 0;
        hi = (ahi + bhi + ((lo >>> 0) < (alo >>> 0) ? 1 : 0)) | 0;
      } else lo = normalize(size, alo + blo);
      break;
    case 'adc':
      carryIn = getCF(c) ? 1 : 0;
      if (wide) {
        const s = (alo >>> 0) + (blo >>> 0) + carryIn;
        lo = s | 0;
        hi = (ahi + bhi + (s >= 4294967296 ? 1 : 0)) | 0;
      } else lo = normalize(size, alo + blo + carryIn);
      break;
    case 'sub':
    case 'cmp':
      if (wide) {
        lo = (alo - blo) | 0;
        hi = (ahi - bhi - ((alo >>> 0) < (blo >>> 0) ? 1 : 0)) | 0;
      } else lo = normalize(size, alo - blo);
      break;
    case 'sbb':
      carryIn = getCF(c) ? 1 : 0;
      if (wide) {
        const s = (alo >>> 0) - (blo >>> 0) - carryIn;
        lo = s | 0;
        hi = (ahi - bhi - (s < 0 ? 1 : 0)) | 0;
      } else lo = normalize(size, alo - blo - carryIn);
      break;
    case 'and':
    case 'test':
      lo = alo & blo;
      hi = ahi & bhi;
      break;
    case 'or':
      lo = alo | blo;
      hi = ahi | bhi;
      break;
    default:
      lo = alo ^ blo;
      hi = ahi ^ bhi;
    }
    if (put) put(c, lo, hi); // memory first: a faulting write changes nothing
    if (kind === 'adc' || kind === 'sbb') {
    setArith(c, carryFlags(kind, size, alo, ahi, blo, bhi, lo, hi, carryIn));
    } else {
    recordLazy(c, lk, size, alo, ahi, lo, hi);
    }
    return 0;
  };
}

/** CF, OF, AF and ZF/SF/PF of adc/sbb, from the operands, the carry in and the result. */
function carryFlags(kind: 'adc' | 'sbb', size: number, alo: number, ahi: number, blo: number, bhi: number, rlo: number, rhi: number, cin: number): number {
  let cf: boolean;
  let of: boolean;
  if (kind === 'adc') {
    // unsigned carry out: r < a, or r == a with a carry in (b = all ones)
    cf = cin ? !below(size, alo, ahi, rlo, rhi) : below(size, rlo, rhi, alo, ahi);
    of = signBit(size, (alo ^ rlo) & (blo ^ rlo), (ahi ^ rhi) & (bhi ^ rhi));
  } else {
    cf = cin ? !below(size, blo, bhi, alo, ahi) : below(size, alo, ahi, blo, bhi);
    of = signBit(size, (alo ^ blo) & (alo ^ rlo), (ahi ^ bhi) & (ahi ^ rhi));
  }
  return (cf ? CF : 0) | (of ? OF : 0) | ((alo ^ blo ^ rlo) & AF) | zsp(size, rlo, rhi);
}

/** a < b unsigned, for normalized values of the width */
function below(size: number, alo: number, ahi: number, blo: number, bhi: number): boolean {
  if (size === 8 && ahi !== bhi) return ahi >>> 0 < bhi >>> 0;
  return alo >>> 0 < blo >>> 0;
}

export type UnaryKind = 'inc' | 'dec' | 'neg' | 'not';

export function unaryAlu(insn: Insn, kind: UnaryKind): Compiled {
  const size = insn.opSize;
  const op = insn.ops[0];
  if (op.kind === 'reg' && (kind === 'inc' || kind === 'dec') && (size === 8 || size === 4)) {
    const d = 2 * op.reg.index;
    const delta = kind === 'inc' ? 1 : -1;
    const lk = kind === 'inc' ? LAZY_INC : LAZY_DEC;
    if (size === 8) {
    return continues((c) => {
      keepCF(c);
      const r = c.r;
      const alo = r[d];
      const ahi = r[d + 1];
      const lo = (alo + delta) | 0;
      const hi = delta > 0 ? (lo === 0 ? (ahi + 1) | 0 : ahi) : (alo === 0 ? (ahi - 1) | 0 : ahi);
      r[d] = lo;
      r[d + 1] = hi;
      c.lazy = ARITH & ~CF;
      c.lazyKind = lk;
      c.lazySize = 8;
      c.lazyAlo = alo;
      c.lazyAhi = ahi;
      c.lazyRlo = lo;
      c.lazyRhi = hi;
      return 0;
    });
    }
    return continues((c) => {
    keepCF(c);
    const r = c.r;
    const a = r[d];
    const v = (a + delta) | 0;
    r[d] = v;
    r[d + 1] = 0;
    c.lazy = ARITH & ~CF;
    c.lazyKind = lk;
    c.lazySize = 4;
    c.lazyAlo = a;
    c.lazyAhi = 0;
    c.lazyRlo = v;
    c.lazyRhi = 0;
    return 0;
    });
  }
  const acc = access(op, size);
  const ea = acc.ea;
  const get = acc.get;
  const put = acc.put!;
  const wide = size === 8;
  return continues((c) => {
    if (ea) ea(c);
    const alo = get(c);
    const ahi = wide ? c.tmpHi : 0;
    let lo: number;
    let hi = 0;
    switch (kind) {
    case 'not':
      put(c, wide ? ~alo : normalize(size, ~alo), wide ? ~ahi : 0);
      return 0;
    case 'neg':
      if (wide) {
        lo = (-alo) | 0;
        hi = (~ahi + (alo === 0 ? 1 : 0)) | 0;
      } else lo = normalize(size, -alo);
      put(c, lo, hi);
      recordLazy(c, LAZY_SUB, size, 0, 0, lo, hi);
      return 0;
    default: {
      const delta = kind === 'inc' ? 1 : -1;
      if (wide) {
        lo = (alo + delta) | 0;
        hi = delta > 0 ? (lo === 0 ? (ahi + 1) | 0 : ahi) : (alo === 0 ? (ahi - 1) | 0 : ahi);
      } else lo = normalize(size, alo + delta);
      put(c, lo, hi);
      keepCF(c);
      recordLazy(c, kind === 'inc' ? LAZY_INC : LAZY_DEC, size, alo, ahi, lo, hi);
      c.lazy = ARITH & ~CF;
      return 0;
    }
    }
  });
}

// ---- dead flags ------------------------------------------------------------------------------
// Within a block run whole, an ALU instruction whose flags the next instruction overwrites
// without reading them (and without a chance to fault first) need not record them: nothing can
// observe them in between. Only the fused array of a block uses these (blocks.ts); single steps,
// budgets ending inside a block and interrupt shadows run the ordinary ops.

/** Does `insn` set all six arithmetic flags from its operands alone, unable to fault? */
export function overwritesFlags(insn: Insn): boolean {
  const name = insn.mnemonicName.toLowerCase();
  if (!['add', 'sub', 'and', 'or', 'xor', 'cmp', 'test'].includes(name) || insn.lock) return false;
  const [dst, src] = insn.ops;
  return dst?.kind === 'reg' && (src?.kind === 'reg' || src?.kind === 'imm');
}

const QUIET_NOP = (): number => 0;

/**
 * `insn` without its flags, for when the next instruction overwrites them (overwritesFlags), or
 * undefined when `insn` is not a 32/64-bit register ALU op of that kind. cmp and test then do
 * nothing at all.
 */
export function quietAlu(insn: Insn): ((c: Cpu) => number) | undefined {
  if (!overwritesFlags(insn) || (insn.opSize !== 8 && insn.opSize !== 4)) return undefined;
  const kind = insn.mnemonicName.toLowerCase();
  if (kind === 'cmp' || kind === 'test') return QUIET_NOP;
  const [dst, src] = insn.ops;
  if (dst.kind !== 'reg') return undefined;
  const d = 2 * dst.reg.index;
  const s = src.kind === 'reg' ? 2 * src.reg.index : -1;
  const ilo = src.kind === 'imm' ? src.lo : 0;
  const ihi = src.kind === 'imm' ? src.hi : 0;
  return QUIET[`${kind}${insn.opSize * 8}${s < 0 ? 'i' : 'r'}`](d, s, ilo, ihi);
}

/** Is `insn` an inc or dec of a register: every arithmetic flag but CF from its operand alone, unable to fault? */
export function overwritesAllButCF(insn: Insn): boolean {
  const name = insn.mnemonicName.toLowerCase();
  return (name === 'inc' || name === 'dec') && !insn.lock && insn.ops[0]?.kind === 'reg';
}

/**
 * A register-register and/or/xor before an inc or dec (overwritesAllButCF): only its CF (clear)
 * outlives the next instruction, so it sets that one flag at once and records nothing lazy.
 */
export function logicBeforeIncDec(insn: Insn): ((c: Cpu) => number) | undefined {
  const kind = insn.mnemonicName.toLowerCase();
  if (kind !== 'and' && kind !== 'or' && kind !== 'xor') return undefined;
  if (insn.lock || (insn.opSize !== 8 && insn.opSize !== 4)) return undefined;
  const [dst, src] = insn.ops;
  if (dst?.kind !== 'reg' || src?.kind !== 'reg') return undefined;
  return CF_CLEAR[`${kind}${insn.opSize * 8}r`](2 * dst.reg.index, 2 * src.reg.index, 0, 0);
}

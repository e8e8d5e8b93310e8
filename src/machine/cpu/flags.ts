// RFLAGS and lazily computed arithmetic flags. An ALU instruction records its kind, width, first
// operand and result; CF/PF/AF/ZF/SF/OF are computed only when something reads them (jcc, setcc,
// pushfq, adc, ...), as v86 does. Only the first operand and the result are kept: the second
// operand of ADD/SUB follows from them. Values are stored normalized: widths 1, 2 and 4 in `lo`
// (8 and 16 bits zero-extended, 32 bits as int32) with `hi` = 0, so ZF is `(lo | hi) === 0` at
// every width.

export const CF = 0x1;
export const PF = 0x4;
export const AF = 0x10;
export const ZF = 0x40;
export const SF = 0x80;
export const TF = 0x100;
export const IF = 0x200;
export const DF = 0x400;
export const OF = 0x800;
export const IOPL = 0x3000;
export const NT = 0x4000;
export const RF = 0x10000;
export const VM = 0x20000;
export const AC = 0x40000;
export const VIF = 0x80000;
export const VIP = 0x100000;
export const ID = 0x200000;
/** bit 1 of RFLAGS always reads 1 */
export const FIXED1 = 0x2;
export const ARITH = CF | PF | AF | ZF | SF | OF;

/** Lazy kinds: how CF, OF and AF follow from (width, first operand A, result R). */
export const LAZY_ADD = 1;
export const LAZY_SUB = 2;
/** and, or, xor, test: CF = OF = 0; AF is undefined by the SDM (0 here, as Intel hardware gives); A is not recorded */
export const LAZY_LOGIC = 3;
/** inc: CF is not lazy (kept from before) */
export const LAZY_INC = 4;
/** dec: CF is not lazy (kept from before) */
export const LAZY_DEC = 5;

/** The lazy-flag state a CPU keeps (its own fields; see Cpu). */
export interface FlagState {
  flags: number;
  /** arithmetic flag bits still to be computed from the lazy record */
  lazy: number;
  lazyKind: number;
  lazySize: number;
  lazyAlo: number;
  lazyAhi: number;
  lazyRlo: number;
  lazyRhi: number;
}

const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let p = 1;
  for (let b = i; b; b >>= 1) p ^= b & 1;
  PARITY[i] = p ? PF : 0;
}

/** Sign bit of a normalized value of the given width. */
export function signBit(size: number, lo: number, hi: number): boolean {
  switch (size) {
    case 1: return (lo & 0x80) !== 0;
    case 2: return (lo & 0x8000) !== 0;
    case 4: return lo < 0;
    default: return hi < 0;
  }
}

/** Normalizes a 32-bit pattern to a width (1, 2 or 4) as the lazy record stores it. */
export function norm(size: number, v: number): number {
  return size === 1 ? v & 0xff : size === 2 ? v & 0xffff : v | 0;
}

/** a < b, unsigned, for normalized values of the width */
function below(size: number, alo: number, ahi: number, blo: number, bhi: number): boolean {
  if (size === 8 && ahi !== bhi) return ahi >>> 0 < bhi >>> 0;
  return alo >>> 0 < blo >>> 0;
}

/** The second operand of ADD (R - A) or SUB (A - R), low 32 bits, for OF and AF. */
function secondLo(s: FlagState): number {
  return s.lazyKind === LAZY_ADD ? (s.lazyRlo - s.lazyAlo) | 0 : (s.lazyAlo - s.lazyRlo) | 0;
}

function secondHi(s: FlagState): number {
  // with borrow/carry from the low half
  if (s.lazyKind === LAZY_ADD) return (s.lazyRhi - s.lazyAhi - ((s.lazyRlo >>> 0) < (s.lazyAlo >>> 0) ? 1 : 0)) | 0;
  return (s.lazyAhi - s.lazyRhi - ((s.lazyAlo >>> 0) < (s.lazyRlo >>> 0) ? 1 : 0)) | 0;
}

function computeCF(s: FlagState): boolean {
  switch (s.lazyKind) {
    case LAZY_ADD: return below(s.lazySize, s.lazyRlo, s.lazyRhi, s.lazyAlo, s.lazyAhi);
    case LAZY_SUB: return below(s.lazySize, s.lazyAlo, s.lazyAhi, s.lazyRlo, s.lazyRhi);
    default: return false;
  }
}

function computeOF(s: FlagState): boolean {
  const size = s.lazySize;
  switch (s.lazyKind) {
    case LAZY_ADD:
    case LAZY_SUB: {
      const blo = secondLo(s);
      const bhi = size === 8 ? secondHi(s) : 0;
      // add: the operands have the same sign and the result differs; sub: they differ and the result follows B
      const xlo = s.lazyKind === LAZY_ADD ? (s.lazyAlo ^ s.lazyRlo) & (blo ^ s.lazyRlo) : (s.lazyAlo ^ blo) & (s.lazyAlo ^ s.lazyRlo);
      const xhi = s.lazyKind === LAZY_ADD ? (s.lazyAhi ^ s.lazyRhi) & (bhi ^ s.lazyRhi) : (s.lazyAhi ^ bhi) & (s.lazyAhi ^ s.lazyRhi);
      return signBit(size, xlo, xhi);
    }
    case LAZY_INC: return isSignMin(size, s.lazyRlo, s.lazyRhi);
    case LAZY_DEC: return isSignMin(size, (s.lazyRlo + 1) | 0, size === 8 && s.lazyRlo === -1 ? (s.lazyRhi + 1) | 0 : s.lazyRhi);
    default: return false;
  }
}

/** value == 100...0 of the width */
function isSignMin(size: number, lo: number, hi: number): boolean {
  switch (size) {
    case 1: return (lo & 0xff) === 0x80;
    case 2: return (lo & 0xffff) === 0x8000;
    case 4: return lo === (0x80000000 | 0);
    default: return lo === 0 && hi === (0x80000000 | 0);
  }
}

function computeAF(s: FlagState): boolean {
  switch (s.lazyKind) {
    case LAZY_ADD:
    case LAZY_SUB: return ((s.lazyAlo ^ secondLo(s) ^ s.lazyRlo) & 0x10) !== 0;
    case LAZY_INC: return (s.lazyRlo & 0xf) === 0;
    case LAZY_DEC: return (s.lazyRlo & 0xf) === 0xf;
    default: return false;
  }
}

/** Computes every lazy bit into `flags`. */
export function materialize(s: FlagState): number {
  const lazy = s.lazy;
  if (lazy === 0) return s.flags;
  let f = s.flags & ~lazy;
  if (lazy & CF && computeCF(s)) f |= CF;
  if (lazy & PF) f |= PARITY[s.lazyRlo & 0xff];
  if (lazy & AF && computeAF(s)) f |= AF;
  if (lazy & ZF && (s.lazyRlo | s.lazyRhi) === 0) f |= ZF;
  if (lazy & SF && signBit(s.lazySize, s.lazyRlo, s.lazyRhi)) f |= SF;
  if (lazy & OF && computeOF(s)) f |= OF;
  s.flags = f;
  s.lazy = 0;
  return f;
}

export function getCF(s: FlagState): boolean {
  return s.lazy & CF ? computeCF(s) : (s.flags & CF) !== 0;
}

export function getZF(s: FlagState): boolean {
  return s.lazy & ZF ? (s.lazyRlo | s.lazyRhi) === 0 : (s.flags & ZF) !== 0;
}

export function getSF(s: FlagState): boolean {
  return s.lazy & SF ? signBit(s.lazySize, s.lazyRlo, s.lazyRhi) : (s.flags & SF) !== 0;
}

export function getOF(s: FlagState): boolean {
  return s.lazy & OF ? computeOF(s) : (s.flags & OF) !== 0;
}

export function getPF(s: FlagState): boolean {
  return s.lazy & PF ? PARITY[s.lazyRlo & 0xff] !== 0 : (s.flags & PF) !== 0;
}

export function parity(byte: number): number {
  return PARITY[byte & 0xff];
}

/** Condition codes in iced-x86's / the SDM's order: o no b ae e ne be a s ns p np l ge le g. */
export function condition(s: FlagState, cc: number): boolean {
  switch (cc) {
    case 0: return getOF(s);
    case 1: return !getOF(s);
    case 2: return getCF(s);
    case 3: return !getCF(s);
    case 4: return getZF(s);
    case 5: return !getZF(s);
    case 6: return getCF(s) || getZF(s);
    case 7: return !getCF(s) && !getZF(s);
    case 8: return getSF(s);
    case 9: return !getSF(s);
    case 10: return getPF(s);
    case 11: return !getPF(s);
    case 12: return getSF(s) !== getOF(s);
    case 13: return getSF(s) === getOF(s);
    case 14: return getZF(s) || getSF(s) !== getOF(s);
    default: return !getZF(s) && getSF(s) === getOF(s);
  }
}

/** Records a lazy result of all six arithmetic flags: the first operand and the result, normalized to the width. */
export function recordLazy(s: FlagState, kind: number, size: number, alo: number, ahi: number, rlo: number, rhi: number): void {
  s.lazy = ARITH;
  s.lazyKind = kind;
  s.lazySize = size;
  s.lazyAlo = alo;
  s.lazyAhi = ahi;
  s.lazyRlo = rlo;
  s.lazyRhi = rhi;
}

/** Sets the arithmetic flags eagerly (shifts, multiplies, ... compute them directly). */
export function setArith(s: FlagState, bits: number): void {
  s.flags = (s.flags & ~ARITH) | (bits & ARITH);
  s.lazy = 0;
}

/** ZF, SF and PF of a normalized result, for instructions that compute the rest eagerly. */
export function zsp(size: number, lo: number, hi: number): number {
  return ((lo | hi) === 0 ? ZF : 0) | (signBit(size, lo, hi) ? SF : 0) | PARITY[lo & 0xff];
}

/** Makes CF eager (INC and DEC keep it while everything else becomes lazy). */
export function keepCF(s: FlagState): void {
  if (s.lazy & CF) {
    // inc/dec after inc/dec keep an eager CF; after a logic op CF is 0 (the loop cases)
    const cf = s.lazyKind === LAZY_LOGIC ? false : computeCF(s);
    s.flags = cf ? s.flags | CF : s.flags & ~CF;
    s.lazy &= ~CF;
  }
}

// Macro-fusion, as x86 cores do it: a flag-producing register ALU instruction (cmp, test, add,
// sub, and, or, xor, inc, dec on 32/64-bit registers, register or immediate source) followed by
// a jcc becomes one closure from fused.generated.ts, which records the same lazy flags as the
// producer and branches on the fresh result. Those producers never fault and never ask to end
// the block, so the pair behaves exactly as the two instructions did; a block keeps its unfused
// instructions for single-stepping and for budgets that end inside it.

import type { Insn } from '../insn';
import { FUSED } from './fused.generated';
import type { Op } from './op';

/** The fused closure for (a, b), or undefined when the pair does not fuse. */
export function fuse(a: Insn, b: Insn): Op | undefined {
  const target = b.ops[0];
  if (b.cc < 0 || !/^J/.test(b.mnemonicName) || target?.kind !== 'branch') return undefined;
  const width = a.opSize === 8 ? 64 : a.opSize === 4 ? 32 : 0;
  const dst = a.ops[0];
  const src = a.ops[1];
  if (width === 0 || dst?.kind !== 'reg') return undefined;
  const name = a.mnemonicName.toLowerCase();
  const branch = b.cc === 4 || b.cc === 5 ? 'z' : 'c';
  let key: string;
  if (name === 'inc' || name === 'dec') {
    if (src !== undefined) return undefined;
    key = `${name}${width}${branch}`;
  } else {
    if (src?.kind !== 'reg' && src?.kind !== 'imm') return undefined;
    key = `${name}${width}${src.kind === 'imm' ? 'i' : 'r'}${branch}`;
  }
  const factory = FUSED[key];
  if (!factory) return undefined;
  const s = src?.kind === 'reg' ? 2 * src.reg.index : -1;
  const ilo = src?.kind === 'imm' ? src.lo : 0;
  const ihi = src?.kind === 'imm' ? src.hi : 0;
  return factory(2 * dst.reg.index, s, ilo, ihi, target.target, b.next, b.cc, b.cc === 4);
}

// String instructions: movs, stos, lods, cmps, scas (b/w/d/q) and ins, outs (b/w/d) with
// rep/repe/repne, DF up or down, 64- or 32-bit address size. A rep instruction runs at most CHUNK
// iterations per step and then re-executes itself (RIP unchanged), as hardware lets an interrupt
// in between iterations; it also stops after an iteration that exits (port I/O, MMIO), with the
// registers of the iterations done. A fault leaves RCX/RSI/RDI at the faulting iteration.

import { type Cpu, STOP_NONE } from '../cpu';
import { GP, GuestFault } from '../exceptions';
import { ARITH, DF, LAZY_SUB } from '../flags';
import type { Insn } from '../insn';
import { type Compiled } from './op';

export type StringKind = 'movs' | 'stos' | 'lods' | 'cmps' | 'scas' | 'ins' | 'outs';

const CHUNK = 4096;
const TWO32 = 4294967296;

export function stringOp(insn: Insn, kind: StringKind): Compiled {
  // the width is the mnemonic's suffix (outsb's DX operand is not its operand size)
  const size = ({ b: 1, w: 2, d: 4, q: 8 } as const)[insn.mnemonicName.slice(-1).toLowerCase() as 'b' | 'w' | 'd' | 'q'];
  const rep = insn.rep; // 0 none, 1 rep/repe, 2 repne
  const next = insn.next;
  const self = insn.ip;
  const conditional = kind === 'cmps' || kind === 'scas';
  const useA32 = insn.a32; // a 0x67 prefix: ESI/EDI/ECX
  const io = kind === 'ins' || kind === 'outs';
  return {
    ends: rep !== 0 || io,
    op: (c: Cpu) => {
      const r = c.r;
      if (io && c.cpl > ((c.flags >>> 12) & 3)) throw new GuestFault(GP, 0);
      const step = c.flags & DF ? -size : size;
      let n = 0;
      for (;;) {
        if (rep !== 0) {
          const count = useA32 ? r[2] : r[2] | r[3];
          if (count === 0) break;
          if (n === CHUNK) {
            c.rip = self; // resume here: interrupts and the scheduler may come in between
            return 1;
          }
        }
        // one iteration: read RSI / RDI as 64-bit (or 32-bit) addresses
        const siLo = r[12] >>> 0;
        const siHi = useA32 ? 0 : r[13];
        const diLo = r[14] >>> 0;
        const diHi = useA32 ? 0 : r[15];
        let cmpA = 0;
        let cmpAhi = 0;
        let cmpB = 0;
        let cmpBhi = 0;
        switch (kind) {
          case 'movs': {
            const lo = read(c, size, siLo, siHi);
            write(c, size, diLo, diHi, lo, c.tmpHi);
            advance(r, 12, step, useA32);
            advance(r, 14, step, useA32);
            break;
          }
          case 'stos':
            write(c, size, diLo, diHi, r[0], r[1]);
            advance(r, 14, step, useA32);
            break;
          case 'lods': {
            const lo = read(c, size, siLo, siHi);
            putAcc(r, size, lo, c.tmpHi);
            advance(r, 12, step, useA32);
            break;
          }
          case 'outs': {
            const v = read(c, size, siLo, siHi);
            c.portIo(r[4] & 0xffff, size, true, v);
            advance(r, 12, step, useA32);
            break;
          }
          case 'ins': {
            const v = c.portIo(r[4] & 0xffff, size, false, 0);
            write(c, size, diLo, diHi, v, 0);
            advance(r, 14, step, useA32);
            break;
          }
          case 'cmps':
            cmpA = read(c, size, siLo, siHi);
            cmpAhi = c.tmpHi;
            cmpB = read(c, size, diLo, diHi);
            cmpBhi = c.tmpHi;
            advance(r, 12, step, useA32);
            advance(r, 14, step, useA32);
            break;
          default:
            cmpA = size === 1 ? r[0] & 0xff : size === 2 ? r[0] & 0xffff : r[0];
            cmpAhi = size === 8 ? r[1] : 0;
            cmpB = read(c, size, diLo, diHi);
            cmpBhi = c.tmpHi;
            advance(r, 14, step, useA32);
        }
        if (conditional) {
          let lo: number;
          let hi = 0;
          if (size === 8) {
            lo = (cmpA - cmpB) | 0;
            hi = (cmpAhi - cmpBhi - ((cmpA >>> 0) < (cmpB >>> 0) ? 1 : 0)) | 0;
          } else lo = size === 1 ? (cmpA - cmpB) & 0xff : size === 2 ? (cmpA - cmpB) & 0xffff : (cmpA - cmpB) | 0;
          c.lazy = ARITH;
          c.lazyKind = LAZY_SUB;
          c.lazySize = size;
          c.lazyAlo = cmpA;
          c.lazyAhi = size === 8 ? cmpAhi : 0;
          c.lazyRlo = lo;
          c.lazyRhi = hi;
        }
        if (rep === 0) break;
        // count down RCX (ECX with a 32-bit address size)
        if (useA32) {
          r[2] = (r[2] - 1) | 0;
          r[3] = 0;
        } else {
          if (r[2] === 0) r[3] = (r[3] - 1) | 0;
          r[2] = (r[2] - 1) | 0;
        }
        n++;
        if (conditional) {
          const zf = (c.lazyRlo | c.lazyRhi) === 0;
          if ((rep === 1 && !zf) || (rep === 2 && zf)) break;
        }
        if (c.stopReason !== STOP_NONE) {
          // this iteration exits: the instruction goes on afterwards if iterations remain
          const count = useA32 ? r[2] : r[2] | r[3];
          c.rip = count === 0 ? next : self;
          return 1;
        }
      }
      if (rep !== 0 || io) {
        c.rip = next;
        return 1;
      }
      return 0;
    },
  };
}

function read(c: Cpu, size: number, lo: number, hi: number): number {
  switch (size) {
    case 1: return c.rd8(lo, hi);
    case 2: return c.rd16(lo, hi);
    case 4: return c.rd32(lo, hi);
    default: return c.rd64(lo, hi);
  }
}

function write(c: Cpu, size: number, lo: number, hi: number, vlo: number, vhi: number): void {
  switch (size) {
    case 1: c.wr8(lo, hi, vlo & 0xff); break;
    case 2: c.wr16(lo, hi, vlo & 0xffff); break;
    case 4: c.wr32(lo, hi, vlo); break;
    default: c.wr64(lo, hi, vlo, vhi);
  }
}

function putAcc(r: Int32Array, size: number, lo: number, hi: number): void {
  switch (size) {
    case 1: r[0] = (r[0] & ~0xff) | (lo & 0xff); break;
    case 2: r[0] = (r[0] & ~0xffff) | (lo & 0xffff); break;
    case 4: r[0] = lo; r[1] = 0; break;
    default: r[0] = lo; r[1] = hi;
  }
}

/** RSI/RDI += step (64-bit, or 32-bit zero-extended with a 0x67 prefix). */
function advance(r: Int32Array, i: number, step: number, a32: boolean): void {
  if (a32) {
    r[i] = (r[i] + step) | 0;
    r[i + 1] = 0;
    return;
  }
  const s = (r[i] >>> 0) + step;
  if (s >= TWO32) r[i + 1] = (r[i + 1] + 1) | 0;
  else if (s < 0) r[i + 1] = (r[i + 1] - 1) | 0;
  r[i] = s | 0;
}

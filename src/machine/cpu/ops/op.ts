// The shape of a compiled instruction: a closure over its decoded operands. It returns 0 to let
// the block go on, or 1 after it has set RIP itself (branches, I/O, system instructions), and
// throws GuestFault to fault (RIP is then the instruction's own address).

import type { Cpu } from '../cpu';

export type Op = (c: Cpu) => number;

export interface Compiled {
  readonly op: Op;
  /** the block must end after this instruction (control transfer, or state the runner must see) */
  readonly ends: boolean;
}

export function continues(op: Op): Compiled {
  return { op, ends: false };
}

export function ends(op: Op): Compiled {
  return { op, ends: true };
}

/** a block holds at most this many instructions */
export const MAX_BLOCK_INSNS = 64;

/** i + 1 for every i: the instruction count after op i of an unfused op list */
export const ONE_EACH = Int32Array.from({ length: MAX_BLOCK_INSNS + 1 }, (_, i) => i + 1);

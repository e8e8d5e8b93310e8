// x86 exception vectors, their classes for double-fault detection (SDM vol. 3, 6.15 table 6-5),
// and the fault value an instruction throws: the block runner catches it and delivers it
// through the IDT at the faulting instruction.

export const DE = 0;
export const DB = 1;
export const NMI = 2;
export const BP = 3;
export const OVERFLOW = 4;
export const BR = 5;
export const UD = 6;
export const NM = 7;
export const DF = 8;
export const TS = 10;
export const NP = 11;
export const SS = 12;
export const GP = 13;
export const PF = 14;
export const MF = 16;
export const AC = 17;
export const MC = 18;
export const XM = 19;

export const VECTOR_NAMES: Readonly<Record<number, string>> = {
  0: '#DE', 1: '#DB', 2: 'NMI', 3: '#BP', 4: '#OF', 5: '#BR', 6: '#UD', 7: '#NM', 8: '#DF', 10: '#TS', 11: '#NP',
  12: '#SS', 13: '#GP', 14: '#PF', 16: '#MF', 17: '#AC', 18: '#MC', 19: '#XM',
};

export function vectorName(v: number): string {
  return VECTOR_NAMES[v] ?? `vector 0x${v.toString(16)}`;
}

/** Exceptions that push an error code. */
export function hasErrorCode(v: number): boolean {
  return v === DF || v === TS || v === NP || v === SS || v === GP || v === PF || v === AC;
}

/** contributory: #DE #TS #NP #SS #GP; #PF is its own class; the rest are benign. */
export function faultClass(v: number): 'benign' | 'contributory' | 'page' | 'double' {
  if (v === DE || v === TS || v === NP || v === SS || v === GP) return 'contributory';
  if (v === PF) return 'page';
  if (v === DF) return 'double';
  return 'benign';
}

/** Page-fault error code bits. */
export const PFEC_PRESENT = 1;
export const PFEC_WRITE = 2;
export const PFEC_USER = 4;
export const PFEC_RSVD = 8;
export const PFEC_FETCH = 16;

/** Thrown by an instruction (or a memory access) that faults; never escapes the CPU. */
export class GuestFault {
  constructor(
    readonly vector: number,
    readonly errorCode: number | undefined,
    /** the faulting linear address of a #PF, for CR2 */
    readonly address?: number,
  ) {}
}

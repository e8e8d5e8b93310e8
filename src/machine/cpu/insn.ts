// A decoded instruction as plain JS data, copied out of iced-x86's Instruction once per block
// build (iced objects must never be kept: they live in WASM memory and must be freed).

import type * as Iced from 'iced-x86';
import { iced } from '../../asm/iced';

/** A general-purpose register operand: index 0..15, width in bytes, AH/CH/DH/BH. */
export interface Gpr {
  readonly index: number;
  readonly size: 1 | 2 | 4 | 8;
  readonly high: boolean;
}

export interface MemRef {
  /** register index 0..15, or -1 */
  readonly base: number;
  readonly index: number;
  readonly scale: 1 | 2 | 4 | 8;
  /** displacement (sign-extended); for RIP-relative operands the absolute target */
  readonly disp: number;
  readonly ripRelative: boolean;
  /** 4 with a 0x67 prefix (32-bit registers) */
  readonly addressSize: 4 | 8;
  /** 'fs' | 'gs' when an override applies a base in 64-bit mode */
  readonly segment: 'fs' | 'gs' | undefined;
  /** bytes accessed (0 for lea/lgdt-style operands whose size is the instruction's business) */
  readonly size: number;
}

export type Operand =
  | { readonly kind: 'reg'; readonly reg: Gpr }
  | { readonly kind: 'sreg'; readonly name: 'es' | 'cs' | 'ss' | 'ds' | 'fs' | 'gs' }
  | { readonly kind: 'cr'; readonly n: number }
  | { readonly kind: 'dr'; readonly n: number }
  | { readonly kind: 'mem'; readonly mem: MemRef }
  | { readonly kind: 'imm'; readonly lo: number; readonly hi: number; readonly size: number }
  | { readonly kind: 'branch'; readonly target: number };

export interface Insn {
  /** iced Code / Mnemonic numbers and names (names for diagnostics) */
  readonly code: number;
  readonly mnemonic: number;
  readonly mnemonicName: string;
  readonly codeName: string;
  /** address of the first byte, and of the next instruction */
  readonly ip: number;
  readonly next: number;
  readonly length: number;
  readonly ops: readonly Operand[];
  /** operand size in bytes of the operation (from the first sized operand) */
  readonly opSize: number;
  readonly rep: 0 | 1 | 2; // none, rep/repe, repne
  /** string instructions with a 0x67 prefix address through ESI/EDI and count ECX */
  readonly a32: boolean;
  readonly lock: boolean;
  /** jcc/setcc/cmovcc condition, 0..15 (o no b ae e ne be a s ns p np l ge le g); -1 none */
  readonly cc: number;
}

const TWO32 = 4294967296;

let gprTable: (Gpr | undefined)[] | undefined;

/** iced Register -> Gpr (undefined for non-GPRs). */
export function gprOf(reg: number): Gpr | undefined {
  if (!gprTable) {
    const R = iced().Register;
    gprTable = [];
    const names64 = ['RAX', 'RCX', 'RDX', 'RBX', 'RSP', 'RBP', 'RSI', 'RDI', 'R8', 'R9', 'R10', 'R11', 'R12', 'R13', 'R14', 'R15'];
    const names32 = ['EAX', 'ECX', 'EDX', 'EBX', 'ESP', 'EBP', 'ESI', 'EDI', ...Array.from({ length: 8 }, (_, i) => `R${i + 8}D`)];
    const names16 = ['AX', 'CX', 'DX', 'BX', 'SP', 'BP', 'SI', 'DI', ...Array.from({ length: 8 }, (_, i) => `R${i + 8}W`)];
    const names8 = ['AL', 'CL', 'DL', 'BL', 'SPL', 'BPL', 'SIL', 'DIL', ...Array.from({ length: 8 }, (_, i) => `R${i + 8}L`)];
    const put = (name: string, g: Gpr) => {
      gprTable![R[name as keyof typeof R] as number] = g;
    };
    for (let i = 0; i < 16; i++) {
      put(names64[i], { index: i, size: 8, high: false });
      put(names32[i], { index: i, size: 4, high: false });
      put(names16[i], { index: i, size: 2, high: false });
      put(names8[i], { index: i, size: 1, high: false });
    }
    ['AH', 'CH', 'DH', 'BH'].forEach((n, i) => put(n, { index: i, size: 1, high: true }));
  }
  return gprTable[reg];
}

function signedNumber(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

/** Copies what the CPU needs out of a decoded iced instruction. */
export function toInsn(i: Iced.Instruction, ip: number): Insn {
  const I = iced();
  const { OpKind, Register, Code, Mnemonic } = I;
  const ops: Operand[] = [];
  let opSize = 0;
  let a32 = false;
  for (let k = 0; k < i.opCount; k++) {
    const kind = i.opKind(k);
    switch (kind) {
      case OpKind.Register: {
        const reg = i.opRegister(k);
        const g = gprOf(reg);
        if (g) {
          ops.push({ kind: 'reg', reg: g });
          opSize ||= g.size;
        } else if (reg >= Register.ES && reg <= Register.GS) {
          ops.push({ kind: 'sreg', name: (['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const)[reg - Register.ES] });
        } else if (reg >= Register.CR0 && reg <= Register.CR15) {
          ops.push({ kind: 'cr', n: reg - Register.CR0 });
        } else if (reg >= Register.DR0 && reg <= Register.DR15) {
          ops.push({ kind: 'dr', n: reg - Register.DR0 });
        } else {
          ops.push({ kind: 'sreg', name: 'ds' }); // not reachable for the decoded subset; compile rejects it
        }
        break;
      }
      case OpKind.NearBranch64:
      case OpKind.NearBranch32:
      case OpKind.NearBranch16:
        ops.push({ kind: 'branch', target: signedNumber(i.nearBranch64) });
        break;
      case OpKind.Memory: {
        const base = i.memoryBase;
        const index = i.memoryIndex;
        const rip = base === Register.RIP || base === Register.EIP;
        const seg = i.segmentPrefix;
        const size = I.MemorySizeExt.size(i.memorySize);
        const mem: MemRef = {
          base: rip || base === Register.None ? -1 : gprOf(base)!.index,
          index: index === Register.None ? -1 : gprOf(index)!.index,
          scale: i.memoryIndexScale as 1 | 2 | 4 | 8,
          disp: rip ? signedNumber(i.memoryDisplacement) : Number(BigInt.asIntN(32, i.memoryDisplacement)),
          ripRelative: rip,
          addressSize: (base !== Register.None && !rip && gprOf(base)!.size === 4) || (index !== Register.None && gprOf(index)!.size === 4) || base === Register.EIP ? 4 : 8,
          segment: seg === Register.FS ? 'fs' : seg === Register.GS ? 'gs' : undefined,
          size,
        };
        ops.push({ kind: 'mem', mem });
        opSize ||= size;
        break;
      }
      case OpKind.Immediate8:
      case OpKind.Immediate8_2nd:
      case OpKind.Immediate16:
      case OpKind.Immediate32:
      case OpKind.Immediate64:
      case OpKind.Immediate8to16:
      case OpKind.Immediate8to32:
      case OpKind.Immediate8to64:
      case OpKind.Immediate32to64: {
        const v = BigInt.asUintN(64, i.immediate(k));
        const size = kind === OpKind.Immediate8 || kind === OpKind.Immediate8_2nd ? 1 : kind === OpKind.Immediate16 || kind === OpKind.Immediate8to16 ? 2 :
          kind === OpKind.Immediate32 || kind === OpKind.Immediate8to32 ? 4 : 8;
        ops.push({ kind: 'imm', lo: Number(v & 0xffffffffn) | 0, hi: Number(v >> 32n) | 0, size });
        break;
      }
      case OpKind.MemorySegESI:
      case OpKind.MemorySegEDI:
      case OpKind.MemoryESEDI:
        a32 = true; // string operands through ESI/EDI
        break;
      default:
        // string instruction operands through RSI/RDI: the string ops know them
        break;
    }
  }
  const codeName = Code[i.code];
  if (opSize === 0) {
    // operand size from the form name (Movsq, Pushfq, Cqo, ...)
    opSize = /q$|64/i.test(codeName) ? 8 : /d$|32/.test(codeName) ? 4 : /w$|16/.test(codeName) ? 2 : /b$|8/.test(codeName) ? 1 : 8;
  }
  return {
    code: i.code,
    mnemonic: i.mnemonic,
    mnemonicName: Mnemonic[i.mnemonic],
    codeName,
    ip,
    next: ip + i.length,
    length: i.length,
    ops,
    opSize,
    rep: i.hasRepnePrefix ? 2 : i.hasRepePrefix ? 1 : 0,
    a32,
    lock: i.hasLockPrefix,
    cc: ccOf(i),
  };
}

function ccOf(i: Iced.Instruction): number {
  const cc = i.conditionCode; // iced: None=0, o=1, no=2, b=3, ae=4, e=5, ne=6, be=7, a=8, s=9, ns=10, p=11, np=12, l=13, ge=14, le=15, g=16
  return cc === 0 ? -1 : cc - 1;
}

export { TWO32 };

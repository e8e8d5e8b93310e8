// Parsed statements and operands of the NASM subset (what the parser produces and the passes consume).

import type { SourcePos } from './diagnostics';
import type { Expr } from './expr';
import type { RegInfo } from './registers';

/** operand size in bytes */
export type Size = 1 | 2 | 4 | 8 | 10 | 16;

export const SIZE_KEYWORDS: Readonly<Record<string, Size>> = { byte: 1, word: 2, dword: 4, qword: 8, tword: 10, oword: 16 };

export interface RegOperand {
  readonly kind: 'reg';
  readonly reg: RegInfo;
  readonly pos: SourcePos;
}

export interface MemOperand {
  readonly kind: 'mem';
  /** from `byte [..]`, `qword [..]`; undefined when not written */
  readonly size: Size | undefined;
  readonly regs: { reg: RegInfo; coeff: Expr; pos: SourcePos }[];
  readonly disp: Expr | undefined;
  /** `[rel x]` true, `[abs x]` false, undefined: as `default rel/abs` says */
  readonly rel: boolean | undefined;
  readonly segment: RegInfo | undefined;
  /** `[byte rax+1]`, `[dword rax+1]`: forced displacement width */
  readonly dispSize: Size | undefined;
  readonly pos: SourcePos;
}

export interface ImmOperand {
  readonly kind: 'imm';
  readonly value: Expr;
  /** from `byte 5`, `dword 5` */
  readonly size: Size | undefined;
  readonly strict: boolean;
  /** `short label` / `near label` */
  readonly jump: 'short' | 'near' | undefined;
  readonly pos: SourcePos;
}

export type Operand = RegOperand | MemOperand | ImmOperand;

export type Prefix = 'lock' | 'rep' | 'repe' | 'repne';

export interface InsnStmt {
  readonly kind: 'insn';
  readonly prefixes: readonly { readonly name: Prefix; readonly pos: SourcePos }[];
  /** lower case, as written (aliases not resolved) */
  readonly mnemonic: string;
  readonly operands: readonly Operand[];
  readonly pos: SourcePos;
}

export type DataItem =
  | { readonly kind: 'expr'; readonly value: Expr; readonly pos: SourcePos }
  | { readonly kind: 'str'; readonly bytes: readonly number[]; readonly pos: SourcePos };

export interface DataStmt {
  readonly kind: 'data';
  readonly width: 1 | 2 | 4 | 8;
  readonly items: readonly DataItem[];
  readonly pos: SourcePos;
}

export interface ReserveStmt {
  readonly kind: 'reserve';
  readonly width: 1 | 2 | 4 | 8;
  readonly count: Expr;
  readonly pos: SourcePos;
}

export interface TimesStmt {
  readonly kind: 'times';
  readonly count: Expr;
  readonly body: InsnStmt | DataStmt | ReserveStmt;
  readonly pos: SourcePos;
}

export interface AlignStmt {
  readonly kind: 'align';
  readonly boundary: Expr;
  /** `alignb` (reserves, no bytes) */
  readonly reserve: boolean;
  /** the second argument of `align N, insn`; undefined: NOP in progbits, reserve in nobits */
  readonly fill: InsnStmt | DataStmt | undefined;
  readonly pos: SourcePos;
}

export interface LabelStmt {
  readonly kind: 'label';
  readonly name: string;
  readonly pos: SourcePos;
}

export interface EquStmt {
  readonly kind: 'equ';
  readonly name: string;
  readonly value: Expr;
  readonly pos: SourcePos;
}

export interface SectionStmt {
  readonly kind: 'section';
  readonly name: string;
  readonly align: number | undefined;
  readonly nobits: boolean | undefined;
  readonly pos: SourcePos;
}

export interface OrgStmt {
  readonly kind: 'org';
  readonly value: Expr;
  readonly pos: SourcePos;
}

export interface DefaultStmt {
  readonly kind: 'default';
  readonly rel: boolean;
  readonly pos: SourcePos;
}

export type Statement =
  | InsnStmt | DataStmt | ReserveStmt | TimesStmt | AlignStmt | LabelStmt | EquStmt | SectionStmt | OrgStmt | DefaultStmt;

/** A statement with the source line it came from. */
export interface SourceStatement {
  readonly stmt: Statement;
  /** index into the preprocessor's logical lines */
  readonly lineIndex: number;
}

// Encodes one instruction as `nasm -f bin` (2.16, default optimization) does: resolves the
// operands (NASM's effective-address rules), picks the encoding form NASM would pick among the
// iced-x86 Codes of forms.generated.ts, and lets iced's Encoder produce the bytes.
//
// The form choice is written here because iced has no assembler front end in its JS build and
// BlockEncoder does not follow NASM's rules; the rules below were each checked against nasm
// (test/asm/nasm-corpus.test.ts compares every generated form byte for byte).

import type * as Iced from 'iced-x86';
import type { ImmOperand, InsnStmt, MemOperand, Operand, Size } from './ast';
import { AsmError, type SourcePos } from './diagnostics';
import { isPlain, isSimpleAddress, NO_RELOC, s64, u64, type Expr, type Value } from './expr';
import { FORMS, type Form } from './forms.generated';
import { iced } from './iced';
import { STRING_OPS } from './mnemonics';
import { lookupRegister, type RegInfo } from './registers';

export interface InsnEnv {
  evaluate(e: Expr): Value;
  /** address of the instruction's first byte */
  readonly address: bigint;
  readonly defaultRel: boolean;
  readonly final: boolean;
  /** branch relaxation: the short form of this jump did not reach in an earlier pass */
  readonly forceLongBranch: boolean;
  warn(pos: SourcePos, message: string): void;
}

export interface EncodedInsn {
  readonly bytes: Uint8Array;
  /** the jump took its rel32 form although a rel8 form exists */
  readonly longBranch: boolean;
}

interface ResolvedMem {
  readonly kind: 'mem';
  readonly size: Size | undefined;
  readonly base: RegInfo | 'rip' | undefined;
  readonly index: RegInfo | undefined;
  readonly scale: 1 | 2 | 4 | 8;
  readonly disp: bigint;
  /** iced's displSize: 0 none, 1 shortest, 8 a full 32-bit field */
  readonly displSize: 0 | 1 | 8;
  readonly segment: RegInfo | undefined;
  readonly pos: SourcePos;
}

interface ResolvedImm {
  readonly kind: 'imm';
  readonly value: Value;
  readonly src: ImmOperand;
  readonly pos: SourcePos;
}

interface ResolvedReg {
  readonly kind: 'reg';
  readonly reg: RegInfo;
  readonly pos: SourcePos;
}

type Resolved = ResolvedReg | ResolvedMem | ResolvedImm;

interface Candidate {
  readonly form: Form;
  readonly ops: readonly Resolved[];
}

const BRANCH_KINDS = new Set(['br64_1', 'br64_4']);
/** NASM lets these take an unsized memory operand as a 64-bit one */
const DEFAULT64_MEMORY = new Set(['jmp', 'call']);
/** operand order does not matter; NASM encodes either order with the same form */
const COMMUTATIVE = new Set(['xchg', 'test']);

let encoder: Iced.Encoder | undefined;

function getEncoder(): Iced.Encoder {
  encoder ??= new (iced().Encoder)(64);
  return encoder;
}

export function encodeInstruction(stmt: InsnStmt, env: InsnEnv): EncodedInsn {
  const mnemonic = stmt.mnemonic;
  if (mnemonic in STRING_OPS) return { bytes: encodeStringOp(stmt), longBranch: false };
  const lock = stmt.prefixes.find((p) => p.name === 'lock');
  const rep = stmt.prefixes.find((p) => p.name !== 'lock');
  if (rep) throw new AsmError(rep.pos, `'${rep.name}' can only prefix a string instruction (movs, stos, lods, cmps, scas)`);

  let ops = stmt.operands.map((o) => resolve(o, env));
  if (mnemonic === 'imul' && ops.length === 2 && ops[1].kind === 'imm') ops = [ops[0], ops[0], ops[1]]; // imul r, imm = imul r, r, imm
  const forms = FORMS[mnemonic];
  const orders = ops.length === 2 && COMMUTATIVE.has(mnemonic)
    ? (mnemonic === 'xchg' ? [[ops[1], ops[0]], ops] : [ops, [ops[1], ops[0]]]) // NASM puts xchg's first operand in ModRM.reg
    : [ops];

  let candidates: Candidate[] = [];
  const sreg = mnemonic === 'mov' ? segmentMove(ops) : undefined;
  if (sreg) candidates.push(sreg);
  else for (const order of orders) {
    for (const form of forms) {
      if (form.ops.length === order.length && form.ops.every((k, i) => matches(k, order[i], form))) {
        candidates.push({ form, ops: order });
      }
    }
  }
  // 90 is NOP in 64-bit mode, not `xchg eax, eax` (which zero-extends): NASM uses 87 /r
  if (mnemonic === 'xchg') candidates = candidates.filter((c) => !(c.form.code === 'Xchg_r32_EAX' && c.ops[0].kind === 'reg' && c.ops[0].reg.name === 'eax'));
  if (candidates.length === 0) throw new AsmError(stmt.pos, noMatchMessage(mnemonic, ops, forms));

  candidates = resolveMemorySize(candidates, ops, mnemonic, stmt.pos);
  candidates = applyImmediateRules(candidates, ops, mnemonic);
  const branch = candidates.some((c) => c.form.ops.some((k) => BRANCH_KINDS.has(k)));
  if (branch) candidates = applyBranchRules(candidates, ops[0] as ResolvedImm, env);

  if (lock) {
    candidates = candidates.filter((c) => c.form.lock && c.ops[0]?.kind === 'mem');
    if (candidates.length === 0) throw new AsmError(lock.pos, `'lock' needs a lockable instruction with a memory destination`);
  }

  // the shortest encoding; on a tie NASM prefers the sign-extended imm8 form (`add ax, -1` -> 66 83 /0 ib)
  let best: { bytes: Uint8Array; form: Form; immField: number } | undefined;
  let firstError: string | undefined;
  for (const c of candidates) {
    const r = tryEncode(c, env.address, lock !== undefined);
    if (typeof r === 'string') {
      firstError ??= r;
      continue;
    }
    const immField = c.form.ops.reduce((n, k) => n + (IMM_KINDS[k]?.field ?? 0), 0);
    if (!best || r.length < best.bytes.length || (r.length === best.bytes.length && immField < best.immField)) best = { bytes: r, form: c.form, immField };
  }
  if (!best) {
    if (branch) {
      const shortOnly = candidates.every((c) => c.form.ops.includes('br64_1'));
      if (shortOnly && env.final) throw new AsmError(stmt.pos, `short jump is out of range`);
      if (!env.final) return { bytes: new Uint8Array(shortOnly ? 2 : 6), longBranch: !shortOnly };
    }
    throw new AsmError(stmt.pos, `cannot encode this instruction: ${firstError ?? 'no encoding'}`);
  }
  const longBranch = best.form.ops.includes('br64_4') && forms.some((f) => f.ops.includes('br64_1'));
  return { bytes: best.bytes, longBranch };
}

// ---- operands ------------------------------------------------------------------------------------

function resolve(o: Operand, env: InsnEnv): Resolved {
  switch (o.kind) {
    case 'reg':
      return o;
    case 'imm':
      return { kind: 'imm', value: env.evaluate(o.value), src: o, pos: o.pos };
    case 'mem':
      return resolveMemory(o, env);
  }
}

function constantOf(e: Expr, env: InsnEnv, pos: SourcePos, what: string): bigint {
  const v = env.evaluate(e);
  if (!isPlain(v.reloc)) throw new AsmError(pos, `${what} must be a number, not an address`);
  return s64(v.v);
}

/** NASM's effective-address rules: which register is base and which is index. */
function resolveMemory(m: MemOperand, env: InsnEnv): ResolvedMem {
  // sum the coefficients of each register ([rax+rax] is rax*2)
  const terms: { reg: RegInfo; k: bigint; pos: SourcePos }[] = [];
  for (const t of m.regs) {
    const k = constantOf(t.coeff, env, t.pos, 'a register scale');
    const same = terms.find((x) => x.reg.name === t.reg.name);
    if (same) same.k += k;
    else terms.push({ reg: t.reg, k, pos: t.pos });
  }
  const regs = terms.filter((t) => t.k !== 0n);
  if (regs.length > 0 && regs.some((r) => r.reg.size !== regs[0].reg.size)) {
    throw new AsmError(m.pos, `an address cannot mix 32-bit and 64-bit registers`);
  }
  let base: RegInfo | undefined;
  let index: RegInfo | undefined;
  let scale = 1n;
  const isSp = (r: RegInfo) => r.num === 4 && r.kind === 'gpr' && !r.needsRex;
  if (regs.length > 2) throw new AsmError(m.pos, `an address can use at most two registers`);
  if (regs.length === 1) {
    const { reg, k } = regs[0];
    if (k === 1n) base = reg;
    else if (k === 2n || k === 3n || k === 5n || k === 9n) {
      base = reg; // [rax*2] -> [rax+rax], [rax*3] -> [rax+rax*2], as NASM splits them
      index = reg;
      scale = k - 1n;
    } else if (k === 4n || k === 8n) {
      index = reg;
      scale = k;
    } else throw new AsmError(regs[0].pos, `invalid scale ${k} (use 1, 2, 4 or 8)`);
  } else if (regs.length === 2) {
    const [a, b] = regs;
    if (a.k === 1n && b.k === 1n) {
      [base, index] = isSp(b.reg) ? [b.reg, a.reg] : [a.reg, b.reg];
    } else if (a.k === 1n) {
      [base, index, scale] = [a.reg, b.reg, b.k];
    } else if (b.k === 1n) {
      [base, index, scale] = [b.reg, a.reg, a.k];
    } else throw new AsmError(m.pos, `only one register in an address can be scaled`);
    if (![1n, 2n, 4n, 8n].includes(scale)) throw new AsmError((a.k === 1n ? b : a).pos, `invalid scale ${scale} (use 1, 2, 4 or 8)`);
  }
  if (index && isSp(index)) throw new AsmError(m.pos, `'${index.name}' cannot be an index register`);

  const dispValue = m.disp ? env.evaluate(m.disp) : undefined;
  if (m.dispSize === 8) throw new AsmError(m.pos, `64-bit absolute addresses ([qword ...]) are not supported; load the address into a register`);

  if (!base && !index) {
    const value = dispValue ?? { v: 0n, reloc: NO_RELOC, known: true };
    const fsgs = m.segment?.name === 'fs' || m.segment?.name === 'gs';
    const wantRel = m.rel ?? (env.defaultRel && !fsgs);
    if (wantRel && (isSimpleAddress(value.reloc) || !value.known)) {
      return { kind: 'mem', size: m.size, base: 'rip', index: undefined, scale: 1, disp: value.v, displSize: 8, segment: m.segment, pos: m.pos };
    }
    if (wantRel) env.warn(m.pos, `absolute address can not be RIP-relative`);
    if (value.known && isPlain(value.reloc) && (s64(value.v) < -0x8000_0000n || s64(value.v) > 0x7fff_ffffn)) {
      throw new AsmError(m.pos, `address 0x${value.v.toString(16)} cannot be encoded: an absolute address is a sign-extended 32-bit displacement; put the address in a register (mov rbx, 0x${value.v.toString(16)} / [rbx])`);
    }
    return { kind: 'mem', size: m.size, base: undefined, index: undefined, scale: 1, disp: value.v, displSize: 8, segment: m.segment, pos: m.pos };
  }

  let displSize: 0 | 1 | 8 = 0;
  let disp = 0n;
  if (dispValue) {
    disp = dispValue.v;
    const sv = s64(disp);
    if (dispValue.known && isPlain(dispValue.reloc) && (sv < -0x8000_0000n || sv > 0x7fff_ffffn)) {
      throw new AsmError(m.pos, `displacement 0x${disp.toString(16)} does not fit in 32 bits`);
    }
    const plain = dispValue.known && isPlain(dispValue.reloc);
    if (m.dispSize === 1) {
      if (plain && (sv < -128n || sv > 127n)) throw new AsmError(m.pos, `displacement ${sv} does not fit the 'byte' displacement`);
      displSize = 1;
    } else if (m.dispSize === 4 || !plain) displSize = 8;
    else if (sv === 0n) displSize = 0;
    else displSize = sv >= -128n && sv <= 127n ? 1 : 8;
  } else if (m.dispSize === 4) displSize = 8;
  else if (m.dispSize === 1) displSize = 1;
  return { kind: 'mem', size: m.size, base, index, scale: Number(scale) as 1 | 2 | 4 | 8, disp, displSize, segment: m.segment, pos: m.pos };
}

// ---- matching ------------------------------------------------------------------------------------

/**
 * mov to or from a segment register, as NASM encodes it: no 66 prefix except `mov r16, sreg`;
 * a 32- or 64-bit register is encoded as the 32-bit form; REX.W only for a `qword` memory operand.
 */
function segmentMove(ops: readonly Resolved[]): Candidate | undefined {
  if (ops.length !== 2) return undefined;
  const toSreg = ops[0].kind === 'reg' && ops[0].reg.kind === 'seg';
  const fromSreg = ops[1].kind === 'reg' && ops[1].reg.kind === 'seg';
  if (toSreg === fromSreg) return undefined;
  const other = toSreg ? ops[1] : ops[0];
  const sreg = toSreg ? ops[0] : ops[1];
  let code: string;
  let operand: Resolved = other;
  if (other.kind === 'reg' && other.reg.kind === 'gpr' && other.reg.size >= 2) {
    if (!toSreg && other.reg.size === 2) code = 'Mov_rm16_Sreg';
    else {
      code = toSreg ? 'Mov_Sreg_r32m16' : 'Mov_r32m16_Sreg';
      operand = { kind: 'reg', reg: gpr(other.reg.num, 4), pos: other.pos };
    }
  } else if (other.kind === 'mem' && (other.size === undefined || other.size === 2 || other.size === 8)) {
    const wide = other.size === 8;
    code = toSreg ? (wide ? 'Mov_Sreg_r64m16' : 'Mov_Sreg_r32m16') : wide ? 'Mov_r64m16_Sreg' : 'Mov_r32m16_Sreg';
  } else {
    throw new AsmError(other.pos, `a segment register moves to or from a 16-, 32- or 64-bit register or a word/qword memory operand`);
  }
  const form = FORMS.mov.find((f) => f.code === code)!;
  return { form, ops: toSreg ? [sreg, operand] : [operand, sreg] };
}

/** The general-purpose register with encoding number `num` and width `size` bytes. */
function gpr(num: number, size: 4 | 8): RegInfo {
  const legacy = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'];
  const name = num < 8 ? (size === 4 ? 'e' : 'r') + legacy[num] : `r${num}${size === 4 ? 'd' : ''}`;
  return lookupRegister(name)!;
}

const GPR_KIND = /^r(8|16|32|64)_(reg|or_mem|opcode|rm|reg_mem)$/;
/** Sreg forms whose memory operand is really 16 bits: NASM only uses the rm16 one with memory */
const SREG_WIDE = /^Mov_(r32m16|r64m16)_Sreg$|^Mov_Sreg_(r32m16|r64m16)$/;

/** The memory size a form's operand kind implies (undefined: any, e.g. lea's `mem`). */
function memSizeOf(kind: string): number | undefined {
  const m = GPR_KIND.exec(kind);
  return m ? Number(m[1]) / 8 : undefined;
}

function matches(kind: string, op: Resolved, form: Form): boolean {
  switch (op.kind) {
    case 'reg': {
      const r = op.reg;
      if (kind === r.name) return true; // al, cl, ax, dx, eax, rax, fs, gs
      if (r.kind === 'gpr') {
        const m = GPR_KIND.exec(kind);
        return m !== null && Number(m[1]) === r.size * 8;
      }
      if (r.kind === 'cr') return kind === 'cr_reg';
      if (r.kind === 'dr') return kind === 'dr_reg';
      return kind === 'seg_reg';
    }
    case 'mem': {
      if (kind === 'mem') return true; // lea, lidt, lgdt: any size
      const m = GPR_KIND.exec(kind);
      if (!m || (m[2] !== 'or_mem' && m[2] !== 'reg_mem')) return false;
      if (SREG_WIDE.test(form.code)) return false;
      return op.size === undefined || op.size * 8 === Number(m[1]);
    }
    case 'imm':
      if (BRANCH_KINDS.has(kind)) return true;
      return kind.startsWith('imm');
  }
}

function describe(op: Resolved): string {
  switch (op.kind) {
    case 'reg': return op.reg.kind === 'gpr' ? `reg${op.reg.size * 8}` : op.reg.kind === 'seg' ? 'sreg' : op.reg.kind;
    case 'mem': return op.size ? `mem${op.size * 8}` : 'mem';
    case 'imm': return 'imm';
  }
}

function noMatchMessage(mnemonic: string, ops: readonly Resolved[], forms: readonly Form[]): string {
  const shapes = ops.map(describe).join(', ');
  if (!forms.some((f) => f.ops.length === ops.length)) {
    const counts = [...new Set(forms.map((f) => f.ops.length))].sort();
    return `'${mnemonic}' takes ${counts.join(' or ')} operand(s), not ${ops.length}`;
  }
  const sized = ops.filter((o) => o.kind === 'reg' && o.reg.kind === 'gpr').map((o) => (o as ResolvedReg).reg.size);
  const memSized = ops.filter((o) => o.kind === 'mem' && o.size !== undefined).map((o) => (o as ResolvedMem).size!);
  if (new Set([...sized, ...memSized]).size > 1 && !['movzx', 'movsx', 'movsxd', 'in', 'out'].includes(mnemonic)) {
    return `operand sizes do not match (${shapes})`;
  }
  return `invalid combination of operands for '${mnemonic}' (${shapes})`;
}

/** An unsized memory operand must get its size from another operand (or NASM's 64-bit default for jmp/call). */
function resolveMemorySize(cands: Candidate[], ops: readonly Resolved[], mnemonic: string, pos: SourcePos): Candidate[] {
  const memIdx = ops.findIndex((o) => o.kind === 'mem' && o.size === undefined);
  if (memIdx < 0) return cands;
  const sizeOf = (c: Candidate) => memSizeOf(c.form.ops[c.ops.indexOf(ops[memIdx])]);
  const sizes = new Set(cands.map(sizeOf).filter((s) => s !== undefined));
  if (sizes.size <= 1) return cands;
  if (DEFAULT64_MEMORY.has(mnemonic)) return cands.filter((c) => sizeOf(c) === 8);
  throw new AsmError(pos, `operation size not specified: write 'byte', 'word', 'dword' or 'qword' before '['`);
}

// ---- immediates ----------------------------------------------------------------------------------

interface ImmKindInfo {
  /** bytes in the instruction */
  readonly field: number;
  /** the size the value has for the operation (an imm8 sign-extended to 64 bits is a qword) */
  readonly logical: number;
  readonly signExtended: boolean;
}

const IMM_KINDS: Readonly<Record<string, ImmKindInfo>> = {
  imm8: { field: 1, logical: 1, signExtended: false },
  imm8_const_1: { field: 0, logical: 1, signExtended: false },
  imm8sex16: { field: 1, logical: 2, signExtended: true },
  imm8sex32: { field: 1, logical: 4, signExtended: true },
  imm8sex64: { field: 1, logical: 8, signExtended: true },
  imm16: { field: 2, logical: 2, signExtended: false },
  imm32: { field: 4, logical: 4, signExtended: false },
  imm32sex64: { field: 4, logical: 8, signExtended: true },
  imm64: { field: 8, logical: 8, signExtended: false },
};

/** Does a known plain value fit the immediate kind (as NASM accepts it without changing its meaning)? */
function fits(kind: string, v: bigint): boolean {
  const s = s64(v);
  const inRange = (lo: bigint, hi: bigint) => s >= lo && s <= hi;
  switch (kind) {
    case 'imm8': return inRange(-128n, 255n);
    case 'imm8_const_1': return s === 1n;
    case 'imm8sex16': return inRange(-0x8000n, 0xffffn) && inRange8(BigInt.asIntN(16, s));
    case 'imm8sex32': return inRange(-0x8000_0000n, 0xffff_ffffn) && inRange8(BigInt.asIntN(32, s));
    case 'imm8sex64': return inRange8(s);
    case 'imm16': return inRange(-0x8000n, 0xffffn);
    case 'imm32': return inRange(-0x8000_0000n, 0xffff_ffffn);
    case 'imm32sex64': return inRange(-0x8000_0000n, 0x7fff_ffffn);
    default: return true; // imm64
  }
}

function inRange8(s: bigint): boolean {
  return s >= -128n && s <= 127n;
}


function applyImmediateRules(cands: Candidate[], ops: readonly Resolved[], mnemonic: string): Candidate[] {
  const immIdx = ops.findIndex((o) => o.kind === 'imm');
  if (immIdx < 0) return cands;
  const imm = ops[immIdx] as ResolvedImm;
  const { size: K, strict } = imm.src;
  const value = imm.value;
  const plain = value.known && isPlain(value.reloc);
  const isBranch = (c: Candidate) => BRANCH_KINDS.has(c.form.ops[c.ops.indexOf(imm)]);
  const kindOf = (c: Candidate) => c.form.ops[c.ops.indexOf(imm)];

  // mov r64, imm: NASM writes `mov r32, imm32` when the value zero-extends, and uses imm64 for an address
  if (mnemonic === 'mov' && ops[0].kind === 'reg' && ops[0].reg.size === 8 && ops[0].reg.kind === 'gpr' && !strict && (K === undefined || K === 8)) {
    const r32 = gpr(ops[0].reg.num, 4);
    if (plain && value.v <= 0xffff_ffffn) {
      return [{ form: FORMS.mov.find((f) => f.code === 'Mov_r32_imm32')!, ops: [{ kind: 'reg', reg: r32, pos: ops[0].pos }, imm] }];
    }
    if (!plain) return cands.filter((c) => kindOf(c) === 'imm64');
  }

  let out = cands.filter((c) => {
    if (isBranch(c)) return true;
    const kind = kindOf(c);
    const info = IMM_KINDS[kind];
    if (!info) return false;
    // a value that is an address, or not known yet, never takes a sign-extended byte form
    if ((info.signExtended && info.field === 1) || kind === 'imm8_const_1') {
      if (!plain) return false;
    }
    if (kind === 'imm8_const_1' && (K !== undefined || strict)) return false;
    // push takes a 64-bit operand unless `word` says otherwise
    if (mnemonic === 'push' && (K === undefined || K === 1) && info.logical === 2) return false;
    if (K === undefined) return true;
    if (K === 1) return info.field === 1;
    if (strict) return info.field === K || (K === 8 && info.logical === 8 && info.field > 1);
    const want = mnemonic === 'push' && K === 4 ? 8 : K;
    if (mnemonic === 'mov' && K === 4 && kind === 'imm32sex64') return true;
    return info.logical === want;
  });
  if (strict && K === 8 && out.some((c) => IMM_KINDS[kindOf(c)]?.field === 8)) out = out.filter((c) => IMM_KINDS[kindOf(c)]?.field === 8);
  if (out.length === 0) {
    throw new AsmError(imm.pos, K !== undefined
      ? `the '${['', 'byte', 'word', '', 'dword', '', '', '', 'qword'][K]}' immediate does not fit this instruction's operand size`
      : `no form of '${mnemonic}' takes this immediate`);
  }
  if (!plain) return out;
  const fitting = out.filter((c) => isBranch(c) || fits(kindOf(c), value.v));
  if (fitting.length === 0) {
    const widest = Math.max(...out.map((c) => IMM_KINDS[kindOf(c)]?.logical ?? 0));
    throw new AsmError(imm.pos, `value ${formatValue(value.v)} is out of range for a ${widest * 8}-bit immediate of '${mnemonic}'` +
      (widest === 8 ? ' (64-bit operations sign-extend a 32-bit immediate; load larger values with mov into a register)' : ''));
  }
  return fitting;
}

function formatValue(v: bigint): string {
  const s = s64(v);
  return s < 0n ? `${s}` : `0x${v.toString(16)}`;
}

// ---- branches ------------------------------------------------------------------------------------

function applyBranchRules(cands: Candidate[], target: ResolvedImm, env: InsnEnv): Candidate[] {
  const jump = target.src.jump;
  const hasShort = cands.some((c) => c.form.ops.includes('br64_1'));
  const hasNear = cands.some((c) => c.form.ops.includes('br64_4'));
  if (target.src.size !== undefined || target.src.strict) throw new AsmError(target.pos, `a jump target takes 'short' or 'near', not a size`);
  if (jump === 'short') {
    if (!hasShort) throw new AsmError(target.pos, `this instruction has no short form`);
    return cands.filter((c) => !c.form.ops.includes('br64_4'));
  }
  if (jump === 'near' || (env.forceLongBranch && hasNear)) {
    if (!hasNear) throw new AsmError(target.pos, `this instruction has only a short (rel8) form`);
    return cands.filter((c) => !c.form.ops.includes('br64_1'));
  }
  return cands;
}

// ---- building and encoding -----------------------------------------------------------------------

function toIcedReg(r: RegInfo): Iced.Register {
  return iced().Register[r.iced as keyof typeof Iced.Register];
}

function memoryOperand(m: ResolvedMem): Iced.MemoryOperand {
  const I = iced();
  const base = m.base === 'rip' ? I.Register.RIP : m.base ? toIcedReg(m.base) : I.Register.None;
  const index = m.index ? toIcedReg(m.index) : I.Register.None;
  const seg = m.segment ? toIcedReg(m.segment) : I.Register.None;
  return I.MemoryOperand.new64(base, index, m.scale, m.disp, m.displSize, false, seg);
}

/** The immediate as iced wants it for the kind: signed for sign-extended fields, masked otherwise. */
function immArg(kind: string, v: bigint): { signed: boolean; n: number } {
  switch (kind) {
    case 'imm8sex16':
    case 'imm8sex32':
    case 'imm8sex64':
      return { signed: true, n: Number(BigInt.asIntN(8, v)) };
    case 'imm32sex64':
      return { signed: true, n: Number(BigInt.asIntN(32, v)) };
    case 'imm8':
      return { signed: false, n: Number(v & 0xffn) };
    case 'imm16':
      return { signed: false, n: Number(v & 0xffffn) };
    case 'imm8_const_1':
      return { signed: false, n: 1 };
    default:
      return { signed: false, n: Number(v & 0xffff_ffffn) };
  }
}

function build(c: Candidate, address: bigint): Iced.Instruction {
  const I = iced();
  const { Instruction } = I;
  const code = I.Code[c.form.code as keyof typeof Iced.Code];
  const shape = c.ops.map((o) => o.kind[0]).join('');
  const imm = c.ops.find((o): o is ResolvedImm => o.kind === 'imm');
  const immKind = imm ? c.form.ops[c.ops.indexOf(imm)] : '';
  if (imm && BRANCH_KINDS.has(immKind)) {
    return Instruction.createBranch(code, imm.value.known ? imm.value.v : address);
  }
  const r = (i: number) => toIcedReg((c.ops[i] as ResolvedReg).reg);
  const m = (i: number) => memoryOperand(c.ops[i] as ResolvedMem);
  if (immKind === 'imm64') return Instruction.createRegU64(code, r(0), u64(imm!.value.v));
  const a = imm ? immArg(immKind, imm.value.v) : { signed: false, n: 0 };
  switch (shape) {
    case '': return Instruction.create(code);
    case 'r': return Instruction.createReg(code, r(0));
    case 'm': return Instruction.createMem(code, m(0));
    case 'i': return a.signed ? Instruction.createI32(code, a.n) : Instruction.createU32(code, a.n);
    case 'rr': return Instruction.createRegReg(code, r(0), r(1));
    case 'rm': return Instruction.createRegMem(code, r(0), m(1));
    case 'mr': return Instruction.createMemReg(code, m(0), r(1));
    case 'ri': return a.signed ? Instruction.createRegI32(code, r(0), a.n) : Instruction.createRegU32(code, r(0), a.n);
    case 'mi': return a.signed ? Instruction.createMemI32(code, m(0), a.n) : Instruction.createMemU32(code, m(0), a.n);
    case 'ir': return Instruction.createU32Reg(code, a.n, r(1));
    case 'rri': return a.signed ? Instruction.createRegRegI32(code, r(0), r(1), a.n) : Instruction.createRegRegU32(code, r(0), r(1), a.n);
    case 'rmi': return a.signed ? Instruction.createRegMemI32(code, r(0), m(1), a.n) : Instruction.createRegMemU32(code, r(0), m(1), a.n);
  }
  throw new Error(`unsupported operand shape '${shape}' for ${c.form.code}`);
}

/** Encoded bytes, or iced's message when this candidate cannot be encoded (e.g. a rel8 that does not reach). */
function tryEncode(c: Candidate, address: bigint, lock: boolean): Uint8Array | string {
  let instr: Iced.Instruction | undefined;
  const enc = getEncoder();
  try {
    instr = build(c, address);
    if (lock) instr.hasLockPrefix = true;
    enc.encode(instr, address);
    return enc.takeBuffer();
  } catch (e) {
    enc.takeBuffer(); // a failed encode leaves partial bytes behind
    return cleanIcedMessage(e);
  } finally {
    instr?.free();
  }
}

function cleanIcedMessage(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/\s*\([^()]*\)\s*$/, '');
}

function encodeStringOp(stmt: InsnStmt): Uint8Array {
  if (stmt.operands.length > 0) throw new AsmError(stmt.operands[0].pos, `'${stmt.mnemonic}' takes no operands`);
  const lock = stmt.prefixes.find((p) => p.name === 'lock');
  if (lock) throw new AsmError(lock.pos, `'lock' cannot prefix a string instruction`);
  const I = iced();
  const prefix = stmt.prefixes[stmt.prefixes.length - 1]?.name;
  const rep = prefix === 'repne' ? I.RepPrefixKind.Repne : prefix ? I.RepPrefixKind.Repe : I.RepPrefixKind.None;
  const name = STRING_OPS[stmt.mnemonic];
  const none = I.Register.None;
  const I64 = I.Instruction;
  // iced's constructors: movs/lods/cmps take a segment override, stos/scas do not
  const create: Record<string, () => Iced.Instruction> = {
    Movsb: () => I64.createMovsb(64, none, rep), Movsw: () => I64.createMovsw(64, none, rep),
    Movsd: () => I64.createMovsd(64, none, rep), Movsq: () => I64.createMovsq(64, none, rep),
    Lodsb: () => I64.createLodsb(64, none, rep), Lodsw: () => I64.createLodsw(64, none, rep),
    Lodsd: () => I64.createLodsd(64, none, rep), Lodsq: () => I64.createLodsq(64, none, rep),
    Cmpsb: () => I64.createCmpsb(64, none, rep), Cmpsw: () => I64.createCmpsw(64, none, rep),
    Cmpsd: () => I64.createCmpsd(64, none, rep), Cmpsq: () => I64.createCmpsq(64, none, rep),
    Stosb: () => I64.createStosb(64, rep), Stosw: () => I64.createStosw(64, rep),
    Stosd: () => I64.createStosd(64, rep), Stosq: () => I64.createStosq(64, rep),
    Scasb: () => I64.createScasb(64, rep), Scasw: () => I64.createScasw(64, rep),
    Scasd: () => I64.createScasd(64, rep), Scasq: () => I64.createScasq(64, rep),
    Outsb: () => I64.createOutsb(64, none, rep), Outsw: () => I64.createOutsw(64, none, rep),
    Outsd: () => I64.createOutsd(64, none, rep),
    Insb: () => I64.createInsb(64, rep), Insw: () => I64.createInsw(64, rep), Insd: () => I64.createInsd(64, rep),
  };
  const instr = create[name]();
  const enc = getEncoder();
  try {
    enc.encode(instr, 0n);
    const bytes = enc.takeBuffer();
    // NASM writes the REP prefix before the operand-size prefix (f3 66 a5); iced the other way round
    if (bytes[0] === 0x66 && (bytes[1] === 0xf3 || bytes[1] === 0xf2)) [bytes[0], bytes[1]] = [bytes[1], bytes[0]];
    return bytes;
  } finally {
    instr.free();
  }
}

// Expressions of the NASM subset: parsing (with NASM's precedence and operators) and 64-bit
// evaluation. A value carries, per section, how many times it contains that section's base
// ("reloc"), as NASM's relocatable values do: NASM never picks a sign-extended imm8 or disp8
// form for a value with any, only a value with exactly one (coefficient 1) can be RIP-relative,
// and a difference of labels in two different sections stays relocatable.

import { AsmError, type SourcePos } from './diagnostics';
import { stringValue, type Token } from './lexer';
import { lookupRegister, type RegInfo } from './registers';

export type Expr =
  | { readonly k: 'num'; readonly v: bigint }
  | { readonly k: 'sym'; readonly name: string; readonly pos: SourcePos }
  | { readonly k: 'here' }
  | { readonly k: 'base' }
  | { readonly k: 'reg'; readonly reg: RegInfo; readonly pos: SourcePos }
  | { readonly k: 'un'; readonly op: string; readonly a: Expr; readonly pos: SourcePos }
  | { readonly k: 'bin'; readonly op: string; readonly a: Expr; readonly b: Expr; readonly pos: SourcePos }
  | { readonly k: 'cond'; readonly c: Expr; readonly a: Expr; readonly b: Expr };

/** section name -> coefficient of its base address; zero coefficients are absent */
export type Reloc = Readonly<Record<string, number>>;

export const NO_RELOC: Reloc = Object.freeze({});

export interface Value {
  /** two's complement, 0 <= v < 2^64 */
  readonly v: bigint;
  readonly reloc: Reloc;
  /** false while a symbol it uses has no value yet (a forward reference before the pass that defines it) */
  readonly known: boolean;
}

export interface EvalEnv {
  /** undefined: not defined (yet) */
  symbol(name: string): Value | undefined;
  readonly here: Value;
  readonly sectionBase: Value;
  /** in the final pass an undefined symbol is an error */
  readonly final: boolean;
}

export const MASK64 = 0xffff_ffff_ffff_ffffn;

export function u64(v: bigint): bigint {
  return v & MASK64;
}

export function s64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

export function constant(v: bigint): Value {
  return { v: u64(v), reloc: NO_RELOC, known: true };
}

/** An address in a section (a label, `$`, `$$`). */
export function address(v: bigint, section: string): Value {
  return { v: u64(v), reloc: { [section]: 1 }, known: true };
}

/** No section base in it: a plain number. */
export function isPlain(r: Reloc): boolean {
  for (const _ in r) return false;
  return true;
}

/** Exactly one section base with coefficient 1: an address that can be RIP-relative. */
export function isSimpleAddress(r: Reloc): boolean {
  const keys = Object.keys(r);
  return keys.length === 1 && r[keys[0]] === 1;
}

export function sameReloc(a: Reloc, b: Reloc): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

function combine(a: Reloc, b: Reloc, sign: 1 | -1): Reloc {
  const out: Record<string, number> = { ...a };
  for (const k in b) {
    const c = (out[k] ?? 0) + sign * b[k];
    if (c === 0) delete out[k];
    else out[k] = c;
  }
  return out;
}

function scale(a: Reloc, k: bigint): Reloc {
  if (k === 0n) return NO_RELOC;
  const out: Record<string, number> = {};
  for (const key in a) out[key] = a[key] * Number(k);
  return out;
}

/** A token cursor over one statement. */
export class Cursor {
  i = 0;
  constructor(readonly toks: readonly Token[], readonly file: string, readonly line: number, readonly lineEndCol: number) {}

  peek(o = 0): Token | undefined {
    return this.toks[this.i + o];
  }

  next(): Token | undefined {
    return this.toks[this.i++];
  }

  atEnd(): boolean {
    return this.i >= this.toks.length;
  }

  isOp(text: string, o = 0): boolean {
    const t = this.peek(o);
    return t !== undefined && t.kind === 'op' && t.text === text;
  }

  isId(lower: string, o = 0): boolean {
    const t = this.peek(o);
    return t !== undefined && t.kind === 'id' && t.text.toLowerCase() === lower;
  }

  pos(t: Token | undefined = this.peek()): SourcePos {
    return { file: this.file, line: this.line, col: t ? t.col : this.lineEndCol };
  }

  fail(message: string, t: Token | undefined = this.peek()): never {
    throw new AsmError(this.pos(t), message);
  }

  expectOp(text: string): Token {
    const t = this.peek();
    if (!t || t.kind !== 'op' || t.text !== text) this.fail(t ? `expected '${text}' before '${t.text}'` : `expected '${text}' at end of line`);
    return this.next()!;
  }
}

export interface ExprContext {
  /** turns a '.local' name into its full name */
  qualify(name: string): string;
  /** registers are allowed as atoms (inside a memory operand) */
  readonly allowRegisters: boolean;
}

const BINARY_LEVELS: readonly (readonly string[])[] = [
  ['||'], ['^^'], ['&&'],
  ['=', '==', '<>', '!=', '<', '<=', '>', '>=', '<=>'],
  ['|'], ['^'], ['&'],
  ['<<', '>>', '<<<', '>>>'],
  ['+', '-'],
  ['*', '/', '//', '%', '%%'],
];

export function parseExpr(c: Cursor, ctx: ExprContext): Expr {
  return parseCond(c, ctx);
}

function parseCond(c: Cursor, ctx: ExprContext): Expr {
  const cond = parseLevel(c, ctx, 0);
  // NASM's '?' is lexed as part of identifiers; the conditional operator is not supported here
  return cond;
}

function parseLevel(c: Cursor, ctx: ExprContext, level: number): Expr {
  if (level >= BINARY_LEVELS.length) return parseUnary(c, ctx);
  let left = parseLevel(c, ctx, level + 1);
  for (;;) {
    const t = c.peek();
    if (!t || t.kind !== 'op' || !BINARY_LEVELS[level].includes(t.text)) return left;
    c.next();
    const right = parseLevel(c, ctx, level + 1);
    left = { k: 'bin', op: t.text, a: left, b: right, pos: c.pos(t) };
  }
}

function parseUnary(c: Cursor, ctx: ExprContext): Expr {
  const t = c.peek();
  if (t && t.kind === 'op' && ['-', '+', '~', '!'].includes(t.text)) {
    c.next();
    return { k: 'un', op: t.text, a: parseUnary(c, ctx), pos: c.pos(t) };
  }
  return parseAtom(c, ctx);
}

function parseAtom(c: Cursor, ctx: ExprContext): Expr {
  const t = c.peek();
  if (!t) c.fail('expected an expression at end of line');
  if (t.kind === 'num') {
    c.next();
    return { k: 'num', v: t.value };
  }
  if (t.kind === 'str') {
    c.next();
    if (t.bytes.length > 8) c.fail(`character constant '${t.text}' is longer than 8 bytes`, t);
    return { k: 'num', v: stringValue(t.bytes) };
  }
  if (t.kind === 'op') {
    if (t.text === '(') {
      c.next();
      const e = parseExpr(c, ctx);
      c.expectOp(')');
      return e;
    }
    if (t.text === '$') {
      c.next();
      return { k: 'here' };
    }
    if (t.text === '$$') {
      c.next();
      return { k: 'base' };
    }
    c.fail(`expected an expression before '${t.text}'`, t);
  }
  // identifier
  c.next();
  const reg = lookupRegister(t.text);
  if (reg) {
    if (!ctx.allowRegisters) c.fail(`register '${t.text}' cannot be used in this expression`, t);
    return { k: 'reg', reg, pos: c.pos(t) };
  }
  const lower = t.text.toLowerCase();
  if (['byte', 'word', 'dword', 'qword', 'tword', 'oword', 'strict', 'short', 'near', 'far', 'rel', 'abs'].includes(lower)) {
    c.fail(`'${t.text}' is not allowed here`, t);
  }
  return { k: 'sym', name: ctx.qualify(t.text), pos: c.pos(t) };
}

/** Evaluates an expression that contains no registers. */
export function evaluate(e: Expr, env: EvalEnv): Value {
  switch (e.k) {
    case 'num':
      return constant(e.v);
    case 'here':
      return env.here;
    case 'base':
      return env.sectionBase;
    case 'reg':
      throw new AsmError(e.pos, `register '${e.reg.name}' cannot be used in this expression`);
    case 'sym': {
      const v = env.symbol(e.name);
      if (v !== undefined) return v;
      if (env.final) throw new AsmError(e.pos, `symbol '${e.name}' is not defined`);
      return { v: 0n, reloc: NO_RELOC, known: false };
    }
    case 'cond': {
      const c = evaluate(e.c, env);
      return c.v !== 0n ? evaluate(e.a, env) : evaluate(e.b, env);
    }
    case 'un': {
      const a = evaluate(e.a, env);
      switch (e.op) {
        case '-': return { v: u64(-a.v), reloc: scale(a.reloc, -1n), known: a.known };
        case '+': return a;
        case '~': return { v: u64(~a.v), reloc: scalar(a, e), known: a.known };
        default: return { v: a.v === 0n ? 1n : 0n, reloc: scalar(a, e), known: a.known };
      }
    }
    case 'bin': {
      const a = evaluate(e.a, env);
      const b = evaluate(e.b, env);
      return binary(e.op, a, b, e.pos);
    }
  }
}

function scalar(a: Value, e: { pos: SourcePos; op: string }): Reloc {
  if (!isPlain(a.reloc)) throw new AsmError(e.pos, `operator '${e.op}' needs a plain number, not an address`);
  return NO_RELOC;
}

function binary(op: string, a: Value, b: Value, pos: SourcePos): Value {
  const known = a.known && b.known;
  const plain = (v: bigint): Value => {
    if (!isPlain(a.reloc) || !isPlain(b.reloc)) throw new AsmError(pos, `operator '${op}' needs plain numbers, not addresses`);
    return { v: u64(v), reloc: NO_RELOC, known };
  };
  const sa = s64(a.v);
  const sb = s64(b.v);
  const divisor = (v: bigint): bigint => {
    if (v === 0n) {
      if (known) throw new AsmError(pos, 'division by zero');
      return 1n; // a forward reference may still be zero in this pass
    }
    return v;
  };
  switch (op) {
    case '+': return { v: u64(a.v + b.v), reloc: combine(a.reloc, b.reloc, 1), known };
    case '-': return { v: u64(a.v - b.v), reloc: combine(a.reloc, b.reloc, -1), known };
    case '*':
      if (!isPlain(a.reloc) && !isPlain(b.reloc)) throw new AsmError(pos, 'cannot multiply two addresses');
      return { v: u64(a.v * b.v), reloc: isPlain(a.reloc) ? scale(b.reloc, sa) : scale(a.reloc, sb), known };
    case '/': return plain(a.v / divisor(b.v));
    case '//': return plain(sa / divisor(sb));
    case '%': return plain(a.v % divisor(b.v));
    case '%%': return plain(sa % divisor(sb));
    case '<<':
    case '<<<': return plain(b.v >= 64n ? 0n : a.v << b.v);
    case '>>': return plain(b.v >= 64n ? 0n : a.v >> b.v);
    case '>>>': return plain(b.v >= 64n ? (sa < 0n ? -1n : 0n) : sa >> b.v);
    case '&': return plain(a.v & b.v);
    case '|': return plain(a.v | b.v);
    case '^': return plain(a.v ^ b.v);
    case '&&': return plain(a.v !== 0n && b.v !== 0n ? 1n : 0n);
    case '||': return plain(a.v !== 0n || b.v !== 0n ? 1n : 0n);
    case '^^': return plain((a.v !== 0n) !== (b.v !== 0n) ? 1n : 0n);
    case '=':
    case '==': return { v: a.v === b.v && sameReloc(a.reloc, b.reloc) ? 1n : 0n, reloc: NO_RELOC, known };
    case '<>':
    case '!=': return { v: a.v !== b.v || !sameReloc(a.reloc, b.reloc) ? 1n : 0n, reloc: NO_RELOC, known };
    case '<': return plain(sa < sb ? 1n : 0n);
    case '<=': return plain(sa <= sb ? 1n : 0n);
    case '>': return plain(sa > sb ? 1n : 0n);
    case '>=': return plain(sa >= sb ? 1n : 0n);
    case '<=>': return plain(sa < sb ? -1n : sa > sb ? 1n : 0n);
  }
  throw new AsmError(pos, `unknown operator '${op}'`);
}

/** Splits `[base + index*scale + disp]` into register terms and the register-free rest. */
export interface Linear {
  readonly regs: { reg: RegInfo; coeff: Expr; pos: SourcePos }[];
  readonly disp: Expr | undefined;
}

export function linearize(e: Expr): Linear {
  const regs: Linear['regs'] = [];
  const rest: Expr[] = [];
  const walk = (x: Expr, sign: 1 | -1, factor: Expr | undefined): void => {
    if (x.k === 'reg') {
      if (sign < 0) throw new AsmError(x.pos, `a register cannot be subtracted in an address`);
      regs.push({ reg: x.reg, coeff: factor ?? { k: 'num', v: 1n }, pos: x.pos });
      return;
    }
    if (!containsReg(x)) {
      let term = factor ? { k: 'bin' as const, op: '*', a: x, b: factor, pos: posOf(x) } : x;
      if (sign < 0) term = { k: 'un', op: '-', a: term, pos: posOf(x) };
      rest.push(term);
      return;
    }
    if (x.k === 'bin' && (x.op === '+' || x.op === '-')) {
      walk(x.a, sign, factor);
      walk(x.b, x.op === '-' ? (sign === 1 ? -1 : 1) : sign, factor);
      return;
    }
    if (x.k === 'un' && x.op === '+') return walk(x.a, sign, factor);
    if (x.k === 'bin' && x.op === '*') {
      const [regSide, k] = containsReg(x.a) ? [x.a, x.b] : [x.b, x.a];
      if (containsReg(k)) throw new AsmError(x.pos, `cannot multiply two registers in an address`);
      const f: Expr = factor ? { k: 'bin', op: '*', a: k, b: factor, pos: x.pos } : k;
      return walk(regSide, sign, f);
    }
    throw new AsmError(posOf(x), `invalid effective address: registers may only be added or scaled by a constant`);
  };
  walk(e, 1, undefined);
  const disp = rest.reduce<Expr | undefined>((acc, t) => (acc ? { k: 'bin', op: '+', a: acc, b: t, pos: posOf(t) } : t), undefined);
  return { regs, disp };
}

function containsReg(e: Expr): boolean {
  switch (e.k) {
    case 'reg': return true;
    case 'un': return containsReg(e.a);
    case 'bin': return containsReg(e.a) || containsReg(e.b);
    case 'cond': return containsReg(e.c) || containsReg(e.a) || containsReg(e.b);
    default: return false;
  }
}

function posOf(e: Expr): SourcePos {
  return 'pos' in e ? e.pos : { file: '', line: 0, col: 0 };
}

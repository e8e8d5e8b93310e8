// Expressions the Debug Console, watches, breakpoint conditions and logpoints evaluate on a vCPU:
// registers (`rax`, `eax`, `rip`, `cr3`), numbers, program labels, `+ - * & |`, comparisons, and
// memory operands in the assembler's syntax (`[rsp+8]`, `dword [counter]`, `qword [0xfee00030]`).
// Memory is read through the debugger's side-effect-free page walk: RAM only, never MMIO.
// Hand-written: the grammar is a few lines of NASM operand syntax.

import type { AsmSymbol } from '../asm/assembler';
import { peekLinear } from '../machine/cpu/peek';
import type { Machine } from '../machine/machine';

export type EvalResult = { readonly value: bigint; readonly text: string; readonly memoryReference?: string } | { readonly error: string };

const GPR64 = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];
const GPR32 = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi', 'r8d', 'r9d', 'r10d', 'r11d', 'r12d', 'r13d', 'r14d', 'r15d'];
const GPR16 = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'];
const GPR8 = ['al', 'cl', 'dl', 'bl'];
const SIZES: Readonly<Record<string, number>> = { byte: 1, word: 2, dword: 4, qword: 8 };

/** `col`: 1-based column, for errors */
type Tok = ({ kind: 'num'; v: bigint } | { kind: 'id'; v: string } | { kind: 'op'; v: string } | { kind: 'end' }) & { col: number };

function tokenize(text: string): Tok[] | string {
  const out: Tok[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) { i++; continue; }
    const num = /^(0x[0-9a-f_]+|[0-9][0-9_]*h?|[0-9a-f_]+h)/i.exec(text.slice(i));
    if (/[0-9]/.test(c) && num) {
      let t = num[0].replace(/_/g, '');
      if (/h$/i.test(t)) t = '0x' + t.slice(0, -1);
      out.push({ kind: 'num', v: BigInt(t), col: i + 1 });
      i += num[0].length;
      continue;
    }
    const id = /^[A-Za-z_.$][A-Za-z0-9_.$]*/.exec(text.slice(i));
    if (id) {
      out.push({ kind: 'id', v: id[0], col: i + 1 });
      i += id[0].length;
      continue;
    }
    const op = /^(==|!=|<=|>=|&&|\|\||<<|>>|[-+*&|^~()[\]<>!])/.exec(text.slice(i));
    if (!op) return `unexpected '${c}' at column ${i + 1}`;
    out.push({ kind: 'op', v: op[0], col: i + 1 });
    i += op[0].length;
  }
  out.push({ kind: 'end', col: text.length + 1 });
  return out;
}

class EvalError extends Error {}

/** Evaluates `text` on `vcpu`; `symbols` are the program's labels and equates. */
export function evaluateExpression(m: Machine, vcpu: number, text: string, symbols: readonly AsmSymbol[]): EvalResult {
  const toks = tokenize(text);
  if (typeof toks === 'string') return { error: toks };
  let p = 0;
  const cpu = m.cpus[vcpu];
  let memRef: bigint | undefined;
  const peek = () => toks[p];
  const isOp = (v: string) => peek().kind === 'op' && (peek() as { v: string }).v === v;
  const expect = (v: string) => {
    if (!isOp(v)) throw new EvalError(`expected '${v}' at column ${peek().col}`);
    p++;
  };

  const register = (name: string): bigint | undefined => {
    const n = name.toLowerCase();
    let i = GPR64.indexOf(n);
    if (i >= 0) return cpu.reg64(i);
    i = GPR32.indexOf(n);
    if (i >= 0) return cpu.reg64(i) & 0xffffffffn;
    i = GPR16.indexOf(n);
    if (i >= 0) return cpu.reg64(i) & 0xffffn;
    i = GPR8.indexOf(n);
    if (i >= 0) return cpu.reg64(i) & 0xffn;
    switch (n) {
      case 'rip': return cpu.rip64();
      case 'rflags': case 'eflags': return BigInt(cpu.getRflags());
      case 'cr0': return BigInt(cpu.cr0 >>> 0);
      case 'cr2': return BigInt.asUintN(64, BigInt(cpu.cr2));
      case 'cr3': return BigInt(cpu.cr3);
      case 'cr4': return BigInt(cpu.cr4 >>> 0);
      case 'cr8': return BigInt(m.getCr8(cpu));
      case 'efer': return BigInt(cpu.efer >>> 0);
      default: return undefined;
    }
  };

  const memory = (size: number): bigint => {
    expect('[');
    const addr = BigInt.asUintN(64, orExpr());
    expect(']');
    const { bytes, readable } = peekLinear(cpu, addr, size);
    if (readable < size) {
      throw new EvalError(`0x${addr.toString(16)}: not readable RAM (the debugger never reads MMIO: the APIC page is in the Local APIC scope)`);
    }
    let v = 0n;
    for (let k = size - 1; k >= 0; k--) v = (v << 8n) | BigInt(bytes[k]);
    memRef ??= addr;
    return v;
  };

  const primary = (): bigint => {
    const t = peek();
    if (t.kind === 'num') {
      p++;
      return t.v;
    }
    if (t.kind === 'op' && t.v === '(') {
      p++;
      const v = orExpr();
      expect(')');
      return v;
    }
    if (t.kind === 'op' && t.v === '[') return memory(8);
    if (t.kind === 'op' && (t.v === '-' || t.v === '~' || t.v === '!')) {
      p++;
      const v = primary();
      return t.v === '-' ? -v : t.v === '~' ? ~v : v === 0n ? 1n : 0n;
    }
    if (t.kind === 'id') {
      p++;
      const size = SIZES[t.v.toLowerCase()];
      if (size !== undefined && isOp('[')) return memory(size);
      const r = register(t.v);
      if (r !== undefined) return r;
      const s = symbols.find((x) => x.name === t.v);
      if (s) return s.value;
      throw new EvalError(`'${t.v}' at column ${t.col} is not a register or a label of the program`);
    }
    throw new EvalError(t.kind === 'end' ? `the expression ends too early at column ${t.col}` : `unexpected '${t.v}' at column ${t.col}`);
  };

  const binary = (next: () => bigint, ops: readonly string[], apply: (op: string, a: bigint, b: bigint) => bigint) => (): bigint => {
    let v = next();
    for (;;) {
      const t = peek();
      if (t.kind !== 'op' || !ops.includes(t.v)) return v;
      p++;
      v = apply(t.v, v, next());
    }
  };
  const mul = binary(primary, ['*'], (_, a, b) => a * b);
  const add = binary(mul, ['+', '-'], (op, a, b) => (op === '+' ? a + b : a - b));
  const shift = binary(add, ['<<', '>>'], (op, a, b) => (op === '<<' ? a << b : BigInt.asUintN(64, a) >> b));
  const and = binary(shift, ['&'], (_, a, b) => a & b);
  const xor = binary(and, ['^'], (_, a, b) => a ^ b);
  const bor = binary(xor, ['|'], (_, a, b) => a | b);
  const cmp = binary(bor, ['==', '!=', '<', '<=', '>', '>='], (op, a, b) => {
    const x = BigInt.asUintN(64, a);
    const y = BigInt.asUintN(64, b);
    const r = op === '==' ? x === y : op === '!=' ? x !== y : op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y;
    return r ? 1n : 0n;
  });
  const land = binary(cmp, ['&&'], (_, a, b) => (a !== 0n && b !== 0n ? 1n : 0n));
  const orExpr: () => bigint = binary(land, ['||'], (_, a, b) => (a !== 0n || b !== 0n ? 1n : 0n));

  try {
    const v = BigInt.asUintN(64, orExpr());
    const rest = peek();
    if (rest.kind !== 'end') throw new EvalError(`unexpected '${rest.v}' at column ${rest.col}, after the expression`);
    const text64 = '0x' + v.toString(16).padStart(16, '0');
    return { value: v, text: `${text64} (${v})`, ...(memRef !== undefined ? { memoryReference: '0x' + memRef.toString(16) } : {}) };
  } catch (e) {
    if (e instanceof EvalError) return { error: e.message };
    throw e;
  }
}

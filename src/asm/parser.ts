// Parser: one logical line (tokens from the preprocessor) -> statements. Local labels (`.x`)
// are qualified with the last non-local label here, so the passes only see full names.

import { SIZE_KEYWORDS, type DataItem, type DataStmt, type InsnStmt, type MemOperand, type Operand, type ReserveStmt, type Size, type Statement } from './ast';
import { AsmError, type SourcePos } from './diagnostics';
import { Cursor, linearize, parseExpr, type ExprContext } from './expr';
import type { Token } from './lexer';
import { DATA_DIRECTIVES, isKeyword, isMnemonic, PREFIXES, RESERVE_DIRECTIVES, UNSUPPORTED } from './mnemonics';
import { lookupRegister } from './registers';

export interface ParseWarning {
  readonly pos: SourcePos;
  readonly message: string;
}

export class Parser {
  /** the last non-local label, for `.local` names */
  private scope = '';
  readonly warnings: ParseWarning[] = [];

  /** Parses one line; throws AsmError (caught by the caller) on a syntax error. */
  parseLine(tokens: readonly Token[], file: string, line: number, lineLength: number): Statement[] {
    const c = new Cursor(tokens, file, line, lineLength + 1);
    const out: Statement[] = [];
    if (c.atEnd()) return out;

    // [bits 64], [section .data], [org x], [default rel]: NASM's primitive directive form
    if (c.isOp('[') && c.peek(1)?.kind === 'id' && ['bits', 'section', 'segment', 'org', 'default'].includes(c.peek(1)!.text.toLowerCase())) {
      const close = tokens.findIndex((t) => t.kind === 'op' && t.text === ']');
      if (close !== tokens.length - 1) c.fail(`expected ']' at the end of the directive`);
      return this.parseLine(tokens.slice(1, -1), file, line, lineLength);
    }

    const first = c.peek()!;
    if (first.kind === 'id' && !isKeyword(first.text) && !lookupRegister(first.text)) {
      const colon = c.isOp(':', 1);
      const nextTok = c.peek(colon ? 2 : 1);
      if (nextTok && nextTok.kind === 'id' && nextTok.text.toLowerCase() === 'equ') {
        c.i += colon ? 3 : 2;
        const name = this.defineName(first.text, c.pos(first), false);
        const value = parseExpr(c, this.exprContext(false));
        this.expectEnd(c);
        out.push({ kind: 'equ', name, value, pos: c.pos(first) });
        return out;
      }
      if (colon || !nextTok || (nextTok.kind === 'id' && isKeyword(nextTok.text))) {
        c.i += colon ? 2 : 1;
        if (!colon && !nextTok) this.warnings.push({ pos: c.pos(first), message: `label '${first.text}' alone on a line without a colon might be in error` });
        out.push({ kind: 'label', name: this.defineName(first.text, c.pos(first), true), pos: c.pos(first) });
        if (c.atEnd()) return out;
      } else {
        c.fail(`unknown mnemonic '${first.text}'`, first);
      }
    }
    const body = this.parseBody(c);
    if (body) out.push(body);
    return out;
  }

  private defineName(name: string, pos: SourcePos, isLabel: boolean): string {
    if (name.startsWith('..@')) return name;
    if (name.startsWith('..')) throw new AsmError(pos, `'${name}': names starting with '..' are reserved`);
    if (name.startsWith('.')) {
      if (this.scope === '') throw new AsmError(pos, `local label '${name}' has no preceding non-local label`);
      return this.scope + name;
    }
    if (isLabel) this.scope = name;
    return name;
  }

  private exprContext(allowRegisters: boolean): ExprContext {
    return {
      allowRegisters,
      qualify: (name) => (name.startsWith('.') && !name.startsWith('..') && this.scope !== '' ? this.scope + name : name),
    };
  }

  private expectEnd(c: Cursor): void {
    if (!c.atEnd()) c.fail(`unexpected '${c.peek()!.text}' after the end of the statement`);
  }

  /** undefined: a directive with no effect on the image (`bits 64`, `global`) */
  private parseBody(c: Cursor): Statement | undefined {
    const t = c.peek();
    if (!t) c.fail('expected an instruction or directive at end of line');
    if (t.kind !== 'id') c.fail(`expected an instruction or directive, found '${t.text}'`, t);
    const word = t.text.toLowerCase();
    const pos = c.pos(t);

    if (word === 'times') {
      c.next();
      const count = parseExpr(c, this.exprContext(false));
      const body = this.parseBody(c);
      if (!body || body.kind !== 'insn' && body.kind !== 'data' && body.kind !== 'reserve') c.fail(`'times' can only repeat an instruction or data`, t);
      return { kind: 'times', count, body, pos };
    }
    if (word in DATA_DIRECTIVES) {
      c.next();
      return this.parseData(c, DATA_DIRECTIVES[word], pos);
    }
    if (word in RESERVE_DIRECTIVES) {
      c.next();
      const count = parseExpr(c, this.exprContext(false));
      this.expectEnd(c);
      return { kind: 'reserve', width: RESERVE_DIRECTIVES[word], count, pos } satisfies ReserveStmt;
    }
    switch (word) {
      case 'align':
      case 'alignb': {
        c.next();
        const boundary = parseExpr(c, this.exprContext(false));
        let fill: InsnStmt | DataStmt | undefined;
        if (c.isOp(',')) {
          c.next();
          const f = this.parseBody(c);
          if (!f || (f.kind !== 'insn' && f.kind !== 'data' && !(f.kind === 'reserve' && word === 'alignb'))) c.fail(`the fill of '${word}' must be an instruction or data`, t);
          if (f.kind !== 'reserve') fill = f;
        }
        this.expectEnd(c);
        return { kind: 'align', boundary, reserve: word === 'alignb', fill, pos };
      }
      case 'section':
      case 'segment': {
        c.next();
        const nameTok = c.next();
        if (!nameTok || nameTok.kind !== 'id') c.fail(`'${word}' needs a section name`, nameTok);
        let align: number | undefined;
        let nobits: boolean | undefined;
        while (!c.atEnd()) {
          const a = c.next()!;
          const attr = a.text.toLowerCase();
          if (attr === 'align' && c.isOp('=')) {
            c.next();
            const v = c.next();
            if (!v || v.kind !== 'num' || v.value === 0n || (v.value & (v.value - 1n)) !== 0n) c.fail(`section alignment must be a power of two`, v);
            align = Number(v.value);
          } else if (attr === 'progbits') nobits = false;
          else if (attr === 'nobits') nobits = true;
          else c.fail(`unsupported section attribute '${a.text}' (supported: align=N, progbits, nobits)`, a);
        }
        return { kind: 'section', name: nameTok.text, align, nobits, pos };
      }
      case 'bits':
      case 'use64': {
        c.next();
        if (word === 'bits') {
          const v = c.next();
          if (!v || v.kind !== 'num' || v.value !== 64n) c.fail(`only 'bits 64' is supported: guests start in 64-bit mode`, v ?? t);
        }
        this.expectEnd(c);
        return undefined;
      }
      case 'default': {
        c.next();
        const v = c.next();
        const mode = v?.kind === 'id' ? v.text.toLowerCase() : '';
        if (mode !== 'rel' && mode !== 'abs') c.fail(`'default' takes 'rel' or 'abs'`, v ?? t);
        this.expectEnd(c);
        return { kind: 'default', rel: mode === 'rel', pos };
      }
      case 'org': {
        c.next();
        const value = parseExpr(c, this.exprContext(false));
        this.expectEnd(c);
        return { kind: 'org', value, pos };
      }
      case 'global':
      case 'static':
      case 'common':
      case 'cpu': {
        c.next();
        const arg = c.peek();
        if (!arg || (arg.kind !== 'id' && !(word === 'cpu' && arg.kind === 'num'))) {
          c.fail(word === 'cpu' ? `'cpu' needs a CPU name` : `identifier expected after '${word}'`, arg ?? t);
        }
        c.i = c.toks.length; // meaningless in a flat binary; accepted as NASM does
        return undefined;
      }
      case 'extern':
        c.fail(`'extern' cannot be used: a flat binary has no linker`, t);
      // falls through (fail throws)
      case 'equ':
        c.fail(`'equ' needs a label before it`, t);
    }
    if (UNSUPPORTED.has(word)) c.fail(`'${t.text}' is not supported by this assembler`, t);
    return this.parseInstruction(c);
  }

  private parseData(c: Cursor, width: 1 | 2 | 4 | 8, pos: SourcePos): DataStmt {
    const items: DataItem[] = [];
    if (c.atEnd()) c.fail(`'${['', 'db', 'dw', '', 'dd', '', '', '', 'dq'][width]}' needs at least one value`);
    for (;;) {
      const t = c.peek();
      if (!t) c.fail('expected a value');
      const after = c.peek(1);
      if (t.kind === 'str' && (!after || (after.kind === 'op' && after.text === ','))) {
        c.next();
        items.push({ kind: 'str', bytes: t.bytes, pos: c.pos(t) });
      } else {
        items.push({ kind: 'expr', value: parseExpr(c, this.exprContext(false)), pos: c.pos(t) });
      }
      if (c.atEnd()) break;
      c.expectOp(',');
      if (c.atEnd()) c.fail(`expected a value after ','`);
    }
    return { kind: 'data', width, items, pos };
  }

  private parseInstruction(c: Cursor): InsnStmt {
    const prefixes: { name: 'lock' | 'rep' | 'repe' | 'repne'; pos: SourcePos }[] = [];
    while (c.peek()?.kind === 'id' && c.peek()!.text.toLowerCase() in PREFIXES) {
      const p = c.next()!;
      prefixes.push({ name: PREFIXES[p.text.toLowerCase()], pos: c.pos(p) });
    }
    const t = c.peek();
    if (!t) {
      c.fail(`a prefix needs an instruction after it`);
    }
    if (t.kind !== 'id' || !isMnemonic(t.text)) {
      if (t.kind === 'id' && UNSUPPORTED.has(t.text.toLowerCase())) c.fail(`'${t.text}' is not supported by this assembler`, t);
      c.fail(t.kind === 'id' ? `unknown mnemonic '${t.text}'` : `expected an instruction, found '${t.text}'`, t);
    }
    c.next();
    const operands: Operand[] = [];
    if (!c.atEnd()) {
      for (;;) {
        operands.push(this.parseOperand(c));
        if (c.atEnd()) break;
        c.expectOp(',');
        if (c.atEnd()) c.fail(`expected an operand after ','`);
      }
    }
    return { kind: 'insn', prefixes, mnemonic: t.text.toLowerCase(), operands, pos: c.pos(t) };
  }

  private parseOperand(c: Cursor): Operand {
    const start = c.peek();
    if (!start) c.fail('expected an operand');
    let size: Size | undefined;
    let strict = false;
    let jump: 'short' | 'near' | undefined;
    for (;;) {
      const t = c.peek();
      if (!t || t.kind !== 'id') break;
      const w = t.text.toLowerCase();
      if (w in SIZE_KEYWORDS) {
        if (size !== undefined) c.fail(`two size keywords on one operand`, t);
        size = SIZE_KEYWORDS[w];
        if (size > 8) c.fail(`'${t.text}' operands are not supported`, t);
      } else if (w === 'strict') strict = true;
      else if (w === 'short' || w === 'near') jump = w;
      else if (w === 'far') c.fail(`far jumps and calls are not supported`, t);
      else break;
      c.next();
    }
    const pos = c.pos(start);
    if (c.isOp('[')) {
      if (jump) c.fail(`'${jump}' applies to a jump target, not to a memory operand`, start);
      if (strict) c.fail(`'strict' applies to immediates`, start);
      return this.parseMemory(c, size, pos);
    }
    const e = parseExpr(c, this.exprContext(true));
    if (e.k === 'reg') {
      if (size !== undefined && size !== e.reg.size && e.reg.kind === 'gpr') c.fail(`'${e.reg.name}' is a ${e.reg.size * 8}-bit register; the size keyword says ${size * 8}`, start);
      if (strict || jump) c.fail(`'${strict ? 'strict' : jump}' cannot apply to a register`, start);
      return { kind: 'reg', reg: e.reg, pos };
    }
    const lin = linearize(e);
    if (lin.regs.length > 0) throw new AsmError(lin.regs[0].pos, `a register in an expression must be inside [ ] (a memory operand)`);
    return { kind: 'imm', value: e, size, strict, jump, pos };
  }

  private parseMemory(c: Cursor, size: Size | undefined, pos: SourcePos): MemOperand {
    c.expectOp('[');
    let rel: boolean | undefined;
    let dispSize: Size | undefined;
    let segment;
    for (;;) {
      const t = c.peek();
      if (!t || t.kind !== 'id') break;
      const w = t.text.toLowerCase();
      if (w === 'rel' || w === 'abs') rel = w === 'rel';
      else if (w in SIZE_KEYWORDS) dispSize = SIZE_KEYWORDS[w];
      else if (w === 'nosplit') c.fail(`'nosplit' is not supported`, t);
      else {
        const r = lookupRegister(w);
        if (r && r.kind === 'seg' && c.isOp(':', 1)) {
          segment = r;
          c.i += 2;
          continue;
        }
        break;
      }
      c.next();
    }
    const e = parseExpr(c, this.exprContext(true));
    c.expectOp(']');
    const lin = linearize(e);
    for (const r of lin.regs) {
      if (r.reg.kind !== 'gpr' || (r.reg.size !== 8 && r.reg.size !== 4)) {
        throw new AsmError(r.pos, r.reg.size === 4 || r.reg.size === 8 ? `'${r.reg.name}' cannot be used in an address` : `'${r.reg.name}': only 64-bit (or 32-bit) registers can form an address`);
      }
    }
    if (dispSize !== undefined && dispSize !== 1 && dispSize !== 4 && dispSize !== 8) c.fail(`a displacement can be 'byte', 'dword' or 'qword'`);
    return { kind: 'mem', size, regs: lin.regs, disp: lin.disp, rel, segment, dispSize, pos };
  }
}

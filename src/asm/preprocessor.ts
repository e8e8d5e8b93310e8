// The preprocessor subset: %define/%xdefine/%undef (object- and function-like single-line
// macros), %include with the search path of contracts/guest.md, %ifdef/%ifndef/%else/%endif,
// %error/%warning. Output is a list of logical lines, each knowing the file and line it came
// from, so the line table and diagnostics point through %include into the right file.

import { DiagnosticSink, type SourcePos } from './diagnostics';
import { lexLine, type Token } from './lexer';
import { dirname, join } from './paths';

/** How the assembler reads files; injected so that the same code runs in Node and in a browser. */
export interface FileReader {
  /** The file's text, or undefined when it does not exist. */
  readFile(path: string): string | undefined;
}

export interface LogicalLine {
  readonly file: string;
  readonly line: number;
  readonly text: string;
  readonly tokens: readonly Token[];
  /** 0 for the main file, 1 inside a first-level %include, ... */
  readonly depth: number;
}

interface Macro {
  readonly params: readonly string[] | undefined;
  readonly body: readonly Token[];
}

const MAX_INCLUDE_DEPTH = 32;
const MAX_EXPANSIONS = 10000;

export class Preprocessor {
  private readonly macros = new Map<string, Macro>();
  readonly lines: LogicalLine[] = [];
  /** Every file read, in order (the main file first). */
  readonly files: string[] = [];

  constructor(
    private readonly reader: FileReader,
    private readonly includeDirs: readonly string[],
    private readonly diags: DiagnosticSink,
  ) {}

  define(name: string, value: string): void {
    this.macros.set(name, { params: undefined, body: lexLine(value).tokens });
  }

  run(file: string, text: string): void {
    this.processFile(file, text, 0);
  }

  private processFile(file: string, text: string, depth: number): void {
    this.files.push(file);
    const raw = text.split('\n');
    // (is this branch active, has an earlier branch of this %if been taken, where it started)
    const conds: { active: boolean; taken: boolean; pos: SourcePos }[] = [];
    const active = () => conds.every((c) => c.active);
    for (let idx = 0; idx < raw.length; idx++) {
      let lineText = raw[idx].replace(/\r$/, '');
      const lineNo = idx + 1;
      // NASM joins a line ending in a backslash with the next one
      while (lineText.endsWith('\\') && idx + 1 < raw.length) {
        lineText = lineText.slice(0, -1) + raw[++idx].replace(/\r$/, '');
      }
      const lex = lexLine(lineText);
      const pos = (col: number): SourcePos => ({ file, line: lineNo, col });
      const toks = lex.tokens;
      const directive = toks.length >= 2 && toks[0].kind === 'op' && toks[0].text === '%' &&
        toks[1].kind === 'id' && toks[1].col === toks[0].col + 1 ? toks[1].text.toLowerCase() : undefined;

      const keep = () => this.lines.push({ file, line: lineNo, text: lineText, tokens: [], depth });
      if (directive !== undefined && ['ifdef', 'ifndef', 'else', 'endif', 'elifdef', 'elifndef'].includes(directive)) {
        if (active()) keep();
        const arg = toks[2];
        const name = arg && arg.kind === 'id' ? arg.text : undefined;
        if ((directive !== 'else' && directive !== 'endif') && name === undefined) {
          this.diags.error(pos(toks[1].col), `%${directive} needs a macro name`);
          continue;
        }
        if (directive === 'ifdef' || directive === 'ifndef') {
          const cond = this.macros.has(name!) === (directive === 'ifdef');
          conds.push({ active: cond, taken: cond, pos: pos(toks[0].col) });
        } else if (conds.length === 0) {
          this.diags.error(pos(toks[0].col), `%${directive} without a matching %ifdef/%ifndef`);
        } else {
          const top = conds[conds.length - 1];
          if (directive === 'endif') conds.pop();
          else if (directive === 'else') {
            top.active = !top.taken;
            top.taken = true;
          } else {
            const cond = this.macros.has(name!) === (directive === 'elifdef');
            top.active = !top.taken && cond;
            top.taken = top.taken || cond;
          }
        }
        continue;
      }
      if (!active()) continue;
      if (lex.error) {
        this.diags.error(pos(lex.error.col), lex.error.message);
        keep();
        continue;
      }
      if (directive !== undefined) {
        keep(); // listed as written; an %include's lines follow it
        this.directive(directive, toks, pos, file, depth);
        continue;
      }
      if (toks.length > 0 && toks[0].kind === 'op' && toks[0].text === '%') {
        this.diags.error(pos(toks[0].col), `expected a preprocessor directive after '%'`);
        keep();
        continue;
      }
      const expanded = this.expand(toks, pos);
      this.lines.push({ file, line: lineNo, text: lineText, tokens: expanded ?? [], depth });
    }
    for (const c of conds) this.diags.error(c.pos, `%if block is not closed by %endif before the end of the file`);
  }

  private directive(name: string, toks: readonly Token[], pos: (col: number) => SourcePos, file: string, depth: number): void {
    const at = pos(toks[0].col);
    switch (name) {
      case 'define':
      case 'xdefine':
      case 'idefine':
      case 'xidefine': {
        const nameTok = toks[2];
        if (!nameTok || nameTok.kind !== 'id') {
          this.diags.error(at, `%${name} needs a macro name`);
          return;
        }
        let i = 3;
        let params: string[] | undefined;
        const open = toks[3];
        if (open && open.kind === 'op' && open.text === '(' && open.col === nameTok.col + nameTok.text.length) {
          params = [];
          i = 4;
          while (i < toks.length && !(toks[i].kind === 'op' && toks[i].text === ')')) {
            const p = toks[i];
            if (p.kind !== 'id') {
              this.diags.error(pos(p.col), `macro parameter must be a name`);
              return;
            }
            params.push(p.text);
            i++;
            const sep = toks[i];
            if (sep && sep.kind === 'op' && sep.text === ',') i++;
          }
          if (i >= toks.length) {
            this.diags.error(pos(open.col), `macro parameter list is not closed`);
            return;
          }
          i++;
        }
        let body = toks.slice(i);
        if (name.startsWith('x')) body = this.expand(body, pos) ?? [];
        if (name.includes('i')) this.diags.warning(at, `%${name} is treated as case-sensitive`);
        this.macros.set(nameTok.text, { params, body });
        return;
      }
      case 'undef': {
        const nameTok = toks[2];
        if (!nameTok || nameTok.kind !== 'id') this.diags.error(at, `%undef needs a macro name`);
        else this.macros.delete(nameTok.text);
        return;
      }
      case 'include': {
        const arg = toks[2];
        let target: string | undefined;
        if (arg && arg.kind === 'str' && arg.quote !== '`') target = arg.text.slice(1, -1);
        else if (arg && arg.kind === 'op' && arg.text === '<') {
          const close = toks.findIndex((t, k) => k > 2 && t.kind === 'op' && t.text === '>');
          if (close > 0) target = toks.slice(3, close).map((t) => t.text).join('');
        }
        if (target === undefined || target === '') {
          this.diags.error(at, `%include needs a file name in quotes`);
          return;
        }
        if (depth + 1 > MAX_INCLUDE_DEPTH) {
          this.diags.error(at, `%include nested deeper than ${MAX_INCLUDE_DEPTH} levels (recursive include?)`);
          return;
        }
        for (const dir of [dirname(file), ...this.includeDirs]) {
          const path = join(dir, target);
          const text = this.reader.readFile(path);
          if (text !== undefined) {
            this.processFile(path, text, depth + 1);
            return;
          }
        }
        this.diags.error(pos(arg.col), `unable to open include file '${target}' (searched ${[dirname(file), ...this.includeDirs].join(', ')})`);
        return;
      }
      case 'error':
      case 'warning': {
        const msg = toks.slice(2).map((t) => (t.kind === 'str' ? t.text.slice(1, -1) : t.text)).join(' ');
        if (name === 'error') this.diags.error(at, msg || '%error');
        else this.diags.warning(at, msg || '%warning');
        return;
      }
      default:
        this.diags.error(pos(toks[1].col), `unsupported preprocessor directive '%${name}' (supported: %define, %xdefine, %undef, %include, %ifdef, %ifndef, %elifdef, %elifndef, %else, %endif, %error, %warning)`);
    }
  }

  /** Expands single-line macros; undefined (after a diagnostic) when an invocation is malformed. */
  private expand(toks: readonly Token[], pos: (col: number) => SourcePos): Token[] | undefined {
    let budget = MAX_EXPANSIONS;
    const go = (input: readonly Token[], active: ReadonlySet<string>, col: number | undefined): Token[] | undefined => {
      const out: Token[] = [];
      for (let i = 0; i < input.length; i++) {
        const t = input[i];
        const m = t.kind === 'id' ? this.macros.get(t.text) : undefined;
        if (!m || active.has(t.kind === 'id' ? t.text : '')) {
          out.push(col === undefined ? t : { ...t, col });
          continue;
        }
        if (--budget < 0) {
          this.diags.error(pos(t.col), `macro expansion does not terminate`);
          return undefined;
        }
        const name = (t as { text: string }).text;
        const here = col ?? t.col;
        let body = m.body;
        if (m.params !== undefined) {
          const next = input[i + 1];
          if (!next || next.kind !== 'op' || next.text !== '(') {
            out.push(col === undefined ? t : { ...t, col }); // a function-like macro name alone is left as is, as NASM does
            continue;
          }
          const args: Token[][] = [[]];
          let level = 0;
          let j = i + 2;
          for (; j < input.length; j++) {
            const a = input[j];
            if (a.kind === 'op' && a.text === '(') level++;
            if (a.kind === 'op' && a.text === ')') {
              if (level === 0) break;
              level--;
            }
            if (a.kind === 'op' && a.text === ',' && level === 0) args.push([]);
            else args[args.length - 1].push(a);
          }
          if (j >= input.length) {
            this.diags.error(pos(next.col), `macro '${name}' invocation is missing ')'`);
            return undefined;
          }
          if (args.length === 1 && args[0].length === 0 && m.params.length === 0) args.pop();
          if (args.length !== m.params.length) {
            this.diags.error(pos(t.col), `macro '${name}' takes ${m.params.length} parameter(s), got ${args.length}`);
            return undefined;
          }
          const params = m.params;
          body = m.body.flatMap((b) => {
            const k = b.kind === 'id' ? params.indexOf(b.text) : -1;
            return k >= 0 ? args[k] : [b];
          });
          i = j;
        }
        const inner = go(body, new Set([...active, name]), here);
        if (inner === undefined) return undefined;
        out.push(...inner);
      }
      return out;
    };
    return go(toks, new Set(), undefined);
  }
}

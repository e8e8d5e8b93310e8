// The guest assembler: NASM-syntax source -> flat image laid out as `nasm -f bin` lays it out,
// with a symbol table, a line table and a listing. Passes repeat with the previous pass's
// symbol values until nothing moves (branches start short and grow, as NASM's optimizer
// does); the last pass reports diagnostics. No input makes it throw.

import type { AlignStmt, DataStmt, InsnStmt, ReserveStmt, Statement } from './ast';
import { AsmError, DiagnosticSink, type Diagnostic, type SourcePos } from './diagnostics';
import { encodeInstruction } from './encoder';
import { FORMS } from './forms.generated';
import { address, constant, evaluate, isPlain, s64, sameReloc, type EvalEnv, type Expr, type Value } from './expr';
import { LineTable, type LineEntry } from './line-table';
import { Parser } from './parser';
import { Preprocessor, type FileReader, type LogicalLine } from './preprocessor';

export const DEFAULT_ORG = 0x100000n;
/** contracts/guest.md: the image and its .bss end below 16 MiB, so no section can be larger */
const MAX_SECTION_SIZE = 0x100_0000n;
const MAX_PASSES = 100;
/** after this many passes, a jump that once needed rel32 keeps it, so that the passes settle */
const MONOTONIC_AFTER = 20;

export interface AssembleOptions {
  /** path of the main source, as diagnostics should name it */
  readonly file: string;
  readonly text: string;
  readonly reader: FileReader;
  /** searched after the source's own folder: -I folders, then the bundled include folder */
  readonly includeDirs?: readonly string[];
  /** `_start` must be the image's first byte (contracts/guest.md); default true */
  readonly requireStart?: boolean;
}

export interface AsmSymbol {
  readonly name: string;
  readonly value: bigint;
  readonly kind: 'label' | 'equ';
  /** for labels */
  readonly section?: string;
  readonly file: string;
  readonly line: number;
}

export interface SectionInfo {
  readonly name: string;
  readonly start: number;
  readonly size: number;
  readonly nobits: boolean;
  readonly align: number;
}

export interface ListingLine {
  readonly file: string;
  readonly line: number;
  readonly depth: number;
  readonly text: string;
  /** undefined for lines that produce nothing */
  readonly address?: number;
  readonly bytes?: Uint8Array;
  /** bytes reserved (resb) rather than emitted */
  readonly reserved?: number;
  /** `times N` / `align` repetitions: bytes holds one repetition */
  readonly repeat?: number;
}

export interface AssembleResult {
  /** no errors */
  readonly ok: boolean;
  readonly diagnostics: readonly Diagnostic[];
  /** from `org` to the end of the last section that has bytes */
  readonly image: Uint8Array;
  readonly org: number;
  /** end address of everything, `.bss` included */
  readonly end: number;
  readonly symbols: readonly AsmSymbol[];
  readonly sections: readonly SectionInfo[];
  readonly lines: LineTable;
  readonly listing: readonly ListingLine[];
  /** every file read, the main one first */
  readonly files: readonly string[];
}

interface Section {
  readonly name: string;
  readonly nobits: boolean;
  align: number;
  /** start address from the previous pass (layout input) */
  start: bigint;
  offset: bigint;
  chunks: { offset: bigint; bytes: Uint8Array }[];
}

interface ProgramStatement {
  readonly stmt: Statement;
  readonly line: LogicalLine;
}

interface PassResult {
  readonly symbols: Map<string, Value>;
  readonly starts: Map<string, bigint>;
  readonly aligns: Map<string, number>;
  readonly sections: Section[];
  readonly defaultRelAtEnd: boolean;
}

export function assemble(opts: AssembleOptions): AssembleResult {
  const diags = new DiagnosticSink();
  try {
    return new Assembly(opts, diags).run();
  } catch (e) {
    // a bug must not take the caller down; report it where the user can see it
    diags.error({ file: opts.file, line: 1, col: 1 }, `internal assembler error: ${e instanceof Error ? e.message : String(e)}`);
    return emptyResult(opts.file, diags.list);
  }
}

function emptyResult(file: string, diagnostics: readonly Diagnostic[]): AssembleResult {
  return { ok: false, diagnostics, image: new Uint8Array(0), org: Number(DEFAULT_ORG), end: Number(DEFAULT_ORG), symbols: [], sections: [], lines: new LineTable([]), listing: [], files: [file] };
}

class Assembly {
  private readonly program: ProgramStatement[] = [];
  private readonly lines: LogicalLine[];
  private readonly files: string[];
  private org = DEFAULT_ORG;
  /** statements whose jump needed rel32 in some pass (used once passes are monotonic) */
  private readonly longBranches = new Set<Statement>();
  private readonly lastSize = new Map<Statement, bigint>();

  constructor(private readonly opts: AssembleOptions, private readonly diags: DiagnosticSink) {
    const pp = new Preprocessor(opts.reader, opts.includeDirs ?? [], diags);
    pp.run(opts.file, opts.text);
    this.lines = pp.lines;
    this.files = pp.files;
    const parser = new Parser();
    for (const line of this.lines) {
      try {
        for (const stmt of parser.parseLine(line.tokens, line.file, line.line, line.text.length)) this.program.push({ stmt, line });
      } catch (e) {
        if (!(e instanceof AsmError)) throw e;
        diags.error(e.pos, e.message);
      }
    }
    for (const w of parser.warnings) diags.warning(w.pos, w.message);
  }

  run(): AssembleResult {
    this.org = this.evaluateOrg();
    let prev: PassResult = { symbols: new Map(), starts: new Map(), aligns: new Map(), sections: [], defaultRelAtEnd: false };
    for (let pass = 1; pass <= MAX_PASSES; pass++) {
      const cur = this.pass(prev, pass, false);
      if (pass > 1 && sameLayout(prev, cur)) break;
      if (pass === MAX_PASSES) this.diags.error({ file: this.opts.file, line: 1, col: 1 }, `label addresses did not settle after ${MAX_PASSES} passes`);
      prev = cur;
    }
    const final = this.pass(prev, MAX_PASSES + 1, true);
    if (this.diags.errorCount === 0 && !sameLayout(prev, final)) this.diags.error({ file: this.opts.file, line: 1, col: 1 }, 'internal assembler error: the final pass moved labels');
    return this.result(final);
  }

  /** `org` must be a constant; NASM applies it to the whole file wherever it is written. */
  private evaluateOrg(): bigint {
    let org: bigint | undefined;
    for (const { stmt } of this.program) {
      if (stmt.kind !== 'org') continue;
      try {
        const v = evaluate(stmt.value, { symbol: () => undefined, here: constant(0n), sectionBase: constant(0n), final: true });
        if (org !== undefined && v.v !== org) this.diags.error(stmt.pos, `'org' is already ${hex(org)}; a flat binary has one origin`);
        org ??= v.v;
      } catch (e) {
        if (!(e instanceof AsmError)) throw e;
        this.diags.error(stmt.pos, `'org' needs a constant: ${e.message}`);
      }
    }
    return org ?? DEFAULT_ORG;
  }

  private pass(prev: PassResult, passNo: number, final: boolean): PassResult {
    const symbols = new Map<string, Value>();
    const symbolInfo = new Map<string, { pos: SourcePos; kind: 'label' | 'equ'; section: string }>();
    const sections: Section[] = [];
    const byName = new Map<string, Section>();
    const openSection = (name: string, nobits?: boolean, align?: number): Section => {
      let s = byName.get(name);
      if (!s) {
        s = { name, nobits: nobits ?? name === '.bss', align: align ?? prev.aligns.get(name) ?? 4, start: prev.starts.get(name) ?? this.org, offset: 0n, chunks: [] };
        byName.set(name, s);
        sections.push(s);
      } else if (align !== undefined && align > s.align) s.align = align;
      return s;
    };
    let section = openSection('.text');
    // NASM keeps `default rel/abs` from the end of one pass into the start of the next
    let defaultRel = prev.defaultRelAtEnd;
    const lineEntries: LineEntry[] = [];
    const listing = new Map<LogicalLine, ListingLine[]>();

    const report = (e: unknown): void => {
      if (!(e instanceof AsmError)) throw e;
      if (final) this.diags.error(e.pos, e.message);
    };
    const here = (): Value => address(section.start + section.offset, section.name);
    const env = (): EvalEnv => ({
      symbol: (name) => symbols.get(name) ?? prev.symbols.get(name),
      here: here(),
      sectionBase: address(section.start, section.name),
      final,
    });
    const emit = (line: LogicalLine, bytes: Uint8Array, reserved = 0n): void => {
      const address = section.start + section.offset;
      const size = BigInt(bytes.length) + reserved;
      if (section.offset + size > MAX_SECTION_SIZE) {
        throw new AsmError({ file: line.file, line: line.line, col: 1 }, `section '${section.name}' grows beyond 16 MiB: guest images must end below 0x1000000`);
      }
      if (final) {
        if (bytes.length > 0) section.chunks.push({ offset: section.offset, bytes });
        if (size > 0n) lineEntries.push({ address: Number(address), size: Number(size), file: line.file, line: line.line });
      }
      section.offset += size;
    };
    const list = (line: LogicalLine, entry: Omit<ListingLine, 'file' | 'line' | 'depth' | 'text'>): void => {
      if (!final) return;
      const l = listing.get(line) ?? [];
      l.push({ file: line.file, line: line.line, depth: line.depth, text: line.text, ...entry });
      listing.set(line, l);
    };
    const define = (name: string, value: Value, pos: SourcePos, kind: 'label' | 'equ'): void => {
      if (symbols.has(name)) {
        const first = symbolInfo.get(name)!.pos;
        report(new AsmError(pos, `symbol '${name}' is already defined at ${first.file}:${first.line}`));
        return;
      }
      symbols.set(name, value);
      symbolInfo.set(name, { pos, kind, section: section.name });
    };

    for (const { stmt, line } of this.program) {
      try {
        switch (stmt.kind) {
          case 'section':
            section = openSection(stmt.name, stmt.nobits, stmt.align);
            break;
          case 'org':
            break;
          case 'default':
            defaultRel = stmt.rel;
            break;
          case 'label':
            define(stmt.name, here(), stmt.pos, 'label');
            list(line, { address: Number(section.start + section.offset) });
            break;
          case 'equ':
            define(stmt.name, evaluate(stmt.value, env()), stmt.pos, 'equ');
            break;
          case 'insn': {
            const bytes = this.encodeInsn(stmt, section, env(), defaultRel, passNo, final);
            list(line, { address: Number(section.start + section.offset), bytes });
            emit(line, bytes);
            break;
          }
          case 'data': {
            this.requireProgbits(section, stmt.pos);
            const bytes = encodeData(stmt, env());
            list(line, { address: Number(section.start + section.offset), bytes });
            emit(line, bytes);
            break;
          }
          case 'reserve': {
            const n = this.count(stmt.count, env(), stmt.pos, 'the reserved size', final) * BigInt(stmt.width);
            this.reserve(section, line, n, list, emit);
            break;
          }
          case 'times': {
            const n = this.count(stmt.count, env(), stmt.pos, "the 'times' count", final);
            this.repeat(stmt.body, n, section, line, env, defaultRel, passNo, final, list, emit);
            break;
          }
          case 'align':
            this.align(stmt, section, line, env, defaultRel, passNo, final, list, emit);
            break;
        }
      } catch (e) {
        report(e);
        // a statement that failed keeps the size it last had, so that what follows does not move
        section.offset += this.lastSize.get(stmt) ?? 0n;
      }
    }

    // nasm -f bin: .text at org, then the other progbits sections in declaration order, then the
    // nobits ones, each aligned; the starts feed the next pass
    const starts = new Map<string, bigint>();
    const aligns = new Map<string, number>();
    let cursor = this.org;
    const ordered = [sections[0], ...sections.slice(1).filter((s) => !s.nobits), ...sections.slice(1).filter((s) => s.nobits)];
    ordered.forEach((s, i) => {
      if (i > 0) cursor = alignUp(cursor, BigInt(s.align));
      starts.set(s.name, cursor);
      aligns.set(s.name, s.align);
      cursor += s.offset;
    });
    if (final) {
      this.finalLines = lineEntries;
      this.finalListing = listing;
      this.finalSymbols = [...symbols].map(([name, v]) => {
        const info = symbolInfo.get(name)!;
        return { name, value: v.v, kind: info.kind, ...(info.kind === 'label' ? { section: info.section } : {}), file: info.pos.file, line: info.pos.line };
      });
    }
    return { symbols, starts, aligns, sections: ordered, defaultRelAtEnd: defaultRel };
  }

  private finalLines: LineEntry[] = [];
  private finalListing = new Map<LogicalLine, ListingLine[]>();
  private finalSymbols: AsmSymbol[] = [];

  private encodeInsn(stmt: InsnStmt, section: Section, env: EvalEnv, defaultRel: boolean, passNo: number, final: boolean): Uint8Array {
    if (section.nobits) throw new AsmError(stmt.pos, `instructions cannot go in the nobits section '${section.name}'`);
    const r = encodeInstruction(stmt, {
      evaluate: (e: Expr) => evaluate(e, env),
      address: section.start + section.offset,
      defaultRel,
      final,
      forceLongBranch: passNo > MONOTONIC_AFTER && this.longBranches.has(stmt),
      warn: (pos, message) => {
        if (final) this.diags.warning(pos, message);
      },
    });
    if (r.longBranch) this.longBranches.add(stmt);
    this.lastSize.set(stmt, BigInt(r.bytes.length));
    return r.bytes;
  }

  private requireProgbits(section: Section, pos: SourcePos): void {
    if (section.nobits) throw new AsmError(pos, `data cannot be initialized in the nobits section '${section.name}'; use resb/resw/resd/resq`);
  }

  private count(e: Expr, env: EvalEnv, pos: SourcePos, what: string, final: boolean): bigint {
    const v = evaluate(e, env);
    if (!v.known) {
      if (final) throw new AsmError(pos, `${what} must be known here`);
      return 0n;
    }
    if (!isPlain(v.reloc)) throw new AsmError(pos, `${what} must be a number, not an address`);
    const n = s64(v.v);
    if (n < 0n) throw new AsmError(pos, `${what} is negative (${n})`);
    if (n > MAX_SECTION_SIZE) throw new AsmError(pos, `${what} is too large (${n}): guest images must end below 16 MiB`);
    return n;
  }

  private reserve(section: Section, line: LogicalLine, n: bigint, list: Lister, emit: Emitter): void {
    list(line, { address: Number(section.start + section.offset), reserved: Number(n) });
    if (section.nobits) emit(line, new Uint8Array(0), n);
    else emit(line, new Uint8Array(Number(n))); // NASM zero-fills reserved space outside nobits sections
  }

  private repeat(body: InsnStmt | DataStmt | ReserveStmt, n: bigint, section: Section, line: LogicalLine, env: () => EvalEnv,
    defaultRel: boolean, passNo: number, final: boolean, list: Lister, emit: Emitter): void {
    const start = Number(section.start + section.offset);
    const parts: Uint8Array[] = [];
    let reserved = 0n;
    // `$` is the start of the line in every repetition, as in NASM; each copy is still encoded at its own address
    const lineEnv = env();
    if (n > 1n && body.kind !== 'reserve' && !dependsOnAddress(body)) {
      // every copy has the same bytes: encode once (keeps `times 100000 db 0` and `align 65536` fast)
      if (body.kind === 'data') this.requireProgbits(section, body.pos);
      const one = body.kind === 'insn' ? this.encodeInsn(body, section, lineEnv, defaultRel, passNo, final) : encodeData(body, lineEnv);
      const all = new Uint8Array(one.length * Number(n));
      for (let i = 0; i < Number(n); i++) all.set(one, i * one.length);
      emit(line, all);
      list(line, { address: start, bytes: one, repeat: Number(n) });
      return;
    }
    for (let i = 0n; i < n; i++) {
      if (body.kind === 'reserve') {
        reserved += this.count(body.count, lineEnv, body.pos, 'the reserved size', final) * BigInt(body.width);
        continue;
      }
      if (body.kind === 'data') this.requireProgbits(section, body.pos);
      const bytes = body.kind === 'insn' ? this.encodeInsn(body, section, lineEnv, defaultRel, passNo, final) : encodeData(body, lineEnv);
      parts.push(bytes);
      emit(line, bytes);
    }
    if (body.kind === 'reserve') {
      this.reserve(section, line, reserved, list, emit);
      return;
    }
    list(line, { address: start, bytes: parts[0] ?? new Uint8Array(0), repeat: Number(n) });
  }

  private align(stmt: AlignStmt, section: Section, line: LogicalLine, env: () => EvalEnv, defaultRel: boolean, passNo: number,
    final: boolean, list: Lister, emit: Emitter): void {
    const b = this.count(stmt.boundary, env(), stmt.pos, 'the alignment', true);
    if (b === 0n || (b & (b - 1n)) !== 0n) throw new AsmError(stmt.pos, `the alignment must be a power of two, not ${b}`);
    if (b > BigInt(section.align)) section.align = Number(b); // NASM's `sectalign on` default
    const pad = (b - (section.offset % b)) % b;
    if (stmt.reserve || section.nobits) {
      this.reserve(section, line, pad, list, emit);
      return;
    }
    const fill: InsnStmt = { kind: 'insn', prefixes: [], mnemonic: 'nop', operands: [], pos: stmt.pos };
    this.repeat(stmt.fill ?? fill, pad, section, line, env, defaultRel, passNo, final, list, emit);
  }

  private result(final: PassResult): AssembleResult {
    const org = this.org;
    const progbits = final.sections.filter((s) => !s.nobits);
    const last = progbits[progbits.length - 1];
    const imageEnd = last ? final.starts.get(last.name)! + last.offset : org;
    const end = final.sections.reduce((m, s) => {
      const e = final.starts.get(s.name)! + s.offset;
      return e > m ? e : m;
    }, imageEnd);
    const image = new Uint8Array(Number(imageEnd - org));
    for (const s of progbits) {
      const base = final.starts.get(s.name)! - org;
      for (const c of s.chunks) image.set(c.bytes, Number(base + c.offset));
    }
    const sections = final.sections.map((s) => ({
      name: s.name, start: Number(final.starts.get(s.name)!), size: Number(s.offset), nobits: s.nobits, align: s.align,
    }));
    const listing: ListingLine[] = [];
    for (const l of this.lines) {
      // `label: insn` yields a label entry and an instruction entry: list the line once
      const entries = this.finalListing.get(l)?.filter((e, _, all) => all.length === 1 || e.bytes !== undefined || e.reserved !== undefined);
      if (entries && entries.length > 0) listing.push(...entries);
      else listing.push({ file: l.file, line: l.line, depth: l.depth, text: l.text });
    }
    if (this.diags.errorCount === 0 && (this.opts.requireStart ?? true)) this.checkStart(org);
    const fileOrder = (f: string) => this.files.indexOf(f);
    const diagnostics = [...this.diags.list].sort((a, b) => fileOrder(a.file) - fileOrder(b.file) || a.line - b.line || a.col - b.col);
    return {
      ok: this.diags.errorCount === 0,
      diagnostics,
      image: this.diags.errorCount === 0 ? image : new Uint8Array(0),
      org: Number(org),
      end: Number(end),
      symbols: this.finalSymbols,
      sections,
      lines: new LineTable(this.finalLines),
      listing,
      files: this.files,
    };
  }

  /** contracts/guest.md: every vCPU enters at the image's first byte, which must be `_start`. */
  private checkStart(org: bigint): void {
    const start = this.finalSymbols.find((s) => s.name === '_start');
    if (!start) {
      this.diags.error({ file: this.opts.file, line: 1, col: 1 }, `no '_start' label: every vCPU enters the image at its first byte (${hex(org)}), which must be labelled '_start'`);
    } else if (start.value !== org) {
      this.diags.error({ file: start.file, line: start.line, col: 1 }, `'_start' must be the first byte of the image (${hex(org)}), but it is at ${hex(start.value)}`);
    }
  }
}

type Lister = (line: LogicalLine, entry: Omit<ListingLine, 'file' | 'line' | 'depth' | 'text'>) => void;
type Emitter = (line: LogicalLine, bytes: Uint8Array, reserved?: bigint) => void;

function encodeData(stmt: DataStmt, env: EvalEnv): Uint8Array {
  const out: number[] = [];
  const w = stmt.width;
  for (const item of stmt.items) {
    if (item.kind === 'str') {
      out.push(...item.bytes);
      const pad = (w - (item.bytes.length % w)) % w;
      for (let i = 0; i < pad; i++) out.push(0);
      continue;
    }
    const v = evaluate(item.value, env);
    if (v.known && w < 8) {
      const s = s64(v.v);
      const bits = BigInt(w * 8);
      if (s < -(1n << (bits - 1n)) || s >= 1n << bits) {
        throw new AsmError(item.pos, `value ${s < 0n ? s : hex(v.v)} does not fit in ${w === 1 ? 'a byte' : w === 2 ? 'a word' : 'a dword'}`);
      }
    }
    for (let i = 0; i < w; i++) out.push(Number((v.v >> BigInt(8 * i)) & 0xffn));
  }
  return Uint8Array.from(out);
}

/** Could two copies of this statement at different addresses differ (a jump, or a memory operand that may be RIP-relative)? */
function dependsOnAddress(body: InsnStmt | DataStmt): boolean {
  if (body.kind === 'data') return false;
  if (FORMS[body.mnemonic]?.some((f) => f.ops.some((k) => k.startsWith('br')))) return true;
  return body.operands.some((o) => o.kind === 'mem' && o.regs.length === 0);
}

function sameLayout(a: PassResult, b: PassResult): boolean {
  if (a.symbols.size !== b.symbols.size || a.starts.size !== b.starts.size) return false;
  for (const [k, v] of a.symbols) {
    const w = b.symbols.get(k);
    if (!w || w.v !== v.v || !sameReloc(w.reloc, v.reloc) || w.known !== v.known) return false;
  }
  for (const [k, v] of a.starts) if (b.starts.get(k) !== v) return false;
  return true;
}

function alignUp(v: bigint, a: bigint): bigint {
  return ((v + a - 1n) / a) * a;
}

export function hex(v: bigint | number): string {
  return '0x' + BigInt(v).toString(16);
}

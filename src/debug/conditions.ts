// Event breakpoints (contracts/dap.md, "Event filters"): the seven filters a client turns on
// through setExceptionBreakpoints, which machine event belongs to which filter and with what
// field values, and the condition grammar that narrows a filter (`msr == 0x1b && set`).
//
// The condition parser is hand-written: the grammar is tiny and specific (a `(field & mask)`
// operand, a bare name meaning equality on the filter's first field, kernel names resolved per
// field), and every error must point at its column.

import type { DebugProtocol } from '@vscode/debugprotocol';
import type { MachineEvent } from '../machine/events';
import { SVM_EXIT_NAMES } from '../machine/cpu/vmexit';
import { VIOLATION_KINDS } from '../machine/kvm/checkers';
import { APICV_INHIBIT_NAMES, KVM_REQ_NAMES } from '../machine/kvm/kvm_host';

// ---- filters and their fields -----------------------------------------------------------------

export type FilterId = 'vcpu-request' | 'x2apic-msr-write' | 'memslot-change' | 'inhibit-change' | 'srcu' | 'vmexit' | 'violation';

/** The field values of one event, per filter (what `filterOf` gives and conditions read). */
export type FilterFields = {
  'vcpu-request': { req: string; op: 'make' | 'check'; vcpu: number | null; from: number | null };
  'x2apic-msr-write': { msr: number; value: bigint; vcpu: number | null; host: boolean };
  'memslot-change': { slot: number; op: 'create' | 'delete'; changed: boolean; gpa: number; vcpu: number | null };
  'inhibit-change': { reason: string; set: boolean; changed: boolean; inhibits: number };
  srcu: { op: 'lock' | 'unlock' | 'synchronize'; depth: number | null; readers: number; vcpu: number | null };
  vmexit: { exit: string; vcpu: number | null };
  violation: { kind: string; vcpu: number | null };
};

export type FieldValue = number | bigint | boolean | string | null;
export type FieldValues = Readonly<Record<string, FieldValue>>;

/** One machine event seen through its filter. */
export type EventMatch = { [F in FilterId]: { readonly filter: F; readonly fields: Readonly<FilterFields[F]> } }[FilterId];

/** The values a name field takes, and the spellings a condition may use for them. */
export interface NameSet {
  /** one value, as errors call it: `request`, `inhibit reason` */
  readonly what: string;
  /** spelling -> the value `filterOf` gives */
  readonly spellings: ReadonlyMap<string, string>;
  /** what is valid, briefly, for errors: `valid: lock, unlock` */
  readonly hint: string;
}

/** Numbers compare and order, booleans also stand alone, names compare for equality. */
export type FieldSpec =
  | { readonly name: string; readonly type: 'number'; readonly nullable: boolean }
  | { readonly name: string; readonly type: 'bool' }
  | { readonly name: string; readonly type: 'name'; readonly names: NameSet };

export interface EventFilter {
  readonly filter: FilterId;
  readonly label: string;
  readonly description: string;
  readonly default: boolean;
  readonly supportsCondition: true;
  readonly conditionDescription: string;
  /** the condition fields in the contract's order; a bare name means equality on the first */
  readonly fields: readonly FieldSpec[];
}

function nameSet(what: string, values: readonly string[], aliases: (value: string) => string[] = () => [], hint?: string): NameSet {
  const spellings = new Map<string, string>();
  for (const v of values) for (const s of [v, ...aliases(v)]) spellings.set(s, v);
  return { what, spellings, hint: hint ?? `valid: ${values.join(', ')}` };
}

const REQUESTS = nameSet('request', Object.values(KVM_REQ_NAMES), (v) => [v.replace(/^KVM_REQ_/, '')],
  'expected a KVM_REQ_* name such as KVM_REQ_APICV_UPDATE or KVM_REQ_EVENT');
const INHIBIT_REASONS = nameSet('inhibit reason', APICV_INHIBIT_NAMES, (v) => [`APICV_INHIBIT_REASON_${v}`]);
const EXITS = nameSet('exit', Object.values(SVM_EXIT_NAMES).map((n) => n.kernel),
  (kernel) => Object.values(SVM_EXIT_NAMES).filter((n) => n.kernel === kernel).map((n) => n.apm),
  'expected an SVM_EXIT_* name or its APM name, such as SVM_EXIT_NPF, NPF or AVIC_NOACCEL');
const VIOLATIONS = nameSet('violation kind', VIOLATION_KINDS);

const num = (name: string, nullable = false): FieldSpec => ({ name, type: 'number', nullable });
const bool = (name: string): FieldSpec => ({ name, type: 'bool' });
const names = (name: string, set: NameSet): FieldSpec => ({ name, type: 'name', names: set });
const op = (...values: string[]): FieldSpec => names('op', nameSet('op', values));
const vcpu = num('vcpu', true);

function filter(id: FilterId, label: string, description: string, examples: string, fields: FieldSpec[]): EventFilter {
  const conditionDescription = `e.g. ${examples}. Fields: ${fields.map((f) => f.name).join(', ')}`;
  return { filter: id, label, description, default: id === 'violation', supportsCondition: true, conditionDescription, fields };
}

/** The contract's filters, in its order. */
export const EVENT_FILTERS: readonly EventFilter[] = [
  filter('vcpu-request', 'vCPU request', 'kvm_make_request / kvm_check_request',
    'KVM_REQ_APICV_UPDATE, or req == KVM_REQ_EVENT && op == make && from == null',
    [names('req', REQUESTS), op('make', 'check'), vcpu, num('from', true)]),
  filter('x2apic-msr-write', 'APIC MSR write',
    'A write to IA32_APIC_BASE (0x1B) or an x2APIC MSR (0x800-0x8FF): guest WRMSR, or the host (KVM_SET_MSRS, KVM_SET_SREGS)',
    'msr == 0x1b && (value & 0x400) != 0, or msr == 0x830 && !host',
    [num('msr'), num('value'), vcpu, bool('host')]),
  filter('memslot-change', 'Memslot change', '__x86_set_memory_region on a slot (every call, also one that changes nothing)',
    'slot == 32765 && op == delete && changed',
    [num('slot'), op('create', 'delete'), bool('changed'), num('gpa'), vcpu]),
  filter('inhibit-change', 'APICv inhibit change', 'kvm_apicv_inhibit_changed: every set or clear of an inhibit reason',
    'APIC_ID_MODIFIED, or reason == APIC_ID_MODIFIED && set, or changed && inhibits == 0',
    [names('reason', INHIBIT_REASONS), bool('set'), bool('changed'), num('inhibits')]),
  filter('srcu', 'kvm->srcu', 'SRCU read lock and unlock, synchronize_srcu on kvm->srcu',
    'depth > 1, or synchronize && readers != 0',
    [op('lock', 'unlock', 'synchronize'), num('depth', true), num('readers'), vcpu]),
  filter('vmexit', '#VMEXIT', 'Every #VMEXIT the model handles (one stop per exit)',
    'exit == AVIC_NOACCEL, or SVM_EXIT_NPF && vcpu == 1',
    [names('exit', EXITS), vcpu]),
  filter('violation', 'Checker violation', 'A checker fired (SRCU imbalance, lock order, APICv state at entry, ...)',
    'srcu-unlock-unbalanced, or kind == deadlock',
    [names('kind', VIOLATIONS), vcpu]),
];

/** The filters as DAP's `exceptionBreakpointFilters` (without the field lists). */
export function exceptionBreakpointFilters(): DebugProtocol.ExceptionBreakpointsFilter[] {
  return EVENT_FILTERS.map(({ fields: _fields, ...dap }) => dap);
}

export function eventFilter(id: FilterId): EventFilter {
  const found = EVENT_FILTERS.find((f) => f.filter === id);
  if (!found) throw new Error(`unknown event filter '${id}'`);
  return found;
}

export function isFilterId(id: string): id is FilterId {
  return EVENT_FILTERS.some((f) => f.filter === id);
}

// ---- events -> filters ------------------------------------------------------------------------

const IA32_APICBASE = 0x1b;

function isApicMsr(msr: number): boolean {
  return msr === IA32_APICBASE || (msr >= 0x800 && msr <= 0x8ff);
}

/** The filter a machine event belongs to and its field values, or undefined for no filter. */
export function filterOf(e: MachineEvent): EventMatch | undefined {
  switch (e.kind) {
    case 'request-make':
      return { filter: 'vcpu-request', fields: { req: e.name, op: 'make', vcpu: e.target, from: e.vcpu } };
    case 'request-check':
      return { filter: 'vcpu-request', fields: { req: e.name, op: 'check', vcpu: e.vcpu, from: e.vcpu } };
    case 'msr-write':
      if (!isApicMsr(e.msr)) return undefined;
      return { filter: 'x2apic-msr-write', fields: { msr: e.msr, value: e.value, vcpu: e.vcpu, host: e.host } };
    case 'memslot-change':
      return {
        filter: 'memslot-change',
        fields: { slot: e.slot, op: e.create ? 'create' : 'delete', changed: e.changed, gpa: e.gpa, vcpu: e.vcpu },
      };
    case 'inhibit-change':
      return {
        filter: 'inhibit-change',
        fields: { reason: APICV_INHIBIT_NAMES[e.reason] ?? String(e.reason), set: e.set, changed: e.changed, inhibits: e.inhibits },
      };
    case 'srcu-lock':
    case 'srcu-unlock':
      return { filter: 'srcu', fields: { op: e.kind === 'srcu-lock' ? 'lock' : 'unlock', depth: e.depth, readers: e.readers, vcpu: e.vcpu } };
    case 'srcu-sync':
      return { filter: 'srcu', fields: { op: 'synchronize', depth: null, readers: e.readers, vcpu: e.vcpu } };
    case 'vmexit':
      return { filter: 'vmexit', fields: { exit: e.name, vcpu: e.vcpu } };
    case 'violation':
      return { filter: 'violation', fields: { kind: e.violation, vcpu: e.vcpu } };
    default:
      return undefined;
  }
}

// ---- conditions -------------------------------------------------------------------------------

export type Condition =
  | { readonly ok: true; test(fields: FieldValues): boolean }
  | { readonly ok: false; readonly message: string; readonly column: number };

/** Compiles a filter's condition; empty or blank means "always". */
export function compileCondition(id: FilterId, text: string): Condition {
  try {
    const tokens = tokenize(text);
    const test = tokens[0].kind === 'end' ? () => true : new Parser(tokens, eventFilter(id)).parse();
    return { ok: true, test };
  } catch (err) {
    if (!(err instanceof ConditionError)) throw err;
    return { ok: false, message: err.message, column: err.column };
  }
}

class ConditionError extends Error {
  constructor(what: string, readonly column: number, more?: string) {
    super(`${what} at column ${column}${more ? `; ${more}` : ''}`);
  }
}

// ---- tokens -----------------------------------------------------------------------------------

type CompareOp = '==' | '!=' | '<' | '<=' | '>' | '>=';
type TokenKind = 'name' | 'number' | 'string' | 'true' | 'false' | 'null' | CompareOp | '&' | '&&' | '||' | '!' | '(' | ')' | 'end';

interface Token {
  readonly kind: TokenKind;
  /** the source text; for a string, its contents */
  readonly text: string;
  /** 1-based */
  readonly column: number;
}

const PUNCTUATION: readonly TokenKind[] = ['==', '!=', '<=', '>=', '&&', '||', '<', '>', '&', '!', '(', ')'];
const NAME = /[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*/y;
const NUMBER = /-?(?:0[xX][0-9A-Fa-f]+|[0-9]+)(?![A-Za-z0-9_])/y;
const SPACE = /\s+/y;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const at = (re: RegExp): string | undefined => {
    re.lastIndex = i;
    return re.exec(text)?.[0];
  };
  while (i < text.length) {
    const column = i + 1;
    const c = text[i];
    const space = at(SPACE);
    if (space) {
      i += space.length;
      continue;
    }
    if (/[0-9]/.test(c) || (c === '-' && /[0-9]/.test(text[i + 1] ?? ''))) {
      const n = at(NUMBER);
      if (!n) throw new ConditionError('malformed number', column, 'numbers are decimal or 0x hex');
      tokens.push({ kind: 'number', text: n, column });
      i += n.length;
    } else if (c === '"' || c === "'") {
      const close = text.indexOf(c, i + 1);
      if (close < 0) throw new ConditionError('unterminated string', column);
      tokens.push({ kind: 'string', text: text.slice(i + 1, close), column });
      i = close + 1;
    } else if (/[A-Za-z_]/.test(c)) {
      const n = at(NAME) as string;
      const kind = n === 'true' || n === 'false' || n === 'null' ? n : 'name';
      tokens.push({ kind, text: n, column });
      i += n.length;
    } else {
      const p = PUNCTUATION.find((s) => text.startsWith(s, i));
      if (!p) throw new ConditionError(`unexpected '${c}'`, column, c === '=' ? "use '=='" : c === '|' ? "use '||'" : undefined);
      tokens.push({ kind: p, text: p, column });
      i += p.length;
    }
  }
  tokens.push({ kind: 'end', text: '', column: text.length + 1 });
  return tokens;
}

// ---- parser -----------------------------------------------------------------------------------

type Test = (fields: FieldValues) => boolean;

/** The left side of a comparison: a field, or `(field & mask)` for a number field. */
interface Operand {
  readonly field: FieldSpec;
  readonly mask?: bigint;
}

const COMPARE_OPS: readonly TokenKind[] = ['==', '!=', '<', '<=', '>', '>='];

function isCompareOp(kind: TokenKind): kind is CompareOp {
  return COMPARE_OPS.includes(kind);
}

/**
 *   or      := and ('||' and)*
 *   and     := unary ('&&' unary)*
 *   unary   := '!' unary | primary
 *   primary := '(' or ')' | '(' field '&' number ')' cmp literal | field cmp literal | bool-field | name
 */
class Parser {
  private pos = 0;

  constructor(private readonly tokens: readonly Token[], private readonly filter: EventFilter) {}

  parse(): Test {
    const test = this.or();
    const rest = this.peek();
    if (rest.kind !== 'end') throw new ConditionError(`unexpected '${rest.text}'`, rest.column);
    return test;
  }

  private or(): Test {
    let left = this.and();
    while (this.peek().kind === '||') {
      this.next();
      const a = left, b = this.and();
      left = (f) => a(f) || b(f);
    }
    return left;
  }

  private and(): Test {
    let left = this.unary();
    while (this.peek().kind === '&&') {
      this.next();
      const a = left, b = this.unary();
      left = (f) => a(f) && b(f);
    }
    return left;
  }

  private unary(): Test {
    if (this.peek().kind !== '!') return this.primary();
    this.next();
    const inner = this.unary();
    return (f) => !inner(f);
  }

  private primary(): Test {
    const t = this.peek();
    if (t.kind === '(' && this.peek(1).kind === 'name' && this.peek(2).kind === '&') return this.comparison(this.maskOperand());
    if (t.kind === '(') {
      this.next();
      const inner = this.or();
      this.expect(')', "expected ')'");
      return inner;
    }
    if (t.kind !== 'name') throw new ConditionError("expected a field, a name or '('", t.column);
    this.next();
    const field = this.field(t.text);
    const compared = isCompareOp(this.peek().kind);
    if (field) return compared ? this.comparison({ field }) : this.bareField(field, t);
    if (compared) throw this.unknownField(t);
    return this.shorthand(t);
  }

  /** `(field & mask)` */
  private maskOperand(): Operand {
    this.next();
    const name = this.next();
    const field = this.field(name.text);
    if (!field) throw this.unknownField(name);
    if (field.type !== 'number') throw new ConditionError(`'&' needs a number field, '${field.name}' is ${article(field.type)}`, name.column);
    this.next();
    const mask = this.expect('number', 'expected a mask (a number)');
    this.expect(')', "expected ')'");
    return { field, mask: BigInt(mask.text) };
  }

  private comparison(operand: Operand): Test {
    const opToken = this.peek();
    if (!isCompareOp(opToken.kind)) throw new ConditionError('expected ==, !=, <, <=, > or >=', opToken.column);
    this.next();
    const op = opToken.kind;
    const { field } = operand;
    if (field.type === 'number') return numberTest(operand, op, this.numberLiteral(field, op, this.next()));
    const eq = equalityOp(field, op, opToken);
    const literal = this.next();
    if (field.type === 'bool') {
      if (literal.kind !== 'true' && literal.kind !== 'false') throw new ConditionError('expected true or false', literal.column);
      return equalityTest(field.name, eq, literal.kind === 'true');
    }
    if (literal.kind !== 'name' && literal.kind !== 'string') throw new ConditionError('expected a name or a quoted string', literal.column);
    return equalityTest(field.name, eq, resolveName(field.names, literal));
  }

  private numberLiteral(field: FieldSpec & { type: 'number' }, op: CompareOp, literal: Token): bigint | null {
    if (literal.kind === 'number') return parseNumber(literal.text);
    const nullAllowed = field.nullable && (op === '==' || op === '!=');
    if (literal.kind !== 'null') throw new ConditionError(nullAllowed ? 'expected a number or null' : 'expected a number', literal.column);
    if (!field.nullable) throw new ConditionError(`'${field.name}' is never null`, literal.column);
    if (op !== '==' && op !== '!=') throw new ConditionError(`'${op}' compares numbers, null only with == or !=`, literal.column);
    return null;
  }

  private bareField(field: FieldSpec, t: Token): Test {
    if (field.type !== 'bool') {
      throw new ConditionError(`'${field.name}' is ${article(field.type)}, not a boolean`, t.column, `compare it, e.g. ${example(field)}`);
    }
    return (f) => f[field.name] === true;
  }

  /** A bare name that is no field: equality on the filter's first field. */
  private shorthand(t: Token): Test {
    const first = this.filter.fields[0];
    if (first.type !== 'name') {
      throw new ConditionError(`'${t.text}' is not a field of ${this.filter.filter}`, t.column, `fields: ${this.fieldList()}`);
    }
    return equalityTest(first.name, '==', resolveName(first.names, t));
  }

  private field(name: string): FieldSpec | undefined {
    return this.filter.fields.find((f) => f.name === name);
  }

  private unknownField(t: Token): ConditionError {
    return new ConditionError(`unknown field '${t.text}' of ${this.filter.filter}`, t.column, `fields: ${this.fieldList()}`);
  }

  private fieldList(): string {
    return this.filter.fields.map((f) => f.name).join(', ');
  }

  private expect(kind: TokenKind, what: string): Token {
    const t = this.peek();
    if (t.kind !== kind) throw new ConditionError(what, t.column);
    return this.next();
  }

  private peek(ahead = 0): Token {
    return this.tokens[Math.min(this.pos + ahead, this.tokens.length - 1)];
  }

  private next(): Token {
    const t = this.peek();
    if (t.kind !== 'end') this.pos++;
    return t;
  }
}

function article(type: FieldSpec['type']): string {
  return type === 'number' ? 'a number' : type === 'bool' ? 'a boolean' : 'a name';
}

function example(field: FieldSpec): string {
  if (field.type === 'number') return `${field.name} == 1`;
  if (field.type === 'name') return `${field.name} == ${field.names.spellings.keys().next().value}`;
  return field.name;
}

/** Booleans and names compare only for equality. */
function equalityOp(field: FieldSpec, op: CompareOp, at: Token): '==' | '!=' {
  if (op === '==' || op === '!=') return op;
  throw new ConditionError(`'${op}' compares numbers, '${field.name}' is ${article(field.type)}`, at.column, 'use == or !=');
}

function parseNumber(text: string): bigint {
  return text.startsWith('-') ? -BigInt(text.slice(1)) : BigInt(text);
}

/** The value a name or string stands for in a name field; unknown spellings are errors. */
function resolveName(set: NameSet, t: Token): string {
  const value = set.spellings.get(t.text);
  if (value !== undefined) return value;
  const near = closest(t.text, [...set.spellings.keys()]);
  throw new ConditionError(`unknown ${set.what} '${t.text}'`, t.column, near ? `did you mean ${near}?` : set.hint);
}

function equalityTest(name: string, op: '==' | '!=', value: boolean | string): Test {
  return op === '==' ? (f) => f[name] === value : (f) => f[name] !== value;
}

function numberTest(operand: Operand, op: CompareOp, literal: bigint | null): Test {
  const { field: { name }, mask } = operand;
  return (f) => {
    const v = toBigInt(f[name]);
    return compareNumbers(v === null || mask === undefined ? v : v & mask, op, literal);
  };
}

function toBigInt(v: FieldValue | undefined): bigint | null {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(Math.trunc(v));
  return null;
}

/** null equals only null and orders with nothing. */
function compareNumbers(a: bigint | null, op: CompareOp, b: bigint | null): boolean {
  if (a === null || b === null) return op === '==' ? a === b : op === '!=' ? a !== b : false;
  switch (op) {
    case '==': return a === b;
    case '!=': return a !== b;
    case '<': return a < b;
    case '<=': return a <= b;
    case '>': return a > b;
    case '>=': return a >= b;
  }
}

/** The spelling within a small edit distance of a typo, if there is one. */
function closest(typo: string, spellings: readonly string[]): string | undefined {
  const limit = Math.max(1, Math.floor(typo.length / 4));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const s of spellings) {
    const d = editDistance(typo.toUpperCase(), s.toUpperCase());
    if (d < bestDistance) [best, bestDistance] = [s, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

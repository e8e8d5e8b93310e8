// compare.ts - comparison of corpus runs: parses the console format of corpus.ts, compares two
// runs of a guest record by record, masking exactly the bits the SDM leaves undefined
// (undefined-flags.ts) and the listed oracle deviations (deviations.ts), checks exception
// records against the SDM expectations the corpus carries, and prints mismatches with the
// sequence's source. `compareEmulatorWithOracles(runGuest)` runs the whole corpus on the
// emulator and compares it with the recorded real-KVM results and with Bochs live, in one call.

import { bochsAvailable, runOnBochs } from '../bochs/bochs';
import {
  type CorpusGuest, type CorpusSequence, corpusGuests, DUMP_FIELDS, type DumpField, EXC_FIELDS, type ExcField, TRAP_GATE_VECTORS,
} from './corpus';
import { type Deviation, DEVIATIONS, type Oracle } from './deviations';
import type { RunGuest } from './emulator-interface';
import { consoleText, type KvmRecording, loadRecording, RECORD_COMMAND, recordingStaleness } from './recording';
import { flagNames, undefinedRule } from './undefined-flags';

// ---------------------------------------------------------------------------------------------
// parsing

export interface ExcRecord {
  vec: number;
  /** null when the vector pushes no error code */
  ec: bigint | null;
  cr2: bigint; rip: bigint; cs: bigint; rflags: bigint; rsp: bigint; ss: bigint; frame: bigint; hflags: bigint;
}

export interface ParsedSeq {
  id: number;
  /** rax..r15, rflags (DUMP_FIELDS order); absent when the `#` line never came */
  regs?: bigint[];
  mem: { addr: bigint; qwords: bigint[] }[];
  exc: ExcRecord[];
  /** `o` lines (guest string output) printed before the sequence's `#` line */
  out: string[];
}

export interface ParsedConsole {
  /** the `G` line's guest name */
  guest?: string;
  /** the `E` line was seen */
  ended: boolean;
  seqs: Map<number, ParsedSeq>;
  /** ids in the order their `#` lines came */
  order: number[];
  /** lines that are not records (should be none) */
  junk: string[];
}

const H16 = '([0-9a-f]{16})';
const SEQ_LINE = new RegExp(`^#([0-9a-f]{4})((?: [0-9a-f]{16}){17})$`);
const MEM_LINE = new RegExp(`^m ${H16}((?: [0-9a-f]{16})+)$`);
const EXC_LINE = new RegExp(`^x ([0-9a-f]{4}) ([0-9a-f]{2}) (-|[0-9a-f]{16})((?: [0-9a-f]{16}){8})$`);

/** Parses a corpus guest's console output (see corpus.ts for the format). */
export function parseConsole(text: string): ParsedConsole {
  const out: ParsedConsole = { ended: false, seqs: new Map(), order: [], junk: [] };
  const get = (id: number): ParsedSeq => {
    let s = out.seqs.get(id);
    if (!s) { s = { id, mem: [], exc: [], out: [] }; out.seqs.set(id, s); }
    return s;
  };
  let last: ParsedSeq | undefined;
  let pendingOut: string[] = [];
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    let m: RegExpExecArray | null;
    if (line.startsWith('G ') && out.guest === undefined) out.guest = line.slice(2);
    else if (line === 'E') out.ended = true;
    else if ((m = SEQ_LINE.exec(line))) {
      last = get(parseInt(m[1], 16));
      last.regs = m[2].trim().split(' ').map((h) => BigInt(`0x${h}`));
      last.out.push(...pendingOut);
      pendingOut = [];
      out.order.push(last.id);
    } else if ((m = MEM_LINE.exec(line)) && last) {
      last.mem.push({ addr: BigInt(`0x${m[1]}`), qwords: m[2].trim().split(' ').map((h) => BigInt(`0x${h}`)) });
    } else if ((m = EXC_LINE.exec(line))) {
      const v = m[4].trim().split(' ').map((h) => BigInt(`0x${h}`));
      get(parseInt(m[1], 16)).exc.push({
        vec: parseInt(m[2], 16), ec: m[3] === '-' ? null : BigInt(`0x${m[3]}`),
        cr2: v[0], rip: v[1], cs: v[2], rflags: v[3], rsp: v[4], ss: v[5], frame: v[6], hflags: v[7],
      });
    } else if (line.startsWith('o ')) pendingOut.push(line);
    else out.junk.push(line);
  }
  out.junk.push(...pendingOut);
  return out;
}

// ---------------------------------------------------------------------------------------------
// masks

export type Side = Oracle | 'emulator';

export interface RunOutput {
  /** e.g. "kvm (recorded)", "bochs", "emulator" */
  label: string;
  side: Side;
  status: string;
  console: string;
  error?: string;
}

export interface CompareOptions {
  /**
   * Compare the SDM-undefined bits for which real KVM follows a recorded rule
   * (UndefinedFlagRule.kvmDeterministic) when one side is KVM and the other the emulator:
   * the emulator is meant to produce KVM's values there. Default true.
   */
  strictKvmUndefined?: boolean;
}

/** What is excluded from the comparison of one sequence between two sides, and why. */
export interface SeqMask {
  flags: bigint;
  regs: Partial<Record<DumpField, bigint>>;
  excFields: Set<ExcField>;
  /** a side does not take the sequence's exception (deviation): compare no `x` lines */
  ignoreExceptions: boolean;
  reasons: string[];
}

const ALL = (1n << 64n) - 1n;

function deviationsCovering(side: Side, seq: CorpusSequence): Deviation[] {
  if (side === 'emulator') return [];
  return DEVIATIONS.filter((d) => d.oracle === side && d.scope?.tags?.some((t) => seq.tags.includes(t)));
}

/** The mask for comparing `seq` between sides a and b. */
export function sequenceMask(seq: CorpusSequence, a: Side, b: Side, opts: CompareOptions = {}): SeqMask {
  const strict = (opts.strictKvmUndefined ?? true) && ((a === 'kvm' && b === 'emulator') || (a === 'emulator' && b === 'kvm'));
  let flags = BigInt(seq.undefinedFlags);
  const regs: Partial<Record<DumpField, bigint>> = {};
  const reasons: string[] = [];
  let regsStrict = strict;
  if (strict) {
    // a bit stays masked unless every rule that leaves it undefined says KVM is deterministic
    let det = seq.undefinedFlags;
    for (const id of seq.undefinedRules) {
      const r = undefinedRule(id);
      det &= r.kvmDeterministic | ~r.mask;
      if (r.registers && !r.kvmRegistersDeterministic) regsStrict = false;
    }
    flags = BigInt(seq.undefinedFlags & ~det);
  }
  if (flags) reasons.push(`undefined flags ${flagNames(Number(flags))} (${seq.undefinedRules.join(', ')})`);
  if (!regsStrict) {
    for (const r of seq.undefinedRegs) { regs[r] = ALL; reasons.push(`${r} undefined (${seq.undefinedRules.join(', ')})`); }
  }
  const excFields = new Set<ExcField>(seq.undefinedExcFields);
  if (excFields.size) reasons.push(`exception fields undefined per the SDM: ${[...excFields].join(', ')}`);
  let ignoreExceptions = false;
  for (const side of [a, b]) {
    for (const d of deviationsCovering(side, seq)) {
      const sc = d.scope!;
      const fields = { ...(sc.fields ?? {}), ...(sc.fieldsFor ? sc.fieldsFor(seq) : {}) };
      for (const [f, m] of Object.entries(fields)) {
        regs[f as DumpField] = (regs[f as DumpField] ?? 0n) | (m as bigint);
        if (f === 'rflags') flags |= m as bigint;
      }
      for (const f of sc.excFields ?? []) excFields.add(f);
      if (sc.missingException) ignoreExceptions = true;
      reasons.push(`deviation ${d.id} (${d.oracle})`);
    }
  }
  regs.rflags = (regs.rflags ?? 0n) | flags;
  return { flags, regs, excFields, ignoreExceptions, reasons };
}

// ---------------------------------------------------------------------------------------------
// comparison

export interface Mismatch {
  guest: string;
  /** sequence id, or undefined for guest-level differences (status, missing lines) */
  seq?: number;
  field: string;
  left: { label: string; value: string };
  right: { label: string; value: string };
  /** bits that were excluded for this field (hex), with the reasons */
  masked?: string;
  note?: string;
}

const hex = (v: bigint): string => `0x${v.toString(16).padStart(16, '0')}`;

function diffBitsNote(field: string, a: bigint, b: bigint): string | undefined {
  if (field !== 'rflags' && !field.endsWith('.rflags') && !field.endsWith('.hflags')) return undefined;
  return `differing bits: ${flagNames(Number((a ^ b) & 0xffffffffn))}`;
}

/**
 * Compares the parsed consoles of one guest from two sides, sequence by sequence; expected
 * sequences come from the corpus. Returns every difference that is not masked.
 */
export function compareConsoles(guest: CorpusGuest, a: RunOutput, b: RunOutput, opts: CompareOptions = {}): Mismatch[] {
  const out: Mismatch[] = [];
  const pa = parseConsole(a.console);
  const pb = parseConsole(b.console);
  const mk = (field: string, va: string, vb: string, seq?: number, masked?: string, note?: string): Mismatch => ({
    guest: guest.name, ...(seq !== undefined ? { seq } : {}), field,
    left: { label: a.label, value: va }, right: { label: b.label, value: vb },
    ...(masked ? { masked } : {}), ...(note ? { note } : {}),
  });
  if (pa.guest !== pb.guest) out.push(mk('G line', String(pa.guest), String(pb.guest)));
  if (pa.ended !== pb.ended) out.push(mk('E line', String(pa.ended), String(pb.ended)));
  if (pa.junk.join('\n') !== pb.junk.join('\n')) out.push(mk('unparsed lines', JSON.stringify(pa.junk.slice(0, 5)), JSON.stringify(pb.junk.slice(0, 5))));
  for (const seq of guest.sequences) {
    const sa = pa.seqs.get(seq.id);
    const sb = pb.seqs.get(seq.id);
    if (!sa?.regs || !sb?.regs) {
      if (sa?.regs || sb?.regs) out.push(mk('# line', sa?.regs ? 'present' : 'missing', sb?.regs ? 'present' : 'missing', seq.id));
      else if (pa.ended || pb.ended) out.push(mk('# line', 'missing', 'missing', seq.id));
      continue;
    }
    const m = sequenceMask(seq, a.side, b.side, opts);
    const why = m.reasons.join('; ');
    DUMP_FIELDS.forEach((f, i) => {
      const mask = m.regs[f] ?? 0n;
      const va = sa.regs![i];
      const vb = sb.regs![i];
      if ((va & ~mask) !== (vb & ~mask)) {
        out.push(mk(f, hex(va), hex(vb), seq.id, mask ? `${hex(mask)} (${why})` : undefined, diffBitsNote(f, va, vb)));
      }
    });
    const memA = sa.mem.map((x) => `${hex(x.addr)}: ${x.qwords.map(hex).join(' ')}`);
    const memB = sb.mem.map((x) => `${hex(x.addr)}: ${x.qwords.map(hex).join(' ')}`);
    if (memA.join('\n') !== memB.join('\n')) out.push(mk('memory', memA.join(' | ') || 'none', memB.join(' | ') || 'none', seq.id));
    if (sa.out.join('\n') !== sb.out.join('\n')) out.push(mk('string output (o lines)', JSON.stringify(sa.out), JSON.stringify(sb.out), seq.id));
    if (m.ignoreExceptions) continue;
    if (sa.exc.length !== sb.exc.length) {
      out.push(mk('exceptions taken', String(sa.exc.length), String(sb.exc.length), seq.id));
      continue;
    }
    sa.exc.forEach((xa, k) => {
      const xb = sb.exc[k];
      for (const f of EXC_FIELDS) {
        if (m.excFields.has(f)) continue;
        const va = xa[f];
        const vb = xb[f];
        const sva = va === null ? '-' : typeof va === 'number' ? `0x${va.toString(16)}` : hex(va);
        const svb = vb === null ? '-' : typeof vb === 'number' ? `0x${vb.toString(16)}` : hex(vb);
        if (sva !== svb) {
          out.push(mk(`x[${k}].${f}`, sva, svb, seq.id, undefined,
            typeof va === 'bigint' && typeof vb === 'bigint' ? diffBitsNote(`x.${f}`, va, vb) : undefined));
        }
      }
    });
  }
  return out;
}

/** Checks a run's exception records against the SDM expectations in the corpus. */
export function checkExpectations(guest: CorpusGuest, run: RunOutput): Mismatch[] {
  const out: Mismatch[] = [];
  const p = parseConsole(run.console);
  const mk = (seq: number, field: string, want: string, got: string): Mismatch => ({
    guest: guest.name, seq, field, left: { label: 'SDM', value: want }, right: { label: run.label, value: got },
  });
  const skipped = new Set(DEVIATIONS.filter((d) => d.oracle === run.side && d.scope?.missingException).flatMap((d) => d.scope!.tags ?? []));
  for (const seq of guest.sequences) {
    if (seq.tags.some((t) => skipped.has(t))) continue;
    const s = p.seqs.get(seq.id);
    const exc = s?.exc ?? [];
    if (!s?.regs) continue; // reported by the completeness check
    if (exc.length !== seq.exceptions) { out.push(mk(seq.id, 'exceptions taken', String(seq.exceptions), String(exc.length))); continue; }
    const e = seq.expect;
    if (!e || !exc.length) continue;
    const x = exc[0];
    if (x.vec !== e.vec) out.push(mk(seq.id, 'x.vec', `0x${e.vec.toString(16)}`, `0x${x.vec.toString(16)}`));
    const ec = x.ec === null ? '-' : `0x${x.ec.toString(16)}`;
    const want = e.ec === null ? '-' : `0x${e.ec.toString(16)}`;
    if (ec !== want) out.push(mk(seq.id, 'x.ec', want, ec));
    if (e.rip !== null && x.rip !== BigInt(e.rip)) out.push(mk(seq.id, 'x.rip', `0x${e.rip.toString(16)}`, hex(x.rip)));
    if (e.cr2 !== undefined && x.cr2 !== BigInt(e.cr2)) out.push(mk(seq.id, 'x.cr2', `0x${e.cr2.toString(16)}`, hex(x.cr2)));
    if (x.cs !== 8n) out.push(mk(seq.id, 'x.cs', '0x8', hex(x.cs)));
    if (x.ss !== 0x10n) out.push(mk(seq.id, 'x.ss', '0x10', hex(x.ss)));
    // SDM Vol. 3A 6.14.2: in 64-bit mode RSP is aligned to 16 bytes before SS, RSP, RFLAGS, CS
    // and RIP are pushed, so the saved RIP sits 40 bytes below the aligned old RSP
    const frame = (x.rsp & ~0xfn) - 40n;
    if (x.frame !== frame) out.push(mk(seq.id, 'x.frame (address of the saved RIP)', hex(frame), hex(x.frame)));
    // SDM Vol. 3A 6.12.1.3: delivery clears TF, VM, RF and NT; an interrupt gate also clears IF
    const cleared = 0x100n | 0x20000n | 0x10000n | 0x4000n | (TRAP_GATE_VECTORS.has(x.vec) ? 0n : 0x200n);
    if (x.hflags !== (x.rflags & ~cleared)) out.push(mk(seq.id, 'x.hflags (RFLAGS in the handler)', hex(x.rflags & ~cleared), hex(x.hflags)));
  }
  return out;
}

/** Every sequence printed, the E line present, nothing unparsed: the run reached its end intact. */
export function checkComplete(guest: CorpusGuest, run: RunOutput): Mismatch[] {
  const p = parseConsole(run.console);
  const out: Mismatch[] = [];
  const mk = (field: string, want: string, got: string, seq?: number): Mismatch => ({
    guest: guest.name, ...(seq !== undefined ? { seq } : {}), field, left: { label: 'corpus', value: want }, right: { label: run.label, value: got },
  });
  if (run.status !== guest.expectStatus) out.push(mk('status', guest.expectStatus, `${run.status}${run.error ? ` (${run.error})` : ''}`));
  if (p.guest !== guest.name) out.push(mk('G line', guest.name, String(p.guest)));
  if (guest.expectStatus === 'done' && !p.ended) out.push(mk('E line', 'present', 'missing'));
  if (p.junk.length) out.push(mk('unparsed lines', 'none', JSON.stringify(p.junk.slice(0, 3))));
  const want = guest.sequences.map((s) => s.id);
  if (want.join(',') !== p.order.join(',')) {
    const missing = want.filter((id) => !p.seqs.get(id)?.regs);
    out.push(mk('sequences', `${want.length} in order`, `${p.order.length}${missing.length ? `; missing ${missing.slice(0, 5).map((x) => `0x${x.toString(16)}`).join(', ')}${missing.length > 5 ? ', ...' : ''}` : ' (order differs)'}`));
  }
  return out;
}

/** Pretty report: each mismatch with both values, the masked bits and the sequence's source. */
export function formatMismatches(ms: readonly Mismatch[], limit = 40): string {
  const seqs = new Map<string, CorpusSequence>();
  for (const g of corpusGuests()) for (const s of g.sequences) seqs.set(`${g.name}:${s.id}`, s);
  const L: string[] = [];
  const shownSource = new Set<string>();
  for (const m of ms.slice(0, limit)) {
    const seq = m.seq !== undefined ? seqs.get(`${m.guest}:${m.seq}`) : undefined;
    const where = m.seq !== undefined ? `sequence 0x${m.seq.toString(16).padStart(4, '0')}${seq ? ` (${seq.title})` : ''}` : 'guest';
    const w = Math.max(m.left.label.length, m.right.label.length) + 1;
    L.push(`guest ${m.guest}, ${where}, ${m.field}:`);
    L.push(`  ${`${m.left.label}:`.padEnd(w)} ${m.left.value}`);
    L.push(`  ${`${m.right.label}:`.padEnd(w)} ${m.right.value}${m.note ? `   (${m.note})` : ''}`);
    if (m.masked) L.push(`  masked: ${m.masked}`);
    const key = `${m.guest}:${m.seq}`;
    if (seq && !shownSource.has(key)) {
      shownSource.add(key);
      L.push('  source:', ...seq.source.split('\n').map((l) => `    ${l}`));
    }
  }
  if (ms.length > limit) L.push(`... and ${ms.length - limit} more mismatches`);
  return L.join('\n');
}

// ---------------------------------------------------------------------------------------------
// recorded KVM output as a run; the emulator against both oracles

/** The recorded KVM run of a guest as a RunOutput (undefined when not recorded). */
export function recordedKvmRun(rec: KvmRecording, guest: CorpusGuest): RunOutput | undefined {
  const r = rec.guests.find((g) => g.name === guest.name);
  if (!r) return undefined;
  return { label: 'kvm (recorded)', side: 'kvm', status: r.status, console: consoleText(r), ...(r.error ? { error: r.error } : {}) };
}

export interface EmulatorComparison {
  mismatches: Mismatch[];
  /** human-readable summary plus formatMismatches() of the first ones */
  report: string;
  guests: number;
  sequences: number;
  /** why Bochs was not compared, when it was not */
  bochsSkipped?: string;
}

/**
 * Runs every corpus guest on the emulator and compares it with the recorded real-KVM results
 * (strict on the undefined bits KVM is deterministic about; KVM's listed deviations masked) and,
 * when Bochs is installed and `bochs` is not false, with Bochs live; checks the SDM expectations
 * of the exception records, completeness, and the registers at the done site against KVM's.
 */
export function compareEmulatorWithOracles(
  runGuest: RunGuest,
  opts: { bochs?: boolean; guests?: readonly string[]; maxSteps?: number } & CompareOptions = {},
): EmulatorComparison {
  const rec = loadRecording();
  const stale = recordingStaleness(rec);
  if (stale.length) throw new Error(`the KVM recording is not up to date (${stale[0]}): run ${RECORD_COMMAND}`);
  let bochsSkipped: string | undefined;
  if (opts.bochs === false) bochsSkipped = 'disabled by the caller';
  else if (!bochsAvailable().ok) bochsSkipped = `Bochs oracle unavailable: ${bochsAvailable().reason}`;
  const mismatches: Mismatch[] = [];
  let guests = 0;
  let sequences = 0;
  for (const g of corpusGuests()) {
    if (opts.guests && !opts.guests.includes(g.name)) continue;
    guests++;
    sequences += g.sequences.length;
    const r = runGuest(g.image, { vcpus: g.vcpus, ...(opts.maxSteps ? { maxSteps: opts.maxSteps } : {}) });
    const emu: RunOutput = { label: 'emulator', side: 'emulator', status: r.status, console: r.console };
    mismatches.push(...checkComplete(g, emu), ...checkExpectations(g, emu));
    const kvm = recordedKvmRun(rec!, g)!;
    if (!g.kvmDeviation) {
      mismatches.push(...compareConsoles(g, kvm, emu, opts));
      // registers at the end: done vCPUs stop at the done site after the epilogue
      const kv = g.expectStatus === 'done' ? rec!.guests.find((x) => x.name === g.name)!.regs : [];
      for (const v of kv) {
        const ev = r.vcpus.find((x) => x.id === v.id);
        for (const [k, want] of Object.entries(v.regs)) {
          const got = ev?.regs[k] ?? 'missing';
          if (got !== want) mismatches.push({ guest: g.name, field: `vCPU ${v.id} ${k} at the end`, left: { label: kvm.label, value: want }, right: { label: 'emulator', value: got } });
        }
      }
    }
    if (!bochsSkipped) {
      const b = runOnBochs(g.image, { vcpus: g.vcpus, doneSites: g.doneSites });
      mismatches.push(...compareConsoles(g, { label: 'bochs', side: 'bochs', status: b.status, console: b.console }, emu, opts));
    }
  }
  const head = `${guests} guests, ${sequences} sequences: ${mismatches.length} mismatches` +
    (bochsSkipped ? ` (Bochs not compared: ${bochsSkipped})` : '');
  return { mismatches, report: mismatches.length ? `${head}\n${formatMismatches(mismatches)}` : head, guests, sequences, ...(bochsSkipped ? { bochsSkipped } : {}) };
}

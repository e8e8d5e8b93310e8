// compare.ts - comparison of LAPIC corpus runs with the expected values (expected.ts): a run's
// console is parsed into checks (console.ts) and every check with a fixed value must have it,
// every expected check must be there and no other check may appear; oracle runs are also
// checked against the deviation tables. `compareApicEmulator(runGuest)` runs the whole corpus
// on the emulator and returns the mismatches with a readable report, in one call.

import { type ApicGuest, apicGuests } from './corpus';
import { checkId, parseApicConsole, renderApicConsole } from './console';
import type { RunGuest } from '../diff/emulator-interface';
import { type ExpectedSource, expectedFor, type GuestExpectation, oracleDeviates, UNDEFINED } from './expected';
import { apicRecording, apicRecordingStaleness, type OracleName, RECORD_COMMAND } from './recording';

export const ABSENT = '(absent)';

export interface ApicMismatch {
  guest: string;
  /** "<vcpu>:<check>[.<field>]", or "" for guest-level problems (status, G/E lines) */
  key: string;
  id: string;
  /** what the check does */
  what: string;
  expected: string;
  /** where the expected value comes from */
  source: ExpectedSource | 'corpus';
  got: string;
  /** who produced `got` ("emulator", "bochs (live)", ...) */
  label: string;
  note?: string;
}

/** Compares one run's console with a guest's expectation. */
export function compareWithExpected(exp: GuestExpectation, run: { status: string; console: string; error?: string }, label: string): ApicMismatch[] {
  const g = exp.guest;
  const out: ApicMismatch[] = [];
  const p = parseApicConsole(run.console);
  const guestLevel = (what: string, expected: string, got: string): ApicMismatch =>
    ({ guest: g.name, key: '', id: checkId(g.name, ''), what, expected, source: 'corpus', got, label });
  if (run.status !== 'done') out.push(guestLevel('run status', 'done', `${run.status}${run.error ? ` (${run.error.split('\n')[0]})` : ''}`));
  if (p.guest !== g.name) out.push(guestLevel('G line', g.name, String(p.guest)));
  if (!p.ended) out.push(guestLevel('E line', 'present', 'missing'));
  if (p.junk.length) out.push(guestLevel('unparsed lines', 'none', JSON.stringify(p.junk.slice(0, 3))));
  if (p.duplicates.length) out.push(guestLevel('checks printed twice', 'none', p.duplicates.slice(0, 5).join(', ')));
  const known = new Set<string>();
  for (const c of exp.checks) {
    known.add(c.key);
    if (c.value === null) continue;
    const got = p.values.get(c.key) ?? ABSENT;
    if (got !== c.value) {
      out.push({ guest: g.name, key: c.key, id: c.id, what: c.what, expected: c.value, source: c.source, got, label, ...(c.note ? { note: c.note } : {}) });
    }
  }
  for (const [key, got] of p.values) {
    if (known.has(key)) continue;
    const id = checkId(g.name, key);
    if (UNDEFINED.some((u) => u.ids.test(id))) continue;
    out.push({ guest: g.name, key, id, what: key.includes('timeout') || got === 'timeout' ? 'an interrupt the guest waited for never came' : 'a check the expectation does not have',
      expected: ABSENT, source: g.defaultSource, got, label });
  }
  return out;
}

/**
 * An oracle's run against the expectation: every difference must be covered by one of that
 * oracle's deviations (or, for KVM, a version difference). Returns the uncovered ones and, per
 * deviation / version-difference id, the check ids it covered.
 */
export function oracleVsExpected(oracle: OracleName, exp: GuestExpectation, run: { status: string; console: string; error?: string }, label: string):
  { unexplained: ApicMismatch[]; covered: Map<string, string[]> } {
  const covered = new Map<string, string[]>();
  const unexplained: ApicMismatch[] = [];
  for (const m of compareWithExpected(exp, run, label)) {
    const devs = m.key ? oracleDeviates(oracle, m.id) : [];
    if (!devs.length) unexplained.push(m);
    for (const d of devs) {
      if (!covered.has(d)) covered.set(d, []);
      covered.get(d)!.push(m.id);
    }
  }
  return { unexplained, covered };
}

/** Readable report: guest, vCPU, check and what it does, expected value with its source, the value got. */
export function formatApicMismatches(ms: readonly ApicMismatch[], limit = 40): string {
  const L: string[] = [];
  for (const m of ms.slice(0, limit)) {
    L.push(m.key ? `${m.guest}, vCPU ${m.key.slice(0, m.key.indexOf(':'))}, ${m.key.slice(m.key.indexOf(':') + 1)} (${m.what}):` : `${m.guest}: ${m.what}:`);
    L.push(`  expected (${m.source}): ${m.expected}`);
    L.push(`  ${m.label}: ${m.got}`);
    if (m.note) L.push(`  note: ${m.note}`);
  }
  if (ms.length > limit) L.push(`... and ${ms.length - limit} more mismatches`);
  return L.join('\n');
}

/** The console a correct emulator prints for a guest (undefined checks: the KVM recording's value, or 0). */
export function expectedConsole(exp: GuestExpectation): string {
  const fields = new Set(exp.checks.filter((c) => c.field).map((c) => c.key));
  return renderApicConsole(exp.guest.name, exp.checks.map((c): [string, string] => [c.key, c.value ?? '0']), fields);
}

export interface ApicEmulatorComparison {
  mismatches: ApicMismatch[];
  /** summary line plus formatApicMismatches() of the first ones */
  report: string;
  guests: number;
  /** checks compared (fixed values) */
  checks: number;
}

/**
 * Runs every LAPIC corpus guest on the emulator and compares its console with expected.ts (and,
 * where the emulator reports registers, that every vCPU ended `done` at the done site).
 * Options: `guests` (names) to run a subset, `maxSteps` passed to runGuest.
 */
export function compareApicEmulator(runGuest: RunGuest, opts: { guests?: readonly string[]; maxSteps?: number } = {}): ApicEmulatorComparison {
  for (const o of ['kvm', 'bochs'] as const) {
    const stale = apicRecordingStaleness(apicRecording(o), o);
    if (stale.length) throw new Error(`the ${o} recording of the LAPIC corpus is not up to date (${stale[0]}): run ${RECORD_COMMAND}`);
  }
  const mismatches: ApicMismatch[] = [];
  let guests = 0;
  let checks = 0;
  for (const g of apicGuests()) {
    if (opts.guests && !opts.guests.includes(g.name)) continue;
    guests++;
    const exp = expectedFor(g);
    if (exp.problems.length) throw new Error(`expected.ts cannot decide ${exp.problems.length} check(s) of ${g.name}: ${exp.problems[0]}`);
    checks += exp.checks.filter((c) => c.value !== null).length;
    const r = runGuest(g.image, { vcpus: g.vcpus, ...(opts.maxSteps ? { maxSteps: opts.maxSteps } : {}) });
    mismatches.push(...compareWithExpected(exp, { status: r.status, console: r.console }, 'emulator'));
    mismatches.push(...endState(g, r.vcpus));
  }
  const head = `LAPIC corpus: ${guests} guests, ${checks} checks: ${mismatches.length} mismatches`;
  return { mismatches, report: mismatches.length ? `${head}\n${formatApicMismatches(mismatches)}` : head, guests, checks };
}

function endState(g: ApicGuest, vcpus: { id: number; state: string; regs: Record<string, string> }[]): ApicMismatch[] {
  const out: ApicMismatch[] = [];
  for (let i = 0; i < g.vcpus; i++) {
    const v = vcpus.find((x) => x.id === i);
    const mk = (what: string, expected: string, got: string): ApicMismatch =>
      ({ guest: g.name, key: '', id: checkId(g.name, ''), what: `vCPU ${i} ${what}`, expected, source: 'corpus', got, label: 'emulator' });
    if (!v) { out.push(mk('at the end', 'done', 'missing')); continue; }
    if (v.state !== 'done') out.push(mk('state at the end', 'done', v.state));
    else if (v.regs.rip !== undefined && BigInt(v.regs.rip) !== BigInt(g.doneSites[0])) out.push(mk('RIP at the end', `0x${g.doneSites[0].toString(16)}`, v.regs.rip));
  }
  return out;
}

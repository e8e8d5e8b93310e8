// expected.ts - the contract the emulator's LAPIC is tested against: for every check of every
// LAPIC corpus guest, the value the emulator must produce and where it comes from:
//   "kvm"       real KVM, recorded (test/oracle/recorded/kvm-apic.json): register and MSR rules,
//               where this host's 6.18 equals v6.3 (version-differences.ts);
//   "bochs"     Bochs 2.7 (its frozen run, test/oracle/recorded/bochs-apic.json, checked live by
//               oracles.test.ts): interrupt acceptance (ISR, PPR, EOI order, nesting), where
//               kvm-pvm deviates;
//   "v6.3"      Linux v6.3 where the host kernel differs (version-differences.ts);
//   "sdm"       written here from the SDM where both oracles deviate (OVERRIDES below);
//   "undefined" no fixed value (UNDEFINED below): not compared.
// Each guest has a default oracle (corpus.ts `defaultSource`); a check takes the other oracle's
// value when the default one deviates there (deviations.ts), and an explicit entry when both do.
// A check that only a deviating oracle prints (e.g. Bochs's "timeout" lines) is expected absent.

import { type ApicGuest, apicGuests } from './corpus';
import { checkId, type ParsedApicConsole, parseApicConsole } from './console';
import { deviationsCovering } from './deviations';
import { consoleOf, type OracleName, recordedGuest } from './recording';
import { v63Value, versionDifferencesCovering } from './version-differences';

export type ExpectedSource = 'kvm' | 'bochs' | 'sdm' | 'v6.3' | 'undefined';

export interface ExpectedCheck {
  guest: string;
  /** "<vcpu>:<check>[.<field>]" */
  key: string;
  /** "<guest>/<key>" */
  id: string;
  /** null: any value is accepted (source "undefined") */
  value: string | null;
  source: ExpectedSource;
  /** a field of a snapshot line ("k=v ...") */
  field: boolean;
  /** what the check does */
  what: string;
  /** why this source (deviations, version differences, undefined) */
  note?: string;
}

export interface GuestExpectation {
  guest: ApicGuest;
  checks: ExpectedCheck[];
  /** checks no rule decides (both oracles deviate and there is no explicit entry); must be empty */
  problems: string[];
}

/** Checks with no fixed value. */
export const UNDEFINED: readonly { ids: RegExp; reason: string }[] = [
  {
    // offsets with no readable register: reserved, EOI (write-only), RRR, LVTCMCI (not supported), SELF_IPI
    ids: /^xapic-mmio\/0:rd\.(?:000|010|040|050|060|070|0b0|0c0|290|2a0|2b0|2c0|2d0|2e0|2f0|3a0|3b0|3c0|3d0|3f0)$/,
    reason: 'a 32-bit load of an offset with no readable register: v6.3 apic_mmio_read ignores kvm_lapic_reg_read\'s failure and leaves the ' +
      'destination buffer untouched, so the load returns whatever KVM\'s instruction emulator held (recorded: values left by earlier emulated reads, ' +
      'e.g. 0x100fc5); Bochs returns 0 (0x10000 for its CMCI LVT) and sets ESR bit 7. Any value is accepted; 0 is the sensible choice.',
  },
];

/** Explicit values where both oracles deviate (SDM / v6.3 reasoning). */
export const OVERRIDES: readonly { ids: RegExp; value: string; source: 'sdm' | 'v6.3'; note: string }[] = [
  {
    // x2APIC logical IPIs: Bochs does not deliver them (bochs-x2apic-logical-ipi); KVM delivers them but its snapshot has
    // no ISR/PPR (kvm-interrupt-acceptance). In the handler the vector is in service and PPR is its class.
    ids: /^ipi-x2apic-4\/\d+:s2\.irq1\.isr$/,
    value: '72',
    source: 'sdm',
    note: 'x2APIC logical IPI 0x72 (s2): Bochs does not deliver it, KVM does without setting ISR; in the handler ISR = {0x72} (SDM 11.8.4)',
  },
  {
    ids: /^ipi-x2apic-4\/\d+:s2\.irq1\.ppr$/,
    value: '70',
    source: 'sdm',
    note: 'x2APIC logical IPI 0x72 (s2): PPR = ISRV & 0xF0 with TPR 0 (SDM 11.8.3.1)',
  },
  {
    ids: /^ipi-x2apic-4\/\d+:s12\.irq1\.isr$/,
    value: '7b',
    source: 'sdm',
    note: 'x2APIC logical IPI 0x7B (s12): Bochs delivers it to vCPU 0 only, KVM to all four without setting ISR; in the handler ISR = {0x7B}',
  },
  {
    ids: /^ipi-x2apic-4\/\d+:s12\.irq1\.ppr$/,
    value: '70',
    source: 'sdm',
    note: 'x2APIC logical IPI 0x7B (s12): PPR = ISRV & 0xF0 with TPR 0',
  },
];

const other = (o: OracleName): OracleName => (o === 'kvm' ? 'bochs' : 'kvm');

/** Whether an oracle's value of a check is not the emulator's (a deviation, or a 6.18-vs-v6.3 difference for KVM). */
export function oracleDeviates(oracle: OracleName, id: string): string[] {
  const ids = deviationsCovering(oracle, id).map((d) => d.id);
  if (oracle === 'kvm') ids.push(...versionDifferencesCovering(id).map((v) => v.id));
  return ids;
}

/** The recorded run of a guest on an oracle, parsed (undefined when that oracle cannot run it). */
export function recordedParsed(oracle: OracleName, guest: ApicGuest): ParsedApicConsole | undefined {
  if (oracle === 'bochs' && guest.bochsDeviation) return undefined;
  const r = recordedGuest(oracle, guest.name);
  if (!r) throw new Error(`guest ${guest.name} is not in the ${oracle} recording: run npx tsx scripts/oracle-record-apic.ts`);
  return parseApicConsole(consoleOf(r));
}

/** Keys of `a` in order, with the keys only `b` has inserted after their predecessor in `b`. */
function mergeOrder(a: string[], b: string[]): string[] {
  const out = [...a];
  const seen = new Set(a);
  let prev: string | undefined;
  for (const k of b) {
    if (!seen.has(k)) {
      const at = prev === undefined ? -1 : out.indexOf(prev);
      out.splice(at + 1, 0, k);
      seen.add(k);
    }
    prev = k;
  }
  return out;
}

function describe(guest: ApicGuest, key: string, field: boolean): string {
  const base = field ? key.slice(0, key.lastIndexOf('.')) : key;
  const f = field ? key.slice(key.lastIndexOf('.') + 1) : '';
  const info = guest.checks.find((c) => c.key === base);
  if (info) return field ? `${info.what}: ${f}` : info.what;
  const irq = /^\d+:(?:([a-z0-9-]+)\.)?irq(\d+)$/.exec(base);
  if (irq) return `interrupt ${irq[2]} taken${irq[1] ? ` in phase ${irq[1]}` : ''}, snapshot in its handler before EOI: ${f === 'v' ? 'vector' : f}`;
  return field ? `${base}: ${f}` : base;
}

const cache = new Map<string, GuestExpectation>();

/** The expectation of every check of a guest. */
export function expectedFor(guest: ApicGuest): GuestExpectation {
  const hit = cache.get(guest.name);
  if (hit) return hit;
  const dflt = guest.defaultSource;
  const parsed: Record<OracleName, ParsedApicConsole | undefined> = { kvm: recordedParsed('kvm', guest), bochs: recordedParsed('bochs', guest) };
  const dp = parsed[dflt];
  if (!dp) throw new Error(`guest ${guest.name}: its default oracle ${dflt} cannot run it`);
  const op = parsed[other(dflt)];
  const dv = dp.values;
  const ov = op?.values;
  const fieldKeys = new Set([...dp.fields, ...(op?.fields ?? [])]);
  const keys = mergeOrder([...dv.keys()], ov ? [...ov.keys()] : []);
  const checks: ExpectedCheck[] = [];
  const problems: string[] = [];
  for (const key of keys) {
    const id = checkId(guest.name, key);
    const field = fieldKeys.has(key);
    const base = { guest: guest.name, key, id, field, what: describe(guest, key, field) };
    const und = UNDEFINED.find((u) => u.ids.test(id));
    if (und) {
      checks.push({ ...base, value: null, source: 'undefined', note: und.reason });
      continue;
    }
    const v63 = v63Value(id);
    if (v63) {
      checks.push({ ...base, value: v63.value, source: 'v6.3', note: `version difference ${v63.row.id}: ${v63.row.v63}` });
      continue;
    }
    const ov1 = OVERRIDES.find((o) => o.ids.test(id));
    if (ov1) {
      checks.push({ ...base, value: ov1.value, source: ov1.source, note: ov1.note });
      continue;
    }
    const devD = oracleDeviates(dflt, id);
    if (!devD.length) {
      const v = dv.get(key);
      if (v !== undefined) checks.push({ ...base, value: v, source: dflt });
      continue; // printed only by the other oracle: expected absent (the other oracle deviates here, or the tests report it)
    }
    const o = other(dflt);
    // the default oracle deviates and the other one does not print the check: expected absent
    if (ov && !ov.has(key)) continue;
    const devO = ov ? oracleDeviates(o, id) : ['cannot run the guest'];
    if (!devO.length) {
      const v = ov!.get(key);
      if (v !== undefined) checks.push({ ...base, value: v, source: o, note: `${dflt} deviates here: ${devD.join(', ')}` });
      continue;
    }
    problems.push(`${id}: ${dflt} deviates (${devD.join(', ')}) and ${o} deviates (${devO.join(', ')}): add an entry to OVERRIDES`);
  }
  const r: GuestExpectation = { guest, checks, problems };
  cache.set(guest.name, r);
  return r;
}

/** Every guest's expectation. */
export function allExpected(): GuestExpectation[] {
  return apicGuests().map(expectedFor);
}

/** Count of checks per source over the corpus. */
export function sourceCounts(): Record<ExpectedSource, number> {
  const out: Record<ExpectedSource, number> = { kvm: 0, bochs: 0, 'v6.3': 0, sdm: 0, undefined: 0 };
  for (const g of allExpected()) for (const c of g.checks) out[c.source]++;
  return out;
}

// oracles.test.ts - the LAPIC corpus against its two oracles: (a) the recorded results
// (kvm-apic.json, bochs-apic.json) match the corpus generated now, and the corpus is what nasm
// assembles; the expectation (expected.ts) decides every check, and each recording differs from
// it only where deviations.ts / version-differences.ts say, every scoped row being exercised;
// (b) Bochs, run live, still gives its recording and differs from the expectation only where
// its deviations say; (c) where /dev/kvm exists, KVM run live still gives its recording; and
// compareApicEmulator() finds nothing in a replay of the expectation and reports a broken one.
// Without Bochs, (b) prints "Bochs oracle unavailable: <reason>" and is skipped (a failure under
// CI=true); without /dev/kvm, (c) prints "real KVM oracle unavailable: <reason>" and is skipped.
import assert from 'node:assert/strict';
import { runOnBochs } from '../bochs/bochs';
import { runOnKvm } from '../kvm/kvm';
import { skipUnlessOracle } from '../skip';
import type { RunGuest } from '../diff/emulator-interface';
import {
  compareApicEmulator, compareWithExpected, expectedConsole, formatApicMismatches, type ApicMismatch, oracleVsExpected,
} from './compare';
import { apicGuests, nasmCrossCheckApic } from './corpus';
import { parseApicConsole } from './console';
import { APIC_DEVIATIONS, apicDeviation } from './deviations';
import { allExpected, expectedFor, sourceCounts } from './expected';
import {
  apicRecording, apicRecordingStaleness, consoleOf, type OracleName, RECORD_COMMAND, RECORDING_PATHS, recordedGuest,
} from './recording';
import { VERSION_DIFFERENCES } from './version-differences';

const guests = apicGuests();
const stale = (o: OracleName) => apicRecordingStaleness(apicRecording(o), o);
const fresh = () => !stale('kvm').length && !stale('bochs').length;

function recorded(o: OracleName, name: string) {
  const r = recordedGuest(o, name);
  if (!r) throw new Error(`guest ${name} is not in ${RECORDING_PATHS[o]}: run ${RECORD_COMMAND}`);
  return r;
}

/** Scoped rows of one oracle that no difference exercised. */
function unexercised(oracle: OracleName, covered: Map<string, string[]>): string[] {
  const rows = APIC_DEVIATIONS.filter((d) => d.oracle === oracle && d.scope?.ids).map((d) => d.id);
  if (oracle === 'kvm') rows.push(...VERSION_DIFFERENCES.filter((v) => v.differs).map((v) => v.id));
  return rows.filter((id) => !covered.get(id)?.length);
}

function merge(into: Map<string, string[]>, from: Map<string, string[]>): void {
  for (const [k, v] of from) into.set(k, [...(into.get(k) ?? []), ...v]);
}

describe('LAPIC corpus (test/oracle/apic)', function () {
  it('covers IA32_APIC_BASE, the x2APIC MSRs, the xAPIC page and interrupts, with unique guest names and check keys', function () {
    assert.equal(new Set(guests.map((g) => g.name)).size, guests.length);
    const keys = guests.flatMap((g) => g.checks.map((c) => `${g.name}/${c.key}`));
    assert.equal(new Set(keys).size, keys.length);
    assert.ok(keys.length >= 700, `${keys.length} checks`);
    const need: [string, RegExp][] = [
      ['APIC_BASE on the BSP and an AP', /^apic-base\/(?:0:base\.init|1:ap\.base\.init)$/],
      ['x2APIC -> xAPIC', /^apic-base\/0:x2\.wr\.to-xapic$/],
      ['disabled -> x2APIC', /^apic-base\/0:dis\.wr\.to-x2$/],
      ['EXTD without EN', /^apic-base\/0:xapic\.wr\.extd-only$/],
      ['relocation', /^apic-base\/0:xapic\.wr\.reloc$/],
      ['every MSR 0x800-0x83F read in x2APIC mode', /^x2apic-msrs\/0:rd\.83f$/],
      ['every MSR 0x800-0x83F read in xAPIC mode', /^x2apic-msrs\/0:xapic\.rd\.800$/],
      ['bits 63:32', /^x2apic-msrs\/0:tpr\.wr\.hi$/],
      ['ICR 64-bit read-back', /^x2apic-msrs\/0:icr\.rd\.dest-hi$/],
      ['SELF_IPI reserved bits', /^x2apic-msrs\/0:self\.wr\.140$/],
      ['ESR non-zero', /^x2apic-msrs\/0:esr\.wr\.1$/],
      ['LDR on several vCPUs', /^x2apic-ids\/16:x2\.ldr$/],
      ['every xAPIC offset', /^xapic-mmio\/0:rd\.3f0$/],
      ['MMIO in x2APIC mode', /^xapic-mmio\/0:x2\.030$/],
      ['MMIO while disabled', /^xapic-mmio\/0:dis\.030$/],
      ['interrupt snapshots', /^irq-xapic\/0:nest\.in$/],
      ['the one-shot timer', /^irq-x2apic\/0:timer\.tmcct$/],
      ['IPI counts', /^ipi-xapic-4\/3:cnt$/],
    ];
    for (const [what, re] of need) assert.ok(keys.some((k) => re.test(k)), `no check for ${what}`);
    for (let m = 0x800; m <= 0x83f; m++) assert.ok(keys.includes(`x2apic-msrs/0:rd.${m.toString(16)}`), `MSR ${m.toString(16)} not read`);
    for (let off = 0; off <= 0x3f0; off += 0x10) assert.ok(keys.includes(`xapic-mmio/0:rd.${off.toString(16).padStart(3, '0')}`), `offset ${off.toString(16)} not read`);
  });

  it('every guest assembles to the same bytes with nasm (when nasm is installed)', function () {
    const bad: string[] = [];
    for (const g of guests) {
      const r = nasmCrossCheckApic(g);
      if (!r) { console.log('nasm not found: cross-check skipped'); return; }
      if (!r.same) bad.push(`${g.name}: ${r.detail}`);
    }
    assert.deepEqual(bad, []);
  });

  it('(a) the KVM and Bochs recordings are up to date with the generated corpus', function () {
    for (const o of ['kvm', 'bochs'] as const) {
      const s = stale(o);
      assert.deepEqual(s, [], `${RECORDING_PATHS[o]} does not match the corpus:\n  ${s.slice(0, 10).join('\n  ')}\nRe-record (KVM needs /dev/kvm): ${RECORD_COMMAND}`);
    }
  });

  describe('on the recordings', function () {
    before(function () {
      if (!fresh()) this.skip(); // reported by (a)
    });

    it('KVM ran every guest to the end: every vCPU done at the done site, every check printed once, no fatal or timeout line', function () {
      for (const g of guests) {
        const r = recorded('kvm', g.name);
        assert.equal(r.status, 'done', `${g.name}: ${r.status} ${r.error ?? ''}`);
        assert.equal(r.vcpuState.length, g.vcpus);
        for (const v of r.vcpuState) {
          assert.equal(v.state, 'done');
          assert.equal(BigInt(v.regs!.rip), BigInt(g.doneSites[0]), `${g.name} vCPU ${v.id} RIP`);
        }
        const p = parseApicConsole(consoleOf(r));
        assert.equal(p.guest, g.name);
        assert.ok(p.ended, `${g.name}: no E line`);
        assert.deepEqual(p.junk, [], `${g.name}: unparsed lines`);
        assert.deepEqual(p.duplicates, [], `${g.name}: duplicate checks`);
        const keys = [...p.values.keys()];
        for (const c of g.checks) assert.ok(keys.some((k) => k === c.key || k.startsWith(`${c.key}.`)), `${g.name}: check ${c.key} not printed`);
        assert.ok(!keys.some((k) => /:fatal$/.test(k) || p.values.get(k) === 'timeout'), `${g.name}: fatal or timeout line`);
      }
    });

    it('expected.ts decides every check of every guest', function () {
      const problems = allExpected().flatMap((e) => e.problems);
      assert.deepEqual(problems, []);
      for (const e of allExpected()) {
        const keys = e.checks.map((c) => c.key);
        for (const c of e.guest.checks) assert.ok(keys.some((k) => k === c.key || k.startsWith(`${c.key}.`)), `${e.guest.name}: no expectation for ${c.key}`);
      }
      const n = sourceCounts();
      console.log(`      expectations: ${Object.entries(n).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      assert.ok(n['v6.3'] > 0 && n.sdm > 0 && n.bochs > 0 && n.kvm > 0);
    });

    for (const o of ['kvm', 'bochs'] as const) {
      it(`the ${o} recording differs from the expectation only where the deviation tables say, and every scoped row is exercised`, function () {
        const covered = new Map<string, string[]>();
        const bad: ApicMismatch[] = [];
        for (const g of guests) {
          const r = recorded(o, g.name);
          if (o === 'bochs' && g.bochsDeviation) {
            const d = apicDeviation(g.bochsDeviation);
            assert.equal(r.status, 'error', `${g.name}: ${d.id} says Bochs cannot run it, but it recorded ${r.status}`);
            assert.match(r.error ?? '', d.scope!.errorPattern!);
            covered.set(d.id, [g.name]);
            continue;
          }
          const x = oracleVsExpected(o, expectedFor(g), { status: r.status, console: consoleOf(r), ...(r.error ? { error: r.error } : {}) }, `${o} (recorded)`);
          bad.push(...x.unexplained);
          merge(covered, x.covered);
        }
        if (bad.length) assert.fail(`${bad.length} difference(s) no deviation explains:\n${formatApicMismatches(bad)}`);
        assert.deepEqual(unexercised(o, covered), [], 'deviation rows whose scope matches no difference: fix or drop them');
      });
    }
  });
});

describe('(b) LAPIC corpus: Bochs live', function () {
  const covered = new Map<string, string[]>();
  before(function () {
    skipUnlessOracle(this, 'Bochs');
    if (!fresh()) this.skip(); // reported by (a)
  });

  for (const g of guests) {
    it(`${g.name} (${g.vcpus} vCPU${g.vcpus > 1 ? 's' : ''})`, function () {
      const b = runOnBochs(g.image, { vcpus: g.vcpus, doneSites: g.doneSites, timeoutMs: 120000 });
      const rec = recorded('bochs', g.name);
      if (g.bochsDeviation) {
        const d = apicDeviation(g.bochsDeviation);
        assert.equal(b.status, 'error', `${d.id}: Bochs was expected to stop`);
        assert.match(b.error ?? '', d.scope!.errorPattern!);
        covered.set(d.id, [g.name]);
        return;
      }
      assert.equal(b.status, rec.status, `${g.name}: Bochs ${b.status} ${b.error ?? ''}`);
      assert.equal(b.console, consoleOf(rec), `${g.name}: Bochs no longer gives its recording (${RECORDING_PATHS.bochs}); if Bochs changed on purpose, re-record: ${RECORD_COMMAND} --bochs-only`);
      const x = oracleVsExpected('bochs', expectedFor(g), b, 'bochs (live)');
      merge(covered, x.covered);
      if (x.unexplained.length) assert.fail(`${x.unexplained.length} difference(s) no Bochs deviation explains:\n${formatApicMismatches(x.unexplained)}`);
    });
  }

  it('every scoped Bochs deviation row was exercised', function () {
    assert.deepEqual(unexercised('bochs', covered), []);
  });
});

describe('(c) LAPIC corpus: real KVM live vs its recording', function () {
  before(function () {
    skipUnlessOracle(this, 'real KVM');
    if (!fresh()) this.skip(); // reported by (a)
  });

  it('every guest gives the recorded status, console and end state', function () {
    const diffs: string[] = [];
    let kernel = '';
    for (const g of guests) {
      const r = runOnKvm(g.image, { vcpus: g.vcpus, timeoutMs: 60000 });
      kernel ||= r.kernel;
      const rec = recorded('kvm', g.name);
      if (r.status !== rec.status) diffs.push(`${g.name}: status ${r.status} ${r.error ?? ''}, recorded ${rec.status}`);
      if (r.console !== consoleOf(rec)) {
        const a = parseApicConsole(consoleOf(rec)).values;
        const b = parseApicConsole(r.console).values;
        const keys = [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k));
        diffs.push(`${g.name}: ${keys.length} check(s) differ: ${keys.slice(0, 6).map((k) => `${k} ${b.get(k) ?? '(absent)'} (recorded ${a.get(k) ?? '(absent)'})`).join('; ')}`);
      }
      for (const v of rec.vcpuState) {
        const lv = r.vcpus.find((x) => x.id === v.id);
        if (lv?.state !== v.state || lv?.regs.rip !== v.regs?.rip) diffs.push(`${g.name}: vCPU ${v.id} ${lv?.state} at ${lv?.regs.rip}, recorded ${v.state} at ${v.regs?.rip}`);
      }
    }
    const rec = apicRecording('kvm')!;
    const host = kernel === rec.version ? '' : ` (kernel ${kernel} now, ${rec.version} recorded)`;
    if (diffs.length) assert.fail(`real KVM no longer gives the recorded results${host}:\n${diffs.join('\n')}\nIf the host changed on purpose, re-record: ${RECORD_COMMAND} --kvm-only`);
  });
});

describe('compareApicEmulator() on a replay of the expectation', function () {
  before(function () {
    if (!fresh()) this.skip(); // reported by (a)
  });

  const byImage = new Map(guests.map((g) => [Buffer.from(g.image).toString('base64'), g]));
  const replay = (edit?: (name: string, text: string) => string): RunGuest => (image) => {
    const g = byImage.get(Buffer.from(image).toString('base64'))!;
    const text = expectedConsole(expectedFor(g));
    const vcpus = recorded('kvm', g.name).vcpuState.map((v) => ({ id: v.id, state: v.state, regs: v.regs ?? {} }));
    return { status: 'done', console: edit ? edit(g.name, text) : text, vcpus };
  };

  it('finds no mismatch when the emulator prints exactly the expected values', function () {
    const r = compareApicEmulator(replay());
    assert.equal(r.mismatches.length, 0, r.report);
    assert.equal(r.guests, guests.length);
    assert.ok(r.checks > 1000, `${r.checks} checks`);
    console.log(`      ${r.report}`);
  });

  it('reports a wrong value, a missing check and an extra line with the check, its source and both values', function () {
    const r = compareApicEmulator(replay((name, text) => name !== 'x2apic-msrs' ? text : text
      .replace('0:rd.803 50014\n', '0:rd.803 50015\n')
      .replace(/0:icr\.rd\.rsvd13 [^\n]*\n/, '')
      .replace('0:wr.to-x2 ok\n', '0:wr.to-x2 ok\n0:wait9 timeout\n')), { guests: ['x2apic-msrs', 'irq-xapic'] });
    assert.equal(r.mismatches.length, 3, r.report);
    assert.match(r.report, /x2apic-msrs, vCPU 0, rd\.803 \(RDMSR 0x803 right after entering x2APIC mode\):\n {2}expected \(kvm\): 50014\n {2}emulator: 50015/);
    assert.match(r.report, /icr\.rd\.rsvd13[^\n]*\n {2}expected \(v6\.3\): 5500002042\n {2}emulator: \(absent\)/);
    assert.match(r.report, /wait9[^\n]*\n {2}expected \(kvm\): \(absent\)\n {2}emulator: timeout/);
    const status = compareWithExpected(expectedFor(guests[0]), { status: 'step-limit', console: '' }, 'emulator');
    assert.ok(status.some((m) => m.what === 'run status') && status.some((m) => m.what === 'E line'));
  });
});

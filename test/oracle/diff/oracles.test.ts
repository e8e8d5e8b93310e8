// oracles.test.ts - the differential corpus against its two oracles: (a) the recorded real-KVM
// results match the corpus generated now (and the corpus is what nasm assembles); (b) Bochs,
// run live, agrees with the recorded KVM output once exactly the SDM-undefined bits
// (undefined-flags.ts) and the listed deviations (deviations.ts) are masked, and both oracles
// meet the SDM expectations of the exception records; (c) where /dev/kvm exists, KVM run live
// still gives the recorded output. Without Bochs the Bochs suite prints "Bochs oracle
// unavailable: <reason>" and is skipped, except under CI=true where it fails.
import assert from 'node:assert/strict';
import { bochsAvailable, runOnBochs } from '../bochs/bochs';
import { runOnKvm } from '../kvm/kvm';
import { skipUnlessOracle } from '../skip';
import { checkKvmModels, type Sample, undefinedSamples } from './analyze-undefined';
import {
  checkComplete, checkExpectations, compareConsoles, compareEmulatorWithOracles, formatMismatches, type Mismatch, parseConsole,
  recordedKvmRun, type RunOutput,
} from './compare';
import { corpusGuests, type CorpusGuest, nasmCrossCheck } from './corpus';
import { deviation, DEVIATIONS } from './deviations';
import type { RunGuest } from './emulator-interface';
import { consoleText, type KvmRecording, loadRecording, RECORD_COMMAND, RECORDING_PATH, recordingStaleness } from './recording';
import { flagEffect, flagNames, UNDEFINED_FLAGS } from './undefined-flags';

const guests: readonly CorpusGuest[] = corpusGuests();
const recording: KvmRecording | undefined = loadRecording();

function fail(ms: Mismatch[], what: string): void {
  if (ms.length) assert.fail(`${ms.length} mismatch(es), ${what}:\n${formatMismatches(ms)}`);
}

function recordedGuest(name: string) {
  const r = recording?.guests.find((g) => g.name === name);
  if (!r) throw new Error(`guest ${name} is not in ${RECORDING_PATH}: run ${RECORD_COMMAND}`);
  return r;
}

describe('differential corpus (test/oracle/diff)', function () {
  it('has at least 500 sequences in a few dozen guests, covering every instruction the brief lists', function () {
    const seqs = guests.flatMap((g) => g.sequences);
    assert.ok(seqs.length >= 500, `${seqs.length} sequences`);
    assert.ok(guests.length >= 20 && guests.length <= 60, `${guests.length} guests`);
    for (const g of guests) assert.ok(g.sequences.length <= 60, `${g.name}: ${g.sequences.length} sequences`);
    const text = seqs.map((s) => s.body.join('\n')).join('\n');
    const required = [
      'add', 'adc', 'sub', 'sbb', 'and', 'or', 'xor', 'not', 'neg', 'inc', 'dec', 'cmp', 'test', 'shl', 'sal', 'shr', 'sar',
      'rol', 'ror', 'rcl', 'rcr', 'mul', 'imul', 'div', 'idiv', 'xchg', 'xadd', 'cmpxchg', 'bt', 'bts', 'btr', 'btc', 'bsf',
      'bsr', 'lea', 'movzx', 'movsx', 'movsxd', 'cbw', 'cwde', 'cdqe', 'cwd', 'cdq', 'cqo', 'pushfq', 'popfq', 'movsb',
      'stosq', 'lodsw', 'cmpsd', 'scasb', 'rep', 'repe', 'repne', 'loop', 'loope', 'loopne', 'jrcxz', 'jecxz', 'ud2', 'wrmsr',
      'int3', 'int', 'int1',
    ];
    for (const mn of required) assert.match(text, new RegExp(`(^|\\s)${mn}\\b`, 'm'), `no sequence uses ${mn}`);
    for (const cc of ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g']) {
      for (const k of ['set', 'cmov', 'j']) {
        assert.ok(seqs.some((s) => s.insns.some((i) => i.mn === `${k}${cc}`)), `no ${k}${cc}`);
      }
    }
    for (const reg of ['ah', 'bh', 'ch', 'dh', 'r8', 'r15', 'r9d', 'r12w', 'r14b']) assert.match(text, new RegExp(`\\b${reg}\\b`), `no operand ${reg}`);
    assert.match(text, /\[rel /, 'no RIP-relative operand');
    for (const s of seqs) for (const i of s.insns) flagEffect(i); // every instruction has a flag rule
  });

  it('guest names and sequence ids are unique', function () {
    const names = guests.map((g) => g.name);
    assert.equal(new Set(names).size, names.length);
    const ids = guests.flatMap((g) => g.sequences.map((s) => s.id));
    assert.equal(new Set(ids).size, ids.length);
  });

  it('every guest assembles to the same bytes with nasm (when nasm is installed)', function () {
    const bad: string[] = [];
    let checked = 0;
    for (const g of guests) {
      const r = nasmCrossCheck(g);
      if (!r) { console.log('nasm not found: cross-check skipped'); return; }
      checked++;
      if (!r.same) bad.push(`${g.name}: ${r.detail}`);
    }
    assert.deepEqual(bad, [], `our assembler and nasm differ:\n${bad.join('\n')}`);
    assert.equal(checked, guests.length);
  });

  it('(a) the recorded KVM results are up to date with the generated corpus', function () {
    const stale = recordingStaleness(recording);
    assert.deepEqual(stale, [], `the KVM recording ${RECORDING_PATH} does not match the corpus:\n  ${stale.slice(0, 10).join('\n  ')}\n` +
      `Re-record on a machine with /dev/kvm: ${RECORD_COMMAND}`);
  });

  it('the recording shows each listed KVM deviation, and KVM meets the SDM expectations elsewhere', function () {
    const ms: Mismatch[] = [];
    for (const g of guests) {
      const r = recordedGuest(g.name);
      if (g.kvmDeviation) {
        const d = deviation(g.kvmDeviation);
        assert.equal(r.status, 'error', `${g.name}: deviation ${d.id} says KVM cannot run it, but the recording has status ${r.status}: update deviations.ts`);
        assert.match(r.error ?? '', d.scope!.errorPattern!, `${g.name}: recorded error does not match deviation ${d.id}`);
        continue;
      }
      const kvm = recordedKvmRun(recording!, g)!;
      ms.push(...checkComplete(g, kvm), ...checkExpectations(g, kvm));
      // done vCPUs end at the done site with the epilogue's registers
      if (g.expectStatus === 'done') {
        assert.equal(BigInt(r.regs[0].regs.rip), BigInt(g.doneSites[0]), `${g.name}: RIP at the end is not the done site`);
        assert.equal(r.regs[0].regs.rflags, '0x0000000000000002', `${g.name}: RFLAGS at the end`);
      }
    }
    fail(ms, 'recorded KVM vs the corpus / SDM');
    for (const d of DEVIATIONS.filter((x) => x.scope?.guestUnsupported)) {
      assert.ok(guests.some((g) => g.kvmDeviation === d.id), `deviation ${d.id} has no corpus guest`);
    }
  });

  it('the KVM rules of undefined-flags.ts predict every recorded undefined flag', function () {
    const samples: Sample[] = [];
    for (const g of guests) {
      if (g.kvmDeviation) continue;
      samples.push(...undefinedSamples(g, consoleText(recordedGuest(g.name))).values());
    }
    assert.ok(samples.length > 300, `${samples.length} samples`);
    const bad = checkKvmModels(samples);
    assert.deepEqual(bad.map((b) => `${b.sample.seq.body[0]} (${b.sample.rule}): KVM ${flagNames(b.got)}, rule says ${flagNames(b.predicted)} (of ${flagNames(b.bits)})`), []);
    for (const r of UNDEFINED_FLAGS) {
      assert.ok(samples.some((s) => s.rule === r.id), `rule ${r.id} has no single-instruction sample in the corpus`);
    }
  });
});

/** A copy of a console with the `#` line of sequence `id` changed by `edit` (on DUMP_FIELDS values). */
function editDump(consoleOut: string, id: number, edit: (v: bigint[]) => void): string {
  const tag = `#${id.toString(16).padStart(4, '0')} `;
  let hit = false;
  const out = consoleOut.split('\n').map((l) => {
    if (!l.startsWith(tag)) return l;
    hit = true;
    const v = l.slice(tag.length).split(' ').map((h) => BigInt(`0x${h}`));
    edit(v);
    return tag + v.map((x) => x.toString(16).padStart(16, '0')).join(' ');
  });
  assert.ok(hit, `no # line for 0x${id.toString(16)}`);
  return out.join('\n');
}

describe('comparison (compare.ts) on the recorded KVM output', function () {
  before(function () {
    if (recordingStaleness(recording).length) this.skip(); // reported by (a)
  });

  it('masks exactly the undefined flags of a sequence and reports any other bit with its source', function () {
    const g = guests.find((x) => x.name.startsWith('muldiv'))!;
    const seq = g.sequences.find((s) => s.insns[0].mn === 'mul')!;
    assert.equal(seq.undefinedFlags, 0xd4, 'mul leaves SF ZF AF PF undefined');
    const kvm = recordedKvmRun(recording!, g)!;
    const asBochs = (c: string): RunOutput => ({ label: 'bochs', side: 'bochs', status: 'done', console: c });
    // every undefined bit flipped: no mismatch
    assert.deepEqual(compareConsoles(g, kvm, asBochs(editDump(kvm.console, seq.id, (v) => { v[16] ^= 0xd4n; }))), []);
    // a defined bit (CF): exactly one mismatch, printed with both values, the bit name and the source
    const ms = compareConsoles(g, kvm, asBochs(editDump(kvm.console, seq.id, (v) => { v[16] ^= 0x1n; })));
    assert.equal(ms.length, 1);
    assert.equal(ms[0].field, 'rflags');
    const text = formatMismatches(ms);
    assert.match(text, /differing bits: CF/);
    assert.match(text, /masked: 0x00000000000000d4 \(undefined flags PF\|AF\|ZF\|SF \(mul\)\)/);
    assert.ok(text.includes(seq.source.split('\n')[0]), 'the report shows the sequence source');
    // a register bit and a memory qword
    assert.equal(compareConsoles(g, kvm, asBochs(editDump(kvm.console, seq.id, (v) => { v[9] ^= 1n << 40n; }))).map((m) => m.field).join(), 'r9');
    // KVM vs the emulator: KVM's deterministic undefined bits are compared (its rule is the spec)
    const asEmu = (c: string): RunOutput => ({ label: 'emulator', side: 'emulator', status: 'done', console: c });
    assert.equal(compareConsoles(g, kvm, asEmu(editDump(kvm.console, seq.id, (v) => { v[16] ^= 0x40n; }))).length, 1, 'ZF after mul');
    assert.equal(compareConsoles(g, kvm, asEmu(editDump(kvm.console, seq.id, (v) => { v[16] ^= 0x40n; })), { strictKvmUndefined: false }).length, 0);
  });

  it('a missing sequence, a missing exception record and a wrong status are reported', function () {
    const g = guests.find((x) => x.name === 'exceptions-1')!;
    const kvm = recordedKvmRun(recording!, g)!;
    const lines = kvm.console.split('\n');
    const cut = lines.filter((l) => !l.startsWith('x ')).join('\n');
    const run: RunOutput = { label: 'emulator', side: 'emulator', status: 'step-limit', console: cut };
    const ms = [...checkComplete(g, run), ...checkExpectations(g, run), ...compareConsoles(g, kvm, run)];
    assert.ok(ms.some((m) => m.field === 'status'));
    assert.ok(ms.some((m) => m.field === 'exceptions taken'));
    const noSeq = lines.filter((l) => !l.startsWith(`#${g.sequences[3].id.toString(16).padStart(4, '0')}`)).join('\n');
    assert.ok(checkComplete(g, { ...run, status: 'done', console: noSeq }).some((m) => m.field === 'sequences'));
  });
});

describe('(b) Bochs live vs the recorded real-KVM results', function () {
  before(function () {
    skipUnlessOracle(this, 'Bochs');
    if (recordingStaleness(recording).length) this.skip(); // reported by (a)
  });

  for (const g of guests) {
    it(`${g.name} (${g.sequences.length} sequences${g.kvmDeviation ? `; KVM cannot run it: ${g.kvmDeviation}` : ''})`, function () {
      const b = runOnBochs(g.image, { vcpus: g.vcpus, doneSites: g.doneSites, timeoutMs: 60000 });
      const bochs: RunOutput = { label: 'bochs', side: 'bochs', status: b.status, console: b.console, ...(b.error ? { error: b.error } : {}) };
      const ms: Mismatch[] = [...checkComplete(g, bochs), ...checkExpectations(g, bochs)];
      if (!g.kvmDeviation) ms.push(...compareConsoles(g, recordedKvmRun(recording!, g)!, bochs));
      else {
        // KVM stopped at the first instruction of the case: the common prefix must still agree
        const k = parseConsole(consoleText(recordedGuest(g.name)));
        assert.equal(k.guest, g.name);
      }
      fail(ms, `guest ${g.name}, recorded KVM vs Bochs (masked: SDM-undefined flags and deviations.ts)`);
    });
  }
});

describe('(c) real KVM live vs its recording (a changed host shows here)', function () {
  before(function () {
    skipUnlessOracle(this, 'real KVM');
    if (recordingStaleness(recording).length) this.skip(); // reported by (a)
  });

  it('every guest gives the recorded status, console and registers', function () {
    const diffs: string[] = [];
    const ms: Mismatch[] = [];
    let kernel = '';
    for (const g of guests) {
      const r = runOnKvm(g.image, { vcpus: g.vcpus, timeoutMs: 60000 });
      kernel ||= r.kernel;
      const rec = recordedGuest(g.name);
      if (r.status !== rec.status) diffs.push(`${g.name}: status ${r.status}${r.error ? ` (${r.error})` : ''}, recorded ${rec.status}`);
      if (r.console !== consoleText(rec)) {
        const live: RunOutput = { label: 'kvm (live)', side: 'kvm', status: r.status, console: r.console };
        const found = compareConsoles(g, recordedKvmRun(recording!, g)!, live, { strictKvmUndefined: true });
        // compareConsoles masks undefined flags; a live-vs-recorded difference must show even there
        ms.push(...found);
        if (!found.length) diffs.push(`${g.name}: console differs from the recording (only in masked bits)`);
      }
      for (const v of rec.regs) {
        const lv = r.vcpus.find((x) => x.id === v.id);
        for (const [k, want] of Object.entries(v.regs)) {
          const got = (lv?.regs as Record<string, string> | undefined)?.[k];
          if (got !== want) diffs.push(`${g.name}: vCPU ${v.id} ${k} ${got}, recorded ${want}`);
        }
      }
    }
    const host = kernel === recording!.kernel ? '' : ` (kernel ${kernel} now, ${recording!.kernel} recorded)`;
    if (diffs.length || ms.length) {
      assert.fail(`real KVM no longer gives the recorded results${host}:\n${diffs.slice(0, 20).join('\n')}\n${formatMismatches(ms)}\n` +
        `If the host changed on purpose, re-record: ${RECORD_COMMAND}`);
    }
  });
});

describe('compareEmulatorWithOracles() with a replay of the oracles as the "emulator"', function () {
  before(function () {
    if (!bochsAvailable().ok || recordingStaleness(recording).length) this.skip(); // reported above
  });

  it('finds no mismatch when the emulator gives KVM\'s output (Bochs\'s where KVM cannot run the guest)', function () {
    const byImage = new Map(guests.map((g) => [Buffer.from(g.image).toString('base64'), g]));
    const replay: RunGuest = (image, opts) => {
      const g = byImage.get(Buffer.from(image).toString('base64'))!;
      if (g.kvmDeviation || g.sequences.some((s) => s.tags.includes('exc:gp-cr4-high'))) {
        const b = runOnBochs(image, { vcpus: opts.vcpus, doneSites: g.doneSites });
        return { status: b.status, console: b.console, vcpus: g.kvmDeviation ? [] : recordedGuest(g.name).regs };
      }
      const r = recordedGuest(g.name);
      return { status: r.status, console: consoleText(r), vcpus: r.regs };
    };
    const t0 = Date.now();
    const res = compareEmulatorWithOracles(replay);
    assert.equal(res.guests, guests.length);
    assert.equal(res.mismatches.length, 0, res.report);
    assert.ok(Date.now() - t0 < 60000);
  });
});

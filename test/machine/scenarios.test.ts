// The thread's scenarios (contracts/kvm-model.md, "Scenarios and expected outcomes"): every
// example under every design, several seeds and both schedulers, against the contract's table.
// The options come from each example's `; avic-run:` line, as `avic run` reads them.

import assert from 'node:assert/strict';
import { DESIGN_NAMES, type DesignName } from '../../src/machine/kvm/design';
import { DEFAULT_OPTIONS, Machine, type MachineOptions } from '../../src/machine/machine';
import { runResult, type RunResult } from '../../src/machine/result';
import { applyRunFlags } from '../../src/machine/run-options';
import { loadExample } from './helpers';

interface Case {
  readonly name: string;
  readonly example: string;
  readonly extra?: Partial<MachineOptions>;
  /** the first violation each design must report (absent: a clean run, status done) */
  readonly expect: Partial<Record<DesignName, string>>;
  readonly check?: (r: RunResult, m: Machine, design: DesignName) => void;
}

const S1_VALUES = 'vcpu 0 lvr ffffffff\nvcpu 1 lvr 00050014\n';
const x2apicMmio = 'xapic-access-in-x2apic-mode';

function action(text: string): Partial<MachineOptions> {
  return { hostActions: applyRunFlags(DEFAULT_OPTIONS, new Map([['--host-action', [text]]])).hostActions };
}

const CASES: readonly Case[] = [
  {
    name: 'S1 x2apic-hybrid-mmio', example: 'x2apic-hybrid-mmio.vasm',
    expect: { 'pre-fix': x2apicMmio, 'srcu-drop-in-inhibit': x2apicMmio, 'toggle-in-update': x2apicMmio },
    check: (r) => assert.equal(r.console, S1_VALUES),
  },
  { name: 'S2 (a) guest WRMSR', example: 'apic-base-srcu-wrmsr.vasm', expect: {} },
  { name: 'S2 (b) set-apic-base-sregs x2APIC', example: 'apic-base-srcu.vasm', extra: action('out=1:set-apic-base-sregs=0xfee00c00'), expect: { 'drop-in-update-direct': 'srcu-unlock-unbalanced' } },
  { name: 'S2 (c) set-apic-base-msrs x2APIC', example: 'apic-base-srcu.vasm', extra: action('out=1:set-apic-base-msrs=0xfee00c00'), expect: { 'drop-in-update-direct': 'srcu-unlock-unbalanced' } },
  ...(['set-apic-base-sregs=0xfee10800', 'set-apic-base-msrs=0xfee10800', 'set-lapic-id=5', 'guest-debug-blockirq=on'] as const).map((a, i): Case => ({
    name: `S2 (${'defg'[i]}) ${a}`, example: 'apic-base-srcu.vasm', extra: action(`out=1:${a}`),
    expect: { 'srcu-drop-in-inhibit': 'srcu-unlock-unbalanced', 'toggle-in-update': 'memslot-double-toggle' },
  })),
  {
    name: 'S3 apicv-update-all-vcpus', example: 'apicv-update-all-vcpus.vasm',
    expect: { 'srcu-drop-in-inhibit': 'lock-order-inversion', 'toggle-in-update': 'memslot-double-toggle' },
    check: (r, m) => {
      // the flip reached all four vCPUs, and the inhibit cleared again
      const flips = m.events.filter((e) => e.kind === 'inhibit-change' && e.flip);
      assert.equal(flips.length, 2);
      assert.deepEqual(r.vm!.apicvInhibits, []);
      const requested = new Set(m.events.filter((e) => e.kind === 'request-make' && e.name === 'KVM_REQ_APICV_UPDATE').map((e) => e.kind === 'request-make' && e.target));
      assert.equal(requested.size, 4);
    },
  },
  {
    name: 'S4 nested-uninhibit', example: 'nested-uninhibit.vasm', expect: {},
    check: (r, m, design) => {
      assert.equal(r.console, 'l2 exit code 00000081\n');
      const slot = m.events.filter((e) => e.kind === 'memslot-change' && e.changed).map((e) => e.kind === 'memslot-change' && e.create);
      assert.deepEqual(slot, design === 'toggle-in-update' ? [false, true] : [], 'the slot is deleted at VMRUN and created at the #VMEXIT only under toggle-in-update');
      const atVmexit = m.events.filter((e) => e.kind === 'apicv-update' && e.activate && e.hostStack?.includes('nested_svm_vmexit'));
      assert.ok(atVmexit.length >= 1, 'nested_svm_vmexit re-activates APICv directly');
      const wrapper = atVmexit.some((e) => e.hostStack!.includes('kvm_vcpu_update_apicv') && e.hostStack!.includes('__kvm_vcpu_update_apicv'));
      assert.equal(wrapper, design === 'nested-direct-update');
    },
  },
];

const SCHEDULES: readonly Partial<MachineOptions>[] = [
  { sched: 'rr', quantum: 1000 }, { sched: 'rr', quantum: 7 },
  { sched: 'random', seed: 1 }, { sched: 'random', seed: 2 }, { sched: 'random', seed: 3, quantum: 50 },
];

describe('the thread\'s scenarios under every design (contracts/kvm-model.md)', function () {
  this.timeout(120_000);
  for (const c of CASES) {
    describe(c.name, () => {
      const prog = loadExample(c.example);
      for (const design of DESIGN_NAMES) {
        const want = c.expect[design];
        it(`${design}: ${want ?? 'clean'}`, () => {
          for (const sched of SCHEDULES) {
            const m = new Machine({ ...prog.options, ...c.extra, ...sched, design }, prog.image, prog.org, prog.end);
            const stop = m.run();
            const r = runResult(m, stop.kind === 'end' ? stop.status : 'step-limit');
            const where = `${design}, ${JSON.stringify(sched)}: ${r.violations.map((v) => `${v.kind}: ${v.message}`).join('; ')}`;
            if (want) {
              assert.equal(r.status, 'violation', where);
              assert.equal(r.violations[0].kind, want, where);
              assert.ok(r.violations[0].hostStack.length > 0, where);
            } else {
              assert.equal(r.status, 'done', where);
              assert.deepEqual(r.violations, [], where);
              assert.deepEqual(m.errors, [], where);
              c.check?.(r, m, design);
            }
          }
        });
      }
    });
  }

  it('--keep-going records the violation and runs to the end', () => {
    const prog = loadExample('apicv-update-all-vcpus.vasm');
    const m = new Machine({ ...prog.options, design: 'toggle-in-update', keepGoing: true }, prog.image, prog.org, prog.end);
    const stop = m.run();
    assert.deepEqual(stop, { kind: 'end', status: 'done' });
    assert.equal(m.violations[0].kind, 'memslot-double-toggle');
    assert.ok(m.violations.length > 1);
  });

  it('srcu-drop-in-inhibit, S3 under --keep-going: the inversion becomes the deadlock lockdep predicted', () => {
    const prog = loadExample('apicv-update-all-vcpus.vasm');
    const m = new Machine({ ...prog.options, design: 'srcu-drop-in-inhibit', keepGoing: true }, prog.image, prog.org, prog.end);
    assert.deepEqual(m.run(), { kind: 'end', status: 'violation' });
    assert.deepEqual(m.violations.map((v) => v.kind), ['lock-order-inversion', 'deadlock']);
    const d = m.violations[1];
    assert.match(d.message, /vcpu 0 waits for an SRCU grace period of kvm->srcu \(held by vcpu 1, vcpu 2, vcpu 3\) in synchronize_srcu_expedited from kvm_swap_active_memslots/);
    assert.match(d.message, /vcpu 1 waits for apicv_update_lock \(held by vcpu 0\) in down_read from kvm_vcpu_update_apicv/);
    assert.equal(d.hostStack[0], 'synchronize_srcu_expedited');
    assert.deepEqual(['blocked', 'blocked', 'blocked', 'blocked'], [0, 1, 2, 3].map((i) => m.vcpuState(i)));
  });

  it('a run in small budgets (as the debugger runs in chunks) schedules exactly as one run', () => {
    const prog = loadExample('apicv-update-all-vcpus.vasm');
    for (const sched of [{ sched: 'rr', quantum: 50 }, { sched: 'random', seed: 7, quantum: 50 }] as const) {
      const whole = new Machine({ ...prog.options, ...sched }, prog.image, prog.org, prog.end);
      whole.run();
      const chunked = new Machine({ ...prog.options, ...sched }, prog.image, prog.org, prog.end);
      while (chunked.run(37).kind === 'budget');
      const trace = (m: Machine) => m.events.map((e) => `${e.seq} ${e.step} ${e.kind} ${e.vcpu}`);
      assert.deepEqual(trace(chunked), trace(whole));
    }
  });
});


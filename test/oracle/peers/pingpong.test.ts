// The IPI ping-pong guest of the benchmark (scripts/peers/pingpong.ts) does what it says on our
// machine under AVIC + x2AVIC and without AVIC (every vCPU counts every round trip, the IPIs went
// through the modelled kernel as expected), and on real KVM where /dev/kvm exists. No timing
// assertions: the figures are the benchmark's.

import { strict as assert } from 'node:assert';
import { assemble } from '../../../src/asm/assembler';
import { DEFAULT_OPTIONS, Machine } from '../../../src/machine/machine';
import { pingPongOnKvm, pingPongOnMachine, pingPongSource } from '../../../scripts/peers/pingpong';
import { skipUnlessOracle } from '../skip';

describe('peers: the x2APIC IPI ping-pong guest', () => {
  it('counts every round trip on both vCPUs, with AVIC + x2AVIC and with AVIC off', () => {
    for (const avic of [true, false]) assert.ok(pingPongOnMachine(50, avic) >= 0);
  });

  it('goes through the LAPIC paths it is meant to measure', () => {
    const counts = (avic: boolean) => {
      const a = assemble({ file: 'pp.vasm', text: pingPongSource(20), reader: { readFile: () => undefined } });
      const m = new Machine({ ...DEFAULT_OPTIONS, vcpus: 2, avic, x2avic: avic }, a.image, a.org, a.end);
      const stop = m.run();
      assert.deepEqual(stop, { kind: 'end', status: 'done' });
      return m.log.counts;
    };
    // x2AVIC: the ICR write to a vCPU that is not running exits as AVIC_INCOMPLETE_IPI; EOI is accelerated
    const on = counts(true);
    assert.ok((on.get('avic-incomplete-ipi') ?? 0) >= 20, `avic-incomplete-ipi ${on.get('avic-incomplete-ipi')}`);
    // AVIC off: every ICR and EOI write is an MSR exit handled by the kernel's LAPIC
    const off = counts(false);
    assert.ok((off.get('msr-write') ?? 0) >= 4 * 20, `msr-write ${off.get('msr-write')}`);
    assert.ok((off.get('ipi') ?? 0) >= 2 * 20);
  });

  it('runs on real KVM with the same counts', function () {
    skipUnlessOracle(this, 'real KVM');
    const r = pingPongOnKvm(50);
    assert.equal(typeof r, 'number', typeof r === 'number' ? '' : r.reason);
  });
});

// The differential suite: the corpus (943 instruction sequences and exception cases) on the
// emulator, compared with the real-KVM recording and with Bochs live, masking exactly the
// flags the SDM leaves undefined where the oracles differ (undefined-flags.ts) and the listed
// deviations (deviations.ts). KVM's own values for undefined flags are compared unmasked: the
// emulator implements them.

import assert from 'node:assert/strict';
import { bochsAvailable } from '../bochs/bochs';
import { compareEmulatorWithOracles } from './compare';
import { runOnEmulator } from './emulator-run';

describe('differential suite: the emulator against real KVM (recorded) and Bochs (live)', function () {
  it('every corpus sequence matches both oracles', function () {
    const bochs = bochsAvailable();
    if (!bochs.ok) {
      if (process.env.CI === 'true') assert.fail(`Bochs is required under CI: ${bochs.reason}`);
      console.log(`      Bochs oracle unavailable: ${bochs.reason}; comparing with the KVM recording only`);
    }
    const r = compareEmulatorWithOracles(runOnEmulator, { bochs: bochs.ok });
    console.log(`      ${r.report.split('\n')[0]}`);
    assert.equal(r.mismatches.length, 0, r.report);
    assert.ok(r.sequences >= 500, `the corpus has ${r.sequences} sequences`);
  });
});

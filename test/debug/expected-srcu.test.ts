// `expectedSrcuDepth` (avic/state, the vCPUs view's warning) against the model at every
// preemption point of every example under every design: where the design handles the vCPU's
// SRCU as the kernel means to, the depth is always what is expected; where it drops SRCU that
// is not held (drop-in-update-direct on S2), the mismatch is exactly that window, at -1.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expectedSrcuDepth } from '../../src/debug/inspect';
import { DESIGN_NAMES } from '../../src/machine/kvm/design';
import { exampleMachine } from '../machine/helpers';

const EXAMPLES = readdirSync(join(__dirname, '..', '..', 'examples')).filter((f) => f.endsWith('.vasm'));

/** every (vCPU, depth, expected, host stack) where they differ, at the preemption points of a run */
function mismatches(example: string, design: string): { violations: string[]; seen: number; bad: { depth: number; expected: number; stack: string }[] } {
  const m = exampleMachine(example, { design: design as never, keepGoing: true });
  const bad: { depth: number; expected: number; stack: string }[] = [];
  let seen = 0;
  // called after every host step and guest burst: where the debugger can stop
  m.debug.shouldStop = () => {
    for (const v of m.kvm.vcpus) {
      seen++;
      const expected = expectedSrcuDepth(v);
      if (expected !== v.srcu_depth) bad.push({ depth: v.srcu_depth, expected, stack: v.task.hostStack().join(' <- ') });
    }
    return false;
  };
  m.run();
  return { violations: m.violations.map((x) => x.kind), seen, bad };
}

describe('debug: the SRCU depth the kernel expects', () => {
  for (const example of EXAMPLES) {
    it(`${example}: every design, every preemption point`, () => {
      for (const design of DESIGN_NAMES) {
        const r = mismatches(example, design);
        assert.ok(r.seen > 0);
        if (!r.violations.includes('srcu-unlock-unbalanced')) {
          assert.deepEqual(r.bad.slice(0, 3), [], `${design}: ${r.bad.length} points where srcu_depth is not what the kernel expects`);
          continue;
        }
        // the unbalanced drop: SRCU released without being held, inside the window where the kernel means it dropped
        assert.ok(r.bad.length > 0, `${design}: the unbalanced unlock shows`);
        for (const b of r.bad) {
          assert.equal(b.depth, -1, `${design}: ${b.stack}`);
          assert.equal(b.expected, 0);
        }
      }
    });
  }
});

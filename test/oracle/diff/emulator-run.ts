// Runs a corpus guest on the emulator (src/machine) and returns what the comparison reads: the
// RunGuest of emulator-interface.ts.

import { DEFAULT_OPTIONS, Machine } from '../../../src/machine/machine';
import { runResult } from '../../../src/machine/result';
import type { RunGuest } from './emulator-interface';

export const runOnEmulator: RunGuest = (image, opts) => {
  const machine = new Machine({ ...DEFAULT_OPTIONS, vcpus: opts.vcpus, memoryMiB: opts.memoryMiB ?? 64, maxSteps: opts.maxSteps ?? 20_000_000 }, image);
  const stop = machine.run();
  return runResult(machine, stop.kind === 'end' ? stop.status : 'step-limit');
};

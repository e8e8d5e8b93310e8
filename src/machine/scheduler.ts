// The deterministic scheduler: round robin with a quantum of guest steps, or a seeded random
// choice of vCPU and run length at every preemption point. Every choice is recorded, so a run
// with the same options is identical event for event (and can be replayed).

export type SchedPolicy = 'rr' | 'random';

export interface SchedChoice {
  readonly vcpu: number;
  /** steps granted (the vCPU may stop earlier: halt, done, a device exit) */
  readonly steps: number;
}

/** mulberry32: small, fast, seeded; the same sequence on every platform */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Scheduler {
  readonly choices: SchedChoice[] = [];
  private cursor = 0;
  private readonly random: () => number;

  constructor(readonly policy: SchedPolicy, readonly quantum: number, seed: number) {
    this.random = mulberry32(seed);
  }

  /** Picks who runs next among `runnable` (ascending vCPU indices, not empty). */
  next(runnable: readonly number[]): SchedChoice {
    let choice: SchedChoice;
    if (this.policy === 'rr') {
      // the first runnable vCPU at or after the cursor, cyclically
      let pick = runnable.find((v) => v >= this.cursor);
      if (pick === undefined) pick = runnable[0];
      this.cursor = pick + 1;
      choice = { vcpu: pick, steps: this.quantum };
    } else {
      const pick = runnable[Math.floor(this.random() * runnable.length)];
      choice = { vcpu: pick, steps: 1 + Math.floor(this.random() * this.quantum) };
    }
    this.choices.push(choice);
    return choice;
  }
}

// What a test does when an oracle is missing: says which and why, and skips; where the oracle
// is required (Bochs under CI=true, where .ci/run installs it; real KVM with AVIC_REQUIRE_KVM=1)
// it fails instead, so a broken install never passes silently.

import { bochsAvailable } from './bochs/bochs';
import { kvmAvailable } from './kvm/kvm';

const ORACLES = {
  Bochs: { available: bochsAvailable, env: 'CI', value: 'true' },
  'real KVM': { available: kvmAvailable, env: 'AVIC_REQUIRE_KVM', value: '1' },
} as const;

/** In a mocha hook or test: goes on when `oracle` can run here; otherwise skips with the reason, or fails where it is required. */
export function skipUnlessOracle(ctx: Mocha.Context, oracle: keyof typeof ORACLES): void {
  const o = ORACLES[oracle];
  const a = o.available();
  if (a.ok) return;
  const message = `${oracle} oracle unavailable: ${a.reason}`;
  if (process.env[o.env] === o.value) throw new Error(`${message} (${o.env}=${o.value} makes this a failure)`);
  console.log(message);
  ctx.skip();
}

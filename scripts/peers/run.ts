// run.ts - `npx tsx scripts/peers/run.ts [--json] [--only bochs|qemu_tcg|kvm]...`: measures the
// peers' speed on the benchmark loop (peers.ts) and prints MIPS, start-up and iterations per
// peer, or one JSON object (the measurePeers() result) with --json. About a minute in total.

import { measurePeer, measurePeers, machineInfo, type PeerMips, type PeerName, type PeersResult } from './peers';

const NAMES: PeerName[] = ['bochs', 'qemu_tcg', 'kvm'];
const argv = process.argv.slice(2);
const json = argv.includes('--json');
const only: PeerName[] = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--json') continue;
  if (argv[i] === '--only' && NAMES.includes(argv[i + 1] as PeerName)) only.push(argv[++i] as PeerName);
  else {
    console.error(`usage: npx tsx scripts/peers/run.ts [--json] [--only ${NAMES.join('|')}]...  (unknown argument '${argv[i]}')`);
    process.exit(2);
  }
}

let result: PeersResult;
if (only.length === 0) result = measurePeers();
else {
  const skipped = (): PeerMips => ({ mips: null, reason: 'not measured (--only)', seconds: 0, iterations: 0 });
  const d = { bochs: skipped(), qemu_tcg: skipped(), kvm: skipped() };
  for (const n of only) d[n] = measurePeer(n);
  const reasons: Record<string, string> = {};
  for (const n of NAMES) if (d[n].mips === null) reasons[`${n}_mips`] = d[n].reason ?? 'unknown';
  result = { bochs_mips: d.bochs.mips, qemu_tcg_mips: d.qemu_tcg.mips, kvm_mips: d.kvm.mips, reasons, details: { ...d, machine: machineInfo() } };
}

if (json) console.log(JSON.stringify(result));
else {
  const m = result.details.machine;
  console.log(`peers on the benchmark loop (4 instructions/iteration), ${m.cpu}, ${m.cpus} CPUs, Linux ${m.kernel}, ${m.date}`);
  const rows: [string, PeerMips][] = [['bochs', result.details.bochs], ['qemu_tcg', result.details.qemu_tcg], ['kvm (CPL3)', result.details.kvm]];
  for (const [name, p] of rows) {
    if (p.mips === null) console.log(`${name.padEnd(11)} n/a: ${p.reason}`);
    else {
      console.log(`${name.padEnd(11)} ${p.mips.toFixed(1).padStart(8)} MIPS  ${p.iterations.toExponential(2)} iterations in ` +
        `${p.seconds.toFixed(3)} s, start-up ${p.startupSeconds?.toFixed(3)} s (${((p.startupFraction ?? 0) * 100).toFixed(1)}%)  [${p.version}]`);
    }
  }
}

// oracle-record-apic.ts - records the LAPIC corpus (test/oracle/apic) on the reference executors:
// real KVM (needs /dev/kvm) into test/oracle/recorded/kvm-apic.json, with the kernel version,
// date, host CPU, harness hash, image hashes, console, registers at done and each vCPU's LAPIC
// (KVM_GET_LAPIC); and Bochs (needs bochs, vgabios, nasm) into test/oracle/recorded/bochs-apic.json.
// Every guest runs twice on each oracle and the two runs must agree. Keys are in a fixed order,
// so re-recording on the same host changes only the date.
//
//   npx tsx scripts/oracle-record-apic.ts [--kvm-only | --bochs-only] [--guest NAME]...

import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { bochsAvailable, runOnBochs } from '../test/oracle/bochs/bochs';
import { kvmAvailable, REG_NAMES, runOnKvm } from '../test/oracle/kvm/kvm';
import { APIC_CORPUS_VERSION, apicCorpusHash, apicGuests, nasmCrossCheckApic } from '../test/oracle/apic/corpus';
import {
  type ApicRecordedGuest, type ApicRecording, BOCHS_ROM_SOURCE, KVM_HARNESS_SOURCE, loadApicRecording, type OracleName,
  RECORDING_PATHS, sha256File,
} from '../test/oracle/apic/recording';

function hostCpu(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? m[1].trim() : 'unknown';
  } catch {
    return 'unknown';
  }
}

function bochsVersion(): string {
  const r = spawnSync(process.env.BOCHS_BIN || 'bochs', ['--help', 'cpu'], { encoding: 'latin1', timeout: 20000 });
  const m = /Bochs x86 Emulator [^\n]*/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
  return m ? m[0].trim() : 'Bochs (unknown version)';
}

function record(oracle: OracleName, only: string[]): number {
  const t0 = Date.now();
  const guests = apicGuests().filter((g) => !only.length || only.includes(g.name));
  const previous = only.length ? loadApicRecording(oracle) : undefined;
  let problems = 0;
  let version = '';
  const recorded: ApicRecordedGuest[] = [];
  for (const g of guests) {
    const t = Date.now();
    let entry: ApicRecordedGuest;
    if (oracle === 'kvm') {
      const runs = [0, 1].map(() => runOnKvm(g.image, { vcpus: g.vcpus, timeoutMs: 60000, dumpLapic: true }));
      const r = runs[0];
      version ||= r.kernel;
      const key = (x: typeof r) => JSON.stringify([x.status, x.error, x.console, x.vcpus.map((v) => [v.id, v.state, v.regs])]);
      if (key(runs[0]) !== key(runs[1])) {
        problems++;
        process.stderr.write(`oracle-record-apic: kvm ${g.name}: the two runs differ\n`);
      }
      if (r.status !== 'done') {
        problems++;
        process.stderr.write(`oracle-record-apic: kvm ${g.name}: status ${r.status}${r.error ? ` (${r.error})` : ''}\n`);
      }
      entry = {
        name: g.name, imageSha256: g.imageSha256, vcpus: g.vcpus, status: r.status, ...(r.error ? { error: r.error } : {}),
        console: r.console.split('\n'),
        vcpuState: r.vcpus.map((v) => ({
          id: v.id, state: v.state, regs: Object.fromEntries(REG_NAMES.map((k) => [k, v.regs[k]])),
          ...(v.lapic ? { lapic: Object.fromEntries(Object.keys(v.lapic).sort().map((k) => [k, v.lapic![k]])) } : {}),
        })),
      };
    } else {
      const runs = [0, 1].map(() => runOnBochs(g.image, { vcpus: g.vcpus, doneSites: g.doneSites, timeoutMs: 120000 }));
      const r = runs[0];
      const key = (x: typeof r) => JSON.stringify([x.status, x.error, x.console, x.done]);
      if (key(runs[0]) !== key(runs[1])) {
        problems++;
        process.stderr.write(`oracle-record-apic: bochs ${g.name}: the two runs differ\n`);
      }
      const want = g.bochsDeviation ? 'error' : 'done';
      if (r.status !== want) {
        problems++;
        process.stderr.write(`oracle-record-apic: bochs ${g.name}: status ${r.status}${r.error ? ` (${r.error})` : ''}, expected ${want}\n`);
      }
      // the error text carries a temporary directory name in some cases: keep its first line
      const error = r.error?.split('\n')[0];
      entry = {
        name: g.name, imageSha256: g.imageSha256, vcpus: g.vcpus, status: r.status, ...(error ? { error } : {}),
        console: r.console.split('\n'),
        vcpuState: Array.from({ length: g.vcpus }, (_, id) => ({ id, state: r.done.includes(id) ? 'done' : 'running' })),
      };
    }
    recorded.push(entry);
    process.stdout.write(`  ${oracle.padEnd(5)} ${g.name.padEnd(20)} ${entry.status.padEnd(6)} ${String(entry.console.length).padStart(4)} lines  ${Date.now() - t} ms (2 runs)\n`);
  }
  // --guest: merge into the previous recording (same order as the corpus)
  const all = previous
    ? apicGuests().map((g) => recorded.find((r) => r.name === g.name) ?? previous.guests.find((r) => r.name === g.name)).filter((x): x is ApicRecordedGuest => !!x)
    : recorded;
  if (oracle === 'bochs') version = bochsVersion();
  const harness = oracle === 'kvm' ? KVM_HARNESS_SOURCE : BOCHS_ROM_SOURCE;
  const rec: ApicRecording = {
    format: 1,
    oracle,
    version: version || previous?.version || 'unknown',
    date: new Date().toISOString().slice(0, 10),
    hostCpu: hostCpu(),
    harness: { source: path.relative(path.resolve(__dirname, '..', 'test', 'oracle'), harness), sha256: sha256File(harness) },
    corpus: { version: APIC_CORPUS_VERSION, hash: apicCorpusHash(), guests: apicGuests().length },
    guests: all,
  };
  const out = RECORDING_PATHS[oracle];
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(rec, null, 1)}\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), out)} (${fs.statSync(out).size} bytes, ${rec.version}, ${rec.hostCpu}) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  return problems;
}

function main(argv: string[]): number {
  const only: string[] = [];
  let which: OracleName[] = ['kvm', 'bochs'];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--kvm-only') which = ['kvm'];
    else if (argv[i] === '--bochs-only') which = ['bochs'];
    else if (argv[i] === '--guest') only.push(argv[++i]);
    else {
      process.stderr.write(`usage: oracle-record-apic.ts [--kvm-only | --bochs-only] [--guest NAME]...\n`);
      return 2;
    }
  }
  const t0 = Date.now();
  const guests = apicGuests();
  process.stdout.write(`LAPIC corpus v${APIC_CORPUS_VERSION}: ${guests.length} guests (generated in ${Date.now() - t0} ms)\n`);
  for (const name of only) if (!guests.some((g) => g.name === name)) { process.stderr.write(`no guest ${name}\n`); return 2; }
  let problems = 0;
  for (const g of guests) {
    const n = nasmCrossCheckApic(g);
    if (n && !n.same) { problems++; process.stderr.write(`oracle-record-apic: ${g.name}: our assembler and nasm differ: ${n.detail}\n`); }
  }
  for (const oracle of which) {
    const avail = oracle === 'kvm' ? kvmAvailable() : bochsAvailable();
    if (!avail.ok) {
      process.stderr.write(`oracle-record-apic: ${oracle} unavailable: ${avail.reason}; ${RECORDING_PATHS[oracle]} not written\n`);
      problems++;
      continue;
    }
    problems += record(oracle, only);
  }
  if (problems) process.stderr.write(`oracle-record-apic: ${problems} problem(s) above\n`);
  return problems ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));

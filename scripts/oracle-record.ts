// oracle-record.ts - records the differential corpus (test/oracle/diff/corpus.ts) on real KVM
// (/dev/kvm, test/oracle/kvm/avic-kvm.c) into test/oracle/recorded/kvm-corpus.json: kernel,
// date, host CPU, harness hash, and per guest the console output and the registers at the end.
// Each guest runs twice; a difference between the two runs is an error (the recording must be
// deterministic). Bochs is not recorded: it runs live in the tests.
// Usage: npx tsx scripts/oracle-record.ts [--out FILE]

import * as fs from 'node:fs';
import * as path from 'node:path';
import { CORPUS_VERSION, corpusGuests, corpusHash, nasmCrossCheck } from '../test/oracle/diff/corpus';
import { type KvmRecording, KVM_HARNESS_SOURCE, RECORDING_PATH, type RecordedGuest, sha256File } from '../test/oracle/diff/recording';
import { kvmAvailable, REG_NAMES, runOnKvm } from '../test/oracle/kvm/kvm';

function hostCpu(): string {
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? m[1].trim() : 'unknown';
  } catch {
    return 'unknown';
  }
}

function main(argv: string[]): number {
  const outIdx = argv.indexOf('--out');
  const out = outIdx >= 0 ? path.resolve(argv[outIdx + 1]) : RECORDING_PATH;
  const avail = kvmAvailable();
  if (!avail.ok) {
    process.stderr.write(`oracle-record: real KVM oracle unavailable: ${avail.reason}\n`);
    return 1;
  }
  const t0 = Date.now();
  const guests = corpusGuests();
  process.stdout.write(`corpus: ${guests.length} guests, ${guests.reduce((a, g) => a + g.sequences.length, 0)} sequences (generated in ${Date.now() - t0} ms)\n`);
  let problems = 0;
  for (const g of guests) {
    const n = nasmCrossCheck(g);
    if (n && !n.same) { problems++; process.stderr.write(`oracle-record: ${g.name}: our assembler and nasm differ: ${n.detail}\n`); }
  }
  let kernel = '';
  const recorded: RecordedGuest[] = [];
  for (const g of guests) {
    const t = Date.now();
    const runs = [0, 1].map(() => runOnKvm(g.image, { vcpus: g.vcpus, timeoutMs: 60000 }));
    const r = runs[0];
    kernel ||= r.kernel;
    const key = (x: typeof r) => JSON.stringify([x.status, x.error, x.console, x.vcpus]);
    if (key(runs[0]) !== key(runs[1])) {
      problems++;
      process.stderr.write(`oracle-record: ${g.name}: two runs on KVM differ (status ${runs[0].status} / ${runs[1].status})\n`);
    }
    const wantStatus = g.kvmDeviation ? 'error' : g.expectStatus;
    if (r.status !== wantStatus) {
      problems++;
      process.stderr.write(`oracle-record: ${g.name}: status ${r.status}${r.error ? ` (${r.error})` : ''}, expected ${wantStatus}${g.kvmDeviation ? ` (deviation ${g.kvmDeviation})` : ''}\n`);
    }
    // fixed key order: the file is committed and diffed
    recorded.push({
      name: g.name,
      imageSha256: g.imageSha256,
      vcpus: g.vcpus,
      status: r.status,
      ...(r.error ? { error: r.error } : {}),
      console: r.console.split('\n'),
      regs: r.vcpus.map((v) => ({
        id: v.id,
        state: v.state,
        regs: Object.fromEntries(REG_NAMES.map((k) => [k, v.regs[k]])),
      })),
    });
    process.stdout.write(`  ${g.name.padEnd(20)} ${r.status.padEnd(12)} ${String(g.sequences.length).padStart(3)} sequences  ${Date.now() - t} ms (2 runs)\n`);
  }
  const rec: KvmRecording = {
    format: 1,
    oracle: 'kvm',
    kernel,
    date: new Date().toISOString().slice(0, 10),
    hostCpu: hostCpu(),
    harness: { source: path.relative(path.resolve(__dirname, '..'), KVM_HARNESS_SOURCE), sha256: sha256File(KVM_HARNESS_SOURCE) },
    corpus: { version: CORPUS_VERSION, hash: corpusHash(), guests: guests.length, sequences: guests.reduce((a, g) => a + g.sequences.length, 0) },
    guests: recorded,
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(rec, null, 1)}\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), out)} (${fs.statSync(out).size} bytes, kernel ${kernel}, ${rec.hostCpu}) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  if (problems) process.stderr.write(`oracle-record: ${problems} problem(s) above\n`);
  return problems ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));

// recording.ts - the recorded oracle results of the LAPIC corpus: real KVM
// (test/oracle/recorded/kvm-apic.json, needs /dev/kvm to regenerate) and Bochs
// (test/oracle/recorded/bochs-apic.json, the frozen copy of the live Bochs results that
// expected.ts takes interrupt-acceptance values from). Format, loading, staleness check.
// Written by scripts/oracle-record-apic.ts.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { APIC_CORPUS_VERSION, apicCorpusHash, apicGuests } from './corpus';

export type OracleName = 'kvm' | 'bochs';

export const RECORDING_PATHS: Record<OracleName, string> = {
  kvm: path.resolve(__dirname, '..', 'recorded', 'kvm-apic.json'),
  bochs: path.resolve(__dirname, '..', 'recorded', 'bochs-apic.json'),
};
export const RECORD_COMMAND = 'npx tsx scripts/oracle-record-apic.ts';
export const KVM_HARNESS_SOURCE = path.resolve(__dirname, '..', 'kvm', 'avic-kvm.c');
export const BOCHS_ROM_SOURCE = path.resolve(__dirname, '..', 'bochs', 'rom.asm');

export interface ApicRecordedVcpu {
  id: number;
  state: string;
  /** registers at the end (KVM only): "0x" + 16 hex digits; a done vCPU's RIP is its `out 0xf4` */
  regs?: Record<string, string>;
  /** KVM_GET_LAPIC at the end (KVM only, `--dump-lapic`) */
  lapic?: Record<string, string>;
}

export interface ApicRecordedGuest {
  name: string;
  imageSha256: string;
  vcpus: number;
  status: string;
  error?: string;
  /** console split at '\n' (joined with '\n' it is the exact console) */
  console: string[];
  /** per vCPU (KVM: state, registers, LAPIC; Bochs: state only) */
  vcpuState: ApicRecordedVcpu[];
}

export interface ApicRecording {
  format: 1;
  oracle: OracleName;
  /** KVM: `uname -r`; Bochs: the version line of `bochs --help` */
  version: string;
  /** ISO date */
  date: string;
  /** /proc/cpuinfo "model name" */
  hostCpu: string;
  /** KVM: the harness (avic-kvm.c); Bochs: our ROM (rom.asm) */
  harness: { source: string; sha256: string };
  corpus: { version: number; hash: string; guests: number };
  guests: ApicRecordedGuest[];
}

export function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

export function consoleOf(g: ApicRecordedGuest): string {
  return g.console.join('\n');
}

/** The recording, or undefined when the file does not exist. */
export function loadApicRecording(oracle: OracleName): ApicRecording | undefined {
  const file = RECORDING_PATHS[oracle];
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as ApicRecording;
}

const cached = new Map<OracleName, ApicRecording | undefined>();
/** loadApicRecording, read once per process. */
export function apicRecording(oracle: OracleName): ApicRecording | undefined {
  if (!cached.has(oracle)) cached.set(oracle, loadApicRecording(oracle));
  return cached.get(oracle);
}

/** The recorded run of a guest (undefined when not recorded). */
export function recordedGuest(oracle: OracleName, name: string): ApicRecordedGuest | undefined {
  return apicRecording(oracle)?.guests.find((g) => g.name === name);
}

/** Differences between a recording and the corpus generated now; empty when it is up to date. */
export function apicRecordingStaleness(rec: ApicRecording | undefined, oracle: OracleName): string[] {
  if (!rec) return [`${path.relative(process.cwd(), RECORDING_PATHS[oracle])} does not exist`];
  const out: string[] = [];
  if (rec.corpus.version !== APIC_CORPUS_VERSION) out.push(`corpus version ${rec.corpus.version} recorded, ${APIC_CORPUS_VERSION} now`);
  const recorded = new Map(rec.guests.map((g) => [g.name, g]));
  for (const g of apicGuests()) {
    const r = recorded.get(g.name);
    if (!r) out.push(`guest ${g.name} is not in the ${oracle} recording`);
    else if (r.imageSha256 !== g.imageSha256) out.push(`guest ${g.name} changed (image ${g.imageSha256.slice(0, 12)}, recorded ${r.imageSha256.slice(0, 12)})`);
  }
  const names = new Set(apicGuests().map((g) => g.name));
  for (const r of rec.guests) if (!names.has(r.name)) out.push(`recorded guest ${r.name} is no longer in the corpus`);
  if (!out.length && rec.corpus.hash !== apicCorpusHash()) out.push('corpus hash differs (guest order changed)');
  return out;
}

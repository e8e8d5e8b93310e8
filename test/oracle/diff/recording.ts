// recording.ts - the recorded real-KVM results of the differential corpus
// (test/oracle/recorded/kvm-corpus.json): its format, loading, and the checks that it matches
// the corpus generated now. Written by scripts/oracle-record.ts.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CORPUS_VERSION, corpusGuests, corpusHash } from './corpus';

export const RECORDING_PATH = path.resolve(__dirname, '..', 'recorded', 'kvm-corpus.json');
export const RECORD_COMMAND = 'npx tsx scripts/oracle-record.ts';
export const KVM_HARNESS_SOURCE = path.resolve(__dirname, '..', 'kvm', 'avic-kvm.c');

export interface RecordedVcpu {
  id: number;
  state: string;
  regs: Record<string, string>;
}

export interface RecordedGuest {
  name: string;
  /** sha256 of the guest image that was run */
  imageSha256: string;
  vcpus: number;
  status: string;
  /** present with status "error" */
  error?: string;
  /** console output split at '\n' (joined with '\n' it is the exact console) */
  console: string[];
  /** per-vCPU registers at the end (at done: RIP at the `out 0xf4`) */
  regs: RecordedVcpu[];
}

export interface KvmRecording {
  format: 1;
  oracle: 'kvm';
  /** `uname -r` */
  kernel: string;
  /** ISO date of the recording */
  date: string;
  /** /proc/cpuinfo "model name" of the host */
  hostCpu: string;
  harness: { source: string; sha256: string };
  corpus: { version: number; hash: string; guests: number; sequences: number };
  guests: RecordedGuest[];
}

export function consoleText(g: RecordedGuest): string {
  return g.console.join('\n');
}

export function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** The recording, or undefined when the file does not exist. */
export function loadRecording(file = RECORDING_PATH): KvmRecording | undefined {
  if (!fs.existsSync(file)) return undefined;
  return JSON.parse(fs.readFileSync(file, 'utf8')) as KvmRecording;
}

/**
 * Differences between the recording and the corpus generated now (guest names, order, image
 * hashes, corpus version); empty when the recording is up to date.
 */
export function recordingStaleness(rec: KvmRecording | undefined): string[] {
  if (!rec) return [`${path.relative(process.cwd(), RECORDING_PATH)} does not exist`];
  const out: string[] = [];
  if (rec.corpus.version !== CORPUS_VERSION) out.push(`corpus version ${rec.corpus.version} recorded, ${CORPUS_VERSION} now`);
  const now = corpusGuests();
  const recorded = new Map(rec.guests.map((g) => [g.name, g]));
  for (const g of now) {
    const r = recorded.get(g.name);
    if (!r) out.push(`guest ${g.name} is not in the recording`);
    else if (r.imageSha256 !== g.imageSha256) out.push(`guest ${g.name} changed (image sha256 ${g.imageSha256.slice(0, 12)}, recorded ${r.imageSha256.slice(0, 12)})`);
  }
  const names = new Set(now.map((g) => g.name));
  for (const r of rec.guests) if (!names.has(r.name)) out.push(`recorded guest ${r.name} is no longer in the corpus`);
  if (!out.length && rec.corpus.hash !== corpusHash()) out.push('corpus hash differs (guest order changed)');
  return out;
}

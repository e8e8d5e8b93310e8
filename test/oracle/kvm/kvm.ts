// kvm.ts - Node wrapper around the real-KVM reference executor (avic-kvm.c): checks whether
// /dev/kvm and gcc are usable, builds the harness into .build/oracle/avic-kvm, and runs a flat
// guest image on it, returning the harness's JSON (field names as in run-json.md).
// Node built-ins only.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoPath, repoRoot } from '../repo';

export const REPO_ROOT = repoRoot();
export const HARNESS_SOURCE = repoPath('test', 'oracle', 'kvm', 'avic-kvm.c');
export const HARNESS_BINARY = path.join(REPO_ROOT, '.build', 'oracle', 'avic-kvm');

export const REG_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;
export type RegName = (typeof REG_NAMES)[number];

export interface KvmVcpu {
  id: number;
  state: 'done' | 'running' | 'triple-fault';
  /** "0x" + 16 lower-case hex digits; for a done vCPU, at its `out 0xf4` with RIP at the `out`. */
  regs: Record<RegName, string>;
  /** Only with `dumpLapic`: "0x%08x" register values from KVM_GET_LAPIC, plus apicBase. */
  lapic?: Record<string, string>;
}

export interface KvmResult {
  oracle: 'kvm';
  /** `uname -r` of the host running the harness. */
  kernel: string;
  status: 'done' | 'timeout' | 'triple-fault' | 'error';
  /** present with status "error" */
  error?: string;
  /** bytes written to port 0xE9, one character per byte (code point = byte value) */
  console: string;
  vcpus: KvmVcpu[];
  elapsed_ms: number;
  /** the harness's stderr (warnings, e.g. a LAPIC reset state that differs from the contract) */
  stderr: string;
  /** the harness's exit code: 0 done, 2 timeout / triple-fault, 1 error */
  exitCode: number;
}

export interface KvmRunOptions {
  vcpus?: number;
  memoryMiB?: number;
  timeoutMs?: number;
  /** load (and start) address, default 0x100000 */
  loadAddress?: number;
  /** add each vCPU's LAPIC registers (`--dump-lapic`) */
  dumpLapic?: boolean;
}

function hasCommand(cmd: string): boolean {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** Whether the real-KVM oracle can run here; `reason` says why not (or what was found). */
export function kvmAvailable(): { ok: boolean; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: `not Linux (platform ${process.platform})` };
  if (!fs.existsSync('/dev/kvm')) return { ok: false, reason: '/dev/kvm does not exist' };
  if (!fs.statSync('/dev/kvm').isCharacterDevice()) return { ok: false, reason: '/dev/kvm is not a character device' };
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return { ok: false, reason: '/dev/kvm is not readable and writable by this user' };
  }
  if (!hasCommand('gcc')) return { ok: false, reason: 'gcc not found on PATH (needed to build avic-kvm.c)' };
  return { ok: true, reason: '/dev/kvm is usable and gcc is present' };
}

/** Compile avic-kvm.c into .build/oracle/avic-kvm when the binary is missing or older than the source. */
export function buildKvmHarness(): string {
  const srcTime = fs.statSync(HARNESS_SOURCE).mtimeMs;
  if (fs.existsSync(HARNESS_BINARY) && fs.statSync(HARNESS_BINARY).mtimeMs >= srcTime) return HARNESS_BINARY;
  fs.mkdirSync(path.dirname(HARNESS_BINARY), { recursive: true });
  // build under a private name, then rename: concurrent builders never see a half-written file
  const tmp = `${HARNESS_BINARY}.${process.pid}.tmp`;
  const r = spawnSync('gcc', ['-std=c11', '-O2', '-Wall', '-Wextra', '-pthread', '-o', tmp, HARNESS_SOURCE], {
    encoding: 'utf8',
  });
  if (r.error) throw new Error(`cannot run gcc to build the KVM harness: ${r.error.message}`);
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`gcc failed to build ${HARNESS_SOURCE} (exit ${r.status}):\n${r.stderr}`);
  }
  fs.renameSync(tmp, HARNESS_BINARY);
  return HARNESS_BINARY;
}

/** Run a flat guest image on real KVM (synchronously) and return the harness's result. */
export function runOnKvm(image: Uint8Array, opts: KvmRunOptions = {}): KvmResult {
  const harness = buildKvmHarness();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'avic-kvm-'));
  try {
    const file = path.join(dir, 'guest.bin');
    fs.writeFileSync(file, image);
    const timeoutMs = opts.timeoutMs ?? 10000;
    const args: string[] = [];
    if (opts.vcpus !== undefined) args.push('--vcpus', String(opts.vcpus));
    if (opts.memoryMiB !== undefined) args.push('--memory', String(opts.memoryMiB));
    args.push('--timeout-ms', String(timeoutMs));
    if (opts.loadAddress !== undefined) args.push('--load-address', `0x${opts.loadAddress.toString(16)}`);
    if (opts.dumpLapic) args.push('--dump-lapic');
    args.push(file);
    const r = spawnSync(harness, args, {
      encoding: 'utf8',
      // the harness enforces timeoutMs itself; this only guards against a hung harness
      timeout: timeoutMs + 30000,
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.error) throw new Error(`cannot run ${harness}: ${r.error.message}`);
    let parsed: Omit<KvmResult, 'stderr' | 'exitCode'>;
    try {
      parsed = JSON.parse(r.stdout);
    } catch {
      throw new Error(
        `${harness} printed no JSON (exit ${r.status}, signal ${r.signal}); stdout: ${r.stdout.slice(0, 500)}; ` +
          `stderr: ${r.stderr.slice(0, 2000)}`,
      );
    }
    return { ...parsed, stderr: r.stderr, exitCode: r.status ?? -1 };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A register of a vCPU in a result, as a bigint. */
export function reg(result: KvmResult, vcpu: number, name: RegName): bigint {
  const v = result.vcpus.find((c) => c.id === vcpu);
  if (!v) throw new Error(`no vCPU ${vcpu} in the KVM result`);
  return BigInt(v.regs[name]);
}

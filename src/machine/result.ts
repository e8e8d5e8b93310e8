// The result of a run as contracts/run-json.md defines `avic run --json`: status, console,
// steps, per-vCPU state, registers and KVM state, the VM's APICv state and memslots, violations,
// statistics. Fields are only ever added. Everything is read from the machine at the end.

import type { Violation } from './kvm/checkers';
import { inhibitNames, type KvmVcpu, VCPU_MODE_NAMES } from './kvm/kvm_host';
import { kvm_apic_mode, kvm_apicv_activated } from './kvm/apicv';
import type { Machine, RunStatus } from './machine';

export const REG_ORDER = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
/** register name -> encoding number */
const REG_INDEX: Readonly<Record<(typeof REG_ORDER)[number], number>> = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7, r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
};

export type Status = RunStatus;

export interface VcpuResult {
  readonly id: number;
  readonly state: string;
  readonly regs: Record<string, string>;
  readonly apic: { readonly mode: string; readonly apicvActive: boolean };
  readonly inhibits: string[];
  readonly srcuDepth: number;
  readonly srcuReaders: number;
  readonly requests: string[];
  readonly mode: string;
}

export interface VmResult {
  readonly kernel: 'v6.3';
  readonly design: string;
  readonly avic: boolean;
  readonly x2avic: boolean;
  readonly nested: boolean;
  readonly apicvActivated: boolean;
  readonly apicvInhibits: string[];
  readonly apicAccessMemslot: { readonly enabled: boolean; readonly inhibited: boolean };
  readonly memslots: { id: number; gpa: string; size: number; private: boolean }[];
}

export interface RunResult {
  readonly status: Status;
  readonly errors?: string[];
  readonly console: string;
  readonly steps: number;
  readonly vcpus: VcpuResult[];
  readonly vm?: VmResult;
  readonly violations: readonly Violation[];
  readonly stats: { readonly instructions: number; readonly events: Record<string, number> };
}

export function hex64(v: bigint): string {
  return '0x' + BigInt.asUintN(64, v).toString(16).padStart(16, '0');
}

/** the per-vCPU reasons of the vendor hook: SVM returns the enum value NESTED (7) in L2 */
function vcpuInhibits(v: KvmVcpu): string[] {
  return v.kvm.x86_ops.vcpu_get_apicv_inhibit_reasons(v) !== 0 ? ['NESTED'] : [];
}

export function runResult(m: Machine, status: RunStatus): RunResult {
  const errors = status === 'error' ? { errors: [...m.errors] } : {};
  const kvm = m.kvm;
  const vcpus = kvm.vcpus.map((v, id) => {
    const cpu = v.cpu;
    const regs: Record<string, string> = {};
    for (const name of REG_ORDER) regs[name] = hex64(cpu.reg64(REG_INDEX[name]));
    regs.rip = hex64(cpu.rip64());
    regs.rflags = hex64(BigInt(cpu.getRflags()));
    return {
      id, state: m.vcpuState(id), regs,
      apic: { mode: kvm_apic_mode(v.apic_base), apicvActive: v.apic.apicv_active },
      inhibits: vcpuInhibits(v),
      srcuDepth: v.srcu_depth,
      srcuReaders: kvm.srcu.readers(v.task),
      requests: v.pendingRequestNames(),
      mode: VCPU_MODE_NAMES[v.mode],
    };
  });
  const events: Record<string, number> = {};
  for (const [k, v] of [...m.log.counts].sort(([a], [b]) => a.localeCompare(b))) events[k] = v;
  const vm: VmResult = {
    kernel: 'v6.3', design: kvm.design.name, avic: kvm.config.avic, x2avic: kvm.config.x2avic, nested: kvm.config.nested,
    apicvActivated: kvm_apicv_activated(kvm),
    apicvInhibits: inhibitNames(kvm.arch.apicv_inhibit_reasons),
    apicAccessMemslot: { enabled: kvm.arch.apic_access_memslot_enabled, inhibited: kvm.arch.apic_access_memslot_inhibited },
    memslots: [...kvm.memslots.values()].sort((a, b) => a.id - b.id).map((s) => ({ id: s.id, gpa: hex64(BigInt(s.gpa)), size: s.size, private: s.private })),
  };
  return { status, ...errors, console: m.console, steps: m.steps, vcpus, vm, violations: m.violations, stats: { instructions: m.instructions, events } };
}

export function errorResult(errors: string[]): RunResult {
  return { status: 'error', errors, console: '', steps: 0, vcpus: [], violations: [], stats: { instructions: 0, events: {} } };
}

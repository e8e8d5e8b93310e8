// The result of a run as contracts/run-json.md defines `avic run --json`: status, console,
// steps, per-vCPU state and registers, violations, statistics. Fields are only ever added.

import type { Machine, RunStatus } from './machine';

export const REG_ORDER = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
/** register name -> encoding number */
const REG_INDEX: Readonly<Record<(typeof REG_ORDER)[number], number>> = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7, r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
};

export type Status = RunStatus | 'error' | 'violation';

export interface VcpuResult {
  readonly id: number;
  readonly state: string;
  readonly regs: Record<string, string>;
}

export interface RunResult {
  readonly status: Status;
  readonly errors?: string[];
  readonly console: string;
  readonly steps: number;
  readonly vcpus: VcpuResult[];
  readonly violations: unknown[];
  readonly stats: { readonly instructions: number; readonly events: Record<string, number> };
}

export function hex64(v: bigint): string {
  return '0x' + BigInt.asUintN(64, v).toString(16).padStart(16, '0');
}

export function runResult(m: Machine, status: RunStatus): RunResult {
  const vcpus = m.cpus.map((cpu, id) => {
    const regs: Record<string, string> = {};
    for (const name of REG_ORDER) regs[name] = hex64(cpu.reg64(REG_INDEX[name]));
    regs.rip = hex64(cpu.rip64());
    regs.rflags = hex64(BigInt(cpu.getRflags()));
    return { id, state: m.vcpuState(id), regs };
  });
  const events: Record<string, number> = {};
  for (const [k, v] of [...m.log.counts].sort(([a], [b]) => a.localeCompare(b))) events[k] = v;
  return { status, console: m.console, steps: m.steps, vcpus, violations: [], stats: { instructions: m.instructions, events } };
}

export function errorResult(errors: string[]): RunResult {
  return { status: 'error', errors, console: '', steps: 0, vcpus: [], violations: [], stats: { instructions: 0, events: {} } };
}

// Events as `trace-cmd report` lines, with the kernel's tracepoint names and formats where one
// exists (kvm_pio, kvm_msr, kvm_mmio from arch/x86/kvm/trace.h). The timestamp is virtual: one
// scheduler step is one microsecond.

import { vectorName } from './cpu/exceptions';
import type { MachineEvent } from './events';

function hex(v: number | bigint): string {
  return '0x' + v.toString(16);
}

function task(e: MachineEvent): string {
  return e.vcpu === null ? 'vmm-0' : `vcpu${e.vcpu}-${e.vcpu}`;
}

/** The tracepoint name and its formatted fields. */
export function tracepoint(e: MachineEvent): [string, string] {
  switch (e.kind) {
    case 'pio':
      return ['kvm_pio', `pio_${e.write ? 'write' : 'read'} at ${hex(e.port)} size ${e.size} count 1 val ${hex(e.value)}${e.unhandled ? ' (unhandled)' : ''}`];
    case 'mmio-read':
    case 'mmio-write':
      return ['kvm_mmio', `mmio ${e.kind === 'mmio-read' ? (e.unhandled ? 'unsatisfied-read' : 'read') : 'write'} len ${e.size} gpa ${hex(e.gpa)} val ${hex(e.value)}`];
    case 'msr-read':
    case 'msr-write':
      return [e.host ? 'host_msr_write' : 'kvm_msr', `msr_${e.kind === 'msr-read' ? 'read' : 'write'} ${e.msr.toString(16)} = ${hex(e.value)}${e.ok ? '' : ' (#GP)'}`];
    case 'exception':
      return ['avic_exception', `${vectorName(e.vector)}${e.errorCode !== undefined ? ` (${hex(e.errorCode)})` : ''} rip ${hex(e.rip)}`];
    case 'sched':
      return ['avic_sched', `vcpu ${e.vcpu}${e.from !== null ? ` (from vcpu ${e.from})` : ''} rip ${hex(e.rip)}`];
    case 'halt':
      return ['avic_halt', `rip ${hex(e.rip)}`];
    case 'done':
      return ['avic_done', `rip ${hex(e.rip)}`];
    case 'host-action':
      return ['avic_host_action', `trigger ${hex(e.trigger)}`];
  }
}

export function formatTraceLine(e: MachineEvent): string {
  const [name, fields] = tracepoint(e);
  const cpu = String(e.vcpu ?? 0).padStart(3, '0');
  const ts = (e.step / 1e6).toFixed(6).padStart(13);
  return `${task(e).padStart(16)} [${cpu}] ${ts}: ${name}: ${fields}`;
}

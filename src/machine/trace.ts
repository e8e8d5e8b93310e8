// Events as `trace-cmd report` lines, with the kernel's tracepoint names and formats where one
// exists (arch/x86/kvm/trace.h @ v6.3: kvm_entry, kvm_exit, kvm_pio, kvm_mmio, kvm_msr,
// kvm_apic_ipi, kvm_apic_accept_irq, kvm_apicv_inhibit_changed, kvm_avic_*; kvm_vcpu_wakeup
// from include/trace/events/kvm.h). Events with no tracepoint print as `avic_<kind>`. The
// timestamp is virtual: one scheduler step is one nanosecond.

import { vectorName } from './cpu/exceptions';
import type { MachineEvent } from './events';
import { APICV_INHIBIT_NAMES } from './kvm/kvm_host';

function hex(v: number | bigint): string {
  return '0x' + v.toString(16);
}

function hexPad(v: number | bigint, width: number): string {
  return '0x' + v.toString(16).padStart(width, '0');
}

function task(e: MachineEvent): string {
  return e.vcpu === null ? 'qemu-system-x86-100' : `CPU ${e.vcpu}/KVM-${1000 + e.vcpu}`;
}

const DELIVERY_MODES = ['Fixed', 'LowPrio', 'SMI', 'Res3', 'NMI', 'INIT', 'SIPI', 'ExtINT'];
const SHORTHANDS = ['dst', 'self', 'all', 'all-but-self'];
const APIC_REGS: Readonly<Record<number, string>> = {
  0x20: 'APIC_ID', 0x30: 'APIC_LVR', 0x80: 'APIC_TASKPRI', 0x90: 'APIC_ARBPRI', 0xa0: 'APIC_PROCPRI', 0xb0: 'APIC_EOI',
  0xc0: 'APIC_RRR', 0xd0: 'APIC_LDR', 0xe0: 'APIC_DFR', 0xf0: 'APIC_SPIV', 0x280: 'APIC_ESR', 0x300: 'APIC_ICR', 0x310: 'APIC_ICR2',
  0x320: 'APIC_LVTT', 0x330: 'APIC_LVTTHMR', 0x340: 'APIC_LVTPC', 0x350: 'APIC_LVT0', 0x360: 'APIC_LVT1', 0x370: 'APIC_LVTERR',
  0x380: 'APIC_TMICT', 0x390: 'APIC_TMCCT', 0x3e0: 'APIC_TDCR',
};

/** The tracepoint name and its formatted fields. */
export function tracepoint(e: MachineEvent): [string, string] {
  switch (e.kind) {
    case 'vmentry':
      return ['kvm_entry', `vcpu ${e.vcpu}, rip ${hex(e.rip)}`];
    case 'vmexit':
      return ['kvm_exit', `vcpu ${e.vcpu} reason ${e.name} rip ${hex(e.rip)} info1 ${hexPad(e.info1, 16)} info2 ${hexPad(e.info2, 16)} intr_info 0x00000000 error_code 0x00000000`];
    case 'pio':
      return ['kvm_pio', `pio_${e.write ? 'write' : 'read'} at ${hex(e.port)} size ${e.size} count 1 val ${hex(e.value)} ${e.unhandled ? '(unhandled)' : ''}`.trimEnd()];
    case 'mmio-read':
    case 'mmio-write':
      return ['kvm_mmio', `mmio ${e.kind === 'mmio-read' ? (e.unhandled ? 'unsatisfied-read' : 'read') : 'write'} len ${e.size} gpa ${hex(e.gpa)} val ${hex(e.value)}`];
    case 'msr-read':
    case 'msr-write': {
      const name = e.host && e.kind === 'msr-write' ? 'host_msr_write' : 'kvm_msr';
      return [name, `msr_${e.kind === 'msr-read' ? 'read' : 'write'} ${e.msr.toString(16)} = ${hex(e.value)}${e.ok ? '' : ' (#GP)'}`];
    }
    case 'ipi':
      return ['kvm_apic_ipi', `dst ${e.dest.toString(16)} vec ${e.icrLow & 0xff} (${DELIVERY_MODES[(e.icrLow >>> 8) & 7]}|${e.icrLow & (1 << 11) ? 'logical' : 'physical'}|${e.icrLow & (1 << 14) ? 'assert' : 'de-assert'}|${e.icrLow & (1 << 15) ? 'level' : 'edge'}|${SHORTHANDS[(e.icrLow >>> 18) & 3]})`];
    case 'irq-accept':
      return ['kvm_apic_accept_irq', `apicid ${e.apicId.toString(16)} vec ${e.vector} (${DELIVERY_MODES[e.deliveryMode & 7]}|${e.triggerMode ? 'level' : 'edge'})${e.coalesced ? ' (coalesced)' : ''}`];
    case 'inhibit-change':
      return ['kvm_apicv_inhibit_changed', `${e.set ? 'set' : 'cleared'} reason=${e.reason}, inhibits=${hex(e.inhibits)} (${APICV_INHIBIT_NAMES[e.reason] ?? '?'})`];
    case 'avic-incomplete-ipi':
      return ['kvm_avic_incomplete_ipi', `vcpu=${e.vcpu}, icrh:icrl=${hexPad(e.icrHigh, 8)}:${e.icrLow.toString(16).padStart(8, '0')}, id=${e.id}, index=${e.index}`];
    case 'avic-unaccelerated-access':
      return ['kvm_avic_unaccelerated_access', `vcpu=${e.vcpu}, offset=${hex(e.offset)}(${APIC_REGS[e.offset] ?? 'unknown'}), ${e.isTrap ? 'trap' : 'fault'}, ${e.write ? 'write' : 'read'}, vec=0x0`];
    case 'avic-doorbell':
      return ['kvm_avic_doorbell', `vcpuid=${e.target}, apicid=${e.apicId}`];
    case 'wakeup':
      return ['kvm_vcpu_wakeup', `vcpu ${e.target} wake`];
    case 'request-make':
    case 'request-check':
      return [`avic_${e.kind.replace('-', '_')}`, `${e.kind === 'request-make' ? `vcpu ${e.target} ` : ''}${e.name}${e.transition !== null ? ` transition ${e.transition}` : ''}`];
    case 'kick':
      return ['avic_kick', `vcpu ${e.target}${e.ipi ? ' ipi' : ''}`];
    case 'apicv-update':
      return ['avic_apicv_update', e.activate ? 'activate' : 'deactivate'];
    case 'memslot-change':
      return ['avic_memslot_change', `slot ${e.slot} ${e.create ? 'create' : 'delete'} gpa ${hex(e.gpa)} size ${e.size}${e.changed ? '' : ' (no-op)'}${e.transition !== null ? ` transition ${e.transition}` : ''}`];
    case 'srcu-lock':
    case 'srcu-unlock':
      return [`avic_${e.kind.replace('-', '_')}`, `${e.raw ? 'srcu_read' : 'kvm_vcpu_srcu_read'}_${e.kind === 'srcu-lock' ? 'lock' : 'unlock'}${e.raw ? '' : ` srcu_depth ${e.depth}`} readers ${e.readers}`];
    case 'srcu-sync':
      return ['avic_srcu_sync', `${e.expedited ? 'synchronize_srcu_expedited' : 'synchronize_srcu'} readers ${e.readers}`];
    case 'lock-acquire':
    case 'lock-release':
      return [`avic_${e.kind.replace('-', '_')}`, `${e.lock}${e.mode === 'read' ? ' (read)' : ''}`];
    case 'apic-page-access':
      return ['avic_apic_page_access', `${e.write ? 'write' : 'read'} len ${e.size} gpa ${hex(e.gpa)} val ${hex(e.value)} via ${e.path}${e.x2apic ? ' (x2APIC mode)' : ''}`];
    case 'exception':
      return ['avic_exception', `${vectorName(e.vector)}${e.errorCode !== undefined ? ` (${hex(e.errorCode)})` : ''} rip ${hex(e.rip)}`];
    case 'sched':
      return ['avic_sched', `${e.task}${e.from !== null ? ` (from vcpu ${e.from})` : ''} rip ${hex(e.rip)}`];
    case 'halt':
      return ['avic_halt', `rip ${hex(e.rip)}`];
    case 'done':
      return ['avic_done', `rip ${hex(e.rip)}`];
    case 'host-action':
      return ['avic_host_action', `${e.action}${e.target !== null ? ` on vcpu ${e.target}` : ''}${e.trigger !== null ? ` (trigger ${hex(e.trigger)})` : ''}`];
    case 'violation':
      return ['avic_violation', `${e.violation}: ${e.message}`];
  }
}

export function formatTraceLine(e: MachineEvent): string {
  const [name, fields] = tracepoint(e);
  const cpu = String(e.vcpu ?? 0).padStart(3, '0');
  const ts = (e.step / 1e9).toFixed(9).padStart(14);
  return `${task(e).padStart(18)} [${cpu}] ${ts}: ${name}: ${fields}`;
}

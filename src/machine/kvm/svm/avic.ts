// SVM AVIC (arch/x86/kvm/svm/avic.c @ v6.3) and the AVIC hardware it drives (AMD APM vol. 2,
// 15.29): the physical APIC ID table entries (IsRunning, host CPU), avic_vcpu_load/put and the
// blocking hooks, the refresh of the VMCB's AVIC controls, guest accesses to the APIC backing
// page (accelerated, trap or fault, APM table 15-22), IPIs sent by hardware (doorbell, or
// AVIC_INCOMPLETE_IPI), interrupt acceptance from the backing page's IRR, and the two AVIC
// #VMEXIT handlers. The backing page is the LAPIC register page (apic->regs), as in KVM.

import { SVM_EXIT_AVIC_INCOMPLETE_IPI, SVM_EXIT_AVIC_UNACCELERATED_ACCESS, type VmExit } from '../../cpu/vmexit';
import { apic_x2apic_mode } from '../apicv';
import {
  APIC_ARBPRI, APIC_DEST_ALLBUT, APIC_DEST_ALLINC, APIC_DEST_LOGICAL, APIC_DEST_SELF, APIC_DEST_SHORTHAND_MASK, APIC_DFR, APIC_DFR_FLAT,
  APIC_DM_FIXED, APIC_EOI, APIC_ESR, APIC_ICR, APIC_ICR2, APIC_ICR_BUSY, APIC_ID, APIC_INT_LEVELTRIG, APIC_IRR, APIC_ISR, APIC_LDR,
  APIC_LVR, APIC_LVT0, APIC_LVT1, APIC_LVTERR, APIC_LVTPC, APIC_LVTT, APIC_LVTTHMR, APIC_MODE_MASK, APIC_PROCPRI, APIC_RRR,
  APIC_SELF_IPI, APIC_SPIV, APIC_TASKPRI, APIC_TDCR, APIC_TMCCT, APIC_TMICT, APIC_VECTOR_MASK,
} from '../apicdef';
import { KVM_REQ_EVENT, KVM_REQ_TLB_FLUSH_CURRENT, kvm_make_request, type KvmVcpu } from '../kvm_host';
import { kvm_vcpu_kick, kvm_vcpu_wake_up } from '../kvm_main';
import {
  __apic_update_ppr, apic_has_interrupt_for_ppr, kvm_apic_match_dest, kvm_apic_send_ipi, kvm_apic_write_nodecode,
  kvm_get_apic_interrupt, kvm_x2apic_id,
} from '../lapic';
import { apic_clear_vector, apic_find_highest_isr, apic_set_vector } from '../lapic_h';
import { type HostCode, kfn, type Task } from '../task';

/** AVIC_MAX_PHYSICAL_ID: without x2AVIC, IDs 0..254 (255 is the broadcast) */
export const AVIC_MAX_PHYSICAL_ID = 0xfe;
export const X2AVIC_MAX_PHYSICAL_ID = 0x1ff;

/** AVIC_IPI_FAILURE_* (asm/svm.h) */
export const AVIC_IPI_FAILURE_INVALID_INT_TYPE = 0;
export const AVIC_IPI_FAILURE_TARGET_NOT_RUNNING = 1;
export const AVIC_IPI_FAILURE_INVALID_TARGET = 2;
export const AVIC_IPI_FAILURE_INVALID_BACKING_PAGE = 3;

/** AVIC is enabled in the VMCB this vCPU runs on (vmcb01; vmcb02 never has it) */
export function avicEnabledInVmcb(vcpu: KvmVcpu): boolean {
  return vcpu.kvm.config.avic && vcpu.apic.apicv_active && !vcpu.svm.nested.guest_mode;
}

/** X2APIC_MODE_MASK set by avic_activate_vmcb: x2AVIC and the vCPU in x2APIC mode */
export function x2avicMode(vcpu: KvmVcpu): boolean {
  return avicEnabledInVmcb(vcpu) && vcpu.kvm.config.x2avic && apic_x2apic_mode(vcpu);
}

/** Does AVIC decode guest accesses to the APIC BAR (xAVIC, or hybrid mode)? x2AVIC mode does not. */
export function avicDecodesMmio(vcpu: KvmVcpu): boolean {
  return avicEnabledInVmcb(vcpu) && !x2avicMode(vcpu);
}

// ---- load, put, blocking, refresh ------------------------------------------------------------------

/** avic_vcpu_load: point the entry at this pCPU and set IsRunning (not while blocking) */
export function avic_vcpu_load(vcpu: KvmVcpu, hostCpu: number): void {
  if (!vcpu.apic.apicv_active || vcpu.blocking) return;
  const e = vcpu.svm.avic_physical_id_entry;
  e.host_physical_id = hostCpu;
  e.is_running = true;
}

/** avic_vcpu_put: clear IsRunning */
export function avic_vcpu_put(vcpu: KvmVcpu): void {
  vcpu.svm.avic_physical_id_entry.is_running = false;
}

/**
 * avic_refresh_apicv_exec_ctrl (avic.c @ v6.3): avic_refresh_virtual_apic_mode (activating in
 * xAVIC or hybrid mode makes KVM_REQ_TLB_FLUSH_CURRENT), then load or put the entry.
 */
export function avic_refresh_apicv_exec_ctrl(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'avic_refresh_apicv_exec_ctrl', function* () {
    if (!vcpu.kvm.config.avic) return;
    const activated = vcpu.apic.apicv_active;
    if (activated && !(vcpu.kvm.config.x2avic && apic_x2apic_mode(vcpu))) {
      yield* kfn(t, 'avic_activate_vmcb', () => kvm_make_request(t, KVM_REQ_TLB_FLUSH_CURRENT, vcpu));
    }
    if (activated) avic_vcpu_load(vcpu, vcpu.vcpu_id);
    else avic_vcpu_put(vcpu);
  });
}

// ---- delivery into a vCPU -------------------------------------------------------------------------------

/**
 * svm_complete_interrupt_delivery (svm.c @ v6.3): with APICv inactive, KVM_REQ_EVENT + kick;
 * else ring the doorbell if the target is in guest mode, or wake it.
 */
export function* svm_complete_interrupt_delivery(t: Task, vcpu: KvmVcpu): HostCode {
  if (!vcpu.apic.apicv_active) {
    yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
    yield* kvm_vcpu_kick(t, vcpu);
    return;
  }
  if (vcpu.mode === 1 /* IN_GUEST_MODE */) avic_ring_doorbell(t, vcpu);
  else kvm_vcpu_wake_up(t, vcpu);
}

/** avic_ring_doorbell: the doorbell MSR with the target's host APIC ID (not to this pCPU) */
export function avic_ring_doorbell(t: Task, vcpu: KvmVcpu): void {
  const e = vcpu.svm.avic_physical_id_entry;
  if (vcpu.task !== t) {
    t.emit({ kind: 'avic-doorbell', target: vcpu.vcpu_id, apicId: e.host_physical_id });
  }
  vcpu.cpu.eventPending = true; // the target's hardware evaluates its IRR
}

/**
 * AVIC hardware accepting an interrupt from the backing page's IRR while the guest runs with IF
 * set (APM 15.29.2.3): IRR -> ISR, PPR updated, delivered through the IDT. No exit.
 */
export function avicAcceptInterrupt(vcpu: KvmVcpu): boolean {
  if (!avicEnabledInVmcb(vcpu) || !vcpu.cpu.interruptible() || !vcpu.svm.gif) return false;
  __apic_update_ppr(vcpu.apic);
  if (apic_has_interrupt_for_ppr(vcpu.apic, vcpu.apic.getReg(APIC_PROCPRI)) === -1) return false;
  const vector = kvm_get_apic_interrupt(vcpu);
  vcpu.cpu.deliver(vector, undefined, 'external');
  return true;
}

/** An interrupt is in the backing page waiting only for IF (AVIC delivers it once IF is set). */
export function avicInterruptWaiting(vcpu: KvmVcpu): boolean {
  if (!avicEnabledInVmcb(vcpu)) return false;
  __apic_update_ppr(vcpu.apic);
  return apic_has_interrupt_for_ppr(vcpu.apic, vcpu.apic.getReg(APIC_PROCPRI)) !== -1;
}

// ---- guest accesses to the backing page ---------------------------------------------------------------------

type AccessKind = 'accel' | 'trap' | 'fault';

/** APM table 15-22 as KVM relies on it (avic_is_trap in avic_unaccelerated_access_interception @ v6.3). */
function avicWriteKind(offset: number): AccessKind {
  switch (offset) {
    case APIC_TASKPRI: case APIC_EOI: case APIC_ICR: case APIC_ICR2:
      return 'accel';
    case APIC_ID: case APIC_RRR: case APIC_LDR: case APIC_DFR: case APIC_SPIV: case APIC_ESR:
    case APIC_LVTT: case APIC_LVTTHMR: case APIC_LVTPC: case APIC_LVT0: case APIC_LVT1: case APIC_LVTERR:
    case APIC_TMICT: case APIC_TDCR:
      return 'trap';
    default:
      return 'fault';
  }
}

function avicReadKind(offset: number): AccessKind {
  switch (offset) {
    case APIC_ID: case APIC_LVR: case APIC_TASKPRI: case APIC_ARBPRI: case APIC_PROCPRI: case APIC_LDR: case APIC_DFR: case APIC_SPIV:
    case APIC_ESR: case APIC_ICR: case APIC_ICR2: case APIC_LVTT: case APIC_LVTTHMR: case APIC_LVTPC: case APIC_LVT0: case APIC_LVT1:
    case APIC_LVTERR: case APIC_TMICT: case APIC_TDCR:
      return 'accel';
    default:
      if (offset >= APIC_ISR && offset < APIC_IRR + 0x80) return 'accel';
      return 'fault';
  }
}

/**
 * A guest load from the APIC BAR that AVIC decodes: the backing page's value, or an
 * AVIC_UNACCELERATED_ACCESS fault (KVM then emulates the load: `emulatedRead`).
 */
export function avicMmioRead(vcpu: KvmVcpu, gpa: number, size: number, emulatedRead: () => number): number {
  const offset = gpa & 0xfff;
  const reg = offset & 0xff0;
  if (size !== 4 || offset & 0xf || avicReadKind(reg) === 'fault') {
    const value = emulatedRead();
    vcpu.cpu.postExit({ code: SVM_EXIT_AVIC_UNACCELERATED_ACCESS, offset: reg, gpa, size, write: false, value, trap: false });
    return value;
  }
  if (reg === APIC_PROCPRI) __apic_update_ppr(vcpu.apic);
  return vcpu.apic.getReg(reg);
}

/**
 * A guest store to the APIC BAR that AVIC decodes: TPR, EOI and ICR2 complete in hardware, ICR
 * sends the IPI in hardware; trap registers are written to the backing page and then exit;
 * anything else faults (KVM emulates the store).
 */
export function avicMmioWrite(vcpu: KvmVcpu, gpa: number, size: number, value: number): void {
  const offset = gpa & 0xfff;
  const reg = offset & 0xff0;
  const apic = vcpu.apic;
  const kind = size !== 4 || offset & 0xf ? 'fault' : avicWriteKind(reg);
  if (kind === 'fault') {
    vcpu.cpu.postExit({ code: SVM_EXIT_AVIC_UNACCELERATED_ACCESS, offset: reg, gpa, size, write: true, value: value >>> 0, trap: false });
    return;
  }
  if (kind === 'trap') {
    apic.setReg(reg, value);
    vcpu.cpu.postExit({ code: SVM_EXIT_AVIC_UNACCELERATED_ACCESS, offset: reg, gpa, size, write: true, value: value >>> 0, trap: true });
    return;
  }
  switch (reg) {
    case APIC_TASKPRI:
      apic.setReg(APIC_TASKPRI, value & 0xff);
      __apic_update_ppr(apic);
      vcpu.cpu.eventPending = true;
      break;
    case APIC_EOI: {
      // edge-triggered EOI completes in hardware (no IOAPIC here, so no level-triggered vectors)
      const vector = apic_find_highest_isr(apic);
      if (vector !== -1) apic_clear_vector(vector, apic, APIC_ISR);
      __apic_update_ppr(apic);
      vcpu.cpu.eventPending = true;
      break;
    }
    case APIC_ICR2:
      apic.setReg(APIC_ICR2, value & 0xff000000);
      break;
    default:
      apic.setReg(APIC_ICR, value & ~APIC_ICR_BUSY);
      avicHardwareIpi(vcpu, value >>> 0, apic.getReg(APIC_ICR2));
  }
}

/**
 * An ICR write that AVIC handles (APM 15.29.3.1): fixed, edge-triggered IPIs with a physical or
 * logical destination or a shorthand. Every target must have a valid table entry (else
 * INVALID_TARGET); IRR is set in each target's backing page; running targets get a doorbell; if
 * any target is not running, AVIC_INCOMPLETE_IPI (TARGET_NOT_RUNNING) follows. Other IPI types
 * exit with INVALID_INT_TYPE, for KVM to emulate.
 */
function avicHardwareIpi(src: KvmVcpu, icrLo: number, icrHi: number): void {
  const kvm = src.kvm;
  const exit = (cause: number, index: number): void =>
    src.cpu.postExit({ code: SVM_EXIT_AVIC_INCOMPLETE_IPI, icrLo, icrHi, cause, index });
  const vector = icrLo & APIC_VECTOR_MASK;
  if ((icrLo & APIC_MODE_MASK) !== APIC_DM_FIXED || icrLo & APIC_INT_LEVELTRIG || vector < 16) {
    exit(AVIC_IPI_FAILURE_INVALID_INT_TYPE, 0);
    return;
  }
  const shorthand = icrLo & APIC_DEST_SHORTHAND_MASK;
  const logical = (icrLo & APIC_DEST_LOGICAL) !== 0;
  const dest = apic_x2apic_mode(src) ? icrHi : icrHi >>> 24;
  const targets: KvmVcpu[] = [];
  if (shorthand === APIC_DEST_SELF) targets.push(src);
  else if (shorthand === APIC_DEST_ALLINC || shorthand === APIC_DEST_ALLBUT) {
    for (const v of kvm.vcpus) if (shorthand === APIC_DEST_ALLINC || v !== src) targets.push(v);
  } else if (!logical && dest !== 0xff) {
    // the physical ID table is indexed by the destination; KVM fills entry vcpu_id
    const v = dest <= AVIC_MAX_PHYSICAL_ID ? kvm.vcpus.find((x) => x.vcpu_id === dest) : undefined;
    if (!v || !v.svm.avic_physical_id_entry.valid) {
      exit(AVIC_IPI_FAILURE_INVALID_TARGET, dest & 0xff);
      return;
    }
    targets.push(v);
  } else {
    // broadcast, or a logical destination through the logical ID table (derived from LDR/DFR)
    for (const v of kvm.vcpus) if (kvm_apic_match_dest(v, src, 0, dest, logical)) targets.push(v);
    if (logical && dest !== 0xff && !logicalEntriesValid(src, dest, targets)) {
      exit(AVIC_IPI_FAILURE_INVALID_TARGET, 0);
      return;
    }
  }
  let notRunning = -1;
  for (const v of targets) {
    if (!v.svm.avic_physical_id_entry.valid) continue;
    apic_set_vector(vector, v.apic, APIC_IRR);
    if (v === src) src.cpu.eventPending = true;
    else if (v.svm.avic_physical_id_entry.is_running) v.cpu.eventPending = true;
    else if (notRunning < 0) notRunning = kvm_x2apic_id(v);
  }
  if (notRunning >= 0) exit(AVIC_IPI_FAILURE_TARGET_NOT_RUNNING, notRunning);
}

/** each set bit of a logical destination must name exactly one APIC (a valid logical-table entry) */
function logicalEntriesValid(src: KvmVcpu, dest: number, targets: readonly KvmVcpu[]): boolean {
  const flat = src.apic.getReg(APIC_DFR) === APIC_DFR_FLAT;
  const bits = flat ? dest & 0xff : dest & 0xf;
  let covered = 0;
  for (const v of targets) {
    const id = v.apic.getReg(APIC_LDR) >>> 24;
    covered |= flat ? id : id & 0xf;
  }
  return (bits & ~covered) === 0;
}

// ---- the AVIC #VMEXIT handlers ------------------------------------------------------------------------------

/** avic_incomplete_ipi_interception (avic.c @ v6.3) */
export function avic_incomplete_ipi_interception(t: Task, vcpu: KvmVcpu, e: Extract<VmExit, { code: typeof SVM_EXIT_AVIC_INCOMPLETE_IPI }>): HostCode<number> {
  return kfn(t, 'avic_incomplete_ipi_interception', function* () {
    t.emit({ kind: 'avic-incomplete-ipi', icrHigh: e.icrHi >>> 0, icrLow: e.icrLo >>> 0, id: e.cause, index: e.index });
    switch (e.cause) {
      case AVIC_IPI_FAILURE_INVALID_INT_TYPE:
      case AVIC_IPI_FAILURE_INVALID_TARGET:
        // a trap: ICR holds the value; KVM emulates the IPI
        if (e.icrLo & APIC_ICR_BUSY) yield* kvm_apic_write_nodecode(t, vcpu, APIC_ICR);
        else yield* kvm_apic_send_ipi(t, vcpu, e.icrLo, e.icrHi);
        break;
      case AVIC_IPI_FAILURE_TARGET_NOT_RUNNING:
        yield* avic_kick_target_vcpus(t, vcpu, e.icrLo, e.icrHi);
        break;
      default:
        break;
    }
    return 1;
  });
}

/** avic_kick_target_vcpus: hardware already set IRR; complete the delivery to each target */
function avic_kick_target_vcpus(t: Task, src: KvmVcpu, icrLo: number, icrHi: number): HostCode {
  return kfn(t, 'avic_kick_target_vcpus', function* () {
    const shorthand = icrLo & APIC_DEST_SHORTHAND_MASK;
    const dest = apic_x2apic_mode(src) ? icrHi : icrHi >>> 24;
    const logical = (icrLo & APIC_DEST_LOGICAL) !== 0;
    for (const v of src.kvm.vcpus) {
      if (kvm_apic_match_dest(v, src, shorthand, dest, logical)) yield* svm_complete_interrupt_delivery(t, v);
    }
  });
}

/**
 * avic_unaccelerated_access_interception (avic.c @ v6.3): a trap write applies the register's
 * side effects (kvm_apic_write_nodecode); a fault is emulated (the access was already answered
 * with KVM's emulated value; a faulting store is performed here).
 */
export function* avic_unaccelerated_access_interception(
  t: Task, vcpu: KvmVcpu, e: Extract<VmExit, { code: typeof SVM_EXIT_AVIC_UNACCELERATED_ACCESS }>,
  emulateWrite: (t: Task, vcpu: KvmVcpu, gpa: number, size: number, value: number) => HostCode,
): HostCode<number> {
  return yield* kfn(t, 'avic_unaccelerated_access_interception', function* () {
    t.emit({ kind: 'avic-unaccelerated-access', offset: e.offset, isTrap: e.trap, write: e.write, value: e.value });
    if (e.trap) {
      yield* kfn(t, 'avic_unaccel_trap_write', function* () {
        if (e.offset === APIC_RRR) return; // RRR writes are ignored
        yield* kvm_apic_write_nodecode(t, vcpu, e.offset);
      });
    } else if (e.write) {
      yield* emulateWrite(t, vcpu, e.gpa, e.size, e.value);
    }
    return 1;
  });
}

// ---- x2AVIC: x2APIC MSRs without intercepts -----------------------------------------------------------------

/** the x2APIC MSRs avic_activate_vmcb stops intercepting in x2AVIC mode (svm.c :: x2avic passthrough list; LVTT stays intercepted) */
function x2avicPassthrough(msr: number): boolean {
  const reg = (msr - 0x800) << 4;
  if (msr < 0x800 || msr > 0x83f) return false;
  if (reg === APIC_LVTT || reg === APIC_SELF_IPI || reg === APIC_TMCCT) return false;
  return reg <= APIC_TDCR;
}

/**
 * An x2APIC MSR access that x2AVIC completes in hardware: reads of readable registers from the
 * backing page, TPR and EOI writes, ICR writes (the hardware IPI). Anything else returns
 * undefined: intercepted (or faulting), handled by KVM as an MSR exit.
 */
export function x2avicMsr(vcpu: KvmVcpu, msr: number, write: boolean, value: bigint): bigint | undefined {
  if (!x2avicMode(vcpu) || !x2avicPassthrough(msr)) return undefined;
  const reg = (msr - 0x800) << 4;
  const apic = vcpu.apic;
  if (!write) {
    if (reg === APIC_ICR) return (BigInt(apic.getReg(APIC_ICR2)) << 32n) | BigInt(apic.getReg(APIC_ICR));
    if (avicReadKind(reg) !== 'accel' || reg === APIC_ARBPRI || reg === APIC_DFR || reg === APIC_ICR2) return undefined;
    if (reg === APIC_PROCPRI) __apic_update_ppr(apic);
    return BigInt(apic.getReg(reg));
  }
  const lo = Number(value & 0xffffffffn);
  const hi = Number(value >> 32n);
  switch (reg) {
    case APIC_TASKPRI:
      if (hi !== 0) return undefined;
      apic.setReg(APIC_TASKPRI, lo & 0xff);
      __apic_update_ppr(apic);
      vcpu.cpu.eventPending = true;
      return 0n;
    case APIC_EOI: {
      if (hi !== 0) return undefined;
      const vector = apic_find_highest_isr(apic);
      if (vector !== -1) apic_clear_vector(vector, apic, APIC_ISR);
      __apic_update_ppr(apic);
      vcpu.cpu.eventPending = true;
      return 0n;
    }
    case APIC_ICR:
      apic.setReg(APIC_ICR2, hi);
      apic.setReg(APIC_ICR, lo & ~APIC_ICR_BUSY);
      avicHardwareIpi(vcpu, lo, hi);
      return 0n;
    default:
      return undefined;
  }
}

/** AVIC physical ID table setup at vCPU creation (avic_init_backing_page): the entry becomes valid */
export function avic_init_backing_page(vcpu: KvmVcpu): void {
  vcpu.svm.avic_physical_id_entry.valid = true;
}


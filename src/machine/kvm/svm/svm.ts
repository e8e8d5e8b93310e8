// The SVM vendor module (arch/x86/kvm/svm/svm.c @ v6.3): kvm_x86_ops for SVM with AVIC,
// svm_vcpu_run (EVENTINJ, VMRUN, the kvm_entry/kvm_exit tracepoints), svm_handle_exit and the
// interception handlers, interrupt windows (with the IRQWIN inhibit), MSRs SVM owns, the
// guest-physical space outside RAM as NPT and AVIC present it, and the hook through which the
// CPU asks about pending physical and virtual interrupts while the guest runs.

import type { Cpu } from '../../cpu/cpu';
import { NMI as NMI_VECTOR, UD } from '../../cpu/exceptions';
import {
  type DeviceAccess, exitName, SVM_EXIT_AVIC_INCOMPLETE_IPI, SVM_EXIT_AVIC_UNACCELERATED_ACCESS, SVM_EXIT_CLGI, SVM_EXIT_CPUID,
  SVM_EXIT_HLT, SVM_EXIT_INTR, SVM_EXIT_INVLPGA, SVM_EXIT_IOIO, SVM_EXIT_MSR, SVM_EXIT_NPF, SVM_EXIT_SHUTDOWN, SVM_EXIT_SKINIT,
  SVM_EXIT_STGI, SVM_EXIT_VINTR, SVM_EXIT_VMLOAD, SVM_EXIT_VMMCALL, SVM_EXIT_VMRUN, SVM_EXIT_VMSAVE, type VmExit,
} from '../../cpu/vmexit';
import { apicAccessPageMapped, kvm_set_or_clear_apicv_inhibit } from '../apicv';
import { APIC_DEFAULT_PHYS_BASE, APIC_IRR } from '../apicdef';
import { apic_set_vector } from '../lapic_h';
import {
  APICV_INHIBIT_REASON_ABSENT, APICV_INHIBIT_REASON_APIC_BASE_MODIFIED, APICV_INHIBIT_REASON_APIC_ID_MODIFIED,
  APICV_INHIBIT_REASON_BLOCKIRQ, APICV_INHIBIT_REASON_DISABLE, APICV_INHIBIT_REASON_HYPERV, APICV_INHIBIT_REASON_IRQWIN,
  APICV_INHIBIT_REASON_LOGICAL_ID_ALIASED, APICV_INHIBIT_REASON_NESTED, APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED,
  APICV_INHIBIT_REASON_PIT_REINJ, APICV_INHIBIT_REASON_SEV, APICV_INHIBIT_REASON_X2APIC, KVM_REQ_EVENT, kvm_make_request,
  type KvmVcpu, type KvmX86Ops,
} from '../kvm_host';
import { apic_mmio_read, apic_mmio_write } from '../lapic';
import { type HostCode, kfn, runGuest, type Task } from '../task';
import {
  apicvEntryState, kvm_emulate_cpuid, kvm_emulate_halt, kvm_emulate_hypercall, kvm_emulate_msr, kvm_get_msr_common,
  kvm_queue_exception, kvm_set_msr_common, kvm_skip_emulated_instruction, setRunExit,
} from '../x86';
import {
  avic_incomplete_ipi_interception, avic_refresh_apicv_exec_ctrl, avic_unaccelerated_access_interception, avic_vcpu_load,
  avic_vcpu_put, avicAcceptInterrupt, avicDecodesMmio, avicInterruptWaiting, avicMmioRead, avicMmioWrite,
  svm_complete_interrupt_delivery,
} from './avic';
import { nested_exit_on_intr, nested_svm_check_permissions, nested_svm_exit_handled, nested_svm_vmexit, nested_svm_vmrun } from './nested';
import { MSR_VM_CR, MSR_VM_HSAVE_PA } from './svm_h';

/** AVIC_REQUIRED_APICV_INHIBITS (svm.h @ v6.3); the thread's v3 adds X2APIC */
function requiredInhibits(x2apicListed: boolean): number {
  const bits = [
    APICV_INHIBIT_REASON_DISABLE, APICV_INHIBIT_REASON_ABSENT, APICV_INHIBIT_REASON_HYPERV, APICV_INHIBIT_REASON_NESTED,
    APICV_INHIBIT_REASON_IRQWIN, APICV_INHIBIT_REASON_PIT_REINJ, APICV_INHIBIT_REASON_BLOCKIRQ, APICV_INHIBIT_REASON_SEV,
    APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED, APICV_INHIBIT_REASON_APIC_ID_MODIFIED, APICV_INHIBIT_REASON_APIC_BASE_MODIFIED,
    APICV_INHIBIT_REASON_LOGICAL_ID_ALIASED,
  ];
  if (x2apicListed) bits.push(APICV_INHIBIT_REASON_X2APIC);
  return bits.reduce((m, b) => m | (1 << b), 0);
}

// ---- the guest-physical space outside RAM ------------------------------------------------------------

const APIC_PAGE_END = APIC_DEFAULT_PHYS_BASE + 4096;

function inApicAccessPage(gpa: number): boolean {
  return gpa >= APIC_DEFAULT_PHYS_BASE && gpa < APIC_PAGE_END;
}

function allOnes(size: number): number {
  return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
}

function emulatedRead(vcpu: KvmVcpu, gpa: number, size: number): { value: number; unhandled: boolean } {
  const v = apic_mmio_read(vcpu, gpa, size);
  return v === undefined ? { value: allOnes(size), unhandled: true } : { value: v >>> 0, unhandled: false };
}

/**
 * A guest load outside RAM: the APIC-access page mapped by NPT (AVIC's backing page when AVIC
 * decodes the BAR, else the private page's memory), or a nested page fault that KVM emulates
 * (the vCPU's LAPIC when the address is its MMIO window, else userspace: all-ones).
 */
export function svm_mmio_read(vcpu: KvmVcpu, gpa: number, size: number): number {
  if (inApicAccessPage(gpa) && apicAccessPageMapped(vcpu)) {
    const x2apic = (vcpu.apic_base & (1 << 10)) !== 0;
    if (avicDecodesMmio(vcpu)) {
      const value = avicMmioRead(vcpu, gpa, size, () => emulatedRead(vcpu, gpa, size).value) >>> 0;
      vcpu.task.emit({ kind: 'apic-page-access', gpa, size, value, write: false, path: 'avic-backing-page', x2apic });
      return value;
    }
    const page = vcpu.kvm.apicAccessPage;
    const off = gpa - APIC_DEFAULT_PHYS_BASE;
    let value = 0;
    for (let k = 0; k < size && off + k < 4096; k++) value |= page[off + k] << (8 * k);
    vcpu.task.emit({ kind: 'apic-page-access', gpa, size, value: value >>> 0, write: false, path: 'private-page', x2apic });
    return value;
  }
  const { value } = emulatedRead(vcpu, gpa, size);
  const access: DeviceAccess = { where: gpa, size, write: false, value };
  vcpu.cpu.postExit({ code: SVM_EXIT_NPF, accesses: [access] });
  return value;
}

export function svm_mmio_write(vcpu: KvmVcpu, gpa: number, size: number, value: number): void {
  const v = size === 4 ? value >>> 0 : value & allOnes(size);
  if (inApicAccessPage(gpa) && apicAccessPageMapped(vcpu)) {
    const x2apic = (vcpu.apic_base & (1 << 10)) !== 0;
    if (avicDecodesMmio(vcpu)) {
      vcpu.task.emit({ kind: 'apic-page-access', gpa, size, value: v, write: true, path: 'avic-backing-page', x2apic });
      avicMmioWrite(vcpu, gpa, size, v);
      return;
    }
    const page = vcpu.kvm.apicAccessPage;
    const off = gpa - APIC_DEFAULT_PHYS_BASE;
    for (let k = 0; k < size && off + k < 4096; k++) page[off + k] = (v >>> (8 * k)) & 0xff;
    vcpu.task.emit({ kind: 'apic-page-access', gpa, size, value: v, write: true, path: 'private-page', x2apic });
    return;
  }
  vcpu.cpu.postExit({ code: SVM_EXIT_NPF, accesses: [{ where: gpa, size, write: true, value: v }] });
}

// ---- what the running guest sees arrive ------------------------------------------------------------------

/**
 * The CPU's event hook (cpu.onEvents): a physical IPI exits (SVM_EXIT_INTR); AVIC takes an
 * interrupt from the backing page; an NMI or an open interrupt window exits for KVM to inject.
 * Returns true when the guest must stop.
 */
export function svm_guest_events(vcpu: KvmVcpu, cpu: Cpu): boolean {
  cpu.eventPending = false;
  cpu.irqWaiting = false;
  if (vcpu.ipiPending) {
    cpu.postExit({ code: SVM_EXIT_INTR });
    return true;
  }
  if (vcpu.nmi_pending > 0 && !cpu.nmiBlocked && vcpu.svm.gif) {
    cpu.postExit({ code: SVM_EXIT_INTR });
    return true;
  }
  if (avicAcceptInterrupt(vcpu)) {
    cpu.eventPending = true; // another may follow
    return false;
  }
  if (vcpu.svm.vintr) {
    if (cpu.interruptible() && vcpu.svm.gif) {
      cpu.postExit({ code: SVM_EXIT_VINTR });
      return true;
    }
  }
  if (vcpu.svm.vintr || avicInterruptWaiting(vcpu)) {
    // waiting for IF (setting it raises eventPending) or for the end of an interrupt shadow
    if (cpu.getRflags() & 0x200) cpu.eventPending = true;
    else cpu.irqWaiting = true;
  }
  return false;
}

// ---- running the guest ---------------------------------------------------------------------------------

/** svm_vcpu_run: trace kvm_entry, deliver EVENTINJ, VMRUN until a #VMEXIT, trace kvm_exit. */
function svm_vcpu_run(t: Task, vcpu: KvmVcpu): HostCode<VmExit> {
  return kfn(t, 'svm_vcpu_run', function* () {
    const cpu = vcpu.cpu;
    t.emit({ kind: 'vmentry', ...apicvEntryState(vcpu) });
    const inj = vcpu.svm.event_inj;
    vcpu.svm.event_inj = null;
    if (inj) {
      if (inj.type === 'nmi') cpu.nmiBlocked = true;
      cpu.deliver(inj.vector, inj.errorCode, inj.type === 'exception' ? 'fault' : 'external');
    }
    cpu.eventPending = true; // let the CPU look at what is pending before the first instruction
    const exit = yield* runGuest();
    t.emit({ kind: 'vmexit', code: exit.code, name: exitName(exit.code), ...exitInfo(exit) });
    return exit;
  });
}

function exitInfo(e: VmExit): { info1: bigint; info2: bigint } {
  switch (e.code) {
    case SVM_EXIT_IOIO:
      return { info1: (BigInt(e.access.where) << 16n) | (BigInt(e.access.size) << 4n) | (e.access.write ? 0n : 1n), info2: 0n };
    case SVM_EXIT_NPF:
      return { info1: e.accesses[0]?.write ? 2n : 0n, info2: BigInt(e.accesses[0]?.where ?? 0) };
    case SVM_EXIT_MSR:
      return { info1: e.write ? 1n : 0n, info2: BigInt(e.msr) };
    case SVM_EXIT_AVIC_INCOMPLETE_IPI:
      return { info1: (BigInt(e.icrHi >>> 0) << 32n) | BigInt(e.icrLo >>> 0), info2: (BigInt(e.cause) << 32n) | BigInt(e.index) };
    case SVM_EXIT_AVIC_UNACCELERATED_ACCESS:
      return { info1: (e.write ? 1n << 32n : 0n) | BigInt(e.offset), info2: 0n };
    default:
      return { info1: 0n, info2: 0n };
  }
}

// ---- exit handlers ---------------------------------------------------------------------------------------

/** io_interception -> kvm_fast_pio: no in-kernel port devices, so every access goes to userspace (KVM_EXIT_IO). */
function io_interception(t: Task, vcpu: KvmVcpu, a: DeviceAccess): number {
  const ports = vcpu.kvm.userspacePorts;
  t.emit({ kind: 'pio', port: a.where, size: a.size, value: a.value, write: a.write, unhandled: !(a.write && ports.has(a.where)) });
  setRunExit(vcpu, { reason: 'KVM_EXIT_IO', port: a.where, size: a.size, write: a.write, data: a.value, rip: vcpu.cpu.exitRip });
  return 0;
}

/** npf_interception -> kvm_mmu_page_fault -> emulation: each access to the vCPU's LAPIC or to userspace. */
function npf_interception(t: Task, vcpu: KvmVcpu, accesses: readonly DeviceAccess[]): HostCode<number> {
  return kfn(t, 'npf_interception', function* () {
    let toUserspace: DeviceAccess | undefined;
    for (const a of accesses) {
      if (!a.write) {
        const unhandled = apic_mmio_read(vcpu, a.where, a.size) === undefined;
        t.emit({ kind: 'mmio-read', gpa: a.where, size: a.size, value: a.value, unhandled });
        if (unhandled) toUserspace ??= a;
        continue;
      }
      const mine = yield* emulate_mmio_write(t, vcpu, a.where, a.size, a.value);
      if (!mine) toUserspace ??= a;
    }
    if (toUserspace) {
      setRunExit(vcpu, { reason: 'KVM_EXIT_MMIO', gpa: toUserspace.where, size: toUserspace.size, write: toUserspace.write, data: toUserspace.value });
      return 0;
    }
    return 1;
  });
}

/** vcpu_mmio_write: the vCPU's LAPIC first (apic_mmio_write), else not handled in the kernel */
function* emulate_mmio_write(t: Task, vcpu: KvmVcpu, gpa: number, size: number, value: number): HostCode<boolean> {
  const mine = yield* apic_mmio_write(t, vcpu, gpa, size, value);
  t.emit({ kind: 'mmio-write', gpa, size, value: value >>> 0, unhandled: !mine });
  return mine;
}

/** interrupt_window_interception: KVM_REQ_EVENT, clear V_IRQ, clear the IRQWIN inhibit */
function interrupt_window_interception(t: Task, vcpu: KvmVcpu): HostCode<number> {
  return kfn(t, 'interrupt_window_interception', function* () {
    yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
    vcpu.svm.vintr = false;
    yield* kvm_set_or_clear_apicv_inhibit(t, vcpu.kvm, APICV_INHIBIT_REASON_IRQWIN, false);
    return 1;
  });
}

function svm_invoke_exit_handler(t: Task, vcpu: KvmVcpu, exit: VmExit): HostCode<number> {
  return kfn(t, 'svm_invoke_exit_handler', function* (): HostCode<number> {
    switch (exit.code) {
      case SVM_EXIT_INTR:
        return 1; // intr_interception: the host took its IPI
      case SVM_EXIT_VINTR:
        return yield* interrupt_window_interception(t, vcpu);
      case SVM_EXIT_IOIO:
        return io_interception(t, vcpu, exit.access);
      case SVM_EXIT_NPF:
        return yield* npf_interception(t, vcpu, exit.accesses);
      case SVM_EXIT_MSR:
        return yield* kfn(t, 'msr_interception', () => kvm_emulate_msr(t, vcpu, exit.msr, exit.write));
      case SVM_EXIT_CPUID:
        return kvm_emulate_cpuid(vcpu);
      case SVM_EXIT_HLT:
        return kvm_emulate_halt(t, vcpu);
      case SVM_EXIT_VMMCALL:
        return kvm_emulate_hypercall(vcpu);
      case SVM_EXIT_VMRUN:
        return yield* kfn(t, 'vmrun_interception', () => nested_svm_vmrun(t, vcpu));
      case SVM_EXIT_STGI: case SVM_EXIT_CLGI: case SVM_EXIT_VMLOAD: case SVM_EXIT_VMSAVE: case SVM_EXIT_INVLPGA:
        if (!nested_svm_check_permissions(vcpu)) return 1;
        if (exit.code === SVM_EXIT_STGI) {
          vcpu.svm.gif = true;
          vcpu.cpu.eventPending = true;
          yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
        } else if (exit.code === SVM_EXIT_CLGI) vcpu.svm.gif = false;
        else if (exit.code === SVM_EXIT_INVLPGA) vcpu.cpu.flushTlb();
        // VMLOAD/VMSAVE move FS/GS/TR/LDTR/KernelGSBase/STAR/SYSENTER state: not modelled (a no-op)
        return kvm_skip_emulated_instruction(vcpu);
      case SVM_EXIT_SKINIT:
        kvm_queue_exception(vcpu, UD);
        return 1;
      case SVM_EXIT_SHUTDOWN:
        setRunExit(vcpu, { reason: 'KVM_EXIT_SHUTDOWN' });
        return 0;
      case SVM_EXIT_AVIC_INCOMPLETE_IPI:
        return yield* avic_incomplete_ipi_interception(t, vcpu, exit);
      case SVM_EXIT_AVIC_UNACCELERATED_ACCESS:
        return yield* avic_unaccelerated_access_interception(t, vcpu, exit, function* (tt, v, gpa, size, value) {
          yield* emulate_mmio_write(tt, v, gpa, size, value);
        });
      default:
        return 1;
    }
  });
}

/** svm_handle_exit: an exit of L2 that VMCB12 intercepts goes to L1; everything else to KVM's handlers. */
function svm_handle_exit(t: Task, vcpu: KvmVcpu, exit: VmExit): HostCode<number> {
  return kfn(t, 'svm_handle_exit', function* () {
    if (vcpu.svm.nested.guest_mode && nested_svm_exit_handled(vcpu, exit)) {
      yield* nested_svm_vmexit(t, vcpu, exit.code);
      return 1;
    }
    return yield* svm_invoke_exit_handler(t, vcpu, exit);
  });
}

// ---- interrupts and windows --------------------------------------------------------------------------

/** svm_interrupt_blocked (negated): GIF, then the IF that applies (L1's with V_INTR_MASKING in L2), no shadow */
function svm_interrupt_allowed(vcpu: KvmVcpu): boolean {
  const cpu = vcpu.cpu;
  if (!vcpu.svm.gif) return false;
  const nested = vcpu.svm.nested;
  if (nested.guest_mode && nested.v_intr_masking) {
    if (!((nested.l1?.rflags ?? 0) & 0x200)) return false;
    return true;
  }
  return cpu.interruptible();
}

/**
 * svm_enable_irq_window (svm.c @ v6.3): outside L2 the IRQWIN inhibit is set VM-wide (AVIC and
 * V_IRQ cannot coexist), then V_IRQ with the VINTR intercept.
 */
function svm_enable_irq_window(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'svm_enable_irq_window', function* () {
    if (!vcpu.svm.gif) return;
    if (!vcpu.svm.nested.guest_mode) yield* kvm_set_or_clear_apicv_inhibit(t, vcpu.kvm, APICV_INHIBIT_REASON_IRQWIN, true);
    else if (yield* nested_exit_on_intr(t, vcpu)) return;
    vcpu.svm.vintr = true;
  });
}

// ---- MSRs SVM owns -------------------------------------------------------------------------------------

function svm_get_msr(t: Task, vcpu: KvmVcpu, msr: number): HostCode<bigint | undefined> {
  return kfn(t, 'svm_get_msr', function* () {
    if (msr === MSR_VM_HSAVE_PA) return vcpu.kvm.config.nested ? vcpu.svm.nested.hsave_msr : undefined;
    if (msr === MSR_VM_CR) return vcpu.kvm.config.nested ? vcpu.svm.nested.vm_cr_msr : undefined;
    return kvm_get_msr_common(vcpu, msr);
  });
}

function svm_set_msr(t: Task, vcpu: KvmVcpu, msr: number, data: bigint, host: boolean): HostCode<boolean> {
  return kfn(t, 'svm_set_msr', function* () {
    if (msr === MSR_VM_HSAVE_PA) {
      // page-aligned and a legal guest-physical address
      if (!vcpu.kvm.config.nested || data & 0xfffn || data >= 1n << 48n) return false;
      vcpu.svm.nested.hsave_msr = data;
      return true;
    }
    if (msr === MSR_VM_CR) {
      if (!vcpu.kvm.config.nested || data & ~0x18n) return false;
      vcpu.svm.nested.vm_cr_msr = data;
      return true;
    }
    return yield* kvm_set_msr_common(t, vcpu, msr, data, host);
  });
}

// ---- kvm_x86_ops ---------------------------------------------------------------------------------------

/** The SVM kvm_x86_ops for a VM: AVIC present, x2AVIC per the host, the design's inhibit list. */
export function svm_x86_ops(x2avic: boolean, x2apicListed: boolean): KvmX86Ops {
  return {
    required_apicv_inhibits: requiredInhibits(x2apicListed),
    allow_apicv_in_x2apic_without_x2apic_virtualization: !x2avic,
    // avic_vcpu_get_apicv_inhibit_reasons @ v6.3 returns the enum value, not BIT(NESTED)
    vcpu_get_apicv_inhibit_reasons: (vcpu) => (vcpu.svm.nested.guest_mode ? APICV_INHIBIT_REASON_NESTED : 0),
    refresh_apicv_exec_ctrl: avic_refresh_apicv_exec_ctrl,
    set_virtual_apic_mode: () => {},
    deliver_interrupt: function* (t, vcpu, _mode, _trig, vector) {
      yield* kfn(t, 'svm_deliver_interrupt', function* () {
        apic_set_vector(vector, vcpu.apic, APIC_IRR); // kvm_lapic_set_irr
        yield* svm_complete_interrupt_delivery(t, vcpu);
      });
    },
    handle_exit: svm_handle_exit,
    vcpu_run: svm_vcpu_run,
    enable_irq_window: svm_enable_irq_window,
    interrupt_allowed: svm_interrupt_allowed,
    nmi_allowed: (vcpu) => vcpu.svm.gif && !vcpu.cpu.nmiBlocked && vcpu.cpu.icount >= vcpu.cpu.shadowEnd,
    inject_irq: (vcpu, vector) => {
      vcpu.svm.event_inj = { vector, type: 'intr' };
    },
    inject_nmi: (vcpu) => {
      vcpu.svm.event_inj = { vector: NMI_VECTOR, type: 'nmi' };
    },
    vcpu_load: (_t, vcpu) => avic_vcpu_load(vcpu, vcpu.vcpu_id),
    vcpu_put: (_t, vcpu) => avic_vcpu_put(vcpu),
    vcpu_blocking: (_t, vcpu) => avic_vcpu_put(vcpu),
    vcpu_unblocking: (_t, vcpu) => avic_vcpu_load(vcpu, vcpu.vcpu_id),
    get_msr: (t, vcpu, msr) => svm_get_msr(t, vcpu, msr),
    set_msr: svm_set_msr,
  };
}


// arch/x86/kvm/x86.c @ v6.3, the parts on the modelled paths: KVM_RUN (kvm_arch_vcpu_ioctl_run,
// vcpu_run, vcpu_enter_guest with its requests in the kernel's order, vcpu_block), event
// injection (kvm_check_and_inject_events), MSR, CPUID, HLT and hypercall emulation, and the
// vCPU/VM ioctls the host actions use (KVM_SET_MSRS, KVM_SET_SREGS, KVM_SET_LAPIC,
// KVM_SET_GUEST_DEBUG, KVM_SIGNAL_MSI). The vendor side is reached through kvm.x86_ops only.

import { GP } from '../cpu/exceptions';
import { hwReadMsr, hwWriteMsr, MSR_EFER } from '../cpu/ops/system';
import {
  kvm_apic_mode, kvm_arch_vcpu_guestdbg_update_apicv_inhibit, kvm_free_apic_access_page, kvm_vcpu_apicv_activated,
  kvm_vcpu_update_apicv,
} from './apicv';
import { MSR_IA32_APICBASE, MSR_IA32_TSC_DEADLINE } from './apicdef';
import {
  EXITING_GUEST_MODE, IN_GUEST_MODE, type Kvm, KVM_REQ_APF_READY, KVM_REQ_APICV_UPDATE, KVM_REQ_EVENT, KVM_REQ_NMI, KVM_REQ_TLB_FLUSH,
  KVM_REQ_TLB_FLUSH_CURRENT, KVM_REQ_TRIPLE_FAULT, KVM_REQ_UNBLOCK, kvm_check_request, kvm_clear_request, kvm_make_request, kvm_vcpu_srcu_read_lock,
  kvm_vcpu_srcu_read_unlock, type KvmVcpu, OUTSIDE_GUEST_MODE,
} from './kvm_host';
import { kvm_vcpu_halt } from './kvm_main';
import {
  apicBaseError, kvm_apic_accept_events, kvm_apic_has_interrupt, kvm_apic_set_state_id, kvm_get_apic_interrupt,
  kvm_get_lapic_tscdeadline_msr, kvm_inject_apic_timer_irqs, kvm_irq_delivery_to_apic, kvm_lapic_set_base, kvm_recalculate_apic_map,
  kvm_set_lapic_tscdeadline_msr, kvm_x2apic_msr_read, kvm_x2apic_msr_write,
} from './lapic';
import { srcu_read_lock, srcu_read_unlock } from './srcu';
import { type HostCode, kfn, preempt, type Task, withTransition } from './task';

// ---- what KVM_RUN returns to userspace (struct kvm_run) ---------------------------------------------

export type KvmRunExit =
  | { readonly reason: 'KVM_EXIT_IO'; readonly port: number; readonly size: number; readonly write: boolean; readonly data: number; readonly rip: number }
  | { readonly reason: 'KVM_EXIT_MMIO'; readonly gpa: number; readonly size: number; readonly write: boolean; readonly data: number }
  | { readonly reason: 'KVM_EXIT_SHUTDOWN' }
  /** a signal was pending: userspace has something to do (a host action) */
  | { readonly reason: 'KVM_EXIT_INTR' }
  /** the guest did something the model cannot run (a SIPI into real mode) */
  | { readonly reason: 'KVM_EXIT_INTERNAL_ERROR'; readonly message: string };

/** vcpu->run: the exit the handlers fill in before returning 0 */
const runExits = new WeakMap<KvmVcpu, KvmRunExit>();

export function setRunExit(vcpu: KvmVcpu, e: KvmRunExit): void {
  runExits.set(vcpu, e);
  if (e.reason === 'KVM_EXIT_IO' || e.reason === 'KVM_EXIT_MMIO') {
    // userspace sees RIP at the instruction; KVM completes it when KVM_RUN is entered again
    vcpu.completeUserspaceIo = vcpu.cpu.rip;
    vcpu.cpu.rip = vcpu.cpu.exitRip;
  }
}

// ---- small helpers -----------------------------------------------------------------------------------------

export function is_guest_mode(vcpu: KvmVcpu): boolean {
  return vcpu.svm.nested.guest_mode;
}

/** kvm_queue_exception(_e): delivered through EVENTINJ at the next entry; RIP stays at the instruction */
export function kvm_queue_exception(vcpu: KvmVcpu, vector: number, errorCode?: number): void {
  vcpu.svm.event_inj = { vector, type: 'exception', errorCode };
}

export function kvm_inject_gp(vcpu: KvmVcpu): void {
  kvm_queue_exception(vcpu, GP, 0);
}

/** kvm_skip_emulated_instruction: RIP to the instruction's end (SVM's NRIP) */
export function kvm_skip_emulated_instruction(vcpu: KvmVcpu): number {
  vcpu.cpu.skipInstruction();
  return 1;
}

function kvm_vcpu_running(vcpu: KvmVcpu): boolean {
  return vcpu.mp_state === 'KVM_MP_STATE_RUNNABLE';
}

/** kvm_cpu_has_injectable_intr: with APICv active (not in L2) hardware injects, KVM does not */
export function kvm_cpu_has_injectable_intr(vcpu: KvmVcpu): boolean {
  if (!is_guest_mode(vcpu) && vcpu.apic.apicv_active) return false;
  return kvm_apic_has_interrupt(vcpu) !== -1;
}

/** kvm_vcpu_has_events (x86.c @ v6.3), for the modelled event sources */
function kvm_vcpu_has_events(vcpu: KvmVcpu): boolean {
  if (vcpu.apic.pending_events) return true;
  if (vcpu.svm.event_inj?.type === 'exception') return true;
  if (vcpu.testRequest(KVM_REQ_NMI) || (vcpu.nmi_pending > 0 && vcpu.kvm.x86_ops.nmi_allowed(vcpu))) return true;
  if (vcpu.kvm.x86_ops.interrupt_allowed(vcpu) && kvm_apic_has_interrupt(vcpu) !== -1) return true;
  return false;
}

/** kvm_arch_vcpu_runnable */
export function kvm_arch_vcpu_runnable(vcpu: KvmVcpu): boolean {
  return kvm_vcpu_running(vcpu) || kvm_vcpu_has_events(vcpu);
}

// ---- KVM_RUN --------------------------------------------------------------------------------------------

/**
 * kvm_vcpu_ioctl(KVM_RUN) -> kvm_arch_vcpu_ioctl_run (x86.c @ v6.3): vcpu_load, the vCPU SRCU
 * helper around vcpu_run, vcpu_put. Returns what userspace finds in kvm_run.
 */
export function kvm_vcpu_ioctl_run(t: Task, vcpu: KvmVcpu): HostCode<KvmRunExit> {
  return kfn(t, 'kvm_vcpu_ioctl', () => kfn(t, 'kvm_arch_vcpu_ioctl_run', function* () {
    const ops = vcpu.kvm.x86_ops;
    vcpu.inKvmRun = true;
    ops.vcpu_load(t, vcpu);
    if (vcpu.completeUserspaceIo !== null) {
      vcpu.cpu.rip = vcpu.completeUserspaceIo;
      vcpu.completeUserspaceIo = null;
    }
    let exit: KvmRunExit;
    if (vcpu.signalPending) exit = { reason: 'KVM_EXIT_INTR' };
    else {
      yield* kvm_vcpu_srcu_read_lock(t, vcpu);
      yield* vcpu_run(t, vcpu);
      yield* kvm_vcpu_srcu_read_unlock(t, vcpu);
      exit = runExits.get(vcpu) ?? { reason: 'KVM_EXIT_INTR' };
    }
    runExits.delete(vcpu);
    ops.vcpu_put(t, vcpu);
    vcpu.inKvmRun = false;
    return exit;
  }));
}

/** vcpu_run (x86.c @ v6.3): enter the guest or block, until a handler returns to userspace. */
function vcpu_run(t: Task, vcpu: KvmVcpu): HostCode<number> {
  return kfn(t, 'vcpu_run', function* () {
    const kvm = vcpu.kvm;
    let r: number;
    for (;;) {
      r = kvm_vcpu_running(vcpu) ? yield* vcpu_enter_guest(t, vcpu) : yield* vcpu_block(t, vcpu);
      if (r <= 0) break;
      kvm_clear_request(KVM_REQ_UNBLOCK, vcpu);
      if (kvm.design.slot === 'free-in-vcpu-run' && kvm.arch.apic_access_memslot_inhibited && kvm.arch.apic_access_memslot_enabled) {
        // v3 07/28: the first vCPU loop to see the inhibited slot frees it, outside SRCU
        yield* withTransition(t, kvm.arch.apic_access_memslot_inhibit_transition, function* () {
          yield* kvm_vcpu_srcu_read_unlock(t, vcpu);
          yield* kvm_free_apic_access_page(t, kvm);
          yield* kvm_vcpu_srcu_read_lock(t, vcpu);
        });
      }
      if (vcpu.apic.lapic_timer.pending > 0) yield* kvm_inject_apic_timer_irqs(t, vcpu);
      if (vcpu.signalPending) {
        // xfer_to_guest_mode_handle_work: a pending signal ends KVM_RUN with -EINTR
        yield* kvm_vcpu_srcu_read_unlock(t, vcpu);
        setRunExit(vcpu, { reason: 'KVM_EXIT_INTR' });
        yield* kvm_vcpu_srcu_read_lock(t, vcpu);
        r = 0;
        break;
      }
    }
    return r;
  });
}

/** vcpu_block (x86.c @ v6.3): halt outside SRCU until runnable, then leave the halted state. */
function vcpu_block(t: Task, vcpu: KvmVcpu): HostCode<number> {
  return kfn(t, 'vcpu_block', function* () {
    if (!kvm_arch_vcpu_runnable(vcpu)) {
      yield* kvm_vcpu_srcu_read_unlock(t, vcpu);
      yield* kvm_vcpu_halt(t, vcpu);
      yield* kvm_vcpu_srcu_read_lock(t, vcpu);
      if (!kvm_arch_vcpu_runnable(vcpu)) return 1;
    }
    const accepted = yield* kvm_apic_accept_events(t, vcpu);
    if (accepted) return realModeUnsupported(vcpu, accepted);
    if (vcpu.mp_state === 'KVM_MP_STATE_HALTED') vcpu.mp_state = 'KVM_MP_STATE_RUNNABLE';
    return 1;
  });
}

function realModeUnsupported(vcpu: KvmVcpu, what: 'sipi' | 'bsp-init'): number {
  const why = what === 'sipi'
    ? `received INIT and SIPI (vector 0x${vcpu.apic.sipi_vector.toString(16)}): it would start at 0x${(vcpu.apic.sipi_vector << 12).toString(16)} in real mode`
    : 'received INIT: the BSP would go on from the reset vector in real mode';
  setRunExit(vcpu, { reason: 'KVM_EXIT_INTERNAL_ERROR', message: `vCPU ${vcpu.vcpu_id} ${why}, which this CPU model does not run` });
  return 0;
}

/** The requests vcpu_enter_guest services, in the kernel's order (x86.c @ v6.3), for those the model makes. */
function* serviceRequests(t: Task, vcpu: KvmVcpu): HostCode<number> {
  if (yield* kvm_check_request(t, KVM_REQ_TLB_FLUSH, vcpu)) {
    vcpu.cpu.flushTlb();
    kvm_clear_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu);
  }
  if (yield* kvm_check_request(t, KVM_REQ_TLB_FLUSH_CURRENT, vcpu)) vcpu.cpu.flushTlb();
  if (yield* kvm_check_request(t, KVM_REQ_TRIPLE_FAULT, vcpu)) {
    setRunExit(vcpu, { reason: 'KVM_EXIT_SHUTDOWN' });
    return 0;
  }
  if (yield* kvm_check_request(t, KVM_REQ_NMI, vcpu)) {
    // process_nmi: at most one NMI pending besides the one being handled
    vcpu.nmi_pending = Math.min(vcpu.nmi_pending, 1);
    yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
  }
  if (yield* kvm_check_request(t, KVM_REQ_APICV_UPDATE, vcpu)) yield* kvm_vcpu_update_apicv(t, vcpu);
  yield* kvm_check_request(t, KVM_REQ_APF_READY, vcpu); // no async page faults: nothing to complete
  return 1;
}

/**
 * vcpu_enter_guest (x86.c @ v6.3): service requests; on KVM_REQ_EVENT inject events; publish
 * IN_GUEST_MODE and drop SRCU; cancel the entry if a request or kick arrived meanwhile; check the
 * APICv state (the WARN); run the guest; take the IPI with IRQs enabled; retake SRCU; handle the exit.
 */
function* vcpu_enter_guest(t: Task, vcpu: KvmVcpu): HostCode<number> {
  return yield* kfn(t, 'vcpu_enter_guest', function* () {
    const ops = vcpu.kvm.x86_ops;
    if (vcpu.requestPending()) {
      const r = yield* serviceRequests(t, vcpu);
      if (r <= 0) return r;
    }
    if (yield* kvm_check_request(t, KVM_REQ_EVENT, vcpu)) {
      const accepted = yield* kvm_apic_accept_events(t, vcpu);
      if (accepted) return realModeUnsupported(vcpu, accepted);
      if (vcpu.mp_state === 'KVM_MP_STATE_INIT_RECEIVED') return 1;
      yield* kvm_check_and_inject_events(t, vcpu);
    }
    // local_irq_disable; smp_store_release(&vcpu->mode, IN_GUEST_MODE)
    vcpu.irqsDisabled = true;
    vcpu.mode = IN_GUEST_MODE;
    yield* kvm_vcpu_srcu_read_unlock(t, vcpu);
    // kvm_vcpu_exit_request: EXITING_GUEST_MODE (kicked), a request, or a signal
    if (vcpu.mode === EXITING_GUEST_MODE || vcpu.requestPending() || vcpu.signalPending) {
      vcpu.mode = OUTSIDE_GUEST_MODE;
      vcpu.irqsDisabled = false;
      vcpu.ipiPending = false; // local_irq_enable: a pending IPI is taken here
      yield* kvm_vcpu_srcu_read_lock(t, vcpu);
      return 1;
    }
    const exit = yield* ops.vcpu_run(t, vcpu);
    vcpu.mode = OUTSIDE_GUEST_MODE;
    yield* preempt();
    vcpu.irqsDisabled = false;
    vcpu.ipiPending = false; // local_irq_enable: the kick's IPI is acknowledged
    yield* kvm_vcpu_srcu_read_lock(t, vcpu);
    return yield* ops.handle_exit(t, vcpu, exit);
  });
}

/** What the WARN_ON_ONCE in vcpu_enter_guest compares, as the `vmentry` event carries it. */
export function apicvEntryState(vcpu: KvmVcpu): { activated: boolean; apicvActive: boolean; apicDisabled: boolean } {
  return {
    activated: kvm_vcpu_apicv_activated(vcpu),
    apicvActive: vcpu.apic.apicv_active,
    apicDisabled: kvm_apic_mode(vcpu.apic_base) === 'disabled',
  };
}

/**
 * kvm_check_and_inject_events (x86.c @ v6.3): an event already in EVENTINJ stays (re-injection);
 * then a pending NMI, then the highest LAPIC interrupt if allowed (IRR -> ISR, EVENTINJ), else
 * an interrupt window.
 */
function kvm_check_and_inject_events(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'kvm_check_and_inject_events', function* () {
    const ops = vcpu.kvm.x86_ops;
    let canInject = vcpu.svm.event_inj === null;
    if (vcpu.nmi_pending > 0) {
      if (canInject && ops.nmi_allowed(vcpu)) {
        vcpu.nmi_pending--;
        ops.inject_nmi(vcpu);
        canInject = false;
      }
      if (vcpu.nmi_pending > 0) vcpu.cpu.eventPending = true; // the NMI window: evaluated at the next boundary
    }
    if (kvm_cpu_has_injectable_intr(vcpu)) {
      if (canInject && ops.interrupt_allowed(vcpu)) {
        const irq = kvm_get_apic_interrupt(vcpu);
        if (irq !== -1) ops.inject_irq(vcpu, irq);
      }
      if (kvm_cpu_has_injectable_intr(vcpu)) yield* ops.enable_irq_window(t, vcpu);
    }
  });
}

// ---- MSRs, CPUID, HLT, hypercalls ------------------------------------------------------------------------

/** kvm_get_msr_common (x86.c @ v6.3) for the MSRs the model has; undefined: #GP */
export function kvm_get_msr_common(vcpu: KvmVcpu, msr: number): bigint | undefined {
  if (msr === MSR_IA32_APICBASE) return BigInt(vcpu.apic_base);
  if (msr === MSR_IA32_TSC_DEADLINE) return kvm_get_lapic_tscdeadline_msr(vcpu);
  if (msr >= 0x800 && msr <= 0x8ff) return kvm_x2apic_msr_read(vcpu, msr);
  const hw = hwReadMsr(vcpu.cpu, msr);
  return hw === undefined ? undefined : (BigInt(hw[1] >>> 0) << 32n) | BigInt(hw[0] >>> 0);
}

/** kvm_set_msr_common (x86.c @ v6.3); false: #GP (or a failed ioctl) */
export function kvm_set_msr_common(t: Task, vcpu: KvmVcpu, msr: number, data: bigint, host: boolean): HostCode<boolean> {
  return kfn(t, 'kvm_set_msr_common', function* () {
    if (msr === MSR_IA32_APICBASE) return yield* kvm_set_apic_base(t, vcpu, data, host);
    if (msr === MSR_IA32_TSC_DEADLINE) {
      kvm_set_lapic_tscdeadline_msr(vcpu, data);
      return true;
    }
    if (msr >= 0x800 && msr <= 0x8ff) return !(yield* kvm_x2apic_msr_write(t, vcpu, msr, data));
    const lo = Number(data & 0xffffffffn) | 0;
    const hi = Number((data >> 32n) & 0xffffffffn) | 0;
    if (msr === MSR_EFER) {
      const ok = hwWriteMsr(vcpu.cpu, msr, lo, hi) === true;
      if (ok) vcpu.cpu.pagingChanged();
      return ok;
    }
    return hwWriteMsr(vcpu.cpu, msr, lo, hi) === true;
  });
}

/** kvm_set_apic_base (x86.c @ v6.3): validate, then kvm_lapic_set_base and the map recalculation. */
export function kvm_set_apic_base(t: Task, vcpu: KvmVcpu, data: bigint, host: boolean): HostCode<boolean> {
  return kfn(t, 'kvm_set_apic_base', function* () {
    if (apicBaseError(vcpu, data, host) !== undefined) return false;
    yield* kvm_lapic_set_base(t, vcpu, Number(data));
    yield* kvm_recalculate_apic_map(t, vcpu.kvm);
    return true;
  });
}

/** kvm_emulate_rdmsr / kvm_emulate_wrmsr: the vendor's get/set, kvm_msr trace, #GP or skip. */
export function kvm_emulate_msr(t: Task, vcpu: KvmVcpu, msr: number, write: boolean): HostCode<number> {
  return kfn(t, write ? 'kvm_emulate_wrmsr' : 'kvm_emulate_rdmsr', function* () {
    const cpu = vcpu.cpu;
    const ops = vcpu.kvm.x86_ops;
    if (write) {
      const data = (BigInt(cpu.r[4] >>> 0) << 32n) | BigInt(cpu.r[0] >>> 0);
      const ok = yield* ops.set_msr(t, vcpu, msr, data, false);
      t.emit({ kind: 'msr-write', msr, value: data, ok, host: false });
      if (!ok) kvm_inject_gp(vcpu);
      else kvm_skip_emulated_instruction(vcpu);
    } else {
      const v = yield* ops.get_msr(t, vcpu, msr, false);
      t.emit({ kind: 'msr-read', msr, value: v ?? 0n, ok: v !== undefined, host: false });
      if (v === undefined) kvm_inject_gp(vcpu);
      else {
        cpu.r[0] = Number(v & 0xffffffffn) | 0;
        cpu.r[1] = 0;
        cpu.r[4] = Number((v >> 32n) & 0xffffffffn) | 0;
        cpu.r[5] = 0;
        kvm_skip_emulated_instruction(vcpu);
      }
    }
    return 1;
  });
}

/**
 * The CPUID KVM gives this guest (KVM_SET_CPUID2 as the VMM sets it; contracts/guest.md): leaf 1
 * EBX[31:24] = initial APIC ID, ECX.x2APIC and TSC-deadline, EDX.APIC following IA32_APIC_BASE.EN
 * (kvm_update_cpuid_runtime); leaf 0xB EDX = x2APIC ID; SVM only with nested on. Only features the
 * CPU implements are advertised: no x87, no SSE.
 */
export function kvm_cpuid(vcpu: KvmVcpu, leaf: number, subleaf: number): [number, number, number, number] {
  const id = vcpu.vcpu_id;
  const n = vcpu.kvm.vcpus.length;
  const nested = vcpu.kvm.config.nested;
  const maxExt = nested ? 0x8000000a : 0x80000008;
  switch (leaf) {
    case 0:
      return [0xd, 0x68747541, 0x444d4163, 0x69746e65]; // "AuthenticAMD"
    case 1: {
      const eax = 0x00a00f11; // family 19h
      const ebx = ((id & 0xff) << 24) | (Math.min(n, 255) << 16) | (8 << 8);
      const ecx = (1 << 21) | (1 << 24) | (1 << 31); // x2APIC, TSC-deadline, hypervisor
      const apic = vcpu.apic_base & (1 << 11) ? 1 << 9 : 0;
      const edx = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | apic | (1 << 13) | (1 << 15) | (1 << 16); // PSE TSC MSR PAE APIC PGE CMOV PAT
      return [eax, ebx, ecx, edx];
    }
    case 0xb: {
      const shift = Math.max(0, Math.ceil(Math.log2(n)));
      if (subleaf === 0) return [0, 1, 0x100, id];
      if (subleaf === 1) return [shift, n, 0x201, id];
      return [0, 0, subleaf & 0xff, id];
    }
    case 0x80000000:
      return [maxExt, 0x68747541, 0x444d4163, 0x69746e65];
    case 0x80000001: {
      const ecx = 1 | (nested ? 1 << 2 : 0); // LAHF/SAHF in 64-bit mode; SVM
      const edx = (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29); // SYSCALL NX 1GB-pages RDTSCP LM
      return [0x00a00f11, 0, ecx, edx];
    }
    case 0x80000008:
      return [0x3030, 0, 0, 0]; // 48-bit physical and linear addresses
    case 0x8000000a:
      return nested ? [1, 8, 0, 0] : [0, 0, 0, 0];
    default:
      return [0, 0, 0, 0];
  }
}

/** kvm_emulate_cpuid */
export function kvm_emulate_cpuid(vcpu: KvmVcpu): number {
  const r = vcpu.cpu.r;
  const [a, b, c, d] = kvm_cpuid(vcpu, r[0] >>> 0, r[2] >>> 0);
  r[0] = a | 0; r[1] = 0;
  r[6] = b | 0; r[7] = 0;
  r[2] = c | 0; r[3] = 0;
  r[4] = d | 0; r[5] = 0;
  return kvm_skip_emulated_instruction(vcpu);
}

/** kvm_emulate_halt: skip HLT and enter KVM_MP_STATE_HALTED (vcpu_run then blocks) */
export function kvm_emulate_halt(t: Task, vcpu: KvmVcpu): number {
  kvm_skip_emulated_instruction(vcpu);
  vcpu.mp_state = 'KVM_MP_STATE_HALTED';
  t.emit({ kind: 'halt' });
  return 1;
}

/**
 * kvm_emulate_hypercall (x86.c @ v6.3): -KVM_EPERM above CPL 0; KVM_HC_VAPIC_POLL_IRQ (1)
 * returns 0; no PV feature is advertised in CPUID, so every other call returns -KVM_ENOSYS.
 */
export function kvm_emulate_hypercall(vcpu: KvmVcpu): number {
  const cpu = vcpu.cpu;
  const KVM_ENOSYS = 1000;
  const KVM_EPERM = 1;
  const pollIrq = cpu.r[0] === 1 && cpu.r[1] === 0;
  const ret = cpu.cpl !== 0 ? -KVM_EPERM : pollIrq ? 0 : -KVM_ENOSYS;
  cpu.r[0] = ret;
  cpu.r[1] = ret < 0 ? -1 : 0;
  return kvm_skip_emulated_instruction(vcpu);
}

// ---- vCPU and VM ioctls (the host actions) -------------------------------------------------------------

/** KVM_SET_MSRS (msr_io: the entries under a raw srcu_read_lock), host-initiated */
export function kvm_ioctl_set_msrs(t: Task, vcpu: KvmVcpu, msr: number, data: bigint): HostCode<string | undefined> {
  return kfn(t, 'kvm_vcpu_ioctl', () => kfn(t, 'kvm_arch_vcpu_ioctl', () => kfn(t, 'msr_io', function* () {
    yield* srcu_read_lock(t, vcpu.kvm.srcu);
    const ok = yield* kfn(t, 'do_set_msr', () => vcpu.kvm.x86_ops.set_msr(t, vcpu, msr, data, true));
    t.emit({ kind: 'msr-write', msr, value: data, ok, host: true });
    yield* srcu_read_unlock(t, vcpu.kvm.srcu);
    return ok ? undefined : `KVM_SET_MSRS: MSR 0x${msr.toString(16)} = 0x${data.toString(16)} was refused`;
  })));
}

/** KVM_SET_SREGS with a new apic_base (__set_sregs_common: kvm_set_apic_base, host-initiated, no SRCU) */
export function kvm_ioctl_set_sregs_apic_base(t: Task, vcpu: KvmVcpu, apicBase: bigint): HostCode<string | undefined> {
  return kfn(t, 'kvm_vcpu_ioctl', () => kfn(t, 'kvm_arch_vcpu_ioctl_set_sregs', () => kfn(t, '__set_sregs_common', function* () {
    const ok = yield* kvm_set_apic_base(t, vcpu, apicBase, true);
    return ok ? undefined : `KVM_SET_SREGS: apic_base 0x${apicBase.toString(16)} was refused (-EINVAL)`;
  })));
}

/** KVM_SET_LAPIC with the xAPIC ID changed (userspace read the state with KVM_GET_LAPIC first) */
export function kvm_ioctl_set_lapic_id(t: Task, vcpu: KvmVcpu, id: number): HostCode<string | undefined> {
  return kfn(t, 'kvm_vcpu_ioctl', () => kfn(t, 'kvm_arch_vcpu_ioctl', () => kfn(t, 'kvm_vcpu_ioctl_set_lapic', () => kvm_apic_set_state_id(t, vcpu, id))));
}

/** KVM_SET_GUEST_DEBUG with or without KVM_GUESTDBG_BLOCKIRQ */
export function kvm_ioctl_set_guest_debug(t: Task, vcpu: KvmVcpu, blockirq: boolean): HostCode<string | undefined> {
  return kfn(t, 'kvm_vcpu_ioctl', () => kfn(t, 'kvm_arch_vcpu_ioctl_set_guest_debug', function* () {
    vcpu.guest_debug_blockirq = blockirq;
    yield* kvm_arch_vcpu_guestdbg_update_apicv_inhibit(t, vcpu.kvm);
    return undefined;
  }));
}

/** KVM_SIGNAL_MSI, fixed delivery, physical destination (kvm_send_userspace_msi -> kvm_irq_delivery_to_apic) */
export function kvm_vm_ioctl_signal_msi(t: Task, kvm: Kvm, apicId: number, vector: number): HostCode<string | undefined> {
  return kfn(t, 'kvm_vm_ioctl', () => kfn(t, 'kvm_send_userspace_msi', function* () {
    yield* kvm_irq_delivery_to_apic(t, kvm, null, {
      vector, delivery_mode: 0, dest_mode_logical: false, level: true, trig_mode: false, shorthand: 0, dest_id: apicId,
    });
    return undefined;
  }));
}


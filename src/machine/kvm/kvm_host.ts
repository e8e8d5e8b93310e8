// struct kvm and struct kvm_vcpu with their x86 parts, the vCPU request numbers and flags, vCPU
// modes, the APICv inhibit enum, the request helpers and the vCPU SRCU helpers: what
// include/linux/kvm_host.h and arch/x86/include/asm/kvm_host.h hold at v6.3. The vendor
// (kvm_x86_ops) and arch (kvm_arch_*) hooks are tables filled in when the VM is created, as the
// kernel's static calls are, so common code never imports the vendor module.

import type { Cpu } from '../cpu/cpu';
import type { VmExit } from '../cpu/vmexit';
import type { Design } from './design';
import type { KvmLapic } from './lapic_h';
import { Mutex, RwSemaphore } from './locks';
import { SrcuStruct } from './srcu';
import type { VcpuSvm } from './svm/svm_h';
import { type HostCode, kfn, preempt, type Task } from './task';

// ---- requests (include/linux/kvm_host.h, arch/x86/include/asm/kvm_host.h @ v6.3) ------------------

export const KVM_REQUEST_MASK = 0xff;
export const KVM_REQUEST_NO_WAKEUP = 1 << 8;
export const KVM_REQUEST_WAIT = 1 << 9;
export const KVM_REQUEST_NO_ACTION = 1 << 10;
const W_NW = KVM_REQUEST_WAIT | KVM_REQUEST_NO_WAKEUP;
const arch = (n: number, flags = 0): number => (n + 8) | flags;

export const KVM_REQ_TLB_FLUSH = 0 | W_NW;
export const KVM_REQ_VM_DEAD = 1 | W_NW;
export const KVM_REQ_UNBLOCK = 2;
export const KVM_REQ_DIRTY_RING_SOFT_FULL = 3;
export const KVM_REQ_OUTSIDE_GUEST_MODE = KVM_REQUEST_NO_ACTION | W_NW;
export const KVM_REQ_MIGRATE_TIMER = arch(0);
export const KVM_REQ_REPORT_TPR_ACCESS = arch(1);
export const KVM_REQ_TRIPLE_FAULT = arch(2);
export const KVM_REQ_MMU_SYNC = arch(3);
export const KVM_REQ_CLOCK_UPDATE = arch(4);
export const KVM_REQ_LOAD_MMU_PGD = arch(5);
export const KVM_REQ_EVENT = arch(6);
export const KVM_REQ_APF_HALT = arch(7);
export const KVM_REQ_STEAL_UPDATE = arch(8);
export const KVM_REQ_NMI = arch(9);
export const KVM_REQ_PMU = arch(10);
export const KVM_REQ_PMI = arch(11);
export const KVM_REQ_SMI = arch(12);
export const KVM_REQ_MASTERCLOCK_UPDATE = arch(13);
export const KVM_REQ_MCLOCK_INPROGRESS = arch(14, W_NW);
export const KVM_REQ_SCAN_IOAPIC = arch(15, W_NW);
export const KVM_REQ_GLOBAL_CLOCK_UPDATE = arch(16);
export const KVM_REQ_APIC_PAGE_RELOAD = arch(17, W_NW);
export const KVM_REQ_HV_CRASH = arch(18);
export const KVM_REQ_IOAPIC_EOI_EXIT = arch(19);
export const KVM_REQ_HV_RESET = arch(20);
export const KVM_REQ_HV_EXIT = arch(21);
export const KVM_REQ_HV_STIMER = arch(22);
export const KVM_REQ_LOAD_EOI_EXITMAP = arch(23);
export const KVM_REQ_GET_NESTED_STATE_PAGES = arch(24);
export const KVM_REQ_APICV_UPDATE = arch(25, W_NW);
export const KVM_REQ_TLB_FLUSH_CURRENT = arch(26);
export const KVM_REQ_TLB_FLUSH_GUEST = arch(27, W_NW);
export const KVM_REQ_APF_READY = arch(28);
export const KVM_REQ_MSR_FILTER_CHANGED = arch(29);
export const KVM_REQ_UPDATE_CPU_DIRTY_LOGGING = arch(30, W_NW);
export const KVM_REQ_MMU_FREE_OBSOLETE_ROOTS = arch(31, W_NW);
export const KVM_REQ_HV_TLB_FLUSH = arch(32, W_NW);

/** name -> request value with its flags */
export const KVM_REQUESTS: Readonly<Record<string, number>> = {
  KVM_REQ_TLB_FLUSH, KVM_REQ_VM_DEAD, KVM_REQ_UNBLOCK, KVM_REQ_DIRTY_RING_SOFT_FULL, KVM_REQ_MIGRATE_TIMER, KVM_REQ_REPORT_TPR_ACCESS,
  KVM_REQ_TRIPLE_FAULT, KVM_REQ_MMU_SYNC, KVM_REQ_CLOCK_UPDATE, KVM_REQ_LOAD_MMU_PGD, KVM_REQ_EVENT, KVM_REQ_APF_HALT,
  KVM_REQ_STEAL_UPDATE, KVM_REQ_NMI, KVM_REQ_PMU, KVM_REQ_PMI, KVM_REQ_SMI, KVM_REQ_MASTERCLOCK_UPDATE, KVM_REQ_MCLOCK_INPROGRESS,
  KVM_REQ_SCAN_IOAPIC, KVM_REQ_GLOBAL_CLOCK_UPDATE, KVM_REQ_APIC_PAGE_RELOAD, KVM_REQ_HV_CRASH, KVM_REQ_IOAPIC_EOI_EXIT,
  KVM_REQ_HV_RESET, KVM_REQ_HV_EXIT, KVM_REQ_HV_STIMER, KVM_REQ_LOAD_EOI_EXITMAP, KVM_REQ_GET_NESTED_STATE_PAGES,
  KVM_REQ_APICV_UPDATE, KVM_REQ_TLB_FLUSH_CURRENT, KVM_REQ_TLB_FLUSH_GUEST, KVM_REQ_APF_READY, KVM_REQ_MSR_FILTER_CHANGED,
  KVM_REQ_UPDATE_CPU_DIRTY_LOGGING, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, KVM_REQ_HV_TLB_FLUSH,
};

/** request number (bits 7:0) -> name, for events, views and breakpoint conditions */
export const KVM_REQ_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(KVM_REQUESTS).map(([name, req]) => [req & KVM_REQUEST_MASK, name]),
);

export function requestName(req: number): string {
  return KVM_REQ_NAMES[req & KVM_REQUEST_MASK] ?? `request ${req & KVM_REQUEST_MASK}`;
}

// ---- vCPU modes and MP states --------------------------------------------------------------------

export const OUTSIDE_GUEST_MODE = 0;
export const IN_GUEST_MODE = 1;
export const EXITING_GUEST_MODE = 2;
export const READING_SHADOW_PAGE_TABLES = 3;
export const VCPU_MODE_NAMES = ['OUTSIDE_GUEST_MODE', 'IN_GUEST_MODE', 'EXITING_GUEST_MODE', 'READING_SHADOW_PAGE_TABLES'] as const;

export type MpState = 'KVM_MP_STATE_RUNNABLE' | 'KVM_MP_STATE_HALTED' | 'KVM_MP_STATE_INIT_RECEIVED';

// ---- APICv inhibits (arch/x86/include/asm/kvm_host.h :: enum kvm_apicv_inhibit @ v6.3) ---------------

export const APICV_INHIBIT_REASON_DISABLE = 0;
export const APICV_INHIBIT_REASON_HYPERV = 1;
export const APICV_INHIBIT_REASON_ABSENT = 2;
export const APICV_INHIBIT_REASON_BLOCKIRQ = 3;
export const APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED = 4;
export const APICV_INHIBIT_REASON_APIC_ID_MODIFIED = 5;
export const APICV_INHIBIT_REASON_APIC_BASE_MODIFIED = 6;
export const APICV_INHIBIT_REASON_NESTED = 7;
export const APICV_INHIBIT_REASON_IRQWIN = 8;
export const APICV_INHIBIT_REASON_PIT_REINJ = 9;
export const APICV_INHIBIT_REASON_SEV = 10;
export const APICV_INHIBIT_REASON_LOGICAL_ID_ALIASED = 11;
/** only in the thread's v3: reserved, never set in the VM word */
export const APICV_INHIBIT_REASON_X2APIC = 12;

export const APICV_INHIBIT_NAMES = [
  'DISABLE', 'HYPERV', 'ABSENT', 'BLOCKIRQ', 'PHYSICAL_ID_ALIASED', 'APIC_ID_MODIFIED', 'APIC_BASE_MODIFIED', 'NESTED', 'IRQWIN',
  'PIT_REINJ', 'SEV', 'LOGICAL_ID_ALIASED', 'X2APIC',
] as const;

/** names of the set bits of an inhibit word */
export function inhibitNames(word: number): string[] {
  const out: string[] = [];
  for (let b = 0; b < APICV_INHIBIT_NAMES.length; b++) if (word & (1 << b)) out.push(APICV_INHIBIT_NAMES[b]);
  return out;
}

// ---- memslots ------------------------------------------------------------------------------------

/** KVM_USER_MEM_SLOTS is 32764 on x86 at v6.3; the private slots follow (asm/kvm_host.h) */
export const TSS_PRIVATE_MEMSLOT = 32764;
export const APIC_ACCESS_PAGE_PRIVATE_MEMSLOT = 32765;
export const IDENTITY_PAGETABLE_PRIVATE_MEMSLOT = 32766;

export interface Memslot {
  readonly id: number;
  readonly gpa: number;
  readonly size: number;
  readonly private: boolean;
}

// ---- the VM and its vCPUs ------------------------------------------------------------------------------

export interface KvmConfig {
  /** the `avic` module parameter (enable_apicv) */
  readonly avic: boolean;
  /** the host CPU has x2AVIC */
  readonly x2avic: boolean;
  /** SVM exposed to the guest */
  readonly nested: boolean;
}

/** The vendor hooks common code calls (struct kvm_x86_ops), filled by svm.ts. */
export interface KvmX86Ops {
  readonly required_apicv_inhibits: number;
  /** SVM sets it when AVIC works without x2AVIC (svm.c :: svm_hardware_setup @ v6.3) */
  readonly allow_apicv_in_x2apic_without_x2apic_virtualization: boolean;
  vcpu_get_apicv_inhibit_reasons(vcpu: KvmVcpu): number;
  refresh_apicv_exec_ctrl(t: Task, vcpu: KvmVcpu): HostCode;
  set_virtual_apic_mode(vcpu: KvmVcpu): void;
  deliver_interrupt(t: Task, vcpu: KvmVcpu, deliveryMode: number, triggerMode: number, vector: number): HostCode;
  handle_exit(t: Task, vcpu: KvmVcpu, exit: VmExit): HostCode<number>;
  /** the VMRUN of svm_vcpu_run: runs the guest until a #VMEXIT */
  vcpu_run(t: Task, vcpu: KvmVcpu): HostCode<VmExit>;
  enable_irq_window(t: Task, vcpu: KvmVcpu): HostCode;
  interrupt_allowed(vcpu: KvmVcpu): boolean;
  nmi_allowed(vcpu: KvmVcpu): boolean;
  inject_irq(vcpu: KvmVcpu, vector: number): void;
  inject_nmi(vcpu: KvmVcpu): void;
  vcpu_load(t: Task, vcpu: KvmVcpu): void;
  vcpu_put(t: Task, vcpu: KvmVcpu): void;
  vcpu_blocking(t: Task, vcpu: KvmVcpu): void;
  vcpu_unblocking(t: Task, vcpu: KvmVcpu): void;
  get_msr(t: Task, vcpu: KvmVcpu, msr: number, host: boolean): HostCode<bigint | undefined>;
  set_msr(t: Task, vcpu: KvmVcpu, msr: number, value: bigint, host: boolean): HostCode<boolean>;
}

/** The arch hooks generic code calls (kvm_arch_*), filled by x86.ts. */
export interface KvmArchHooks {
  kvm_arch_vcpu_runnable(vcpu: KvmVcpu): boolean;
}

export class KvmArch {
  /** protects apicv_inhibit_reasons */
  readonly apicv_update_lock = new RwSemaphore('apicv_update_lock');
  apicv_inhibit_reasons = 0;
  apic_access_memslot_enabled = false;
  apic_access_memslot_inhibited = false;
  /** the transition the v3 design's inhibited flag was set for (contracts/kvm-model.md, memslot-double-toggle) */
  apic_access_memslot_inhibit_transition: number | null = null;
  /** kvm_recalculate_apic_map's result is derived on demand (lapic.ts); this records that it must be rebuilt */
  apic_map_dirty = true;
  /** serializes kvm_recalculate_apic_map */
  readonly apic_map_lock = new Mutex('apic_map_lock');
  /** KVM_CAP_X2APIC_API enabled (as QEMU does): 32-bit x2APIC IDs, aliased xAPIC IDs ignored */
  readonly x2apic_format = true;
}

export class Kvm {
  readonly vcpus: KvmVcpu[] = [];
  readonly srcu = new SrcuStruct();
  readonly slots_lock = new Mutex('slots_lock');
  readonly arch = new KvmArch();
  /** memslots by id (user slot 0 is RAM) */
  readonly memslots = new Map<number, Memslot>();
  /** ports the VMM serves (the others are unhandled accesses) */
  userspacePorts: ReadonlySet<number> = new Set();
  /** the host memory behind the APIC-access slot (its "memory semantics") */
  readonly apicAccessPage = new Uint8Array(4096);
  private transitions = 0;
  x86_ops!: KvmX86Ops;
  arch_hooks!: KvmArchHooks;

  constructor(
    readonly design: Design,
    readonly config: KvmConfig,
    /** virtual time in ns (one scheduler step each) */
    readonly now: () => number,
  ) {}

  /** A new APICv transition (an inhibit flip, an x2APIC enable, a per-vCPU activation change). */
  newTransition(): number {
    return ++this.transitions;
  }
}

export class KvmVcpu {
  mode = OUTSIDE_GUEST_MODE;
  /** pending requests by number; `requestTransition` the transition of the latest make */
  private readonly requests = new Uint8Array(64);
  private readonly requestTransition: (number | null)[] = new Array(64).fill(null);
  /** vcpu->srcu_depth (CONFIG_PROVE_RCU) */
  srcu_depth = 0;
  /** an IPI sent to the pCPU this vCPU is loaded on, not yet taken (it forces a #VMEXIT) */
  ipiPending = false;
  /** a signal is pending for the vCPU thread: userspace wants it out of KVM_RUN */
  signalPending = false;
  /** in kvm_vcpu_block (halted or blocked): kvm_vcpu_wake_up wakes it */
  blocking = false;
  /** a wake-up (rcuwait_wake_up) arrived while blocking */
  woken = false;
  /** complete_userspace_io: where the guest goes on after an I/O or MMIO exit to userspace (RIP shows the instruction meanwhile) */
  completeUserspaceIo: number | null = null;
  /** IRQs disabled on the vCPU's pCPU (vcpu_enter_guest's entry window): IPIs wait */
  irqsDisabled = false;
  /** the vCPU task is inside KVM_RUN (vcpu_load'ed) */
  inKvmRun = false;
  mp_state: MpState = 'KVM_MP_STATE_RUNNABLE';
  /** vcpu->arch.apic_base: IA32_APIC_BASE */
  apic_base = 0;
  /** KVM_GUESTDBG_BLOCKIRQ set by KVM_SET_GUEST_DEBUG */
  guest_debug_blockirq = false;
  nmi_pending = 0;
  /** an NMI is being handled by the guest (until IRET) */
  nmi_masked = false;

  constructor(
    readonly kvm: Kvm,
    readonly vcpu_id: number,
    readonly cpu: Cpu,
    readonly task: Task,
    readonly apic: KvmLapic,
    readonly svm: VcpuSvm,
  ) {}

  /** kvm_test_request */
  testRequest(req: number): boolean {
    return this.requests[req & KVM_REQUEST_MASK] !== 0;
  }

  /** the bit only (kvm_make_request without its preemption point and event) */
  setRequest(req: number, transition: number | null): void {
    this.requests[req & KVM_REQUEST_MASK] = 1;
    this.requestTransition[req & KVM_REQUEST_MASK] = transition;
  }

  /** clears a request, returning the transition of its latest make */
  clearRequest(req: number): number | null {
    this.requests[req & KVM_REQUEST_MASK] = 0;
    return this.requestTransition[req & KVM_REQUEST_MASK];
  }

  /** kvm_request_pending */
  requestPending(): boolean {
    for (let i = 0; i < 64; i++) if (this.requests[i]) return true;
    return false;
  }

  pendingRequestNames(): string[] {
    const out: string[] = [];
    for (let i = 0; i < 64; i++) if (this.requests[i]) out.push(requestName(i));
    return out;
  }
}

// ---- request helpers (include/linux/kvm_host.h @ v6.3) ------------------------------------------------------

/** kvm_make_request: sets the bit (after a write barrier), no kick. */
export function kvm_make_request(t: Task, req: number, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'kvm_make_request', function* () {
    if (req & KVM_REQUEST_NO_ACTION) throw new Error('kvm_make_request with a NO_ACTION request');
    yield* preempt();
    vcpu.setRequest(req, t.transition);
    t.emit({ kind: 'request-make', target: vcpu.vcpu_id, request: req & KVM_REQUEST_MASK, name: requestName(req), transition: t.transition });
  });
}

/** kvm_check_request: test and clear. Consuming a request is a preemption point and an event. */
export function kvm_check_request(t: Task, req: number, vcpu: KvmVcpu): HostCode<boolean> {
  return kfn(t, 'kvm_check_request', function* () {
    if (!vcpu.testRequest(req)) return false;
    yield* preempt();
    const transition = vcpu.clearRequest(req);
    t.transition = transition;
    t.emit({ kind: 'request-check', request: req & KVM_REQUEST_MASK, name: requestName(req), transition });
    return true;
  });
}

/** kvm_clear_request (no barrier, no event: the kernel uses it to drop stale wake-ups) */
export function kvm_clear_request(req: number, vcpu: KvmVcpu): void {
  vcpu.clearRequest(req);
}

// ---- vCPU SRCU helpers (include/linux/kvm_host.h :: kvm_vcpu_srcu_read_lock @ v6.3) --------------------

/**
 * kvm_vcpu_srcu_read_lock: with CONFIG_PROVE_RCU, warns ("Illegal vCPU srcu_idx LOCK") when
 * srcu_depth was not 0, then takes kvm->srcu and saves the index.
 */
export function kvm_vcpu_srcu_read_lock(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'kvm_vcpu_srcu_read_lock', function* () {
    yield* preempt();
    vcpu.srcu_depth++;
    t.srcuRetake();
    vcpu.kvm.srcu.enter(t);
    t.emit({ kind: 'srcu-lock', raw: false, depth: vcpu.srcu_depth, readers: vcpu.kvm.srcu.readers(t) });
  });
}

/**
 * kvm_vcpu_srcu_read_unlock: releases with the saved index (whatever the task holds), then
 * warns ("Illegal vCPU srcu_idx UNLOCK") when srcu_depth did not come back to 0.
 */
export function kvm_vcpu_srcu_read_unlock(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'kvm_vcpu_srcu_read_unlock', function* () {
    yield* preempt();
    vcpu.kvm.srcu.leave(t);
    vcpu.srcu_depth--;
    t.srcuDrop();
    t.emit({ kind: 'srcu-unlock', raw: false, depth: vcpu.srcu_depth, readers: vcpu.kvm.srcu.readers(t) });
  });
}

// APICv activation: the inhibit word and its updates, the per-vCPU refresh, and the
// APIC-access page's private memslot, with each design's variant (design.ts). These are
// functions of arch/x86/kvm/x86.c and lapic.c @ v6.3 (kvm_apicv_activated,
// __kvm_set_or_clear_apicv_inhibit, __kvm_vcpu_update_apicv, kvm_vcpu_update_apicv,
// __x86_set_memory_region, kvm_alloc_apic_access_page, kvm_inhibit_apic_access_page), kept in
// one module below lapic.ts and x86.ts so that both can call them without an import cycle.

import { APIC_DEFAULT_PHYS_BASE, MSR_IA32_APICBASE_ENABLE, X2APIC_ENABLE } from './apicdef';
import {
  APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, APICV_INHIBIT_REASON_BLOCKIRQ, type Kvm, KVM_REQ_APICV_UPDATE, KVM_REQ_EVENT,
  kvm_make_request, kvm_vcpu_srcu_read_lock, kvm_vcpu_srcu_read_unlock, type KvmVcpu,
} from './kvm_host';
import { __kvm_set_memory_region, kvm_make_all_cpus_request } from './kvm_main';
import { down_read, down_write, mutex_lock, mutex_unlock, up_read, up_write } from './locks';
import { srcu_read_lock, srcu_read_unlock } from './srcu';
import { type HostCode, kfn, type Task, withTransition } from './task';

export type LapicMode = 'disabled' | 'invalid' | 'xapic' | 'x2apic';

/** kvm_get_apic_mode / kvm_apic_mode (lapic.h): from IA32_APIC_BASE's EN and EXTD */
export function kvm_apic_mode(apicBase: number): LapicMode {
  const en = (apicBase & MSR_IA32_APICBASE_ENABLE) !== 0;
  const extd = (apicBase & X2APIC_ENABLE) !== 0;
  return en ? (extd ? 'x2apic' : 'xapic') : extd ? 'invalid' : 'disabled';
}

export function apic_x2apic_mode(vcpu: KvmVcpu): boolean {
  return kvm_apic_mode(vcpu.apic_base) === 'x2apic';
}

/** kvm_apicv_activated (x86.c): the VM word is 0 */
export function kvm_apicv_activated(kvm: Kvm): boolean {
  return kvm.arch.apicv_inhibit_reasons === 0;
}

/** kvm_vcpu_apicv_activated (x86.c): VM word | the vendor's per-vCPU reasons == 0 */
export function kvm_vcpu_apicv_activated(vcpu: KvmVcpu): boolean {
  return (vcpu.kvm.arch.apicv_inhibit_reasons | vcpu.kvm.x86_ops.vcpu_get_apicv_inhibit_reasons(vcpu)) === 0;
}

// ---- the inhibit word ----------------------------------------------------------------------------------

/** kvm_set_or_clear_apicv_inhibit (x86.c @ v6.3): nothing without enable_apicv; else under the write lock. */
export function* kvm_set_or_clear_apicv_inhibit(t: Task, kvm: Kvm, reason: number, set: boolean): HostCode {
  if (!kvm.config.avic) return;
  yield* kfn(t, 'kvm_set_or_clear_apicv_inhibit', function* () {
    yield* down_write(t, kvm.arch.apicv_update_lock);
    yield* __kvm_set_or_clear_apicv_inhibit(t, kvm, reason, set);
    yield* up_write(t, kvm.arch.apicv_update_lock);
  });
}

/**
 * __kvm_set_or_clear_apicv_inhibit (x86.c @ v6.3): ignores reasons the vendor does not require;
 * traces every call; on a flip between zero and non-zero, kicks every vCPU with
 * KVM_REQ_APICV_UPDATE and waits, *then* stores the word, and on inhibition zaps the APIC page's
 * SPTE under a raw SRCU read lock. `srcu-drop-in-inhibit` also toggles the slot here.
 */
export function __kvm_set_or_clear_apicv_inhibit(t: Task, kvm: Kvm, reason: number, set: boolean): HostCode {
  return kfn(t, '__kvm_set_or_clear_apicv_inhibit', function* () {
    if (kvm.arch.apicv_update_lock.writer !== t) throw new Error('__kvm_set_or_clear_apicv_inhibit without apicv_update_lock held for write');
    if (!(kvm.x86_ops.required_apicv_inhibits & (1 << reason))) return;
    const old = kvm.arch.apicv_inhibit_reasons;
    const next = set ? old | (1 << reason) : old & ~(1 << reason);
    const flip = (old === 0) !== (next === 0);
    t.emit({ kind: 'inhibit-change', reason, set, inhibits: next, changed: next !== old, flip });
    if (!flip) {
      kvm.arch.apicv_inhibit_reasons = next;
      return;
    }
    yield* withTransition(t, kvm.newTransition(), function* () {
      yield* kvm_make_all_cpus_request(t, kvm, KVM_REQ_APICV_UPDATE);
      kvm.arch.apicv_inhibit_reasons = next;
      if (next !== 0) {
        yield* srcu_read_lock(t, kvm.srcu);
        yield* kfn(t, 'kvm_zap_gfn_range', function* () {}); // the APIC page's SPTE: faults now emulate
        yield* srcu_read_unlock(t, kvm.srcu);
      }
      if (kvm.design.slot === 'toggle-in-inhibit-path') {
        // the rejected attempt: the caller's vCPU SRCU is dropped whether or not it is held
        const vcpu = t.vcpu === null ? null : kvm.vcpus[t.vcpu];
        if (vcpu) yield* kvm_vcpu_srcu_read_unlock(t, vcpu);
        yield* mutex_lock(t, kvm.slots_lock);
        yield* setApicAccessSlot(t, kvm, next === 0);
        yield* mutex_unlock(t, kvm.slots_lock);
        if (vcpu) yield* kvm_vcpu_srcu_read_lock(t, vcpu);
      }
    });
  });
}

/** kvm_arch_vcpu_guestdbg_update_apicv_inhibit (x86.c @ v6.3): BLOCKIRQ while any vCPU has KVM_GUESTDBG_BLOCKIRQ. */
export function* kvm_arch_vcpu_guestdbg_update_apicv_inhibit(t: Task, kvm: Kvm): HostCode {
  if (!kvm.config.avic) return;
  yield* kfn(t, 'kvm_arch_vcpu_guestdbg_update_apicv_inhibit', function* () {
    yield* down_write(t, kvm.arch.apicv_update_lock);
    const set = kvm.vcpus.some((v) => v.guest_debug_blockirq);
    yield* __kvm_set_or_clear_apicv_inhibit(t, kvm, APICV_INHIBIT_REASON_BLOCKIRQ, set);
    yield* up_write(t, kvm.arch.apicv_update_lock);
  });
}

// ---- the per-vCPU refresh ------------------------------------------------------------------------------

/**
 * The core refresh: v6.3 `__kvm_vcpu_update_apicv`, v6.1 `kvm_vcpu_update_apicv` (design.core).
 * Under the read side of apicv_update_lock: activate iff the vCPU's inhibits are clear and its
 * APIC is not hardware-disabled; on a change, store apicv_active, refresh the vendor controls
 * and, on deactivation, make KVM_REQ_EVENT. `drop-in-update-direct` first inhibits the APIC page
 * here; `toggle-in-update` toggles the slot after it.
 */
export function* apicvRefreshCore(t: Task, vcpu: KvmVcpu): HostCode {
  const kvm = vcpu.kvm;
  yield* kfn(t, kvm.design.core, function* () {
    if (kvm.design.slot === 'inhibit-in-update-core' && apic_x2apic_mode(vcpu) &&
      kvm.x86_ops.allow_apicv_in_x2apic_without_x2apic_virtualization) {
      yield* kvm_inhibit_apic_access_page(t, vcpu);
    }
    yield* down_read(t, kvm.arch.apicv_update_lock);
    const activate = kvm_vcpu_apicv_activated(vcpu) && kvm_apic_mode(vcpu.apic_base) !== 'disabled';
    const changed = vcpu.apic.apicv_active !== activate;
    if (changed) {
      vcpu.apic.apicv_active = activate;
      t.emit({ kind: 'apicv-update', activate });
      yield* kvm.x86_ops.refresh_apicv_exec_ctrl(t, vcpu);
      if (!activate) yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
    }
    yield* up_read(t, kvm.arch.apicv_update_lock);
    if (changed && kvm.design.slot === 'toggle-in-update') {
      // the 5.x toggle, per vCPU: SRCU dropped and retaken without asking whether it is held
      yield* kvm_vcpu_srcu_read_unlock(t, vcpu);
      yield* mutex_lock(t, kvm.slots_lock);
      yield* setApicAccessSlot(t, kvm, activate);
      yield* mutex_unlock(t, kvm.slots_lock);
      yield* kvm_vcpu_srcu_read_lock(t, vcpu);
    }
  });
}

/**
 * kvm_vcpu_update_apicv, the static wrapper of v6.3 (x86.c): an x2APIC vCPU on a vendor that
 * allows APICv in x2APIC without x2APIC virtualization first inhibits the APIC-access page.
 */
export function kvm_vcpu_update_apicv_wrapper(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'kvm_vcpu_update_apicv', function* () {
    if (apic_x2apic_mode(vcpu) && vcpu.kvm.x86_ops.allow_apicv_in_x2apic_without_x2apic_virtualization) {
      yield* kvm_inhibit_apic_access_page(t, vcpu);
    }
    yield* apicvRefreshCore(t, vcpu);
  });
}

/** What vcpu_enter_guest runs for KVM_REQ_APICV_UPDATE: the wrapper in v6.3 designs, the core in v6.1 ones. */
export function* kvm_vcpu_update_apicv(t: Task, vcpu: KvmVcpu): HostCode {
  if (vcpu.kvm.design.core === '__kvm_vcpu_update_apicv') yield* kvm_vcpu_update_apicv_wrapper(t, vcpu);
  else yield* apicvRefreshCore(t, vcpu);
}

// ---- the APIC-access page's memslot --------------------------------------------------------------------

/**
 * __x86_set_memory_region (x86.c @ v6.3) on APIC_ACCESS_PAGE_PRIVATE_MEMSLOT: create (a page at
 * 0xFEE00000) or delete. A create of a present slot (-EEXIST) and a delete of an absent one are
 * no-ops, but each call is a `memslot-change` event. Requires slots_lock.
 */
export function setApicAccessSlot(t: Task, kvm: Kvm, create: boolean): HostCode {
  return kfn(t, '__x86_set_memory_region', function* () {
    if (kvm.slots_lock.owner !== t) throw new Error('__x86_set_memory_region without slots_lock');
    const id = APIC_ACCESS_PAGE_PRIVATE_MEMSLOT;
    const exists = kvm.memslots.has(id);
    const changed = create ? !exists : exists;
    t.emit({ kind: 'memslot-change', slot: id, gpa: APIC_DEFAULT_PHYS_BASE, size: create ? 4096 : 0, create, changed, transition: t.transition });
    if (!changed) return;
    const slot = { id, gpa: APIC_DEFAULT_PHYS_BASE, size: 4096, private: true };
    if (create) kvm.apicAccessPage.fill(0);
    yield* __kvm_set_memory_region(t, kvm, slot, create);
  });
}

/**
 * kvm_inhibit_apic_access_page (lapic.c @ v6.3): if the slot is enabled, drop the vCPU's SRCU,
 * take slots_lock, re-check, delete the slot and mark it inhibited (sticky), then retake SRCU.
 */
export function* kvm_inhibit_apic_access_page(t: Task, vcpu: KvmVcpu): HostCode {
  const kvm = vcpu.kvm;
  yield* kfn(t, 'kvm_inhibit_apic_access_page', function* () {
    if (!kvm.arch.apic_access_memslot_enabled) return;
    yield* kvm_vcpu_srcu_read_unlock(t, vcpu);
    yield* mutex_lock(t, kvm.slots_lock);
    if (kvm.arch.apic_access_memslot_enabled) {
      yield* setApicAccessSlot(t, kvm, false);
      kvm.arch.apic_access_memslot_enabled = false;
      kvm.arch.apic_access_memslot_inhibited = true;
    }
    yield* mutex_unlock(t, kvm.slots_lock);
    yield* kvm_vcpu_srcu_read_lock(t, vcpu);
  });
}

/** v3's kvm_free_apic_access_page: under slots_lock, delete the slot if it is still enabled. */
export function kvm_free_apic_access_page(t: Task, kvm: Kvm): HostCode {
  return kfn(t, 'kvm_free_apic_access_page', function* () {
    yield* mutex_lock(t, kvm.slots_lock);
    if (kvm.arch.apic_access_memslot_enabled) {
      yield* setApicAccessSlot(t, kvm, false);
      kvm.arch.apic_access_memslot_enabled = false;
    }
    yield* mutex_unlock(t, kvm.slots_lock);
  });
}

/** Where the APIC-access slot's SPTE maps for this vCPU's accesses (mmu.c :: kvm_faultin_pfn @ v6.3). */
export function apicAccessPageMapped(vcpu: KvmVcpu): boolean {
  const kvm = vcpu.kvm;
  // private memslots are never mapped for L2; with the VM inhibited the fault emulates instead
  return kvm.memslots.has(APIC_ACCESS_PAGE_PRIVATE_MEMSLOT) && !vcpu.svm.nested.guest_mode && kvm_apicv_activated(kvm);
}

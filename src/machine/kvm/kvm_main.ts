// Generic KVM (virt/kvm/kvm_main.c @ v6.3): waking and kicking vCPUs, requests to many vCPUs
// with the WAIT/NO_WAKEUP semantics, blocking (kvm_vcpu_block, kvm_vcpu_halt,
// kvm_vcpu_check_block) and memslot updates with their SRCU grace periods.

import {
  EXITING_GUEST_MODE, IN_GUEST_MODE, type Kvm, KVM_REQ_UNBLOCK, KVM_REQUEST_MASK, KVM_REQUEST_NO_ACTION, KVM_REQUEST_NO_WAKEUP,
  KVM_REQUEST_WAIT, kvm_check_request, type KvmVcpu, type Memslot, OUTSIDE_GUEST_MODE, requestName,
} from './kvm_host';
import { srcu_read_lock, srcu_read_unlock, synchronize_srcu } from './srcu';
import { type HostCode, kfn, preempt, type Task, waitUntil } from './task';

/** kvm_vcpu_wake_up: wakes a vCPU sleeping in kvm_vcpu_block; true if it was sleeping. */
export function kvm_vcpu_wake_up(t: Task, vcpu: KvmVcpu): boolean {
  if (!vcpu.blocking) return false;
  vcpu.woken = true;
  t.emit({ kind: 'wakeup', target: vcpu.vcpu_id });
  return true;
}

/**
 * Sends the reschedule/call-function IPI to the pCPU a vCPU is loaded on. A pCPU with IRQs
 * enabled takes it at once; in vcpu_enter_guest's IRQs-off window (and in guest mode, where it
 * forces a #VMEXIT) it stays pending until local_irq_enable.
 */
function sendIpi(vcpu: KvmVcpu): void {
  if (!vcpu.irqsDisabled) return;
  vcpu.ipiPending = true;
  vcpu.cpu.eventPending = true;
}

/** vcpu->cpu != -1 and not this pCPU: the vCPU is loaded elsewhere (a task is one pCPU) */
function loadedElsewhere(t: Task, vcpu: KvmVcpu): boolean {
  return vcpu.inKvmRun && vcpu.task !== t;
}

/**
 * kvm_vcpu_kick: wakes the vCPU if it sleeps; otherwise, if it is in guest mode on another
 * pCPU, moves it to EXITING_GUEST_MODE and sends an IPI, which makes it exit.
 */
export function kvm_vcpu_kick(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'kvm_vcpu_kick', function* () {
    yield* preempt();
    kvm_vcpu_kick_irq(t, vcpu);
  });
}

/** The body of kvm_vcpu_kick, as interrupt context (the APIC timer's hrtimer) runs it: no preemption point. */
export function kvm_vcpu_kick_irq(t: Task, vcpu: KvmVcpu): void {
  if (kvm_vcpu_wake_up(t, vcpu)) return;
  // kvm_arch_vcpu_should_kick: cmpxchg(IN_GUEST_MODE -> EXITING_GUEST_MODE)
  const ipi = vcpu.mode === IN_GUEST_MODE && loadedElsewhere(t, vcpu);
  if (vcpu.mode === IN_GUEST_MODE) vcpu.mode = EXITING_GUEST_MODE;
  if (ipi) sendIpi(vcpu);
  t.emit({ kind: 'kick', target: vcpu.vcpu_id, ipi });
}

/**
 * kvm_make_all_cpus_request (kvm_make_vcpus_request_mask, kvm_make_vcpu_request,
 * kvm_request_needs_ipi, kvm_kick_many_cpus): sets the request on every vCPU; wakes sleepers
 * unless NO_WAKEUP; IPIs every vCPU in guest mode (with WAIT: every vCPU not
 * OUTSIDE_GUEST_MODE) and, with WAIT, waits until each has taken the IPI. Returns whether any IPI went out.
 */
export function kvm_make_all_cpus_request(t: Task, kvm: Kvm, req: number): HostCode<boolean> {
  return kfn(t, 'kvm_make_all_cpus_request', function* () {
    const targets: KvmVcpu[] = [];
    for (const vcpu of kvm.vcpus) {
      yield* preempt();
      if (!(req & KVM_REQUEST_NO_ACTION)) {
        vcpu.setRequest(req, t.transition);
        t.emit({ kind: 'request-make', target: vcpu.vcpu_id, request: req & KVM_REQUEST_MASK, name: requestName(req), transition: t.transition });
      }
      if (!(req & KVM_REQUEST_NO_WAKEUP) && kvm_vcpu_wake_up(t, vcpu)) continue;
      // kvm_request_needs_ipi: IN_GUEST_MODE -> EXITING_GUEST_MODE; WAIT also IPIs any mode but OUTSIDE
      const old = vcpu.mode;
      if (old === IN_GUEST_MODE) vcpu.mode = EXITING_GUEST_MODE;
      const needs = req & KVM_REQUEST_WAIT ? old !== OUTSIDE_GUEST_MODE : old === IN_GUEST_MODE;
      if (needs && loadedElsewhere(t, vcpu)) targets.push(vcpu);
    }
    if (targets.length === 0) return false;
    yield* preempt();
    for (const vcpu of targets) {
      sendIpi(vcpu);
      t.emit({ kind: 'kick', target: vcpu.vcpu_id, ipi: true });
    }
    if (req & KVM_REQUEST_WAIT) {
      // smp_call_function_many(..., wait=true): every target runs the (empty) handler
      yield* waitUntil(() => targets.every((v) => !v.ipiPending), `IPI acknowledgement (${requestName(req)})`, 'ack',
        () => targets.filter((v) => v.ipiPending).map((v) => v.task));
    }
    return true;
  });
}

/**
 * kvm_vcpu_check_block: stop blocking (-EINTR) when the vCPU became runnable, its timer is
 * pending, a signal is pending, or KVM_REQ_UNBLOCK is set (consumed); under a raw kvm->srcu read lock.
 */
function kvm_vcpu_check_block(t: Task, vcpu: KvmVcpu): HostCode<boolean> {
  return kfn(t, 'kvm_vcpu_check_block', function* () {
    yield* srcu_read_lock(t, vcpu.kvm.srcu);
    let stop = vcpu.kvm.arch_hooks.kvm_arch_vcpu_runnable(vcpu) || vcpu.apic.lapic_timer.pending > 0 || vcpu.signalPending;
    if (!stop) stop = yield* kvm_check_request(t, KVM_REQ_UNBLOCK, vcpu);
    yield* srcu_read_unlock(t, vcpu.kvm.srcu);
    return stop;
  });
}

/**
 * kvm_vcpu_block: kvm_arch_vcpu_blocking (SVM: AVIC put), then sleep until a wake-up finds
 * kvm_vcpu_check_block true, then kvm_arch_vcpu_unblocking. kvm_vcpu_halt wraps it (halt
 * polling is not modelled: its only effect is time).
 */
export function kvm_vcpu_halt(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'kvm_vcpu_halt', function* () {
    yield* kfn(t, 'kvm_vcpu_block', function* () {
      vcpu.blocking = true;
      vcpu.kvm.x86_ops.vcpu_blocking(t, vcpu);
      for (;;) {
        vcpu.woken = false;
        if (yield* kvm_vcpu_check_block(t, vcpu)) break;
        yield* waitUntil(() => vcpu.woken, 'a wake-up (kvm_vcpu_halt)', 'halt');
      }
      vcpu.blocking = false;
      vcpu.kvm.x86_ops.vcpu_unblocking(t, vcpu);
    });
  });
}

/**
 * __kvm_set_memory_region for a KVM-internal slot (kvm_set_memslot @ v6.3): a deletion first
 * installs an invalid copy and waits for an SRCU grace period, then removes it and waits again;
 * a creation installs it and waits once. The caller holds slots_lock.
 */
export function __kvm_set_memory_region(t: Task, kvm: Kvm, slot: Memslot, create: boolean): HostCode {
  return kfn(t, '__kvm_set_memory_region', function* () {
    if (kvm.slots_lock.owner !== t) throw new Error('__kvm_set_memory_region without slots_lock');
    yield* kfn(t, 'kvm_set_memslot', function* () {
      if (!create) {
        // kvm_invalidate_memslot: readers see an invalid slot (faults on it retry, then emulate), a
        // grace period, then the slot goes and a second grace period
        kvm.memslots.delete(slot.id);
        yield* kfn(t, 'kvm_invalidate_memslot', () => kfn(t, 'kvm_swap_active_memslots', () => synchronize_srcu(t, kvm.srcu, true)));
        yield* kfn(t, 'kvm_swap_active_memslots', () => synchronize_srcu(t, kvm.srcu, true));
      } else {
        kvm.memslots.set(slot.id, slot);
        yield* kfn(t, 'kvm_swap_active_memslots', () => synchronize_srcu(t, kvm.srcu, true));
      }
    });
  });
}

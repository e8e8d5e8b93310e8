// The in-kernel local APIC (arch/x86/kvm/lapic.c @ v6.3): reset state, register reads and
// writes with their side effects, the xAPIC MMIO window and the x2APIC MSRs, IA32_APIC_BASE
// (kvm_lapic_set_base, with each design's APICv update), IPIs and interrupt acceptance, TPR/PPR,
// EOI, the timer in one-shot, periodic and TSC-deadline modes on virtual time (one step is one
// nanosecond: KVM's APIC bus runs at 1 GHz), and the APIC map recalculation with its inhibits.
// Delivery to the guest happens in x86.ts (injection) or in AVIC hardware (svm/avic.ts).

import {
  apic_x2apic_mode, apicvRefreshCore, kvm_apic_mode, kvm_set_or_clear_apicv_inhibit,
} from './apicv';
import {
  APIC_ARBPRI, APIC_BUS_CYCLE_NS, APIC_DEFAULT_PHYS_BASE, APIC_DEST_ALLBUT, APIC_DEST_ALLINC, APIC_DEST_LOGICAL, APIC_DEST_SELF,
  APIC_DEST_SHORTHAND_MASK, APIC_DFR, APIC_DFR_CLUSTER, APIC_DFR_FLAT, APIC_DM_EXTINT, APIC_DM_FIXED, APIC_DM_INIT, APIC_DM_LOWEST,
  APIC_DM_NMI, APIC_DM_REMRD, APIC_DM_SMI, APIC_DM_STARTUP, APIC_EOI, APIC_ESR, APIC_ICR, APIC_ICR2, APIC_ICR_BUSY, APIC_ID,
  APIC_INPUT_POLARITY, APIC_INT_ASSERT, APIC_INT_LEVELTRIG, APIC_IRR, APIC_ISR, APIC_LDR, APIC_LVR, APIC_LVT0, APIC_LVT1,
  APIC_LVT_LEVEL_TRIGGER, APIC_LVT_MASKED, APIC_LVT_REMOTE_IRR, APIC_LVT_TIMER_PERIODIC, APIC_LVT_TIMER_TSCDEADLINE, APIC_LVTERR,
  APIC_LVTPC, APIC_LVTT, APIC_LVTTHMR, APIC_MODE_MASK, APIC_PROCPRI, APIC_SELF_IPI, APIC_SEND_PENDING, APIC_SPIV,
  APIC_SPIV_APIC_ENABLED, APIC_TASKPRI, APIC_TDCR, APIC_TMCCT, APIC_TMICT, APIC_TMR, APIC_VECTOR_MASK, KVM_LAPIC_LVR,
  LVT_OFFSETS, MSR_IA32_APICBASE_BSP, MSR_IA32_APICBASE_ENABLE, X2APIC_BROADCAST, X2APIC_ENABLE, APIC_BROADCAST,
} from './apicdef';
import {
  APICV_INHIBIT_REASON_APIC_BASE_MODIFIED, APICV_INHIBIT_REASON_APIC_ID_MODIFIED, APICV_INHIBIT_REASON_LOGICAL_ID_ALIASED,
  APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED, type Kvm, KVM_REQ_APF_READY, KVM_REQ_APICV_UPDATE, KVM_REQ_EVENT, KVM_REQ_NMI,
  KVM_REQ_UNBLOCK, kvm_make_request, type KvmVcpu,
} from './kvm_host';
import { kvm_vcpu_kick } from './kvm_main';
import {
  apic_clear_vector, apic_find_highest_irr, apic_find_highest_isr, apic_set_vector, apic_test_vector, KVM_APIC_INIT, KVM_APIC_SIPI,
  kvm_apic_sw_enabled, type KvmLapic,
} from './lapic_h';
import { mutex_lock, mutex_unlock } from './locks';
import { type HostCode, kfn, preempt, type Task, withTransition } from './task';

/** KVM's minimum period of a periodic APIC timer (lapic.c :: min_timer_period_us, 200 us) */
export const MIN_TIMER_PERIOD_NS = 200_000;
/** guest CPUID advertises the TSC-deadline timer, so LVTT's mode field is 2 bits */
const TIMER_MODE_MASK = 3 << 17;
const LVT_MASK = APIC_LVT_MASKED | APIC_SEND_PENDING | APIC_VECTOR_MASK;
const LINT_MASK = LVT_MASK | APIC_MODE_MASK | APIC_INPUT_POLARITY | APIC_LVT_REMOTE_IRR | APIC_LVT_LEVEL_TRIGGER;
/** apic_lvt_mask[] by LVT_OFFSETS index: timer, thermal, PMC, LINT0, LINT1, error */
const APIC_LVT_MASK = [LVT_MASK, LVT_MASK | APIC_MODE_MASK, LVT_MASK | APIC_MODE_MASK, LINT_MASK, LINT_MASK, LVT_MASK];

// ---- IDs and modes (lapic.h) -------------------------------------------------------------------------

export function kvm_apic_hw_enabled(vcpu: KvmVcpu): boolean {
  return (vcpu.apic_base & MSR_IA32_APICBASE_ENABLE) !== 0;
}

/** apic_enabled: hardware- and software-enabled */
export function apic_enabled(vcpu: KvmVcpu): boolean {
  return kvm_apic_hw_enabled(vcpu) && kvm_apic_sw_enabled(vcpu.apic);
}

export function kvm_xapic_id(apic: KvmLapic): number {
  return apic.getReg(APIC_ID) >>> 24;
}

/** the x2APIC ID is always the vCPU id (kvm_x2apic_id: the ID register holds it in x2APIC mode) */
export function kvm_x2apic_id(vcpu: KvmVcpu): number {
  return vcpu.vcpu_id;
}

export function kvm_apic_calc_x2apic_ldr(id: number): number {
  return (((id >>> 4) << 16) | (1 << (id & 0xf))) >>> 0;
}

function kvm_apic_set_xapic_id(vcpu: KvmVcpu, id: number): void {
  vcpu.apic.setReg(APIC_ID, (id & 0xff) << 24);
  vcpu.kvm.arch.apic_map_dirty = true;
}

function kvm_apic_set_x2apic_id(vcpu: KvmVcpu, id: number): void {
  vcpu.apic.setReg(APIC_ID, id);
  vcpu.apic.setReg(APIC_LDR, kvm_apic_calc_x2apic_ldr(id));
  vcpu.kvm.arch.apic_map_dirty = true;
}

// ---- reset ---------------------------------------------------------------------------------------

/**
 * kvm_lapic_reset (lapic.c @ v6.3) with init_event false, as KVM_CREATE_VCPU leaves the APIC:
 * IA32_APIC_BASE = 0xFEE00000 | EN (| BSP on vCPU 0), xAPIC ID = vCPU id, DFR flat, SPIV 0xFF,
 * every LVT masked; LINT0 = ExtINT on the BSP (KVM_X86_QUIRK_LINT0_REENABLED).
 */
export function kvm_lapic_reset(vcpu: KvmVcpu): void {
  const apic = vcpu.apic;
  apic.regs.fill(0);
  vcpu.apic_base = (APIC_DEFAULT_PHYS_BASE | MSR_IA32_APICBASE_ENABLE | (vcpu.vcpu_id === 0 ? MSR_IA32_APICBASE_BSP : 0)) >>> 0;
  apic.base_address = APIC_DEFAULT_PHYS_BASE;
  kvm_apic_set_xapic_id(vcpu, vcpu.vcpu_id);
  apic.setReg(APIC_LVR, KVM_LAPIC_LVR);
  for (const off of LVT_OFFSETS) apic.setReg(off, APIC_LVT_MASKED);
  if (vcpu.vcpu_id === 0) apic.setReg(APIC_LVT0, APIC_DM_EXTINT);
  apic.setReg(APIC_DFR, APIC_DFR_FLAT);
  apic.setReg(APIC_SPIV, 0xff);
  apic.lapic_timer.period = 0;
  apic.lapic_timer.target = -1;
  apic.lapic_timer.tscdeadline = 0n;
  apic.lapic_timer.pending = 0;
  apic.pending_events = 0;
}

// ---- reads ---------------------------------------------------------------------------------------

/** the registers kvm_lapic_reg_read accepts (its valid_reg_mask @ v6.3): ARBPRI, DFR, ICR2 only in xAPIC mode */
function readable(vcpu: KvmVcpu, off: number): boolean {
  switch (off) {
    case APIC_ID: case APIC_LVR: case APIC_TASKPRI: case APIC_PROCPRI: case APIC_LDR: case APIC_SPIV: case APIC_ESR:
    case APIC_ICR: case APIC_LVTT: case APIC_LVTTHMR: case APIC_LVTPC: case APIC_LVT0: case APIC_LVT1: case APIC_LVTERR:
    case APIC_TMICT: case APIC_TMCCT: case APIC_TDCR:
      return true;
    case APIC_ARBPRI: case APIC_DFR: case APIC_ICR2:
      return !apic_x2apic_mode(vcpu);
    default:
      return off >= APIC_ISR && off < APIC_IRR + 0x80 && (off & 0xf) === 0 && !(off >= APIC_TMR + 0x80 && off < APIC_IRR);
  }
}

/** __apic_read: ARBPRI reads 0; TMCCT counts down (0 in TSC-deadline mode); PPR is brought up to date. */
function __apic_read(vcpu: KvmVcpu, off: number, now: number): number {
  const apic = vcpu.apic;
  switch (off) {
    case APIC_ARBPRI: return 0;
    case APIC_TMCCT: return apic_lvtt_tscdeadline(apic) ? 0 : apic_get_tmcct(apic, now);
    case APIC_PROCPRI: __apic_update_ppr(apic); return apic.getReg(off);
    default: return apic.getReg(off);
  }
}

/** kvm_lapic_reg_read (lapic.c @ v6.3): the value, or undefined for an invalid register or access. */
export function kvm_lapic_reg_read(vcpu: KvmVcpu, offset: number, len: number): number | undefined {
  const alignment = offset & 0xf;
  if (alignment + len > 4) return undefined;
  const reg = offset & ~0xf;
  if (offset > 0x3f0 || !readable(vcpu, reg)) return undefined;
  const v = __apic_read(vcpu, reg, vcpu.kvm.now());
  const shifted = v >>> (8 * alignment);
  return len === 4 ? shifted >>> 0 : len === 2 ? shifted & 0xffff : shifted & 0xff;
}

// ---- TPR, PPR, EOI ----------------------------------------------------------------------------------

/** __apic_update_ppr: PPR = TPR if its class is >= the highest ISR's, else that class; true if PPR went down. */
export function __apic_update_ppr(apic: KvmLapic): boolean {
  const old = apic.getReg(APIC_PROCPRI);
  const tpr = apic.getReg(APIC_TASKPRI);
  const isr = apic_find_highest_isr(apic);
  const isrv = isr === -1 ? 0 : isr;
  const ppr = (tpr & 0xf0) >= (isrv & 0xf0) ? tpr & 0xff : isrv & 0xf0;
  if (ppr !== old) apic.setReg(APIC_PROCPRI, ppr);
  return ppr < old;
}

/** apic_has_interrupt_for_ppr: the highest IRR vector whose class is above PPR's, or -1 */
export function apic_has_interrupt_for_ppr(apic: KvmLapic, ppr: number): number {
  const irr = apic_find_highest_irr(apic);
  if (irr === -1 || (irr & 0xf0) <= ppr) return -1;
  return irr;
}

/** apic_update_ppr: a lower PPR that uncovers an interrupt makes KVM_REQ_EVENT */
function* apic_update_ppr(t: Task, vcpu: KvmVcpu): HostCode {
  if (__apic_update_ppr(vcpu.apic) && apic_has_interrupt_for_ppr(vcpu.apic, vcpu.apic.getReg(APIC_PROCPRI)) !== -1) {
    yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
  }
}

function* apic_set_tpr(t: Task, vcpu: KvmVcpu, tpr: number): HostCode {
  vcpu.apic.setReg(APIC_TASKPRI, tpr);
  yield* apic_update_ppr(t, vcpu);
}

/** kvm_lapic_set_tpr from CR8 (no exit: the CPU writes V_TPR; KVM syncs it at the next exit) */
export function kvm_lapic_set_cr8(vcpu: KvmVcpu, cr8: number): void {
  vcpu.apic.setReg(APIC_TASKPRI, (cr8 & 0xf) << 4);
  __apic_update_ppr(vcpu.apic);
  vcpu.cpu.eventPending = true;
}

export function kvm_lapic_get_cr8(vcpu: KvmVcpu): number {
  return (vcpu.apic.getReg(APIC_TASKPRI) & 0xf0) >>> 4;
}

/** apic_set_eoi: clear the highest ISR bit, update PPR, make KVM_REQ_EVENT */
function* apic_set_eoi(t: Task, vcpu: KvmVcpu): HostCode {
  const vector = apic_find_highest_isr(vcpu.apic);
  if (vector === -1) return;
  apic_clear_vector(vector, vcpu.apic, APIC_ISR);
  yield* apic_update_ppr(t, vcpu);
  yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
}

// ---- interrupts into the APIC --------------------------------------------------------------------------

export interface KvmLapicIrq {
  readonly vector: number;
  readonly delivery_mode: number;
  readonly dest_mode_logical: boolean;
  readonly level: boolean;
  readonly trig_mode: boolean;
  readonly shorthand: number;
  readonly dest_id: number;
}

/** kvm_apic_has_interrupt: the vector KVM would inject now, or -1 */
export function kvm_apic_has_interrupt(vcpu: KvmVcpu): number {
  if (!kvm_apic_hw_enabled(vcpu)) return -1;
  __apic_update_ppr(vcpu.apic);
  return apic_has_interrupt_for_ppr(vcpu.apic, vcpu.apic.getReg(APIC_PROCPRI));
}

/** kvm_get_apic_interrupt: moves the vector from IRR to ISR (software injection, or AVIC hardware acceptance) */
export function kvm_get_apic_interrupt(vcpu: KvmVcpu): number {
  const vector = kvm_apic_has_interrupt(vcpu);
  if (vector === -1) return -1;
  apic_clear_vector(vector, vcpu.apic, APIC_IRR);
  apic_set_vector(vector, vcpu.apic, APIC_ISR);
  __apic_update_ppr(vcpu.apic);
  return vector;
}

/**
 * __apic_accept_irq (lapic.c @ v6.3): fixed and lowest-priority interrupts go to the vendor's
 * deliver_interrupt (IRR, then doorbell, wake-up or KVM_REQ_EVENT + kick); NMI, INIT and SIPI
 * become pending events; returns 1 if accepted.
 */
export function* __apic_accept_irq(t: Task, vcpu: KvmVcpu, deliveryMode: number, vector: number, level: boolean, trigMode: boolean): HostCode<number> {
  const apic = vcpu.apic;
  t.emit({ kind: 'irq-accept', apicId: vcpu.vcpu_id, deliveryMode: deliveryMode >>> 8, triggerMode: trigMode ? 1 : 0, vector, coalesced: false });
  switch (deliveryMode) {
    case APIC_DM_LOWEST:
    case APIC_DM_FIXED:
      if (trigMode && !level) return 0;
      if (!apic_enabled(vcpu)) return 0;
      if (apic_test_vector(vector, apic, APIC_TMR) !== trigMode) {
        if (trigMode) apic_set_vector(vector, apic, APIC_TMR);
        else apic_clear_vector(vector, apic, APIC_TMR);
      }
      yield* vcpu.kvm.x86_ops.deliver_interrupt(t, vcpu, deliveryMode, trigMode ? 1 : 0, vector);
      return 1;
    case APIC_DM_REMRD:
      yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
      yield* kvm_vcpu_kick(t, vcpu);
      return 1;
    case APIC_DM_SMI:
      return 0; // no SMM in the model (documented deviation): kvm_inject_smi fails
    case APIC_DM_NMI:
      // kvm_inject_nmi
      vcpu.nmi_pending++;
      yield* kvm_make_request(t, KVM_REQ_NMI, vcpu);
      yield* kvm_vcpu_kick(t, vcpu);
      return 1;
    case APIC_DM_INIT:
      if (!trigMode || level) {
        apic.pending_events = KVM_APIC_INIT;
        yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
        yield* kvm_vcpu_kick(t, vcpu);
        return 1;
      }
      return 0;
    case APIC_DM_STARTUP:
      apic.sipi_vector = vector;
      apic.pending_events |= KVM_APIC_SIPI;
      yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
      yield* kvm_vcpu_kick(t, vcpu);
      return 1;
    default:
      return 0; // ExtINT through the APIC: only from LINT0 with a PIC, which the model lacks
  }
}

/** kvm_apic_mda: without an IPI source, 0xFF to an x2APIC target means the x2APIC broadcast */
function kvm_apic_mda(dest: number, ipi: boolean, target: KvmVcpu): number {
  if (!ipi && dest === APIC_BROADCAST && apic_x2apic_mode(target)) return X2APIC_BROADCAST;
  return dest;
}

function kvm_apic_broadcast(vcpu: KvmVcpu, mda: number): boolean {
  return mda === (apic_x2apic_mode(vcpu) ? X2APIC_BROADCAST : APIC_BROADCAST);
}

/** kvm_apic_match_physical_addr, with KVM's hotplug hack (x2APIC IDs above 0xFF reach xAPIC vCPUs) */
export function kvm_apic_match_physical_addr(vcpu: KvmVcpu, mda: number): boolean {
  if (kvm_apic_broadcast(vcpu, mda)) return true;
  if (apic_x2apic_mode(vcpu) || mda > 0xff) return mda === kvm_x2apic_id(vcpu);
  return mda === kvm_xapic_id(vcpu.apic);
}

/** kvm_apic_match_logical_addr: x2APIC cluster/bitmap; xAPIC flat or cluster by DFR */
export function kvm_apic_match_logical_addr(vcpu: KvmVcpu, mda: number): boolean {
  if (kvm_apic_broadcast(vcpu, mda)) return true;
  const ldr = vcpu.apic.getReg(APIC_LDR);
  if (apic_x2apic_mode(vcpu)) return ldr >>> 16 === mda >>> 16 && (ldr & mda & 0xffff) !== 0;
  const logical = ldr >>> 24;
  switch (vcpu.apic.getReg(APIC_DFR)) {
    case APIC_DFR_FLAT: return (logical & mda) !== 0;
    case APIC_DFR_CLUSTER: return logical >>> 4 === mda >>> 4 && (logical & mda & 0xf) !== 0;
    default: return false;
  }
}

/** kvm_apic_match_dest */
export function kvm_apic_match_dest(target: KvmVcpu, source: KvmVcpu | null, shorthand: number, dest: number, logical: boolean): boolean {
  const mda = kvm_apic_mda(dest, source !== null, target);
  switch (shorthand) {
    case 0: return logical ? kvm_apic_match_logical_addr(target, mda) : kvm_apic_match_physical_addr(target, mda);
    case APIC_DEST_SELF: return target === source;
    case APIC_DEST_ALLINC: return true;
    case APIC_DEST_ALLBUT: return target !== source;
    default: return false;
  }
}

/**
 * kvm_irq_delivery_to_apic (irq_comm.c @ v6.3), the slow path (the fast path over the APIC map
 * reaches the same vCPUs): every matching vCPU accepts; lowest priority picks by vector hashing
 * among software-enabled matches. Returns the number that accepted, or -1 for none.
 */
export function kvm_irq_delivery_to_apic(t: Task, kvm: Kvm, src: KvmVcpu | null, irq: KvmLapicIrq): HostCode<number> {
  return kfn(t, 'kvm_irq_delivery_to_apic', function* () {
    let r = -1;
    let deliveryMode = irq.delivery_mode;
    const lowest = deliveryMode === APIC_DM_LOWEST;
    if (!irq.dest_mode_logical && irq.dest_id === 0xff && lowest) deliveryMode = APIC_DM_FIXED;
    const candidates: KvmVcpu[] = [];
    for (const vcpu of kvm.vcpus) {
      if (!kvm_apic_hw_enabled(vcpu)) continue;
      if (!kvm_apic_match_dest(vcpu, src, irq.shorthand, irq.dest_id, irq.dest_mode_logical)) continue;
      if (deliveryMode !== APIC_DM_LOWEST) {
        if (r < 0) r = 0;
        r += yield* __apic_accept_irq(t, vcpu, deliveryMode, irq.vector, irq.level, irq.trig_mode);
      } else if (kvm_apic_sw_enabled(vcpu.apic)) candidates.push(vcpu);
    }
    if (candidates.length > 0) {
      // kvm_vector_to_index: vector hashing (kvm_vector_hashing_enabled defaults to true)
      const target = candidates[irq.vector % candidates.length];
      r = yield* __apic_accept_irq(t, target, deliveryMode, irq.vector, irq.level, irq.trig_mode);
    }
    return r;
  });
}

/** kvm_apic_send_ipi (lapic.c @ v6.3): decode the ICR and deliver; traces kvm_apic_ipi. */
export function kvm_apic_send_ipi(t: Task, vcpu: KvmVcpu, icrLow: number, icrHigh: number): HostCode {
  return kfn(t, 'kvm_apic_send_ipi', function* () {
    const irq: KvmLapicIrq = {
      vector: icrLow & APIC_VECTOR_MASK,
      delivery_mode: icrLow & APIC_MODE_MASK,
      dest_mode_logical: (icrLow & APIC_DEST_LOGICAL) !== 0,
      level: (icrLow & APIC_INT_ASSERT) !== 0,
      trig_mode: (icrLow & APIC_INT_LEVELTRIG) !== 0,
      shorthand: icrLow & APIC_DEST_SHORTHAND_MASK,
      dest_id: apic_x2apic_mode(vcpu) ? icrHigh >>> 0 : icrHigh >>> 24,
    };
    t.emit({ kind: 'ipi', icrLow: icrLow >>> 0, dest: irq.dest_id });
    yield* kvm_irq_delivery_to_apic(t, vcpu.kvm, vcpu, irq);
  });
}

// ---- the timer ------------------------------------------------------------------------------------

export function apic_lvtt_tscdeadline(apic: KvmLapic): boolean {
  return (apic.getReg(APIC_LVTT) & TIMER_MODE_MASK) === APIC_LVT_TIMER_TSCDEADLINE;
}

function apic_lvtt_period(apic: KvmLapic): boolean {
  return (apic.getReg(APIC_LVTT) & TIMER_MODE_MASK) === APIC_LVT_TIMER_PERIODIC;
}

function apic_lvtt_oneshot(apic: KvmLapic): boolean {
  return (apic.getReg(APIC_LVTT) & TIMER_MODE_MASK) === 0;
}

/** update_divide_count: TDCR bits 0, 1 and 3 */
export function divide_count(apic: KvmLapic): number {
  const tdcr = apic.getReg(APIC_TDCR) & 0xb;
  const tmp = ((tdcr & 0x3) | ((tdcr & 0x8) >>> 1)) + 1;
  return 1 << (tmp & 0x7);
}

function apic_get_tmcct(apic: KvmLapic, now: number): number {
  const timer = apic.lapic_timer;
  if (apic.getReg(APIC_TMICT) === 0 || timer.period === 0 || timer.target < 0) return 0;
  const remaining = Math.max(0, timer.target - now);
  const ns = remaining % timer.period;
  return Math.floor(ns / (APIC_BUS_CYCLE_NS * divide_count(apic)));
}

function cancel_apic_timer(apic: KvmLapic): void {
  apic.lapic_timer.target = -1;
}

/** start_apic_timer for one-shot/periodic (set_target_expiration, with the periodic minimum) */
function start_apic_timer(vcpu: KvmVcpu): void {
  const apic = vcpu.apic;
  const timer = apic.lapic_timer;
  const now = vcpu.kvm.now();
  if (apic_lvtt_tscdeadline(apic)) {
    start_tscdeadline(vcpu);
    return;
  }
  const tmict = apic.getReg(APIC_TMICT);
  timer.period = tmict * APIC_BUS_CYCLE_NS * divide_count(apic);
  if (timer.period === 0) {
    timer.target = -1;
    return;
  }
  if (apic_lvtt_period(apic) && timer.period < MIN_TIMER_PERIOD_NS) timer.period = MIN_TIMER_PERIOD_NS;
  timer.start = now;
  timer.target = now + timer.period;
}

/** the guest TSC is steps plus the vCPU's TSC offset; a deadline in the past fires at once */
function start_tscdeadline(vcpu: KvmVcpu): void {
  const timer = vcpu.apic.lapic_timer;
  if (timer.tscdeadline === 0n) {
    timer.target = -1;
    return;
  }
  const now = vcpu.kvm.now();
  const guestNow = BigInt(now) + vcpu.cpu.msrs.tscOffset;
  const delta = timer.tscdeadline - guestNow;
  timer.target = delta <= 0n ? now : now + Number(delta);
}

/** apic_update_lvtt: a mode change stops the timer and clears TMICT */
function apic_update_lvtt(vcpu: KvmVcpu, oldLvtt: number): void {
  const apic = vcpu.apic;
  const oldMode = oldLvtt & TIMER_MODE_MASK;
  const mode = apic.getReg(APIC_LVTT) & TIMER_MODE_MASK;
  if (oldMode === mode) return;
  if ((oldMode === APIC_LVT_TIMER_TSCDEADLINE) !== (mode === APIC_LVT_TIMER_TSCDEADLINE)) {
    cancel_apic_timer(apic);
    apic.setReg(APIC_TMICT, 0);
    apic.lapic_timer.period = 0;
    apic.lapic_timer.tscdeadline = 0n;
  }
}

/** kvm_set_lapic_tscdeadline_msr: ignored unless LVTT is in TSC-deadline mode */
export function kvm_set_lapic_tscdeadline_msr(vcpu: KvmVcpu, data: bigint): void {
  const apic = vcpu.apic;
  if (apic_lvtt_oneshot(apic) || apic_lvtt_period(apic)) return;
  cancel_apic_timer(apic);
  apic.lapic_timer.tscdeadline = data;
  start_tscdeadline(vcpu);
}

export function kvm_get_lapic_tscdeadline_msr(vcpu: KvmVcpu): bigint {
  return apic_lvtt_tscdeadline(vcpu.apic) ? vcpu.apic.lapic_timer.tscdeadline : 0n;
}

/**
 * apic_timer_fn -> apic_timer_expired(from_timer_fn = true) (lapic.c @ v6.3): the hrtimer
 * fired on the host. Marks the timer pending, makes KVM_REQ_UNBLOCK and kicks the vCPU; the
 * periodic timer rearms. Runs in interrupt context: no preemption points.
 */
export function apic_timer_fn(t: Task, vcpu: KvmVcpu, kick: (t: Task, v: KvmVcpu) => void): void {
  const apic = vcpu.apic;
  const timer = apic.lapic_timer;
  t.enter('apic_timer_fn');
  try {
    if (apic_lvtt_period(apic) && timer.period > 0) {
      timer.start = timer.target;
      timer.target += timer.period;
    } else timer.target = -1;
    if (timer.pending > 0) return;
    timer.pending++;
    vcpu.setRequest(KVM_REQ_UNBLOCK, null);
    t.emit({ kind: 'request-make', target: vcpu.vcpu_id, request: KVM_REQ_UNBLOCK, name: 'KVM_REQ_UNBLOCK', transition: null });
    kick(t, vcpu);
  } finally {
    t.leave();
  }
}

/** kvm_inject_apic_timer_irqs (from vcpu_run): deliver LVTT's vector, clear the pending count */
export function kvm_inject_apic_timer_irqs(t: Task, vcpu: KvmVcpu): HostCode {
  return kfn(t, 'kvm_inject_apic_timer_irqs', function* () {
    const apic = vcpu.apic;
    yield* kvm_apic_local_deliver(t, vcpu, APIC_LVTT);
    if (apic_lvtt_tscdeadline(apic)) apic.lapic_timer.tscdeadline = 0n;
    apic.lapic_timer.pending = 0;
  });
}

/** kvm_apic_local_deliver: an unmasked LVT entry of a hardware-enabled APIC */
function* kvm_apic_local_deliver(t: Task, vcpu: KvmVcpu, lvt: number): HostCode<number> {
  const reg = vcpu.apic.getReg(lvt);
  if (!kvm_apic_hw_enabled(vcpu) || reg & APIC_LVT_MASKED) return 0;
  return yield* __apic_accept_irq(t, vcpu, reg & APIC_MODE_MASK, reg & APIC_VECTOR_MASK, true, (reg & APIC_LVT_LEVEL_TRIGGER) !== 0);
}

// ---- writes -------------------------------------------------------------------------------------------

/**
 * kvm_lapic_reg_write (lapic.c @ v6.3): true when the write is invalid (#GP for an x2APIC MSR;
 * ignored for MMIO). Every write ends with kvm_recalculate_apic_map, a no-op unless dirty.
 */
export function kvm_lapic_reg_write(t: Task, vcpu: KvmVcpu, reg: number, val: number): HostCode<boolean> {
  return kfn(t, 'kvm_lapic_reg_write', function* () {
    const apic = vcpu.apic;
    const x2 = apic_x2apic_mode(vcpu);
    let bad = false;
    val >>>= 0;
    switch (reg) {
      case APIC_ID:
        if (!x2) kvm_apic_set_xapic_id(vcpu, val >>> 24);
        else bad = true;
        break;
      case APIC_TASKPRI:
        yield* apic_set_tpr(t, vcpu, val & 0xff);
        break;
      case APIC_EOI:
        yield* apic_set_eoi(t, vcpu);
        break;
      case APIC_LDR:
        if (!x2) {
          apic.setReg(APIC_LDR, val & 0xff000000);
          vcpu.kvm.arch.apic_map_dirty = true;
        } else bad = true;
        break;
      case APIC_DFR:
        if (!x2) {
          apic.setReg(APIC_DFR, val | 0x0fffffff);
          vcpu.kvm.arch.apic_map_dirty = true;
        } else bad = true;
        break;
      case APIC_SPIV: {
        const was = kvm_apic_sw_enabled(apic);
        apic.setReg(APIC_SPIV, val & 0x3ff); // no directed EOI: LVR does not advertise it
        if (was !== kvm_apic_sw_enabled(apic)) vcpu.kvm.arch.apic_map_dirty = true;
        if (!(val & APIC_SPIV_APIC_ENABLED)) {
          const lvtt = apic.getReg(APIC_LVTT);
          for (const off of LVT_OFFSETS) apic.setReg(off, apic.getReg(off) | APIC_LVT_MASKED);
          apic_update_lvtt(vcpu, lvtt);
          apic.lapic_timer.pending = 0;
        }
        break;
      }
      case APIC_ICR:
        // no delay, so the pending (BUSY) bit always reads back clear
        val &= ~APIC_ICR_BUSY;
        yield* kvm_apic_send_ipi(t, vcpu, val, apic.getReg(APIC_ICR2));
        apic.setReg(APIC_ICR, val);
        break;
      case APIC_ICR2:
        if (x2) bad = true;
        else apic.setReg(APIC_ICR2, val & 0xff000000);
        break;
      case APIC_LVT0: case APIC_LVTTHMR: case APIC_LVTPC: case APIC_LVT1: case APIC_LVTERR: {
        const index = LVT_OFFSETS.indexOf(reg as (typeof LVT_OFFSETS)[number]);
        if (!kvm_apic_sw_enabled(apic)) val |= APIC_LVT_MASKED;
        apic.setReg(reg, val & APIC_LVT_MASK[index]);
        break;
      }
      case APIC_LVTT: {
        const old = apic.getReg(APIC_LVTT);
        if (!kvm_apic_sw_enabled(apic)) val |= APIC_LVT_MASKED;
        apic.setReg(APIC_LVTT, val & (APIC_LVT_MASK[0] | TIMER_MODE_MASK));
        apic_update_lvtt(vcpu, old);
        break;
      }
      case APIC_TMICT:
        if (apic_lvtt_tscdeadline(apic)) break;
        cancel_apic_timer(apic);
        apic.setReg(APIC_TMICT, val);
        start_apic_timer(vcpu);
        break;
      case APIC_TDCR: {
        const old = divide_count(apic);
        apic.setReg(APIC_TDCR, val & 0xb);
        const now = vcpu.kvm.now();
        const timer = apic.lapic_timer;
        if (divide_count(apic) !== old && timer.period > 0 && timer.target >= 0) {
          // update_target_expiration: the remaining time scales with the divisor
          const remaining = Math.max(0, timer.target - now);
          const scaled = Math.floor((remaining * divide_count(apic)) / old);
          timer.period = Math.floor((timer.period * divide_count(apic)) / old);
          if (apic_lvtt_period(apic) && timer.period < MIN_TIMER_PERIOD_NS) timer.period = MIN_TIMER_PERIOD_NS;
          timer.target = now + scaled;
        }
        break;
      }
      case APIC_ESR:
        if (x2 && val !== 0) bad = true;
        break;
      case APIC_SELF_IPI:
        // exists only in x2APIC mode; bits 7:0 are the vector, the rest reserved
        if (!x2 || val & ~APIC_VECTOR_MASK) bad = true;
        else yield* kvm_apic_send_ipi(t, vcpu, APIC_DEST_SELF | val, 0);
        break;
      default:
        bad = true;
    }
    yield* kvm_recalculate_apic_map(t, vcpu.kvm);
    return bad;
  });
}

/**
 * apic_mmio_write (lapic.c @ v6.3): outside the window "not mine"; a hardware-disabled or x2APIC
 * APIC drops it (KVM_X86_QUIRK_LAPIC_MMIO_HOLE); only aligned 32-bit writes reach the register.
 * Returns false when the address is not this APIC's.
 */
export function apic_mmio_write(t: Task, vcpu: KvmVcpu, gpa: number, len: number, val: number): HostCode<boolean> {
  return kfn(t, 'apic_mmio_write', function* () {
    const apic = vcpu.apic;
    if (!apic_mmio_in_range(apic, gpa)) return false;
    if (!kvm_apic_hw_enabled(vcpu) || apic_x2apic_mode(vcpu)) return true;
    const offset = gpa - apic.base_address;
    if (len !== 4 || offset & 0xf) return true;
    yield* kvm_lapic_reg_write(t, vcpu, offset & 0xff0, val);
    return true;
  });
}

/**
 * apic_mmio_read: all-ones for a hardware-disabled or x2APIC APIC (the MMIO hole quirk); an
 * invalid register leaves the emulator's buffer untouched (0 here). Undefined: not this APIC's.
 */
export function apic_mmio_read(vcpu: KvmVcpu, gpa: number, len: number): number | undefined {
  const apic = vcpu.apic;
  if (!apic_mmio_in_range(apic, gpa)) return undefined;
  if (!kvm_apic_hw_enabled(vcpu) || apic_x2apic_mode(vcpu)) return len === 4 ? 0xffffffff : len === 2 ? 0xffff : 0xff;
  return kvm_lapic_reg_read(vcpu, gpa - apic.base_address, len) ?? 0;
}

export function apic_mmio_in_range(apic: KvmLapic, gpa: number): boolean {
  return gpa >= apic.base_address && gpa < apic.base_address + 4096;
}

/** kvm_x2apic_msr_write: #GP (true) outside x2APIC mode; 64-bit ICR; other registers reject bits 63:32. */
export function kvm_x2apic_msr_write(t: Task, vcpu: KvmVcpu, msr: number, data: bigint): HostCode<boolean> {
  return kfn(t, 'kvm_x2apic_msr_write', function* () {
    if (!apic_x2apic_mode(vcpu)) return true;
    const reg = (msr - 0x800) << 4;
    const lo = Number(data & 0xffffffffn);
    const hi = Number((data >> 32n) & 0xffffffffn);
    if (reg === APIC_ICR) {
      // kvm_x2apic_icr_write: no reserved-bit check at v6.3 (it came later)
      const low = lo & ~APIC_ICR_BUSY;
      yield* kvm_apic_send_ipi(t, vcpu, low, hi);
      vcpu.apic.setReg(APIC_ICR2, hi);
      vcpu.apic.setReg(APIC_ICR, low);
      return false;
    }
    if (hi !== 0) return true;
    return yield* kvm_lapic_reg_write(t, vcpu, reg, lo);
  });
}

/** kvm_x2apic_msr_read: the value, or undefined for #GP */
export function kvm_x2apic_msr_read(vcpu: KvmVcpu, msr: number): bigint | undefined {
  if (!apic_x2apic_mode(vcpu)) return undefined;
  const reg = (msr - 0x800) << 4;
  if (reg === APIC_ICR) return (BigInt(vcpu.apic.getReg(APIC_ICR2)) << 32n) | BigInt(vcpu.apic.getReg(APIC_ICR));
  const v = kvm_lapic_reg_read(vcpu, reg, 4);
  return v === undefined ? undefined : BigInt(v);
}

/**
 * kvm_apic_write_nodecode (lapic.c @ v6.3): AVIC already wrote the backing page (a trap-style
 * unaccelerated access); apply the register's side effects by writing the same value again.
 */
export function kvm_apic_write_nodecode(t: Task, vcpu: KvmVcpu, offset: number): HostCode {
  return kfn(t, 'kvm_apic_write_nodecode', function* () {
    const val = vcpu.apic.getReg(offset);
    if (apic_x2apic_mode(vcpu) && offset === APIC_ICR) {
      yield* kvm_apic_send_ipi(t, vcpu, val & ~APIC_ICR_BUSY, vcpu.apic.getReg(APIC_ICR2));
      return;
    }
    yield* kvm_lapic_reg_write(t, vcpu, offset, val);
  });
}

// ---- IA32_APIC_BASE ----------------------------------------------------------------------------------

/**
 * kvm_lapic_set_base (lapic.c @ v6.3): EN 0->1 resets the xAPIC ID; EXTD 0->1 sets the x2APIC
 * ID and LDR; an EN/EXTD change makes KVM_REQ_APICV_UPDATE (v6.1 designs: calls the refresh
 * directly; v3 also inhibits the slot on an x2APIC enable) and refreshes the vendor's APIC mode;
 * an enabled APIC away from 0xFEE00000 sets APIC_BASE_MODIFIED.
 */
export function kvm_lapic_set_base(t: Task, vcpu: KvmVcpu, value: number): HostCode {
  return kfn(t, 'kvm_lapic_set_base', function* () {
    const kvm = vcpu.kvm;
    const old = vcpu.apic_base;
    vcpu.apic_base = value;
    const changed = old ^ value;
    if (changed & MSR_IA32_APICBASE_ENABLE) {
      if (value & MSR_IA32_APICBASE_ENABLE) {
        kvm_apic_set_xapic_id(vcpu, vcpu.vcpu_id);
        yield* kvm_make_request(t, KVM_REQ_APF_READY, vcpu);
      } else kvm.arch.apic_map_dirty = true;
    }
    const x2apicEnable = (changed & X2APIC_ENABLE) !== 0 && (value & X2APIC_ENABLE) !== 0;
    if (x2apicEnable) kvm_apic_set_x2apic_id(vcpu, vcpu.vcpu_id);
    if (changed & (MSR_IA32_APICBASE_ENABLE | X2APIC_ENABLE)) {
      yield* withTransition(t, kvm.newTransition(), function* () {
        if (x2apicEnable && kvm.design.slot === 'free-in-vcpu-run' && kvm.config.avic && kvm.arch.apic_access_memslot_enabled) {
          // v3 07/28: the X2APIC "inhibit" is sticky and only marks the slot; vcpu_run frees it
          kvm.arch.apic_access_memslot_inhibited = true;
          kvm.arch.apic_access_memslot_inhibit_transition = t.transition;
          yield* kvm_make_request(t, KVM_REQ_UNBLOCK, vcpu);
        }
        if (kvm.design.setBase === 'request') yield* kvm_make_request(t, KVM_REQ_APICV_UPDATE, vcpu);
        else yield* apicvRefreshCore(t, vcpu);
      });
      kvm.x86_ops.set_virtual_apic_mode(vcpu);
    }
    vcpu.apic.base_address = Number(BigInt(value) & 0xffffff000n);
    if (value & MSR_IA32_APICBASE_ENABLE && vcpu.apic.base_address !== APIC_DEFAULT_PHYS_BASE) {
      yield* kvm_set_or_clear_apicv_inhibit(t, kvm, APICV_INHIBIT_REASON_APIC_BASE_MODIFIED, true);
    }
  });
}

/** Why kvm_set_apic_base refused a value (the caller injects #GP or fails the ioctl). */
export function apicBaseError(vcpu: KvmVcpu, value: bigint, hostInitiated: boolean): string | undefined {
  // reserved: bits 0-7, 9, and above MAXPHYADDR (48); EXTD is valid (CPUID has x2APIC)
  const reserved = (~((1n << 48n) - 1n) & ((1n << 64n) - 1n)) | 0x2ffn;
  if (value & reserved) return 'reserved bits set';
  const newMode = kvm_apic_mode(Number(value & 0xfffn));
  if (newMode === 'invalid') return 'EXTD without EN';
  if (!hostInitiated) {
    const oldMode = kvm_apic_mode(vcpu.apic_base);
    if (oldMode === 'x2apic' && newMode === 'xapic') return 'x2APIC to xAPIC';
    if (oldMode === 'disabled' && newMode === 'x2apic') return 'disabled to x2APIC';
  }
  return undefined;
}

// ---- the APIC map and its inhibits ------------------------------------------------------------------------

/** What kvm_recalculate_apic_map decides about aliasing (lapic.c @ v6.3). */
export function apicMapAliasing(kvm: Kvm): { physicalAliased: boolean; logicalAliased: boolean; xapicIdMismatch: boolean } {
  let xapicIdMismatch = false;
  let logicalMode: 'sw-disabled' | 'x2apic' | 'flat' | 'cluster' | 'disabled' = 'sw-disabled';
  const physical = new Map<number, KvmVcpu>();
  const logical = new Map<string, KvmVcpu>();
  for (const vcpu of kvm.vcpus) {
    if (!kvm_apic_hw_enabled(vcpu)) continue;
    const x2 = apic_x2apic_mode(vcpu);
    const xapicId = kvm_xapic_id(vcpu.apic);
    const x2apicId = kvm_x2apic_id(vcpu);
    if (!x2 && xapicId !== (vcpu.vcpu_id & 0xff)) xapicIdMismatch = true;
    // x2apic_format: the x2APIC ID always maps; an aliased xAPIC ID is ignored
    if (x2 || x2apicId > 0xff) physical.set(x2apicId, vcpu);
    if (!x2 && !physical.has(xapicId)) physical.set(xapicId, vcpu);
    // kvm_recalculate_logical_map
    if (logicalMode === 'disabled' || !kvm_apic_sw_enabled(vcpu.apic)) continue;
    let ldr = vcpu.apic.getReg(APIC_LDR);
    if (!ldr) continue;
    let mode: 'x2apic' | 'flat' | 'cluster';
    if (x2) mode = 'x2apic';
    else {
      ldr >>>= 24;
      mode = vcpu.apic.getReg(APIC_DFR) === APIC_DFR_FLAT ? 'flat' : 'cluster';
    }
    if (logicalMode === 'sw-disabled') logicalMode = mode;
    else if (logicalMode !== mode) {
      logicalMode = 'disabled';
      continue;
    }
    if (x2) continue;
    const cluster = mode === 'flat' ? 0 : ldr >>> 4;
    const mask = mode === 'flat' ? ldr & 0xff : ldr & 0xf;
    if (mode === 'cluster' && cluster === 0xf) continue;
    if (!mask) continue;
    const bit = 31 - Math.clz32(mask & -mask);
    const key = `${cluster}:${bit}`;
    if ((mask & (mask - 1)) !== 0 || logical.has(key)) logicalMode = 'disabled';
    else logical.set(key, vcpu);
  }
  return { physicalAliased: false, logicalAliased: logicalMode === 'disabled', xapicIdMismatch };
}

/**
 * kvm_recalculate_apic_map (lapic.c @ v6.3): rebuilds the map when dirty and sets or clears
 * PHYSICAL_ID_ALIASED, LOGICAL_ID_ALIASED and APIC_ID_MODIFIED (three inhibit calls, traced
 * even when nothing changes). With KVM_CAP_X2APIC_API the physical map never aliases.
 */
export function* kvm_recalculate_apic_map(t: Task, kvm: Kvm): HostCode {
  if (!kvm.arch.apic_map_dirty) return;
  yield* kfn(t, 'kvm_recalculate_apic_map', function* () {
    const lock = kvm.arch.apic_map_lock;
    yield* mutex_lock(t, lock);
    if (!kvm.arch.apic_map_dirty) {
      yield* mutex_unlock(t, lock);
      return; // someone else updated the map
    }
    kvm.arch.apic_map_dirty = false;
    const a = apicMapAliasing(kvm);
    yield* kvm_set_or_clear_apicv_inhibit(t, kvm, APICV_INHIBIT_REASON_PHYSICAL_ID_ALIASED, a.physicalAliased);
    yield* kvm_set_or_clear_apicv_inhibit(t, kvm, APICV_INHIBIT_REASON_LOGICAL_ID_ALIASED, a.logicalAliased);
    yield* kvm_set_or_clear_apicv_inhibit(t, kvm, APICV_INHIBIT_REASON_APIC_ID_MODIFIED, a.xapicIdMismatch);
    yield* mutex_unlock(t, lock);
  });
}

// ---- KVM_SET_LAPIC ------------------------------------------------------------------------------------

/**
 * KVM_GET_LAPIC's register page (kvm_apic_get_state @ v6.3): the registers with TMCCT filled in
 * and, with KVM_CAP_X2APIC_API, the 32-bit x2APIC ID as it is.
 */
export function kvm_apic_get_state(vcpu: KvmVcpu): Uint8Array {
  const regs = vcpu.apic.regs.slice();
  new DataView(regs.buffer).setUint32(APIC_TMCCT, kvm_lapic_reg_read(vcpu, APIC_TMCCT, 4) ?? 0, true);
  return regs;
}

/**
 * kvm_apic_set_state (lapic.c @ v6.3), KVM_SET_LAPIC: SPIV first (the software-enable count),
 * kvm_apic_state_fixup (an x2APIC vCPU's ID must stay its vCPU id; its LDR is derived), the
 * page copied in, the map recalculated, the version, PPR and the timer restored (counting on from
 * the state's TMCCT), KVM_REQ_EVENT. Returns an error message (-EINVAL) or undefined.
 */
export function kvm_apic_set_state(t: Task, vcpu: KvmVcpu, state: Uint8Array): HostCode<string | undefined> {
  return kfn(t, 'kvm_apic_set_state', function* () {
    const apic = vcpu.apic;
    const s = new DataView(state.buffer, state.byteOffset, state.byteLength);
    const wasSw = kvm_apic_sw_enabled(apic);
    apic.setReg(APIC_SPIV, s.getUint32(APIC_SPIV, true));
    if (wasSw !== kvm_apic_sw_enabled(apic)) vcpu.kvm.arch.apic_map_dirty = true;
    if (apic_x2apic_mode(vcpu)) {
      const id = s.getUint32(APIC_ID, true);
      if (id !== vcpu.vcpu_id) {
        yield* kvm_recalculate_apic_map(t, vcpu.kvm);
        return `KVM_SET_LAPIC: x2APIC ID ${id} is not the vCPU id ${vcpu.vcpu_id} (-EINVAL)`;
      }
      s.setUint32(APIC_LDR, kvm_apic_calc_x2apic_ldr(id), true);
    }
    const tmcct = s.getUint32(APIC_TMCCT, true);
    apic.regs.set(state.subarray(0, 4096));
    vcpu.kvm.arch.apic_map_dirty = true;
    yield* kvm_recalculate_apic_map(t, vcpu.kvm);
    apic.setReg(APIC_LVR, KVM_LAPIC_LVR);
    __apic_update_ppr(apic);
    // cancel_apic_timer, apic_update_lvtt, __start_apic_timer(apic, APIC_TMCCT)
    cancel_apic_timer(apic);
    apic.lapic_timer.period = 0;
    if (!apic_lvtt_tscdeadline(apic)) {
      start_apic_timer(vcpu);
      const timer = apic.lapic_timer;
      if (timer.target >= 0 && tmcct > 0 && tmcct <= apic.getReg(APIC_TMICT)) timer.target = vcpu.kvm.now() + tmcct * APIC_BUS_CYCLE_NS * divide_count(apic);
    } else start_tscdeadline(vcpu);
    apic.setReg(APIC_TMCCT, 0);
    yield* kvm_make_request(t, KVM_REQ_EVENT, vcpu);
    return undefined;
  });
}

/** KVM_SET_LAPIC with the xAPIC ID changed: userspace's KVM_GET_LAPIC, the ID edited, KVM_SET_LAPIC. */
export function* kvm_apic_set_state_id(t: Task, vcpu: KvmVcpu, id: number): HostCode<string | undefined> {
  const state = kvm_apic_get_state(vcpu);
  new DataView(state.buffer).setUint32(APIC_ID, apic_x2apic_mode(vcpu) ? id : (id & 0xff) << 24, true);
  return yield* kvm_apic_set_state(t, vcpu, state);
}

/**
 * kvm_apic_accept_events (lapic.c @ v6.3): INIT resets the vCPU (kvm_vcpu_reset with init_event):
 * an AP then waits for SIPI (KVM_MP_STATE_INIT_RECEIVED), the BSP runs on in real mode; a SIPI
 * starts an AP in real mode. Real mode is beyond this CPU model: both are reported to the caller.
 */
export function* kvm_apic_accept_events(t: Task, vcpu: KvmVcpu): HostCode<'sipi' | 'bsp-init' | undefined> {
  const apic = vcpu.apic;
  if (!apic.pending_events) return undefined;
  return yield* kfn(t, 'kvm_apic_accept_events', function* () {
    yield* preempt();
    if (apic.pending_events & KVM_APIC_INIT) {
      apic.pending_events &= ~KVM_APIC_INIT;
      if (vcpu.vcpu_id === 0) return 'bsp-init' as const;
      vcpu.mp_state = 'KVM_MP_STATE_INIT_RECEIVED';
    }
    if (apic.pending_events & KVM_APIC_SIPI) {
      apic.pending_events &= ~KVM_APIC_SIPI;
      if (vcpu.mp_state === 'KVM_MP_STATE_INIT_RECEIVED') return 'sipi' as const;
    }
    return undefined;
  });
}

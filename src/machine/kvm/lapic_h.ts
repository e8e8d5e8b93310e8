// struct kvm_lapic and the inline helpers of arch/x86/kvm/lapic.h @ v6.3: the 4 KiB register
// page (which is also AVIC's backing page: the hardware reads and writes it directly), the timer
// state, the cached base address and `apicv_active`. Behaviour lives in lapic.ts.

import { APIC_DEFAULT_PHYS_BASE, APIC_IRR, APIC_ISR, APIC_SPIV, APIC_SPIV_APIC_ENABLED } from './apicdef';

export type TimerMode = 'oneshot' | 'periodic' | 'tscdeadline';

export interface LapicTimer {
  /** period in ns (= steps) for one-shot and periodic modes; 0 when not counting */
  period: number;
  /** step at which the current count started (TMCCT counts down from TMICT from here) */
  start: number;
  /** step at which the timer fires next, or -1 when it is not armed */
  target: number;
  /** IA32_TSC_DEADLINE as written (0: disarmed) */
  tscdeadline: bigint;
  /** the timer fired and its interrupt is not yet injected (kvm_inject_apic_timer_irqs) */
  pending: number;
}

export class KvmLapic {
  /** the register page (apic->regs): AVIC's backing page */
  readonly regs = new Uint8Array(4096);
  private readonly view = new DataView(this.regs.buffer);
  /** apic->base_address: where the xAPIC MMIO window is */
  base_address = APIC_DEFAULT_PHYS_BASE;
  /** apic->apicv_active: APICv/AVIC in use for this vCPU */
  apicv_active = false;
  readonly lapic_timer: LapicTimer = { period: 0, start: 0, target: -1, tscdeadline: 0n, pending: 0 };
  /** apic->pending_events: KVM_APIC_INIT (bit 0), KVM_APIC_SIPI (bit 1) */
  pending_events = 0;
  sipi_vector = 0;

  getReg(off: number): number {
    return this.view.getUint32(off, true);
  }

  setReg(off: number, v: number): void {
    this.view.setUint32(off, v >>> 0, true);
  }
}

export const KVM_APIC_INIT = 1;
export const KVM_APIC_SIPI = 2;

/** the 32-bit word and bit of `vector` in a 256-bit register array (ISR, TMR, IRR) */
function vecWord(vector: number): number {
  return (vector >>> 5) << 4;
}

export function apic_test_vector(vector: number, apic: KvmLapic, base: number): boolean {
  return ((apic.getReg(base + vecWord(vector)) >>> (vector & 31)) & 1) === 1;
}

export function apic_set_vector(vector: number, apic: KvmLapic, base: number): void {
  const off = base + vecWord(vector);
  apic.setReg(off, apic.getReg(off) | (1 << (vector & 31)));
}

export function apic_clear_vector(vector: number, apic: KvmLapic, base: number): void {
  const off = base + vecWord(vector);
  apic.setReg(off, apic.getReg(off) & ~(1 << (vector & 31)));
}

/** the highest set vector of a 256-bit register array, or -1 (lapic.c :: find_highest_vector) */
export function find_highest_vector(apic: KvmLapic, base: number): number {
  for (let w = 7; w >= 0; w--) {
    const v = apic.getReg(base + w * 16);
    if (v !== 0) return w * 32 + 31 - Math.clz32(v);
  }
  return -1;
}

export function apic_find_highest_irr(apic: KvmLapic): number {
  return find_highest_vector(apic, APIC_IRR);
}

export function apic_find_highest_isr(apic: KvmLapic): number {
  return find_highest_vector(apic, APIC_ISR);
}

/** SPIV bit 8 (lapic.h :: kvm_apic_sw_enabled) */
export function kvm_apic_sw_enabled(apic: KvmLapic): boolean {
  return (apic.getReg(APIC_SPIV) & APIC_SPIV_APIC_ENABLED) !== 0;
}

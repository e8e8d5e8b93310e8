// Local APIC register offsets and bits (arch/x86/include/asm/apicdef.h), the IA32_APIC_BASE
// bits (asm/msr-index.h) and KVM's APIC constants (lapic.h @ v6.3).

export const APIC_DEFAULT_PHYS_BASE = 0xfee00000;
export const MSR_IA32_APICBASE = 0x1b;
export const MSR_IA32_APICBASE_BSP = 1 << 8;
export const X2APIC_ENABLE = 1 << 10;
export const MSR_IA32_APICBASE_ENABLE = 1 << 11;
export const APIC_BASE_MSR = 0x800;
export const MSR_IA32_TSC_DEADLINE = 0x6e0;

export const APIC_ID = 0x20;
export const APIC_LVR = 0x30;
export const APIC_TASKPRI = 0x80;
export const APIC_ARBPRI = 0x90;
export const APIC_PROCPRI = 0xa0;
export const APIC_EOI = 0xb0;
export const APIC_RRR = 0xc0;
export const APIC_LDR = 0xd0;
export const APIC_DFR = 0xe0;
export const APIC_SPIV = 0xf0;
export const APIC_ISR = 0x100;
export const APIC_TMR = 0x180;
export const APIC_IRR = 0x200;
export const APIC_ESR = 0x280;
export const APIC_LVTCMCI = 0x2f0;
export const APIC_ICR = 0x300;
export const APIC_ICR2 = 0x310;
export const APIC_LVTT = 0x320;
export const APIC_LVTTHMR = 0x330;
export const APIC_LVTPC = 0x340;
export const APIC_LVT0 = 0x350;
export const APIC_LVT1 = 0x360;
export const APIC_LVTERR = 0x370;
export const APIC_TMICT = 0x380;
export const APIC_TMCCT = 0x390;
export const APIC_TDCR = 0x3e0;
export const APIC_SELF_IPI = 0x3f0;

export const APIC_SPIV_APIC_ENABLED = 1 << 8;
export const APIC_SPIV_FOCUS_DISABLED = 1 << 9;
export const APIC_SPIV_DIRECTED_EOI = 1 << 12;

/** ICR fields */
export const APIC_DEST_SHORTHAND_MASK = 0xc0000;
export const APIC_DEST_SELF = 0x40000;
export const APIC_DEST_ALLINC = 0x80000;
export const APIC_DEST_ALLBUT = 0xc0000;
export const APIC_DEST_LOGICAL = 0x800;
export const APIC_ICR_BUSY = 0x1000;
export const APIC_INT_LEVELTRIG = 0x8000;
export const APIC_INT_ASSERT = 0x4000;
export const APIC_VECTOR_MASK = 0xff;
export const APIC_MODE_MASK = 0x700;

/** delivery modes (ICR and LVT bits 10:8) */
export const APIC_DM_FIXED = 0x000;
export const APIC_DM_LOWEST = 0x100;
export const APIC_DM_SMI = 0x200;
export const APIC_DM_REMRD = 0x300;
export const APIC_DM_NMI = 0x400;
export const APIC_DM_INIT = 0x500;
export const APIC_DM_STARTUP = 0x600;
export const APIC_DM_EXTINT = 0x700;

export const APIC_LVT_MASKED = 1 << 16;
export const APIC_LVT_LEVEL_TRIGGER = 1 << 15;
export const APIC_LVT_REMOTE_IRR = 1 << 14;
export const APIC_INPUT_POLARITY = 1 << 13;
export const APIC_SEND_PENDING = 1 << 12;
export const APIC_LVT_TIMER_ONESHOT = 0;
export const APIC_LVT_TIMER_PERIODIC = 1 << 17;
export const APIC_LVT_TIMER_TSCDEADLINE = 2 << 17;

export const APIC_DFR_FLAT = 0xffffffff;
export const APIC_DFR_CLUSTER = 0x0fffffff;

export const APIC_BROADCAST = 0xff;
export const X2APIC_BROADCAST = 0xffffffff;

/** the LAPIC version KVM reports with the in-kernel irqchip: version 0x14, max LVT 5, no directed EOI (lapic.c :: kvm_apic_set_version @ v6.3) */
export const APIC_VERSION = 0x14;
export const KVM_APIC_LVT_NUM = 6;
export const KVM_LAPIC_LVR = APIC_VERSION | ((KVM_APIC_LVT_NUM - 1) << 16);

/** ESR bits */
export const APIC_ESR_SEND_ILLEGAL_VECTOR = 1 << 5;
export const APIC_ESR_RECV_ILLEGAL_VECTOR = 1 << 6;
export const APIC_ESR_ILLEGAL_REGISTER = 1 << 7;

/** KVM's APIC bus: one cycle per nanosecond (lapic.h :: APIC_BUS_CYCLE_NS @ v6.3); a step is a nanosecond */
export const APIC_BUS_CYCLE_NS = 1;

export const LVT_OFFSETS = [APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR] as const;

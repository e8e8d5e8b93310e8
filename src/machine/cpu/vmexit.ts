// #VMEXITs: what the guest did that the hypervisor (the KVM model) intercepts, with the SVM exit
// codes of arch/x86/include/uapi/asm/svm.h. The CPU stops at the instruction and its vCPU's host
// task handles the exit. Intercepted instructions (MSR, CPUID, HLT, VMMCALL, the SVM instructions)
// exit before they run, and the host emulates or skips them. Device accesses (port I/O, MMIO
// outside every slot) complete within the instruction, with the value the host's device model
// gives at once (a read never blocks in KVM), and the vCPU exits after the instruction: the
// host then logs them and performs a write's side effects, which may block (locks, kicks),
// before the guest goes on. No guest can tell the difference: it runs nothing in between.

export const SVM_EXIT_INTR = 0x060;
export const SVM_EXIT_VINTR = 0x064;
export const SVM_EXIT_CPUID = 0x072;
export const SVM_EXIT_HLT = 0x078;
export const SVM_EXIT_IOIO = 0x07b;
export const SVM_EXIT_MSR = 0x07c;
export const SVM_EXIT_SHUTDOWN = 0x07f;
export const SVM_EXIT_VMRUN = 0x080;
export const SVM_EXIT_VMMCALL = 0x081;
export const SVM_EXIT_VMLOAD = 0x082;
export const SVM_EXIT_VMSAVE = 0x083;
export const SVM_EXIT_STGI = 0x084;
export const SVM_EXIT_CLGI = 0x085;
export const SVM_EXIT_INVLPGA = 0x07a;
export const SVM_EXIT_SKINIT = 0x086;
export const SVM_EXIT_NPF = 0x400;
export const SVM_EXIT_AVIC_INCOMPLETE_IPI = 0x401;
export const SVM_EXIT_AVIC_UNACCELERATED_ACCESS = 0x402;
export const SVM_EXIT_ERR = -1;

/** Kernel names (as `kvm_exit` prints them), and the APM names the DAP conditions accept. */
export const SVM_EXIT_NAMES: Readonly<Record<number, { kernel: string; apm: string }>> = {
  [SVM_EXIT_INTR]: { kernel: 'SVM_EXIT_INTR', apm: 'INTR' },
  [SVM_EXIT_VINTR]: { kernel: 'SVM_EXIT_VINTR', apm: 'VINTR' },
  [SVM_EXIT_CPUID]: { kernel: 'SVM_EXIT_CPUID', apm: 'CPUID' },
  [SVM_EXIT_HLT]: { kernel: 'SVM_EXIT_HLT', apm: 'HLT' },
  [SVM_EXIT_IOIO]: { kernel: 'SVM_EXIT_IOIO', apm: 'IOIO' },
  [SVM_EXIT_MSR]: { kernel: 'SVM_EXIT_MSR', apm: 'MSR' },
  [SVM_EXIT_SHUTDOWN]: { kernel: 'SVM_EXIT_SHUTDOWN', apm: 'SHUTDOWN' },
  [SVM_EXIT_VMRUN]: { kernel: 'SVM_EXIT_VMRUN', apm: 'VMRUN' },
  [SVM_EXIT_VMMCALL]: { kernel: 'SVM_EXIT_VMMCALL', apm: 'VMMCALL' },
  [SVM_EXIT_VMLOAD]: { kernel: 'SVM_EXIT_VMLOAD', apm: 'VMLOAD' },
  [SVM_EXIT_VMSAVE]: { kernel: 'SVM_EXIT_VMSAVE', apm: 'VMSAVE' },
  [SVM_EXIT_STGI]: { kernel: 'SVM_EXIT_STGI', apm: 'STGI' },
  [SVM_EXIT_CLGI]: { kernel: 'SVM_EXIT_CLGI', apm: 'CLGI' },
  [SVM_EXIT_INVLPGA]: { kernel: 'SVM_EXIT_INVLPGA', apm: 'INVLPGA' },
  [SVM_EXIT_SKINIT]: { kernel: 'SVM_EXIT_SKINIT', apm: 'SKINIT' },
  [SVM_EXIT_NPF]: { kernel: 'SVM_EXIT_NPF', apm: 'NPF' },
  [SVM_EXIT_AVIC_INCOMPLETE_IPI]: { kernel: 'SVM_EXIT_AVIC_INCOMPLETE_IPI', apm: 'AVIC_INCOMPLETE_IPI' },
  [SVM_EXIT_AVIC_UNACCELERATED_ACCESS]: { kernel: 'SVM_EXIT_AVIC_UNACCELERATED_ACCESS', apm: 'AVIC_NOACCEL' },
  [SVM_EXIT_ERR]: { kernel: 'SVM_EXIT_ERR', apm: 'INVALID' },
};

export function exitName(code: number): string {
  return SVM_EXIT_NAMES[code]?.kernel ?? `0x${code.toString(16)}`;
}

/** One access to a port or to guest-physical memory outside RAM, as the instruction made it. */
export interface DeviceAccess {
  /** port number (IOIO) or guest-physical address (NPF) */
  readonly where: number;
  readonly size: number;
  readonly write: boolean;
  /** the data written, or the data the read returned */
  readonly value: number;
}

export type VmExit =
  /** port I/O (one access: a rep string instruction exits after each iteration) */
  | { readonly code: typeof SVM_EXIT_IOIO; readonly access: DeviceAccess }
  /** accesses outside RAM with no slot behind them (nested page fault, emulated MMIO) */
  | { readonly code: typeof SVM_EXIT_NPF; readonly accesses: DeviceAccess[] }
  /** RDMSR / WRMSR of an intercepted MSR: the model completes the instruction */
  | { readonly code: typeof SVM_EXIT_MSR; readonly write: boolean; readonly msr: number }
  | { readonly code: typeof SVM_EXIT_CPUID | typeof SVM_EXIT_HLT | typeof SVM_EXIT_VMMCALL | typeof SVM_EXIT_SHUTDOWN }
  /** an SVM instruction (vmrun, vmload, ...): always intercepted, KVM checks EFER.SVME and CPL */
  | { readonly code: typeof SVM_EXIT_VMRUN | typeof SVM_EXIT_VMLOAD | typeof SVM_EXIT_VMSAVE | typeof SVM_EXIT_STGI | typeof SVM_EXIT_CLGI | typeof SVM_EXIT_INVLPGA | typeof SVM_EXIT_SKINIT }
  /** a physical interrupt (a kick) or the end of the time the scheduler gave the vCPU */
  | { readonly code: typeof SVM_EXIT_INTR }
  /** the interrupt window opened (IF set, no shadow) */
  | { readonly code: typeof SVM_EXIT_VINTR }
  | { readonly code: typeof SVM_EXIT_AVIC_INCOMPLETE_IPI; readonly icrLo: number; readonly icrHi: number; readonly cause: number; readonly index: number }
  /** an APIC-page access AVIC does not accelerate: a trap (after a write reached the backing page) or a fault (KVM emulates the access) */
  | { readonly code: typeof SVM_EXIT_AVIC_UNACCELERATED_ACCESS; readonly offset: number; readonly gpa: number; readonly size: number; readonly write: boolean; readonly value: number; readonly trap: boolean };

/** SVM exit codes of exits that happen before the instruction (it is emulated or skipped by the host). */
export type InterceptCode = typeof SVM_EXIT_MSR | typeof SVM_EXIT_CPUID | typeof SVM_EXIT_HLT | typeof SVM_EXIT_VMMCALL |
  typeof SVM_EXIT_VMRUN | typeof SVM_EXIT_VMLOAD | typeof SVM_EXIT_VMSAVE | typeof SVM_EXIT_STGI | typeof SVM_EXIT_CLGI |
  typeof SVM_EXIT_INVLPGA | typeof SVM_EXIT_SKINIT;

/**
 * Thrown by an intercepted instruction before it changes anything; the block runner catches it
 * like a fault, leaves RIP at the instruction and stops with the exit. `nextRip` is what SVM's
 * NRIP_SAVE gives the host to skip the instruction.
 */
export class VmExitSignal {
  constructor(readonly exit: VmExit, readonly nextRip: number) {}
}

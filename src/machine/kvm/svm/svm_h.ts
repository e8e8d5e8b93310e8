// struct vcpu_svm as far as the model needs it (arch/x86/kvm/svm/svm.h @ v6.3): the VMCB control
// bits the model reads (V_IRQ with the VINTR intercept, EVENTINJ), the AVIC physical ID table
// entry of the vCPU, GIF, and the nested state (svm_nested_state) with the L1 state VMRUN saved.

export const MSR_VM_CR = 0xc0010114;
export const MSR_VM_HSAVE_PA = 0xc0010117;
export const MSR_AMD64_SVM_AVIC_DOORBELL = 0xc001011b;

/** AVIC physical APIC ID table entry (asm/svm.h: AVIC_PHYSICAL_ID_ENTRY_*) */
export interface AvicPhysicalIdEntry {
  /** Valid (bit 63): set when avic_init_backing_page points it at the backing page */
  valid: boolean;
  /** IsRunning (bit 62): set by avic_vcpu_load, cleared by avic_vcpu_put */
  is_running: boolean;
  /** host physical APIC ID (bits 11:0): the pCPU the vCPU was loaded on */
  host_physical_id: number;
}

/** An event EVENTINJ delivers at the next VMRUN. */
export interface EventInj {
  readonly vector: number;
  readonly type: 'intr' | 'nmi' | 'exception';
  readonly errorCode?: number;
}

/** The L1 state VMRUN saves in the host save area and #VMEXIT restores. */
export interface L1State {
  readonly regs: Int32Array;
  readonly rip: number;
  readonly rflags: number;
  readonly cr0: number;
  readonly cr3: number;
  readonly cr4: number;
  readonly efer: number;
  readonly cs: number;
  readonly ss: number;
  readonly cpl: number;
}

/** The VMCB12 intercepts the model honours (contracts/kvm-model.md, "Nested SVM"). */
export interface Vmcb12Intercepts {
  readonly intr: boolean;
  readonly hlt: boolean;
  readonly vmrun: boolean;
  readonly vmmcall: boolean;
  readonly cpuid: boolean;
  readonly msr: boolean;
  readonly ioio: boolean;
}

export interface SvmNestedState {
  /** is_guest_mode(vcpu): running L2 */
  guest_mode: boolean;
  /** MSR_VM_HSAVE_PA */
  hsave_msr: bigint;
  vm_cr_msr: bigint;
  /** guest-physical address of VMCB12 while in L2 */
  vmcb12_gpa: number;
  /** V_INTR_MASKING of VMCB12 */
  v_intr_masking: boolean;
  intercepts: Vmcb12Intercepts | null;
  l1: L1State | null;
}

export class VcpuSvm {
  /** V_IRQ pending with the VINTR intercept set (svm_set_vintr / svm_clear_vintr) */
  vintr = false;
  event_inj: EventInj | null = null;
  /** GIF (STGI/CLGI) */
  gif = true;
  readonly avic_physical_id_entry: AvicPhysicalIdEntry = { valid: false, is_running: false, host_physical_id: 0 };
  readonly nested: SvmNestedState = {
    guest_mode: false, hsave_msr: 0n, vm_cr_msr: 0n, vmcb12_gpa: 0, v_intr_masking: false, intercepts: null, l1: null,
  };
}

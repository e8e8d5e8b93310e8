// Minimal nested SVM (arch/x86/kvm/svm/nested.c @ v6.3, contracts/kvm-model.md "Nested SVM"):
// VMRUN's permission, VMCB12 control and save-area checks, entry into L2 on VMCB12's CR3 (no
// nested paging offered), #VMEXIT to L1 on what VMCB12 intercepts, and the APICv side: the
// per-vCPU NESTED inhibit, KVM_REQ_APICV_UPDATE at entry when APICv is active, and
// nested_svm_vmexit's direct refresh when the VM is activated (the design picks the function).

import { CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME, EFER_SVME } from '../../cpu/cpu';
import { UD } from '../../cpu/exceptions';
import { SVM_EXIT_CPUID, SVM_EXIT_ERR, SVM_EXIT_HLT, SVM_EXIT_INTR, SVM_EXIT_IOIO, SVM_EXIT_MSR, SVM_EXIT_VMMCALL, SVM_EXIT_VMRUN, type VmExit } from '../../cpu/vmexit';
import { apicvRefreshCore, kvm_apicv_activated, kvm_vcpu_update_apicv_wrapper } from '../apicv';
import { KVM_REQ_APICV_UPDATE, kvm_make_request, type KvmVcpu } from '../kvm_host';
import { type HostCode, kfn, type Task, withTransition } from '../task';
import { kvm_inject_gp, kvm_queue_exception, kvm_skip_emulated_instruction } from '../x86';
import type { Vmcb12Intercepts } from './svm_h';

// VMCB layout (AMD APM vol. 2, appendix B)
const VMCB_INTERCEPT_MISC1 = 0x0c;
const VMCB_INTERCEPT_MISC2 = 0x10;
const VMCB_IOPM_BASE = 0x40;
const VMCB_MSRPM_BASE = 0x48;
const VMCB_ASID = 0x58;
const VMCB_INT_CTL = 0x60;
const VMCB_EXIT_CODE = 0x70;
const VMCB_EXIT_INFO1 = 0x78;
const VMCB_EXIT_INFO2 = 0x80;
const VMCB_NP_ENABLE = 0x90;
const VMCB_NEXT_RIP = 0xc8;
const SAVE_CS = 0x410;
const SAVE_SS = 0x420;
const SAVE_CPL = 0x4cb;
const SAVE_EFER = 0x4d0;
const SAVE_CR4 = 0x548;
const SAVE_CR3 = 0x550;
const SAVE_CR0 = 0x558;
const SAVE_DR7 = 0x560;
const SAVE_DR6 = 0x568;
const SAVE_RFLAGS = 0x570;
const SAVE_RIP = 0x578;
const SAVE_RSP = 0x5d8;
const SAVE_RAX = 0x5f8;
const V_INTR_MASKING_MASK = 1 << 24;
const MSRPM_SIZE = 0x2000;
const IOPM_SIZE = 0x3000;
const MAXPHYADDR_LIMIT = 2 ** 48;

function view(vcpu: KvmVcpu): DataView {
  return vcpu.cpu.bus.mem.view;
}

function u64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 4294967296;
}

function setU64(v: DataView, at: number, x: bigint): void {
  v.setBigUint64(at, BigInt.asUintN(64, x), true);
}

function intercepts(v: DataView, base: number): Vmcb12Intercepts {
  const m1 = v.getUint32(base + VMCB_INTERCEPT_MISC1, true);
  const m2 = v.getUint32(base + VMCB_INTERCEPT_MISC2, true);
  return {
    intr: (m1 & 1) !== 0, cpuid: (m1 & (1 << 18)) !== 0, hlt: (m1 & (1 << 24)) !== 0, ioio: (m1 & (1 << 27)) !== 0,
    msr: (m1 & (1 << 28)) !== 0, vmrun: (m2 & 1) !== 0, vmmcall: (m2 & 2) !== 0,
  };
}

/** nested_svm_check_permissions: #UD without EFER.SVME or paging, #GP above CPL 0 */
export function nested_svm_check_permissions(vcpu: KvmVcpu): boolean {
  const cpu = vcpu.cpu;
  if (!(cpu.efer & EFER_SVME) || !(cpu.cr0 & CR0_PG)) {
    kvm_queue_exception(vcpu, UD);
    return false;
  }
  if (cpu.cpl !== 0) {
    kvm_inject_gp(vcpu);
    return false;
  }
  return true;
}

/** Why VMCB12 fails nested_vmcb_check_controls / nested_vmcb_check_save, or undefined. */
function vmcb12Invalid(v: DataView, base: number): string | undefined {
  const ic = intercepts(v, base);
  if (!ic.vmrun) return 'VMRUN not intercepted';
  if (v.getUint32(base + VMCB_ASID, true) === 0) return 'ASID 0';
  if (v.getUint32(base + VMCB_NP_ENABLE, true) & 1) return 'nested paging requested (not offered)';
  const legal = (pa: number, size: number) => {
    const a = Math.ceil(pa / 4096) * 4096;
    return a < MAXPHYADDR_LIMIT && a + size - 1 < MAXPHYADDR_LIMIT;
  };
  if (!legal(u64(v, base + VMCB_MSRPM_BASE), MSRPM_SIZE) || !legal(u64(v, base + VMCB_IOPM_BASE), IOPM_SIZE)) return 'illegal MSRPM/IOPM base';
  const efer = u64(v, base + SAVE_EFER);
  const cr0 = u64(v, base + SAVE_CR0);
  const cr4 = u64(v, base + SAVE_CR4);
  const cr3 = u64(v, base + SAVE_CR3);
  if (!(efer & EFER_SVME)) return 'EFER.SVME clear in VMCB12';
  if ((cr0 & (1 << 30)) === 0 && cr0 & (1 << 29)) return 'CR0.NW set with CR0.CD clear';
  if (cr0 >= 4294967296) return 'CR0[63:32] not zero';
  if (v.getUint32(base + SAVE_DR6 + 4, true) || v.getUint32(base + SAVE_DR7 + 4, true)) return 'DR6/DR7 upper bits set';
  if (efer & EFER_LME && cr0 & CR0_PG) {
    if (!(cr4 & CR4_PAE) || !(cr0 & CR0_PE) || cr3 >= MAXPHYADDR_LIMIT) return 'long mode without PAE, PE or a legal CR3';
  }
  // __kvm_is_valid_cr4 / kvm_valid_efer for the bits this CPU has
  if (cr4 >= 4294967296 || cr4 & ~0x3f7fff) return 'reserved CR4 bits';
  if (efer & ~(0x1 | 0x100 | 0x400 | 0x800 | 0x1000) || efer >= 4294967296) return 'reserved EFER bits';
  return undefined;
}

/**
 * vmrun_interception -> nested_svm_vmrun (nested.c @ v6.3): #GP for a zero VM_HSAVE_PA or a bad
 * RAX; skip VMRUN; a VMCB12 that fails the checks gets SVM_EXIT_ERR and L1 goes on; otherwise
 * save L1 state and enter L2.
 */
export function* nested_svm_vmrun(t: Task, vcpu: KvmVcpu): HostCode<number> {
  return yield* kfn(t, 'nested_svm_vmrun', function* () {
    const cpu = vcpu.cpu;
    const nested = vcpu.svm.nested;
    if (!nested_svm_check_permissions(vcpu)) return 1;
    const gpa = cpu.r[0] >>> 0;
    if (nested.hsave_msr === 0n || cpu.r[1] !== 0 || gpa & 0xfff || gpa + 4096 > cpu.bus.mem.size) {
      kvm_inject_gp(vcpu);
      return 1;
    }
    kvm_skip_emulated_instruction(vcpu);
    const v = view(vcpu);
    if (vmcb12Invalid(v, gpa) !== undefined) {
      setU64(v, gpa + VMCB_EXIT_CODE, BigInt(SVM_EXIT_ERR));
      setU64(v, gpa + VMCB_EXIT_INFO1, 0n);
      setU64(v, gpa + VMCB_EXIT_INFO2, 0n);
      return 1;
    }
    // L1's state goes to the host save area (vmcb01 here)
    nested.l1 = {
      regs: cpu.r.slice(0, 32), rip: cpu.rip, rflags: cpu.getRflags(), cr0: cpu.cr0, cr3: cpu.cr3, cr4: cpu.cr4, efer: cpu.efer,
      cs: cpu.cs, ss: cpu.ss, cpl: cpu.cpl,
    };
    yield* enter_svm_guest_mode(t, vcpu, gpa);
    return 1;
  });
}

/** enter_svm_guest_mode: load L2 from VMCB12, GIF set, KVM_REQ_APICV_UPDATE if APICv is active (NESTED now applies). */
function enter_svm_guest_mode(t: Task, vcpu: KvmVcpu, gpa: number): HostCode {
  return kfn(t, 'enter_svm_guest_mode', function* () {
    const cpu = vcpu.cpu;
    const v = view(vcpu);
    const nested = vcpu.svm.nested;
    nested.vmcb12_gpa = gpa;
    nested.intercepts = intercepts(v, gpa);
    nested.v_intr_masking = (v.getUint32(gpa + VMCB_INT_CTL, true) & V_INTR_MASKING_MASK) !== 0;
    nested.guest_mode = true;
    cpu.efer = Number(u64(v, gpa + SAVE_EFER)) | (u64(v, gpa + SAVE_EFER) & EFER_LME && u64(v, gpa + SAVE_CR0) & CR0_PG ? EFER_LMA : 0);
    cpu.cr0 = u64(v, gpa + SAVE_CR0);
    cpu.cr4 = u64(v, gpa + SAVE_CR4);
    cpu.cr3 = u64(v, gpa + SAVE_CR3);
    cpu.cs = v.getUint16(gpa + SAVE_CS, true);
    cpu.ss = v.getUint16(gpa + SAVE_SS, true);
    cpu.cpl = v.getUint8(gpa + SAVE_CPL) & 3;
    cpu.setRflags(Number(u64(v, gpa + SAVE_RFLAGS) & 0xffffffff));
    cpu.rip = u64(v, gpa + SAVE_RIP);
    cpu.setReg64(4, v.getBigUint64(gpa + SAVE_RSP, true));
    cpu.setReg64(0, v.getBigUint64(gpa + SAVE_RAX, true));
    cpu.pagingChanged();
    cpu.clearInterruptShadow();
    vcpu.svm.gif = true;
    if (vcpu.apic.apicv_active) {
      yield* withTransition(t, vcpu.kvm.newTransition(), () => kvm_make_request(t, KVM_REQ_APICV_UPDATE, vcpu));
    }
  });
}

/** nested_svm_intercept: does VMCB12 intercept this exit of L2? */
export function nested_svm_exit_handled(vcpu: KvmVcpu, exit: VmExit): boolean {
  const ic = vcpu.svm.nested.intercepts;
  if (!ic) return false;
  switch (exit.code) {
    case SVM_EXIT_HLT: return ic.hlt;
    case SVM_EXIT_VMMCALL: return ic.vmmcall;
    case SVM_EXIT_VMRUN: return ic.vmrun;
    case SVM_EXIT_CPUID: return ic.cpuid;
    case SVM_EXIT_MSR: return ic.msr; // the MSR permission map is not consulted: every MSR is intercepted when MSR_PROT is set
    case SVM_EXIT_IOIO: return ic.ioio;
    default: return false;
  }
}

/**
 * nested_svm_vmexit (nested.c @ v6.3): write L2's state and the exit into VMCB12, leave guest
 * mode, restore L1 (GIF cleared), and un-inhibit AVIC at once if the VM is activated: the core
 * refresh (`__kvm_vcpu_update_apicv` at v6.3), or the memslot-aware wrapper under
 * `nested-direct-update`.
 */
export function nested_svm_vmexit(t: Task, vcpu: KvmVcpu, exitCode: number, info1 = 0n, info2 = 0n): HostCode {
  return kfn(t, 'nested_svm_vmexit', function* () {
    const cpu = vcpu.cpu;
    const nested = vcpu.svm.nested;
    const l1 = nested.l1;
    if (!l1) throw new Error('nested_svm_vmexit outside guest mode');
    const v = view(vcpu);
    const gpa = nested.vmcb12_gpa;
    setU64(v, gpa + VMCB_EXIT_CODE, BigInt(exitCode));
    setU64(v, gpa + VMCB_EXIT_INFO1, info1);
    setU64(v, gpa + VMCB_EXIT_INFO2, info2);
    setU64(v, gpa + VMCB_NEXT_RIP, BigInt(cpu.exitNextRip));
    setU64(v, gpa + SAVE_RIP, BigInt(cpu.rip));
    setU64(v, gpa + SAVE_RSP, cpu.reg64(4));
    setU64(v, gpa + SAVE_RAX, cpu.reg64(0));
    setU64(v, gpa + SAVE_RFLAGS, BigInt(cpu.getRflags()));
    setU64(v, gpa + SAVE_CR0, BigInt(cpu.cr0));
    setU64(v, gpa + SAVE_CR3, BigInt(cpu.cr3));
    setU64(v, gpa + SAVE_CR4, BigInt(cpu.cr4));
    setU64(v, gpa + SAVE_EFER, BigInt(cpu.efer));
    nested.guest_mode = false;
    nested.intercepts = null;
    nested.l1 = null;
    cpu.efer = l1.efer;
    cpu.cr0 = l1.cr0;
    cpu.cr3 = l1.cr3;
    cpu.cr4 = l1.cr4;
    cpu.cs = l1.cs;
    cpu.ss = l1.ss;
    cpu.cpl = l1.cpl;
    cpu.setRflags(l1.rflags);
    cpu.rip = l1.rip;
    cpu.r[8] = l1.regs[8];
    cpu.r[9] = l1.regs[9];
    cpu.r[0] = l1.regs[0];
    cpu.r[1] = l1.regs[1];
    cpu.pagingChanged();
    cpu.clearInterruptShadow();
    vcpu.svm.gif = false;
    vcpu.svm.vintr = false;
    if (kvm_apicv_activated(vcpu.kvm)) {
      yield* withTransition(t, vcpu.kvm.newTransition(), function* () {
        if (vcpu.kvm.design.nestedVmexit === 'wrapper') yield* kvm_vcpu_update_apicv_wrapper(t, vcpu);
        else yield* apicvRefreshCore(t, vcpu);
      });
    }
  });
}

/** A pending interrupt for L1 while L2 runs and VMCB12 intercepts INTR: #VMEXIT(INTR) (svm_check_nested_events). */
export function* nested_exit_on_intr(t: Task, vcpu: KvmVcpu): HostCode<boolean> {
  if (!vcpu.svm.nested.guest_mode || !vcpu.svm.nested.intercepts?.intr) return false;
  yield* nested_svm_vmexit(t, vcpu, SVM_EXIT_INTR);
  return true;
}


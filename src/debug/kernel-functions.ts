// The kernel functions the KVM model runs as host code (each a `kfn` frame), with the kernel file
// that holds each at v6.3: the source of host stack frames, and the names function breakpoints
// accept. Some exist only under some designs; `designLacks` says why a name does not apply.

import type { Design } from '../machine/kvm/design';

/** function -> kernel source file */
export const KERNEL_FUNCTIONS: Readonly<Record<string, string>> = {
  // virt/kvm/kvm_main.c
  kvm_vcpu_ioctl: 'virt/kvm/kvm_main.c', kvm_vm_ioctl: 'virt/kvm/kvm_main.c', kvm_vcpu_kick: 'virt/kvm/kvm_main.c',
  kvm_make_all_cpus_request: 'virt/kvm/kvm_main.c', kvm_vcpu_halt: 'virt/kvm/kvm_main.c', kvm_vcpu_block: 'virt/kvm/kvm_main.c',
  kvm_vcpu_check_block: 'virt/kvm/kvm_main.c', __kvm_set_memory_region: 'virt/kvm/kvm_main.c', kvm_set_memslot: 'virt/kvm/kvm_main.c',
  kvm_invalidate_memslot: 'virt/kvm/kvm_main.c', kvm_swap_active_memslots: 'virt/kvm/kvm_main.c',
  // include/linux/kvm_host.h
  kvm_make_request: 'include/linux/kvm_host.h', kvm_check_request: 'include/linux/kvm_host.h',
  kvm_vcpu_srcu_read_lock: 'include/linux/kvm_host.h', kvm_vcpu_srcu_read_unlock: 'include/linux/kvm_host.h',
  // kernel/rcu/srcutree.c, kernel/locking
  srcu_read_lock: 'kernel/rcu/srcutree.c', srcu_read_unlock: 'kernel/rcu/srcutree.c', synchronize_srcu: 'kernel/rcu/srcutree.c',
  synchronize_srcu_expedited: 'kernel/rcu/srcutree.c', mutex_lock: 'kernel/locking/mutex.c', mutex_unlock: 'kernel/locking/mutex.c',
  down_read: 'kernel/locking/rwsem.c', up_read: 'kernel/locking/rwsem.c', down_write: 'kernel/locking/rwsem.c', up_write: 'kernel/locking/rwsem.c',
  // arch/x86/kvm/x86.c
  kvm_arch_vcpu_ioctl_run: 'arch/x86/kvm/x86.c', vcpu_run: 'arch/x86/kvm/x86.c', vcpu_enter_guest: 'arch/x86/kvm/x86.c',
  vcpu_block: 'arch/x86/kvm/x86.c', kvm_check_and_inject_events: 'arch/x86/kvm/x86.c', kvm_set_or_clear_apicv_inhibit: 'arch/x86/kvm/x86.c',
  __kvm_set_or_clear_apicv_inhibit: 'arch/x86/kvm/x86.c', kvm_vcpu_update_apicv: 'arch/x86/kvm/x86.c', __kvm_vcpu_update_apicv: 'arch/x86/kvm/x86.c',
  __x86_set_memory_region: 'arch/x86/kvm/x86.c', kvm_arch_vcpu_guestdbg_update_apicv_inhibit: 'arch/x86/kvm/x86.c',
  kvm_set_msr_common: 'arch/x86/kvm/x86.c', kvm_set_apic_base: 'arch/x86/kvm/x86.c', kvm_emulate_rdmsr: 'arch/x86/kvm/x86.c',
  kvm_emulate_wrmsr: 'arch/x86/kvm/x86.c', kvm_arch_vcpu_ioctl: 'arch/x86/kvm/x86.c', kvm_arch_vcpu_ioctl_set_sregs: 'arch/x86/kvm/x86.c',
  __set_sregs_common: 'arch/x86/kvm/x86.c', kvm_arch_vcpu_ioctl_set_guest_debug: 'arch/x86/kvm/x86.c', msr_io: 'arch/x86/kvm/x86.c',
  do_set_msr: 'arch/x86/kvm/x86.c', kvm_vcpu_ioctl_set_lapic: 'arch/x86/kvm/x86.c', kvm_zap_gfn_range: 'arch/x86/kvm/mmu/mmu.c',
  kvm_send_userspace_msi: 'arch/x86/kvm/irq_comm.c', kvm_irq_delivery_to_apic: 'arch/x86/kvm/irq_comm.c',
  // arch/x86/kvm/lapic.c
  kvm_lapic_set_base: 'arch/x86/kvm/lapic.c', kvm_lapic_reg_write: 'arch/x86/kvm/lapic.c', apic_mmio_write: 'arch/x86/kvm/lapic.c',
  kvm_x2apic_msr_write: 'arch/x86/kvm/lapic.c', kvm_apic_send_ipi: 'arch/x86/kvm/lapic.c', kvm_apic_write_nodecode: 'arch/x86/kvm/lapic.c',
  kvm_recalculate_apic_map: 'arch/x86/kvm/lapic.c', kvm_apic_set_state: 'arch/x86/kvm/lapic.c', kvm_apic_accept_events: 'arch/x86/kvm/lapic.c',
  kvm_inject_apic_timer_irqs: 'arch/x86/kvm/lapic.c', apic_timer_fn: 'arch/x86/kvm/lapic.c', kvm_inhibit_apic_access_page: 'arch/x86/kvm/lapic.c',
  kvm_free_apic_access_page: 'arch/x86/kvm/lapic.c',
  // arch/x86/kvm/svm
  svm_vcpu_run: 'arch/x86/kvm/svm/svm.c', svm_handle_exit: 'arch/x86/kvm/svm/svm.c', svm_invoke_exit_handler: 'arch/x86/kvm/svm/svm.c',
  msr_interception: 'arch/x86/kvm/svm/svm.c', npf_interception: 'arch/x86/kvm/svm/svm.c', interrupt_window_interception: 'arch/x86/kvm/svm/svm.c',
  vmrun_interception: 'arch/x86/kvm/svm/svm.c', svm_enable_irq_window: 'arch/x86/kvm/svm/svm.c', svm_get_msr: 'arch/x86/kvm/svm/svm.c',
  svm_set_msr: 'arch/x86/kvm/svm/svm.c', svm_deliver_interrupt: 'arch/x86/kvm/svm/svm.c',
  avic_refresh_apicv_exec_ctrl: 'arch/x86/kvm/svm/avic.c', avic_activate_vmcb: 'arch/x86/kvm/svm/avic.c',
  avic_incomplete_ipi_interception: 'arch/x86/kvm/svm/avic.c', avic_kick_target_vcpus: 'arch/x86/kvm/svm/avic.c',
  avic_unaccelerated_access_interception: 'arch/x86/kvm/svm/avic.c', avic_unaccel_trap_write: 'arch/x86/kvm/svm/avic.c',
  nested_svm_vmrun: 'arch/x86/kvm/svm/nested.c', enter_svm_guest_mode: 'arch/x86/kvm/svm/nested.c', nested_svm_vmexit: 'arch/x86/kvm/svm/nested.c',
};

export function isKernelFunction(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(KERNEL_FUNCTIONS, name);
}

/** Why `name` does not exist under `design` (the breakpoint is then unverified), or undefined. */
export function designLacks(design: Design, name: string): string | undefined {
  switch (name) {
    case '__kvm_vcpu_update_apicv':
      return design.core === '__kvm_vcpu_update_apicv' ? undefined
        : `the ${design.name} design has no __kvm_vcpu_update_apicv: its per-vCPU refresh is kvm_vcpu_update_apicv (v6.1)`;
    case 'kvm_inhibit_apic_access_page':
      return design.slot === 'inhibit-in-update-wrapper' || design.slot === 'inhibit-in-update-core' ? undefined
        : `the ${design.name} design never calls kvm_inhibit_apic_access_page`;
    case 'kvm_free_apic_access_page':
      return design.slot === 'free-in-vcpu-run' ? undefined : `only the v3 design has kvm_free_apic_access_page`;
    default:
      return undefined;
  }
}

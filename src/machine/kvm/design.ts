// The designs of contracts/kvm-model.md: which kernel behaviour the model follows where the
// thread's alternatives differ. Each design is a small table of choices read by the one model
// (apicv.ts, lapic.ts, x86.ts, svm/nested.ts); nothing else changes between designs.

export const DESIGN_NAMES = [
  'upstream', 'v3', 'pre-fix', 'srcu-drop-in-inhibit', 'toggle-in-update', 'nested-direct-update', 'drop-in-update-direct',
] as const;

export type DesignName = (typeof DESIGN_NAMES)[number];

/** Where (and whether) the APIC-access page's memslot is deleted or created. */
export type SlotPolicy =
  /** v6.3: the KVM_REQ_APICV_UPDATE wrapper calls kvm_inhibit_apic_access_page for an x2APIC vCPU when the vendor allows APICv in x2APIC without x2APIC virtualization */
  | 'inhibit-in-update-wrapper'
  /** v3: kvm_lapic_set_base marks the slot inhibited on an x2APIC enable and pokes KVM_REQ_UNBLOCK; vcpu_run frees it */
  | 'free-in-vcpu-run'
  /** v6.2: the slot is never deleted */
  | 'never'
  /** the rejected attempt: __kvm_set_or_clear_apicv_inhibit deletes/creates it on each flip, in the write section */
  | 'toggle-in-inhibit-path'
  /** the 5.x scheme per vCPU: kvm_vcpu_update_apicv deletes/creates it on every activation change */
  | 'toggle-in-update'
  /** Maxim's drop: the (direct-call) kvm_vcpu_update_apicv calls kvm_inhibit_apic_access_page */
  | 'inhibit-in-update-core';

export interface Design {
  readonly name: DesignName;
  readonly summary: string;
  /** what the kernel calls the per-vCPU refresh: v6.3 `__kvm_vcpu_update_apicv` (with a static wrapper) or v6.1 `kvm_vcpu_update_apicv` */
  readonly core: '__kvm_vcpu_update_apicv' | 'kvm_vcpu_update_apicv';
  /** kvm_lapic_set_base on an EN/EXTD change: raise KVM_REQ_APICV_UPDATE (v6.3, 1459f5c6b8b8) or call the refresh directly (v6.1) */
  readonly setBase: 'request' | 'direct';
  readonly slot: SlotPolicy;
  /** nested_svm_vmexit: the core refresh, or (nested-direct-update) the memslot-aware wrapper */
  readonly nestedVmexit: 'core' | 'wrapper';
  /** the thread's v3 reserves APICV_INHIBIT_REASON_X2APIC as bit 12 (listed, never set in the VM word) */
  readonly x2apicInhibitListed: boolean;
}

export const DESIGNS: Readonly<Record<DesignName, Design>> = {
  upstream: {
    name: 'upstream', summary: 'Linux v6.3: the memslot is inhibited from the KVM_REQ_APICV_UPDATE handler (2008fab34530)',
    core: '__kvm_vcpu_update_apicv', setBase: 'request', slot: 'inhibit-in-update-wrapper', nestedVmexit: 'core', x2apicInhibitListed: false,
  },
  v3: {
    name: 'v3', summary: 'the thread\'s patch v3 07/28: kvm_lapic_set_base inhibits the slot and pokes KVM_REQ_UNBLOCK; vcpu_run frees it',
    core: 'kvm_vcpu_update_apicv', setBase: 'direct', slot: 'free-in-vcpu-run', nestedVmexit: 'core', x2apicInhibitListed: true,
  },
  'pre-fix': {
    name: 'pre-fix', summary: 'v6.2 hybrid AVIC before the fix: the APIC-access slot stays mapped for x2APIC vCPUs',
    core: 'kvm_vcpu_update_apicv', setBase: 'direct', slot: 'never', nestedVmexit: 'core', x2apicInhibitListed: false,
  },
  'srcu-drop-in-inhibit': {
    name: 'srcu-drop-in-inhibit', summary: 'the rejected attempt: the inhibit path toggles the slot and drops the caller\'s vCPU SRCU',
    core: 'kvm_vcpu_update_apicv', setBase: 'direct', slot: 'toggle-in-inhibit-path', nestedVmexit: 'core', x2apicInhibitListed: false,
  },
  'toggle-in-update': {
    name: 'toggle-in-update', summary: 'the 5.x toggle moved into the per-vCPU update: every vCPU toggles the slot (the double toggle)',
    core: 'kvm_vcpu_update_apicv', setBase: 'direct', slot: 'toggle-in-update', nestedVmexit: 'core', x2apicInhibitListed: false,
  },
  'nested-direct-update': {
    name: 'nested-direct-update', summary: 'upstream, but nested_svm_vmexit calls the memslot-aware kvm_vcpu_update_apicv wrapper',
    core: '__kvm_vcpu_update_apicv', setBase: 'request', slot: 'inhibit-in-update-wrapper', nestedVmexit: 'wrapper', x2apicInhibitListed: false,
  },
  'drop-in-update-direct': {
    name: 'drop-in-update-direct', summary: 'Maxim\'s SRCU drop in kvm_vcpu_update_apicv while kvm_lapic_set_base still calls it directly',
    core: 'kvm_vcpu_update_apicv', setBase: 'direct', slot: 'inhibit-in-update-core', nestedVmexit: 'core', x2apicInhibitListed: false,
  },
};

export function isDesignName(s: string): s is DesignName {
  return (DESIGN_NAMES as readonly string[]).includes(s);
}

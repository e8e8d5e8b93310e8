// deviations.ts - the one table of LAPIC oracle deviations: where real KVM (kvm-pvm, Linux
// 6.18 on this project's hosts) or Bochs 2.7 gives a value that is not the one the emulator
// must produce. "Deviation" is relative to the emulator's contract (Linux v6.3 lapic.c/x86.c,
// contracts/kvm-model.md), not to the SDM: several Bochs rows are architecturally right and
// still not what v6.3 KVM does; each row says which. Rows with a `scope` are masked for exactly
// the check ids they match (expected.ts then takes the value from the other oracle, or from an
// explicit SDM/v6.3 entry); the tests fail when a scoped row no longer matches any difference,
// so the table stays true. Rows without a scope are known but not exercised by this corpus.
//
// Check ids: "<guest>/<vcpu>:<check>[.<field>]" (console.ts).

import type { OracleName } from './recording';

export interface ApicDeviationScope {
  /** check ids masked on this oracle (anchored regular expressions) */
  ids?: RegExp[];
  /** the oracle cannot run these guests at all (corpus.ts `bochsDeviation`); its run must fail with this */
  guests?: string[];
  errorPattern?: RegExp;
}

export interface ApicDeviation {
  id: string;
  oracle: OracleName;
  /** the behaviour, one line */
  behaviour: string;
  /** what the oracle produced, against what, in which checks */
  evidence: string;
  /** what the SDM (Vol. 3A ch. 11, "APIC") and Linux v6.3 say */
  reference: string;
  /** what the emulator does (its contract) */
  emulator: string;
  scope?: ApicDeviationScope;
}

const IRQ_GUESTS = '(?:irq-xapic|irq-x2apic)';
const INT_GUESTS = '(?:irq-xapic|irq-x2apic|ipi-xapic-2|ipi-xapic-4|ipi-x2apic-4)';

export const APIC_DEVIATIONS: readonly ApicDeviation[] = [
  // ---- real KVM (kvm-pvm) --------------------------------------------------------------------
  {
    id: 'kvm-interrupt-acceptance',
    oracle: 'kvm',
    behaviour: 'interrupt acceptance: ISR is not set and PPR not raised while a handler runs, so a same-class (or any) pending vector is delivered at once instead of waiting for EOI',
    evidence: 'every handler snapshot reads isr=- and ppr=TPR on KVM (irq-xapic one.irq1: KVM "v=40 isr=- ppr=0", Bochs "v=40 isr=40 ppr=40"); ' +
      'irq-*/nest: KVM delivers 0x51 inside 0x50\'s handler before its EOI (nest.in irr=-; Bochs irr=51, taken after the EOI); ' +
      'eoi.two-in-service reads isr=- (Bochs 38,68); ppr.in48.tpr35 reads 0x35 (Bochs 0x40 = ISR class). Same in xAPIC and x2APIC mode, ' +
      'as research/oracles.md section 1 measured. The vector order of pending interrupts (0x65, 0x61, 0x31) and TPR masking are right on KVM.',
    reference: 'SDM Vol. 3A 11.8.4/11.8.5: on acceptance the vector moves from IRR to ISR, PPR = max(TPR, ISRV & 0xF0), and only a vector of a higher ' +
      'class than PPR interrupts the handler; EOI clears the highest ISR bit. v6.3 lapic.c: kvm_apic_ack_interrupt -> apic_set_isr + __apic_update_ppr; ' +
      'apic_has_interrupt_for_ppr compares (irr & 0xF0) with PPR.',
    emulator: 'architectural acceptance as v6.3 models it: ISR set, PPR raised, same/lower class held until EOI; expected values from Bochs',
    scope: {
      ids: [
        new RegExp(`^${INT_GUESTS}/\\d+:(?:[a-z0-9-]+\\.)?irq\\d+\\.(?:isr|ppr)$`),
        new RegExp(`^${IRQ_GUESTS}/0:nest\\.`),
        new RegExp(`^${IRQ_GUESTS}/0:eoi\\.(?:two-in-service|first)\\.(?:isr|ppr)$`),
        new RegExp(`^${IRQ_GUESTS}/0:ppr\\.in48\\.tpr35$`),
      ],
    },
  },
  // ---- Bochs 2.7 ---------------------------------------------------------------------------
  {
    id: 'bochs-lvt0-masked',
    oracle: 'bochs',
    behaviour: 'the BSP\'s LVT0 reads 0x10700 (ExtINT, masked) after reset instead of 0x700',
    evidence: 'apic-base init.lvt0, apic-base-disable before.lvt0, xapic-mmio rd.350, x2apic-msrs rd.835: Bochs 0x10700, KVM 0x700. ' +
      'test/oracle/bochs/README.md: Bochs sets the mask bit on LVT writes while the APIC is software-disabled, so the ROM cannot load 0x700.',
    reference: 'kvm_lapic_reset (v6.3): LVT0 = APIC_MODE_EXTINT on the reset BSP with KVM_X86_QUIRK_LINT0_REENABLED (contracts/guest.md start state).',
    emulator: 'LVT0 = 0x700 on vCPU 0 at start',
    scope: { ids: [/^apic-base\/0:init\.lvt0$/, /^apic-base-disable\/0:before\.lvt0$/, /^xapic-mmio\/0:rd\.350$/, /^x2apic-msrs\/0:rd\.835$/] },
  },
  {
    id: 'bochs-x2apic-ldr',
    oracle: 'bochs',
    behaviour: 'the x2APIC LDR (MSR 0x80D) reads 0 instead of (ID >> 4) << 16 | 1 << (ID & 15)',
    evidence: 'x2apic-ids x2.ldr on vCPUs 1..16: Bochs 0, KVM 2, 4, ..., 0x8000, 0x10001; apic-base x2.rd.80d / ap.x2.rd.80d / re.x2.rd.80d, ' +
      'x2apic-msrs rd.80d / ldr.rd, ipi-x2apic-4 ldr: Bochs 0. (research/oracles.md section 5, tag 24.)',
    reference: 'SDM Vol. 3A 11.12.10.2 (logical x2APIC ID = cluster << 16 | 1 << (ID & 0xF)); v6.3 kvm_apic_set_x2apic_id sets LDR = kvm_apic_calc_x2apic_ldr(id).',
    emulator: 'LDR derived from the x2APIC ID when EXTD is set',
    scope: { ids: [/^x2apic-ids\/\d+:x2\.ldr$/, /^apic-base\/[01]:(?:x2|ap\.x2|re\.x2)\.rd\.80d$/, /^x2apic-msrs\/0:(?:rd\.80d|ldr\.rd)$/, /^ipi-x2apic-4\/\d+:ldr$/] },
  },
  {
    id: 'bochs-x2apic-logical-ipi',
    oracle: 'bochs',
    behaviour: 'x2APIC logical-destination IPIs reach only APIC ID 0 (consistent with its LDR of 0)',
    evidence: 'ipi-x2apic-4 s2 (logical 0x0000000D: IDs 0, 2, 3) and s12 (logical 0x0000FFFF: IDs 0-3): on Bochs only vCPU 0 takes the vector, ' +
      'the sender prints "s2.wait-cpu2 timeout" etc.; KVM delivers to every addressed vCPU.',
    reference: 'SDM Vol. 3A 11.12.10.2: a logical x2APIC destination matches when the cluster (bits 31:16) is equal and the 16-bit masks intersect. ' +
      'v6.3 kvm_apic_match_logical_addr / kvm_apic_map_get_logical_dest (KVM_APIC_MODE_X2APIC).',
    emulator: 'delivers to every vCPU whose derived LDR matches',
    scope: { ids: [/^ipi-x2apic-4\/\d+:s(?:2|12)\./, /^ipi-x2apic-4\/\d+:cnt\.v7[2b]$/] },
  },
  {
    id: 'bochs-x2apic-phys-ff-broadcast',
    oracle: 'bochs',
    behaviour: 'in x2APIC mode a physical destination of 0xFF is treated as a broadcast',
    evidence: 'ipi-x2apic-4 s11 (ICR destination 0x000000FF, vector 0x7A): Bochs delivers to all four vCPUs (s11.irq1 lines, cnt v7a=1); KVM delivers to nobody.',
    reference: 'SDM Vol. 3A 11.12.9: the x2APIC broadcast destination is 0xFFFFFFFF; 0xFF is an ordinary APIC ID. v6.3 kvm_apic_broadcast() uses ' +
      'X2APIC_BROADCAST for an x2APIC source, and kvm_apic_is_broadcast_dest() with KVM_CAP_X2APIC_API\'s broadcast quirk disabled (as QEMU and our harness set it) ' +
      'treats 0xFF as broadcast only while the logical map is not in x2APIC mode.',
    emulator: 'no delivery (no vCPU has x2APIC ID 0xFF)',
    scope: { ids: [/^ipi-x2apic-4\/\d+:s11\./, /^ipi-x2apic-4\/\d+:cnt\.v7a$/] },
  },
  {
    id: 'bochs-apicbase-after-disable',
    oracle: 'bochs',
    behaviour: 'after a global disable (APIC_BASE.EN = 0) every later IA32_APIC_BASE write is ignored without #GP, reserved bits and illegal transitions included',
    evidence: 'apic-base dis.wr.to-x2, dis.wr.extd-only, dis.wr.rsvd0: Bochs "ok" (KVM #GP(0)); dis.wr.reloc/dis.wr.to-xapic: accepted but APIC_BASE stays ' +
      '0xfee00100, the MMIO page reads all-ones, x2APIC MSRs #GP; vCPU 1 the same (ap.rd.xapic 0xfee00000); apic-base-disable: BSP flag clear ignored, ' +
      're-enable ignored. (research/oracles.md section 5, tags 47-61.)',
    reference: 'SDM Vol. 3A 11.12.5.1 (Figure 11-27): disabled -> xAPIC is legal, disabled -> x2APIC and EXTD without EN raise #GP, reserved bits raise #GP. ' +
      'v6.3 x86.c kvm_set_apic_base: reserved bits / LAPIC_MODE_INVALID / disabled->x2APIC return 1 (#GP); kvm_lapic_set_base re-enables and resets the xAPIC ID.',
    emulator: 'v6.3 transition rules; disabled -> xAPIC re-enables, keeps the other registers, xAPIC ID = vCPU index',
    scope: {
      ids: [
        /^apic-base\/0:(?:dis\.wr\.(?:to-x2|extd-only|rsvd0)|dis\.rd\.reloc|re\..*)$/,
        /^apic-base\/1:(?:ap\.rd\.xapic|ap\.re\..*)$/,
        /^apic-base-disable\/0:(?:dis\.rd\.bsp-clear|rd\.re-enabled|re\..*|after\..*)$/,
      ],
    },
  },
  {
    id: 'bochs-x2apic-reserved-bits-gp',
    oracle: 'bochs',
    behaviour: 'x2APIC WRMSR of TPR with bits 31:8 set, or of SVR with bit 9, bit 12 or bits 31:10 set, raises #GP (KVM masks the value)',
    evidence: 'x2apic-msrs tpr.wr.1ff: Bochs #GP(0), KVM ok and TPR = 0xff (tpr.rd.1ff, tpr.rd.hi follow); svr.wr.3ff / 10ff / ffffffff: Bochs #GP(0) ' +
      '(SVR stays 0x1ff), KVM ok with SVR = 0x3ff / 0xff / 0x3ff.',
    reference: 'SDM Vol. 3A 11.12.1.2: WRMSR of non-zero reserved bits of an x2APIC register raises #GP (Bochs follows it). v6.3 kvm_lapic_reg_write: ' +
      'TPR takes val & 0xff; SPIV takes val & 0x3ff (| directed-EOI bit 12 only when LVR advertises it, not here: LVR = 0x50014); only bits 63:32 are checked (kvm_lapic_msr_write).',
    emulator: 'v6.3: accepts, stores the masked value',
    scope: { ids: [/^x2apic-msrs\/0:(?:tpr\.(?:wr|rd)\.1ff|tpr\.rd\.hi|svr\.(?:wr|rd)\.(?:3ff|10ff|ffffffff))$/] },
  },
  {
    id: 'bochs-x2apic-eoi-nonzero',
    oracle: 'bochs',
    behaviour: 'a non-zero write to the x2APIC EOI MSR (0x80B) raises #GP',
    evidence: 'x2apic-msrs eoi.wr.1: Bochs #GP(0), KVM ok. (research/oracles.md section 7.)',
    reference: 'SDM Vol. 3A 11.12.1.2 lists EOI bits 31:0 as reserved-must-be-zero for WRMSR (Bochs follows it). v6.3 kvm_lapic_reg_write APIC_EOI: apic_set_eoi, value ignored.',
    emulator: 'v6.3: accepted (an EOI)',
    scope: { ids: [/^x2apic-msrs\/0:eoi\.wr\.1$/] },
  },
  {
    id: 'bochs-x2apic-icr-read',
    oracle: 'bochs',
    behaviour: 'the x2APIC ICR (MSR 0x830) reads 0 after a write',
    evidence: 'x2apic-msrs icr.rd.*: Bochs 0, KVM the 64-bit value written with bit 12 cleared (icr.rd.fixed 0x5500000040); ipi-x2apic-4 s1/s2/s3 .icr: Bochs 0.',
    reference: 'SDM Vol. 3A 11.12.9: ICR is a 64-bit read/write MSR in x2APIC mode. v6.3 kvm_x2apic_icr_write stores data & ~APIC_ICR_BUSY; kvm_lapic_msr_read returns it.',
    emulator: 'reads back the last 64-bit value written (BUSY cleared)',
    scope: { ids: [/^x2apic-msrs\/0:icr\.rd\.[a-z0-9-]+$/, /^ipi-x2apic-4\/\d+:s\d+\.[a-z0-9-]+\.icr$/] },
  },
  {
    id: 'bochs-self-ipi-reserved',
    oracle: 'bochs',
    behaviour: 'a SELF_IPI write with reserved bits (bit 8) is accepted and sends the low 8 bits as the vector',
    evidence: 'x2apic-msrs self.wr.140 (0x141): Bochs ok, vector 0x41 pending (self.rd.irr2 3, self.taken 3); KVM #GP(0), self.rd.irr2 1, self.taken 2.',
    reference: 'SDM Vol. 3A 11.12.11: SELF IPI bits 31:8 reserved. v6.3 kvm_lapic_reg_write APIC_SELF_IPI: (val & ~APIC_VECTOR_MASK) -> #GP (commit ba5838abb053, in v6.3).',
    emulator: '#GP(0), nothing sent',
    scope: { ids: [/^x2apic-msrs\/0:self\.(?:wr\.140|rd\.irr2|taken)$/] },
  },
  {
    id: 'bochs-lvt-cmci',
    oracle: 'bochs',
    behaviour: 'LVT CMCI (offset 0x2F0, MSR 0x82F) exists although LVR (0x50014) says six LVT entries',
    evidence: 'x2apic-msrs rd.82f: Bochs 0x10000, KVM #GP(0); wrback.82f: Bochs ok, KVM #GP(0); xapic-mmio rd.2f0: Bochs 0x10000.',
    reference: 'v6.3 kvm_lapic_readable_reg_mask / kvm_lapic_reg_write: LVTCMCI only when kvm_lapic_lvt_supported(LVT_CMCI) (MCG_CAP.CMCI_P set by the VMM; ' +
      'our VMM does not, so nr_lvt_entries = 6 and LVR = 0x50014).',
    emulator: '#GP for MSR 0x82F in x2APIC mode; MMIO 0x2F0 is an unreadable register',
    scope: { ids: [/^x2apic-msrs\/0:(?:rd|wrback)\.82f$/] },
  },
  {
    id: 'bochs-xapic-id-readonly',
    oracle: 'bochs',
    behaviour: 'xAPIC ID register writes are ignored',
    evidence: 'xapic-mmio id.5 / id.ones: Bochs 0, KVM 0x05000000 / 0xff000000; apic-base-disable before.id: Bochs 0, KVM 0x07000000.',
    reference: 'SDM Vol. 3A 11.4.6: whether software can change the APIC ID is model specific. v6.3 kvm_lapic_reg_write APIC_ID: xAPIC mode -> ' +
      'kvm_apic_set_xapic_id(val >> 24) (and the APIC_ID_MODIFIED inhibit).',
    emulator: 'writable in xAPIC mode (bits 31:24)',
    scope: { ids: [/^xapic-mmio\/0:id\.(?:5|ones)$/, /^apic-base-disable\/0:before\.id$/] },
  },
  {
    id: 'bochs-esr-errors',
    oracle: 'bochs',
    behaviour: 'ESR records errors: after reads of reserved xAPIC registers ESR reads 0x80 (illegal register address)',
    evidence: 'xapic-mmio esr.ones: Bochs 0x80, KVM 0 (the guest first reads every offset 0x000-0x3F0, reserved ones included).',
    reference: 'SDM Vol. 3A 11.5.3: ESR bit 7 "Illegal Register Address" (Bochs follows it). v6.3 never sets an ESR bit: APIC_ESR writes are only validated (x2APIC: non-zero -> #GP) and not stored.',
    emulator: 'v6.3: ESR always reads 0',
    scope: { ids: [/^xapic-mmio\/0:esr\.ones$/] },
  },
  {
    id: 'bochs-sw-disabled-accepts',
    oracle: 'bochs',
    behaviour: 'a software-disabled APIC (SVR bit 8 = 0) accepts fixed interrupts into IRR and even delivers them',
    evidence: 'irq-xapic / irq-x2apic sd.sent: Bochs irr=40 and sd.irq1 taken while SVR = 0xFF (KVM: irr=-, nothing taken); ipi-xapic-2 sd.irr: Bochs irr=5a, ' +
      'taken after the re-enable (sd.irq1, cnt v5a=1), KVM never.',
    reference: 'SDM Vol. 3A 11.4.7.2: a software-disabled APIC still responds to INIT/NMI/SMI/SIPI; the treatment of fixed interrupts arriving meanwhile is not ' +
      'spelled out. v6.3 __apic_accept_irq: APIC_DM_FIXED / LOWEST are dropped when !apic_enabled(apic) (software- or hardware-disabled).',
    emulator: 'v6.3: fixed and lowest-priority interrupts to a software-disabled APIC are dropped',
    scope: { ids: [new RegExp(`^${IRQ_GUESTS}/0:sd\\.`), /^ipi-xapic-2\/1:(?:sd\..*|cnt\.v5a)$/] },
  },
  {
    id: 'bochs-spurious-after-nested-eoi',
    oracle: 'bochs',
    behaviour: 'a spurious interrupt (vector 0xFF, the SVR vector) is delivered after the EOI of a nested handler',
    evidence: 'irq-xapic / irq-x2apic spurious: Bochs 1, KVM 0 (it happens in the nest phase, after 0x70\'s handler EOIs while 0x50 is still in service ' +
      'and 0x51 is pending). research/oracles.md section 5 saw the same (tags 1A/3B).',
    reference: 'SDM Vol. 3A 11.9: a spurious interrupt is delivered when the interrupt the processor was signalled is masked before it is acknowledged; ' +
      'nothing is masked here. v6.3 never injects the spurious vector.',
    emulator: 'no spurious interrupts',
    scope: { ids: [new RegExp(`^${IRQ_GUESTS}/0:spurious$`)] },
  },
  {
    id: 'bochs-apic-partial-store',
    oracle: 'bochs',
    behaviour: 'a store to the xAPIC page that is not 32 bits wide or not 16-byte aligned stops Bochs ("APIC write with len=1 (should be 4)")',
    evidence: 'guest xapic-mmio-writes: Bochs status error at its first (byte) store; KVM ignores such stores (TPR stays 0 after byte, word and ' +
      'misaligned stores, becomes 0x60 after an aligned dword store).',
    reference: 'SDM Vol. 3A 11.4.1: APIC registers must be accessed with aligned 32-bit loads and stores (other accesses are undefined). ' +
      'v6.3 apic_mmio_write: `if (len != 4 || (offset & 0xf)) return 0;` (ignored).',
    emulator: 'ignores such stores (v6.3); the guest is compared with the KVM recording only',
    scope: { guests: ['xapic-mmio-writes'], errorPattern: /APIC write with len=1/ },
  },
  // ---- known, not exercised by this corpus -------------------------------------------------
  {
    id: 'kvm-no-halted',
    oracle: 'kvm',
    behaviour: 'a run whose remaining vCPUs all wait in HLT ends as a timeout, not `halted`',
    evidence: 'test/oracle/kvm/README.md; the corpus never halts (it waits in pause loops).',
    reference: 'contracts/run-json.md status `halted`.',
    emulator: 'status `halted`',
  },
  {
    id: 'cpuid-tsc-deadline',
    oracle: 'kvm',
    behaviour: 'both oracles advertise TSC-deadline in CPUID.1:ECX[24] (KVM: the host table, Bochs: its Ice Lake model), our CPU does not; the LVT timer mode bit 18 is CPUID-dependent',
    evidence: 'not compared: every LVT timer write in the corpus keeps bit 18 clear (0xFFFBFFFF instead of all-ones); KVM CPUID.1 ECX 0xf7f83203, Bochs 0x77faf3bf (research/oracles.md).',
    reference: 'v6.3 kvm_update_cpuid_runtime/kvm_vcpu_after_set_cpuid: lapic_timer.timer_mode_mask = 3 << 17 with TSC-deadline in guest CPUID, else 1 << 17.',
    emulator: 'timer mode mask 1 << 17 (no TSC-deadline in CPUID)',
  },
];

const BY_ID = new Map(APIC_DEVIATIONS.map((d) => [d.id, d]));

export function apicDeviation(id: string): ApicDeviation {
  const d = BY_ID.get(id);
  if (!d) throw new Error(`apic/deviations.ts: no deviation '${id}'`);
  return d;
}

/** The deviations of `oracle` whose scope covers the check id. */
export function deviationsCovering(oracle: OracleName, id: string): ApicDeviation[] {
  return APIC_DEVIATIONS.filter((d) => d.oracle === oracle && d.scope?.ids?.some((re) => re.test(id)));
}

// deviations.ts - the one table of known oracle deviations: behaviour where real KVM (kvm-pvm on
// this project's hosts) or Bochs 2.7 differs from what the SDM or the kernel source says, with
// the evidence and what our emulator does instead. Entries with a `scope` are excluded from the
// differential comparison (compare.ts) for exactly the corpus sequences/guests and fields they
// name; entries without one are not exercised by this corpus (they come from the executors'
// READMEs and the oracle study) and are listed so that every known deviation is in one place.

import type { CorpusSequence, DumpField, ExcField } from './corpus';

export type Oracle = 'kvm' | 'bochs';

export interface DeviationScope {
  /** corpus sequences carrying any of these tags (corpus.ts `tags`) */
  tags?: string[];
  /** corpus guests whose `kvmDeviation` is this entry's id: the oracle cannot run them at all */
  guestUnsupported?: boolean;
  /** with guestUnsupported: the error the oracle's run of such a guest must report */
  errorPattern?: RegExp;
  /** `#` line fields and the bits excluded from the comparison */
  fields?: Partial<Record<DumpField, bigint>>;
  /** the same, computed from the sequence (when the register varies per sequence) */
  fieldsFor?: (seq: CorpusSequence) => Partial<Record<DumpField, bigint>>;
  /** the oracle takes no exception where the SDM says one must happen (its `x` lines are absent) */
  missingException?: boolean;
  /** `x` line fields excluded */
  excFields?: ExcField[];
}

export interface Deviation {
  id: string;
  oracle: Oracle;
  /** the behaviour, one line */
  behaviour: string;
  /** what the oracle produced vs what the SDM / kernel source says, and how it was observed */
  evidence: string;
  /** what our emulator does instead */
  emulator: string;
  /** where the differential comparison excludes it; absent = not exercised by the corpus */
  scope?: DeviationScope;
}

const R32: Record<string, DumpField> = {
  eax: 'rax', ebx: 'rbx', ecx: 'rcx', edx: 'rdx', esi: 'rsi', edi: 'rdi', ebp: 'rbp',
  r8d: 'r8', r9d: 'r9', r10d: 'r10', r11d: 'r11', r12d: 'r12', r13d: 'r13', r14d: 'r14', r15d: 'r15',
};

/** Bits 63:32 of the 32-bit register a `cmpxchg r32, r32` writes back. */
function cmpxchgDestUpper(seq: CorpusSequence): Partial<Record<DumpField, bigint>> {
  const m = /cmpxchg (\w+),/.exec(seq.body.join('\n'));
  const f = m ? R32[m[1]] : undefined;
  if (!f) throw new Error(`deviation bochs-cmpxchg-r32-writeback: no 32-bit register destination in ${seq.body.join('; ')}`);
  return { [f]: 0xffffffff00000000n };
}

export const DEVIATIONS: readonly Deviation[] = [
  // ---- found by the differential corpus -------------------------------------------------------
  {
    id: 'bochs-cmpxchg-r32-writeback',
    oracle: 'bochs',
    behaviour: 'CMPXCHG r/m32 with a register destination and a failed comparison leaves bits 63:32 of the destination',
    evidence: 'corpus sequence "cmpxchg 32-bit unequal reg" (`cmpxchg r9d, ebp`, r9 = 0xd8edd9f6fffffffc): real KVM r9 = 0x00000000fffffffc, ' +
      'Bochs r9 = 0xd8edd9f6fffffffc. SDM Vol. 2A CMPXCHG: "The destination operand is written back if the comparison fails", and a ' +
      '32-bit register write zero-extends to 64 bits (Vol. 1 3.4.1.1); KVM\'s emulate.c em_cmpxchg also writes dst back on failure. ' +
      'Bochs only loads EAX on failure.',
    emulator: 'writes the destination back on failure: a 32-bit register destination has bits 63:32 cleared (as KVM and hardware)',
    scope: { tags: ['cmpxchg:32:reg-unequal'], fieldsFor: cmpxchgDestUpper },
  },
  {
    id: 'kvm-emulator-int',
    oracle: 'kvm',
    behaviour: 'INT3, INT n and INT1 (icebp) at CPL0 stop the VM with KVM_EXIT_INTERNAL_ERROR (emulation failure) instead of delivering the interrupt',
    evidence: 'every exceptions-kvm-01..09 guest: status error, "KVM_EXIT_INTERNAL_ERROR suberror 1" (KVM_INTERNAL_ERROR_EMULATION) with the ' +
      'instruction bytes (CC, CD 03, CD 80, CD 00, F1, CD 81, CD F0). kvm-pvm runs CPL0 code through KVM\'s x86 emulator, whose ' +
      'emulate_int() handles only real mode ("Protected mode interrupts unimplemented yet", arch/x86/kvm/emulate.c) and returns ' +
      'X86EMUL_UNHANDLEABLE. Hardware delivers vector n through the IDT (SDM Vol. 2A INT n; #NP/#GP(vector*8+2) for a not-present gate or a vector past the limit). ' +
      'Bochs delivers them as the SDM says.',
    emulator: 'delivers the interrupt through the IDT (trap-like: saved RIP after the instruction; #NP/#GP with the IDT error code for a bad gate); compared with Bochs and with the SDM expectations of the corpus',
    scope: { guestUnsupported: true, errorPattern: /KVM_EXIT_INTERNAL_ERROR suberror 1\b/ },
  },
  {
    id: 'kvm-emulator-ud',
    oracle: 'kvm',
    behaviour: 'AAA (0x37) and UD1 (0F B9) in 64-bit mode stop the VM with KVM_EXIT_INTERNAL_ERROR instead of raising #UD',
    evidence: 'guests exceptions-kvm-10 (db 0x37) and exceptions-kvm-11 (0F B9 C0): status error, KVM_EXIT_INTERNAL_ERROR suberror 1. ' +
      'The other invalid encodings of the corpus (UD2, 0x06 push es, 0xCE into, LOCK with a register destination) do raise #UD(6) on KVM. ' +
      'SDM Vol. 2A AAA: "#UD If in 64-bit mode"; UD1: "Raises an invalid opcode exception in all operating modes". Bochs raises #UD.',
    emulator: 'raises #UD with RIP at the instruction; compared with Bochs and the SDM expectations',
    scope: { guestUnsupported: true, errorPattern: /KVM_EXIT_INTERNAL_ERROR suberror 1\b/ },
  },
  {
    id: 'kvm-cr4-high-bits',
    oracle: 'kvm',
    behaviour: 'MOV to CR4 with a reserved bit in 63:32 set takes no #GP; bits 63:32 are dropped',
    evidence: 'guest exceptions-kvm-12 (`mov cr4, rax` with rax = 0x8000000000000020): no exception, CR4 read back 0x20. ' +
      'Upstream arch/x86/kvm/emulate.c: emulator_set_cr() passes mk_cr_64(kvm_read_cr4(vcpu), val) with a u32 new value, so the ' +
      'emulated write keeps only bits 31:0. SDM Vol. 2B MOV (control registers): #GP(0) "If an attempt is made to write a 1 to any reserved bit in CR4"; ' +
      'Bochs raises #GP(0). (A reserved bit below 32, bit 15, gives #GP(0) on both.)',
    emulator: 'raises #GP(0) and leaves CR4 unchanged (as hardware, and as KVM\'s SVM CR-write intercept path via kvm_set_cr4)',
    scope: { tags: ['exc:gp-cr4-high'], missingException: true },
  },
  // ---- from the executors' READMEs and the oracle study (not exercised by this corpus) -------
  {
    id: 'bochs-lvt0-masked',
    oracle: 'bochs',
    behaviour: 'BSP LVT0 reads 0x10700 (ExtINT, masked) at start instead of 0x700',
    evidence: 'test/oracle/bochs/README.md "Start-state deviations": Bochs forces the mask bit on LVT writes while the APIC is software-disabled (SVR = 0xFF); kvm_lapic_reset leaves 0x700 (KVM_X86_QUIRK_LINT0_REENABLED).',
    emulator: 'LVT0 = 0x700 on vCPU 0 (contracts/guest.md)',
  },
  {
    id: 'bochs-x2apic-ldr',
    oracle: 'bochs',
    behaviour: 'x2APIC LDR (MSR 0x80D) reads 0 instead of the derived logical ID (cluster << 16 | 1 << (id & 15))',
    evidence: 'research/oracles.md section 5, tag 24: kvm 1, bochs 0 for APIC ID 0; KVM kvm_apic_set_x2apic_id() sets LDR from the ID (SDM Vol. 3A 11.12.10.2).',
    emulator: 'derives LDR from the x2APIC ID as KVM does',
  },
  {
    id: 'bochs-apicbase-after-disable',
    oracle: 'bochs',
    behaviour: 'after a global APIC disable (APIC_BASE.EN = 0) every later APIC_BASE write is ignored, and the EXTD-only write from disabled takes no #GP',
    evidence: 'research/oracles.md section 5, tags 47-4D, 4F-61: bochs keeps 0xfee00100 and reads 0xffffffff from MMIO; kvm re-enables (0xfee00900) and #GPs the invalid disabled->EXTD transition (kvm_apic_set_base / kvm_set_apic_base).',
    emulator: 'follows KVM (kvm_set_apic_base transition rules)',
  },
  {
    id: 'bochs-x2apic-eoi-nonzero',
    oracle: 'bochs',
    behaviour: 'a non-zero write to the x2APIC EOI MSR (0x80B) raises #GP',
    evidence: 'research/oracles.md section 7: Bochs rejects it with #GP, KVM accepts it (kvm_x2apic_msr_write / kvm_lapic_reg_write ignore the value for EOI).',
    emulator: 'accepts it as KVM does',
  },
  {
    id: 'bochs-sysenter-msrs',
    oracle: 'bochs',
    behaviour: 'IA32_SYSENTER_CS/EIP read 0x08/0xFE000 instead of 0 (the harness\'s done mechanism)',
    evidence: 'test/oracle/bochs/README.md "Start-state deviations"; done sites are patched to SYSENTER into the ROM.',
    emulator: '0 / 0 (contract start state)',
  },
  {
    id: 'bochs-paging-accessed-bits',
    oracle: 'bochs',
    behaviour: 'PML4[0], PDPT[0] and PD[0][0] have the accessed bit set when the guest starts',
    evidence: 'test/oracle/bochs/README.md: the ROM runs through the new page tables before the guest; the guest\'s first fetch sets the same bits when loaded below 2 MiB. The corpus only reads the A/D bits of PD[0][8] (0x1000000), which both oracles agree on.',
    emulator: 'all clear at start; set by the guest\'s own accesses',
  },
  {
    id: 'bochs-port-e9',
    oracle: 'bochs',
    behaviour: 'IN from port 0xE9 returns 0xE9; a 16/32-bit OUT to 0xE9 prints only the low byte',
    evidence: 'test/oracle/bochs/README.md "Machine and run differences" (Bochs port_e9_hack). The corpus writes the console with byte-wide OUTS only.',
    emulator: 'IN returns all-ones (contract); every byte of a wide write is console output (as the KVM harness)',
  },
  {
    id: 'bochs-interrupt-spurious',
    oracle: 'bochs',
    behaviour: 'spurious vector 0xFF deliveries during nested same-class self-IPIs',
    evidence: 'research/oracles.md section 5, tags 1A/3B (seen once per nested attempt in one study, not in a later one).',
    emulator: 'no spurious vectors without a cause (architectural acceptance, SDM Vol. 3A 11.8.3)',
  },
  {
    id: 'kvm-out-rip',
    oracle: 'kvm',
    behaviour: 'every OUT exit reports RIP after the `out` (upstream KVM\'s fast PIO path reports it at the `out`)',
    evidence: 'test/oracle/kvm/README.md "RIP convention"; the harness corrects it (decodes the `out` before RIP), so recorded done-site RIPs point at the `out` as the contract says.',
    emulator: 'RIP at the `out 0xf4` for a done vCPU (contracts/guest.md)',
  },
  {
    id: 'kvm-cpl3',
    oracle: 'kvm',
    behaviour: 'CPL3 guest code is not faithful: user code read CS = 0x33 and RFLAGS 0x202 (host user values)',
    evidence: 'test/oracle/kvm/README.md "Deviations from the contract": after iretq to selector 0x1B with RFLAGS 0x3002. The corpus runs CPL0 code only.',
    emulator: 'architectural CPL3 (the selector and RFLAGS the guest loaded)',
  },
  {
    id: 'kvm-interrupt-acceptance',
    oracle: 'kvm',
    behaviour: 'interrupt acceptance: ISR and PPR not set while a handler runs, and a same-class vector nests before EOI',
    evidence: 'research/oracles.md section 1 "Interrupt acceptance deviates on kvm-pvm" (ISR=0, PPR=0 inside the handler; 0x41 delivered at once inside 0x40\'s handler); QEMU TCG and Bochs show ISR set, PPR=0x40 and 0x41 held until EOI (SDM Vol. 3A 11.8.3-11.8.5).',
    emulator: 'architectural acceptance as kvm_apic_*/apic_set_isr model it (ISR set, PPR raised, same-class vectors held until EOI); compare with Bochs',
  },
  {
    id: 'kvm-irqchip-ports',
    oracle: 'kvm',
    behaviour: 'the in-kernel irqchip serves the 8259 ports (0x20/0x21/0xA0/0xA1/0x4D0/0x4D1) and the IOAPIC MMIO',
    evidence: 'test/oracle/kvm/README.md: `in al, 0x21`, 0xA1, 0x4D0 read 0 (contract: unhandled, all-ones); IOREGSEL reads 0.',
    emulator: 'unhandled ports read all-ones and are logged (contracts/guest.md)',
  },
  {
    id: 'kvm-no-halted',
    oracle: 'kvm',
    behaviour: 'a run whose remaining vCPUs all wait in `hlt` ends as `timeout` (states `running`), not `halted`',
    evidence: 'test/oracle/kvm/README.md: HLT blocks inside KVM with the in-kernel LAPIC and is invisible to userspace.',
    emulator: 'status `halted` with those vCPUs `halted` (run-json.md)',
  },
];

const BY_ID = new Map(DEVIATIONS.map((d) => [d.id, d]));

/** The deviation with this id (throws for an unknown id). */
export function deviation(id: string): Deviation {
  const d = BY_ID.get(id);
  if (!d) throw new Error(`deviations.ts: no deviation '${id}'`);
  return d;
}

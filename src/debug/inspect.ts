// What the debugger shows of the machine: the scopes of a frame (Registers, Local APIC, AVIC,
// vCPU (KVM), VM (KVM)) as trees of named values in hex, and the `avic/state` body of
// contracts/dap.md. Everything here only reads: no page walk with side effects, no MMIO, no PPR
// update, no event.

import type { AvicInhibitRow, AvicState } from './avic-state';
import { kvm_apic_mode, kvm_apicv_activated, kvm_vcpu_apicv_activated } from '../machine/kvm/apicv';
import {
  APIC_DFR, APIC_ESR, APIC_ICR, APIC_ICR2, APIC_ID, APIC_IRR, APIC_ISR, APIC_LDR, APIC_LVR, APIC_LVT0, APIC_LVT1, APIC_LVTERR,
  APIC_LVTPC, APIC_LVTT, APIC_LVTTHMR, APIC_SPIV, APIC_TASKPRI, APIC_TDCR, APIC_TMICT, APIC_TMR,
} from '../machine/kvm/apicdef';
import { APICV_INHIBIT_NAMES, inhibitNames, type KvmVcpu, VCPU_MODE_NAMES } from '../machine/kvm/kvm_host';
import { apic_has_interrupt_for_ppr, kvm_lapic_reg_read } from '../machine/kvm/lapic';
import { apic_find_highest_isr, type KvmLapic } from '../machine/kvm/lapic_h';
import { avicDecodesMmio, avicEnabledInVmcb, x2avicMode } from '../machine/kvm/svm/avic';
import type { Machine } from '../machine/machine';
import { hex64, REG_ORDER } from '../machine/result';

/** A value in a scope: a leaf, or a node with children computed when expanded. */
export interface VarNode {
  readonly name: string;
  readonly value: string;
  readonly type?: string;
  readonly children?: () => VarNode[];
  /** settable: returns an error message, or undefined when done */
  readonly set?: (text: string) => string | undefined;
  /** an address the client can open in a memory view */
  readonly memoryReference?: string;
}

const REG_INDEX: Readonly<Record<string, number>> = {
  rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7, r8: 8, r9: 9, r10: 10, r11: 11, r12: 12, r13: 13, r14: 14, r15: 15,
};

export function hex32(v: number): string {
  return '0x' + (v >>> 0).toString(16).padStart(8, '0');
}

function leaf(name: string, value: string | number | boolean | bigint | null, type?: string): VarNode {
  const text = typeof value === 'number' ? hex32(value) : typeof value === 'bigint' ? hex64(value) : value === null ? 'null' : String(value);
  return { name, value: text, type };
}

function node(name: string, value: string, children: () => VarNode[]): VarNode {
  return { name, value, children };
}

/** Parses a number a user typed (decimal, 0x hex, negative), as a 64-bit value. */
export function parseUserNumber(text: string): bigint | undefined {
  const t = text.trim().replace(/_/g, '');
  if (!/^-?(0x[0-9a-f]+|\d+)$/i.test(t)) return undefined;
  const v = t.startsWith('-') ? -BigInt(t.slice(1)) : BigInt(t);
  return BigInt.asUintN(64, v);
}

// ---- Registers ---------------------------------------------------------------------------------------

const FLAG_BITS: readonly [string, number][] = [
  ['CF', 0], ['PF', 2], ['AF', 4], ['ZF', 6], ['SF', 7], ['TF', 8], ['IF', 9], ['DF', 10], ['OF', 11], ['NT', 14], ['RF', 16], ['AC', 18], ['ID', 21],
];

export function registers(m: Machine, vcpu: number): VarNode[] {
  const cpu = m.cpus[vcpu];
  const out: VarNode[] = [];
  for (const name of REG_ORDER) {
    const i = REG_INDEX[name];
    out.push({
      name, value: hex64(cpu.reg64(i)), type: 'u64', memoryReference: hex64(cpu.reg64(i)),
      set: (text) => {
        const v = parseUserNumber(text);
        if (v === undefined) return `'${text}' is not a number`;
        cpu.setReg64(i, v);
        return undefined;
      },
    });
  }
  out.push({
    name: 'rip', value: hex64(cpu.rip64()), type: 'u64', memoryReference: hex64(cpu.rip64()),
    set: (text) => {
      const v = parseUserNumber(text);
      if (v === undefined) return `'${text}' is not a number`;
      cpu.rip = Number(BigInt.asIntN(64, v));
      cpu.forgetChain();
      return undefined;
    },
  });
  const rflags = cpu.getRflags();
  out.push({
    name: 'rflags', value: hex64(BigInt(rflags)), type: 'u64',
    children: () => FLAG_BITS.map(([f, b]) => leaf(f, (rflags >>> b) & 1 ? '1' : '0')).concat([leaf('IOPL', String((rflags >>> 12) & 3))]),
    set: (text) => {
      const v = parseUserNumber(text);
      if (v === undefined) return `'${text}' is not a number`;
      cpu.setRflags(Number(v & 0xffffffffn));
      return undefined;
    },
  });
  for (const [name, v] of [['cs', cpu.cs], ['ss', cpu.ss], ['ds', cpu.ds], ['es', cpu.es], ['fs', cpu.fs], ['gs', cpu.gs]] as const) {
    out.push(leaf(name, '0x' + v.toString(16).padStart(4, '0'), 'selector'));
  }
  out.push(leaf('fs_base', BigInt.asUintN(64, BigInt(cpu.fsBase))));
  out.push(leaf('gs_base', BigInt.asUintN(64, BigInt(cpu.gsBase))));
  out.push(leaf('cr0', BigInt(cpu.cr0 >>> 0)));
  out.push(leaf('cr2', BigInt.asUintN(64, BigInt(cpu.cr2))));
  out.push(leaf('cr3', BigInt(cpu.cr3)));
  out.push(leaf('cr4', BigInt(cpu.cr4 >>> 0)));
  out.push(leaf('cr8', BigInt(m.getCr8(cpu))));
  out.push(leaf('efer', BigInt(cpu.efer >>> 0)));
  out.push(leaf('cpl', String(cpu.cpl)));
  return out;
}

// ---- Local APIC --------------------------------------------------------------------------------------

/** PPR as the hardware would compute it now, without storing it */
function currentPpr(apic: KvmLapic): number {
  const tpr = apic.getReg(APIC_TASKPRI);
  const isr = apic_find_highest_isr(apic);
  const isrv = isr === -1 ? 0 : isr;
  return (tpr & 0xf0) >= (isrv & 0xf0) ? tpr & 0xff : isrv & 0xf0;
}

function vectorSet(apic: KvmLapic, base: number): number[] {
  const out: number[] = [];
  for (let w = 0; w < 8; w++) {
    const v = apic.getReg(base + w * 16);
    for (let b = 0; b < 32; b++) if ((v >>> b) & 1) out.push(w * 32 + b);
  }
  return out;
}

function vectorRegister(name: string, apic: KvmLapic, base: number): VarNode {
  const set = vectorSet(apic, base);
  const text = set.length === 0 ? '-' : set.map((v) => '0x' + v.toString(16)).join(' ');
  return node(name, text, () => Array.from({ length: 8 }, (_, w) => leaf(`${name}${w}`, apic.getReg(base + w * 16))));
}

const LVT_NAMES: readonly [string, number][] = [
  ['LVTT', APIC_LVTT], ['LVTTHMR', APIC_LVTTHMR], ['LVTPC', APIC_LVTPC], ['LVT0', APIC_LVT0], ['LVT1', APIC_LVT1], ['LVTERR', APIC_LVTERR],
];

/** A debugger write of an APIC register (through KVM_SET_LAPIC): an error message or undefined. */
export type ApicRegisterWriter = (vcpu: number, offset: number, value: number) => string | undefined;

export function localApic(v: KvmVcpu, write?: ApicRegisterWriter): VarNode[] {
  const apic = v.apic;
  const mode = kvm_apic_mode(v.apic_base);
  const reg = (name: string, off: number): VarNode => ({
    ...leaf(name, apic.getReg(off)),
    set: write && (off !== APIC_LVR) ? (text) => {
      const value = parseUserNumber(text);
      if (value === undefined || value > 0xffffffffn) return `'${text}' is not a 32-bit number`;
      return write(v.vcpu_id, off, Number(value));
    } : undefined,
  });
  const out: VarNode[] = [
    leaf('mode', mode),
    leaf('IA32_APIC_BASE', BigInt(v.apic_base >>> 0)),
    leaf('base_address', BigInt(apic.base_address)),
    mode === 'x2apic' ? leaf('ID (x2APIC)', v.vcpu_id) : reg('ID', APIC_ID),
    reg('LVR', APIC_LVR),
    reg('TPR', APIC_TASKPRI),
    leaf('PPR', currentPpr(apic)),
    reg('LDR', APIC_LDR),
  ];
  if (mode !== 'x2apic') out.push(reg('DFR', APIC_DFR));
  out.push(reg('SPIV', APIC_SPIV));
  out.push(vectorRegister('ISR', apic, APIC_ISR), vectorRegister('TMR', apic, APIC_TMR), vectorRegister('IRR', apic, APIC_IRR));
  const pending = apic_has_interrupt_for_ppr(apic, currentPpr(apic));
  out.push(leaf('deliverable', pending === -1 ? 'none' : `0x${pending.toString(16)}`));
  out.push(reg('ESR', APIC_ESR));
  out.push(leaf('ICR', (BigInt(apic.getReg(APIC_ICR2)) << 32n) | BigInt(apic.getReg(APIC_ICR))));
  for (const [name, off] of LVT_NAMES) out.push(reg(name, off));
  out.push(reg('TMICT', APIC_TMICT));
  // TMCCT through the register read (pure: it computes from virtual time)
  out.push(leaf('TMCCT', kvm_lapic_reg_read(v, 0x390, 4) ?? 0));
  out.push(reg('TDCR', APIC_TDCR));
  const t = apic.lapic_timer;
  out.push(node('timer', t.target >= 0 ? `fires at step ${t.target}` : 'not armed', () => [
    leaf('target step', t.target >= 0 ? String(t.target) : 'none'),
    leaf('period (ns)', String(t.period)),
    leaf('TSC deadline', t.tscdeadline),
    leaf('pending', String(t.pending)),
  ]));
  return out;
}

// ---- AVIC ----------------------------------------------------------------------------------------

export function avic(v: KvmVcpu): VarNode[] {
  const e = v.svm.avic_physical_id_entry;
  return [
    leaf('AVIC (module parameter)', v.kvm.config.avic),
    leaf('x2AVIC (host)', v.kvm.config.x2avic),
    leaf('AVIC_ENABLE in the VMCB', avicEnabledInVmcb(v)),
    leaf('X2APIC_MODE in the VMCB', x2avicMode(v)),
    leaf('decodes the xAPIC BAR', avicDecodesMmio(v)),
    node('physical ID table entry', `valid ${e.valid ? 1 : 0}, IsRunning ${e.is_running ? 1 : 0}, host ${e.host_physical_id}`, () => [
      leaf('index', String(v.vcpu_id)),
      leaf('Valid', e.valid),
      leaf('IsRunning', e.is_running),
      leaf('host physical APIC ID', String(e.host_physical_id)),
      leaf('backing page', 'apic->regs (the Local APIC scope)'),
    ]),
    leaf('V_IRQ (interrupt window)', v.svm.vintr),
    leaf('GIF', v.svm.gif),
    leaf('EVENTINJ', v.svm.event_inj ? `${v.svm.event_inj.type} 0x${v.svm.event_inj.vector.toString(16)}` : 'none'),
  ];
}

// ---- vCPU (KVM) and VM (KVM) ---------------------------------------------------------------------------

/** the SRCU depth the kernel expects of this vCPU's task where it is now (contracts/kvm-model.md, "Tasks and SRCU") */
export function expectedSrcuDepth(v: KvmVcpu): number {
  const t = v.task;
  const top = t.stack[t.stack.length - 1];
  // inside the helpers themselves the depth is changing: whatever it is, is right
  if (top === 'kvm_vcpu_srcu_read_lock' || top === 'kvm_vcpu_srcu_read_unlock') return v.srcu_depth;
  // held inside vcpu_run, except in the windows where a kernel function drops it on purpose
  // (guest mode, a halt, a memslot change): there the function assumed it held on entry
  if (t.inSrcuDropWindow) return 0;
  return v.inKvmRun && t.stack.includes('vcpu_run') ? 1 : 0;
}

export function vcpuKvm(m: Machine, v: KvmVcpu): VarNode[] {
  const n = v.svm.nested;
  const stack = v.task.hostStack();
  return [
    leaf('state', m.vcpuState(v.vcpu_id)),
    leaf('mode', VCPU_MODE_NAMES[v.mode]),
    leaf('mp_state', v.mp_state),
    leaf('in KVM_RUN', v.inKvmRun),
    node('requests', v.pendingRequestNames().join(' ') || '-', () => v.pendingRequestNames().map((r) => leaf(r, 'pending'))),
    leaf('srcu_depth', String(v.srcu_depth)),
    leaf('kvm->srcu readers', String(v.kvm.srcu.readers(v.task))),
    leaf('expected srcu_depth', String(expectedSrcuDepth(v))),
    leaf('apic->apicv_active', v.apic.apicv_active),
    leaf('kvm_vcpu_apicv_activated', kvm_vcpu_apicv_activated(v)),
    leaf('inhibits (per vCPU)', v.kvm.x86_ops.vcpu_get_apicv_inhibit_reasons(v) !== 0 ? 'NESTED' : '-'),
    node('host stack', stack[0] ?? '-', () => stack.map((f, i) => leaf(`#${i}`, f))),
    leaf('signal pending', v.signalPending),
    node('nested', n.guest_mode ? 'in L2' : 'L1', () => [
      leaf('is_guest_mode', n.guest_mode),
      leaf('VM_HSAVE_PA', n.hsave_msr),
      leaf('VMCB12', n.guest_mode ? BigInt(n.vmcb12_gpa) : 'none'),
      leaf('V_INTR_MASKING', n.v_intr_masking),
    ]),
  ];
}

/** every reason of the modelled enum (12 at v6.3, 13 under v3), with the last call that changed it */
export function inhibitTable(m: Machine): AvicInhibitRow[] {
  const kvm = m.kvm;
  const count = kvm.design.x2apicInhibitListed ? 13 : 12;
  return Array.from({ length: count }, (_, bit) => {
    const e = m.lastInhibitChange.get(bit);
    return {
      reason: APICV_INHIBIT_NAMES[bit], bit, set: (kvm.arch.apicv_inhibit_reasons & (1 << bit)) !== 0,
      lastChange: e ? { seq: e.seq, vcpu: e.vcpu, hostStack: e.hostStack ?? [] } : null,
    };
  });
}

export function vmKvm(m: Machine): VarNode[] {
  const kvm = m.kvm;
  const word = kvm.arch.apicv_inhibit_reasons;
  const lock = kvm.arch.apicv_update_lock;
  return [
    leaf('kernel', 'v6.3'),
    leaf('design', kvm.design.name),
    leaf('kvm_apicv_activated', kvm_apicv_activated(kvm)),
    node('apicv_inhibit_reasons', `${hex32(word)} ${inhibitNames(word).join('|')}`.trim(), () => inhibitTable(m).map((r) =>
      leaf(`${r.bit} ${r.reason}`, `${r.set ? 'set' : 'clear'}${r.lastChange ? ` (event ${r.lastChange.seq}, ${r.lastChange.vcpu === null ? 'VMM' : `vCPU ${r.lastChange.vcpu}`}: ${r.lastChange.hostStack[0] ?? ''})` : ''}`))),
    leaf('apic_access_memslot_enabled', kvm.arch.apic_access_memslot_enabled),
    leaf('apic_access_memslot_inhibited', kvm.arch.apic_access_memslot_inhibited),
    node('memslots', String(kvm.memslots.size), () => [...kvm.memslots.values()].sort((a, b) => a.id - b.id).map((s) =>
      leaf(`slot ${s.id}`, `gpa ${hex64(BigInt(s.gpa))} size 0x${s.size.toString(16)}${s.private ? ' (private)' : ''}`))),
    leaf('slots_lock', kvm.slots_lock.owner?.name ?? 'free'),
    leaf('apicv_update_lock', lock.writer ? `write: ${lock.writer.name}` : lock.readers.length ? `read: ${lock.readers.map((t) => t.name).join(', ')}` : 'free'),
    leaf('steps', String(m.steps)),
  ];
}

/** The body of `avic/state` (contracts/dap.md). */
export function avicState(m: Machine, seq: number): AvicState {
  const kvm = m.kvm;
  return {
    seq,
    vm: {
      kernel: 'v6.3', design: kvm.design.name, avic: kvm.config.avic, x2avic: kvm.config.x2avic, nested: kvm.config.nested,
      apicvActivated: kvm_apicv_activated(kvm),
      apicvInhibits: inhibitNames(kvm.arch.apicv_inhibit_reasons),
      inhibitTable: inhibitTable(m),
      apicAccessMemslot: { enabled: kvm.arch.apic_access_memslot_enabled, inhibited: kvm.arch.apic_access_memslot_inhibited },
      memslots: [...kvm.memslots.values()].sort((a, b) => a.id - b.id).map((s) => ({ id: s.id, gpa: hex64(BigInt(s.gpa)), size: s.size, private: s.private })),
    },
    vcpus: kvm.vcpus.map((v) => ({
      id: v.vcpu_id, threadId: v.vcpu_id + 1, state: m.vcpuState(v.vcpu_id), mode: VCPU_MODE_NAMES[v.mode],
      apic: { mode: kvm_apic_mode(v.apic_base), apicvActive: v.apic.apicv_active },
      inhibits: v.kvm.x86_ops.vcpu_get_apicv_inhibit_reasons(v) !== 0 ? ['NESTED'] : [],
      requests: v.pendingRequestNames(), srcuDepth: v.srcu_depth, srcuReaders: kvm.srcu.readers(v.task),
      expectedSrcuDepth: expectedSrcuDepth(v), hostStack: v.task.hostStack(),
    })),
  };
}

/** The thread name of contracts/dap.md: `vCPU 0 [x2APIC, AVIC inhibited, SRCU 1]`. */
export function threadName(m: Machine, v: KvmVcpu): string {
  const mode = kvm_apic_mode(v.apic_base);
  const parts = [mode === 'x2apic' ? 'x2APIC' : mode === 'xapic' ? 'xAPIC' : 'APIC disabled'];
  if (m.kvm.config.avic) parts.push(v.apic.apicv_active ? 'AVIC' : 'AVIC inhibited');
  parts.push(`SRCU ${v.srcu_depth}`);
  const state = m.vcpuState(v.vcpu_id);
  if (state !== 'running') parts.push(state);
  return `vCPU ${v.vcpu_id} [${parts.join(', ')}]`;
}

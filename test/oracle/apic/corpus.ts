// corpus.ts - the guest-visible LOCAL APIC differential corpus: deterministic guests (generated
// here, assembled with our assembler, cached per process) that exercise IA32_APIC_BASE, the
// x2APIC MSRs 0x800-0x8FF, the xAPIC MMIO page and interrupt acceptance/IPIs, and print every
// result as a text line. Each vCPU writes its lines into its own buffer; at the end the vCPUs
// print their buffers in index order (runtime.ts), so the console is the same under any
// interleaving of the vCPUs.
//
// Console format (all numbers lower-case hex without leading zeros):
//   G <guest>                        first line
//   <vcpu>:<check> <value>           one check; value = hex, "ok" (a write that was accepted),
//                                    "#GP(0)" (the access faulted: vector name, error code), or
//                                    "k=v k=v ..." (a snapshot; compared field by field)
//   <vcpu>:<phase>.irq<n> v=XX isr=.. irr=.. ppr=.. tpr=..   the n-th interrupt taken by that
//                                    vCPU in the current phase (numbering restarts per phase, so
//                                    a difference in one phase does not renumber the others),
//                                    with ISR/IRR (set vectors, "-" = none), PPR and TPR read
//                                    inside the handler before its EOI
//   <vcpu>:cnt v51=1 .. nmi=1        interrupts taken per vector, NMIs (IPI guests)
//   <vcpu>:<phase>.wait<k> timeout   an interrupt the guest waited for never came
//   <vcpu>:fatal #XX(ec)@rip         an exception no check expected; the guest then finishes
//   E                                last line
// Check names are unique per vCPU; console.ts `checkId(guest, key)` = "<guest>/<vcpu>:<check>[.<field>]".

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assemble } from '../../../src/asm/assembler';
import { formatDiagnostic } from '../../../src/asm/diagnostics';
import { PC, PERCPU_BASE, PERCPU_STRIDE, runtimeCode, runtimeData, SPIN } from './runtime';

/** Bump when the generator changes in a way that should be visible in the recordings. */
export const APIC_CORPUS_VERSION = 1;

export const INCLUDE_DIR = path.resolve(__dirname, '..', '..', '..', 'include');

/** Which oracle's value is the default expectation for a guest's checks (expected.ts). */
export type DefaultSource = 'kvm' | 'bochs';

export interface ApicCheckInfo {
  /** "<vcpu>:<name>" */
  key: string;
  /** what the check does, one line */
  what: string;
}

export interface ApicGuest {
  name: string;
  /** one line */
  title: string;
  vcpus: number;
  /** register/MSR rules: real KVM (recorded); interrupt acceptance: Bochs */
  defaultSource: DefaultSource;
  /** the .vasm text */
  source: string;
  image: Uint8Array;
  /** address of the `out 0xf4, al` (every vCPU ends there) */
  doneSites: number[];
  /** the checks the test code prints (interrupt lines and per-vCPU summaries come on top) */
  checks: ApicCheckInfo[];
  /** Bochs cannot run this guest: the deviations.ts entry that says why */
  bochsDeviation?: string;
  imageSha256: string;
}

// ---------------------------------------------------------------------------------------------
// builder

/** Hex of a value; a negative number is taken as the 32-bit pattern JavaScript's bit operators give. */
const hx = (v: number | bigint): string => `0x${(typeof v === 'number' && v < 0 ? BigInt(v >>> 0) : BigInt(v)).toString(16)}`;
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

const APIC = 0xfee00000;
const MSR_APIC_BASE = 0x1b;

class Builder {
  private readonly code: string[] = [];
  private readonly subs: string[][] = [];
  private readonly data: string[] = [];
  /**
   * Barrier counters, qword-aligned: a LOCK INC that crosses a page boundary is emulated by KVM
   * as a plain write (emulator_cmpxchg_emulated falls back to "emulating exchange as write"),
   * which loses increments on kvm-pvm, where all CPL0 code is emulated.
   */
  private readonly counters: string[] = [];
  private readonly strings = new Map<string, string>();
  private label = 0;
  private waits = 0;
  private cpus: number[];
  /** emit target: main code or a subroutine being built */
  private out: string[];
  readonly checks: ApicCheckInfo[] = [];
  private readonly keys = new Set<string>();

  constructor(readonly name: string, readonly ncpu: number) {
    this.cpus = range(ncpu);
    this.out = this.code;
  }

  e(...lines: string[]): void {
    for (const l of lines) this.out.push(l.endsWith(':') ? l : `    ${l}`);
  }

  lbl(prefix = 'l'): string {
    return `${prefix}_${++this.label}`;
  }

  str(text: string): string {
    let l = this.strings.get(text);
    if (!l) {
      l = `str_${this.strings.size}`;
      this.strings.set(text, l);
      this.data.push(`${l}: db "${text}", 0`);
    }
    return l;
  }

  private reg(name: string, what: string): void {
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new Error(`${this.name}: bad check name '${name}'`);
    for (const c of this.cpus) {
      const key = `${c}:${name}`;
      if (this.keys.has(key)) throw new Error(`${this.name}: duplicate check ${key}`);
      this.keys.add(key);
      this.checks.push({ key, what });
    }
  }

  /** Code run only by the listed vCPUs. */
  on(cpus: number | number[], body: () => void): void {
    const set = Array.isArray(cpus) ? cpus : [cpus];
    const go = this.lbl('on');
    const skip = this.lbl('skip');
    for (const c of set) this.e(`cmp qword [r15 + PC_IDX], ${c}`, `je ${go}`);
    this.e(`jmp ${skip}`, `${go}:`);
    const prev = this.cpus;
    this.cpus = set.filter((c) => prev.includes(c));
    body();
    this.cpus = prev;
    this.e(`${skip}:`);
  }

  /** A subroutine (hook) emitted after the main code; returns its label. */
  sub(body: () => void): string {
    const l = this.lbl('hook');
    const lines: string[] = [`${l}:`];
    const prev = this.out;
    this.out = lines;
    body();
    this.e('ret');
    this.out = prev;
    this.subs.push(lines);
    return l;
  }

  // ---- checks ------------------------------------------------------------------------------
  rdmsr(name: string, msr: number, what = `RDMSR ${hx(msr)}`): void {
    this.reg(name, what);
    this.e(`mov ecx, ${hx(msr)}`, `lea rsi, [rel ${this.str(name)}]`, 'call chk_rdmsr');
  }

  wrmsr(name: string, msr: number, value: bigint | number, what = `WRMSR ${hx(msr)} = ${hx(value)}`): void {
    this.reg(name, what);
    this.e(`mov ecx, ${hx(msr)}`, `mov rax, ${hx(value)}`, `lea rsi, [rel ${this.str(name)}]`, 'call chk_wrmsr');
  }

  /** WRMSR of the value RDMSR reads (0 when the read faults): accepted or #GP. */
  wrback(name: string, msr: number): void {
    this.reg(name, `WRMSR ${hx(msr)} with the value RDMSR reads (0 if the read faults)`);
    this.e(`mov ecx, ${hx(msr)}`, `lea rsi, [rel ${this.str(name)}]`, 'call chk_wrback');
  }

  /** A WRMSR that must not fault (a fault is fatal). */
  wrmsrQ(msr: number, value: bigint | number): void {
    const v = BigInt(value);
    this.e(`mov ecx, ${hx(msr)}`, `mov eax, ${hx(v & 0xffffffffn)}`, `mov edx, ${hx(v >> 32n)}`, 'wrmsr');
  }

  rdmmio(name: string, addr: number, width: 8 | 16 | 32 = 32, what?: string): void {
    this.reg(name, what ?? `${width}-bit load at ${hx(addr)}`);
    this.e(`mov rbx, ${hx(addr)}`, `lea rsi, [rel ${this.str(name)}]`, `call chk_rd${width}`);
  }

  wrmmio(addr: number, value: number, width: 8 | 16 | 32 = 32): void {
    const r = width === 32 ? 'eax' : width === 16 ? 'ax' : 'al';
    this.e(`mov rbx, ${hx(addr)}`, `mov eax, ${hx(value >>> 0)}`, `mov [rbx], ${r}`);
  }

  /** A read of an APIC register through the current mode (MMIO or MSR). */
  apicRd(name: string, off: number, what?: string): void {
    this.reg(name, what ?? `APIC register ${hx(off)} (MMIO in xAPIC mode, MSR ${hx(0x800 + (off >> 4))} in x2APIC mode)`);
    this.e(`mov ecx, ${hx(off)}`, `lea rsi, [rel ${this.str(name)}]`, 'call chk_apic_rd');
  }

  apicWr(off: number, value: number): void {
    this.e(`mov ecx, ${hx(off)}`, `mov eax, ${hx(value >>> 0)}`, 'call apic_wr');
  }

  /** IPI through the current mode: ICR low word and destination (xAPIC: ICR2[31:24]). */
  ipi(low: number, dest = 0): void {
    this.e(`mov eax, ${hx(low >>> 0)}`, `mov edx, ${hx(dest >>> 0)}`, 'call apic_ipi');
  }

  eoi(): void {
    this.e('call apic_eoi');
  }

  /** Snapshot line: ISR/IRR vectors, PPR, TPR. */
  mark(name: string, what = 'ISR, IRR (set vectors), PPR and TPR'): void {
    this.reg(name, what);
    this.e(`lea rsi, [rel ${this.str(name)}]`, 'call rec_mark');
  }

  /** CPUID leaf/subleaf, register >> shift & mask. */
  cpuid(name: string, leaf: number, sub: number, reg: 'eax' | 'ebx' | 'ecx' | 'edx', shift: number, mask: number, what: string): void {
    this.reg(name, what);
    this.e(`mov eax, ${hx(leaf)}`, `mov ecx, ${hx(sub)}`, 'cpuid', `mov eax, ${reg}`, `shr eax, ${shift}`, `and eax, ${hx(mask)}`,
      `lea rsi, [rel ${this.str(name)}]`, 'call rec_value');
  }

  /** Line "<name> <value>" from code that leaves the value in RAX. */
  value(name: string, what: string, code: string[]): void {
    this.reg(name, what);
    this.e(...code, `lea rsi, [rel ${this.str(name)}]`, 'call rec_value');
  }

  /** Line "<name> k=v ..." with the per-vector interrupt counts and the NMI count. */
  counts(name: string, vectors: number[]): void {
    this.reg(name, `interrupts taken per vector (${vectors.map((v) => hx(v)).join(' ')}) and NMIs`);
    this.e(`lea rsi, [rel ${this.str(name)}]`, 'mov rdx, -1', 'call line_begin');
    vectors.forEach((v, i) => {
      this.e(`lea rsi, [rel ${this.str(`${i ? ' ' : ''}v${v.toString(16).padStart(2, '0')}=`)}]`, 'call put_str',
        `mov rax, [r15 + PC_VCNT + ${v * 8}]`, 'call put_hex');
    });
    this.e(`lea rsi, [rel ${this.str(`${vectors.length ? ' ' : ''}nmi=`)}]`, 'call put_str', 'mov rax, [r15 + PC_NNMI]', 'call put_hex', 'call put_nl');
  }

  // ---- control -----------------------------------------------------------------------------
  barrier(sti = false): void {
    const b = this.lbl('bar');
    this.counters.push(`${b}: dq 0`);
    this.e(`lea rax, [rel ${b}]`, `call ${sti ? 'barrier_sti' : 'barrier'}`);
  }

  spin(n = SPIN): void {
    this.e(`mov ecx, ${n}`, 'call spin_sti');
  }

  /** Remember the interrupt count (IF must be 0 until the wait). */
  saveIrqs(): void {
    this.e('mov rax, [r15 + PC_NIRQ]', 'mov [r15 + PC_SAVED], rax');
  }

  /** Interrupt lines from here on are "<name>.irq<n>", n counting from 1. */
  phase(name: string): void {
    this.curPhase = name;
    this.e(`lea rax, [rel ${this.str(name)}]`, 'mov [r15 + PC_PHASE], rax', 'mov qword [r15 + PC_PNIRQ], 0');
  }

  private curPhase = '';

  /** Wait (interrupts enabled) until `n` interrupts have come since saveIrqs(). */
  waitIrqs(n: number): void {
    const w = `${this.curPhase || 'main'}.wait${++this.waits}`;
    this.e('mov rdx, [r15 + PC_SAVED]', `add rdx, ${n}`, 'lea rax, [r15 + PC_NIRQ]', `lea rsi, [rel ${this.str(w)}]`, 'call wait_ge_sti');
  }

  /** Wait (interrupts enabled) until a qword of some vCPU's block reaches `n`. */
  waitCpu(cpu: number, field: number, n: number): void {
    const w = `${this.curPhase || 'main'}.wait-cpu${cpu}`;
    const addr = PERCPU_BASE + cpu * PERCPU_STRIDE + field;
    this.e(`mov rax, ${hx(addr)}`, `mov rdx, ${n}`, `lea rsi, [rel ${this.str(w)}]`, 'call wait_ge_sti');
  }

  setField(field: number, value: number): void {
    this.e(`mov qword [r15 + ${hx(field)}], ${value}`);
  }

  setHook(label: string | 0): void {
    if (label === 0) this.e('mov qword [r15 + PC_HOOK], 0');
    else this.e(`lea rax, [rel ${label}]`, 'mov [r15 + PC_HOOK], rax');
  }

  source(): string {
    const L = [
      `; LAPIC corpus guest ${this.name}: generated by test/oracle/apic/corpus.ts (version ${APIC_CORPUS_VERSION}); do not edit`,
      '%include "avic.inc"',
      'bits 64',
      '_start:',
      '    jmp rt_start',
      runtimeCode(this.ncpu),
      'main:',
      ...this.code,
      '    jmp finish',
      ...this.subs.flat(),
      runtimeData(),
      'align 64',
      ...this.counters,
      ...this.data,
      `banner:     db "G ${this.name}", 10, 0`,
      'trailer:    db "E", 10, 0',
    ];
    return `${L.join('\n')}\n`;
  }
}

// ---------------------------------------------------------------------------------------------
// guests

interface GuestDef {
  name: string;
  title: string;
  vcpus: number;
  defaultSource: DefaultSource;
  bochsDeviation?: string;
  build(b: Builder): void;
}

const X2 = 1 << 10;
const BSP = 1 << 8;

function baseWr(b: Builder, name: string, value: number | bigint, what: string): void {
  b.wrmsr(name, MSR_APIC_BASE, value, `WRMSR IA32_APIC_BASE = ${hx(value)}: ${what}`);
}
function baseRd(b: Builder, name: string): void {
  b.rdmsr(name, MSR_APIC_BASE, 'RDMSR IA32_APIC_BASE');
}
function cpuidApic(b: Builder, name: string): void {
  b.cpuid(name, 1, 0, 'edx', 9, 1, 'CPUID.1:EDX[9] (APIC present; follows IA32_APIC_BASE.EN)');
}
/** The per-vCPU mode flag apic_rd/apic_wr/ipi use. */
function setX2(b: Builder, on: boolean): void {
  b.setField(PC.X2, on ? 1 : 0);
}

/** IA32_APIC_BASE on the BSP and an AP: reserved bits, every mode transition, relocation. */
function apicBase(b: Builder): void {
  b.barrier();
  b.on(0, () => {
    baseRd(b, 'base.init');
    b.cpuid('cpuid1.ebx.id', 1, 0, 'ebx', 24, 0xff, 'CPUID.1:EBX[31:24] (initial APIC ID)');
    b.cpuid('cpuid1.ecx.x2apic', 1, 0, 'ecx', 21, 1, 'CPUID.1:ECX[21] (x2APIC)');
    cpuidApic(b, 'cpuid1.edx.apic');
    b.cpuid('cpuidb.edx', 0xb, 0, 'edx', 0, 0xffffffff, 'CPUID.0xB.0:EDX (x2APIC ID)');
    b.rdmmio('init.id', APIC + 0x20);
    b.rdmmio('init.lvr', APIC + 0x30);
    b.rdmmio('init.lvt0', APIC + 0x350, 32, 'LVT0 after reset (BSP: 0x700, KVM_X86_QUIRK_LINT0_REENABLED)');
    b.rdmsr('xapic.rd.802', 0x802, 'RDMSR x2APIC ID in xAPIC mode');
    // reserved bits and invalid modes from xAPIC
    baseWr(b, 'xapic.wr.rsvd0', 0xfee00901, 'reserved bit 0');
    baseWr(b, 'xapic.wr.rsvd7', 0xfee00980, 'reserved bit 7');
    baseWr(b, 'xapic.wr.rsvd9', 0xfee00b00, 'reserved bit 9');
    baseWr(b, 'xapic.wr.rsvd52', 0x0010_0000_fee0_0900n, 'bit 52 (above any MAXPHYADDR)');
    baseWr(b, 'xapic.wr.rsvd63', 0x8000_0000_fee0_0900n, 'bit 63');
    baseRd(b, 'xapic.rd.after-rsvd');
    baseWr(b, 'xapic.wr.extd-only', 0xfee00000 | X2 | BSP, 'EXTD without EN (invalid mode)');
    baseRd(b, 'xapic.rd.after-extd-only');
    baseWr(b, 'xapic.wr.same', 0xfee00900, 'the current value');
    baseWr(b, 'xapic.wr.bsp-clear', 0xfee00800, 'BSP flag cleared');
    baseRd(b, 'xapic.rd.bsp-clear');
    baseWr(b, 'xapic.wr.bsp-set', 0xfee00900, 'BSP flag set again');
    // relocation in xAPIC mode
    baseWr(b, 'xapic.wr.reloc', 0xfef00900, 'base moved to 0xFEF00000');
    baseRd(b, 'xapic.rd.reloc');
    b.rdmmio('reloc.new.lvr', 0xfef00030, 32, 'LVR at the new base');
    b.rdmmio('reloc.new.id', 0xfef00020, 32, 'ID at the new base');
    b.rdmmio('reloc.old.lvr', APIC + 0x30, 32, 'LVR offset at the old base (no APIC there now)');
    b.wrmmio(0xfef00080, 0x20);
    b.rdmmio('reloc.new.tpr', 0xfef00080, 32, 'TPR written and read at the new base');
    b.wrmmio(0xfef00080, 0);
    baseWr(b, 'xapic.wr.reloc-back', 0xfee00900, 'base moved back');
    b.rdmmio('reloc.back.lvr', APIC + 0x30, 32, 'LVR at 0xFEE00000 again');
    b.rdmmio('reloc.back.old', 0xfef00030, 32, 'LVR offset at 0xFEF00000 after moving back');
    // x2APIC
    baseWr(b, 'xapic.wr.to-x2', 0xfee00d00, 'xAPIC -> x2APIC');
    baseRd(b, 'x2.rd.base');
    cpuidApic(b, 'x2.cpuid1.edx.apic');
    b.rdmsr('x2.rd.802', 0x802, 'x2APIC ID');
    b.rdmsr('x2.rd.803', 0x803, 'x2APIC LVR');
    b.rdmsr('x2.rd.80d', 0x80d, 'x2APIC LDR (derived from the ID)');
    b.rdmmio('x2.mmio.lvr', APIC + 0x30, 32, 'xAPIC MMIO in x2APIC mode');
    baseWr(b, 'x2.wr.same', 0xfee00d00, 'the current value');
    baseWr(b, 'x2.wr.to-xapic', 0xfee00900, 'x2APIC -> xAPIC (illegal)');
    baseWr(b, 'x2.wr.extd-only', 0xfee00500, 'x2APIC -> EXTD without EN (invalid)');
    baseWr(b, 'x2.wr.rsvd0', 0xfee00d01, 'reserved bit 0');
    baseRd(b, 'x2.rd.after-illegal');
    baseWr(b, 'x2.wr.bsp-clear', 0xfee00c00, 'BSP flag cleared in x2APIC mode');
    baseRd(b, 'x2.rd.bsp-clear');
    baseWr(b, 'x2.wr.bsp-set', 0xfee00d00, 'BSP flag set again');
    baseWr(b, 'x2.wr.reloc', 0xfef00d00, 'base moved in x2APIC mode');
    baseRd(b, 'x2.rd.reloc');
    b.rdmsr('x2.reloc.rd.802', 0x802, 'x2APIC ID after the move');
    b.rdmmio('x2.reloc.mmio', 0xfef00030, 32, 'MMIO at the new base in x2APIC mode');
    baseWr(b, 'x2.wr.reloc-back', 0xfee00d00, 'base moved back');
    // disabled
    baseWr(b, 'x2.wr.to-disabled', 0xfee00100, 'x2APIC -> disabled');
    baseRd(b, 'dis.rd.base');
    cpuidApic(b, 'dis.cpuid1.edx.apic');
    b.rdmsr('dis.rd.802', 0x802, 'x2APIC ID MSR while disabled');
    b.rdmmio('dis.mmio.lvr', APIC + 0x30, 32, 'MMIO while hardware-disabled');
    baseWr(b, 'dis.wr.to-x2', 0xfee00d00, 'disabled -> x2APIC (illegal)');
    baseWr(b, 'dis.wr.extd-only', 0xfee00500, 'disabled -> EXTD without EN (invalid)');
    baseWr(b, 'dis.wr.rsvd0', 0xfee00101, 'reserved bit 0 while disabled');
    baseRd(b, 'dis.rd.after-illegal');
    baseWr(b, 'dis.wr.reloc', 0xfef00100, 'base moved while disabled');
    baseRd(b, 'dis.rd.reloc');
    baseWr(b, 'dis.wr.reloc-back', 0xfee00100, 'base moved back while disabled');
    baseWr(b, 'dis.wr.to-xapic', 0xfee00900, 'disabled -> xAPIC');
    baseRd(b, 're.rd.base');
    cpuidApic(b, 're.cpuid1.edx.apic');
    for (const [n, off] of [['id', 0x20], ['lvr', 0x30], ['tpr', 0x80], ['ldr', 0xd0], ['dfr', 0xe0], ['svr', 0xf0],
      ['lvtt', 0x320], ['lvt0', 0x350], ['lvterr', 0x370]] as const) {
      b.rdmmio(`re.mmio.${n}`, APIC + off, 32, `xAPIC ${n.toUpperCase()} after re-enabling from x2APIC/disabled`);
    }
    baseWr(b, 're.wr.to-x2', 0xfee00d00, 'xAPIC -> x2APIC again');
    b.rdmsr('re.x2.rd.802', 0x802, 'x2APIC ID');
    b.rdmsr('re.x2.rd.80d', 0x80d, 'x2APIC LDR');
    baseRd(b, 're.x2.rd.base');
  });
  b.barrier();
  b.on(1, () => {
    baseRd(b, 'ap.base.init');
    b.cpuid('ap.cpuid1.ebx.id', 1, 0, 'ebx', 24, 0xff, 'CPUID.1:EBX[31:24] (initial APIC ID)');
    b.cpuid('ap.cpuidb.edx', 0xb, 0, 'edx', 0, 0xffffffff, 'CPUID.0xB.0:EDX (x2APIC ID)');
    b.rdmmio('ap.mmio.id', APIC + 0x20);
    b.rdmmio('ap.mmio.lvt0', APIC + 0x350, 32, 'LVT0 of an AP after reset (masked)');
    baseWr(b, 'ap.wr.bsp-set', 0xfee00900, 'BSP flag set on an AP');
    baseRd(b, 'ap.rd.bsp-set');
    baseWr(b, 'ap.wr.bsp-clear', 0xfee00800, 'BSP flag cleared again');
    baseWr(b, 'ap.wr.to-x2', 0xfee00c00, 'xAPIC -> x2APIC');
    baseRd(b, 'ap.rd.x2');
    b.rdmsr('ap.x2.rd.802', 0x802, 'x2APIC ID');
    b.rdmsr('ap.x2.rd.80d', 0x80d, 'x2APIC LDR');
    baseWr(b, 'ap.wr.to-disabled', 0xfee00000, 'x2APIC -> disabled');
    baseRd(b, 'ap.rd.disabled');
    baseWr(b, 'ap.wr.to-xapic', 0xfee00800, 'disabled -> xAPIC');
    baseRd(b, 'ap.rd.xapic');
    b.rdmmio('ap.re.mmio.id', APIC + 0x20, 32, 'xAPIC ID after re-enabling');
    b.rdmmio('ap.re.mmio.ldr', APIC + 0xd0, 32, 'LDR after re-enabling (kept from x2APIC mode?)');
  });
}

/** xAPIC -> disabled -> xAPIC: which registers survive a global disable. */
function apicBaseDisable(b: Builder): void {
  const regs = [['id', 0x20], ['tpr', 0x80], ['ldr', 0xd0], ['dfr', 0xe0], ['svr', 0xf0], ['lvtt', 0x320], ['lvt0', 0x350],
    ['lvterr', 0x370], ['tdcr', 0x3e0], ['icr', 0x300], ['icr2', 0x310], ['ppr', 0xa0]] as const;
  b.wrmmio(APIC + 0xf0, 0x1ff);
  b.wrmmio(APIC + 0x80, 0x20);
  b.wrmmio(APIC + 0xd0, 0x03000000);
  b.wrmmio(APIC + 0xe0, 0x0fffffff);
  b.wrmmio(APIC + 0x320, 0x30);
  b.wrmmio(APIC + 0x370, 0x3e);
  b.wrmmio(APIC + 0x3e0, 0xb);
  b.wrmmio(APIC + 0x310, 0x55000000);
  b.wrmmio(APIC + 0x300, 0x4041); // fixed 0x41, physical, destination 0x55 (nobody)
  b.wrmmio(APIC + 0x20, 0x07000000);
  for (const [n, off] of regs) b.rdmmio(`before.${n}`, APIC + off, 32, `xAPIC ${n.toUpperCase()} before the global disable`);
  baseWr(b, 'wr.to-disabled', 0xfee00100, 'xAPIC -> disabled');
  baseRd(b, 'rd.disabled');
  cpuidApic(b, 'dis.cpuid1.edx.apic');
  b.rdmmio('dis.mmio.id', APIC + 0x20, 32, 'MMIO while hardware-disabled');
  b.rdmmio('dis.mmio.tpr', APIC + 0x80, 32, 'MMIO while hardware-disabled');
  b.wrmmio(APIC + 0x80, 0x30);
  b.rdmsr('dis.rd.808', 0x808, 'x2APIC TPR MSR while disabled');
  baseWr(b, 'dis.wr.same', 0xfee00100, 'the current (disabled) value');
  baseWr(b, 'dis.wr.bsp-clear', 0xfee00000, 'BSP flag cleared while disabled');
  baseRd(b, 'dis.rd.bsp-clear');
  baseWr(b, 'dis.wr.to-xapic', 0xfee00900, 'disabled -> xAPIC');
  baseRd(b, 'rd.re-enabled');
  cpuidApic(b, 're.cpuid1.edx.apic');
  for (const [n, off] of regs) b.rdmmio(`after.${n}`, APIC + off, 32, `xAPIC ${n.toUpperCase()} after disable and re-enable`);
  b.rdmmio('after.lvr', APIC + 0x30);
}

const X2_READ_EXTRA = [0x840, 0x841, 0x84f, 0x87f, 0x880, 0x8ff];
const LVTS = [['lvtt', 0x320], ['lvtthmr', 0x330], ['lvtpc', 0x340], ['lvt0', 0x350], ['lvt1', 0x360], ['lvterr', 0x370]] as const;
const msrOf = (off: number): number => 0x800 + (off >> 4);

/** x2APIC MSRs: the whole range in xAPIC and x2APIC mode, write rules, read-back. */
function x2apicMsrs(b: Builder): void {
  const h3 = (m: number) => m.toString(16);
  // xAPIC mode: every x2APIC MSR faults
  for (let m = 0x800; m <= 0x83f; m++) b.rdmsr(`xapic.rd.${h3(m)}`, m, `RDMSR ${hx(m)} in xAPIC mode`);
  b.wrmsr('xapic.wr.808', 0x808, 0, 'WRMSR TPR = 0 in xAPIC mode');
  b.wrmsr('xapic.wr.80b', 0x80b, 0, 'WRMSR EOI = 0 in xAPIC mode');
  b.wrmsr('xapic.wr.830', 0x830, 0x0000_0055_0000_0040n, 'WRMSR ICR in xAPIC mode');
  b.wrmsr('xapic.wr.83f', 0x83f, 0x40, 'WRMSR SELF_IPI = 0x40 in xAPIC mode');
  b.rdmmio('xapic.mmio.irr2', APIC + 0x220, 32, 'IRR[95:64] after the faulting SELF_IPI/ICR writes (nothing sent)');
  baseWr(b, 'wr.to-x2', 0xfee00d00, 'xAPIC -> x2APIC');
  setX2(b, true);
  // every MSR: read after the switch
  for (let m = 0x800; m <= 0x83f; m++) b.rdmsr(`rd.${h3(m)}`, m, `RDMSR ${hx(m)} right after entering x2APIC mode`);
  for (const m of X2_READ_EXTRA) b.rdmsr(`rd.${h3(m)}`, m, `RDMSR ${hx(m)} (beyond the x2APIC registers)`);
  // every MSR but ICR and SELF_IPI: write back what reads (0 where the read faults)
  for (let m = 0x800; m <= 0x83f; m++) {
    if (m === 0x830 || m === 0x83f) continue;
    b.wrback(`wrback.${h3(m)}`, m);
  }
  for (const m of [0x840, 0x8ff]) b.wrmsr(`wr.${h3(m)}`, m, 0, `WRMSR ${hx(m)} = 0`);
  // TPR / PPR
  b.wrmsr('tpr.wr.20', 0x808, 0x20);
  b.rdmsr('tpr.rd.20', 0x808);
  b.rdmsr('ppr.rd.20', 0x80a);
  b.value('tpr.cr8.20', 'CR8 with TPR = 0x20', ['mov rax, cr8']);
  b.wrmsr('tpr.wr.1ff', 0x808, 0x1ff, 'WRMSR TPR with bits 31:8 set');
  b.rdmsr('tpr.rd.1ff', 0x808);
  b.wrmsr('tpr.wr.hi', 0x808, 0x1_0000_0010n, 'WRMSR TPR with bit 32 set');
  b.rdmsr('tpr.rd.hi', 0x808);
  b.e('mov eax, 3', 'mov cr8, rax');
  b.rdmsr('tpr.rd.cr8', 0x808, 'TPR after MOV CR8, 3');
  b.wrmsr('tpr.wr.0', 0x808, 0);
  // SVR
  for (const v of [0x1ff, 0x3ff, 0x10ff, 0xffffffff, 0x0ff]) {
    b.wrmsr(`svr.wr.${v.toString(16)}`, 0x80f, v);
    b.rdmsr(`svr.rd.${v.toString(16)}`, 0x80f);
  }
  b.wrmsr('svr.wr.hi', 0x80f, 0x1_0000_01ffn, 'WRMSR SVR with bit 32 set');
  b.rdmsr('svr.rd.hi', 0x80f);
  // LVTs: software-disabled forces the mask; reserved bits; delivery status; SVR disable masks all
  b.wrmsr('lvtt.wr.sd', 0x832, 0x40, 'WRMSR LVT timer = 0x40 while software-disabled');
  b.rdmsr('lvtt.rd.sd', 0x832);
  b.wrmsrQ(0x80f, 0x1ff);
  for (const [n, off] of LVTS) {
    const m = msrOf(off);
    const plain = n === 'lvt0' ? 0x700 : n === 'lvt1' ? 0x400 : 0x40 + (off >> 4);
    b.wrmsr(`${n}.wr.plain`, m, plain);
    b.rdmsr(`${n}.rd.plain`, m);
    const ones = n === 'lvtt' ? 0xfffbffff : 0xffffffff; // LVTT: not the TSC-deadline mode bit (CPUID-dependent)
    b.wrmsr(`${n}.wr.ones`, m, ones);
    b.rdmsr(`${n}.rd.ones`, m);
    b.wrmsr(`${n}.wr.ds`, m, 0x1000 | 0x10000 | (0x40 + (off >> 4)), 'delivery-status bit 12 written (read-only per the SDM)');
    b.rdmsr(`${n}.rd.ds`, m);
    b.wrmsr(`${n}.wr.unmasked`, m, n === 'lvt0' ? 0x700 : 0x40 + (off >> 4));
  }
  b.wrmsr('lvt.wr.hi', 0x832, 0x1_0001_0040n, 'WRMSR LVT timer with bit 32 set');
  b.wrmsr('svr.wr.sd', 0x80f, 0xff, 'software disable (SVR bit 8 = 0)');
  for (const [n, off] of LVTS) b.rdmsr(`${n}.rd.after-sd`, msrOf(off), `${n.toUpperCase()} after SVR bit 8 was cleared`);
  b.wrmsrQ(0x80f, 0x1ff);
  // timer registers
  b.wrmsrQ(0x832, 0x10040);
  for (const v of [0xb, 0xffffffff, 0x4, 0x3]) {
    b.wrmsr(`tdcr.wr.${v.toString(16)}`, 0x83e, v);
    b.rdmsr(`tdcr.rd.${v.toString(16)}`, 0x83e);
  }
  b.wrmsrQ(0x83e, 0xa); // divide by 128: the count below lasts minutes, whatever the host's load
  b.wrmsr('tmict.wr', 0x838, 0xffffffff);
  b.rdmsr('tmict.rd', 0x838);
  b.value('tmcct.running', 'TMCCT after TMICT = 0xFFFFFFFF, divide by 128 (masked LVT): 1 if it is counting (non-zero)', [
    'mov ecx, 0x839', 'rdmsr', 'xor ecx, ecx', 'test eax, eax', 'setnz cl', 'movzx eax, cl']);
  b.wrmsr('tmcct.wr', 0x839, 0, 'WRMSR TMCCT (read-only)');
  b.wrmsr('tmict.wr.0', 0x838, 0);
  b.rdmsr('tmcct.rd.0', 0x839, 'TMCCT after TMICT = 0');
  // ESR, EOI
  b.wrmsr('esr.wr.0', 0x828, 0);
  b.wrmsr('esr.wr.1', 0x828, 1, 'WRMSR ESR = 1 (x2APIC: only 0 is allowed)');
  b.wrmsr('esr.wr.hi', 0x828, 0x1_0000_0000n);
  b.rdmsr('esr.rd', 0x828);
  b.wrmsr('eoi.wr.0', 0x80b, 0);
  b.wrmsr('eoi.wr.1', 0x80b, 1, 'WRMSR EOI = 1 (non-zero)');
  b.wrmsr('eoi.wr.hi', 0x80b, 0x1_0000_0000n, 'WRMSR EOI with bit 32 set');
  // ICR: 64-bit read-back, BUSY, reserved bits (destination 0x55: no such APIC)
  const icr = (name: string, v: bigint, what: string) => {
    b.wrmsr(`icr.wr.${name}`, 0x830, v, `WRMSR ICR = ${hx(v)}: ${what}`);
    b.rdmsr(`icr.rd.${name}`, 0x830);
  };
  icr('fixed', 0x0000_0055_0000_0040n, 'fixed 0x40 to x2APIC ID 0x55 (nobody)');
  icr('busy', 0x0000_0055_0000_1041n, 'with the delivery-status (BUSY) bit 12');
  icr('rsvd13', 0x0000_0055_0000_2042n, 'reserved bit 13');
  icr('rsvd16', 0x0000_0055_0001_0043n, 'reserved bit 16');
  icr('rsvd20', 0x0000_0055_0010_0044n, 'reserved bit 20');
  icr('rsvd31', 0x0000_0055_8000_0045n, 'reserved bit 31');
  icr('level', 0x0000_0055_0000_c046n, 'level-triggered, assert');
  icr('dest-hi', 0x1234_5678_0000_0047n, 'destination 0x12345678 (nobody)');
  b.rdmsr('icr2.rd', 0x831, 'ICR2 (no such register in x2APIC mode)');
  b.rdmsr('icr.irr2', 0x822, 'IRR[95:64] after the ICR writes (nothing is sent to this vCPU)');
  // SELF_IPI (interrupts stay disabled: the vectors wait in IRR)
  b.setField(PC.QUIET, 1);
  b.wrmsr('self.wr.40', 0x83f, 0x40);
  b.wrmsr('self.wr.140', 0x83f, 0x141, 'WRMSR SELF_IPI with bit 8 set (reserved)');
  b.wrmsr('self.wr.hi', 0x83f, 0x1_0000_0042n, 'WRMSR SELF_IPI with bit 32 set');
  b.wrmsr('self.wr.e0', 0x83f, 0xe0, 'SELF_IPI vector 0xE0');
  b.rdmsr('self.rd.irr2', 0x822, 'IRR[95:64]: 0x40 (and 0x41/0x42 if the reserved-bit writes were taken)');
  b.rdmsr('self.rd.irr7', 0x827, 'IRR[255:224]: 0xE0');
  b.rdmsr('self.rd.isr2', 0x812, 'ISR[95:64]');
  b.rdmsr('self.rd.ppr', 0x80a);
  b.saveIrqs();
  b.waitIrqs(2);
  b.value('self.taken', 'interrupts taken after STI (0xE0 and 0x40)', ['mov rax, [r15 + PC_NIRQ]']);
  b.rdmsr('self.rd.irr2.after', 0x822, 'IRR[95:64] after the interrupts were taken');
  b.rdmsr('self.rd.isr2.after', 0x812, 'ISR[95:64] after handler EOIs');
  b.setField(PC.QUIET, 0);
  // LDR, ID, DFR, LVR, APIC_BASE once more
  b.rdmsr('ldr.rd', 0x80d);
  b.wrmsr('ldr.wr', 0x80d, 0x10001, 'WRMSR LDR (read-only in x2APIC mode)');
  b.wrmsr('id.wr', 0x802, 5, 'WRMSR ID (read-only)');
  b.rdmsr('id.rd', 0x802);
  b.wrmsr('dfr.wr', 0x80e, 0xffffffff, 'WRMSR DFR (no DFR in x2APIC mode)');
  b.wrmsr('lvr.wr', 0x803, 0x50014, 'WRMSR LVR (read-only)');
  // xAPIC MMIO in x2APIC mode: reads all-ones, writes dropped
  for (const off of [0x20, 0x30, 0x80, 0xf0, 0x300, 0x3f0]) b.rdmmio(`x2.mmio.${off.toString(16).padStart(3, '0')}`, APIC + off, 32, `xAPIC MMIO ${hx(off)} in x2APIC mode`);
  b.wrmmio(APIC + 0x80, 0x30);
  b.rdmsr('x2.mmio.tpr-after-write', 0x808, 'TPR after an MMIO write in x2APIC mode');
  baseRd(b, 'base.rd.end');
}

/** xAPIC MMIO: every register offset, then writes and read-backs. */
function xapicMmio(b: Builder): void {
  const off3 = (o: number) => o.toString(16).padStart(3, '0');
  for (let off = 0; off <= 0x3f0; off += 0x10) b.rdmmio(`rd.${off3(off)}`, APIC + off, 32, `xAPIC MMIO ${hx(off)} after reset`);
  b.rdmmio('rd8.030', APIC + 0x30, 8, 'byte load of LVR bits 7:0');
  b.rdmmio('rd8.032', APIC + 0x32, 8, 'byte load of LVR bits 23:16');
  b.rdmmio('rd16.030', APIC + 0x30, 16, 'word load of LVR bits 15:0');
  b.rdmmio('rd16.032', APIC + 0x32, 16, 'word load of LVR bits 31:16');
  const wr = (name: string, off: number, v: number, what?: string) => {
    b.wrmmio(APIC + off, v);
    b.rdmmio(`${name}`, APIC + off, 32, what ?? `${hx(off)} after writing ${hx(v)}`);
  };
  // TPR / PPR / CR8
  wr('tpr.20', 0x80, 0x20);
  b.rdmmio('ppr.20', APIC + 0xa0, 32, 'PPR with TPR = 0x20');
  b.value('cr8.20', 'CR8 with TPR = 0x20', ['mov rax, cr8']);
  wr('tpr.1ff', 0x80, 0x1ff);
  b.e('mov eax, 0xa', 'mov cr8, rax');
  b.rdmmio('tpr.cr8', APIC + 0x80, 32, 'TPR after MOV CR8, 0xA');
  wr('tpr.0', 0x80, 0);
  // ID, LVR, ARBPRI
  wr('id.5', 0x20, 0x05000000);
  wr('id.ones', 0x20, 0xffffffff);
  wr('id.0', 0x20, 0);
  wr('lvr.ones', 0x30, 0xffffffff, 'LVR after writing all-ones (read-only)');
  wr('arbpri.ones', 0x90, 0xffffffff, 'ARBPRI after writing all-ones');
  // LDR / DFR
  wr('ldr.ones', 0xd0, 0xffffffff);
  wr('ldr.01', 0xd0, 0x01000000);
  wr('dfr.cluster', 0xe0, 0x0fffffff);
  wr('dfr.12345678', 0xe0, 0x12345678);
  wr('dfr.flat', 0xe0, 0xffffffff);
  wr('ldr.0', 0xd0, 0);
  // SVR and the LVTs
  wr('lvtt.sd', 0x320, 0x40, 'LVT timer after writing 0x40 while software-disabled');
  for (const v of [0x1ff, 0x3ff, 0x10ff, 0xffffffff]) wr(`svr.${v.toString(16)}`, 0xf0, v);
  b.wrmmio(APIC + 0xf0, 0x1ff);
  for (const [n, off] of LVTS) {
    const vec = 0x40 + (off >> 4);
    wr(`${n}.plain`, off, n === 'lvt0' ? 0x700 : n === 'lvt1' ? 0x400 : vec);
    wr(`${n}.ones`, off, n === 'lvtt' ? 0xfffbffff : 0xffffffff);
    wr(`${n}.ds`, off, 0x11000 | vec, `${n.toUpperCase()} after writing the delivery-status bit 12`);
    b.wrmmio(APIC + off, n === 'lvt0' ? 0x700 : vec);
  }
  wr('svr.ff', 0xf0, 0xff);
  for (const [n, off] of LVTS) b.rdmmio(`${n}.after-sd`, APIC + off, 32, `${n.toUpperCase()} after SVR bit 8 was cleared`);
  b.wrmmio(APIC + 0xf0, 0x1ff);
  // timer
  b.wrmmio(APIC + 0x320, 0x10040);
  for (const v of [0xb, 0xffffffff, 0x4]) wr(`tdcr.${v.toString(16)}`, 0x3e0, v);
  b.wrmmio(APIC + 0x3e0, 0xa); // divide by 128: the count below lasts minutes, whatever the host's load
  wr('tmict.ffffffff', 0x380, 0xffffffff);
  b.value('tmcct.running', 'TMCCT after TMICT = 0xFFFFFFFF, divide by 128 (masked LVT): 1 if it is counting (non-zero)', [
    'mov rbx, 0xfee00390', 'mov eax, [rbx]', 'xor ecx, ecx', 'test eax, eax', 'setnz cl', 'movzx eax, cl']);
  wr('tmict.0', 0x380, 0);
  wr('tmcct.write', 0x390, 0x1234, 'TMCCT after writing 0x1234 (read-only), TMICT = 0');
  // ESR
  wr('esr.ones', 0x280, 0xffffffff);
  wr('esr.0', 0x280, 0);
  // ICR2 / ICR (destination 0x55: no such APIC; nothing is delivered)
  wr('icr2.ones', 0x310, 0xffffffff);
  wr('icr2.55', 0x310, 0x55000000);
  wr('icr.fixed', 0x300, 0x40, 'ICR after sending fixed 0x40 to APIC ID 0x55');
  wr('icr.busy', 0x300, 0x1041, 'ICR after a write with the delivery-status bit 12');
  wr('icr.rsvd', 0x300, 0xfff32042, 'ICR after a write with reserved bits 31:20, 17:16, 13');
  b.rdmmio('icr2.after', APIC + 0x310);
  // a self-IPI waits in IRR with interrupts disabled
  b.setField(PC.QUIET, 1);
  b.wrmmio(APIC + 0x300, 0x40041);
  b.rdmmio('self.irr2', APIC + 0x220, 32, 'IRR[95:64] after a self IPI (shorthand) of 0x41 with IF = 0');
  b.rdmmio('self.isr2', APIC + 0x120, 32, 'ISR[95:64]');
  b.rdmmio('self.tmr2', APIC + 0x1a0, 32, 'TMR[95:64]');
  b.rdmmio('self.icr', APIC + 0x300, 32, 'ICR after the self IPI');
  b.saveIrqs();
  b.waitIrqs(1);
  b.rdmmio('self.irr2.after', APIC + 0x220, 32, 'IRR[95:64] after the interrupt was taken');
  b.rdmmio('self.isr2.after', APIC + 0x120, 32, 'ISR[95:64] after the handler\'s EOI');
  b.setField(PC.QUIET, 0);
  // EOI with nothing in service
  b.wrmmio(APIC + 0xb0, 0);
  b.rdmmio('eoi.ppr', APIC + 0xa0, 32, 'PPR after an EOI with nothing in service');
  // x2APIC mode: the MMIO page reads all-ones, writes are dropped
  baseWr(b, 'wr.to-x2', 0xfee00d00, 'xAPIC -> x2APIC');
  for (const off of [0x20, 0x30, 0x80, 0xd0, 0xf0, 0x300, 0x3f0]) b.rdmmio(`x2.${off3(off)}`, APIC + off, 32, `xAPIC MMIO ${hx(off)} in x2APIC mode`);
  b.rdmmio('x2.rd8.030', APIC + 0x30, 8, 'byte load of LVR in x2APIC mode');
  b.wrmmio(APIC + 0x80, 0x50);
  b.rdmsr('x2.tpr', 0x808, 'TPR after an MMIO write in x2APIC mode');
  // hardware-disabled: same hole
  baseWr(b, 'wr.to-disabled', 0xfee00100, 'x2APIC -> disabled');
  for (const off of [0x20, 0x30, 0x80, 0x300]) b.rdmmio(`dis.${off3(off)}`, APIC + off, 32, `xAPIC MMIO ${hx(off)} while hardware-disabled`);
}

/** xAPIC MMIO stores KVM ignores (not 32 bits wide, or not 16-byte aligned); Bochs stops on them. */
function xapicMmioWrites(b: Builder): void {
  b.wrmmio(APIC + 0x80, 0x30, 8);
  b.rdmmio('tpr.byte-store', APIC + 0x80, 32, 'TPR after a byte store of 0x30');
  b.wrmmio(APIC + 0x80, 0x40, 16);
  b.rdmmio('tpr.word-store', APIC + 0x80, 32, 'TPR after a word store of 0x40');
  b.wrmmio(APIC + 0x84, 0x50);
  b.rdmmio('tpr.misaligned-store', APIC + 0x80, 32, 'TPR after a dword store of 0x50 at offset 0x84');
  b.wrmmio(APIC + 0x80, 0x60);
  b.rdmmio('tpr.dword-store', APIC + 0x80, 32, 'TPR after a dword store of 0x60 at offset 0x80');
  b.wrmmio(APIC + 0x81, 0x70, 8);
  b.rdmmio('tpr.byte-store-81', APIC + 0x80, 32, 'TPR after a byte store at offset 0x81');
  b.wrmmio(APIC + 0xf0, 0x1ff, 16);
  b.rdmmio('svr.word-store', APIC + 0xf0, 32, 'SVR after a word store of 0x1FF');
}

/** x2APIC IDs and derived LDRs on many vCPUs (cluster 1 from vCPU 16). */
function x2apicIds(b: Builder): void {
  b.barrier();
  baseRd(b, 'base.init');
  b.cpuid('cpuid1.ebx.id', 1, 0, 'ebx', 24, 0xff, 'CPUID.1:EBX[31:24] (initial APIC ID)');
  b.cpuid('cpuidb.edx', 0xb, 0, 'edx', 0, 0xffffffff, 'CPUID.0xB.0:EDX (x2APIC ID)');
  b.rdmmio('mmio.id', APIC + 0x20);
  b.rdmmio('mmio.ldr', APIC + 0xd0);
  b.wrmsrQ(MSR_APIC_BASE, 0xfee00c00);
  b.on(0, () => b.wrmsrQ(MSR_APIC_BASE, 0xfee00d00));
  b.rdmsr('x2.id', 0x802);
  b.rdmsr('x2.ldr', 0x80d, 'x2APIC LDR: (ID >> 4) << 16 | 1 << (ID & 15)');
  baseRd(b, 'x2.base');
  b.barrier();
}

// ---- interrupts on one vCPU ------------------------------------------------------------------

/** Self-IPIs, priorities, TPR, EOI order, nesting, the one-shot timer; xAPIC or x2APIC. */
function irqSelf(b: Builder, x2: boolean): void {
  // xAPIC: ICR with the self shorthand; x2APIC: the SELF_IPI MSR (and the ICR shorthand once)
  const self = (v: number) => (x2 ? b.wrmsrQ(0x83f, v) : b.ipi(0x40000 | v));
  if (x2) {
    b.wrmsrQ(MSR_APIC_BASE, 0xfee00d00);
    setX2(b, true);
  }
  b.phase('en');
  b.apicWr(0xf0, 0x1ff);
  b.spin();
  b.mark('en', 'after SVR = 0x1FF and STI');
  // one interrupt
  b.phase('one');
  b.saveIrqs();
  self(0x40);
  b.mark('one.pending', 'self IPI 0x40 pending with IF = 0');
  b.waitIrqs(1);
  b.mark('one.after');
  // three pending, two classes: highest first
  b.phase('prio');
  b.saveIrqs();
  if (x2) b.ipi(0x40000 | 0x31); else b.ipi(0x31, 0); // x2APIC: ICR self shorthand; xAPIC: physical destination 0 (itself)
  self(0x61);
  self(0x65);
  b.mark('prio.pending', '0x31, 0x61, 0x65 pending with IF = 0');
  b.waitIrqs(3);
  b.mark('prio.after');
  // TPR masks lower classes
  b.phase('tpr');
  b.apicWr(0x80, 0x50);
  b.saveIrqs();
  self(0x42);
  self(0x72);
  b.mark('tpr.pending', '0x42, 0x72 pending with TPR = 0x50');
  b.spin();
  b.mark('tpr.50', 'after STI with TPR = 0x50: 0x72 taken, 0x42 held');
  b.apicWr(0x80, 0x40);
  b.spin();
  b.mark('tpr.40', 'after STI with TPR = 0x40: 0x42 still held (class 4 <= 4)');
  b.apicWr(0x80, 0x3f);
  b.waitIrqs(2);
  b.mark('tpr.3f', 'after TPR = 0x3F: 0x42 taken');
  b.apicRd('tpr.rd', 0x80, 'TPR (0x3F)');
  b.value('tpr.cr8', 'CR8 with TPR = 0x3F', ['mov rax, cr8']);
  b.apicWr(0x80, 0);
  // nesting: inside 0x50's handler, 0x70 (higher class) nests, 0x51 (same class) waits for EOI
  b.phase('nest');
  const nest = b.sub(() => {
    const out = b.lbl('nest_out');
    b.e('cmp rbx, 0x50', `jne ${out}`);
    self(0x51);
    self(0x70);
    b.mark('nest.sent', 'in 0x50\'s handler: 0x51 and 0x70 sent (IF = 0)');
    b.spin();
    b.mark('nest.in', 'in 0x50\'s handler after STI: 0x70 nested and done, 0x51 held');
    b.eoi();
    b.mark('nest.eoi', 'in 0x50\'s handler after its EOI');
    b.setField(PC.SKIPEOI, 1);
    b.e(`${out}:`);
  });
  b.setHook(nest);
  b.saveIrqs();
  self(0x50);
  b.waitIrqs(3);
  b.setHook(0);
  b.mark('nest.after');
  // PPR from TPR and ISR inside a handler (TPR subclass)
  b.phase('ppr');
  const ppr = b.sub(() => {
    const out = b.lbl('ppr_out');
    b.e('cmp rbx, 0x48', `jne ${out}`);
    for (const t of [0x45, 0x35, 0x4f, 0x50]) {
      b.apicWr(0x80, t);
      b.apicRd(`ppr.in48.tpr${t.toString(16)}`, 0xa0, `PPR in 0x48's handler with TPR = ${hx(t)}`);
    }
    b.apicWr(0x80, 0);
    b.e(`${out}:`);
  });
  b.setHook(ppr);
  b.saveIrqs();
  self(0x48);
  b.waitIrqs(1);
  b.setHook(0);
  // EOI clears the highest in-service vector: handlers that do not EOI, then EOI by hand
  b.phase('eoi');
  b.setField(PC.NOEOI, 1);
  const stack = b.sub(() => {
    const out = b.lbl('stack_out');
    b.e('cmp rbx, 0x38', `jne ${out}`);
    self(0x68);
    b.spin();
    b.e(`${out}:`);
  });
  b.setHook(stack);
  b.saveIrqs();
  self(0x38);
  b.waitIrqs(2);
  b.setHook(0);
  b.mark('eoi.two-in-service', '0x38 and 0x68 in service (handlers did not EOI)');
  b.eoi();
  b.mark('eoi.first', 'after one EOI: 0x68 (highest) cleared');
  b.eoi();
  b.mark('eoi.second', 'after a second EOI');
  b.eoi();
  b.mark('eoi.empty', 'after an EOI with nothing in service');
  b.setField(PC.NOEOI, 0);
  // one-shot timer, divide by 1
  b.phase('timer');
  b.apicWr(0x3e0, 0xb);
  b.apicWr(0x320, 0x55);
  b.saveIrqs();
  b.apicWr(0x380, 0x4000);
  b.waitIrqs(1);
  b.apicRd('timer.lvtt', 0x320, 'LVT timer after it fired (one-shot)');
  b.apicRd('timer.tmcct', 0x390, 'TMCCT after the one-shot timer fired');
  b.apicRd('timer.tmict', 0x380, 'TMICT after the one-shot timer fired');
  b.mark('timer.after');
  // masked timer: counts down, no interrupt
  b.phase('tmask');
  b.apicWr(0x320, 0x10056);
  b.apicWr(0x380, 0x4000);
  const poll = b.lbl('poll');
  const polled = b.lbl('polled');
  b.e('mov edi, 400000', `${poll}:`, 'mov ecx, 0x390', 'call apic_rd', 'test eax, eax', `jz ${polled}`, 'pause', 'dec edi', `jnz ${poll}`, `${polled}:`);
  b.apicRd('tmask.tmcct', 0x390, 'TMCCT of the masked one-shot timer after it ran out');
  b.spin();
  b.mark('tmask.after', 'after STI: the masked timer raised nothing');
  b.apicWr(0x380, 0);
  b.apicWr(0x320, 0x10000);
  // software-disabled APIC: a fixed self IPI is not accepted (last: it may leave state behind)
  b.phase('sd');
  b.apicWr(0xf0, 0xff);
  self(0x40);
  b.mark('sd.sent', 'after a self IPI of 0x40 while the APIC is software-disabled (SVR = 0xFF)');
  b.spin();
  b.mark('sd.sti', 'after STI with the APIC software-disabled');
  b.apicWr(0xf0, 0x1ff);
  b.spin();
  b.mark('sd.enabled', 'after SVR = 0x1FF and STI');
  b.value('spurious', 'spurious-vector (0xFF) interrupts taken', ['mov rax, [r15 + PC_NSPUR]']);
}

// ---- IPIs between vCPUs ------------------------------------------------------------------------

interface IpiStep {
  name: string;
  from: number;
  /** ICR bits 31:0 and the destination */
  low: number;
  dest: number;
  /** vCPUs that must take the vector (or the NMI) */
  to: number[];
  /** use the x2APIC SELF_IPI MSR (vector = low) */
  selfMsr?: boolean;
}

/**
 * One IPI step: all vCPUs meet (interrupts enabled), the sender sends, waits until every
 * target has taken it, everybody meets again. Vectors are unique per step.
 */
function ipiStep(b: Builder, s: IpiStep, readIcr: boolean, x2: boolean): void {
  b.phase(s.name.split('.')[0]);
  b.barrier(true);
  b.on(s.from, () => {
    if (s.selfMsr) b.wrmsrQ(0x83f, s.low);
    else b.ipi(s.low, s.dest);
    if (readIcr) {
      if (x2) b.rdmsr(`${s.name}.icr`, 0x830, 'ICR after sending');
      else b.rdmmio(`${s.name}.icr`, APIC + 0x300, 32, 'ICR after sending');
    }
    const nmi = (s.low & 0x700) === 0x400;
    for (const t of s.to) b.waitCpu(t, nmi ? PC.NNMI : PC.VCNT + (s.low & 0xff) * 8, 1);
  });
  b.barrier(true);
}

function stepVectors(steps: IpiStep[]): number[] {
  return [...new Set(steps.filter((s) => (s.low & 0x700) !== 0x400).map((s) => s.low & 0xff))].sort((a, c) => a - c);
}

/** xAPIC IPIs between two vCPUs: physical, shorthands, NMI, a software-disabled target. */
function ipiXapic2(b: Builder): void {
  b.apicWr(0xf0, 0x1ff);
  const steps: IpiStep[] = [
    { name: 's1.phys', from: 0, low: 0x51, dest: 1, to: [1] },
    { name: 's2.phys', from: 1, low: 0x52, dest: 0, to: [0] },
    { name: 's3.phys-self', from: 0, low: 0x53, dest: 0, to: [0] },
    { name: 's4.allbut', from: 1, low: 0xc0054, dest: 0, to: [0] },
    { name: 's5.allinc', from: 0, low: 0x80055, dest: 0, to: [0, 1] },
    { name: 's6.nmi', from: 1, low: 0x400, dest: 0, to: [0] },
    { name: 's7.nmi-allbut', from: 0, low: 0xc0400, dest: 0, to: [1] },
    { name: 's8.nobody', from: 1, low: 0x57, dest: 0x0f, to: [] },
    { name: 's9.bcast', from: 0, low: 0x58, dest: 0xff, to: [0, 1] },
    { name: 's10.self', from: 1, low: 0x40059, dest: 0, to: [1] },
  ];
  steps.forEach((s, i) => ipiStep(b, s, i < 3 || i === 8, false));
  // a fixed IPI to a software-disabled APIC
  b.phase('sd');
  b.barrier(true);
  b.on(1, () => b.apicWr(0xf0, 0xff));
  b.barrier();
  b.on(0, () => {
    b.ipi(0x5a, 1);
    b.spin();
  });
  b.barrier();
  b.on(1, () => {
    b.mark('sd.irr', 'vCPU 1 software-disabled after 0x5A was sent to it');
    b.apicWr(0xf0, 0x1ff);
    b.spin();
    b.mark('sd.after', 'vCPU 1 after SVR = 0x1FF and STI');
  });
  b.barrier(true);
  b.counts('cnt', [...stepVectors(steps), 0x5a]);
  b.value('spurious', 'spurious-vector (0xFF) interrupts taken', ['mov rax, [r15 + PC_NSPUR]']);
}

/** xAPIC logical destinations (flat and cluster) with four vCPUs. */
function ipiXapic4(b: Builder): void {
  b.apicWr(0xf0, 0x1ff);
  b.apicWr(0xe0, 0xffffffff);
  b.e('mov ecx, [r15 + PC_IDX]', 'mov eax, 1', 'shl eax, cl', 'shl eax, 24', 'mov ecx, 0xd0', 'call apic_wr');
  b.apicRd('flat.ldr', 0xd0, 'LDR = 1 << (24 + index)');
  b.apicRd('flat.dfr', 0xe0);
  const flat: IpiStep[] = [
    { name: 'f1.logical-0a', from: 0, low: 0x861, dest: 0x0a, to: [1, 3] },
    { name: 'f2.logical-0f', from: 2, low: 0x862, dest: 0x0f, to: [0, 1, 2, 3] },
    { name: 'f3.logical-f0', from: 1, low: 0x863, dest: 0xf0, to: [] },
    { name: 'f4.logical-ff', from: 3, low: 0x864, dest: 0xff, to: [0, 1, 2, 3] },
    { name: 'f5.phys', from: 2, low: 0x65, dest: 3, to: [3] },
    { name: 'f6.allbut', from: 0, low: 0xc0066, dest: 0, to: [1, 2, 3] },
    { name: 'f7.nmi-logical', from: 3, low: 0xc00, dest: 0x03, to: [0, 1] },
  ];
  flat.forEach((s, i) => ipiStep(b, s, i === 0, false));
  b.barrier();
  b.apicWr(0xe0, 0x0fffffff);
  b.e('mov ecx, [r15 + PC_IDX]', 'mov eax, 1', 'shl eax, cl', 'or eax, 0x10', 'shl eax, 24', 'mov ecx, 0xd0', 'call apic_wr');
  b.apicRd('cluster.ldr', 0xd0, 'LDR = cluster 1, bit index');
  b.apicRd('cluster.dfr', 0xe0, 'DFR = cluster model');
  const cluster: IpiStep[] = [
    { name: 'c1.cluster-15', from: 1, low: 0x867, dest: 0x15, to: [0, 2] },
    { name: 'c2.cluster-2f', from: 0, low: 0x868, dest: 0x2f, to: [] },
    { name: 'c3.cluster-1f', from: 2, low: 0x869, dest: 0x1f, to: [0, 1, 2, 3] },
    { name: 'c4.cluster-ff', from: 3, low: 0x86a, dest: 0xff, to: [0, 1, 2, 3] },
  ];
  cluster.forEach((s) => ipiStep(b, s, false, false));
  b.counts('cnt', stepVectors([...flat, ...cluster]));
  b.value('spurious', 'spurious-vector (0xFF) interrupts taken', ['mov rax, [r15 + PC_NSPUR]']);
}

/** x2APIC IPIs with four vCPUs: physical, logical (cluster), broadcast, SELF_IPI, NMI. */
function ipiX2apic4(b: Builder): void {
  b.wrmsrQ(MSR_APIC_BASE, 0xfee00c00);
  b.on(0, () => b.wrmsrQ(MSR_APIC_BASE, 0xfee00d00));
  setX2(b, true);
  b.wrmsrQ(0x80f, 0x1ff);
  b.rdmsr('id', 0x802);
  b.rdmsr('ldr', 0x80d);
  const steps: IpiStep[] = [
    { name: 's1.phys', from: 0, low: 0x71, dest: 1, to: [1] },
    { name: 's2.logical-0d', from: 1, low: 0x872, dest: 0x0d, to: [0, 2, 3] },
    { name: 's3.bcast', from: 2, low: 0x73, dest: 0xffffffff, to: [0, 1, 2, 3] },
    { name: 's4.self-msr', from: 3, low: 0x74, dest: 0, to: [3], selfMsr: true },
    { name: 's5.self', from: 0, low: 0x40075, dest: 0, to: [0] },
    { name: 's6.allinc', from: 1, low: 0x80076, dest: 0, to: [0, 1, 2, 3] },
    { name: 's7.allbut', from: 2, low: 0xc0077, dest: 0, to: [0, 1, 3] },
    { name: 's8.nmi', from: 3, low: 0x400, dest: 0, to: [0] },
    { name: 's9.phys-55', from: 0, low: 0x78, dest: 0x55, to: [] },
    { name: 's10.cluster1', from: 1, low: 0x879, dest: 0x10001, to: [] },
    { name: 's11.phys-ff', from: 2, low: 0x7a, dest: 0xff, to: [] },
    { name: 's12.logical-ffff', from: 3, low: 0x87b, dest: 0xffff, to: [0, 1, 2, 3] },
  ];
  steps.forEach((s, i) => ipiStep(b, s, i < 3, true));
  b.counts('cnt', stepVectors(steps));
  b.value('spurious', 'spurious-vector (0xFF) interrupts taken', ['mov rax, [r15 + PC_NSPUR]']);
}

const GUEST_DEFS: GuestDef[] = [
  { name: 'apic-base', title: 'IA32_APIC_BASE: reset values, reserved bits, every mode transition, relocation (BSP and AP)', vcpus: 2, defaultSource: 'kvm', build: apicBase },
  { name: 'apic-base-disable', title: 'xAPIC -> disabled -> xAPIC: which registers survive a global disable', vcpus: 1, defaultSource: 'kvm', build: apicBaseDisable },
  { name: 'x2apic-msrs', title: 'x2APIC MSRs 0x800-0x8FF: reads and writes in xAPIC and x2APIC mode, write rules, ICR, SELF_IPI', vcpus: 1, defaultSource: 'kvm', build: x2apicMsrs },
  { name: 'xapic-mmio', title: 'xAPIC MMIO: every offset after reset, writes and read-backs, the MMIO hole in x2APIC and disabled modes', vcpus: 1, defaultSource: 'kvm', build: xapicMmio },
  { name: 'xapic-mmio-writes', title: 'xAPIC MMIO stores that are not 32-bit or not aligned (ignored by KVM; Bochs stops)', vcpus: 1, defaultSource: 'kvm', bochsDeviation: 'bochs-apic-partial-store', build: xapicMmioWrites },
  { name: 'x2apic-ids', title: 'x2APIC IDs and derived LDRs on 17 vCPUs (cluster 0 and 1)', vcpus: 17, defaultSource: 'kvm', build: x2apicIds },
  { name: 'irq-xapic', title: 'interrupt acceptance in xAPIC mode: self IPIs, priorities, TPR, EOI order, nesting, one-shot timer', vcpus: 1, defaultSource: 'bochs', build: (b) => irqSelf(b, false) },
  { name: 'irq-x2apic', title: 'interrupt acceptance in x2APIC mode (SELF_IPI MSR): same scenario', vcpus: 1, defaultSource: 'bochs', build: (b) => irqSelf(b, true) },
  { name: 'ipi-xapic-2', title: 'xAPIC IPIs between 2 vCPUs: physical, shorthands, broadcast, NMI, software-disabled target', vcpus: 2, defaultSource: 'bochs', build: ipiXapic2 },
  { name: 'ipi-xapic-4', title: 'xAPIC IPIs between 4 vCPUs: logical flat and cluster destinations', vcpus: 4, defaultSource: 'bochs', build: ipiXapic4 },
  { name: 'ipi-x2apic-4', title: 'x2APIC IPIs between 4 vCPUs: physical, logical cluster, broadcast, SELF_IPI, NMI', vcpus: 4, defaultSource: 'bochs', build: ipiX2apic4 },
];

// ---------------------------------------------------------------------------------------------
// assembly

const nodeReader = {
  readFile(p: string): string | undefined {
    try { return fs.readFileSync(p, 'utf8'); } catch { return undefined; }
  },
};

function buildGuest(def: GuestDef): ApicGuest {
  const b = new Builder(def.name, def.vcpus);
  def.build(b);
  const source = b.source();
  const res = assemble({ file: `apic-corpus/${def.name}.vasm`, text: source, reader: nodeReader, includeDirs: [INCLUDE_DIR] });
  if (!res.ok) {
    const errs = res.diagnostics.filter((d) => d.severity === 'error').slice(0, 10);
    const lines = source.split('\n');
    throw new Error(`LAPIC corpus guest ${def.name} does not assemble:\n${errs.map(formatDiagnostic).join('\n')}\n` +
      errs.slice(0, 3).map((d) => `  ${d.line}: ${lines[d.line - 1]}`).join('\n'));
  }
  const site = res.symbols.find((x) => x.name === 'done_site');
  if (!site) throw new Error(`LAPIC corpus guest ${def.name}: no done_site label`);
  return {
    name: def.name, title: def.title, vcpus: def.vcpus, defaultSource: def.defaultSource, source, image: res.image,
    doneSites: [Number(site.value)], checks: b.checks, ...(def.bochsDeviation ? { bochsDeviation: def.bochsDeviation } : {}), imageSha256: createHash('sha256').update(res.image).digest('hex'),
  };
}

let cache: ApicGuest[] | undefined;

/** Every guest of the LAPIC corpus, generated and assembled once per process. */
export function apicGuests(): readonly ApicGuest[] {
  cache ??= GUEST_DEFS.map(buildGuest);
  return cache;
}

export function apicGuest(name: string): ApicGuest {
  const g = apicGuests().find((x) => x.name === name);
  if (!g) throw new Error(`no LAPIC corpus guest '${name}'`);
  return g;
}

/** A hash over every guest image and the corpus version. */
export function apicCorpusHash(): string {
  const h = createHash('sha256').update(`apic corpus v${APIC_CORPUS_VERSION}\n`);
  for (const g of apicGuests()) h.update(`${g.name} ${g.imageSha256}\n`);
  return h.digest('hex');
}

/** nasm's bytes for a guest (org 0x100000 prepended) equal ours; undefined when nasm is missing. */
export function nasmCrossCheckApic(guest: ApicGuest): { same: boolean; detail: string } | undefined {
  const nasm = process.env.NASM_BIN || 'nasm';
  const probe = spawnSync(nasm, ['-v'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'avic-apic-nasm-'));
  try {
    const src = path.join(dir, `${guest.name}.asm`);
    fs.writeFileSync(src, `org 0x100000\n${guest.source}`);
    const r = spawnSync(nasm, ['-f', 'bin', '-I', `${INCLUDE_DIR}/`, '-o', `${src}.bin`, src], { encoding: 'utf8' });
    if (r.status !== 0) return { same: false, detail: `nasm failed: ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}` };
    const bytes = fs.readFileSync(`${src}.bin`);
    if (Buffer.compare(bytes, Buffer.from(guest.image)) === 0) return { same: true, detail: 'identical' };
    let i = 0;
    while (i < bytes.length && i < guest.image.length && bytes[i] === guest.image[i]) i++;
    return { same: false, detail: `first difference at image offset 0x${i.toString(16)} (nasm ${bytes.length} bytes, ours ${guest.image.length})` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// Instruction -> closure: picks the implementation for a decoded instruction by its mnemonic.
// Every instruction the assembler accepts has one; anything else iced decodes (SSE, x87, ...)
// raises #UD, which is what a CPU without that feature does.

import { DB } from '../exceptions';
import type { Insn } from '../insn';
import { binaryAlu, unaryAlu, type AluKind, type UnaryKind } from './alu';
import { bitScan, bitTest, cmovcc, setcc, type BitKind } from './bits';
import { call, hlt, iret, jcc, jmp, loop, nop, ret, softInt, ud } from './control';
import { cmpxchg, extendAccumulator, lea, leave, mov, movExtend, pop, push, pushf, signIntoDx, xadd, xchg } from './move';
import { divide, imulTruncating, mulAcc } from './muldiv';
import type { Compiled } from './op';
import { shift, type ShiftKind } from './shift';
import { stringOp, type StringKind } from './string';
import {
  ahFlags, cpuid, descriptorTable, flagOp, invlpg, movCr, movDr, movSreg, msrAccess, popf, popSreg, portIo, privilegedNop, rdtsc, svm, swapgs,
  syscall, sysret, vmmcall,
} from './system';

type Factory = (insn: Insn) => Compiled;

const ALU: readonly AluKind[] = ['add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp', 'test'];
const UNARY: readonly UnaryKind[] = ['inc', 'dec', 'neg', 'not'];
const SHIFTS: readonly ShiftKind[] = ['rol', 'ror', 'rcl', 'rcr', 'shl', 'shr', 'sar'];
const BITS: readonly BitKind[] = ['bt', 'bts', 'btr', 'btc'];
const STRINGS: readonly StringKind[] = ['movs', 'stos', 'lods', 'cmps', 'scas'];
const CONDITIONS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];

/** by iced Mnemonic name, lower case */
const FACTORIES = new Map<string, Factory>();

function def(name: string, f: Factory): void {
  FACTORIES.set(name, f);
}

for (const k of ALU) def(k, (i) => binaryAlu(i, k));
for (const k of UNARY) def(k, (i) => unaryAlu(i, k));
for (const k of SHIFTS) def(k, (i) => shift(i, k));
def('sal', (i) => shift(i, 'shl'));
for (const k of BITS) def(k, (i) => bitTest(i, k));
for (const k of STRINGS) for (const w of ['b', 'w', 'd', 'q']) def(k + w, (i) => stringOp(i, k));
for (const k of ['ins', 'outs'] as const) for (const w of ['b', 'w', 'd']) def(k + w, (i) => stringOp(i, k));
for (const cc of CONDITIONS) {
  def('j' + cc, jcc);
  def('set' + cc, setcc);
  def('cmov' + cc, cmovcc);
}
def('bsf', (i) => bitScan(i, false));
def('bsr', (i) => bitScan(i, true));
def('mov', (i) => {
  const [a, b] = i.ops;
  if (a.kind === 'cr' || b?.kind === 'cr') return movCr(i);
  if (a.kind === 'dr' || b?.kind === 'dr') return movDr(i);
  if (a.kind === 'sreg' || b?.kind === 'sreg') return movSreg(i);
  return mov(i);
});
def('movzx', (i) => movExtend(i, false));
def('movsx', (i) => movExtend(i, true));
def('movsxd', (i) => movExtend(i, true));
def('lea', lea);
def('xchg', xchg);
def('xadd', xadd);
def('cmpxchg', cmpxchg);
def('cbw', () => extendAccumulator(2));
def('cwde', () => extendAccumulator(4));
def('cdqe', () => extendAccumulator(8));
def('cwd', () => signIntoDx(2));
def('cdq', () => signIntoDx(4));
def('cqo', () => signIntoDx(8));
def('push', push);
def('pop', (i) => (i.ops[0]?.kind === 'sreg' ? popSreg(i) : pop(i)));
def('pushf', pushf);
def('pushfq', pushf);
def('popf', popf);
def('popfq', popf);
def('leave', leave);
def('mul', (i) => mulAcc(i, false));
def('imul', (i) => (i.ops.length === 1 ? mulAcc(i, true) : imulTruncating(i)));
def('div', (i) => divide(i, false));
def('idiv', (i) => divide(i, true));
def('jmp', jmp);
def('call', call);
def('ret', ret);
def('loop', (i) => loop(i, 'loop'));
def('loope', (i) => loop(i, 'loope'));
def('loopne', (i) => loop(i, 'loopne'));
def('jrcxz', (i) => loop(i, 'jrcxz'));
def('jecxz', (i) => loop(i, 'jrcxz'));
def('int3', (i) => softInt(i, 3));
def('int', (i) => softInt(i, 'imm'));
def('int1', (i) => softInt(i, DB));
def('ud2', () => ud());
def('ud0', () => ud());
def('ud1', () => ud());
def('hlt', hlt);
def('iretq', iret);
def('iretd', iret);
def('nop', nop);
def('pause', nop);
def('mfence', nop);
def('lfence', nop);
def('sfence', nop);
def('in', (i) => portIo(i, false));
def('out', (i) => portIo(i, true));
def('rdmsr', (i) => msrAccess(i, false));
def('wrmsr', (i) => msrAccess(i, true));
def('cpuid', cpuid);
def('rdtsc', (i) => rdtsc(i, false));
def('rdtscp', (i) => rdtsc(i, true));
def('lgdt', (i) => descriptorTable(i, 'gdt', true));
def('lidt', (i) => descriptorTable(i, 'idt', true));
def('sgdt', (i) => descriptorTable(i, 'gdt', false));
def('sidt', (i) => descriptorTable(i, 'idt', false));
for (const k of ['cli', 'sti', 'clc', 'stc', 'cmc', 'cld', 'std'] as const) def(k, (i) => flagOp(i, k));
def('lahf', () => ahFlags(true));
def('sahf', () => ahFlags(false));
def('invlpg', invlpg);
def('wbinvd', privilegedNop);
def('invd', privilegedNop);
def('swapgs', swapgs);
def('syscall', syscall);
def('sysretq', sysret);
def('sysret', sysret);
for (const k of ['vmrun', 'vmload', 'vmsave', 'stgi', 'clgi', 'invlpga', 'skinit']) def(k, (i) => svm(i, k));
def('vmmcall', vmmcall);

/** The closure for an instruction; #UD for anything this CPU does not implement. */
export function compile(insn: Insn): Compiled {
  const f = FACTORIES.get(insn.mnemonicName.toLowerCase());
  if (!f) return ud();
  try {
    return f(insn);
  } catch {
    // an operand combination no implementation covers (possible only for bytes the assembler never emits)
    return ud();
  }
}

/** Mnemonics this CPU executes (for tests and documentation). */
export function implementedMnemonics(): string[] {
  return [...FACTORIES.keys()].sort();
}

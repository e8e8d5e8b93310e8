// Generates the byte-equality corpus: every form of every mnemonic in forms.generated.ts, each
// with several operand choices (registers that need or forbid REX, every addressing shape,
// immediates at their edges, near and far branch targets), plus directives and expressions.
// Deterministic, so a failure names a line that is the same on every machine.

import { FORMS } from '../../src/asm/forms.generated';
import { STRING_OPS } from '../../src/asm/mnemonics';

const REGS: Record<string, readonly string[]> = {
  r8: ['al', 'cl', 'bl', 'ah', 'bh', 'spl', 'sil', 'r9b', 'r15b'],
  r16: ['ax', 'cx', 'sp', 'bp', 'r8w', 'r15w'],
  r32: ['eax', 'ecx', 'esp', 'ebp', 'esi', 'r8d', 'r13d'],
  r64: ['rax', 'rcx', 'rsp', 'rbp', 'rdi', 'r8', 'r12', 'r13', 'r15'],
};

const ADDRESSES = ['[rax]', '[rbp]', '[rsp]', '[r12]', '[r13]', '[rbx+8]', '[rbx-128]', '[rbx+127]', '[rbx+128]', '[rdi-0x1000]',
  '[rsi+rdi*4+0x1234]', '[rcx*8]', '[rcx*8+16]', '[r8+r9*2-4]', '[rax*2]', '[rax*3+1]', '[rbp+rax]', '[rax+rbp]', '[rax+rsp]',
  '[r13+r14*8]', '[rel data_label]', '[data_label]', '[0x1000]', '[rsp+rax*1]', '[eax]', '[ebx+ecx*4+8]', '[fs:rax]', '[gs:0x28]',
  '[rbx + data_label - $$]', '[data_label + 8]', '[dword rax+1]', '[byte rbx]'];

const SIZE_WORD: Record<string, string> = { '1': 'byte', '2': 'word', '4': 'dword', '8': 'qword' };

function immValues(kind: string): string[] {
  switch (kind) {
    case 'imm8': return ['0', '1', '5', '127', '0x80', '255', '-1', '-128', "'A'"];
    case 'imm8sex16': case 'imm8sex32': case 'imm8sex64': return ['0', '3', '-1', '127', '-128', '0x7f'];
    case 'imm16': return ['0x1234', '-1', '65535', '0x100', '-0x8000'];
    case 'imm32': return ['0x12345678', '-1', '0xffffffff', '0x80000000', '0x100', '-129'];
    case 'imm32sex64': return ['0x12345678', '-1', '0x7fffffff', '-0x80000000', '0x100', '-129', 'data_label'];
    case 'imm64': return ['0x123456789abcdef0', '0xffffffff', '-1', '0x100000000', '5', 'data_label', '0x8000000000000000'];
    case 'imm8_const_1': return ['1'];
  }
  return [];
}

function sizeOfKind(kind: string): string | undefined {
  const m = /^r(8|16|32|64)_/.exec(kind);
  return m ? String(Number(m[1]) / 8) : undefined;
}

/** Operand texts for one operand kind; `explicit` adds the size keyword to memory operands. */
function operandTexts(kind: string, explicit: boolean, pick: number): string[] {
  const reg = /^r(8|16|32|64)_(reg|or_mem|opcode|rm|reg_mem)$/.exec(kind);
  if (reg) {
    const regs = REGS[`r${reg[1]}`];
    const out = [regs[pick % regs.length], regs[(pick + 3) % regs.length]];
    if (reg[2] === 'or_mem' || reg[2] === 'reg_mem') {
      const addr = ADDRESSES[(pick * 7) % ADDRESSES.length];
      out.push(explicit ? `${SIZE_WORD[sizeOfKind(kind)!]} ${addr}` : addr);
      out.push(`${SIZE_WORD[sizeOfKind(kind)!]} ${ADDRESSES[(pick * 7 + 11) % ADDRESSES.length]}`);
    }
    return out;
  }
  if (kind === 'mem') return [ADDRESSES[pick % ADDRESSES.length], ADDRESSES[(pick + 5) % ADDRESSES.length]];
  if (['al', 'cl', 'ax', 'dx', 'eax', 'rax', 'fs', 'gs', 'es', 'cs', 'ss', 'ds'].includes(kind)) return [kind];
  if (kind === 'seg_reg') return ['ds', 'es', 'fs', 'gs', 'ss'];
  if (kind === 'cr_reg') return ['cr0', 'cr2', 'cr3', 'cr4', 'cr8'];
  if (kind === 'dr_reg') return ['dr0', 'dr7'];
  if (kind === 'br64_1') return ['$', '$+0x10', '$-0x7e'];
  if (kind === 'br64_4') return ['far_label', 'back_label', 'near_label'];
  if (kind.startsWith('imm')) return immValues(kind);
  return [];
}

function cross(lists: string[][]): string[][] {
  return lists.reduce<string[][]>((acc, l) => acc.flatMap((a) => l.map((x) => [...a, x])), [[]]);
}

/** Lines nasm would reject for reasons of REX, not of the form: keep them out of the corpus. */
function encodable(ops: string[]): boolean {
  const high = ops.some((o) => /\b(ah|bh|ch|dh)\b/.test(o));
  const rex = ops.some((o) => /\b(spl|bpl|sil|dil|r\d+[bwd]?|r[a-z]x|r[sbd]p|r[sd]i)\b/.test(o) && !/^(byte|word|dword|qword)?\s*\[/.test(o)) ||
    ops.some((o) => /\[.*\b(r\d+)/.test(o));
  return !(high && rex);
}

export function generateCorpus(): string[] {
  const lines: string[] = [];
  const seen = new Set<string>();
  const add = (l: string) => {
    if (!seen.has(l)) {
      seen.add(l);
      lines.push(l);
    }
  };
  let pick = 0;
  for (const [mnemonic, forms] of Object.entries(FORMS)) {
    for (const form of forms) {
      pick++;
      const single = form.ops.length === 1 || form.ops.some((k) => k.startsWith('imm'));
      const choices = form.ops.map((k) => operandTexts(k, single, pick));
      if (choices.some((c) => c.length === 0)) continue;
      const combos = cross(choices).filter((ops) => ops.filter((o) => o.includes('[')).length <= 1).filter(encodable);
      // keep the corpus a few thousand lines: at most 12 combinations per form, spread over the list
      const step = Math.max(1, Math.floor(combos.length / 12));
      for (let i = 0; i < combos.length; i += step) {
        let ops = combos[i];
        if (form.code.startsWith('Imul_r') && form.ops.length === 3 && i % 2 === 0 && ops[0] === ops[1]) ops = [ops[0], ops[2]];
        add(`${mnemonic} ${ops.join(', ')}`.trim());
      }
    }
  }
  for (const s of Object.keys(STRING_OPS)) {
    add(s);
    add(`rep ${s}`);
    if (/^(cmps|scas)/.test(s)) add(`repne ${s}`);
  }
  for (const l of EXTRA) add(l);
  return lines;
}

/** Forms the generator does not reach by kind: keyword handling, prefixes, NASM's special cases. */
const EXTRA = [
  'mov rax, 5', 'mov rax, -1', 'mov rax, 0x80000000', 'mov rax, -0x80000000', 'mov rax, 0x100000000', 'mov rax, qword 5',
  'mov rax, strict qword 5', 'mov rax, dword 5', 'mov rax, strict dword 5', 'mov eax, strict dword 5', 'mov rax, data_label',
  'mov rax, data_label - $$', 'mov r9, 0xffffffff', 'mov r9, -2',
  'add eax, dword 5', 'add eax, strict dword 5', 'add rax, qword 5', 'add rax, strict qword 5', 'add rax, byte 5',
  'add eax, strict byte 5', 'add al, byte 5', 'add ebx, strict dword 5', 'add rax, data_label', 'add eax, 0xffffffff',
  'add ax, 0xffff', 'and rax, -16', 'and rax, 0xfffffffffffffff0', 'or ecx, 0x80000000', 'cmp rcx, 300', 'test rax, 1',
  'test rcx, [rax]', 'test [rax], rcx', 'test ecx, edx', 'xchg rcx, rdx', 'xchg rcx, rax', 'xchg rax, rcx', 'xchg eax, eax',
  'xchg rax, rax', 'xchg ax, ax', 'xchg [rax], rcx', 'xchg rcx, [rax]', 'xchg al, cl', 'xchg eax, ecx', 'xchg ecx, eax',
  'push 5', 'push byte 5', 'push word 5', 'push dword 5', 'push qword 5', 'push strict dword 5', 'push strict byte 5',
  'push 300', 'push -1', 'push data_label', 'push qword [rax]', 'pop qword [rax]', 'push word [rax]', 'push fs', 'pop gs',
  'imul rax, 5', 'imul rax, 300', 'imul eax, ecx, byte 5', 'imul eax, ecx, dword 5', 'imul eax, ecx, strict dword 5',
  'shl rax, 1', 'shl rax, byte 1', 'shl eax, strict byte 1', 'shl rax, cl', 'sal rax, 2', 'rol byte [rax], 1', 'shr dword [rbx], 31',
  'int 3', 'int3', 'int1', 'int 0x80', 'ret', 'ret 8', 'ret 0', 'iret', 'iretq', 'pushf', 'popf', 'pushfq', 'popfq', 'leave',
  'nop', 'nop dword [rax]', 'nop word [rax+rax]', 'nop qword [rax]', 'nop eax', 'pause', 'hlt', 'cli', 'sti', 'cld', 'std',
  'clc', 'stc', 'cmc', 'rdmsr', 'wrmsr', 'cpuid', 'rdtsc', 'rdtscp', 'ud2', 'vmmcall', 'vmrun', 'vmload', 'vmsave', 'stgi',
  'clgi', 'mfence', 'lfence', 'sfence', 'cbw', 'cwde', 'cdqe', 'cwd', 'cdq', 'cqo', 'swapgs', 'syscall', 'wbinvd', 'invlpg [rax]',
  'in al, dx', 'in ax, dx', 'in eax, dx', 'in al, 0x60', 'in eax, 0xff', 'out dx, al', 'out dx, eax', 'out 0xe9, al', 'out 0xf4, ax',
  'lidt [rax]', 'lgdt [rel data_label]', 'sidt [rsp]', 'sgdt [rbx+8]',
  'mov cr0, rax', 'mov rax, cr0', 'mov cr4, r15', 'mov r8, cr3', 'mov cr8, rax', 'mov ax, ds', 'mov ds, ax', 'mov eax, fs',
  'mov [rax], ds', 'mov es, [rbx]',
  'lock add qword [rax], 1', 'lock xadd [rax], ecx', 'lock cmpxchg [rdi], rcx', 'lock inc dword [rbx]', 'lock bts qword [rax], 5',
  'lock xchg [rax], rbx', 'lock or byte [rsi+4], 0x80', 'lock dec qword [rel data_label]', 'lock neg byte [rax]',
  'lock not word [rax]', 'lock sub [rax], r8', 'lock btr [rax], rcx',
  'bt rax, 3', 'bts qword [rax], 5', 'bt [rax], rcx', 'btr eax, 31', 'bsf rax, [rbx]', 'bsr ecx, edx',
  'movzx eax, byte [rax]', 'movzx rax, word [rax]', 'movzx eax, al', 'movzx r9d, r10b', 'movsx rax, al', 'movsx eax, word [rbx]',
  'movsxd rax, ecx', 'movsxd rax, dword [rax]', 'movsxd r8, r9d',
  'cmovz eax, ecx', 'cmovnz rax, [rbx]', 'cmovae r8w, r9w', 'setnz al', 'setnz byte [rax]', 'setg r10b', 'seta spl',
  'mul rcx', 'imul rcx', 'imul rax, rcx', 'imul rax, [rcx]', 'div byte [rax]', 'idiv r9', 'neg rax', 'not byte [rbx]',
  'jmp rax', 'call [rax]', 'jmp qword [rax]', 'call rax', 'call r11', 'jmp [rel data_label]', 'call qword [rbx+rcx*8]',
  'jmp short near_label', 'jmp near near_label', 'jz near near_label', 'jnz short back_label', 'jmp $', 'jmp $+2', 'jz $+0x80',
  'jz $-0x7e', 'loop back_label', 'loope back_label', 'loopne near_label', 'loopnz $', 'jrcxz near_label', 'jecxz back_label',
  'call far_label', 'call back_label', 'jmp far_label', 'jmp back_label', 'je far_label', 'jc far_label', 'jpo back_label',
  'mov eax, [rel data_label]', 'mov [rel data_label], rax', 'mov byte [data_label], 1', 'mov qword [rbx], -1',
  'mov word [rbx], 0xffff', 'mov byte [rbx], 255', 'mov dword [rbx+rcx], 0x80000000', 'mov qword [rbx], 0x7fffffff',
  'mov al, [rbx+data_label-$$]', 'mov eax, [abs data_label]', 'mov eax, [rel 0x1000]', 'lea rsi, [rel data_label]',
  'lea rax, [rcx*2]', 'lea rax, [rcx*2+5]', 'lea rax, [rcx*3]', 'lea rax, [rcx*5+rdx]', 'lea rax, [rsp+rax]', 'lea rax, [rax+rsp]',
  'lea rax, [rbp]', 'lea rax, [r13]', 'lea rax, [r12]', 'lea eax, [ebx]', 'lea rax, [rax*1]', 'lea rax, [rbp*1]', 'lea rax, [2*rbx+rcx]',
  'lea rax, [rbx + rbx]', 'lea rax, [rbx - 5 + rcx*4]', 'lea rax, [(rbx)+((8)*rcx)]', 'lea r8, [r8+r8*8]',
  'mov eax, [fs:0]', 'mov rax, [gs:rbx+8]', 'mov eax, [es:rax]',
];

export const SLOT = 16;
/** line number (1-based) of corpus line 0 in corpusSource's text */
export const FIRST_LINE = 6;

/**
 * A complete corpus source around the generated lines (labels the lines refer to included).
 * Each line sits in its own 16-byte slot (no instruction is longer than 15 bytes), so a wrong
 * encoding shows in its own slot and does not shift the others.
 */
export function corpusSource(lines: readonly string[]): string {
  return [
    'bits 64',
    'org 0x100000',
    '_start:',
    'back_label: nop',
    `align ${SLOT}`,
    ...lines.flatMap((l) => [l, `align ${SLOT}`]),
    'near_label: nop',
    'times 300 nop',
    'far_label: nop',
    'section .data',
    'data_label: dq 0',
    '',
  ].join('\n');
}

/** Directives, expressions, sections: the non-instruction half of the corpus. */
export const DIRECTIVE_SOURCES: readonly string[] = [
  `bits 64
org 0x100000
_start: jmp main
msg: db 'hello', 10, 0
     db "dq", 0x41, 'x' + 1, 0b1010, 1010b, 0o17, 17q, 0FFh, (0x_ff_ff & 0xf0f0) >> 12, 1_0
     dw 'a', 0x1234, -1, 'ab', 1, 2
     dd 'abc', 'wxyz', -2
main: mov eax, msg_len
msg_len equ $ - msg
     dq msg, msg_len, $, $$, $ - $$
     dd (3 + 4) * 5 - 6 / 2 % 4, 1 << 4 | 1, 0xF0 >> 4 ^ 3, ~0 & 0xff, -(-5), 7 // -2, -7 %% 3
     times 5 db 0x90
     times 2 dw $ - $$
align 16
     db 1
align 8, db 0xcc
     nop
align 4, nop
     nop
     align 16, mov eax, 1
`,
  `bits 64
section .text
_start: mov rax, [rel counter]
lea rsi, [rel table]
mov ecx, table_end - table
jmp .done
.done: hlt
.loop: dec rcx
jnz .loop
section .data
table: db 1, 2, 3
table_end:
align 8
pointers: dq _start.done, table
section .bss
counter: resq 1
buffer: resb 100
alignb 64
big: resb 4096
section .rodata align=16
ro: db 'x'
section .text
tail: mov [rel buffer], al
  dq big, counter, ro
`,
  `%include "avic.inc"
bits 64
%define VCPUS 4
%define SQR(x) ((x)*(x))
_start:
  mov ecx, MSR_IA32_APICBASE
  rdmsr
  or eax, X2APIC_ENABLE | MSR_IA32_APICBASE_ENABLE
  wrmsr
  mov ecx, X2APIC_ICR
  mov eax, APIC_DM_FIXED | 0x40
  mov edx, VCPUS - 1
  wrmsr
  mov eax, SQR(VCPUS + 1)
  out PORT_CONSOLE, al
  mov rbx, APIC_DEFAULT_PHYS_BASE
  mov eax, [rbx + APIC_LVR]
%ifdef VCPUS
  mov al, VCPUS
%else
  mov al, 0
%endif
%ifndef NOT_DEFINED
  out PORT_DONE, al
%endif
`,
];

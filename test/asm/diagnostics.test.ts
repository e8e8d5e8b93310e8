// Every kind of assembly error, reported as `file:line:col: message` at the exact position.

import assert from 'node:assert/strict';
import { asm, errorsOf } from './asm-helpers';

/** Assembles `lines` (joined with newlines) and returns the error lines. */
function errors(lines: string[], opts: { requireStart?: boolean; files?: Record<string, string> } = {}): string[] {
  return errorsOf(asm(lines.join('\n'), { file: 'g.vasm', ...opts }));
}

function expectOne(lines: string[], expected: string | RegExp, opts: { requireStart?: boolean; files?: Record<string, string> } = {}): void {
  const e = errors(lines, opts);
  assert.equal(e.length, 1, `expected one error, got:\n${e.join('\n')}`);
  if (typeof expected === 'string') assert.equal(e[0], expected);
  else assert.match(e[0], expected);
}

describe('assembler diagnostics', () => {
  it('unknown mnemonic', () => {
    expectOne(['_start:', '    movq rax, rbx'], "g.vasm:2:5: unknown mnemonic 'movq'");
    expectOne(['_start: nop', 'label: frobnicate'], "g.vasm:2:8: unknown mnemonic 'frobnicate'");
  });

  it('impossible operand combinations', () => {
    expectOne(['  lidt rax'], "g.vasm:1:3: invalid combination of operands for 'lidt' (reg64)");
    expectOne(['  mov rax, ebx'], 'g.vasm:1:3: operand sizes do not match (reg64, reg32)');
    expectOne(['  mov eax, qword [rbx]'], 'g.vasm:1:3: operand sizes do not match (reg32, mem64)');
    expectOne(['  mov rax, 1, 2'], "g.vasm:1:3: 'mov' takes 2 operand(s), not 3");
    expectOne(['  inc [rax]'], /^g\.vasm:1:3: operation size not specified/);
    expectOne(['  mov [rax], 5'], /^g\.vasm:1:3: operation size not specified/);
    expectOne(['  lea rax, rbx'], "g.vasm:1:3: invalid combination of operands for 'lea' (reg64, reg64)");
    expectOne(['  lock add rax, 1'], "g.vasm:1:3: 'lock' needs a lockable instruction with a memory destination");
    expectOne(['  rep add rax, 1'], "g.vasm:1:3: 'rep' can only prefix a string instruction (movs, stos, lods, cmps, scas)");
    expectOne(['  mov ah, sil'], /^g\.vasm:1:3: cannot encode this instruction/);
    expectOne(['  mov rax, [rbx*3+rcx]'], 'g.vasm:1:13: invalid scale 3 (use 1, 2, 4 or 8)');
    expectOne(['  mov rax, [rsp*2]'], "g.vasm:1:12: 'rsp' cannot be an index register");
    expectOne(['  mov rax, rbx+1'], 'g.vasm:1:12: a register in an expression must be inside [ ] (a memory operand)');
  });

  it('undefined and duplicate symbols', () => {
    expectOne(['_start: jmp nowhere'], "g.vasm:1:13: symbol 'nowhere' is not defined");
    expectOne(['_start: mov eax, [rel .missing]'], "g.vasm:1:23: symbol '_start.missing' is not defined");
    expectOne(['_start: nop', 'a: nop', '  nop', 'a: nop'], "g.vasm:4:1: symbol 'a' is already defined at g.vasm:2");
    expectOne(['X equ 1', 'X equ 2'], "g.vasm:2:1: symbol 'X' is already defined at g.vasm:1");
    expectOne(['.loop: nop'], "g.vasm:1:1: local label '.loop' has no preceding non-local label");
  });

  it('values out of range', () => {
    expectOne(['  mov al, 300'], "g.vasm:1:11: value 0x12c is out of range for a 8-bit immediate of 'mov'");
    expectOne(['  add rax, 0x80000000'], /^g\.vasm:1:12: value 0x80000000 is out of range for a 64-bit immediate of 'add' \(64-bit operations sign-extend/);
    expectOne(['  db 1, 256'], 'g.vasm:1:9: value 0x100 does not fit in a byte');
    expectOne(['  dw -32769'], 'g.vasm:1:6: value -32769 does not fit in a word');
    expectOne(['  mov eax, [0xfee00030]'], /^g\.vasm:1:12: address 0xfee00030 cannot be encoded: an absolute address is a sign-extended 32-bit displacement/);
    expectOne(['_start: jmp short distant', '  times 200 nop', 'distant: nop'], 'g.vasm:1:9: short jump is out of range');
    expectOne(['_start: loop distant', '  times 200 nop', 'distant: nop'], 'g.vasm:1:9: short jump is out of range');
    expectOne(['  mov rax, [rbx + 0x100000000]'], 'g.vasm:1:12: displacement 0x100000000 does not fit in 32 bits');
    expectOne(['  times -1 nop'], "g.vasm:1:3: the 'times' count is negative (-1)");
    expectOne(['  add eax, word 5'], "g.vasm:1:12: the 'word' immediate does not fit this instruction's operand size");
  });

  it('bad directives', () => {
    expectOne(['  bits 32'], "g.vasm:1:8: only 'bits 64' is supported: guests start in 64-bit mode");
    expectOne(['  section'], "g.vasm:1:10: 'section' needs a section name");
    expectOne(['  section .data align=3'], 'g.vasm:1:23: section alignment must be a power of two');
    expectOne(['  align 3'], 'g.vasm:1:3: the alignment must be a power of two, not 3');
    expectOne(['  default relative'], "g.vasm:1:11: 'default' takes 'rel' or 'abs'");
    expectOne(['%frob x'], "g.vasm:1:2: unsupported preprocessor directive '%frob' (supported: %define, %xdefine, %undef, %include, %ifdef, %ifndef, %elifdef, %elifndef, %else, %endif, %error, %warning)");
    expectOne(['%include "nonexistent.inc"'], /^g\.vasm:1:10: unable to open include file 'nonexistent\.inc'/);
    expectOne(['%ifdef X', 'nop'], 'g.vasm:1:1: %if block is not closed by %endif before the end of the file');
    expectOne(['%endif'], 'g.vasm:1:1: %endif without a matching %ifdef/%ifndef');
    expectOne(['  incbin "x.bin"'], "g.vasm:1:3: 'incbin' is not supported by this assembler");
    expectOne(['  extern printf'], "g.vasm:1:3: 'extern' cannot be used: a flat binary has no linker");
    expectOne(['  equ 5'], "g.vasm:1:3: 'equ' needs a label before it");
    expectOne(['common: nop'], "g.vasm:1:7: identifier expected after 'common'");
    expectOne(['  org 0x1000', '  org 0x2000'], "g.vasm:2:3: 'org' is already 0x1000; a flat binary has one origin");
    expectOne(['  section .bss', '  db 1'], "g.vasm:2:3: data cannot be initialized in the nobits section '.bss'; use resb/resw/resd/resq");
    expectOne(['  resb 0x2000000'], 'g.vasm:1:3: the reserved size is too large (33554432): guest images must end below 16 MiB');
  });

  it('lexical errors', () => {
    expectOne(["  db 'abc"], 'g.vasm:1:6: unterminated string');
    expectOne(['  mov eax, 0x12g'], "g.vasm:1:12: invalid number '0x12g'");
    expectOne(['  mov eax, 1.5'], 'g.vasm:1:12: floating-point constants are not supported');
    expectOne(['  mov eax, `\\q`'], "g.vasm:1:12: unknown escape '\\q' in backquoted string");
    expectOne(['  mov eax, 5 # 3'], "g.vasm:1:14: unexpected character '#'");
    expectOne(['  mov eax, (5'], "g.vasm:1:14: expected ')' at end of line");
  });

  it('errors inside an %include point into the included file', () => {
    const e = errors(['%include "inc.vasm"', '_start: nop'], { files: { 'inc.vasm': 'nop\n  bogus rax\n' } });
    assert.deepEqual(e, ["inc.vasm:2:3: unknown mnemonic 'bogus'"]);
  });

  it('_start must exist and be the first byte of the image', () => {
    expectOne(['  nop'], "g.vasm:1:1: no '_start' label: every vCPU enters the image at its first byte (0x100000), which must be labelled '_start'", { requireStart: true });
    expectOne(['  nop', '_start: nop'], "g.vasm:2:1: '_start' must be the first byte of the image (0x100000), but it is at 0x100001", { requireStart: true });
    assert.deepEqual(errors(['section .data', 'd: db 1', 'section .text', '_start: nop'], { requireStart: true }), []);
  });

  it('keeps going after an error and reports every line', () => {
    const e = errors(['_start: foo', '  mov al, 999', '  jmp nowhere', '  nop']);
    assert.equal(e.length, 3);
    assert.deepEqual(e.map((x) => x.split(':')[1]), ['1', '2', '3']);
  });

  it('warnings do not fail the assembly', () => {
    const r = asm('_start:\nlonely\n  mov eax, [rel 0x1000]\n', { file: 'g.vasm' });
    assert.ok(r.ok);
    assert.deepEqual(r.diagnostics.map((d) => `${d.line}:${d.col}:${d.severity}`), ['2:1:warning', '3:12:warning']);
  });
});

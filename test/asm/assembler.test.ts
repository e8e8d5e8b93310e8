// What the assembler gives the debugger and the CLI besides bytes: symbols, sections, the line
// table (through %include), the listing, and the preprocessor.

import assert from 'node:assert/strict';
import { formatListing } from '../../src/asm/listing';
import { asm, errorsOf, hexOf } from './asm-helpers';

describe('assembler output', () => {
  it('lays out .text at org 0x100000, then .data aligned, then .bss', () => {
    const r = asm(['_start: mov eax, [rel counter]', '  ret', 'section .data', 'msg: db "hi", 0', 'section .bss', 'counter: resd 1', 'buf: resb 10'].join('\n'));
    assert.deepEqual(errorsOf(r), []);
    const sym = (n: string) => r.symbols.find((s) => s.name === n)!;
    assert.equal(sym('_start').value, 0x100000n);
    assert.equal(sym('msg').value, 0x100008n); // .text is 7 bytes; .data is aligned to 4
    assert.equal(sym('counter').value, 0x10000cn);
    assert.equal(sym('buf').value, 0x100010n);
    assert.equal(sym('msg').section, '.data');
    assert.equal(r.org, 0x100000);
    assert.equal(r.image.length, 0xb); // .bss is not in the file
    assert.equal(r.end, 0x10001a);
    assert.deepEqual(r.sections.map((s) => [s.name, s.start, s.size, s.nobits]), [
      ['.text', 0x100000, 7, false], ['.data', 0x100008, 3, false], ['.bss', 0x10000c, 14, true]]);
    // RIP-relative: counter - (0x100000 + 6)
    assert.equal(hexOf(r.image.subarray(0, 6)), '8b0500000000'.replace('00000000', '06000000'));
  });

  it('honours org and reports equ constants and local labels', () => {
    const r = asm(['org 0x200000', 'N equ 3 * 4', '_start:', '.loop: dec ecx', '  jnz .loop', 'other:', '.loop: nop'].join('\n'));
    assert.deepEqual(errorsOf(r), []);
    const byName = Object.fromEntries(r.symbols.map((s) => [s.name, [s.value, s.kind]]));
    assert.deepEqual(byName, {
      N: [12n, 'equ'], _start: [0x200000n, 'label'], '_start.loop': [0x200000n, 'label'], other: [0x200004n, 'label'], 'other.loop': [0x200004n, 'label'],
    });
    assert.equal(hexOf(r.image), 'ffc975fc90');
  });

  it('maps addresses to lines and lines to addresses, through %include', () => {
    const files = { 'lib.vasm': 'helper:\n  mov eax, 1\n  ret\n' };
    const r = asm(['_start: call helper', '  times 3 nop', '  hlt', '%include "lib.vasm"'].join('\n'), { file: 'main.vasm', files });
    assert.deepEqual(errorsOf(r), []);
    assert.deepEqual(r.lines.lookup(0x100000), { file: 'main.vasm', line: 1, start: 0x100000 });
    assert.deepEqual(r.lines.lookup(0x100006), { file: 'main.vasm', line: 2, start: 0x100005 });
    assert.deepEqual(r.lines.lookup(0x100008), { file: 'main.vasm', line: 3, start: 0x100008 });
    assert.deepEqual(r.lines.lookup(0x10000a), { file: 'lib.vasm', line: 2, start: 0x100009 });
    assert.deepEqual(r.lines.lookup(0x10000e), { file: 'lib.vasm', line: 3, start: 0x10000e });
    assert.equal(r.lines.lookup(0x10000f), undefined);
    assert.deepEqual(r.lines.addresses('lib.vasm', 2), [0x100009]);
    assert.deepEqual(r.lines.addresses('main.vasm', 4), []);
    assert.deepEqual(r.lines.linesOf('lib.vasm'), [2, 3]);
    assert.deepEqual(r.files, ['main.vasm', 'lib.vasm']);
  });

  it('prints a NASM-style listing with absolute addresses', () => {
    const r = asm(['_start: mov rax, 0x123456789abcdef0 ; long', '  times 2 nop', 'section .bss', 'b: resq 2'].join('\n'));
    assert.equal(formatListing(r.listing), [
      '     1 00100000 48B8F0DEBC9A785634-     _start: mov rax, 0x123456789abcdef0 ; long',
      '     1 00100009 12',
      '     2 0010000A 90<rep 2h>                times 2 nop',
      '     3                                  section .bss',
      '     4 0010000C <res 10h>               b: resq 2',
      '',
    ].join('\n'));
  });

  it('expands %define (object- and function-like), %ifdef and %else', () => {
    const r = asm(['%define N 4', '%define SQ(x) ((x) * (x))', '%ifdef N', '_start: mov eax, SQ(N + 1)', '%else', '_start: hlt', '%endif',
      '%ifndef N', '  ud2', '%endif', '%undef N', '%ifdef N', '  ud2', '%endif'].join('\n'));
    assert.deepEqual(errorsOf(r), []);
    assert.equal(hexOf(r.image), 'b819000000');
  });

  it('evaluates $ as the start of a times line in every repetition, as NASM does', () => {
    const r = asm('_start: times 3 jmp $\n times 2 dw $ - $$\n');
    assert.equal(hexOf(r.image), 'ebfeebfcebfa' + '0600'.repeat(2));
  });

  it("carries `default rel` from the end of one pass into the next, as NASM does", () => {
    // NASM does not reset the mode between passes: a reference above `default rel` becomes RIP-relative too
    const r = asm('_start: mov eax, [_start]\ndefault rel\nmov eax, [_start]\n');
    assert.equal(hexOf(r.image), '8b05faffffff8b05f4ffffff');
  });

  it('relaxes jumps: short while the target is near, near once it is not', () => {
    const near = asm('_start: jz t\n times 127 nop\nt: nop');
    const far = asm('_start: jz t\n times 128 nop\nt: nop');
    assert.equal(hexOf(near.image.subarray(0, 2)), '747f');
    assert.equal(hexOf(far.image.subarray(0, 6)), '0f8480000000');
  });
});

// The DAP `disassemble` data (src/debug/disassembly.ts): NASM text, forward and backward from an
// address, source lines and labels, unreadable memory, the decode cache following memory
// changes, and no side effect on the machine.

import assert from 'node:assert/strict';
import type { AssembleResult } from '../../src/asm/assembler';
import { type DisassembledInstruction, disassemble, lineLookupFor } from '../../src/debug/disassembly';
import { pokeLinear } from '../../src/machine/cpu/peek';
import type { Cpu } from '../../src/machine/cpu/cpu';
import { DEFAULT_OPTIONS, Machine } from '../../src/machine/machine';
import { asm, errorsOf } from '../asm/asm-helpers';

const GUEST = `
_start: mov     eax, 1
        out     0xe9, al
        mov     ecx, 5
.loop:  dec     ecx
        jnz     .loop
        out     0xf4, al
%include "lib.vasm"
`;
const LIB = `
helper: xor     eax, eax
        ret
`;

function load(source = GUEST): { m: Machine; r: AssembleResult; sym(name: string): number } {
  const r = asm(source, { requireStart: true, file: 'guest.vasm', files: { 'lib.vasm': LIB } });
  assert.deepEqual(errorsOf(r), []);
  const m = new Machine({ ...DEFAULT_OPTIONS }, r.image, r.org, r.end);
  return { m, r, sym: (n) => Number(r.symbols.find((s) => s.name === n)!.value) };
}

const texts = (list: readonly DisassembledInstruction[]) => list.map((i) => i.instruction);
const addr = (a: number | bigint) => '0x' + BigInt(a).toString(16).padStart(16, '0');

/** each entry ends where the next one starts, and the last one starts at `at` */
function assertChained(list: readonly DisassembledInstruction[], at: number): void {
  assert.equal(list[list.length - 1].address, addr(at));
  for (let i = 0; i + 1 < list.length; i++) {
    const end = BigInt(list[i].address) + BigInt(list[i].instructionBytes!.split(' ').length);
    assert.equal(end, BigInt(list[i + 1].address), `entry ${i}`);
  }
}

/** everything a debugger read must leave as it was */
function snapshot(m: Machine): unknown {
  const tlb = (c: Cpu) => {
    const t = c as unknown as { tlbR: Int32Array; tlbW: Int32Array };
    return [...t.tlbR, ...t.tlbW];
  };
  return { tables: [...m.mem.ram.slice(0x2000, 0x8000)], tlb: m.cpus.map(tlb), events: m.events.length, code: [...m.mem.codePages] };
}

describe('disassembly: the DAP disassemble request', () => {
  it('decodes forward in NASM syntax with lowercase hex, bytes and 16-digit addresses', () => {
    const { m, sym } = load();
    const list = disassemble(m.cpus[0], BigInt(sym('_start')), 0, 8);
    assert.equal(list.length, 8);
    assert.deepEqual(texts(list), ['mov eax, 1', 'out 0xe9, al', 'mov ecx, 5', 'dec ecx', `jne 0x${sym('_start.loop').toString(16)}`,
      'out 0xf4, al', 'xor eax, eax', 'ret']);
    assert.equal(list[0].address, '0x0000000000100000');
    assert.equal(list[0].instructionBytes, 'b8 01 00 00 00');
    assert.equal(list[1].address, addr(0x100005));
    assert.equal(list[1].instructionBytes, 'e6 e9');
    // a positive offset skips instructions
    assert.deepEqual(texts(disassemble(m.cpus[0], BigInt(sym('_start')), 2, 2)), ['mov ecx, 5', 'dec ecx']);
  });

  it('maps instructions to source lines, files and labels', () => {
    const { m, r, sym } = load();
    const list = disassemble(m.cpus[0], BigInt(sym('_start')), 0, 8, lineLookupFor(r, '/work/guests/guest.vasm'));
    assert.deepEqual(list.map((i) => i.line), [2, 3, 4, 5, 6, 7, 2, 3]);
    assert.deepEqual(list[0].location, { name: 'guest.vasm', path: '/work/guests/guest.vasm' });
    assert.deepEqual(list[6].location, { name: 'lib.vasm', path: '/work/guests/lib.vasm' });
    assert.deepEqual(list.map((i) => i.symbol), ['_start', '_start+0x5', '_start+0x7', '_start.loop', '_start.loop+0x2',
      '_start.loop+0x4', 'helper', 'helper+0x2']);
    // without a source path, the assembler's names
    const plain = lineLookupFor(r)(BigInt(sym('helper')));
    assert.deepEqual(plain, { path: 'lib.vasm', line: 2, symbol: 'helper', start: BigInt(sym('helper')) });
    assert.equal(lineLookupFor(r)(0x200000n), undefined);
  });

  it('decodes backwards from an earlier anchor: the entries end exactly at the address', () => {
    const { m, r, sym } = load();
    const cpu = m.cpus[0];
    const lines = lineLookupFor(r, '/g/guest.vasm');
    const done = sym('_start.loop') + 4; // out 0xf4, al
    const forward = disassemble(cpu, BigInt(sym('_start')), 0, 8, lines);
    assert.deepEqual(disassemble(cpu, BigInt(done), -3, 5, lines), forward.slice(2, 7));
    assert.deepEqual(disassemble(cpu, BigInt(done), -5, 2, lines), forward.slice(0, 2), 'a range entirely before the address');
    assert.deepEqual(disassemble(cpu, BigInt(done), -1, 1, lines), forward.slice(4, 5));
    // far back: the zeros before the image decode as `add [rax], al`, and the code is found exactly
    const far = disassemble(cpu, BigInt(done), -40, 41, lines);
    assert.equal(far.length, 41);
    assert.deepEqual(far.slice(35, 41), forward.slice(0, 6));
    assert.deepEqual(texts(far.slice(0, 35)), Array(35).fill('add [rax], al'));
    // without the line table, the boundaries still chain and land on the address (the zeros before
    // the code may be decoded at an odd offset, swallowing the first opcode)
    const plain = disassemble(cpu, BigInt(done), -5, 6);
    assertChained(plain, done);
    assert.deepEqual(plain.slice(2), disassemble(cpu, BigInt(done), -3, 4, lines).map(({ address, instruction, instructionBytes }) => ({ address, instruction, instructionBytes })));
  });

  it('lands on the address even after bytes that mislead a decoder (an opcode swallowing the code)', () => {
    const { m, r, sym } = load(`
_start: jmp     main
        db      0x48, 0xb8              ; mov rax, imm64: the 8 bytes after it look like its operand
main:   mov     eax, 1
        out     0xe9, al
        out     0xf4, al`);
    const target = sym('main') + 5;
    for (const n of [1, 2, 3, 4]) {
      const list = disassemble(m.cpus[0], BigInt(target), -n, n + 1);
      assert.equal(list.length, n + 1);
      assert.equal(list[n].address, addr(target));
      assert.equal(list[n].instruction, 'out 0xe9, al');
      assertChained(list, target);
    }
    // with the line table: exact as far back as the lines are code (the `db` line is not)
    const exact = disassemble(m.cpus[0], BigInt(target), -1, 2, lineLookupFor(r));
    assert.deepEqual(texts(exact), ['mov eax, 1', 'out 0xe9, al']);
    for (const n of [2, 3, 4]) {
      const list = disassemble(m.cpus[0], BigInt(target), -n, n + 1, lineLookupFor(r));
      assertChained(list, target);
      assert.deepEqual(texts(list.slice(-2)), ['mov eax, 1', 'out 0xe9, al']);
    }
  });

  it('gives <unreadable> entries for MMIO, unmapped pages and instructions that run into them', () => {
    const { m } = load();
    const cpu = m.cpus[0];
    const apic = disassemble(cpu, 0xfee00000n, 0, 3);
    assert.deepEqual(apic.map((i) => [i.address, i.instruction, i.presentationHint]), [
      [addr(0xfee00000), '<unreadable>', 'invalid'], [addr(0xfee01000), '<unreadable>', 'invalid'], [addr(0xfee02000), '<unreadable>', 'invalid']]);
    // the last bytes of RAM (64 MiB): an instruction whose tail is above RAM
    assert.equal(pokeLinear(cpu, 0x3fffffen, new Uint8Array([0xb8, 0x01])), 2);
    const edge = disassemble(cpu, 0x3fffffen, 0, 2);
    assert.deepEqual(edge.map((i) => [i.address, i.instruction, i.instructionBytes]), [
      [addr(0x3fffffe), '<unreadable>', 'b8 01'], [addr(0x4000000), '<unreadable>', undefined]]);
    // backwards across a page the guest's tables do not map (page directory 0, entry 7: 0xe00000-0xffffff)
    m.mem.view.setBigUint64(0x4000 + 7 * 8, 0n, true);
    const back = disassemble(cpu, 0x1000000n, -2, 3);
    assert.deepEqual(texts(back), ['<unreadable>', '<unreadable>', 'add [rax], al']);
    assert.deepEqual(back.map((i) => i.address), [addr(0xffe000), addr(0xfff000), addr(0x1000000)]);
    // near address 0 there is nothing before: padding entries wrap around from 2^64
    const low = disassemble(cpu, 0n, -2, 3);
    assert.deepEqual(texts(low), ['<unreadable>', '<unreadable>', 'add [rax], al']);
    assert.equal(low[1].address, '0xffffffffffffffff');
  });

  it('shows memory as it is now: a cached decode is not reused once the bytes change', () => {
    const { m, sym } = load();
    const cpu = m.cpus[0];
    const at = BigInt(sym('_start'));
    assert.equal(disassemble(cpu, at, 0, 1)[0].instruction, 'mov eax, 1');
    pokeLinear(cpu, at + 1n, new Uint8Array([7]));
    assert.equal(disassemble(cpu, at, 0, 1)[0].instruction, 'mov eax, 7');
    pokeLinear(cpu, at, new Uint8Array([0x90, 0x0f, 0x0b]));
    assert.deepEqual(texts(disassemble(cpu, at, 0, 2)), ['nop', 'ud2']);
    pokeLinear(cpu, at, new Uint8Array([0x06])); // push es: invalid in 64-bit mode
    assert.equal(disassemble(cpu, at, 0, 1)[0].instruction, '(bad)');
  });

  it('changes nothing in the machine: page tables, TLB, decoded code, events', () => {
    const { m, r, sym } = load(`
_start: mov     eax, [value]
stop:   out     0xe9, al
        out     0xf4, al
        section .data
value:  dd 0x41`);
    m.setBreakpoints([sym('stop')]);
    assert.deepEqual(m.run(), { kind: 'breakpoint', vcpu: 0 });
    const before = snapshot(m);
    const cpu = m.cpus[0];
    const lines = lineLookupFor(r, '/g/guest.vasm');
    disassemble(cpu, BigInt(sym('stop')), -10, 50, lines);
    disassemble(cpu, 0x1200000n, -100, 200, lines);
    disassemble(cpu, 0xfee00000n, -5, 10, lines);
    disassemble(cpu, 0x40000000n, 0, 20, lines);
    assert.deepEqual(snapshot(m), before);
    m.setBreakpoints([]);
    cpu.skipBreakpoint = true;
    assert.deepEqual(m.run(), { kind: 'end', status: 'done' });
    assert.equal(m.cpus[0].reg64(0), 0x41n);
  });
});

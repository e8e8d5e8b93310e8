// The debugger's side-effect-free memory access (src/machine/cpu/peek.ts): the page walk sets no
// accessed/dirty bit and fills no TLB entry, MMIO is never read, faults are named, and a poke
// over decoded code is seen by the next run.

import assert from 'node:assert/strict';
import { DEFAULT_OPTIONS, Machine } from '../../src/machine/machine';
import { peekLinear, peekTranslate, pokeLinear } from '../../src/machine/cpu/peek';
import type { Cpu } from '../../src/machine/cpu/cpu';
import { build, run } from './helpers';

const DONE = 'out 0xf4, al';
/** the loader's PML4, PDPT and four page directories */
const TABLES = [0x2000, 0x8000] as const;

function tables(m: Machine): Uint8Array {
  return m.mem.ram.slice(TABLES[0], TABLES[1]);
}

function tlb(cpu: Cpu): number[] {
  const c = cpu as unknown as { tlbR: Int32Array; tlbW: Int32Array };
  return [...c.tlbR, ...c.tlbW];
}

describe('peek: debugger reads and writes without side effects', () => {
  const src = `
        default rel
_start: mov     eax, [value]
        mov     [result], eax
        ${DONE}
        section .data
value:  dd 0x12345678
result: dd 0`;

  it('reads guest memory through the page tables', () => {
    const r = run(src);
    const b = build(src);
    const p = peekLinear(r.machine.cpus[0], BigInt(b.symbol('value')), 8);
    assert.equal(p.readable, 8);
    assert.deepEqual([...p.bytes], [0x78, 0x56, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12]);
    const t = peekTranslate(r.machine.cpus[0], 0x12345678n);
    assert.ok('phys' in t);
    assert.equal(t.phys, 0x12345678);
    assert.equal(t.pageSize, 0x200000);
    assert.equal(t.writable, true);
  });

  it('sets no accessed or dirty bit and fills no TLB entry (reads and pokes)', () => {
    const r = run(src);
    const m = r.machine;
    const cpu = m.cpus[0];
    const before = tables(m);
    const tlbBefore = tlb(cpu);
    // the guest touched only the first 2 MiB page: these entries have A (and D) clear
    const pde = (a: number) => m.mem.view.getUint32(0x4000 + (a >>> 21) * 8, true);
    assert.equal(pde(0x1200000) & 0x60, 0);
    assert.equal(pde(0x40000000 + 0x1000) & 0x60, 0);
    assert.equal(peekLinear(cpu, 0x1200000n, 64).readable, 64);
    assert.equal(peekLinear(cpu, 0x3ff0000n, 0x20000).readable, 0x10000); // runs off the end of 64 MiB of RAM
    assert.equal(pokeLinear(cpu, 0x1200000n, new Uint8Array([1, 2, 3, 4])), 4);
    assert.ok('phys' in peekTranslate(cpu, 0x40001000n, true));
    assert.deepEqual(tables(m), before, 'page-table bytes are unchanged');
    assert.deepEqual(tlb(cpu), tlbBefore, 'the TLB is unchanged');
    assert.deepEqual([...peekLinear(cpu, 0x1200000n, 4).bytes], [1, 2, 3, 4]);
  });

  it('never reads MMIO: the APIC page and addresses above RAM are unreadable, and no event is logged', () => {
    const m = run(src).machine;
    const cpu = m.cpus[0];
    const events = m.events.length;
    const bus = m as unknown as { mmioRead: unknown; mmioWrite: unknown };
    bus.mmioRead = () => assert.fail('mmioRead called');
    bus.mmioWrite = () => assert.fail('mmioWrite called');
    assert.equal(peekLinear(cpu, 0xfee00000n, 16).readable, 0);
    assert.equal(peekLinear(cpu, 0xfee00020n, 4).bytes.length, 0);
    assert.equal(pokeLinear(cpu, 0xfee000b0n, new Uint8Array([0, 0, 0, 0])), 0);
    const t = peekTranslate(cpu, 0xfee00000n);
    assert.ok('phys' in t && t.phys === 0xfee00000, 'mapped, but not RAM');
    assert.equal(m.events.length, events);
  });

  it('names the reason a translation fails', () => {
    const f = run(`
        ; unmap 2 MiB at 0x800000 (page directory 0, entry 4) and set XD (without EFER.NXE) at 0xA00000
_start: mov     qword [0x4000 + 4*8], 0
        mov     rax, 1 << 63
        or      [0x4000 + 5*8], rax
        invlpg  [0x800000]
        ${DONE}`);
    const cpu = f.machine.cpus[0];
    assert.deepEqual(peekTranslate(cpu, 0x800010n), { fault: 'not present at PDE' });
    assert.deepEqual(peekTranslate(cpu, 0xa00000n), { fault: 'reserved bit set at PDE (XD without EFER.NXE)' });
    assert.deepEqual(peekTranslate(cpu, 0x0000800000000000n), { fault: 'non-canonical' });
    assert.deepEqual(peekTranslate(cpu, 0x8000000000n), { fault: 'not present at PML4E' });
    assert.deepEqual(peekTranslate(cpu, 0x100000000n), { fault: 'not present at PDPTE' });
    assert.equal(peekLinear(cpu, 0x7ffff0n, 0x100).readable, 0x10, 'stops at the unmapped page');
    assert.equal(pokeLinear(cpu, 0x800000n, new Uint8Array(4)), 0);
    // a 4 KiB page table that lies outside RAM: not present; a large page with reserved address bits
    const v = f.machine.mem.view;
    v.setBigUint64(0x4000 + 6 * 8, 0x7fff0003n, true);
    assert.deepEqual(peekTranslate(cpu, 0xc00000n), { fault: 'not present at PTE (its table at 0x7fff0000 is outside RAM)' });
    v.setBigUint64(0x4000 + 7 * 8, 0xe02083n, true);
    assert.deepEqual(peekTranslate(cpu, 0xe00000n), { fault: 'reserved bits set at PDE (large page address)' });
    // a 4 KiB mapping through a page table in RAM, read-only and not present in turn
    v.setBigUint64(0x4000 + 8 * 8, 0x9003n, true);
    v.setBigUint64(0x9000 + 3 * 8, 0x2000001n, true);
    const t = peekTranslate(cpu, 0x1003123n, true);
    assert.ok('phys' in t);
    assert.equal(t.phys, 0x2000123);
    assert.equal(t.writable, false);
    assert.equal(t.pageSize, 4096);
    assert.equal(pokeLinear(cpu, 0x1003120n, new Uint8Array([9])), 1, 'a read-only page is written (kernel poke)');
    assert.equal(f.machine.mem.ram[0x2000120], 9);
    assert.deepEqual(peekTranslate(cpu, 0x1004000n), { fault: 'not present at PTE' });
  });

  it('a poke over decoded code is run: the blocks of the page are dropped', () => {
    const src = `
_start: xor     ecx, ecx
again:  mov     eax, 1          ; b8 01 00 00 00: the debugger pokes the immediate
        inc     ecx
stop:   cmp     ecx, 3
        jne     again
        ${DONE}`;
    const b = build(src);
    const m = new Machine({ ...DEFAULT_OPTIONS }, b.image, b.org, b.end);
    const cpu = m.cpus[0];
    m.setBreakpoints([b.symbol('stop')]);
    // the second stop comes after the block at `again` has been decoded and run
    assert.deepEqual(m.run(), { kind: 'breakpoint', vcpu: 0 });
    cpu.skipBreakpoint = true;
    assert.deepEqual(m.run(), { kind: 'breakpoint', vcpu: 0 });
    assert.equal(cpu.reg64(1), 2n);
    assert.equal(cpu.reg64(0), 1n);
    assert.equal(m.mem.codePages[b.symbol('again') >>> 12], 1, 'the loop is decoded');
    assert.equal(pokeLinear(cpu, BigInt(b.symbol('again') + 1), new Uint8Array([7])), 1);
    m.setBreakpoints([]);
    assert.deepEqual(m.run(), { kind: 'end', status: 'done' });
    assert.equal(cpu.reg64(0), 7n);
    assert.equal(cpu.reg64(1), 3n);
  });
});

// The machine and its CPU as a guest sees them: the start state of contracts/guest.md, the ports,
// exceptions through the guest's IDT, paging, determinism, breakpoints, self-modifying code, and
// robustness against random images.

import assert from 'node:assert/strict';
import { DEFAULT_OPTIONS, Machine } from '../../src/machine/machine';
import { runResult } from '../../src/machine/result';
import { build, machineFor, run, withIdt } from './helpers';

const DONE = 'out 0xf4, al';

describe('machine: start state and ports (contracts/guest.md)', () => {
  it('every vCPU starts at _start with RDI = index, its own stack, RFLAGS 0x2', () => {
    const r = run(`_start: ${DONE}`, { vcpus: 3 });
    assert.equal(r.result.status, 'done');
    for (let i = 0; i < 3; i++) {
      const v = r.result.vcpus[i];
      assert.equal(v.state, 'done');
      assert.equal(v.regs.rdi, `0x${i.toString(16).padStart(16, '0')}`);
      assert.equal(BigInt(v.regs.rsp), 0x03000000n - BigInt(i) * 0x10000n);
      assert.equal(v.regs.rip, '0x0000000000100000'); // at the `out`
      assert.equal(v.regs.rflags, '0x0000000000000002');
      for (const name of ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rbp', 'r8', 'r15']) assert.equal(BigInt(v.regs[name]), 0n, name);
    }
  });

  it('control registers, EFER, descriptor tables and selectors read as the contract says', () => {
    const r = run(`
_start: mov     rax, cr0
        mov     rbx, cr3
        mov     rcx, cr4
        mov     r8, rcx
        mov     ecx, 0xc0000080
        rdmsr
        mov     r9, rax
        mov     rax, cr0
        sgdt    [gdtr]
        sidt    [idtr]
        mov     r10, [gdtr]
        mov     r11, [idtr]
        mov     r12w, cs
        mov     r13w, ss
        mov     r14w, ds
        pushfq
        pop     r15
        ${DONE}
        section .data
gdtr:   times 10 db 0xaa
        align 8
idtr:   times 10 db 0xbb`);
    assert.equal(r.reg('rax'), 0x80010011n);
    assert.equal(r.reg('rbx'), 0x2000n);
    assert.equal(r.reg('r8'), 0x20n);
    assert.equal(r.reg('r9'), 0x500n);
    assert.equal(r.reg('r10') & 0xffffffffffffn, 0x10000017n); // limit 0x17, then base 0x1000
    assert.equal(r.reg('r11') & 0xffffffffffffn, 0n);
    assert.equal(r.reg('r12') & 0xffffn, 0x08n);
    assert.equal(r.reg('r13') & 0xffffn, 0x10n);
    assert.equal(r.reg('r14') & 0xffffn, 0x10n);
    assert.equal(r.reg('r15'), 0x2n);
  });

  it('the GDT and page tables are in memory where the contract puts them', () => {
    const m = machineFor(`_start: ${DONE}`);
    const v = m.mem.view;
    assert.equal(v.getBigUint64(0x1008, true), 0x00af9a000000ffffn);
    assert.equal(v.getBigUint64(0x1010, true), 0x00cf92000000ffffn);
    assert.equal(v.getBigUint64(0x2000, true), 0x3003n);
    assert.equal(v.getBigUint64(0x3018, true), 0x7003n);
    assert.equal(v.getBigUint64(0x4000 + 3 * 0x1000 + 511 * 8, true), (2047n << 21n) | 0x83n);
  });

  it('CPUID: initial APIC ID, x2APIC and APIC bits, leaf 0xB x2APIC ID; SVM only with --nested on', () => {
    const src = `
_start: mov     eax, 1
        cpuid
        mov     r8, rbx
        mov     r9, rcx
        mov     r10, rdx
        mov     eax, 0xb
        xor     ecx, ecx
        cpuid
        mov     r11, rdx
        mov     eax, 0x80000001
        cpuid
        mov     r12, rcx
        ${DONE}`;
    const r = run(src, { vcpus: 3 });
    for (let i = 0; i < 3; i++) {
      assert.equal(r.reg('r8', i) >> 24n, BigInt(i));
      assert.ok(r.reg('r9', i) & (1n << 21n));
      assert.ok(r.reg('r10', i) & (1n << 9n));
      assert.equal(r.reg('r11', i), BigInt(i));
      assert.equal(r.reg('r12', i) & 4n, 0n);
    }
    assert.equal(run(src, { nested: true }).reg('r12') & 4n, 4n);
  });

  it('port 0xE9 is the console (every byte of a wide write), other ports read all-ones and are logged', () => {
    const r = run(`
_start: mov     eax, 0x0a636261
        out     0xe9, eax
        in      al, 0x80
        mov     bl, al
        mov     dx, 0x1234
        in      eax, dx
        out     0x81, al
        ${DONE}`);
    assert.equal(r.result.console, 'abc\n');
    assert.equal(r.reg('rbx') & 0xffn, 0xffn);
    assert.equal(r.reg('rax'), 0xffffffffn);
    const pio = r.machine.events.filter((e) => e.kind === 'pio' && e.unhandled);
    assert.equal(pio.length, 3);
  });

  it('reads outside RAM and devices return all-ones and are logged', () => {
    const r = run(`
_start: mov     rbx, 0x80000000
        mov     eax, [rbx]
        mov     dword [rbx], 5
        ${DONE}`);
    assert.equal(r.reg('rax'), 0xffffffffn);
    assert.deepEqual(r.machine.events.filter((e) => e.kind === 'mmio-read' || e.kind === 'mmio-write').map((e) => e.kind), ['mmio-read', 'mmio-write']);
  });

  it('ends: done, halted (hlt with nothing to wake it), step-limit, triple-fault', () => {
    assert.equal(run(`_start: ${DONE}`).result.status, 'done');
    const halted = run('_start: hlt');
    assert.equal(halted.result.status, 'halted');
    assert.equal(halted.result.vcpus[0].state, 'halted');
    assert.equal(halted.result.vcpus[0].regs.rip, '0x0000000000100001'); // after the hlt
    const limited = run('_start: jmp _start', { maxSteps: 12345 });
    assert.equal(limited.result.status, 'step-limit');
    assert.equal(limited.result.steps, 12345);
    const tf = run('_start: ud2');
    assert.equal(tf.result.status, 'triple-fault');
    assert.equal(tf.result.vcpus[0].state, 'triple-fault');
    // one vCPU done, one halted: the run is halted
    assert.equal(run(`_start: test edi, edi\n jz .d\n hlt\n.d: ${DONE}`, { vcpus: 2 }).result.status, 'halted');
  });
});

describe('machine: exceptions through the guest IDT', () => {
  const read = (m: Machine, addr: number) => m.mem.view.getBigUint64(addr, true);

  function faultRun(body: string, data = '') {
    const src = withIdt(`${body}\n        ${DONE}`, data);
    const b = build(src);
    const r = run(src);
    assert.equal(r.result.status, 'done', `the guest must survive its fault (${r.result.status})`);
    return { r, at: (name: string) => read(r.machine, b.symbol(name)), sym: b.symbol };
  }

  it('#DE on a zero divisor and on an idiv overflow, returning with iretq', () => {
    const f = faultRun(`
        mov     qword [skip], e1 - fault1
        xor     ecx, ecx
        mov     eax, 7
fault1: div     ecx
e1:`);
    assert.equal(f.at('last_vector'), 0n);
    assert.equal(f.at('last_rip'), BigInt(f.sym('fault1')));
    const g = faultRun(`
        mov     qword [skip], e1 - fault1
        mov     rax, 0x8000000000000000
        cqo
        mov     rcx, -1
fault1: idiv    rcx
e1:`);
    assert.equal(g.at('last_vector'), 0n);
    assert.equal(g.at('fault_count'), 1n);
  });

  it('#UD, #BP (a trap: the saved RIP is after int3) and int n', () => {
    const f = faultRun(`
        mov     qword [skip], e1 - f1
f1:     ud2
e1:     mov     qword [skip], 0
        int3
after:  mov     qword [skip], 0
        int     0x1f`);
    assert.equal(f.at('fault_count'), 3n);
    assert.equal(f.at('last_vector'), 0x1fn);
  });

  it('#GP(0) for a non-canonical address and an unknown MSR; RFLAGS.IF cleared by the interrupt gate frame', () => {
    const f = faultRun(`
        mov     qword [skip], e1 - g1
        mov     rbx, 0x0000800000000000
g1:     mov     eax, [rbx]
e1:     mov     qword [skip], e2 - g2
        mov     ecx, 0x12345678
g2:     rdmsr
e2:`);
    assert.equal(f.at('fault_count'), 2n);
    assert.equal(f.at('last_vector'), 13n);
    assert.equal(f.r.reg('rcx'), 0x12345678n); // the guest went on after each fault at the next instruction
    assert.equal(f.at('last_error'), 0n);
    assert.equal(f.at('last_rip'), BigInt(f.sym('g2')));
  });

  it('#PF with CR2 and the error code: not present, then a write to a read-only page', () => {
    const f = faultRun(`
        ; unmap 2 MiB at 0x800000 (page directory 0, entry 4), and make 0xA00000 read-only (entry 5)
        mov     qword [0x4000 + 4*8], 0
        and     qword [0x4000 + 5*8], ~2
        invlpg  [0x800000]
        invlpg  [0xa00000]
        mov     qword [skip], e1 - p1
        mov     rbx, 0x800010
p1:     mov     eax, [rbx]
e1:     mov     r12, [last_error]
        mov     r13, [last_cr2]
        mov     qword [skip], e2 - p2
        mov     rbx, 0xa00020
p2:     mov     [rbx], eax
e2:`);
    const r = f.r;
    assert.equal(r.reg('r12'), 0n); // not present, read, supervisor
    assert.equal(r.reg('r13'), 0x800010n);
    assert.equal(f.at('last_vector'), 14n);
    assert.equal(f.at('last_error'), 3n); // present, write
    assert.equal(f.at('last_cr2'), 0xa00020n);
  });

  it('without an IDT: #DE then (contributory + contributory) #DF then a triple fault; #UD (benign) goes through #GP first', () => {
    const vectors = (src: string) => {
      const r = run(src);
      assert.equal(r.result.status, 'triple-fault');
      return r.machine.events.filter((e) => e.kind === 'exception').map((e) => (e as { vector: number }).vector);
    };
    assert.deepEqual(vectors('_start: xor ecx, ecx\n div ecx'), [0, 8]);
    assert.deepEqual(vectors('_start: ud2'), [6, 13, 8]);
  });
});

describe('machine: execution details', () => {
  it('rep movsb/stosq/cmpsb with DF, and RCX counts down', () => {
    const r = run(`
        default rel
_start: lea     rsi, [src]
        lea     rdi, [dst]
        mov     ecx, 5
        rep movsb
        mov     r8, rcx
        lea     rdi, [fill]
        mov     rax, 0x1122334455667788
        mov     ecx, 2
        rep stosq
        lea     rsi, [src]
        lea     rdi, [dst]
        mov     ecx, 10
        repe cmpsb
        mov     r9, rcx
        std
        lea     rsi, [src + 4]
        lodsb
        mov     r10, rsi
        cld
        ${DONE}
        section .data
src:    db 'hello'
dst:    db 0, 0, 0, 0, 0, 9
        align 8
fill:   dq 0, 0`);
    const b = build(`_start: ${DONE}`);
    void b;
    assert.equal(r.reg('r8'), 0n);
    assert.equal(r.reg('r9'), 4n); // 5 equal bytes, then 'h' vs 9... stops at the 6th compare
    assert.equal(r.reg('rax') & 0xffn, BigInt('o'.charCodeAt(0)));
  });

  it('self-modifying code: a write over decoded code runs the new instruction', () => {
    const r = run(`
        default rel
_start: mov     ecx, 2
.again: call    patch
        dec     ecx
        jnz     .again
        ${DONE}
patch:  mov     eax, 1          ; b8 01 00 00 00: the guest rewrites the immediate
        mov     byte [patch + 1], 7
        ret`);
    assert.equal(r.reg('rax'), 7n);
  });

  it('self-modifying code: a store into the next instruction of the running block takes effect at once', () => {
    const r = run(`
        default rel
_start: mov     byte [.imm + 1], 9  ; the immediate of the mov right after this store
.imm:   mov     eax, 1
        mov     ebx, eax
        ${DONE}`);
    assert.equal(r.reg('rbx'), 9n);
  });

  it('an instruction across the end of the bytes a block decodes from starts the next block (no false #UD)', () => {
    // straight-line code longer than a block's fetch window, with an instruction across its end
    const stores = Array.from({ length: 50 }, (_, i) => `        mov     qword [buf], ${i + 1}`).join('\n');
    const r = run(`
        default rel
_start: test    edi, edi
        jnz     .out
${stores}
        mov     rax, [buf]
.out:   ${DONE}
        align   4096
buf:    dq 0`);
    assert.equal(r.result.status, 'done');
    assert.equal(r.reg('rax'), 50n);
  });

  it('data beside code on the same page: stores there do not throw the decoded code away', () => {
    // a loop that stores to a counter on its own code page 10,000 times
    const r = run(`
        default rel
_start: mov     ecx, 10000
.loop:  inc     dword [counter]
        dec     ecx
        jnz     .loop
        mov     eax, [counter]
        ${DONE}
counter: dd 0`);
    assert.equal(r.reg('rax'), 10000n);
    assert.ok(r.machine.blocks.built < 10, `${r.machine.blocks.built} blocks built: the loop was decoded again after stores beside it`);
  });

  it('is deterministic: the same options give the same events; seeds change random schedules', () => {
    const src = `
        default rel
_start: lock inc dword [counter]
        mov     eax, [counter]
        out     0xe9, al
        ${DONE}
        section .data
counter: dd '0'`;
    const a = run(src, { vcpus: 4, sched: 'random', seed: 7, quantum: 3 });
    const b = run(src, { vcpus: 4, sched: 'random', seed: 7, quantum: 3 });
    assert.deepEqual(a.machine.events, b.machine.events);
    assert.deepEqual(a.machine.scheduler.choices, b.machine.scheduler.choices);
    const orders = new Set<string>();
    for (let seed = 1; seed <= 12; seed++) {
      const c = run(src, { vcpus: 4, sched: 'random', seed, quantum: 3 });
      orders.add(c.machine.events.filter((e) => e.kind === 'pio').map((e) => e.vcpu).join(','));
    }
    assert.ok(orders.size > 1, 'different seeds give different interleavings');
    assert.equal(run(src, { vcpus: 4 }).result.console, '1234');
  });

  it('breakpoints stop a vCPU before the instruction, and it can resume past it', () => {
    const src = `
_start: mov     eax, 1
        mov     ebx, 2
target: mov     ecx, 3
        ${DONE}`;
    const b = build(src);
    const m = new Machine({ ...DEFAULT_OPTIONS }, b.image, b.org, b.end);
    m.setBreakpoints([b.symbol('target')]);
    const stop = m.run();
    assert.deepEqual(stop, { kind: 'breakpoint', vcpu: 0 });
    assert.equal(m.cpus[0].rip, b.symbol('target'));
    assert.equal(m.cpus[0].reg64(3), 2n);
    assert.equal(m.cpus[0].reg64(1), 0n);
    m.cpus[0].skipBreakpoint = true;
    assert.deepEqual(m.run(), { kind: 'end', status: 'done' });
    assert.equal(m.cpus[0].reg64(1), 3n);
  });

  it('CMOVcc with a 32-bit destination zero-extends even when the condition is false', () => {
    const r = run(`
_start: mov     rax, -1
        xor     ebx, ebx
        cmp     ebx, ebx
        cmovne  eax, ebx
        ${DONE}`);
    assert.equal(r.reg('rax'), 0xffffffffn);
  });

  it('64-bit multiply and divide', () => {
    const r = run(`
_start: mov     rax, 0xfedcba9876543210
        mov     rcx, 0x123456789abcdef
        mul     rcx
        mov     r8, rdx
        mov     r9, rax
        div     rcx
        mov     r10, rax
        mov     r11, rdx
        mov     rax, -7
        mov     rcx, 2
        cqo
        idiv    rcx
        mov     r12, rax
        mov     r13, rdx
        imul    r14, rcx, -3
        ${DONE}`);
    const a = 0xfedcba9876543210n;
    const c = 0x123456789abcdefn;
    assert.equal((r.reg('r8') << 64n) | r.reg('r9'), a * c);
    assert.equal(r.reg('r10'), a);
    assert.equal(r.reg('r11'), 0n);
    assert.equal(BigInt.asIntN(64, r.reg('r12')), -3n);
    assert.equal(BigInt.asIntN(64, r.reg('r13')), -1n);
    assert.equal(BigInt.asIntN(64, r.reg('r14')), -6n);
  });
});

describe('machine: fast paths are exact', () => {
  // fused cmp/dec/test + jcc pairs, a register-only tight loop, a loop with memory, an exception
  const src = withIdt(`
        mov     ecx, 1000
        xor     eax, eax
.tight: add     rax, rcx
        xor     rbx, rax
        dec     rcx
        jnz     .tight
        mov     ecx, 300
.mem:   add     [counter], rcx
        cmp     ecx, 150
        jne     .skip
        mov     qword [skip], .e1 - .f1
.f1:    ud2
.e1:
.skip:  test    ecx, 1
        jz      .even
        inc     rdx
.even:  dec     ecx
        jnz     .mem
        mov     r10, [counter]
        out     0xf4, al`, 'counter: dq 0');

  it('big quanta (whole and fused blocks) and one instruction at a time give the same state and step count', () => {
    const runs = [1000, 97, 7, 1].map((quantum) => run(src, { quantum }));
    const reference = runs[runs.length - 1].result;
    assert.equal(reference.status, 'done');
    assert.equal(BigInt(reference.vcpus[0].regs.r10), (300n * 301n) / 2n);
    for (const r of runs) {
      assert.deepEqual(r.result.vcpus, reference.vcpus);
      assert.equal(r.result.steps, reference.steps);
      assert.equal(r.result.stats.instructions, reference.stats.instructions);
    }
  });

  it('dead flags: ALU ops whose flags the next op overwrites skip them in whole blocks, and nothing can tell', () => {
    // each op's flags are overwritten by the next but for the ones pushfq and adc read; the
    // observed flags accumulate in r12 and r13, and one instruction at a time records them all
    const dead = withIdt(`
        mov     ecx, 500
        mov     rax, 0x7ffffffffffffff0
.loop:  add     rax, rcx
        sub     eax, 3
        and     rbx, rax
        or      edx, 0x7f
        xor     r8, rdx
        cmp     rax, rbx
        test    ecx, 3
        add     r9, -5
        pushfq
        pop     r11
        add     r12, r11
        sub     rbx, rdx
        adc     r13, 0
        xor     r14, r14
        add     r14, rax
        setc    r15b
        test    rcx, 1                  ; dead: cmp overwrites every flag
        cmp     rcx, 250
        stc                             ; CF = 1 in RFLAGS itself
        or      rdx, rbx                ; before dec: only its CF (clear) survives
        dec     rbx
        adc     r10, 0                  ; reads that CF
        and     eax, edx                ; before inc: the same, 32-bit
        inc     edx
        pushfq
        pop     rsi
        add     r12, rsi
        dec     rcx
        jnz     .loop
        out     0xf4, al`, '');
    const runs = [1000, 13, 1].map((quantum) => run(dead, { quantum }));
    const reference = runs[runs.length - 1].result;
    assert.equal(reference.status, 'done');
    assert.notEqual(BigInt(reference.vcpus[0].regs.r12), 0n);
    for (const r of runs) assert.deepEqual(r.result.vcpus, reference.vcpus);
  });

  it('a step budget can end inside a fused pair and inside a tight loop', () => {
    const m = machineFor(src);
    let steps = 0;
    while (m.endStatus() === undefined) {
      m.run(3);
      steps += 3;
    }
    assert.equal(m.steps, run(src).result.steps);
    assert.ok(steps >= m.steps);
  });
});

describe('machine: robustness', () => {
  function rng(seed: number): () => number {
    let s = seed;
    return () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 4294967296;
    };
  }

  it('random byte images and random registers never raise a host exception', () => {
    const r = rng(42);
    for (let k = 0; k < 300; k++) {
      const image = new Uint8Array(64 + Math.floor(r() * 512));
      for (let i = 0; i < image.length; i++) image[i] = Math.floor(r() * 256);
      const m = new Machine({ ...DEFAULT_OPTIONS, vcpus: 1 + Math.floor(r() * 3), maxSteps: 20000, quantum: 1 + Math.floor(r() * 50) }, image);
      for (const cpu of m.cpus) for (let i = 0; i < 32; i++) cpu.r[i] = Math.floor(r() * 4294967296) | 0;
      const stop = m.run();
      assert.equal(stop.kind, 'end');
      const result = runResult(m, (stop as { status: 'done' }).status);
      assert.ok(['done', 'step-limit', 'halted', 'triple-fault'].includes(result.status));
    }
  });

  it('a guest that loops forever stops at the step limit', () => {
    assert.equal(run('_start: pause\n jmp _start', { maxSteps: 50000, vcpus: 2 }).result.status, 'step-limit');
  });
});

// The LAPIC timer on virtual time (lapic.c @ v6.3; one step is one nanosecond, KVM's APIC bus
// runs at 1 GHz): one-shot, periodic (with KVM's 200 us minimum period) and TSC-deadline modes,
// delivered through the IDT to a halted vCPU, with AVIC on (trap-style LVTT/TMICT/TDCR writes)
// and off (emulated MMIO).

import assert from 'node:assert/strict';
import { MIN_TIMER_PERIOD_NS } from '../../src/machine/kvm/lapic';
import { run } from './helpers';

/** An IDT whose vectors 0x40 and 0x41 count into [ticks40]/[ticks41] and EOI; then `main`. */
function guest(main: string): string {
  return `
        bits 64
        default rel
_start: lea     rdi, [idt + 0x40 * 16]
        lea     rax, [isr40]
        call    gate
        lea     rdi, [idt + 0x41 * 16]
        lea     rax, [isr41]
        call    gate
        lidt    [idtr]
        mov     rbx, 0xfee00000
        mov     dword [rbx + 0xf0], 0x1ff          ; SPIV: software-enabled
        jmp     main
gate:   mov     [rdi], ax
        mov     word [rdi + 2], 0x08
        mov     word [rdi + 4], 0x8e00
        shr     rax, 16
        mov     [rdi + 6], ax
        shr     rax, 16
        mov     [rdi + 8], eax
        ret
isr40:  inc     dword [ticks40]
        mov     dword [rbx + 0xb0], 0              ; EOI
        iretq
isr41:  inc     dword [ticks41]
        mov     dword [rbx + 0xb0], 0
        iretq
main:
${main}
        out     0xf4, al
        section .data
        align   16
idt:    times 256 dq 0, 0
idtr:   dw 256 * 16 - 1
        dq idt
ticks40: dd 0
ticks41: dd 0
`;
}

for (const avic of [true, false]) {
  describe(`the LAPIC timer (--avic ${avic ? 'on' : 'off'})`, () => {
    it('one-shot: TMCCT counts down from TMICT; the interrupt wakes HLT once; TMCCT then reads 0', () => {
      const r = run(guest(`
        mov     dword [rbx + 0x3e0], 0xb               ; TDCR: divide by 1
        mov     dword [rbx + 0x320], 0x40              ; LVTT: one-shot, vector 0x40
        mov     dword [rbx + 0x380], 100000            ; TMICT
        mov     r8d, [rbx + 0x390]                     ; TMCCT right after
        sti
.wait:  hlt
        cmp     dword [ticks40], 1
        jb      .wait
        mov     r9d, [rbx + 0x390]
        mov     r10d, [ticks40]`), { avic });
      assert.equal(r.result.status, 'done');
      const first = Number(r.reg('r8'));
      assert.ok(first > 90000 && first < 100000, `TMCCT ${first}`);
      assert.equal(r.reg('r9'), 0n);
      assert.equal(r.reg('r10'), 1n);
      assert.ok(r.machine.steps >= 100000, 'virtual time reached the deadline');
      assert.ok(r.machine.events.some((e) => e.kind === 'irq-accept' && e.vector === 0x40));
    });

    it('divide configuration: TDCR = 0 divides by 2', () => {
      const r = run(guest(`
        mov     dword [rbx + 0x3e0], 0                 ; divide by 2
        mov     dword [rbx + 0x320], 0x40 | (1 << 16)  ; masked: no interrupt
        mov     dword [rbx + 0x380], 1000
        mov     ecx, 300
.spin:  dec     ecx
        jnz     .spin
        mov     r8d, [rbx + 0x390]`), { avic });
      const left = Number(r.reg('r8'));
      // about 300 * 2 steps have passed: 2 ns per count at divide 2
      assert.ok(left > 600 && left < 900, `TMCCT ${left}`);
      assert.equal(r.result.status, 'done');
    });

    it(`periodic: KVM's minimum period (${MIN_TIMER_PERIOD_NS} ns) applies; three ticks`, () => {
      const r = run(guest(`
        mov     dword [rbx + 0x3e0], 0xb
        mov     dword [rbx + 0x320], 0x40 | (1 << 17)  ; periodic
        mov     dword [rbx + 0x380], 10                ; 10 ns: clamped
        sti
.wait:  hlt
        cmp     dword [ticks40], 3
        jb      .wait
        mov     dword [rbx + 0x320], 1 << 16           ; stop`), { avic });
      assert.equal(r.result.status, 'done');
      assert.ok(r.machine.steps >= 3 * MIN_TIMER_PERIOD_NS && r.machine.steps < 4 * MIN_TIMER_PERIOD_NS, `${r.machine.steps} steps`);
    });

    it('TSC-deadline: IA32_TSC_DEADLINE arms it, reads back until it fires, then 0; TMICT is ignored', () => {
      const r = run(guest(`
        mov     dword [rbx + 0x320], 0x41 | (2 << 17)  ; TSC-deadline mode, vector 0x41
        mov     dword [rbx + 0x380], 5                 ; ignored in this mode
        mov     r11d, [rbx + 0x380]
        rdtsc
        shl     rdx, 32
        or      rax, rdx
        add     rax, 50000
        mov     r12, rax
        mov     rdx, rax
        shr     rdx, 32
        mov     ecx, 0x6e0
        wrmsr
        rdmsr
        shl     rdx, 32
        or      rax, rdx
        mov     r8, rax                                ; the deadline, read back
        sti
.wait:  hlt
        cmp     dword [ticks41], 1
        jb      .wait
        rdmsr
        mov     r9d, eax                               ; 0 once it fired
        rdtsc
        shl     rdx, 32
        or      rax, rdx
        mov     r10, rax`), { avic });
      assert.equal(r.result.status, 'done');
      // KVM ignores the write; with AVIC the trap-style write has already reached the backing page,
      // which accelerated reads return
      assert.equal(r.reg('r11'), avic ? 5n : 0n);
      assert.equal(r.reg('r8'), r.reg('r12'));
      assert.equal(r.reg('r9'), 0n);
      assert.ok(r.reg('r10') >= r.reg('r12'), 'the interrupt came at or after the deadline');
    });

    it('HLT with nothing to wake it ends the run `halted`', () => {
      const r = run(guest(`
.wait:  hlt
        jmp     .wait`), { avic });
      assert.equal(r.result.status, 'halted');
      assert.equal(r.result.vcpus[0].state, 'halted');
    });
  });
}

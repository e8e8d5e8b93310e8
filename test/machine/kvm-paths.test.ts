// KVM paths no scenario of the thread takes: the IRQWIN inhibit around an interrupt window,
// x2AVIC's unintercepted x2APIC ICR, the vCPU limits of AVIC with and without x2AVIC.

import assert from 'node:assert/strict';
import { APICV_INHIBIT_REASON_IRQWIN } from '../../src/machine/kvm/kvm_host';
import { parseHostAction } from '../../src/machine/kvm/userspace';
import { machineFor, run } from './helpers';

/** vector 0x40 counts into [ticks] and EOIs (xAPIC MMIO or x2APIC MSR, as `x2` says) */
function withHandler(main: string, x2 = false): string {
  const eoi = x2 ? 'push rcx\n        push rax\n        push rdx\n        mov ecx, 0x80b\n        xor eax, eax\n        xor edx, edx\n        wrmsr\n        pop rdx\n        pop rax\n        pop rcx'
    : 'push rbx\n        mov rbx, 0xfee000b0\n        mov dword [rbx], 0\n        pop rbx';
  return `
        bits 64
        default rel
_start: lea     rsi, [idt + 0x40 * 16]
        lea     rax, [isr]
        mov     [rsi], ax
        mov     word [rsi + 2], 0x08
        mov     word [rsi + 4], 0x8e00
        shr     rax, 16
        mov     [rsi + 6], ax
        shr     rax, 16
        mov     [rsi + 8], eax
        lidt    [idtr]
        jmp     main
isr:    lock inc dword [ticks]
        ${eoi}
        iretq
main:
${main}
        section .data
        align   16
idt:    times 256 dq 0, 0
idtr:   dw 256 * 16 - 1
        dq idt
ticks:  dd 0
flag:   dd 0
`;
}

describe('KVM paths', () => {
  it('IRQWIN: with APICv already inhibited, an interrupt waiting for IF opens a window (set), the VINTR exit clears it', () => {
    const r = run(withHandler(`
        mov     rbx, 0xfee00000
        mov     dword [rbx + 0xf0], 0x1ff
        test    edi, edi
        jnz     .sender
.wait:  cmp     dword [flag], 1                        ; vCPU 0, IF = 0: the IPI stays pending
        jne     .wait
        mov     ecx, 2000
.idle:  dec     ecx                                    ; long enough for KVM to see it and want a window
        jnz     .idle
        sti
        nop
.take:  cmp     dword [ticks], 1
        jb      .take
        out     0xf4, al
.sender:
        mov     dword [rbx + 0x310], 0
        mov     dword [rbx + 0x300], 0x40
        mov     dword [flag], 1
        out     0xf4, al`), {
      vcpus: 2, quantum: 100,
      // APIC_ID_MODIFIED from the start: APICv is off on every vCPU, KVM injects
      hostActions: [parseHostAction('step=0:set-lapic-id=7:1')],
    });
    assert.equal(r.result.status, 'done', JSON.stringify(r.result.violations));
    const irqwin = r.machine.events.filter((e) => e.kind === 'inhibit-change' && e.reason === APICV_INHIBIT_REASON_IRQWIN);
    assert.deepEqual(irqwin.map((e) => e.kind === 'inhibit-change' && [e.set, e.flip]), [[true, false], [false, false]]);
    assert.ok(r.machine.events.some((e) => e.kind === 'vmexit' && e.name === 'SVM_EXIT_VINTR'));
    assert.equal(r.reg('rip', 0) > 0n, true);
  });

  it('x2AVIC: an x2APIC ICR write to a running vCPU needs no exit; it arrives by doorbell', () => {
    const x2on = 'mov ecx, 0x1b\n        rdmsr\n        or eax, 1 << 10\n        wrmsr';
    const r = run(withHandler(`
        ${x2on}
        mov     ecx, 0x80f
        mov     eax, 0x1ff
        xor     edx, edx
        wrmsr                                          ; SPIV (x2APIC): software-enabled
        lock inc dword [flag]
.both:  cmp     dword [flag], 2
        jb      .both
        test    edi, edi
        jnz     .sender
        sti
.take:  cmp     dword [ticks], 1
        jb      .take
        out     0xf4, al
.sender:
        mov     ecx, 0x830
        mov     eax, 0x40
        xor     edx, edx                               ; to x2APIC ID 0
        wrmsr
        out     0xf4, al`, true), { vcpus: 2, x2avic: true, quantum: 50 });
    assert.equal(r.result.status, 'done', JSON.stringify(r.result.violations));
    const icrWrites = r.machine.events.filter((e) => e.kind === 'msr-write' && e.msr === 0x830);
    assert.deepEqual(icrWrites, [], 'the ICR write was not intercepted');
    assert.ok(!r.machine.events.some((e) => e.kind === 'ipi'), 'KVM sent no IPI: the hardware did');
    assert.ok(!r.machine.events.some((e) => e.kind === 'vmexit' && e.vcpu === 1 && e.name === 'SVM_EXIT_MSR' && e.info2 === 0x830n));
  });

  it('512 vCPUs run with x2AVIC or without AVIC; AVIC without x2AVIC stops at 255, as KVM_CREATE_VCPU does', () => {
    const prog = `
        bits 64
        default rel
_start: lock inc dword [count]
        out     0xf4, al
        section .data
count:  dd 0`;
    for (const opts of [{ avic: true, x2avic: true }, { avic: false }]) {
      const r = run(prog, { vcpus: 512, ...opts });
      assert.equal(r.result.status, 'done');
      assert.ok(r.result.vcpus.every((v) => v.state === 'done'));
    }
    assert.equal(run(prog, { vcpus: 255 }).result.status, 'done');
    assert.throws(() => machineFor(prog, { vcpus: 256 }), /--vcpus 256: AVIC without x2AVIC \(--avic on --x2avic off\) allows at most 255 vCPUs/);
  });
});

describe('INIT and SIPI', () => {
  const prog = (icr: string) => `
        bits 64
        default rel
_start: mov     rbx, 0xfee00000
        mov     dword [rbx + 0xf0], 0x1ff
        test    edi, edi
        jnz     .ap
.wait:  cmp     dword [count], 100                     ; the BSP: let the AP run a little
        jb      .wait
        mov     dword [rbx + 0x310], 1 << 24
        mov     dword [rbx + 0x300], ${icr}
        out     0xf4, al
.ap:    lock inc dword [count]
        jmp     .ap
        section .data
count:  dd 0`;

  it('INIT to an AP stops it in KVM_MP_STATE_INIT_RECEIVED, waiting for a SIPI', () => {
    const r = run(prog('0x4500'), { vcpus: 2 });
    assert.equal(r.result.status, 'halted');
    assert.deepEqual(r.result.vcpus.map((v) => v.state), ['done', 'halted']);
    assert.ok(r.machine.events.some((e) => e.kind === 'irq-accept' && e.deliveryMode === 5 && e.apicId === 1));
  });

  it('a SIPI would start the AP in real mode: the run ends with an error that says so', () => {
    const r = run(prog('0x4500\n        mov dword [rbx + 0x300], 0x4608'), { vcpus: 2 });
    assert.equal(r.result.status, 'error');
    assert.equal(r.result.vcpus[1].state, 'blocked');
    assert.match(r.result.errors![0], /vCPU 1 received INIT and SIPI \(vector 0x8\): it would start at 0x8000 in real mode, which this CPU model does not run/);
  });
});

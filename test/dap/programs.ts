// Small guest programs for the adapter tests, written to a temp dir. Each says what it is for;
// tests find lines by the text on them (`lineOf`), never by number.

import { program } from './dap-client';

/**
 * Two vCPUs. vCPU 0 counts RAX 1..5 into `counter`, then calls outer -> inner (a two-deep call
 * chain for guest frames and stepping), stores the result, prints "ok" and stops. vCPU 1 waits
 * until the count is done, then stops.
 */
export const CALLS = `; calls.vasm - guest frames, stepping, conditions
; avic-run: --vcpus 2
%include "avic.inc"
        bits 64
        default rel
        section .text
_start:
        test    edi, edi
        jnz     idle
        xor     eax, eax
.count: inc     eax                     ; rax = 1, 2, ...
        mov     [counter], eax          ; COUNT-STORE
        cmp     eax, 5
        jne     .count
        call    outer                   ; CALL-OUTER
        mov     [result], rax           ; AFTER-OUTER
        mov     al, 'o'
        out     PORT_CONSOLE, al
        mov     al, 'k'
        out     PORT_CONSOLE, al
        out     PORT_DONE, al

; outer: RAX + inner(RAX)               ; NO-CODE
outer:  mov     rbx, rax                ; OUTER-FIRST
        call    inner                   ; CALL-INNER
        add     rax, rbx                ; AFTER-INNER
        ret
inner:  add     rax, rax                ; INNER-FIRST
        ret                             ; INNER-RET
idle:   pause                           ; IDLE
        cmp     dword [counter], 5
        jne     idle
        out     PORT_DONE, al

        section .data
counter:    dd 0
result:     dq 0
`;

/**
 * Every vCPU increments its own counter forever: pause and continue find them all moving. The
 * counters live on a page of their own (a store to the code page costs the model a block-cache
 * flush, which would make this loop slow).
 */
export const SPIN = `; spin.vasm - every vCPU counts forever
; avic-run: --vcpus 3
%include "avic.inc"
        bits 64
        default rel
        section .text
_start:
        lea     rbx, [counters]
.loop:  inc     qword [rbx + rdi * 8]
        jmp     .loop

        section .data align=4096
counters:   dq 0, 0, 0
`;

/**
 * One vCPU software-enables its LAPIC (SPIV) with IF = 0, stops at READY, then spins a while:
 * an IRQ injected meanwhile (console `irq`, a `msi` host action) stays in IRR.
 */
export const APIC_ON = `; apic-on.vasm - a software-enabled LAPIC with interrupts off
%include "avic.inc"
        bits 64
        default rel
        section .text
_start:
        mov     rbx, APIC_DEFAULT_PHYS_BASE
        mov     dword [rbx + APIC_SPIV], 0x1ff
        nop                                 ; READY
        mov     ecx, 2000
.spin:  pause
        dec     ecx
        jnz     .spin
        out     PORT_DONE, al
`;

/** Assembly errors: the launch must fail naming file:line:col. */
export const BAD = `; bad.vasm
%include "avic.inc"
        bits 64
        section .text
_start: mov     eax, 1
        movx    eax, ebx
        out     PORT_DONE, al
`;

export const write = {
  calls: () => program('calls.vasm', CALLS),
  spin: () => program('spin.vasm', SPIN),
  apicOn: () => program('apic-on.vasm', APIC_ON),
  bad: () => program('bad.vasm', BAD),
};

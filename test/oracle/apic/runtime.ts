// runtime.ts - the assembly every LAPIC corpus guest shares (corpus.ts puts it in front of the
// generated test code): per-vCPU set-up, a 256-vector IDT (exceptions resume at a per-check
// fix-up address and are reported as "#GP(0)"; interrupts log a snapshot line; NMIs are counted),
// text-line output into a per-vCPU buffer, checked RDMSR/WRMSR/MMIO accesses, mode-independent
// APIC register access (xAPIC MMIO or x2APIC MSRs, chosen by a per-vCPU flag), barriers, bounded
// waits, and the finish code that prints every vCPU's buffer in vCPU order (so that the console
// is the same under any interleaving), zeroes every GPR but RSP, sets RFLAGS = 0x2 and writes
// port 0xF4.
//
// Conventions: R15 = this vCPU's per-CPU block (never changed), DF = 0, IF = 0 in the test code
// (only the wait/spin routines enable interrupts, and they disable them again before returning).

/** Per-CPU blocks: PERCPU_BASE + index * PERCPU_STRIDE (zero RAM on every executor). */
export const PERCPU_BASE = 0x800000;
export const PERCPU_STRIDE = 0x10000;

/** Field offsets in the per-CPU block. */
export const PC = {
  IDX: 0x00, // vCPU index (RDI at start)
  FIX: 0x08, // resume address for the next exception (0: an exception is fatal)
  EXC: 0x10, // vector of the exception taken by the last check, -1 if none
  EC: 0x18, // its error code (0 for vectors without one)
  X2: 0x20, // 1 while the test code has put this vCPU in x2APIC mode (apic_rd/apic_wr use MSRs)
  BASE: 0x28, // xAPIC MMIO base used by apic_rd/apic_wr
  NIRQ: 0x30, // interrupts taken (vectors 0x20..0xff)
  HOOK: 0x38, // address called by the interrupt handler after its snapshot (0: none)
  NOEOI: 0x40, // 1: the interrupt handler does not write EOI
  NNMI: 0x48, // NMIs taken
  TEXT: 0x50, // end of the text in the output buffer
  QUIET: 0x58, // 1: the interrupt handler counts but prints nothing
  SKIPEOI: 0x60, // 1: skip the handler's EOI once (a hook has written it)
  SAVED: 0x68, // interrupt count saved before a step
  PHASE: 0x70, // name of the current phase (interrupt lines are "<phase>.irq<n>"), 0: "irq<n>"
  PNIRQ: 0x78, // interrupts taken in the current phase
  NSPUR: 0x80, // spurious-vector (0xFF) interrupts: counted only (no line, no hook, no EOI)
  VCNT: 0x400, // 256 qwords: interrupts taken per vector
  SNAP: 0xc00, // ISR (8 dwords) then IRR (8 dwords) of the last snapshot
  BUF: 0x1000, // output text, up to the end of the block
} as const;

/** Bound of the interrupt waits (iterations of a pause loop); a wait that runs out prints "timeout". */
export const WAIT_CAP = 1000000;
/** Iterations of the pause loop that gives a pending interrupt a chance to be taken. */
export const SPIN = 3000;

const EXC_NAMES = [
  'DE', 'DB', 'NMI', 'BP', 'OF', 'BR', 'UD', 'NM', 'DF', '09', 'TS', 'NP', 'SS', 'GP', 'PF', '0f',
  'MF', 'AC', 'MC', 'XM', 'VE', 'CP', '16', '17', '18', '19', '1a', '1b', 'HV', 'VC', 'SX', '1f',
];
/** Vectors that push an error code. */
export const EXC_WITH_EC = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
const EC_MASK = [...EXC_WITH_EC].reduce((m, v) => m | (1 << v), 0) >>> 0;

/** The runtime's code (to be placed right after `_start`'s jump) and its data. */
export function runtimeCode(ncpu: number): string {
  const stubs: string[] = [];
  for (let v = 0; v < 256; v++) {
    const h = v.toString(16).padStart(2, '0');
    stubs.push(`vec_${h}:`);
    if (v === 2) stubs.push('    jmp nmi_entry');
    else if (v < 32) {
      if (!EXC_WITH_EC.has(v)) stubs.push('    push 0');
      stubs.push(`    push 0x${h}`, '    jmp exc_common');
    } else stubs.push(`    push 0x${h}`, '    jmp irq_common');
  }
  return String.raw`
NCPU        equ ${ncpu}
PERCPU_BASE equ 0x${PERCPU_BASE.toString(16)}
PC_IDX      equ 0x${PC.IDX.toString(16)}
PC_FIX      equ 0x${PC.FIX.toString(16)}
PC_EXC      equ 0x${PC.EXC.toString(16)}
PC_EC       equ 0x${PC.EC.toString(16)}
PC_X2       equ 0x${PC.X2.toString(16)}
PC_BASE     equ 0x${PC.BASE.toString(16)}
PC_NIRQ     equ 0x${PC.NIRQ.toString(16)}
PC_HOOK     equ 0x${PC.HOOK.toString(16)}
PC_NOEOI    equ 0x${PC.NOEOI.toString(16)}
PC_NNMI     equ 0x${PC.NNMI.toString(16)}
PC_TEXT     equ 0x${PC.TEXT.toString(16)}
PC_QUIET    equ 0x${PC.QUIET.toString(16)}
PC_SKIPEOI  equ 0x${PC.SKIPEOI.toString(16)}
PC_SAVED    equ 0x${PC.SAVED.toString(16)}
PC_PHASE    equ 0x${PC.PHASE.toString(16)}
PC_PNIRQ    equ 0x${PC.PNIRQ.toString(16)}
PC_NSPUR    equ 0x${PC.NSPUR.toString(16)}
PC_VCNT     equ 0x${PC.VCNT.toString(16)}
PC_SNAP     equ 0x${PC.SNAP.toString(16)}
PC_BUF      equ 0x${PC.BUF.toString(16)}

; ---- start: per-CPU block, IDT ------------------------------------------------------------
rt_start:
    cli
    cld
    mov rbx, rdi
    mov rax, rdi
    shl rax, 16
    lea r15, [rax + PERCPU_BASE]
    mov rdi, r15
    mov ecx, PC_SNAP / 8
    xor eax, eax
    rep stosq
    mov [r15 + PC_IDX], rbx
    mov qword [r15 + PC_EXC], -1
    mov eax, 0xFEE00000
    mov [r15 + PC_BASE], rax
    lea rax, [r15 + PC_BUF]
    mov [r15 + PC_TEXT], rax
    lea rsi, [rel stub_table]
    lea rdi, [rel idt]
    xor ecx, ecx
.gate:
    mov rax, [rsi + rcx*8]
    mov [rdi], ax
    mov word [rdi + 2], 0x08
    mov word [rdi + 4], 0x8E00
    shr rax, 16
    mov [rdi + 6], ax
    shr rax, 16
    mov [rdi + 8], eax
    mov dword [rdi + 12], 0
    add rdi, 16
    inc ecx
    cmp ecx, 256
    jb .gate
    lidt [rel idtr]
    jmp main

; ---- exceptions: resume at PC_FIX, or report a fatal one and finish ------------------------
exc_common:
    push rax
    mov rax, [r15 + PC_FIX]
    test rax, rax
    jz .fatal
    mov [rsp + 24], rax
    mov qword [r15 + PC_FIX], 0
    mov rax, [rsp + 8]
    mov [r15 + PC_EXC], rax
    mov rax, [rsp + 16]
    mov [r15 + PC_EC], rax
    pop rax
    add rsp, 16
    iretq
.fatal:
    mov rax, [rsp + 8]
    mov [r15 + PC_EXC], rax
    mov rax, [rsp + 16]
    mov [r15 + PC_EC], rax
    mov rax, [rsp + 24]
    lea rsi, [rel s_fatal]
    mov rdx, -1
    call line_begin
    call put_exc
    mov al, '@'
    call put_ch
    mov rax, [rsp + 24]
    call put_hex
    call put_nl
    mov qword [rel g_abort], 1
    jmp finish

nmi_entry:
    inc qword [r15 + PC_NNMI]
    iretq

; ---- interrupts: count, snapshot line "<i>:<phase>.irq<n> v=XX isr=.. irr=.. ppr=.. tpr=..", hook,
; EOI. Vector 0xFF is the spurious vector of every guest's SVR: only counted (a spurious
; interrupt sets no ISR bit and must not be EOI'd, SDM Vol. 3A 11.9).
irq_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    cld
    mov rbx, [rsp + 80]
    cmp rbx, 0xff
    je .spurious
    inc qword [r15 + PC_NIRQ]
    inc qword [r15 + PC_PNIRQ]
    inc qword [r15 + PC_VCNT + rbx*8]
    cmp qword [r15 + PC_QUIET], 0
    jne .hook
    mov rax, [r15 + PC_IDX]
    call put_dec
    mov al, ':'
    call put_ch
    mov rsi, [r15 + PC_PHASE]
    test rsi, rsi
    jz .nophase
    call put_str
    mov al, '.'
    call put_ch
.nophase:
    lea rsi, [rel s_irq]
    call put_str
    mov rax, [r15 + PC_PNIRQ]
    call put_dec
    mov al, ' '
    call put_ch
    lea rsi, [rel s_v]
    call put_str
    mov eax, ebx
    call put_hex2
    mov al, ' '
    call put_ch
    call put_snap
    call put_nl
.hook:
    mov rax, [r15 + PC_HOOK]
    test rax, rax
    jz .eoi
    call rax
.eoi:
    cmp qword [r15 + PC_SKIPEOI], 0
    je .eoi2
    mov qword [r15 + PC_SKIPEOI], 0
    jmp .out
.eoi2:
    cmp qword [r15 + PC_NOEOI], 0
    jne .out
    call apic_eoi
    jmp .out
.spurious:
    inc qword [r15 + PC_NSPUR]
.out:
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 8
    iretq

; ---- text output into the per-CPU buffer ----------------------------------------------------
put_ch:                         ; AL
    push rdi
    mov rdi, [r15 + PC_TEXT]
    mov [rdi], al
    inc rdi
    mov [r15 + PC_TEXT], rdi
    pop rdi
    ret

put_nl:
    push rax
    mov al, 10
    call put_ch
    pop rax
    ret

put_str:                        ; RSI: zero-terminated
    push rax
    push rsi
.l: mov al, [rsi]
    test al, al
    jz .e
    call put_ch
    inc rsi
    jmp .l
.e: pop rsi
    pop rax
    ret

put_hex:                        ; RAX, lower-case hex without leading zeros
    push rax
    push rcx
    push rdx
    push rsi
    mov rdx, rax
    mov ecx, 60
.skip:
    test ecx, ecx
    jz .out
    mov rax, rdx
    shr rax, cl
    test al, 15
    jnz .out
    sub ecx, 4
    jmp .skip
.out:
    lea rsi, [rel hexdig]
.o: mov rax, rdx
    shr rax, cl
    and eax, 15
    mov al, [rsi + rax]
    call put_ch
    sub ecx, 4
    jns .o
    pop rsi
    pop rdx
    pop rcx
    pop rax
    ret

put_hex2:                       ; AL as two hex digits
    push rax
    push rbx
    push rsi
    lea rsi, [rel hexdig]
    movzx ebx, al
    shr ebx, 4
    mov bl, [rsi + rbx]
    push rax
    mov al, bl
    call put_ch
    pop rax
    movzx ebx, al
    and ebx, 15
    mov al, [rsi + rbx]
    call put_ch
    pop rsi
    pop rbx
    pop rax
    ret

put_dec:                        ; RAX < 1000
    push rax
    push rcx
    push rdx
    cmp rax, 10
    jb .one
    cmp rax, 100
    jb .two
    xor edx, edx
    mov ecx, 100
    div rcx
    add al, '0'
    call put_ch
    mov rax, rdx
    cmp rax, 10
    jae .two
    push rax
    mov al, '0'
    call put_ch
    pop rax
    jmp .one
.two:
    xor edx, edx
    mov ecx, 10
    div rcx
    add al, '0'
    call put_ch
    mov rax, rdx
.one:
    add al, '0'
    call put_ch
    pop rdx
    pop rcx
    pop rax
    ret

line_begin:                     ; "<idx>:<name>[<RDX decimal>] "; RSI = name, RDX = -1 for none
    push rax
    mov rax, [r15 + PC_IDX]
    call put_dec
    mov al, ':'
    call put_ch
    call put_str
    cmp rdx, -1
    je .n
    mov rax, rdx
    call put_dec
.n: mov al, ' '
    call put_ch
    pop rax
    ret

put_exc:                        ; "#GP(0)" from PC_EXC/PC_EC; resets PC_EXC to -1
    push rax
    push rdx
    push rsi
    mov al, '#'
    call put_ch
    mov rax, [r15 + PC_EXC]
    cmp rax, 32
    jae .num
    lea rsi, [rel excnames]
    lea rsi, [rsi + rax*4]
    call put_str
    mov edx, 0x${EC_MASK.toString(16)}
    bt edx, eax
    jnc .done
    mov al, '('
    call put_ch
    mov rax, [r15 + PC_EC]
    call put_hex
    mov al, ')'
    call put_ch
    jmp .done
.num:
    call put_hex
.done:
    mov qword [r15 + PC_EXC], -1
    pop rsi
    pop rdx
    pop rax
    ret

; ---- check records -------------------------------------------------------------------------
rec_value:                      ; RSI = name, RAX = value (or the exception in PC_EXC)
    pushfq
    cli
    push rdx
    mov rdx, -1
    call line_begin
    pop rdx
    cmp qword [r15 + PC_EXC], -1
    jne .x
    call put_hex
    jmp .e
.x: call put_exc
.e: call put_nl
    popfq
    ret

rec_status:                     ; RSI = name: "ok" or the exception
    pushfq
    cli
    push rdx
    mov rdx, -1
    call line_begin
    pop rdx
    cmp qword [r15 + PC_EXC], -1
    jne .x
    push rsi
    lea rsi, [rel s_ok]
    call put_str
    pop rsi
    jmp .e
.x: call put_exc
.e: call put_nl
    popfq
    ret

rec_mark:                       ; RSI = name: "isr=.. irr=.. ppr=.. tpr=.."
    pushfq
    cli
    push rdx
    mov rdx, -1
    call line_begin
    pop rdx
    call put_snap
    call put_nl
    popfq
    ret

chk_rdmsr:                      ; ECX = MSR, RSI = name
    lea rax, [rel .r]
    mov [r15 + PC_FIX], rax
    rdmsr
.r: mov qword [r15 + PC_FIX], 0
    shl rdx, 32
    mov eax, eax
    or rax, rdx
    jmp rec_value

chk_wrmsr:                      ; ECX = MSR, RAX = value, RSI = name
    mov rdx, rax
    shr rdx, 32
    lea r8, [rel .r]
    mov [r15 + PC_FIX], r8
    wrmsr
.r: mov qword [r15 + PC_FIX], 0
    jmp rec_status

chk_wrback:                     ; ECX = MSR, RSI = name: write back what RDMSR reads (0 if it faults)
    lea rax, [rel .r]
    mov [r15 + PC_FIX], rax
    xor eax, eax
    xor edx, edx
    rdmsr
.r: mov qword [r15 + PC_FIX], 0
    cmp qword [r15 + PC_EXC], -1
    je .w
    mov qword [r15 + PC_EXC], -1
    xor eax, eax
    xor edx, edx
.w: lea r8, [rel .r2]
    mov [r15 + PC_FIX], r8
    wrmsr
.r2:
    mov qword [r15 + PC_FIX], 0
    jmp rec_status

chk_rd32:                       ; RBX = address, RSI = name
    lea rax, [rel .r]
    mov [r15 + PC_FIX], rax
    mov eax, [rbx]
.r: mov qword [r15 + PC_FIX], 0
    jmp rec_value

chk_rd16:
    lea rax, [rel .r]
    mov [r15 + PC_FIX], rax
    movzx eax, word [rbx]
.r: mov qword [r15 + PC_FIX], 0
    jmp rec_value

chk_rd8:
    lea rax, [rel .r]
    mov [r15 + PC_FIX], rax
    movzx eax, byte [rbx]
.r: mov qword [r15 + PC_FIX], 0
    jmp rec_value

chk_apic_rd:                    ; ECX = xAPIC register offset, RSI = name (MMIO or MSR by mode)
    lea rax, [rel .r]
    mov [r15 + PC_FIX], rax
    call apic_rd
.r: mov qword [r15 + PC_FIX], 0
    jmp rec_value

; ---- APIC access by mode ---------------------------------------------------------------------
apic_rd:                        ; ECX = offset -> EAX (RDX preserved)
    cmp qword [r15 + PC_X2], 0
    jne .x2
    push rbx
    mov rbx, [r15 + PC_BASE]
    mov eax, [rbx + rcx]
    pop rbx
    ret
.x2:
    push rcx
    push rdx
    shr ecx, 4
    add ecx, 0x800
    rdmsr
    pop rdx
    pop rcx
    ret

apic_wr:                        ; ECX = offset, EAX = value
    cmp qword [r15 + PC_X2], 0
    jne .x2
    push rbx
    mov rbx, [r15 + PC_BASE]
    mov [rbx + rcx], eax
    pop rbx
    ret
.x2:
    push rcx
    push rdx
    shr ecx, 4
    add ecx, 0x800
    xor edx, edx
    wrmsr
    pop rdx
    pop rcx
    ret

apic_ipi:                       ; EAX = ICR bits 31:0, EDX = destination (xAPIC: 8 bits)
    push rax
    push rbx
    push rcx
    push rdx
    cmp qword [r15 + PC_X2], 0
    jne .x2
    mov rbx, [r15 + PC_BASE]
    shl edx, 24
    mov [rbx + 0x310], edx
    mov [rbx + 0x300], eax
    jmp .e
.x2:
    mov ecx, 0x830
    wrmsr
.e: pop rdx
    pop rcx
    pop rbx
    pop rax
    ret

apic_eoi:
    push rax
    push rcx
    mov ecx, 0xB0
    xor eax, eax
    call apic_wr
    pop rcx
    pop rax
    ret

put_snap:                       ; "isr=<vectors> irr=<vectors> ppr=<hex> tpr=<hex>"
    push rax
    push rcx
    push rsi
    push rdi
    lea rdi, [r15 + PC_SNAP]
    mov ecx, 0x100
.i: call apic_rd
    mov [rdi], eax
    add rdi, 4
    add ecx, 0x10
    cmp ecx, 0x180
    jb .i
    mov ecx, 0x200
.r: call apic_rd
    mov [rdi], eax
    add rdi, 4
    add ecx, 0x10
    cmp ecx, 0x280
    jb .r
    lea rsi, [rel s_isr]
    call put_str
    lea rsi, [r15 + PC_SNAP]
    call put_vecset
    lea rsi, [rel s_irr]
    call put_str
    lea rsi, [r15 + PC_SNAP + 32]
    call put_vecset
    lea rsi, [rel s_ppr]
    call put_str
    mov ecx, 0xA0
    call apic_rd
    call put_hex
    lea rsi, [rel s_tpr]
    call put_str
    mov ecx, 0x80
    call apic_rd
    call put_hex
    pop rdi
    pop rsi
    pop rcx
    pop rax
    ret

put_vecset:                     ; RSI -> 8 dwords: the set vectors as "31,61" or "-"
    push rax
    push rbx
    push rcx
    push rdx
    push rdi
    xor edi, edi
    xor ebx, ebx
.w: mov edx, [rsi + rdi*4]
    test edx, edx
    jz .nw
    xor ecx, ecx
.b: bt edx, ecx
    jnc .nb
    test ebx, ebx
    jz .first
    mov al, ','
    call put_ch
.first:
    mov ebx, 1
    mov eax, edi
    shl eax, 5
    or eax, ecx
    call put_hex2
.nb:
    inc ecx
    cmp ecx, 32
    jb .b
.nw:
    inc edi
    cmp edi, 8
    jb .w
    test ebx, ebx
    jnz .e
    mov al, '-'
    call put_ch
.e: pop rdi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    ret

; ---- synchronisation ---------------------------------------------------------------------------
barrier:                        ; RAX = counter; IF stays 0
    lock inc qword [rax]
.w: cmp qword [rax], NCPU
    jae .d
    cmp qword [rel g_abort], 0
    jne finish
    pause
    jmp .w
.d: ret

barrier_sti:                    ; RAX = counter; interrupts enabled while waiting
    lock inc qword [rax]
    sti
.w: cmp qword [rax], NCPU
    jae .d
    cmp qword [rel g_abort], 0
    jne .ab
    pause
    jmp .w
.d: cli
    ret
.ab:
    cli
    jmp finish

wait_ge_sti:                    ; RAX = qword address, RDX = target, RSI = name printed on timeout
    push rcx
    mov ecx, ${WAIT_CAP}
    sti
.w: cmp [rax], rdx
    jae .ok
    cmp qword [rel g_abort], 0
    jne .ab
    pause
    dec ecx
    jnz .w
    cli
    push rax
    push rdx
    mov rdx, -1
    call line_begin
    lea rsi, [rel s_timeout]
    call put_str
    call put_nl
    pop rdx
    pop rax
.ok:
    cli
    pop rcx
    ret
.ab:
    cli
    jmp finish

spin_sti:                       ; ECX = iterations with interrupts enabled
    sti
.l: pause
    dec ecx
    jnz .l
    cli
    ret

; ---- finish: print the buffers in vCPU order, then port 0xF4 ---------------------------------
finish:
    cli
    mov rax, [r15 + PC_IDX]
.t: cmp [rel g_turn], rax
    je .go
    pause
    jmp .t
.go:
    test rax, rax
    jnz .nb
    lea rsi, [rel banner]
    call out_z
.nb:
    lea rsi, [r15 + PC_BUF]
    mov rcx, [r15 + PC_TEXT]
    sub rcx, rsi
    mov dx, PORT_CONSOLE
    rep outsb
    cmp qword [r15 + PC_IDX], NCPU - 1
    jne .ne
    lea rsi, [rel trailer]
    call out_z
.ne:
    lock inc qword [rel g_turn]
    ; known registers at the done site (wait loops leave timing-dependent counts behind)
${['eax', 'ebx', 'ecx', 'edx', 'esi', 'edi', 'ebp', 'r8d', 'r9d', 'r10d', 'r11d', 'r12d', 'r13d', 'r14d', 'r15d'].map((r) => `    xor ${r}, ${r}`).join('\n')}
    push 0x2
    popfq
done_site:
    out PORT_DONE, al
    jmp done_site

out_z:                          ; RSI: zero-terminated, straight to the console
    push rcx
    push rdi
    mov rdi, rsi
    xor ecx, ecx
.l: cmp byte [rdi + rcx], 0
    je .o
    inc ecx
    jmp .l
.o: mov dx, PORT_CONSOLE
    rep outsb
    pop rdi
    pop rcx
    ret

; ---- interrupt descriptor stubs ----------------------------------------------------------------
${stubs.join('\n')}
`;
}

/** The runtime's data (after the generated code). */
export function runtimeData(): string {
  const names = EXC_NAMES.map((n) => `db "${n}"${', 0'.repeat(4 - n.length)}`).join('\n    ');
  const table: string[] = [];
  for (let v = 0; v < 256; v += 8) {
    table.push(`    dq ${Array.from({ length: 8 }, (_, k) => `vec_${(v + k).toString(16).padStart(2, '0')}`).join(', ')}`);
  }
  return String.raw`
align 16
g_abort:    dq 0
g_turn:     dq 0
hexdig:     db "0123456789abcdef"
s_fatal:    db "fatal", 0
s_irq:      db "irq", 0
s_v:        db "v=", 0
s_ok:       db "ok", 0
s_isr:      db "isr=", 0
s_irr:      db " irr=", 0
s_ppr:      db " ppr=", 0
s_tpr:      db " tpr=", 0
s_timeout:  db "timeout", 0
excnames:
    ${names}
align 8
stub_table:
${table.join('\n')}
align 16
idt:        times 4096 db 0
idtr:       dw 4095
            dq idt
`;
}

; rom.asm - system ROM for the Bochs reference executor (replaces the PC BIOS).
;
; Bochs loads the guest image straight into RAM at its load address (bochsrc `optramimage1`),
; so this ROM depends only on the processor count and the load address. From the reset vector
; it masks both 8259s, writes the contract's GDT (0x1000) and page tables (0x2000..0x7FFF),
; wakes the APs with INIT-SIPI-SIPI (their real-mode entry is inside this ROM: SIPI vector 0xFF
; -> 0xFF000, so no trampoline is copied to RAM), meets every processor at a barrier in flat
; 32-bit protected mode (paging off), prints the begin marker to port 0xE9, releases them all
; at once, and each then enters 64-bit long mode in the start state of
; the guest contract, contracts/guest.md of the design docs and jumps to the load address.
; After the reset vector everything runs from the ROM's mirror at 0xF0000 (identity-mapped,
; page-directory entry 0), so the ROM sets no accessed/dirty bits outside PML4[0], PDPT[0]
; and PD[0][0] (accessed only), which the guest's first fetch below 2 MiB sets anyway.
;
; Done: a processor that executes SYSENTER (the harness patches each done site `out 0xf4, al`
; into `0F 34`) or that the debugger moves to `done_entry` (1-byte `out dx, al` sites) reports
; "AVIC-DONE <index>" on the Bochs BIOS info port 0x402 (a line in the Bochs log) and parks
; (cli; hlt); the last one prints the end marker to port 0xE9 and ends Bochs through the
; shutdown port 0x8900. README.md (same directory) lists the remaining start-state deviations.
;
; Build (bochs.ts does this): nasm -f bin -DNCPU=n -DLOAD_ADDR=0x100000 -o rom.bin rom.asm
; The 64 KiB image is mapped by Bochs at 0xFFFF0000 and mirrored at 0xF0000.

%ifndef NCPU
%define NCPU 1
%endif
%ifndef LOAD_ADDR
%define LOAD_ADDR 0x100000
%endif

ROM         equ 0xF0000                     ; the ROM's low mirror: all code/data addresses

; Scratch RAM used by the ROM (documented in README.md), zero when the guest starts: the gate
; word is cleared by the last processor to leave the start barrier; during the run only the
; done routine uses DONECNT and LOGLOCK.
SCRATCH     equ 0xF000
GATE        equ SCRATCH + 0                 ; bits 0..15 count arrivals/leavers, bit 16 = release
DONECNT     equ SCRATCH + 4                 ; processors done so far
LOGLOCK     equ SCRATCH + 8                 ; serialises the 0x402 done reports

LAPIC       equ 0xFEE00000

%if NCPU < 1 || NCPU > 0xFFFF
%error NCPU out of range
%endif

section rom start=0 vstart=0

; ---------------------------------------------------------------------------------------------
; Data
begin_marker:   db 0x01, "AVIC-BOCHS-ORACLE-BEGIN-5f3c9a", 0x02
begin_len       equ $ - begin_marker
end_marker:     db 0x01, "AVIC-BOCHS-ORACLE-END-5f3c9a", 0x02
end_len         equ $ - end_marker
badid_msg:      db 0x01, "AVIC-BOCHS-ORACLE-ERROR-BAD-APIC-ID", 0x02
badid_len       equ $ - badid_msg
done_msg:       db "AVIC-DONE "
done_len        equ $ - done_msg
shutdown_str:   db "Shutdown"

align 8
rflags_init:    dq 0x2
guest_entry:    dq LOAD_ADDR

; Boot GDT (selectors match the contract's GDT; accessed bits preset so that loading a segment
; register never writes a descriptor). 0x18 is a 32-bit code segment for the PM32 stage.
align 8
gdt_boot:
    dq 0
    dq 0x00af9b000000ffff                   ; 0x08 64-bit code
    dq 0x00cf93000000ffff                   ; 0x10 flat data
    dq 0x00cf9b000000ffff                   ; 0x18 32-bit flat code
gdt_boot_end:
gdtr_boot:
    dw gdt_boot_end - gdt_boot - 1
    dd ROM + gdt_boot
align 8
gdtr_final:
    dw 0x17
    dq 0x1000
align 8
idtr_final:
    dw 0
    dq 0

; ---------------------------------------------------------------------------------------------
; BSP, real mode (CS = 0xF000 after the reset vector's far jump)
bits 16
bsp_entry:
    cli
    cld
    mov al, 0xFF                            ; mask both 8259s (OCW1)
    out 0x21, al
    out 0xA1, al
    in al, 0x92                             ; fast A20 on (bit 0 = reset: keep 0)
    or al, 2
    and al, 0xFE
    out 0x92, al
    o32 lgdt [cs:gdtr_boot]
    mov eax, 0x00000011                     ; PE, ET (CD/NW cleared)
    mov cr0, eax
    jmp dword 0x18:(ROM + pm32_bsp)

; ---------------------------------------------------------------------------------------------
; BSP, flat 32-bit protected mode, paging off
bits 32
pm32_bsp:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    ; 0x1000..0x7FFF and the scratch: zero, then GDT, PML4, PDPT, page directories
    xor eax, eax
    mov edi, 0x1000
    mov ecx, (0x8000 - 0x1000) / 4
    rep stosd
    mov edi, SCRATCH
    mov ecx, 16
    rep stosd
    mov dword [0x1008], 0x0000ffff
    mov dword [0x100C], 0x00af9a00
    mov dword [0x1010], 0x0000ffff
    mov dword [0x1014], 0x00cf9200
    mov dword [0x2000], 0x3003
    mov dword [0x3000], 0x4003
    mov dword [0x3008], 0x5003
    mov dword [0x3010], 0x6003
    mov dword [0x3018], 0x7003
    mov edi, 0x4000
    mov eax, 0x83
    mov ecx, 2048
.pd:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    loop .pd
    ; BSP LVT0: ExtINT as KVM leaves it. Bochs forces the mask bit on LVT writes while the
    ; APIC is software-disabled and masks every LVT when it gets disabled, so with SVR = 0xFF
    ; this ends as 0x10700 (README: deviations).
    mov dword [LAPIC + 0xF0], 0x1FF
    mov dword [LAPIC + 0x350], 0x700
    mov dword [LAPIC + 0xF0], 0xFF
%if NCPU > 1
    mov dword [LAPIC + 0x310], 0
    mov dword [LAPIC + 0x300], 0x000C4500   ; INIT, all excluding self
    mov dword [LAPIC + 0x300], 0x000C46FF   ; SIPI vector 0xFF -> 0xFF000 (ap_sipi)
    mov dword [LAPIC + 0x300], 0x000C46FF
    ; Leave ICR = 0 as at reset: this write sends vector 0 to APIC ID 0 (this BSP), which Bochs
    ; rejects as an illegal vector (nothing is queued, only ESR bits are raised); two ESR writes
    ; then latch and clear those bits again.
    mov dword [LAPIC + 0x300], 0
    mov dword [LAPIC + 0x280], 0
    mov dword [LAPIC + 0x280], 0
%endif
    jmp pm32_common

; ---------------------------------------------------------------------------------------------
; Every processor, flat 32-bit protected mode, paging off
pm32_common:
    ; SYSENTER enters the done routine: CS = 0x08, SS = 0x10, RIP = done_entry, RSP = 0.
    mov ecx, 0x174
    mov eax, 0x08
    xor edx, edx
    wrmsr
    mov ecx, 0x176
    mov eax, ROM + done_entry
    wrmsr
    ; IA32_FMASK: Bochs resets it to 0x20200, KVM (and the contract's machine) to 0.
    mov ecx, 0xC0000084
    xor eax, eax
    wrmsr
    ; x87 as KVM's vCPU reset leaves it (FCW 0x37F; Bochs resets FCW to 0x40)
    fninit
    ; index = initial APIC ID (Bochs numbers processors 0..N-1 in order, BSP = 0)
    mov eax, 1
    cpuid
    shr ebx, 24
    cmp ebx, NCPU
    jae bad_apic_id
    mov ebp, ebx
    ; start barrier: everyone arrives; the BSP prints the begin marker and releases everyone.
    lock inc dword [GATE]
    test ebp, ebp
    jnz .wait_release
.wait_all:
    pause
    cmp dword [GATE], NCPU
    jne .wait_all
    mov esi, ROM + begin_marker
    mov ecx, begin_len
    mov edx, 0xE9
    rep outsb
    lock add dword [GATE], 0x10000
.wait_release:
    pause
    test dword [GATE], 0x10000
    jz .wait_release
    mov eax, -1
    lock xadd [GATE], eax
    cmp eax, 0x10001                        ; the last one to leave clears the gate word
    jne .long_mode
    mov dword [GATE], 0
.long_mode:
    mov eax, 0x20                           ; CR4 = PAE
    mov cr4, eax
    mov eax, 0x2000
    mov cr3, eax
    mov ecx, 0xC0000080                     ; EFER = LME
    mov eax, 0x100
    xor edx, edx
    wrmsr
    mov eax, 0x80010011                     ; CR0 = PG, WP, ET, PE
    mov cr0, eax
    jmp dword 0x08:(ROM + lm64)

bad_apic_id:
    mov esi, ROM + badid_msg
    mov ecx, badid_len
    mov edx, 0xE9
    rep outsb
.park:
    cli
    hlt
    jmp .park

; ---------------------------------------------------------------------------------------------
; Every processor, 64-bit mode: contract start state, then the guest
bits 64
lm64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    lgdt [rel gdtr_final]
    lidt [rel idtr_final]
    mov edi, ebp                            ; RDI = index
    mov esi, ebp
    shl esi, 16
    mov eax, 0x03000000
    sub eax, esi
    mov esi, eax                            ; RSP to be = 0x03000000 - index * 0x10000
    lea rsp, [rel rflags_init]
    popfq                                   ; RFLAGS = 0x2
    mov esp, esi
    mov eax, 0
    mov ebx, 0
    mov ecx, 0
    mov edx, 0
    mov esi, 0
    mov ebp, 0
    mov r8d, 0
    mov r9d, 0
    mov r10d, 0
    mov r11d, 0
    mov r12d, 0
    mov r13d, 0
    mov r14d, 0
    mov r15d, 0
    jmp [rel guest_entry]

; ---------------------------------------------------------------------------------------------
; Done routine, at the fixed offset 0xE000 (0xFE000: bochs.ts points the debugger there).
; Entered by SYSENTER from a patched done site (RSP = 0, IF = 0) or by the debugger moving RIP
; here (1-byte `out dx` sites). Uses no stack; clobbers registers (they are not reported).
%if ($ - $$) > 0xE000
%error ROM code too large (done_entry)
%endif
    times 0xE000 - ($ - $$) db 0xFF
done_entry:
    cli
    mov eax, 1
    cpuid
    shr ebx, 24                             ; ebx = index
.lock:
    mov eax, 1
    xchg eax, [LOGLOCK]
    test eax, eax
    jz .locked
    pause
    jmp .lock
.locked:
    lea rsi, [rel done_msg]
    mov ecx, done_len
    mov edx, 0x402
    rep outsb
    ; decimal index, most significant digit first
    mov eax, ebx
    mov r8d, 10000
    xor r9d, r9d                            ; r9 = a digit was printed
.digit:
    xor edx, edx
    div r8d                                 ; eax = digit, edx = rest
    mov r10d, edx
    test eax, eax
    jnz .print
    test r9d, r9d
    jnz .print
    cmp r8d, 1
    jne .next
.print:
    add eax, '0'
    mov edx, 0x402
    out dx, al
    mov r9d, 1
.next:
    mov eax, r8d
    xor edx, edx
    mov r11d, 10
    div r11d
    mov r8d, eax
    mov eax, r10d
    test r8d, r8d
    jnz .digit
    mov al, 10
    mov edx, 0x402
    out dx, al
    mov dword [LOGLOCK], 0
    mov eax, 1
    lock xadd [DONECNT], eax
    inc eax
    cmp eax, NCPU
    jne .park
    ; last processor: end marker, then the Bochs shutdown port
    lea rsi, [rel end_marker]
    mov ecx, end_len
    mov edx, 0xE9
    rep outsb
    lea rsi, [rel shutdown_str]
    mov ecx, 8
    mov edx, 0x8900
    rep outsb
.park:
    cli
    hlt
    jmp .park

; ---------------------------------------------------------------------------------------------
; AP real-mode entry: SIPI vector 0xFF starts the AP at 0xFF00:0000 = 0xFF000 = offset 0xF000.
%if ($ - $$) > 0xF000
%error ROM code too large (ap_sipi)
%endif
    times 0xF000 - ($ - $$) db 0xFF
bits 16
ap_sipi:
    jmp 0xF000:ap_entry
ap_entry:
    cli
    cld
    o32 lgdt [cs:gdtr_boot]
    mov eax, 0x00000011
    mov cr0, eax
    jmp dword 0x18:(ROM + pm32_ap)
bits 32
pm32_ap:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    jmp pm32_common

; ---------------------------------------------------------------------------------------------
; Reset vector (0xFFFFFFF0): the only code fetched through the high mapping.
%if ($ - $$) > 0xFFF0
%error ROM code too large (reset vector)
%endif
    times 0xFFF0 - ($ - $$) db 0xFF
bits 16
reset_vector:
    jmp 0xF000:bsp_entry
    times 0x10000 - ($ - $$) db 0xFF

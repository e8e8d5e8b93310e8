; qemu-rom.asm - a 64 KiB system ROM for the QEMU TCG peer (`qemu-system-x86_64 -bios`), so that
; QEMU runs a flat contract guest with no SeaBIOS in front (faster start-up, contract state).
;
; QEMU maps the ROM at 0xFFFF0000 and mirrors it at 0xF0000. The guest image is put in RAM at
; 0x100000 by `-device loader,file=guest.bin,addr=0x100000,force-raw=on`. From the reset vector
; the ROM (one processor) masks both 8259s, enables A20, writes the contract's GDT (0x1000),
; PML4 (0x2000), PDPT (0x3000) and page directories (0x4000..0x7FFF), enters long mode with
; CR0 = 0x80010011, CR4 = 0x20, EFER = 0x500, loads the contract's selectors, GDTR and an empty
; IDTR, sets RSP = 0x03000000, RFLAGS = 0x2, every other GPR = 0 (RDI = 0: vCPU index), and
; jumps to 0x100000. The guest ends QEMU itself through `-device isa-debug-exit,iobase=0xf4`.
; (The local APIC stays in QEMU's reset state, LVT0 masked: irrelevant for the timing loop.)
;
; Build (peers.ts does this): nasm -f bin -o qemu-rom.bin qemu-rom.asm

ROM         equ 0xF0000                     ; the low mirror: all code/data addresses
LOAD_ADDR   equ 0x100000

section rom start=0 vstart=0

align 8
rflags_init:    dq 0x2
guest_entry:    dq LOAD_ADDR

; Boot GDT: 0x08 64-bit code, 0x10 data (as the contract's), 0x18 32-bit code for the PM stage.
align 8
gdt_boot:
    dq 0
    dq 0x00af9b000000ffff
    dq 0x00cf93000000ffff
    dq 0x00cf9b000000ffff
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

bits 16
entry16:
    cli
    cld
    mov al, 0xFF                            ; mask both 8259s
    out 0x21, al
    out 0xA1, al
    in al, 0x92                             ; fast A20 on, no reset
    or al, 2
    and al, 0xFE
    out 0x92, al
    o32 lgdt [cs:gdtr_boot]
    mov eax, 0x00000011                     ; PE, ET
    mov cr0, eax
    jmp dword 0x18:(ROM + pm32)

bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    xor eax, eax                            ; zero 0x1000..0x7FFF, then GDT and page tables
    mov edi, 0x1000
    mov ecx, (0x8000 - 0x1000) / 4
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
    lea rsp, [rel rflags_init]
    popfq                                   ; RFLAGS = 0x2
    mov esp, 0x03000000
    mov eax, 0
    mov ebx, 0
    mov ecx, 0
    mov edx, 0
    mov esi, 0
    mov edi, 0
    mov ebp, 0
    mov r8d, 0
    mov r9d, 0
    mov r10d, 0
    mov r11d, 0
    mov r12d, 0
    mov r13d, 0
    mov r14d, 0
    mov r15d, 0
    jmp [rel guest_entry]                   ; (mov leaves RFLAGS = 0x2)

%if ($ - $$) > 0xFFF0
%error ROM code too large
%endif
    times 0xFFF0 - ($ - $$) db 0xFF
bits 16
reset_vector:
    jmp 0xF000:entry16
    times 0x10000 - ($ - $$) db 0xFF

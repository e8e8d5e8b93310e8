// Minimal nested SVM (contracts/kvm-model.md, "Nested SVM"): VMRUN's permission checks, the
// VMCB12 checks that end in SVM_EXIT_ERR, and #VMEXIT on what VMCB12 intercepts.

import assert from 'node:assert/strict';
import { run, withIdt } from './helpers';

/** L1 code that sets SVME and VM_HSAVE_PA and fills a valid VMCB12 at [vmcb] for L2 at `l2`. */
const SETUP = `
        mov     ecx, 0xc0000080
        rdmsr
        or      eax, 1 << 12
        wrmsr
        mov     ecx, 0xc0010117
        lea     rax, [hsave]
        xor     edx, edx
        wrmsr
        lea     rbx, [vmcb]
        mov     dword [rbx + 0x0c], 1 << 24            ; HLT
        mov     dword [rbx + 0x10], 3                  ; VMRUN, VMMCALL
        mov     dword [rbx + 0x58], 1                  ; ASID
        mov     word [rbx + 0x410], 0x08
        mov     word [rbx + 0x420], 0x10
        mov     qword [rbx + 0x4d0], 0x1500            ; EFER: SVME, LMA, LME
        mov     rax, cr4
        mov     [rbx + 0x548], rax
        mov     rax, cr3
        mov     [rbx + 0x550], rax
        mov     rax, cr0
        mov     [rbx + 0x558], rax
        mov     qword [rbx + 0x570], 2
        lea     rax, [l2]
        mov     [rbx + 0x578], rax
        lea     rax, [l2stack + 4096]
        mov     [rbx + 0x5d8], rax
`;

const DATA = `
        section .bss align=4096
vmcb:   resb 4096
hsave:  resb 4096
l2stack: resb 4096
`;

function exitCode(main: string, options = {}) {
  const r = run(withIdt(main, DATA), { nested: true, ...options });
  return r;
}

describe('nested SVM', () => {
  it('VMRUN without EFER.SVME is #UD; with --nested off EFER.SVME cannot be set (#GP)', () => {
    const r = exitCode(`
        mov     qword [skip], 3
        lea     rax, [vmcb]
        vmrun
        mov     r8, [last_vector]
        out     0xf4, al`);
    assert.equal(r.reg('r8'), 6n);
    const off = run(withIdt(`
        mov     qword [skip], 2
        mov     ecx, 0xc0000080
        rdmsr
        or      eax, 1 << 12
        wrmsr
        mov     r8, [last_vector]
        out     0xf4, al`, DATA), { nested: false });
    assert.equal(off.reg('r8'), 13n);
  });

  it('#GP for VMRUN with VM_HSAVE_PA 0, or with RAX not a page-aligned address in RAM', () => {
    const r = exitCode(`
        mov     ecx, 0xc0000080
        rdmsr
        or      eax, 1 << 12
        wrmsr
        mov     qword [skip], 3
        lea     rax, [vmcb]
        vmrun                                          ; no host save area yet
        mov     r8, [last_vector]
        mov     qword [last_vector], -1
        mov     ecx, 0xc0010117
        lea     rax, [hsave]
        xor     edx, edx
        wrmsr
        lea     rax, [vmcb + 8]
        vmrun                                          ; misaligned
        mov     r9, [last_vector]
        mov     qword [last_vector], -1
        mov     rax, 0x40000000
        vmrun                                          ; beyond RAM
        mov     r10, [last_vector]
        out     0xf4, al`);
    assert.deepEqual([r.reg('r8'), r.reg('r9'), r.reg('r10')], [13n, 13n, 13n]);
  });

  it('a VMCB12 that fails the checks gets SVM_EXIT_ERR and L1 goes on after VMRUN', () => {
    for (const [what, patch] of [
      ['no VMRUN intercept', 'mov dword [rbx + 0x10], 2'],
      ['ASID 0', 'mov dword [rbx + 0x58], 0'],
      ['nested paging requested', 'mov dword [rbx + 0x90], 1'],
      ['EFER.SVME clear', 'mov qword [rbx + 0x4d0], 0x500'],
      ['CR0.NW without CR0.CD', 'or qword [rbx + 0x558], 1 << 29'],
      ['DR6 upper bits', 'mov dword [rbx + 0x56c], 1'],
    ] as const) {
      const r = exitCode(`${SETUP}
        ${patch}
        mov     rax, rbx
        vmrun
        mov     r8, [vmcb + 0x70]
        out     0xf4, al
l2:     vmmcall`);
      assert.equal(r.result.status, 'done', what);
      assert.equal(r.reg('r8'), 0xffffffffffffffffn, what);
      assert.equal(r.result.vcpus[0].inhibits.length, 0, what);
    }
  });

  it('L2 exits to L1 on intercepted HLT and VMMCALL, with the exit code and L2\'s RIP in VMCB12', () => {
    const r = exitCode(`${SETUP}
        mov     rax, rbx
        vmrun
        mov     r8, [vmcb + 0x70]
        mov     r9, [vmcb + 0x578]
        lea     rax, [l2b]
        mov     [vmcb + 0x578], rax
        mov     rax, rbx
        vmrun
        mov     r10, [vmcb + 0x70]
        out     0xf4, al
l2:     hlt
l2b:    vmmcall`);
    assert.equal(r.result.status, 'done');
    assert.equal(r.reg('r8'), 0x78n);
    assert.equal(r.reg('r10'), 0x81n);
    const l2 = r.machine.events.find((e) => e.kind === 'vmexit' && e.code === 0x78);
    assert.ok(l2 && r.reg('r9') === BigInt(l2.rip), 'VMCB12 holds the RIP of the intercepted HLT');
    // while in L2 the vCPU carried the per-vCPU NESTED inhibit: APICv went off and came back
    const updates = r.machine.events.filter((e) => e.kind === 'apicv-update').map((e) => e.kind === 'apicv-update' && e.activate);
    assert.deepEqual(updates, [false, true, false, true]);
  });
});

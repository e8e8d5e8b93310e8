// bochs.test.ts - tests of the Bochs reference executor (bochs.ts + rom.asm): console capture,
// done reporting, SMP start, the contract's start state as seen from inside the guest (with the
// documented Bochs deviations), triple faults and timeouts. Guests are small nasm sources built
// here; done sites come from the nasm listing. Skips when Bochs is missing, fails if CI=true.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BOCHS_MAX_VCPUS, runOnBochs, timeBochsLoop } from './bochs';
import { skipUnlessOracle } from '../skip';

const LOAD = 0x100000;

let tmp = '';
let guestCount = 0;

/**
 * Assembles `org 0x100000; bits 64` + src with nasm. Done sites: every `out 0xf4, ...` and
 * every line marked with the comment `;@done` (used for `out dx, al`).
 */
function guest(src: string): { image: Uint8Array; doneSites: number[] } {
  const base = path.join(tmp, `g${guestCount++}`);
  fs.writeFileSync(`${base}.asm`, `org 0x${LOAD.toString(16)}\nbits 64\n${src}\n`);
  const r = spawnSync('nasm', ['-f', 'bin', '-l', `${base}.lst`, '-o', `${base}.bin`, `${base}.asm`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nasm failed: ${r.stderr}`);
  const doneSites: number[] = [];
  for (const line of fs.readFileSync(`${base}.lst`, 'latin1').split('\n')) {
    const m = /^\s*\d+\s+([0-9A-F]{8})\s+[0-9A-F]+\s+(.*)$/.exec(line);
    if (m && (/\bout\s+0xf4\s*,/i.test(m[2]) || m[2].includes(';@done'))) doneSites.push(LOAD + parseInt(m[1], 16));
  }
  return { image: fs.readFileSync(`${base}.bin`), doneSites };
}

// Printing helpers shared by the guests: puts (rsi -> 0-terminated string), phex (rax, 16 digits).
const MACROS = `
%macro SHOW 1
  push rax
  lea rsi, [rel %%s]
  call puts
  pop rax
  call phex
  jmp %%e
%%s: db %1, '=', 0
%%e:
%endmacro
%macro MSR 2
  mov ecx, %2
  rdmsr
  shl rdx, 32
  or rax, rdx
  SHOW %1
%endmacro
%macro APIC 2
  mov esi, 0xfee00000 + %2
  mov eax, [rsi]
  SHOW %1
%endmacro
`;
const LIB = `
puts:
  lodsb
  test al, al
  jz .r
  out 0xe9, al
  jmp puts
.r:
  ret
phex:
  mov rdx, rax
  mov ecx, 16
.l:
  rol rdx, 4
  mov eax, edx
  and eax, 15
  cmp eax, 10
  jb .d
  add eax, 'a' - 10 - '0'
.d:
  add eax, '0'
  out 0xe9, al
  dec ecx
  jnz .l
  mov al, 10
  out 0xe9, al
  ret
`;

describe('Bochs oracle (test/oracle/bochs)', function () {
  this.timeout(60000);

  before(function () {
    skipUnlessOracle(this, 'Bochs');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bochs-test-'));
  });

  after(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('(a) one vCPU prints "hi" and is done', function () {
    const g = guest(`
  mov al, 'h'
  out 0xe9, al
  mov al, 'i'
  out 0xe9, al
  out 0xf4, al
  hlt`);
    const r = runOnBochs(g.image, { doneSites: g.doneSites, timeoutMs: 20000 });
    assert.equal(r.error, undefined);
    assert.deepEqual({ status: r.status, console: r.console, done: r.done }, { status: 'done', console: 'hi', done: [0] });
    assert.ok(r.elapsedMs > 0);
  });

  it('(b) 4 vCPUs print their index in turn through a shared counter', function () {
    const g = guest(`
.wait:
  pause
  cmp [rel turn], edi
  jne .wait
  lea eax, [rdi + '0']
  out 0xe9, al
  lock inc dword [rel turn]
  out 0xf4, al
turn: dd 0`);
    const r = runOnBochs(g.image, { vcpus: 4, doneSites: g.doneSites, timeoutMs: 20000 });
    assert.deepEqual({ status: r.status, console: r.console, done: r.done, error: r.error },
      { status: 'done', console: '0123', done: [0, 1, 2, 3], error: undefined });
  });

  it('(c) start state seen from inside (BSP and AP) matches the contract except the documented deviations', function () {
    const g = guest(`${MACROS}
start:
  mov [saved_rsp + rdi*8], rsp
  pushfq
  pop qword [saved_flags + rdi*8]
  or rax, rbx
  or rax, rcx
  or rax, rdx
  or rax, rsi
  or rax, rbp
  or rax, r8
  or rax, r9
  or rax, r10
  or rax, r11
  or rax, r12
  or rax, r13
  or rax, r14
  or rax, r15
  mov [saved_or + rdi*8], rax
  mov r13d, edi
  lock inc dword [started]
.turn:
  pause
  cmp [turn], r13d
  jne .turn
  mov rax, r13
  SHOW 'cpu'
  mov rax, [saved_rsp + r13*8]
  SHOW 'rsp'
  mov rax, [saved_flags + r13*8]
  SHOW 'rflags'
  mov rax, [saved_or + r13*8]
  SHOW 'gpr_or'
  mov rax, cr0
  SHOW 'cr0'
  mov rax, cr3
  SHOW 'cr3'
  mov rax, cr4
  SHOW 'cr4'
  MSR 'efer', 0xc0000080
  MSR 'apic_base', 0x1b
  MSR 'fs_base', 0xc0000100
  MSR 'gs_base', 0xc0000101
  MSR 'kernel_gs_base', 0xc0000102
  MSR 'sysenter_cs', 0x174
  MSR 'sysenter_esp', 0x175
  MSR 'sysenter_eip', 0x176
  MSR 'star', 0xc0000081
  MSR 'lstar', 0xc0000082
  MSR 'sfmask', 0xc0000084
  mov eax, 1
  cpuid
  mov eax, ebx
  shr eax, 24
  mov r12d, ecx
  SHOW 'cpuid1_apic_id'
  mov eax, r12d
  shr eax, 21
  and eax, 1
  SHOW 'cpuid1_x2apic'
  mov eax, 0xb
  xor ecx, ecx
  cpuid
  mov eax, edx
  SHOW 'cpuidb_x2apic_id'
  mov ax, cs
  movzx eax, ax
  SHOW 'cs'
  mov ax, ss
  movzx eax, ax
  SHOW 'ss'
  mov ax, ds
  movzx eax, ax
  SHOW 'ds'
  mov ax, es
  movzx eax, ax
  SHOW 'es'
  mov ax, fs
  movzx eax, ax
  SHOW 'fs'
  mov ax, gs
  movzx eax, ax
  SHOW 'gs'
  sgdt [desc]
  movzx eax, word [desc]
  SHOW 'gdt_limit'
  mov rax, [desc + 2]
  SHOW 'gdt_base'
  sidt [desc]
  movzx eax, word [desc]
  SHOW 'idt_limit'
  mov rax, [desc + 2]
  SHOW 'idt_base'
  APIC 'apic_id', 0x20
  APIC 'apic_tpr', 0x80
  APIC 'apic_ldr', 0xd0
  APIC 'apic_dfr', 0xe0
  APIC 'apic_svr', 0xf0
  mov esi, 0xfee00280
  mov dword [rsi], 0
  APIC 'apic_esr', 0x280
  APIC 'apic_icr_lo', 0x300
  APIC 'apic_icr_hi', 0x310
  APIC 'lvt_timer', 0x320
  APIC 'lvt_thermal', 0x330
  APIC 'lvt_perfmon', 0x340
  APIC 'lvt0', 0x350
  APIC 'lvt1', 0x360
  APIC 'lvt_error', 0x370
  xor eax, eax
  mov ecx, 0xfee00100
.isrirr:
  or eax, [rcx]
  add ecx, 0x10
  cmp ecx, 0xfee00280
  jb .isrirr
  SHOW 'isr_tmr_irr_or'
  test r13d, r13d
  jnz .next
  ; BSP: memory as the contract leaves it (after every vCPU has left the ROM)
.all:
  pause
  cmp dword [started], NCPU
  jne .all
  mov rax, [0x1000]
  SHOW 'gdt0'
  mov rax, [0x1008]
  SHOW 'gdt1'
  mov rax, [0x1010]
  SHOW 'gdt2'
  mov rax, [0x2000]        ; paging entries without the accessed/dirty bits the guest sets
  and al, 0x9f
  SHOW 'pml4_0'
  mov rax, [0x3000]
  and al, 0x9f
  SHOW 'pdpt0'
  mov rax, [0x3008]
  and al, 0x9f
  SHOW 'pdpt1'
  mov rax, [0x3010]
  and al, 0x9f
  SHOW 'pdpt2'
  mov rax, [0x3018]
  and al, 0x9f
  SHOW 'pdpt3'
  xor eax, eax             ; page-directory entries that differ from ((i*512+j) << 21) | 0x83
  mov edx, 0x83
  mov esi, 0x4000
.pd:
  mov rcx, [rsi]
  and cl, 0x9f
  cmp rcx, rdx
  je .pdok
  inc eax
.pdok:
  add rdx, 0x200000
  add esi, 8
  cmp esi, 0x8000
  jb .pd
  SHOW 'pd_mismatches'
  xor eax, eax             ; every other qword of 0x1000..0x7fff
  mov esi, 0x1018
.t1:
  or rax, [rsi]
  add esi, 8
  cmp esi, 0x2000
  jb .t1
  mov esi, 0x2008
.t2:
  or rax, [rsi]
  add esi, 8
  cmp esi, 0x3000
  jb .t2
  mov esi, 0x3020
.t3:
  or rax, [rsi]
  add esi, 8
  cmp esi, 0x4000
  jb .t3
  SHOW 'tables_other_or'
  xor eax, eax             ; RAM below 0x1000 and 0x8000..0x9ffff (includes the ROM scratch)
  xor esi, esi
.z1:
  or rax, [rsi]
  add esi, 8
  cmp esi, 0x1000
  jb .z1
  mov esi, 0x8000
.z2:
  or rax, [rsi]
  add esi, 8
  cmp esi, 0xa0000
  jb .z2
  SHOW 'low_ram_or'
  xor eax, eax             ; RAM after the image up to 32 MiB
  mov esi, image_end
.z3:
  or rax, [rsi]
  add esi, 8
  cmp esi, 0x2000000
  jb .z3
  SHOW 'high_ram_or'
.next:
  lock inc dword [turn]
  out 0xf4, al
${LIB}
align 8
saved_rsp: dq 0, 0
saved_flags: dq 0, 0
saved_or: dq 0, 0
desc: times 16 db 0
started: dd 0
turn: dd 0
align 8
image_end:`.replace(/NCPU/g, '2'));
    const r = runOnBochs(g.image, { vcpus: 2, doneSites: g.doneSites, timeoutMs: 20000 });
    assert.equal(r.status, 'done', `${r.error ?? ''}\n${r.console}`);
    assert.deepEqual(r.done, [0, 1]);
    const cpus: Record<string, bigint>[] = [];
    for (const line of r.console.split('\n').filter(Boolean)) {
      const m = /^(\w+)=([0-9a-f]{16})$/.exec(line);
      assert.ok(m, `unexpected console line ${JSON.stringify(line)}`);
      if (m[1] === 'cpu') cpus.push({});
      cpus[cpus.length - 1][m[1]] = BigInt(`0x${m[2]}`);
    }
    assert.equal(cpus.length, 2);
    for (let i = 0; i < 2; i++) {
      const bsp = i === 0;
      const I = BigInt(i);
      const contract: Record<string, bigint> = {
        cpu: I, rsp: 0x03000000n - I * 0x10000n, rflags: 2n, gpr_or: 0n,
        cr0: 0x80010011n, cr3: 0x2000n, cr4: 0x20n, efer: 0x500n,
        apic_base: bsp ? 0xfee00900n : 0xfee00800n,
        fs_base: 0n, gs_base: 0n, kernel_gs_base: 0n,
        sysenter_cs: 0n, sysenter_esp: 0n, sysenter_eip: 0n, star: 0n, lstar: 0n, sfmask: 0n,
        cpuid1_apic_id: I, cpuid1_x2apic: 1n, cpuidb_x2apic_id: I,
        cs: 8n, ss: 0x10n, ds: 0x10n, es: 0x10n, fs: 0x10n, gs: 0x10n,
        gdt_limit: 0x17n, gdt_base: 0x1000n, idt_limit: 0n, idt_base: 0n,
        apic_id: I << 24n, apic_tpr: 0n, apic_ldr: 0n, apic_dfr: 0xffffffffn, apic_svr: 0xffn,
        apic_esr: 0n, apic_icr_lo: 0n, apic_icr_hi: 0n,
        lvt_timer: 0x10000n, lvt_thermal: 0x10000n, lvt_perfmon: 0x10000n,
        lvt0: bsp ? 0x700n : 0x10000n, lvt1: 0x10000n, lvt_error: 0x10000n, isr_tmr_irr_or: 0n,
        ...(bsp ? {
          gdt0: 0n, gdt1: 0x00af9a000000ffffn, gdt2: 0x00cf92000000ffffn, pml4_0: 0x3003n,
          pdpt0: 0x4003n, pdpt1: 0x5003n, pdpt2: 0x6003n, pdpt3: 0x7003n,
          pd_mismatches: 0n, tables_other_or: 0n, low_ram_or: 0n, high_ram_or: 0n,
        } : {}),
      };
      // Documented deviations (README.md, "Start-state deviations").
      const deviations: Record<string, bigint> = {
        sysenter_cs: 0x08n, sysenter_eip: 0xfe000n,
        ...(bsp ? { lvt0: 0x10700n } : {}),
      };
      assert.deepEqual(cpus[i], { ...contract, ...deviations }, `vCPU ${i}`);
    }
  });

  it('(d) ud2 with no IDT is a triple fault', function () {
    const g = guest(`
  mov al, 'x'
  out 0xe9, al
  ud2
  out 0xf4, al`);
    const r = runOnBochs(g.image, { doneSites: g.doneSites, timeoutMs: 20000 });
    assert.deepEqual({ status: r.status, console: r.console, done: r.done }, { status: 'triple-fault', console: 'x', done: [] });
  });

  it('(e) all 256 byte values written to port 0xE9 survive', function () {
    const g = guest(`
  xor eax, eax
.l:
  out 0xe9, al
  inc eax
  cmp eax, 256
  jb .l
  out 0xf4, al`);
    const r = runOnBochs(g.image, { doneSites: g.doneSites, timeoutMs: 20000 });
    assert.equal(r.status, 'done');
    const want = Array.from({ length: 256 }, (_, k) => String.fromCharCode(k)).join('');
    assert.equal(r.console, want);
  });

  it('(f) one-byte `out dx, al` done sites (debugger breakpoints) mixed with `out 0xf4, al` on 3 vCPUs', function () {
    const g = guest(`
.wait:
  pause
  cmp [rel turn], edi
  jne .wait
  lea eax, [rdi + 'a']
  mov edx, 0xe9
  out dx, al
  lock inc dword [rel turn]
  cmp edi, 1
  je .imm
  mov edx, 0xf4
  out dx, al ;@done
  mov al, '!'
  out 0xe9, al
.imm:
  out 0xf4, al
  mov al, '?'
  out 0xe9, al
turn: dd 0`);
    assert.equal(g.doneSites.length, 2);
    const r = runOnBochs(g.image, { vcpus: 3, doneSites: g.doneSites, timeoutMs: 20000 });
    assert.deepEqual({ status: r.status, console: r.console, done: r.done, error: r.error },
      { status: 'done', console: 'abc', done: [0, 1, 2], error: undefined });
  });

  it('(f2) a one-byte done site also used for other ports only ends the vCPU when DX = 0xF4', function () {
    const g = guest(`
.wait:
  pause
  cmp [rel turn], edi
  jne .wait
  lea eax, [rdi + 'p']
  mov edx, 0xe9
  call emit
  mov al, '-'
  call emit
  lock inc dword [rel turn]
  mov edx, 0xf4
  call emit
  mov al, '!'
  out 0xe9, al
emit:
  out dx, al ;@done
  ret
turn: dd 0`);
    const r = runOnBochs(g.image, { vcpus: 2, doneSites: g.doneSites, timeoutMs: 20000 });
    assert.deepEqual({ status: r.status, console: r.console, done: r.done, error: r.error },
      { status: 'done', console: 'p-q-', done: [0, 1], error: undefined });
  });

  it('(g) a vCPU that never finishes: timeout, with the finished ones listed', function () {
    const g = guest(`
  test edi, edi
  jnz .spin
  mov al, 'z'
  out 0xe9, al
  out 0xf4, al
.spin:
  jmp .spin`);
    const r = runOnBochs(g.image, { vcpus: 2, doneSites: g.doneSites, timeoutMs: 1500 });
    assert.deepEqual({ status: r.status, console: r.console, done: r.done }, { status: 'timeout', console: 'z', done: [0] });
  });

  it('(h) memoryMiB and loadAddress are honoured', function () {
    const src = `
  mov rax, 0x1122334455667788
  mov [0x7800000], rax        ; 120 MiB
  cmp [0x7800000], rax
  jne .bad
  lea rax, [rel $$]
  cmp rax, 0x200000
  jne .bad
  mov al, 'k'
  out 0xe9, al
.bad:
  out 0xf4, al`;
    const base = path.join(tmp, 'h');
    fs.writeFileSync(`${base}.asm`, `org 0x200000\nbits 64\n${src}\n`);
    const r0 = spawnSync('nasm', ['-f', 'bin', '-o', `${base}.bin`, `${base}.asm`]);
    assert.equal(r0.status, 0);
    const image = fs.readFileSync(`${base}.bin`);
    const site = 0x200000 + image.lastIndexOf(Buffer.from([0xe6, 0xf4]));
    const r = runOnBochs(image, { memoryMiB: 128, loadAddress: 0x200000, doneSites: [site], timeoutMs: 20000 });
    assert.deepEqual({ status: r.status, console: r.console, done: r.done }, { status: 'done', console: 'k', done: [0] });
  });

  it('(i) bad options and bad done sites are reported as errors', function () {
    const g = guest(`
  nop
  out 0xe9, al
  out 0xf4, al`);
    const notOut = runOnBochs(g.image, { doneSites: [LOAD] });
    assert.equal(notOut.status, 'error');
    assert.match(notOut.error ?? '', /not an 'out' instruction/);
    const wrongPort = runOnBochs(g.image, { doneSites: [LOAD + 1] });
    assert.match(wrongPort.error ?? '', /does not write port 0xF4/);
    const outside = runOnBochs(g.image, { doneSites: [LOAD + 100] });
    assert.match(outside.error ?? '', /outside the image/);
    const tooMany = runOnBochs(g.image, { vcpus: BOCHS_MAX_VCPUS + 1, doneSites: g.doneSites });
    assert.match(tooMany.error ?? '', /vcpus/);
  });

  it('(j) timeBochsLoop reports the run and the startup cost', function () {
    const t = timeBochsLoop(1_000_000);
    assert.equal(t.status, 'done', t.error);
    assert.ok(t.startupMs > 0 && t.elapsedMs > 0);
    assert.equal(t.loopMs, t.elapsedMs - t.startupMs);
  });
});

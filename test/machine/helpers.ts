// Helpers for machine tests: assemble a source and run it on the machine.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assemble } from '../../src/asm/assembler';
import { bundledIncludeDir, nodeFileReader } from '../../src/cli/files';
import { DEFAULT_OPTIONS, Machine, type MachineOptions } from '../../src/machine/machine';
import { applyRunFlags, findRunLine, parseRunLine } from '../../src/machine/run-options';
import { runResult, type RunResult } from '../../src/machine/result';
import { asm, errorsOf } from '../asm/asm-helpers';

export interface Run {
  readonly machine: Machine;
  readonly result: RunResult;
  /** a register of a vCPU as a bigint */
  reg(name: string, vcpu?: number): bigint;
}

export function build(source: string): { image: Uint8Array; org: number; end: number; symbol(name: string): number } {
  const r = asm(source, { requireStart: true });
  assert.deepEqual(errorsOf(r), [], 'the test program must assemble');
  return { image: r.image, org: r.org, end: r.end, symbol: (n) => Number(r.symbols.find((s) => s.name === n)!.value) };
}

/** An example of examples/, assembled, with the options of its `; avic-run:` line as `avic run` reads them. */
export function loadExample(example: string): { image: Uint8Array; org: number; end: number; options: MachineOptions } {
  const file = join(__dirname, '..', '..', 'examples', example);
  const text = nodeFileReader.readFile(file);
  assert.ok(text !== undefined, `no example ${example}`);
  const r = assemble({ file, text, reader: nodeFileReader, includeDirs: [bundledIncludeDir()] });
  assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), [], `${example} must assemble`);
  const line = findRunLine(text);
  return { image: r.image, org: r.org, end: r.end, options: line ? applyRunFlags(DEFAULT_OPTIONS, parseRunLine(line.words)) : DEFAULT_OPTIONS };
}

/** The machine of an example, its options overridden by `options`. */
export function exampleMachine(example: string, options: Partial<MachineOptions> = {}): Machine {
  const e = loadExample(example);
  return new Machine({ ...e.options, ...options }, e.image, e.org, e.end);
}

export function machineFor(source: string, options: Partial<MachineOptions> = {}): Machine {
  const b = build(source);
  return new Machine({ ...DEFAULT_OPTIONS, ...options }, b.image, b.org, b.end);
}

export function run(source: string, options: Partial<MachineOptions> = {}): Run {
  const machine = machineFor(source, options);
  const stop = machine.run();
  const result = runResult(machine, stop.kind === 'end' ? stop.status : 'step-limit');
  return {
    machine,
    result,
    reg: (name, vcpu = 0) => BigInt(result.vcpus[vcpu].regs[name]),
  };
}

/** Vectors that push an error code. */
const ERROR_CODE_VECTORS = new Set([8, 10, 11, 12, 13, 14, 17]);

/**
 * A guest with a 64-bit IDT whose 32 exception vectors land in one handler. The handler records
 * the vector, error code, CR2 and saved RIP at `last_vector`, `last_error`, `last_cr2`,
 * `last_rip`, counts at `fault_count`, and returns to the saved RIP plus `[skip]` (set by the
 * faulting code to the faulting instruction's length). `main` runs after the IDT is loaded.
 */
export function withIdt(main: string, data = ''): string {
  const stubs = Array.from({ length: 32 }, (_, v) =>
    `        align 16\nstub${v}: ${ERROR_CODE_VECTORS.has(v) ? '' : 'push 0\n        '}push ${v}\n        jmp isr_common`).join('\n');
  return `
        bits 64
        default rel
_start: lea     rdi, [idt]
        lea     rsi, [stub0]
        mov     ecx, 32
.fill:  mov     rax, rsi
        mov     [rdi], ax               ; offset 15:0
        mov     word [rdi+2], 0x08      ; selector
        mov     word [rdi+4], 0x8e00    ; present, DPL 0, 64-bit interrupt gate
        shr     rax, 16
        mov     [rdi+6], ax             ; offset 31:16
        shr     rax, 16
        mov     [rdi+8], eax            ; offset 63:32
        mov     dword [rdi+12], 0
        add     rdi, 16
        add     rsi, 16
        dec     ecx
        jnz     .fill
        lidt    [idtr]
        jmp     main
${stubs}
isr_common:
        mov     rax, [rsp]
        mov     [last_vector], rax
        mov     rax, [rsp+8]
        mov     [last_error], rax
        mov     rax, cr2
        mov     [last_cr2], rax
        mov     rax, [rsp+16]
        mov     [last_rip], rax
        mov     rax, [rsp+32]
        mov     [last_rflags], rax
        mov     rax, [skip]
        add     [rsp+16], rax
        inc     qword [fault_count]
        add     rsp, 16
        iretq
main:
${main}
        section .data
        align   16
idt:    times 32 dq 0, 0
idtr:   dw 32 * 16 - 1
        dq idt
        align   8
last_vector: dq -1
last_error:  dq -1
last_cr2:    dq -1
last_rip:    dq -1
last_rflags: dq -1
fault_count: dq 0
skip:        dq 0
${data}
`;
}

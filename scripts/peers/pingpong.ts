// The x2APIC IPI ping-pong guest of the benchmark (DESIGN.md: "x2APIC IPI ping-pong between two
// vCPUs: faster than real KVM on the same machine, as a ratio measured in one run"), and its
// runs on our machine and on real KVM. vCPU 0 sends vector 0x40 to vCPU 1 through X2APIC_ICR
// and halts; vCPU 1's handler sends 0x40 back and EOIs; vCPU 0's handler counts the pong. After
// ROUNDS round trips each vCPU writes port 0xF4 with EAX = the round trips it counted. A round trip is two IPIs,
// two interrupt deliveries, two EOIs and a halt/wake-up on each side: the path KVM's LAPIC
// emulation (and AVIC) exist for.
//
// Per-round-trip time comes from two sizes run the same way, (t(n2) - t(n1)) / (n2 - n1), so
// start-up (process, VM creation, x2APIC set-up) cancels out on both executors.

import { assemble } from '../../src/asm/assembler';
import { DEFAULT_OPTIONS, Machine } from '../../src/machine/machine';
import { kvmAvailable, runOnKvm } from '../../test/oracle/kvm/kvm';

export function pingPongSource(rounds: number): string {
  return `; x2APIC IPI ping-pong (scripts/peers/pingpong.ts): ${rounds} round trips between vCPU 0 and vCPU 1
        org     0x100000
        bits    64
        default rel
_start:
        cli
        mov     r15d, edi                       ; vCPU index (rdi: the contract's)
        ; x2APIC on, software-enabled, vector 0x40 through a 64-bit interrupt gate
        mov     ecx, 0x1b
        rdmsr
        or      eax, (1 << 10) | (1 << 11)
        wrmsr
        mov     ecx, 0x80f
        mov     eax, 0x1ff
        xor     edx, edx
        wrmsr
        lea     rdi, [idt + 0x40 * 16]
        lea     rax, [handler]
        mov     [rdi], ax
        mov     word [rdi + 2], 0x08
        mov     word [rdi + 4], 0x8e00
        shr     rax, 16
        mov     [rdi + 6], ax
        shr     rax, 16
        mov     [rdi + 8], eax
        mov     dword [rdi + 12], 0
        lidt    [idtr]
        lock inc dword [ready]
.wait:  pause
        cmp     dword [ready], 2
        jne     .wait
        test    r15d, r15d
        jnz     responder
        ; vCPU 0: ping, then halt until the pong has been counted
        xor     r14d, r14d                      ; pings sent
.ping:  inc     r14d
        mov     ecx, 0x830
        mov     eax, 0x40                       ; fixed, vector 0x40
        mov     edx, 1                          ; to x2APIC ID 1
        wrmsr
.idle:  sti
        hlt                                     ; the sti shadow covers the hlt: a pong wakes it
        cli
        cmp     [pongs], r14d
        jne     .idle
        cmp     r14d, ${rounds}
        jne     .ping
        mov     eax, [pongs]
        jmp     finish
responder:
.idle:  sti
        hlt
        cli
        cmp     dword [pings], ${rounds}
        jne     .idle
        mov     eax, [pings]
finish:                                         ; eax: the round trips this vCPU counted
done:   out     0xf4, al

handler:
        push    rax
        push    rcx
        push    rdx
        test    r15d, r15d
        jnz     .pong
        inc     dword [pongs]
        jmp     .eoi
.pong:  inc     dword [pings]
        mov     ecx, 0x830
        mov     eax, 0x40
        xor     edx, edx                        ; back to x2APIC ID 0
        wrmsr
.eoi:   mov     ecx, 0x80b
        xor     eax, eax
        xor     edx, edx
        wrmsr
        pop     rdx
        pop     rcx
        pop     rax
        iretq

        align   8
ready:  dd      0
pings:  dd      0
pongs:  dd      0
idtr:   dw      4095
        dq      idt
        align   16
idt:    times 4096 db 0
`;
}

function image(rounds: number): Uint8Array {
  const r = assemble({ file: `pingpong-${rounds}.vasm`, text: pingPongSource(rounds), reader: { readFile: () => undefined } });
  if (!r.ok) throw new Error(`pingpong guest: ${r.diagnostics.map((d) => `${d.line}:${d.col}: ${d.message}`).join('; ')}`);
  return r.image;
}

/** seconds for `rounds` round trips on our machine (the run in this process, machine built outside the timing) */
export function pingPongOnMachine(rounds: number, avic: boolean): number {
  const img = image(rounds);
  const m = new Machine({ ...DEFAULT_OPTIONS, vcpus: 2, avic, x2avic: avic, maxSteps: 2_000_000_000 }, img, 0x100000, 0x100000 + img.length);
  const t = process.hrtime.bigint();
  const stop = m.run();
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  const counts = m.cpus.map((c) => c.r[0] >>> 0);
  if (stop.kind !== 'end' || stop.status !== 'done' || counts.some((n) => n !== rounds)) {
    throw new Error(`ping-pong on the machine (avic ${avic}): ${JSON.stringify(stop)}, counts ${counts.join(', ')}`);
  }
  return seconds;
}

/** seconds for `rounds` round trips on real KVM (the harness's elapsed time), or the reason it cannot run */
export function pingPongOnKvm(rounds: number): number | { reason: string } {
  const a = kvmAvailable();
  if (!a.ok) return { reason: a.reason };
  const r = runOnKvm(image(rounds), { vcpus: 2, timeoutMs: 600_000 });
  const counts = r.vcpus.map((v) => Number(BigInt(v.regs.rax) & 0xffffffffn));
  if (r.status !== 'done' || counts.length !== 2 || counts.some((n) => n !== rounds)) {
    return { reason: `KVM status ${r.status}${r.error ? `: ${r.error}` : ''}, counts ${counts.join(', ')}` };
  }
  return r.elapsed_ms / 1000;
}

export interface PingPongFigures {
  /** microseconds per round trip on our machine, AVIC and x2AVIC on (the guest's x2APIC IPIs are accelerated where the APM says) */
  readonly ipi_pingpong_us: number;
  /** the same with AVIC off: every x2APIC MSR access exits to the modelled kernel's LAPIC */
  readonly ipi_pingpong_us_avic_off: number;
  /** real KVM here (in-kernel LAPIC), or null with a reason */
  readonly kvm_ipi_pingpong_us: number | null;
  readonly reasons: Record<string, string>;
}

/** per-round-trip time from two sizes: the slope, so start-up cancels (best of `repeats` per size) */
function slope(run: (rounds: number) => number, n1: number, n2: number, repeats: number): number {
  const best = (n: number) => Math.min(...Array.from({ length: repeats }, () => run(n)));
  return ((best(n2) - best(n1)) / (n2 - n1)) * 1e6;
}

export function measurePingPong(withKvm: boolean): PingPongFigures {
  const reasons: Record<string, string> = {};
  pingPongOnMachine(100, true); // warm up: the decoder, the interpreter's closures, the KVM model
  const ours = slope((n) => pingPongOnMachine(n, true), 200, 2200, 2);
  const off = slope((n) => pingPongOnMachine(n, false), 200, 2200, 2);
  let kvm: number | null = null;
  if (!withKvm) reasons.kvm_ipi_pingpong_us = 'not measured (--no-peers)';
  else {
    const first = pingPongOnKvm(1000);
    if (typeof first !== 'number') reasons.kvm_ipi_pingpong_us = first.reason;
    else {
      kvm = slope((n) => {
        const s = pingPongOnKvm(n);
        if (typeof s !== 'number') throw new Error(s.reason);
        return s;
      }, 1000, 11000, 3);
    }
  }
  const r = (x: number) => Math.round(x * 10) / 10;
  return { ipi_pingpong_us: r(ours), ipi_pingpong_us_avic_off: r(off), kvm_ipi_pingpong_us: kvm === null ? null : r(kvm), reasons };
}

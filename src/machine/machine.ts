// The machine: 1 to 512 vCPUs over shared guest RAM, the ports of contracts/guest.md, MSR and
// CPUID dispatch, the deterministic scheduler, a step limit and the event log. It exposes the
// run/step API the CLI and the debugger drive.

import { BlockCache } from './cpu/blocks';
import { Cpu, type CpuBus, STOP_BREAKPOINT, STOP_DONE, STOP_EXIT, STOP_HALT, STOP_NONE, STOP_TRIPLE_FAULT } from './cpu/cpu';
import { EventLog, type MachineEvent } from './events';
import { DEFAULT_LOAD_ADDRESS, loadImage, resetCpu } from './loader';
import { PhysicalMemory } from './memory';
import { Scheduler, type SchedPolicy } from './scheduler';

export const PORT_CONSOLE = 0xe9;
export const PORT_DONE = 0xf4;
export const PORT_HOST_ACTION = 0xf0;
export const MAX_VCPUS = 512;

export interface MachineOptions {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly sched: SchedPolicy;
  readonly quantum: number;
  readonly seed: number;
  readonly maxSteps: number;
  /** SVM exposed to the guest (CPUID, EFER.SVME) */
  readonly nested: boolean;
}

export const DEFAULT_OPTIONS: MachineOptions = {
  vcpus: 1, memoryMiB: 64, sched: 'rr', quantum: 1000, seed: 1, maxSteps: 100_000_000, nested: false,
};

export type VcpuState = 'running' | 'halted' | 'done' | 'triple-fault';

export type RunStatus = 'done' | 'step-limit' | 'halted' | 'triple-fault';

/** Why a run call returned. */
export type StopReason =
  | { readonly kind: 'end'; readonly status: RunStatus }
  | { readonly kind: 'breakpoint'; readonly vcpu: number }
  | { readonly kind: 'budget' };

export class Machine implements CpuBus {
  readonly mem: PhysicalMemory;
  readonly blocks: BlockCache;
  readonly cpus: Cpu[];
  readonly log: EventLog;
  readonly scheduler: Scheduler;
  /** scheduler steps so far (guest instructions, and later host steps) */
  steps = 0;
  private readonly done: boolean[];
  private readonly consoleBytes: number[] = [];
  private current: number | null = null;
  private tripleFaulted: number | null = null;

  constructor(readonly options: MachineOptions, image: Uint8Array, loadAddress = DEFAULT_LOAD_ADDRESS, imageEnd?: number) {
    if (!Number.isInteger(options.vcpus) || options.vcpus < 1 || options.vcpus > MAX_VCPUS) {
      throw new RangeError(`--vcpus must be 1..${MAX_VCPUS}, not ${options.vcpus}`);
    }
    this.mem = new PhysicalMemory(options.memoryMiB * 1024 * 1024);
    this.log = new EventLog(() => this.steps);
    this.blocks = new BlockCache(this.mem, (page) => {
      for (const c of this.cpus) c.dropWriteEntries(page);
    });
    loadImage(this.mem, image, loadAddress, imageEnd);
    this.cpus = [];
    for (let i = 0; i < options.vcpus; i++) {
      const cpu = new Cpu(i, this, { svm: options.nested });
      resetCpu(cpu, i, loadAddress);
      this.cpus.push(cpu);
    }
    this.done = new Array(options.vcpus).fill(false);
    this.scheduler = new Scheduler(options.sched, options.quantum, options.seed);
  }

  // ---- state the CLI and the debugger read --------------------------------------------------------

  get console(): string {
    return bytesToString(this.consoleBytes);
  }

  vcpuState(i: number): VcpuState {
    if (this.tripleFaulted === i) return 'triple-fault';
    if (this.done[i]) return 'done';
    if (this.cpus[i].halted) return 'halted';
    return 'running';
  }

  get instructions(): number {
    let n = 0;
    for (const c of this.cpus) n += c.icount;
    return n;
  }

  /** The run's status if it has ended (contracts/run-json.md's order: triple-fault, step-limit, halted, done). */
  endStatus(): RunStatus | undefined {
    if (this.tripleFaulted !== null) return 'triple-fault';
    if (this.done.every((d) => d)) return 'done';
    if (this.steps >= this.options.maxSteps) return 'step-limit';
    if (this.runnable().length === 0) return 'halted';
    return undefined;
  }

  private runnable(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.cpus.length; i++) if (!this.done[i] && !this.cpus[i].halted) out.push(i);
    return out;
  }

  // ---- running ----------------------------------------------------------------------------------

  /** Runs until the end, a breakpoint, or `budget` more steps. */
  run(budget = Infinity): StopReason {
    const limit = Math.min(this.options.maxSteps, this.steps + budget);
    for (;;) {
      const end = this.endStatus();
      if (end) return { kind: 'end', status: end };
      if (this.steps >= limit) return { kind: 'budget' };
      const choice = this.scheduler.next(this.runnable());
      const stop = this.runVcpu(choice.vcpu, Math.min(choice.steps, limit - this.steps));
      if (stop) return stop;
    }
  }

  /** Runs one vCPU for up to `steps` steps (the debugger's single step uses this). */
  runVcpu(i: number, steps: number): StopReason | undefined {
    const cpu = this.cpus[i];
    if (this.current !== i) {
      this.log.add({ kind: 'sched', vcpu: i, rip: cpu.rip, from: this.current });
      this.current = i;
    }
    const n = cpu.run(steps);
    this.steps += n;
    const reason = cpu.stopReason;
    cpu.stopReason = STOP_NONE;
    switch (reason) {
      case STOP_DONE:
        this.done[i] = true;
        this.log.add({ kind: 'done', vcpu: i, rip: cpu.rip });
        break;
      case STOP_TRIPLE_FAULT:
        this.tripleFaulted = i;
        break;
      case STOP_HALT:
        this.log.add({ kind: 'halt', vcpu: i, rip: cpu.rip });
        break;
      case STOP_BREAKPOINT:
        return { kind: 'breakpoint', vcpu: i };
      case STOP_EXIT:
      case STOP_NONE:
        break;
    }
    return undefined;
  }

  /** Instruction breakpoints (linear addresses). */
  setBreakpoints(addresses: Iterable<number>): void {
    this.blocks.setBreakpoints(addresses);
    for (const c of this.cpus) c.forgetChain();
  }

  // ---- CpuBus: what the vCPUs ask of the machine ----------------------------------------------------

  ioIn(cpu: Cpu, port: number, size: number): number {
    const value = size === 1 ? 0xff : size === 2 ? 0xffff : -1;
    this.log.add({ kind: 'pio', vcpu: cpu.index, rip: cpu.rip, port, size, value: value >>> 0, write: false, unhandled: true });
    return value;
  }

  ioOut(cpu: Cpu, port: number, size: number, value: number): void {
    const handled = port === PORT_CONSOLE || port === PORT_DONE || port === PORT_HOST_ACTION;
    this.log.add({ kind: 'pio', vcpu: cpu.index, rip: cpu.rip, port, size, value: value >>> 0, write: true, unhandled: !handled });
    if (port === PORT_CONSOLE) {
      for (let k = 0; k < size; k++) this.consoleBytes.push((value >>> (8 * k)) & 0xff);
    } else if (port === PORT_DONE) {
      cpu.stopReason = STOP_DONE;
    } else if (port === PORT_HOST_ACTION) {
      this.log.add({ kind: 'host-action', vcpu: cpu.index, rip: cpu.rip, trigger: value & 0xff });
    }
  }

  mmioRead(cpu: Cpu, phys: number, size: number): number {
    const value = size === 1 ? 0xff : size === 2 ? 0xffff : -1;
    this.log.add({ kind: 'mmio-read', vcpu: cpu.index, rip: cpu.rip, gpa: phys, size, value: value >>> 0, unhandled: true });
    return value;
  }

  mmioWrite(cpu: Cpu, phys: number, size: number, value: number): void {
    this.log.add({ kind: 'mmio-write', vcpu: cpu.index, rip: cpu.rip, gpa: phys, size, value: value >>> 0, unhandled: true });
  }

  /** MSRs beyond the CPU's own: none yet (the local APIC and SVM MSRs come with the KVM model): #GP. */
  rdmsr(): [number, number] | undefined {
    return undefined;
  }

  wrmsr(): boolean {
    return false;
  }

  msrAccessed(cpu: Cpu, msr: number, write: boolean, lo: number, hi: number, ok: boolean): void {
    const value = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    this.log.add({ kind: write ? 'msr-write' : 'msr-read', vcpu: cpu.index, rip: cpu.rip, msr, value, ok, host: false });
  }

  /**
   * CPUID as this machine reports it (contracts/guest.md: leaf 1 EBX[31:24] = initial APIC ID,
   * ECX.x2APIC, EDX.APIC; leaf 0xB EDX = x2APIC ID; SVM only with --nested on). Only features the
   * CPU implements are advertised: no x87, no SSE.
   */
  cpuid(cpu: Cpu, leaf: number, subleaf: number): [number, number, number, number] {
    const id = cpu.index;
    const n = this.cpus.length;
    const maxExt = this.options.nested ? 0x8000000a : 0x80000008;
    switch (leaf) {
      case 0:
        return [0xd, 0x68747541, 0x444d4163, 0x69746e65]; // "AuthenticAMD"
      case 1: {
        const eax = 0x00a00f11; // family 19h
        const ebx = ((id & 0xff) << 24) | (Math.min(n, 255) << 16) | (8 << 8);
        const ecx = (1 << 21) | (1 << 31); // x2APIC, hypervisor
        const edx = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 9) | (1 << 13) | (1 << 15) | (1 << 16); // PSE TSC MSR PAE APIC PGE CMOV PAT
        return [eax, ebx, ecx, edx];
      }
      case 0xb: {
        const shift = Math.max(0, Math.ceil(Math.log2(n)));
        if (subleaf === 0) return [0, 1, 0x100, id];
        if (subleaf === 1) return [shift, n, 0x201, id];
        return [0, 0, subleaf & 0xff, id];
      }
      case 0x80000000:
        return [maxExt, 0x68747541, 0x444d4163, 0x69746e65];
      case 0x80000001: {
        const ecx = 1 | (this.options.nested ? 1 << 2 : 0); // LAHF/SAHF in 64-bit mode; SVM
        const edx = (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29); // SYSCALL NX 1GB-pages RDTSCP LM
        return [0x00a00f11, 0, ecx, edx];
      }
      case 0x80000008:
        return [0x3030, 0, 0, 0]; // 48-bit physical and linear addresses
      case 0x8000000a:
        return this.options.nested ? [1, 8, 0, 0] : [0, 0, 0, 0];
      default:
        return [0, 0, 0, 0];
    }
  }

  exception(cpu: Cpu, vector: number, errorCode: number | undefined): void {
    this.log.add({ kind: 'exception', vcpu: cpu.index, rip: cpu.rip, vector, errorCode });
  }

  tsc(): bigint {
    return BigInt(this.steps);
  }

  getCr8(): number {
    return 0;
  }

  setCr8(): void {}

  svm(): boolean {
    return false;
  }

  /**
   * kvm_emulate_hypercall (v6.3): -KVM_EPERM above CPL 0; KVM_HC_VAPIC_POLL_IRQ (1) returns 0; no
   * PV feature is advertised in CPUID, so every other call returns -KVM_ENOSYS.
   */
  hypercall(cpu: Cpu): void {
    const KVM_ENOSYS = 1000;
    const KVM_EPERM = 1;
    const KVM_HC_VAPIC_POLL_IRQ = 1;
    const nr = cpu.r[0] === KVM_HC_VAPIC_POLL_IRQ && cpu.r[1] === 0;
    const ret = cpu.cpl !== 0 ? -KVM_EPERM : nr ? 0 : -KVM_ENOSYS;
    cpu.r[0] = ret;
    cpu.r[1] = ret < 0 ? -1 : 0;
  }

  /** The events so far (read-only view). */
  get events(): readonly MachineEvent[] {
    return this.log.events;
  }
}

function bytesToString(bytes: readonly number[]): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.slice(i, i + 8192));
  return s;
}

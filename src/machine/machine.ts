// The machine: guest RAM, the vCPUs, the KVM model built as a VMM builds it (KVM_CREATE_VM,
// KVM_CREATE_IRQCHIP, memory, KVM_CREATE_VCPU for each), the userspace VMM, and the
// deterministic scheduler over host tasks (one per vCPU thread, one for the VMM). Virtual time
// is the step count: a guest instruction or a host preemption point is one step (one ns).
// It exposes the run/step API the CLI and the debugger drive.

import { BlockCache } from './cpu/blocks';
import { Cpu, type CpuBus, STOP_BREAKPOINT, STOP_DEBUG, STOP_VMEXIT } from './cpu/cpu';
import { EventLog, type InhibitChangeEvent, type MachineEvent, type NewEvent } from './events';
import { Checkers, type Violation } from './kvm/checkers';
import { DESIGNS, type DesignName } from './kvm/design';
import {
  APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, APICV_INHIBIT_REASON_ABSENT, APICV_INHIBIT_REASON_DISABLE, Kvm, KvmVcpu,
} from './kvm/kvm_host';
import { apic_timer_fn, kvm_lapic_get_cr8, kvm_lapic_reset, kvm_lapic_set_cr8 } from './kvm/lapic';
import { KvmLapic } from './kvm/lapic_h';
import { avic_init_backing_page, AVIC_MAX_PHYSICAL_ID, x2avicMsr } from './kvm/svm/avic';
import { svm_guest_events, svm_mmio_read, svm_mmio_write, svm_x86_ops } from './kvm/svm/svm';
import { VcpuSvm } from './kvm/svm/svm_h';
import { type HostEvent, Task } from './kvm/task';
import { type HostActionSpec, USERSPACE_PORTS, Vmm } from './kvm/userspace';
import { kvm_vcpu_kick_irq } from './kvm/kvm_main';
import { kvm_arch_vcpu_runnable } from './kvm/x86';
import { DEFAULT_LOAD_ADDRESS, loadImage, resetCpu } from './loader';
import { PhysicalMemory } from './memory';
import { Scheduler, type SchedPolicy } from './scheduler';

export { PORT_CONSOLE, PORT_DONE, PORT_HOST_ACTION } from './kvm/userspace';
export const MAX_VCPUS = 512;

export interface MachineOptions {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly sched: SchedPolicy;
  readonly quantum: number;
  readonly seed: number;
  readonly maxSteps: number;
  /** SVM exposed to the guest (CPUID, EFER.SVME, vmrun) */
  readonly nested: boolean;
  readonly design: DesignName;
  /** the `avic` module parameter */
  readonly avic: boolean;
  /** the host has x2AVIC */
  readonly x2avic: boolean;
  readonly hostActions: readonly HostActionSpec[];
  /** record violations and go on */
  readonly keepGoing: boolean;
}

export const DEFAULT_OPTIONS: MachineOptions = {
  vcpus: 1, memoryMiB: 64, sched: 'rr', quantum: 1000, seed: 1, maxSteps: 100_000_000, nested: false,
  design: 'upstream', avic: true, x2avic: false, hostActions: [], keepGoing: false,
};

export type VcpuState = 'running' | 'halted' | 'blocked' | 'done' | 'triple-fault';

/** `error`: the guest did something the model cannot run (machine.errors says what) */
export type RunStatus = 'done' | 'step-limit' | 'halted' | 'triple-fault' | 'violation' | 'error';

/** Why a run call returned. */
export type StopReason =
  | { readonly kind: 'end'; readonly status: RunStatus }
  /** an instruction breakpoint of the block cache */
  | { readonly kind: 'breakpoint'; readonly vcpu: number }
  /** a function breakpoint: `task` stopped on entry to the kernel function `fn` */
  | { readonly kind: 'function'; readonly task: Task; readonly fn: string }
  /** the debugger asked (requestStop, shouldStop): `task` ran last */
  | { readonly kind: 'debug'; readonly task: Task | null }
  /** nothing can run but tasks the debugger froze */
  | { readonly kind: 'frozen' }
  | { readonly kind: 'budget' };

/** The debugger's controls over a run (all off for `avic run`). */
export interface DebugControl {
  /** checked after every host step and guest burst: true stops the run */
  shouldStop: (() => boolean) | null;
  /** how many instructions a vCPU may run in one burst (a step runs one) */
  guestLimit: ((vcpu: number) => number) | null;
  /** tasks that do not run (the other threads of a `singleThread` request) */
  readonly frozen: Set<number>;
  /** a write hit a watched range */
  onWatchedWrite: ((vcpu: number, phys: number, size: number) => void) | null;
}

const STEP_PAST_BREAK = Object.freeze({ kind: 'step' as const });

export class Machine implements CpuBus {
  readonly mem: PhysicalMemory;
  readonly blocks: BlockCache;
  readonly cpus: Cpu[] = [];
  readonly log: EventLog;
  /** the last kvm_apicv_inhibit_changed that changed each bit (views show who set it), however old */
  readonly lastInhibitChange = new Map<number, InhibitChangeEvent>();
  readonly scheduler: Scheduler;
  readonly kvm: Kvm;
  readonly vmm: Vmm;
  readonly tasks: Task[] = [];
  readonly checkers: Checkers;
  /** scheduler steps so far: virtual time (a guest run in progress adds its instructions: `now()`) */
  steps = 0;
  /** the vCPU running guest code now, and its instruction count when it started */
  private guestCpu: Cpu | null = null;
  private guestStart = 0;
  private readonly consoleBytes: number[] = [];
  private current: Task | null = null;
  private shutdownVcpu: number | null = null;
  private readonly vcpuDone: boolean[];
  private readonly vmmTask: Task;
  private nextTrigger = 0;
  private stopRequested = false;
  /** the scheduler's current turn when a run returned in the middle of it */
  private slice: { readonly task: Task; readonly end: number } | null = null;
  private watches: readonly { readonly phys: number; readonly length: number }[] = [];
  readonly debug: DebugControl = { shouldStop: null, guestLimit: null, frozen: new Set(), onWatchedWrite: null };
  /** each console byte as the guest writes it */
  onConsole: ((byte: number) => void) | null = null;
  /** record violations and go on (`--keep-going`; the debugger turns it on while it stops on violations) */
  keepGoing: boolean;
  private readonly triggerSteps: number[];
  /** what went wrong that is not a guest-visible end: a host action that failed, a guest the model cannot run */
  readonly errors: string[] = [];
  /** a vCPU did something the model cannot run past (KVM_EXIT_INTERNAL_ERROR): the run ends `error` */
  private unsupported = false;

  constructor(readonly options: MachineOptions, image: Uint8Array, loadAddress = DEFAULT_LOAD_ADDRESS, imageEnd?: number) {
    const n = options.vcpus;
    if (!Number.isInteger(n) || n < 1 || n > MAX_VCPUS) throw new RangeError(`--vcpus must be 1..${MAX_VCPUS}, not ${n}`);
    if (options.avic && !options.x2avic && n > AVIC_MAX_PHYSICAL_ID + 1) {
      // avic_init_backing_page @ v6.3: a vCPU id above AVIC_MAX_PHYSICAL_ID fails KVM_CREATE_VCPU (-EINVAL)
      throw new RangeError(`--vcpus ${n}: AVIC without x2AVIC (--avic on --x2avic off) allows at most ${AVIC_MAX_PHYSICAL_ID + 1} vCPUs`);
    }
    this.keepGoing = options.keepGoing;
    this.mem = new PhysicalMemory(options.memoryMiB * 1024 * 1024);
    this.log = new EventLog(() => this.now());
    this.log.onEvent((e) => {
      if (e.kind === 'inhibit-change' && e.changed) this.lastInhibitChange.set(e.reason, e);
    });
    this.blocks = new BlockCache(this.mem, (page) => {
      for (const c of this.cpus) c.dropWriteEntries(page);
    });
    loadImage(this.mem, image, loadAddress, imageEnd);
    this.scheduler = new Scheduler(options.sched, options.quantum, options.seed);
    const design = DESIGNS[options.design];
    const kvm = new Kvm(design, { avic: options.avic, x2avic: options.x2avic, nested: options.nested }, () => this.now());
    this.kvm = kvm;
    kvm.x86_ops = svm_x86_ops(options.x2avic, design.x2apicInhibitListed);
    kvm.arch_hooks = { kvm_arch_vcpu_runnable };
    kvm.userspacePorts = USERSPACE_PORTS;
    this.vcpuDone = new Array(n).fill(false);
    this.buildVm(loadAddress);
    this.vmm = new Vmm(kvm, options.hostActions, {
      console: (b) => {
        this.consoleBytes.push(b);
        this.onConsole?.(b);
      },
      done: (v) => {
        this.vcpuDone[v.vcpu_id] = true;
        v.task.emit({ kind: 'done' });
      },
      shutdown: (v) => {
        this.shutdownVcpu ??= v.vcpu_id;
      },
      internalError: (_v, message) => {
        this.errors.push(message);
        this.unsupported = true;
      },
      actionFailed: (q) => this.errors.push(q.error ?? `host action ${q.spec.text} failed`),
    });
    for (const v of kvm.vcpus) v.task.start(this.vmm.vcpuThread(v.task, v));
    this.vmmTask = new Task(n, 'vmm', null, (t, e) => this.emit(t, e));
    this.vmmTask.start(this.vmm.vmmThread(this.vmmTask));
    this.tasks.push(this.vmmTask);
    this.triggerSteps = [...new Set(options.hostActions.flatMap((a) => (a.trigger.kind === 'step' ? [a.trigger.step] : [])))].sort((a, b) => a - b);
    this.checkers = new Checkers(this.log, kvm);
  }

  /** KVM_CREATE_VM, KVM_CREATE_IRQCHIP, the RAM slot, KVM_CREATE_VCPU each: before the event log starts. */
  private buildVm(loadAddress: number): void {
    const kvm = this.kvm;
    const o = this.options;
    // kvm_apicv_init: ABSENT (and DISABLE without enable_apicv); KVM_CREATE_IRQCHIP clears ABSENT
    kvm.arch.apicv_inhibit_reasons = o.avic ? 0 : (1 << APICV_INHIBIT_REASON_DISABLE) | (1 << APICV_INHIBIT_REASON_ABSENT);
    kvm.memslots.set(0, { id: 0, gpa: 0, size: this.mem.size, private: false });
    for (let i = 0; i < o.vcpus; i++) {
      const cpu = new Cpu(i, this, { svm: o.nested });
      resetCpu(cpu, i, loadAddress);
      this.cpus.push(cpu);
      const task = new Task(i, `vcpu ${i}`, i, (t, e) => this.emit(t, e));
      this.tasks.push(task);
      const vcpu = new KvmVcpu(kvm, i, cpu, task, new KvmLapic(), new VcpuSvm());
      kvm.vcpus.push(vcpu);
      kvm_lapic_reset(vcpu);
      // kvm_arch_vcpu_create: APICv starts active when the VM is activated
      vcpu.apic.apicv_active = o.avic && kvm.arch.apicv_inhibit_reasons === 0;
      if (o.avic) {
        avic_init_backing_page(vcpu);
        // avic_init_backing_page -> kvm_alloc_apic_access_page, when the VM is activated
        if (kvm.arch.apicv_inhibit_reasons === 0 && !kvm.arch.apic_access_memslot_enabled) {
          kvm.memslots.set(APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, { id: APIC_ACCESS_PAGE_PRIVATE_MEMSLOT, gpa: 0xfee00000, size: 4096, private: true });
          kvm.arch.apic_access_memslot_enabled = true;
        }
      }
      cpu.onEvents = (c) => svm_guest_events(vcpu, c);
    }
    kvm.arch.apic_map_dirty = false;
  }

  private emit(t: Task, e: HostEvent): void {
    const vcpu = t.vcpu === null ? null : t.vcpu;
    const cpu = vcpu === null ? null : this.cpus[vcpu];
    // kvm_exit reports the RIP of the instruction that exited
    const rip = cpu === null ? 0 : e.kind === 'vmexit' && cpu.exitRip !== -1 ? cpu.exitRip : cpu.rip;
    // every caller passes a fresh literal: it becomes the event, without a copy
    const ev = e as HostEvent & { vcpu: number | null; rip: number; hostStack?: readonly string[] };
    ev.vcpu = vcpu;
    ev.rip = rip;
    if (t.stack.length > 0) ev.hostStack = t.hostStack();
    this.log.add(ev as NewEvent);
  }

  // ---- state the CLI and the debugger read --------------------------------------------------------

  get console(): string {
    return bytesToString(this.consoleBytes);
  }

  vcpuState(i: number): VcpuState {
    if (this.shutdownVcpu === i) return 'triple-fault';
    if (this.vcpuDone[i]) return 'done';
    const vcpu = this.kvm.vcpus[i];
    const task = vcpu.task;
    if (task.pending?.kind === 'wait') {
      if (task.pending.why === 'halt' && !task.pending.until()) return 'halted';
      if (!task.pending.until()) return 'blocked';
    }
    if (task.state === 'finished' || (!vcpu.inKvmRun && task.stack.length > 0)) return 'blocked';
    return 'running';
  }

  get instructions(): number {
    let n = 0;
    for (const c of this.cpus) n += c.icount;
    return n;
  }

  get violations(): readonly Violation[] {
    return this.checkers.violations;
  }

  /** The run's status if it has ended (contracts/run-json.md's order: violation, triple-fault, step-limit, halted, done). */
  endStatus(): RunStatus | undefined {
    if (this.unsupported) return 'error';
    if (this.checkers.violations.length > 0 && !this.keepGoing) return 'violation';
    if (this.shutdownVcpu !== null) return 'triple-fault';
    if (this.vcpuDone.every((d) => d)) return 'done';
    if (this.steps >= this.options.maxSteps) return 'step-limit';
    if (this.runnableTasks(true).length === 0 && this.nextTimer() < 0) return this.stuckStatus();
    return undefined;
  }

  /** Nothing can run: halted vCPUs only (`halted`), or a host wait nothing can end (a deadlock violation). */
  private stuckStatus(): RunStatus {
    const stuck = this.tasks.filter((t) => t.state === 'waiting' && t.pending?.kind === 'wait' && t.pending.why !== 'halt' &&
      !(t === this.vmmTask && t.pending.why === 'userspace'));
    if (stuck.length === 0) return 'halted';
    this.checkers.deadlock(stuck);
    return 'violation'; // the run cannot go on, --keep-going or not
  }

  /** tasks that can make progress (`all`: frozen ones too) */
  private runnableTasks(all = false): Task[] {
    const out: Task[] = [];
    const frozen = this.debug.frozen;
    for (const t of this.tasks) {
      if (!all && frozen.size > 0 && frozen.has(t.id)) continue;
      const s = t.state;
      if (s === 'runnable' || s === 'guest') out.push(t);
    }
    return out;
  }

  /** the earliest armed APIC timer, or -1 */
  private nextTimer(): number {
    let min = -1;
    for (const v of this.kvm.vcpus) {
      const target = v.apic.lapic_timer.target;
      if (target >= 0 && !this.vcpuDone[v.vcpu_id] && (min < 0 || target < min)) min = target;
    }
    return min;
  }

  // ---- running ----------------------------------------------------------------------------------

  /** Runs until the end, a breakpoint, a stop the debugger asked for, or `budget` more steps. */
  run(budget = Infinity): StopReason {
    const limit = Math.min(this.options.maxSteps, this.steps + budget);
    for (;;) {
      this.fireTimers();
      this.fireTriggers();
      const end = this.endStatus();
      if (end) return { kind: 'end', status: end };
      if (this.stopRequested) return this.takeStop();
      if (this.steps >= limit) return { kind: 'budget' };
      const runnable = this.runnableTasks();
      if (runnable.length === 0) {
        if (this.debug.frozen.size > 0 && this.tasks.some((t) => this.debug.frozen.has(t.id) && t.state !== 'finished')) {
          return { kind: 'frozen' }; // what could run is frozen by the debugger
        }
        // idle: every vCPU waits; virtual time jumps to the next timer
        this.steps = Math.min(limit, Math.max(this.steps, this.nextTimer()));
        continue;
      }
      // a turn cut short by the caller's budget or a stop goes on where it was (so a debugger run,
      // in chunks and with stops, schedules exactly as `avic run` does)
      let task: Task;
      let want: number;
      const slice = this.slice;
      if (slice !== null && runnable.includes(slice.task) && slice.end > this.steps) {
        task = slice.task;
        want = slice.end - this.steps;
      } else {
        const choice = this.scheduler.next(runnable.map((t) => t.id));
        task = this.tasks.find((t) => t.id === choice.vcpu)!;
        want = choice.steps;
      }
      const start = this.steps;
      const grant = Math.min(want, limit - this.steps);
      const stop = this.runTask(task, grant);
      this.slice = (stop !== undefined || grant < want) && this.steps < start + want ? { task, end: start + want } : null;
      if (stop) return stop;
    }
  }

  /** Runs one task for up to `steps` steps. */
  runTask(task: Task, steps: number): StopReason | undefined {
    if (this.current !== task) {
      const vcpu = task.vcpu;
      this.log.add({ kind: 'sched', vcpu, rip: vcpu === null ? 0 : this.cpus[vcpu].rip, from: this.current?.vcpu ?? null, task: task.name });
      this.current = task;
    }
    let left = steps;
    const deadline = this.nextDeadline();
    while (left > 0) {
      const pending = task.pending;
      if (pending === null || task.finished) break;
      if (pending.kind === 'guest') {
        const cpu = this.cpus[task.vcpu!];
        let budget = Math.min(left, Math.max(1, deadline - this.steps));
        if (this.debug.guestLimit !== null) budget = Math.min(budget, this.debug.guestLimit(task.vcpu!));
        if (budget <= 0) break;
        this.guestCpu = cpu;
        this.guestStart = cpu.icount;
        const n = cpu.run(budget);
        this.guestCpu = null;
        this.steps += n;
        left -= n;
        if (cpu.stopReason === STOP_BREAKPOINT) {
          cpu.stopReason = 0;
          return { kind: 'breakpoint', vcpu: task.vcpu! };
        }
        if (cpu.stopReason === STOP_DEBUG) cpu.stopReason = 0;
        // a stop asked for during the instruction comes before the host handles its exit
        if (this.stopRequested) return this.takeStop();
        if (cpu.stopReason === STOP_VMEXIT) {
          task.resume = cpu.takeExit();
          task.step();
          this.steps++;
          left--;
        }
        if (this.steps >= deadline) break;
      } else if (pending.kind === 'wait' && !pending.until()) {
        break;
      } else if (pending.kind === 'break') {
        task.pending = STEP_PAST_BREAK; // the next step goes on past the function breakpoint
        return { kind: 'function', task, fn: pending.fn };
      } else {
        task.step();
        this.steps++;
        left--;
      }
      if (this.checkers.violations.length > 0 && !this.keepGoing) break;
      if (this.stopRequested || (this.debug.shouldStop !== null && this.debug.shouldStop())) return this.takeStop();
    }
    return undefined;
  }

  // ---- what the debugger controls -----------------------------------------------------------------

  /** The next run asks the scheduler afresh instead of finishing the turn a run left unfinished. */
  forgetTurn(): void {
    this.slice = null;
  }

  /** Asks the run to stop as soon as it can: after the current host step, or at the next instruction boundary. */
  requestStop(): void {
    this.stopRequested = true;
    this.guestCpu?.requestStop();
  }

  private takeStop(): StopReason {
    this.stopRequested = false;
    return { kind: 'debug', task: this.current };
  }

  /** Write watches on guest-physical ranges (data breakpoints on guest memory). */
  setWriteWatches(ranges: readonly { readonly phys: number; readonly length: number }[]): void {
    this.watches = ranges.filter((r) => r.length > 0 && r.phys >= 0 && r.phys + r.length <= this.mem.size);
    const pages = this.mem.watchPages;
    pages.fill(0);
    for (const r of this.watches) {
      for (let p = r.phys >>> 12; p <= (r.phys + r.length - 1) >>> 12; p++) {
        pages[p] = 1;
        for (const c of this.cpus) c.dropWriteEntries(p);
      }
    }
  }

  watchedWrite(cpu: Cpu, phys: number, size: number): void {
    const hit = this.watches.find((r) => phys < r.phys + r.length && r.phys < phys + size);
    if (hit && this.debug.onWatchedWrite !== null) this.debug.onWatchedWrite(cpu.index, phys, size);
  }

  /** the next step at which a timer or a step trigger needs the scheduler */
  private nextDeadline(): number {
    let d = Infinity;
    const timer = this.nextTimer();
    if (timer >= 0) d = timer;
    const trig = this.triggerSteps[this.nextTrigger];
    if (trig !== undefined && trig < d) d = trig;
    return Math.max(d, this.steps + 1);
  }

  private fireTimers(): void {
    for (const v of this.kvm.vcpus) {
      const target = v.apic.lapic_timer.target;
      if (target >= 0 && target <= this.steps && !this.vcpuDone[v.vcpu_id]) {
        // the hrtimer interrupt arrives on the vCPU's own pCPU: in guest mode, a #VMEXIT
        if (v.irqsDisabled) {
          v.ipiPending = true;
          v.cpu.eventPending = true;
        }
        apic_timer_fn(v.task, v, kvm_vcpu_kick_irq);
      }
    }
  }

  private fireTriggers(): void {
    while (this.nextTrigger < this.triggerSteps.length && this.triggerSteps[this.nextTrigger] <= this.steps) {
      const step = this.triggerSteps[this.nextTrigger++];
      for (const spec of this.vmm.stepTriggers(step)) this.vmm.queue(this.vmmTask, spec, null, null);
    }
  }

  /** Instruction breakpoints (linear addresses). */
  setBreakpoints(addresses: Iterable<number>): void {
    this.blocks.setBreakpoints(addresses);
    for (const c of this.cpus) c.forgetChain();
  }

  // ---- CpuBus: what the vCPUs ask of the machine ----------------------------------------------------

  mmioRead(cpu: Cpu, gpa: number, size: number): number {
    return svm_mmio_read(this.kvm.vcpus[cpu.index], gpa, size);
  }

  mmioWrite(cpu: Cpu, gpa: number, size: number, value: number): void {
    svm_mmio_write(this.kvm.vcpus[cpu.index], gpa, size, value);
  }

  /** no port device in the kernel and none in the VMM answers a read: all-ones */
  pioIn(_cpu: Cpu, _port: number, size: number): number {
    return size === 1 ? 0xff : size === 2 ? 0xffff : -1;
  }

  hwMsr(cpu: Cpu, msr: number, write: boolean, value: bigint): bigint | undefined {
    return x2avicMsr(this.kvm.vcpus[cpu.index], msr, write, value);
  }

  exception(cpu: Cpu, vector: number, errorCode: number | undefined): void {
    this.log.add({ kind: 'exception', vcpu: cpu.index, rip: cpu.rip, vector, errorCode });
  }

  /** Virtual time in steps (ns), including the instructions of a guest run in progress. */
  now(): number {
    const c = this.guestCpu;
    return c === null ? this.steps : this.steps + (c.icount - this.guestStart);
  }

  tsc(): bigint {
    return BigInt(this.now());
  }

  getCr8(cpu: Cpu): number {
    return kvm_lapic_get_cr8(this.kvm.vcpus[cpu.index]);
  }

  setCr8(cpu: Cpu, value: number): void {
    kvm_lapic_set_cr8(this.kvm.vcpus[cpu.index], value);
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


// The debug runtime (the "runtime" half of mock-debug's split): it owns the machine of a debug
// session and drives it: continue, step (instruction or line, guest or host frames, one vCPU or
// all), pause; breakpoints of every kind (source lines, instructions, kernel functions, event
// filters with conditions, data breakpoints); threads and frames; console commands and debugger
// writes, which run as host actions. It knows nothing of DAP messages: the session translates.
// It runs the machine in chunks and yields between them (`host.defer`), so a pause gets in.

import type { AssembleResult } from '../asm/assembler';
import type { FileReader } from '../asm/preprocessor';
import type { MachineEvent } from '../machine/events';
import { APICV_INHIBIT_NAMES, type KvmVcpu } from '../machine/kvm/kvm_host';
import { kfn, type Task } from '../machine/kvm/task';
import { kvm_apic_get_state, kvm_apic_set_state } from '../machine/kvm/lapic';
import { peekTranslate } from '../machine/cpu/peek';
import { LoadError } from '../machine/loader';
import { Machine, type StopReason } from '../machine/machine';
import { formatTraceLine } from '../machine/trace';
import { compileCondition, eventFilter, filterOf, type FieldValues, type FilterId, isFilterId } from './conditions';
import { designLacks, isKernelFunction, KERNEL_FUNCTIONS } from './kernel-functions';
import { type Launched, type LaunchArguments, LaunchError, prepareLaunch } from './launch';
import { ShadowStack } from './shadow-stack';

/** What the runtime needs from where it runs (Node or a browser). */
export interface RuntimeHost {
  readonly reader: FileReader;
  /** the bundled include folder (avic.inc), if there is one */
  readonly includeDir: string | undefined;
  /** runs `f` after pending requests had their turn */
  defer(f: () => void): void;
  /**
   * Makes `reader` read the sources of `program` as they are now, before a restart (a host that
   * reads ahead, as the extension does through vscode.workspace.fs). A host whose reader reads
   * the disk on every call needs none.
   */
  reloadSources?(program: unknown): Promise<void>;
}

export type StopKind = 'entry' | 'breakpoint' | 'step' | 'pause' | 'exception' | 'function breakpoint' | 'data breakpoint' | 'instruction breakpoint';

export interface Stop {
  readonly reason: StopKind;
  readonly threadId: number;
  readonly description: string;
  /** the event that stopped it (event filters, data breakpoints on KVM state) */
  readonly event?: MachineEvent;
  readonly text?: string;
  readonly hitBreakpointIds?: number[];
}

/** What the runtime tells the session. */
export interface RuntimeEvents {
  stopped(stop: Stop): void;
  output(text: string, category: 'stdout' | 'console' | 'stderr'): void;
  /** the run ended: exit code as `avic run` gives it */
  exited(code: number, summary: string): void;
  thread(reason: 'started' | 'exited', threadId: number): void;
  /** state changed while stopped (a console command, a write) */
  stateChanged(): void;
}

export interface SourceBreakpointSpec {
  readonly line: number;
  readonly condition?: string;
  readonly hitCondition?: string;
  readonly logMessage?: string;
  readonly mode?: string;
}

export interface BreakpointResult {
  readonly id: number;
  readonly verified: boolean;
  /** the source file of a source breakpoint */
  readonly path?: string;
  readonly line?: number;
  readonly message?: string;
  readonly instructionReference?: string;
}

export interface SourceLine {
  readonly path: string;
  readonly line: number;
}

export interface InstructionBreakpointSpec {
  readonly instructionReference: string;
  readonly offset?: number;
  readonly condition?: string;
  readonly hitCondition?: string;
  readonly mode?: string;
}

export interface EventFilterSpec {
  readonly filter: string;
  readonly condition?: string;
  readonly mode?: string;
}

export interface DataBreakpointSpec {
  readonly dataId: string;
  readonly accessType?: string;
  readonly condition?: string;
  readonly hitCondition?: string;
}

interface CodeBreakpoint {
  readonly id: number;
  readonly kind: 'source' | 'instruction';
  readonly addresses: readonly number[];
  readonly condition?: string;
  readonly hitCondition?: string;
  readonly logMessage?: string;
  readonly log: boolean;
  hits: number;
}

interface ActiveFilter {
  readonly filter: FilterId;
  readonly test: (f: FieldValues) => boolean;
  readonly log: boolean;
}

/** What ends the current run besides breakpoints. */
type Goal =
  | { readonly kind: 'continue' }
  | { readonly kind: 'guest-step'; readonly vcpu: number; readonly how: 'in' | 'over' | 'out'; readonly line: boolean;
      readonly startIcount: number; readonly startDepth: number; readonly startLine: SourceLine | undefined }
  | { readonly kind: 'host-step'; readonly task: Task; readonly how: 'in' | 'over' | 'out'; readonly depth: number; readonly frame: number | undefined;
      readonly startSteps: number }
  | { readonly kind: 'action'; readonly done: () => boolean };

/** guest instructions and host steps per chunk between yields to the request loop */
const CHUNK = 2_000_000;

export class AvicRuntime {
  machine!: Machine;
  launched!: Launched;
  private stacks: ShadowStack[] = [];
  /** bumped by every launch and restart: a deferred loop of an older machine returns at once */
  private generation = 0;
  /** every breakpoint request as the client made it, with the ids given: a restart resolves them again */
  private readonly requested: {
    source: Map<string, { specs: readonly SourceBreakpointSpec[]; ids: readonly number[] }>;
    instruction: { specs: readonly InstructionBreakpointSpec[]; ids: readonly number[] };
    functions: { specs: readonly { name: string }[]; ids: readonly number[] };
    filters: readonly EventFilterSpec[];
    data: { specs: readonly DataBreakpointSpec[]; ids: readonly number[] };
  } = { source: new Map(), instruction: { specs: [], ids: [] }, functions: { specs: [], ids: [] }, filters: [{ filter: 'violation' }], data: { specs: [], ids: [] } };
  private nextId = 1;
  private readonly sourceBps = new Map<string, CodeBreakpoint[]>();
  private instructionBps: CodeBreakpoint[] = [];
  private readonly functionBps = new Map<string, number>();
  private filters: ActiveFilter[] = [];
  private dataBps: { id: number; dataId: string }[] = [];
  /** inhibit bits a data breakpoint saw change (the tracepoint), until the word holds the new value */
  private inhibitStores: { bit: number; set: boolean; stop: Stop }[] = [];
  private goal: Goal = { kind: 'continue' };
  private running = false;
  private pauseRequested = false;
  private pendingStop: Stop | null = null;
  private lastStop: Stop | null = null;
  private ended = false;
  private vmmThreadShown = false;
  private consoleBuffer: number[] = [];
  private steppingVcpu = -1;
  /** the thread a `singleThread` request resumed (the others are frozen) */
  private onlyThread: number | null = null;
  private stepTargetDepth = -1;

  constructor(private readonly host: RuntimeHost, private readonly events: RuntimeEvents) {}

  // ---- launch ------------------------------------------------------------------------------------------

  /** Prepares the machine; throws LaunchError with the message for the client. */
  launch(args: LaunchArguments): void {
    const launched = prepareLaunch(args, this.host.reader, this.host.includeDir);
    this.install(launched, buildMachine(launched));
    this.setEventFilters(this.requested.filters);
  }

  /**
   * Restarts with new launch attributes (or the same ones): a fresh machine, every breakpoint
   * set so far resolved again with its id kept (the source may have changed). The current run
   * is held while the sources are read again; when the new attributes or the program are bad
   * it throws LaunchError and the current run goes on as it was. Returns the threads of the
   * run it replaced, and the breakpoints as they are now (for `thread` and `breakpoint` events).
   */
  async restart(args: LaunchArguments): Promise<{ previousThreads: number[]; breakpoints: BreakpointResult[] }> {
    // hold the current run: nothing of it (a stop, its end) may reach the client during the reload
    const wasRunning = this.running;
    this.running = false;
    this.generation++;
    let launched: Launched;
    let machine: Machine;
    try {
      await this.host.reloadSources?.(args.program);
      launched = prepareLaunch(args, this.host.reader, this.host.includeDir);
      machine = buildMachine(launched);
    } catch (e) {
      if (wasRunning) {
        this.running = true;
        const generation = this.generation;
        this.host.defer(() => this.loop(generation));
      }
      throw e;
    }
    const previousThreads = this.threads().map((t) => t.id);
    this.install(launched, machine);
    const r = this.requested;
    const out: BreakpointResult[] = [];
    this.sourceBps.clear();
    for (const [path, { specs, ids }] of r.source) out.push(...this.setSourceBreakpoints(path, specs, ids));
    out.push(...this.setInstructionBreakpoints(r.instruction.specs, r.instruction.ids));
    out.push(...this.setFunctionBreakpoints(r.functions.specs, r.functions.ids));
    this.setEventFilters(r.filters);
    out.push(...this.setDataBreakpoints(r.data.specs, r.data.ids));
    return { previousThreads, breakpoints: out };
  }

  /** the launch attributes of the current run */
  get launchArguments(): LaunchArguments {
    return this.launched.args;
  }

  private install(launched: Launched, m: Machine): void {
    this.generation++; // a loop of the previous machine still deferred does not run
    this.launched = launched;
    this.machine = m;
    this.stacks = m.cpus.map((cpu) => {
      const s = new ShadowStack();
      cpu.calls = s;
      s.onReturn = (c, depth) => this.onGuestReturn(c.index, depth);
      return s;
    });
    for (const t of m.tasks) t.breakOnEntry = (fn) => this.functionBps.has(fn);
    m.onConsole = (b) => this.consoleBuffer.push(b);
    m.log.onEvent((e) => this.onEvent(e));
    m.debug.onWatchedWrite = (vcpu, phys, size) => this.onWatchedWrite(vcpu, phys, size);
    m.debug.guestLimit = (vcpu) => this.guestLimit(vcpu);
    m.debug.shouldStop = () => this.inhibitStored() || this.goalReached();
    this.inhibitStores = [];
    this.goal = { kind: 'continue' };
    this.running = false;
    this.pauseRequested = false;
    this.pendingStop = null;
    this.lastStop = null;
    this.ended = false;
    this.vmmThreadShown = false;
    this.consoleBuffer = [];
    this.steppingVcpu = -1;
    this.onlyThread = null;
    this.stepTargetDepth = -1;
  }

  get assembly(): AssembleResult {
    return this.launched.assembly;
  }

  get stopOnEntry(): boolean {
    return this.launched.stopOnEntry;
  }

  /** After configurationDone: stop on entry, or run. */
  start(): void {
    if (this.launched.stopOnEntry) this.report({ reason: 'entry', threadId: 1, description: 'Paused on entry' });
    else this.resume({ kind: 'continue' }, null);
  }

  // ---- threads -----------------------------------------------------------------------------------------

  get vmmThreadId(): number {
    return this.machine.cpus.length + 1;
  }

  /** vCPU threads, and the VMM thread while it has a task to run */
  threads(): { id: number; name: string; vcpu: KvmVcpu | null; task: Task }[] {
    const m = this.machine;
    const out: { id: number; name: string; vcpu: KvmVcpu | null; task: Task }[] = m.kvm.vcpus.map((v) => ({ id: v.vcpu_id + 1, name: '', vcpu: v, task: v.task }));
    if (this.vmmActive()) out.push({ id: this.vmmThreadId, name: 'VMM', vcpu: null, task: m.tasks[m.tasks.length - 1] });
    return out;
  }

  private vmmActive(): boolean {
    const vmm = this.machine.tasks[this.machine.tasks.length - 1];
    return vmm.stack.length > 0 || this.machine.vmm.vmmHasWork;
  }

  taskOfThread(threadId: number): Task | undefined {
    const m = this.machine;
    if (threadId >= 1 && threadId <= m.cpus.length) return m.kvm.vcpus[threadId - 1].task;
    if (threadId === this.vmmThreadId && this.vmmActive()) return m.tasks[m.tasks.length - 1];
    return undefined;
  }

  threadOfTask(t: Task | null): number {
    return t === null || t.vcpu === null ? this.vmmThreadId : t.vcpu + 1;
  }

  private syncVmmThread(): void {
    const active = this.vmmActive();
    if (active !== this.vmmThreadShown) {
      this.vmmThreadShown = active;
      this.events.thread(active ? 'started' : 'exited', this.vmmThreadId);
    }
  }

  shadowStack(vcpu: number): ShadowStack {
    return this.stacks[vcpu];
  }

  /** Is this vCPU's thread showing host code (its task is not in guest mode)? */
  inHostCode(task: Task): boolean {
    return task.pending?.kind !== 'guest' && task.stack.length > 0;
  }

  // ---- running -------------------------------------------------------------------------------------------

  /** Continues all threads, or only `threadId` (singleThread). */
  continue(threadId: number, singleThread: boolean): void {
    this.resume({ kind: 'continue' }, singleThread ? threadId : null);
  }

  /** next (over), stepIn (in), stepOut (out) on a thread, by instruction or by line. */
  step(threadId: number, how: 'in' | 'over' | 'out', granularity: 'instruction' | 'line', singleThread: boolean): void {
    const task = this.taskOfThread(threadId);
    if (!task) throw new Error(`there is no thread ${threadId}`);
    if (task.finished) {
      // a vCPU that wrote PORT_DONE never runs again: nothing to wait for
      this.report({ reason: 'step', threadId, description: `vCPU ${task.vcpu} is done: it does not run any more` });
      return;
    }
    if (this.inHostCode(task) || task.vcpu === null) {
      const depth = task.stack.length;
      this.resume({ kind: 'host-step', task, how, depth, frame: task.frames[depth - 1], startSteps: task.stepsTaken }, singleThread ? threadId : null);
      return;
    }
    const vcpu = task.vcpu;
    const cpu = this.machine.cpus[vcpu];
    const startDepth = this.stacks[vcpu].depth;
    const line = granularity === 'line' ? this.sourceOf(cpu.rip) : undefined;
    this.resume({
      kind: 'guest-step', vcpu, how, line: granularity === 'line' && line !== undefined, startIcount: cpu.icount, startDepth, startLine: line,
    }, singleThread ? threadId : null);
  }

  pause(): void {
    if (this.running) this.pauseRequested = true;
    else this.report({ reason: 'pause', threadId: 1, description: 'Paused' });
  }

  get isRunning(): boolean {
    return this.running;
  }

  private resume(goal: Goal, onlyThread: number | null): void {
    if (this.ended) return;
    this.goal = goal;
    this.pendingStop = null;
    this.pauseRequested = false;
    // a turn begun with other threads frozen does not carry over into a run without (and back)
    if (onlyThread !== null || this.onlyThread !== null) this.machine.forgetTurn();
    this.onlyThread = onlyThread;
    const frozen = this.machine.debug.frozen;
    frozen.clear();
    if (onlyThread !== null) {
      const keep = this.taskOfThread(onlyThread);
      for (const t of this.machine.tasks) if (t !== keep) frozen.add(t.id);
    }
    this.steppingVcpu = goal.kind === 'guest-step' ? goal.vcpu : -1;
    this.stepTargetDepth = goal.kind === 'guest-step' ? (goal.how === 'out' ? goal.startDepth - 1 : goal.how === 'over' ? goal.startDepth : Infinity) : -1;
    // a thread resumed on a breakpoint goes on past it
    for (const cpu of this.machine.cpus) cpu.skipBreakpoint = this.breakpointAt(cpu.rip) !== undefined;
    this.running = true;
    const generation = this.generation;
    this.host.defer(() => this.loop(generation));
  }

  private loop(generation: number): void {
    if (!this.running || generation !== this.generation) return;
    if (this.pauseRequested) {
      this.pauseRequested = false;
      this.report({ reason: 'pause', threadId: this.focusThread(), description: 'Paused' });
      return;
    }
    let budget = CHUNK;
    while (budget > 0 && this.running) {
      const before = this.machine.steps;
      const stop = this.machine.run(budget);
      budget -= Math.max(1, this.machine.steps - before);
      if (this.handle(stop)) break;
    }
    this.flushConsole();
    this.syncVmmThread();
    if (this.running) this.host.defer(() => this.loop(generation));
  }

  /** the thread a stop no event caused belongs to: the stepping thread, the one resumed alone, else vCPU 0's */
  private focusThread(): number {
    const g = this.goal;
    if (g.kind === 'guest-step') return g.vcpu + 1;
    if (g.kind === 'host-step') return this.threadOfTask(g.task);
    return this.onlyThread ?? 1;
  }

  /** Acts on why the machine returned; true when the run is over (stopped or ended). */
  private handle(stop: StopReason): boolean {
    switch (stop.kind) {
      case 'budget':
        return false;
      case 'end':
        this.end(stop.status);
        return true;
      case 'breakpoint':
        return this.onBreakpoint(stop.vcpu);
      case 'function':
        this.report({
          reason: 'function breakpoint', threadId: this.threadOfTask(stop.task), description: `Paused on entry to ${stop.fn}`,
          hitBreakpointIds: this.functionBps.has(stop.fn) ? [this.functionBps.get(stop.fn)!] : [],
        });
        return true;
      case 'frozen':
        this.report({ reason: 'pause', threadId: this.focusThread(), description: this.frozenDescription() });
        return true;
      case 'debug': {
        const s = this.pendingStop ?? this.goalStop(stop.task);
        if (!s) return false;
        this.report(s);
        return true;
      }
    }
  }

  private goalStop(task: Task | null): Stop | null {
    const g = this.goal;
    if (g.kind === 'guest-step') return { reason: 'step', threadId: g.vcpu + 1, description: 'Stepped' };
    if (g.kind === 'host-step') return { reason: 'step', threadId: this.threadOfTask(g.task), description: 'Stepped' };
    if (g.kind === 'action') return { reason: 'pause', threadId: this.threadOfTask(task), description: 'Paused after the console command' };
    return null;
  }

  /** Ends the session the way `avic run` ends. */
  private end(status: string): void {
    this.running = false;
    this.ended = true;
    this.flushConsole();
    const m = this.machine;
    for (const e of m.errors) this.events.output(`${this.launched.program}: ${e}\n`, 'stderr');
    const code = status === 'error' ? 1 : status === 'done' && m.violations.length === 0 ? 0 : 2;
    const summary = `avic: ${status}: ${m.steps} steps, ${m.instructions} instructions` +
      m.violations.map((v) => `\navic: violation ${v.kind} (vCPU ${v.vcpu ?? 'VMM'}, event ${v.seq}): ${v.message}`).join('');
    this.events.exited(code, summary);
  }

  private report(stop: Stop): void {
    this.running = false;
    this.pendingStop = null;
    const s = this.onLiveThread(stop);
    this.lastStop = s;
    this.flushConsole();
    this.syncVmmThread();
    this.events.stopped(s);
  }

  /** a stop on the VMM thread once its task ran out of work belongs to vCPU 0's thread (the VMM thread is gone) */
  private onLiveThread(s: Stop): Stop {
    if (s.threadId !== this.vmmThreadId || this.vmmActive()) return s;
    return { ...s, threadId: 1, description: `${s.description} (the VMM task has finished its work)` };
  }

  get stopInfo(): Stop | null {
    return this.lastStop;
  }

  private flushConsole(): void {
    if (this.consoleBuffer.length === 0) return;
    let s = '';
    for (const b of this.consoleBuffer) s += String.fromCharCode(b);
    this.consoleBuffer = [];
    this.events.output(s, 'stdout');
  }

  private frozenDescription(): string {
    const waits: string[] = [];
    for (const t of this.machine.tasks) {
      const p = t.pending;
      if (p?.kind !== 'wait' || p.until() || this.machine.debug.frozen.has(t.id)) continue;
      const holders = p.holders().map((h) => h.name);
      waits.push(`${t.name} waits for ${p.what}${holders.length ? `, held by ${holders.join(', ')}` : ''} (frozen)`);
    }
    return waits.length > 0 ? `Paused: ${waits.join('; ')}` : 'Paused: the thread cannot go on while the other threads are frozen';
  }

  // ---- stepping ----------------------------------------------------------------------------------------

  /** how many guest instructions a vCPU may run in one burst while stepping */
  private guestLimit(vcpu: number): number {
    if (vcpu !== this.steppingVcpu) return Infinity;
    const g = this.goal;
    if (g.kind !== 'guest-step') return Infinity;
    const cpu = this.machine.cpus[vcpu];
    if (!g.line && g.how === 'in') return cpu.icount > g.startIcount ? 0 : 1;
    // inside a call that a `next` or `stepOut` steps over, run freely: the return stops it
    return this.stacks[vcpu].depth > this.stepTargetDepth ? Infinity : 1;
  }

  /** a `next` or `stepOut` ran freely inside a call: the return to its depth ends the burst */
  private onGuestReturn(vcpu: number, depth: number): void {
    if (vcpu === this.steppingVcpu && depth <= this.stepTargetDepth) this.machine.cpus[vcpu].requestStop();
  }

  /** the run's goal reached (checked after every host step and guest burst) */
  private goalReached(): boolean {
    const g = this.goal;
    const m = this.machine;
    switch (g.kind) {
      case 'continue':
        return false;
      case 'action':
        return g.done();
      case 'host-step': {
        const t = g.task;
        if (t.stepsTaken === g.startSteps) return false;
        if (t.finished || t.pending?.kind === 'guest') return true;
        if (g.how === 'in') return true;
        // the stepped frame returned (a later call at its depth is another frame): in its caller
        if (t.frames[g.depth - 1] !== g.frame) return true;
        return g.how === 'over' && t.stack.length === g.depth;
      }
      case 'guest-step': {
        const v = m.kvm.vcpus[g.vcpu];
        const cpu = v.cpu;
        if (cpu.icount === g.startIcount) return false;
        // the instruction has retired; wait until the vCPU is about to run guest code again (or cannot)
        const pending = v.task.pending;
        const settled = pending?.kind === 'guest' || v.task.finished || (pending?.kind === 'wait' && !pending.until());
        if (!settled) return false;
        const depth = this.stacks[g.vcpu].depth;
        if (depth > this.stepTargetDepth) return false;
        if (!g.line) return true;
        const line = this.sourceOf(cpu.rip);
        if (line === undefined) return g.how !== 'in';
        return !sameLine(line, g.startLine) || depth !== g.startDepth || this.isLineStart(cpu.rip);
      }
    }
  }

  // ---- source lines and symbols -----------------------------------------------------------------------

  /** where the code at an address comes from: the program or a file it includes */
  sourceOf(address: number): SourceLine | undefined {
    const l = this.assembly.lines.lookup(address);
    return l ? { path: l.file, line: l.line } : undefined;
  }

  /** the line of an address in the program itself */
  lineOf(address: number): number | undefined {
    const l = this.sourceOf(address);
    return l && l.path === this.launched.program ? l.line : undefined;
  }

  private isLineStart(address: number): boolean {
    return this.assembly.lines.lookup(address)?.start === address;
  }

  /** the function (nearest non-local label at or below) containing `address` */
  functionAt(address: number): string | undefined {
    let best: { name: string; value: number } | undefined;
    for (const s of this.assembly.symbols) {
      if (s.kind !== 'label' || s.name.includes('.')) continue;
      const v = Number(s.value);
      if (v <= address && (!best || v > best.value)) best = { name: s.name, value: v };
    }
    return best?.name;
  }

  // ---- breakpoints ------------------------------------------------------------------------------------------

  /** Source breakpoints of one file (all of them: they replace the file's earlier ones); `ids` keeps given ids. */
  setSourceBreakpoints(path: string, specs: readonly SourceBreakpointSpec[], ids?: readonly number[]): BreakpointResult[] {
    const program = this.launched.program;
    const lines = this.assembly.lines;
    const file = samePath(path, program) ? program : this.assembly.files.find((f) => samePath(f, path));
    const results: BreakpointResult[] = [];
    const bps: CodeBreakpoint[] = [];
    for (const [i, spec] of specs.entries()) {
      const id = ids?.[i] ?? this.nextId++;
      if (!file) {
        results.push({ id, verified: false, path, message: `${path} is not part of the program ${program}` });
        continue;
      }
      // the line itself, or the next line that produced code
      let line = spec.line;
      let addresses = lines.addresses(file, line);
      if (addresses.length === 0) {
        const next = lines.linesOf(file).find((l) => l > spec.line);
        if (next !== undefined && next - spec.line <= 20) {
          line = next;
          addresses = lines.addresses(file, line);
        }
      }
      const error = this.checkBreakpointExtras(spec);
      if (addresses.length === 0 || error) {
        results.push({ id, verified: false, path, line: spec.line, message: error ?? `line ${spec.line} produces no code` });
        continue;
      }
      bps.push({ id, kind: 'source', addresses, condition: spec.condition, hitCondition: spec.hitCondition, logMessage: spec.logMessage, log: spec.logMessage !== undefined || spec.mode === 'log', hits: 0 });
      results.push({ id, verified: true, path, line });
    }
    this.sourceBps.set(file ?? path, bps);
    this.requested.source.set(path, { specs, ids: results.map((r) => r.id) });
    this.applyCodeBreakpoints();
    return results;
  }

  setInstructionBreakpoints(specs: readonly InstructionBreakpointSpec[], ids?: readonly number[]): BreakpointResult[] {
    const results: BreakpointResult[] = [];
    this.instructionBps = [];
    for (const [i, spec] of specs.entries()) {
      const id = ids?.[i] ?? this.nextId++;
      const base = parseAddress(spec.instructionReference);
      if (base === undefined) {
        results.push({ id, verified: false, message: `'${spec.instructionReference}' is not an address` });
        continue;
      }
      const address = base + (spec.offset ?? 0);
      const error = this.checkBreakpointExtras(spec);
      if (error) {
        results.push({ id, verified: false, message: error });
        continue;
      }
      this.instructionBps.push({ id, kind: 'instruction', addresses: [address], condition: spec.condition, hitCondition: spec.hitCondition, log: spec.mode === 'log', hits: 0 });
      results.push({ id, verified: true, instructionReference: '0x' + address.toString(16), line: this.lineOf(address) });
    }
    this.requested.instruction = { specs, ids: results.map((r) => r.id) };
    this.applyCodeBreakpoints();
    return results;
  }

  /** a condition or hit condition that cannot work, as a message */
  private checkBreakpointExtras(spec: { condition?: string; hitCondition?: string }): string | undefined {
    if (spec.hitCondition !== undefined && parseHitCondition(spec.hitCondition) === undefined) {
      return `hit condition '${spec.hitCondition}': expected N, >= N, > N, == N or % N`;
    }
    if (spec.condition !== undefined && spec.condition.trim() !== '' && this.conditionError?.(spec.condition)) return this.conditionError(spec.condition);
    return undefined;
  }

  /** set by the session: checks a breakpoint condition expression (returns an error message) */
  conditionError: ((expr: string) => string | undefined) | null = null;
  /** set by the session: evaluates a condition or a logpoint's `{expression}` on a vCPU */
  evaluateOn: ((vcpu: number, expr: string) => { value?: bigint; text?: string; error?: string }) | null = null;

  private applyCodeBreakpoints(): void {
    const all: number[] = [];
    for (const list of this.sourceBps.values()) for (const b of list) all.push(...b.addresses);
    for (const b of this.instructionBps) all.push(...b.addresses);
    this.machine.setBreakpoints(all);
  }

  private breakpointAt(address: number): CodeBreakpoint[] | undefined {
    const out: CodeBreakpoint[] = [];
    for (const list of this.sourceBps.values()) for (const b of list) if (b.addresses.includes(address)) out.push(b);
    for (const b of this.instructionBps) if (b.addresses.includes(address)) out.push(b);
    return out.length > 0 ? out : undefined;
  }

  /** An instruction breakpoint of the block cache hit: conditions, hit counts, logpoints. True when stopped. */
  private onBreakpoint(vcpu: number): boolean {
    const cpu = this.machine.cpus[vcpu];
    const bps = this.breakpointAt(cpu.rip) ?? [];
    const stopping: CodeBreakpoint[] = [];
    for (const b of bps) {
      if (b.condition && b.condition.trim() !== '') {
        const r = this.evaluateOn?.(vcpu, b.condition);
        if (r?.error) {
          this.events.output(`breakpoint condition '${b.condition}': ${r.error}\n`, 'stderr');
        } else if (!r?.value) continue;
      }
      b.hits++;
      const hc = b.hitCondition ? parseHitCondition(b.hitCondition) : undefined;
      if (hc && !hc(b.hits)) continue;
      if (b.log) {
        const text = b.logMessage !== undefined ? this.interpolate(vcpu, b.logMessage) : `vCPU ${vcpu} at ${hexAddr(cpu.rip)}`;
        this.events.output(`${text}\n`, 'console');
        continue;
      }
      stopping.push(b);
    }
    if (stopping.length === 0) {
      cpu.skipBreakpoint = true;
      return false;
    }
    const kind = stopping.some((b) => b.kind === 'source') ? 'breakpoint' : 'instruction breakpoint';
    this.report({ reason: kind, threadId: vcpu + 1, description: `Paused on ${kind} at ${hexAddr(cpu.rip)}`, hitBreakpointIds: stopping.map((b) => b.id) });
    return true;
  }

  private interpolate(vcpu: number, message: string): string {
    return message.replace(/\{([^}]+)\}/g, (_, expr: string) => {
      const r = this.evaluateOn?.(vcpu, expr);
      return r?.error ? `<${r.error}>` : r?.text ?? String(r?.value ?? '');
    });
  }

  /** Function breakpoints on modelled kernel functions; names the design lacks are unverified with the reason. */
  setFunctionBreakpoints(names: readonly { name: string }[], ids?: readonly number[]): BreakpointResult[] {
    this.functionBps.clear();
    const results = names.map(({ name }, i): BreakpointResult => {
      const id = ids?.[i] ?? this.nextId++;
      if (!isKernelFunction(name)) {
        return { id, verified: false, message: `'${name}' is not a kernel function of the model (e.g. ${Object.keys(KERNEL_FUNCTIONS).slice(0, 4).join(', ')}, ...)` };
      }
      const lacks = designLacks(this.machine.kvm.design, name);
      if (lacks) return { id, verified: false, message: lacks };
      this.functionBps.set(name, id);
      return { id, verified: true };
    });
    this.requested.functions = { specs: names, ids: results.map((r) => r.id) };
    return results;
  }

  /** Event filters (setExceptionBreakpoints); an error for a condition that does not parse. */
  setEventFilters(specs: readonly EventFilterSpec[]): { ok: true } | { ok: false; message: string } {
    const next: ActiveFilter[] = [];
    for (const s of specs) {
      if (!isFilterId(s.filter)) return { ok: false, message: `unknown event filter '${s.filter}'` };
      const c = compileCondition(s.filter, s.condition ?? '');
      if (!c.ok) return { ok: false, message: `${s.filter} condition '${s.condition}': ${c.message}` };
      next.push({ filter: s.filter, test: c.test, log: s.mode === 'log' });
    }
    this.filters = next;
    this.requested.filters = specs;
    // stopping on violations means going on after them, as --keep-going does
    const stopsOnViolations = next.some((f) => f.filter === 'violation' && !f.log);
    this.machine.keepGoing = this.launched.options.keepGoing || stopsOnViolations;
    return { ok: true };
  }

  /** what a data breakpoint can watch, for dataBreakpointInfo; `bytes` is the size watched at an address or label */
  dataBreakpointInfo(name: string, vcpu: number | undefined, bytes = 8): { dataId: string | null; description: string } {
    const n = name.trim();
    const reason = n.replace(/^APICV_INHIBIT_REASON_/, '').replace(/^\d+ /, '');
    const bit = (APICV_INHIBIT_NAMES as readonly string[]).indexOf(reason);
    if (bit >= 0) return { dataId: `inhibit:${bit}`, description: `APICv inhibit ${reason} (bit ${bit}) changes` };
    if (n === 'srcu_depth' && vcpu !== undefined) return { dataId: `srcu:${vcpu}`, description: `vCPU ${vcpu}'s srcu_depth changes` };
    const label = this.assembly.symbols.find((s) => s.kind === 'label' && s.name === n);
    const addr = parseAddress(n) ?? (label ? Number(label.value) : undefined);
    if (addr !== undefined) {
      const what = label ? `${n} (${hexAddr(addr)})` : hexAddr(addr);
      return { dataId: `mem:${addr}:${bytes}`, description: `guest memory at ${what}, ${bytes} bytes, is written` };
    }
    return { dataId: null, description: `'${name}' cannot be watched: an inhibit reason, srcu_depth, a label or a guest address can` };
  }

  /** Data breakpoints: inhibit bits, a vCPU's SRCU depth, guest-physical memory writes. */
  setDataBreakpoints(specs: readonly DataBreakpointSpec[], ids?: readonly number[]): BreakpointResult[] {
    this.dataBps = [];
    this.inhibitStores = [];
    const watches: { phys: number; length: number }[] = [];
    const translate = (vcpu: number, linear: number) => {
      const t = peekTranslate(this.machine.cpus[vcpu], BigInt(linear));
      return 'fault' in t ? undefined : t.phys;
    };
    const results = specs.map((s, i): BreakpointResult => {
      const id = ids?.[i] ?? this.nextId++;
      const [kind, a, b] = s.dataId.split(':');
      if (kind === 'inhibit' || kind === 'srcu') {
        this.dataBps.push({ id, dataId: s.dataId });
        return { id, verified: true };
      }
      if (kind === 'mem') {
        const phys = translate(0, Number(a));
        if (phys === undefined) return { id, verified: false, message: `${hexAddr(Number(a))} is not mapped to RAM` };
        watches.push({ phys, length: Number(b) || 1 });
        this.dataBps.push({ id, dataId: `phys:${phys}:${Number(b) || 1}:${a}` });
        return { id, verified: true };
      }
      return { id, verified: false, message: `unknown data breakpoint '${s.dataId}'` };
    });
    this.machine.setWriteWatches(watches);
    this.requested.data = { specs, ids: results.map((r) => r.id) };
    return results;
  }

  private onWatchedWrite(vcpu: number, phys: number, size: number): void {
    const bp = this.dataBps.find((d) => {
      const [kind, p, len] = d.dataId.split(':');
      return kind === 'phys' && phys < Number(p) + Number(len) && Number(p) < phys + size;
    });
    if (!bp) return;
    const linear = Number(bp.dataId.split(':')[3]);
    this.stopAt({ reason: 'data breakpoint', threadId: vcpu + 1, description: `vCPU ${vcpu} wrote ${hexAddr(linear)}`, hitBreakpointIds: [bp.id] });
  }

  /** a watched inhibit bit changed in the word: its stop, taken at the first preemption point (shouldStop) */
  private inhibitStored(): boolean {
    const word = this.machine.kvm.arch.apicv_inhibit_reasons;
    const i = this.inhibitStores.findIndex((w) => ((word >>> w.bit) & 1) === (w.set ? 1 : 0));
    if (i < 0) return false;
    const [hit] = this.inhibitStores.splice(i, 1);
    if (this.pendingStop === null) this.pendingStop = hit.stop;
    return true;
  }

  private stopAt(s: Stop): void {
    if (this.pendingStop === null) this.pendingStop = s;
    this.machine.requestStop();
  }

  /** Every machine event: event filters (stop or log), data breakpoints on KVM state. */
  private onEvent(e: MachineEvent): void {
    if (this.filters.length > 0) {
      const match = filterOf(e);
      if (match) {
        for (const f of this.filters) {
          if (f.filter !== match.filter || !f.test(match.fields as FieldValues)) continue;
          const line = formatTraceLine(e);
          if (f.log) this.events.output(`${line}\n`, 'console');
          else {
            this.stopAt({
              reason: 'exception', threadId: this.threadOfEvent(e), event: e, text: eventFilter(match.filter).label,
              description: `Paused on ${eventFilter(match.filter).label}: ${line.replace(/^.*?: /, '')}`,
            });
          }
          break;
        }
      }
    }
    for (const d of this.dataBps) {
      const [kind, arg] = d.dataId.split(':');
      if (kind === 'inhibit' && e.kind === 'inhibit-change' && e.changed && e.reason === Number(arg)) {
        // the kernel stores the word after kvm_make_all_cpus_request: stop once the bit has its new value
        this.inhibitStores.push({
          bit: e.reason, set: e.set,
          stop: { reason: 'data breakpoint', threadId: this.threadOfEvent(e), event: e, hitBreakpointIds: [d.id],
            description: `APICv inhibit ${APICV_INHIBIT_NAMES[e.reason]} ${e.set ? 'set' : 'cleared'}: inhibits ${'0x' + e.inhibits.toString(16)}` },
        });
      } else if (kind === 'srcu' && (e.kind === 'srcu-lock' || e.kind === 'srcu-unlock') && !e.raw && e.vcpu === Number(arg)) {
        this.stopAt({ reason: 'data breakpoint', threadId: this.threadOfEvent(e), event: e, hitBreakpointIds: [d.id],
          description: `vCPU ${arg}'s srcu_depth is now ${e.depth} (${e.kind === 'srcu-lock' ? 'kvm_vcpu_srcu_read_lock' : 'kvm_vcpu_srcu_read_unlock'})` });
      }
    }
  }

  private threadOfEvent(e: MachineEvent): number {
    return e.vcpu === null ? this.vmmThreadId : e.vcpu + 1;
  }

  // ---- debugger actions (console commands, writes) ------------------------------------------------------

  /**
   * A debugger write of one APIC register: KVM_GET_LAPIC, the register changed, KVM_SET_LAPIC, in
   * the vCPU's own thread (it leaves KVM_RUN first), logged as a host action.
   */
  setApicRegister(vcpu: number, offset: number, value: number): string | undefined {
    const m = this.machine;
    const v = m.kvm.vcpus[vcpu];
    const text = `set APIC register 0x${offset.toString(16)} = 0x${(value >>> 0).toString(16)}`;
    const spec = { trigger: { kind: 'step' as const, step: m.steps }, action: 'console' as const, arg: text, vcpu, text };
    const q = m.vmm.queue(m.tasks[m.tasks.length - 1], spec, null, null, (t) => kfn(t, 'kvm_vcpu_ioctl', () => kfn(t, 'kvm_arch_vcpu_ioctl', () =>
      kfn(t, 'kvm_vcpu_ioctl_set_lapic', () => {
        const state = kvm_apic_get_state(v);
        new DataView(state.buffer).setUint32(offset, value >>> 0, true);
        return kvm_apic_set_state(t, v, state);
      }))));
    const waiting = this.runAction(vcpu, () => q.done);
    if (waiting) return `queued: it runs when execution resumes. ${waiting}`;
    return q.error;
  }


  /**
   * Runs host code queued with the VMM (`queue` returns the queued action) until it finishes,
   * with the other threads frozen; if it must wait on a frozen thread, says what it waits for
   * and leaves it queued (it runs when execution resumes).
   */
  runAction(target: number | null, isDone: () => boolean): string | undefined {
    const m = this.machine;
    const runner = target === null ? m.tasks[m.tasks.length - 1] : m.kvm.vcpus[target].task;
    this.goal = { kind: 'action', done: isDone };
    const frozen = m.debug.frozen;
    frozen.clear();
    for (const t of m.tasks) if (t !== runner) frozen.add(t.id);
    let message: string | undefined;
    for (let i = 0; i < 100 && !isDone(); i++) {
      const stop = m.run(100_000);
      if (stop.kind === 'frozen') {
        message = this.frozenDescription();
        break;
      }
      if (stop.kind === 'end') {
        this.end(stop.status);
        break;
      }
      if (stop.kind === 'breakpoint') m.cpus[stop.vcpu].skipBreakpoint = true;
      if (stop.kind === 'function') continue;
    }
    frozen.clear();
    this.goal = { kind: 'continue' };
    this.pendingStop = null;
    this.flushConsole();
    this.syncVmmThread();
    this.events.stateChanged();
    if (!isDone() && message === undefined) message = 'the command did not finish';
    return message;
  }
}

// ---- helpers ---------------------------------------------------------------------------------------------

/** The machine of a launch; an image that cannot be loaded or RAM that cannot be had is a LaunchError. */
function buildMachine(launched: Launched): Machine {
  const { assembly, options } = launched;
  try {
    return new Machine(options, assembly.image, assembly.org, assembly.end);
  } catch (e) {
    if (e instanceof LoadError) throw new LaunchError(`${launched.program}: ${e.message}`);
    // validated attributes leave only the guest RAM (launch attribute 'memory') that may not be had
    if (e instanceof RangeError) throw new LaunchError(`cannot create the machine (${options.vcpus} vCPUs, ${options.memoryMiB} MiB): ${e.message}`);
    throw e;
  }
}

export function hexAddr(a: number): string {
  return '0x' + a.toString(16);
}

export function parseAddress(text: string): number | undefined {
  const t = text.trim();
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(t)) return undefined;
  const v = Number(t);
  return Number.isSafeInteger(v) ? v : undefined;
}

function parseHitCondition(text: string): ((hits: number) => boolean) | undefined {
  const m = /^\s*(>=|>|==|%)?\s*(\d+)\s*$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[2]);
  switch (m[1]) {
    case '>': return (h) => h > n;
    case '==': return (h) => h === n;
    case '%': return (h) => n > 0 && h % n === 0;
    default: return (h) => h >= n;
  }
}

function sameLine(a: SourceLine, b: SourceLine | undefined): boolean {
  return a.line === b?.line && a.path === b.path;
}

function normalize(p: string): string {
  const parts: string[] = [];
  for (const seg of p.replace(/\\/g, '/').split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return (p.startsWith('/') ? '/' : '') + parts.join('/');
}

function samePath(a: string, b: string): boolean {
  return normalize(a) === normalize(b);
}

export { KERNEL_FUNCTIONS };

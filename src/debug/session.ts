// The debug session (the "session" half of mock-debug's split): DAP requests in, runtime calls
// out; runtime events in, DAP events out. Nothing here runs the machine or holds its state;
// stack frames, variable references and the `avic/state` sequence number are the only things
// it keeps, and they live until the next resume. A request that fails (a bad thread id, an
// expression that does not parse) gets an error response; the session goes on.

import { BreakpointEvent, ContinuedEvent, DebugSession, Event, ExitedEvent, Handles, InitializedEvent, InvalidatedEvent, MemoryEvent, OutputEvent, Scope, Source, StackFrame, StoppedEvent, TerminatedEvent, Thread, ThreadEvent } from '@vscode/debugadapter';
import type { DebugProtocol } from '@vscode/debugprotocol';
import { peekLinear, pokeLinear } from '../machine/cpu/peek';
import { COMMANDS, HELP, isCommand, runCommand } from './commands';
import { exceptionBreakpointFilters } from './conditions';
import { disassemble, lineLookupFor } from './disassembly';
import { evaluateExpression } from './expressions';
import { avic, avicState, localApic, registers, threadName, type VarNode, vcpuKvm, vmKvm } from './inspect';
import { KERNEL_FUNCTIONS } from './kernel-functions';
import { LaunchError } from './launch';
import { AvicRuntime, type BreakpointResult, hexAddr, parseAddress, type RuntimeHost, type Stop } from './runtime';
import { type MemoryRange, ShownMemory } from './shown-memory';

interface FrameRef {
  readonly threadId: number;
  /** the vCPU whose state the frame's scopes show (null: the VMM) */
  readonly vcpu: number | null;
}

const ERR = 3000;

export class AvicDebugSession extends DebugSession {
  private readonly runtime: AvicRuntime;
  private readonly frames = new Handles<FrameRef>();
  private readonly vars = new Handles<() => VarNode[]>();
  /** the vCPU whose state a variables reference shows (null: the VM) */
  private readonly varVcpus = new Map<number, number | null>();
  private stateSeq = 0;
  private launched = false;
  /** what the client said it handles (initialize) */
  private client: DebugProtocol.InitializeRequestArguments = { adapterID: 'avic' };
  private readonly shownMemory = new ShownMemory();

  constructor(host: RuntimeHost) {
    super();
    this.setDebuggerLinesStartAt1(true);
    this.setDebuggerColumnsStartAt1(true);
    this.runtime = new AvicRuntime(host, {
      stopped: (s) => this.onStopped(s),
      output: (text, category) => this.sendEvent(new OutputEvent(text, category)),
      exited: (code, summary) => {
        this.sendEvent(new OutputEvent(`${summary}\n`, 'console'));
        this.sendEvent(new ExitedEvent(code));
        this.sendEvent(new TerminatedEvent());
      },
      thread: (reason, id) => this.sendEvent(new ThreadEvent(reason, id)),
      stateChanged: () => this.changedWhileStopped(),
    });
    this.runtime.evaluateOn = (vcpu, expr) => {
      const r = evaluateExpression(this.runtime.machine, vcpu, expr, this.runtime.assembly.symbols);
      return 'error' in r ? { error: r.error } : { value: r.value, text: r.text.split(' ')[0] };
    };
    this.runtime.conditionError = (expr) => {
      const r = evaluateExpression(this.runtime.machine, 0, expr, this.runtime.assembly.symbols);
      return 'error' in r && !/not readable/.test(r.error) ? r.error : undefined;
    };
  }

  private onStopped(s: Stop): void {
    this.frames.reset();
    this.vars.reset();
    this.varVcpus.clear();
    const e = new StoppedEvent(s.reason, s.threadId, s.text) as DebugProtocol.StoppedEvent;
    e.body.description = s.description;
    e.body.allThreadsStopped = true;
    if (s.hitBreakpointIds) e.body.hitBreakpointIds = s.hitBreakpointIds;
    this.sendEvent(e);
    this.memoryChanged();
    this.stateChanged();
  }

  private stateChanged(): void {
    this.stateSeq++;
    this.sendEvent(new Event('avic/stateChanged', { seq: this.stateSeq }));
  }

  /**
   * The debugger changed the machine while it is stopped (a console command, setVariable,
   * writeMemory): what the client shows is stale. No fake stop: `invalidated` for the views of
   * threads, frames and variables, `memory` for shown memory that changed, `avic/stateChanged`.
   */
  private changedWhileStopped(written?: MemoryRange): void {
    if (this.client.supportsInvalidatedEvent) this.sendEvent(new InvalidatedEvent(['threads', 'stacks', 'variables']));
    this.memoryChanged(written);
    this.stateChanged();
  }

  /** `memory` events for the range written and for ranges the client read that hold other bytes now */
  private memoryChanged(written?: MemoryRange): void {
    if (!this.client.supportsMemoryEvent) return;
    const cpu = this.runtime.machine.cpus[0];
    const changed = this.shownMemory.changed((a, n) => peekLinear(cpu, BigInt(a), n).bytes);
    if (written) changed.unshift(written);
    const sent = new Set<string>();
    for (const r of changed) {
      const key = `${r.reference}:${r.offset}:${r.count}`;
      if (sent.has(key)) continue;
      sent.add(key);
      this.sendEvent(new MemoryEvent(r.reference, r.offset, r.count));
    }
  }

  private fail(response: DebugProtocol.Response, message: string): void {
    this.sendErrorResponse(response, { id: ERR, format: message.replace(/\{/g, '(').replace(/\}/g, ')'), showUser: false });
  }

  private needsStopped(response: DebugProtocol.Response): boolean {
    if (!this.launched) {
      this.fail(response, 'the program has not been launched');
      return false;
    }
    if (this.runtime.isRunning) {
      this.fail(response, 'the program is running: pause it first');
      return false;
    }
    return true;
  }

  private vcpuOfThread(threadId: number | undefined, response: DebugProtocol.Response): number | null | undefined {
    if (threadId === undefined) return 0;
    const task = this.runtime.taskOfThread(threadId);
    if (!task) {
      this.fail(response, `there is no thread ${threadId}`);
      return undefined;
    }
    return task.vcpu;
  }

  // ---- life cycle ----------------------------------------------------------------------------------------

  protected override initializeRequest(response: DebugProtocol.InitializeResponse, args: DebugProtocol.InitializeRequestArguments): void {
    this.client = args ?? this.client;
    response.body = {
      supportsConfigurationDoneRequest: true,
      supportsFunctionBreakpoints: true,
      supportsConditionalBreakpoints: true,
      supportsHitConditionalBreakpoints: true,
      supportsLogPoints: true,
      supportsEvaluateForHovers: true,
      supportsSetVariable: true,
      supportsCompletionsRequest: true,
      completionTriggerCharacters: [' '],
      supportsExceptionInfoRequest: true,
      supportsExceptionFilterOptions: true,
      exceptionBreakpointFilters: exceptionBreakpointFilters(),
      supportsTerminateRequest: true,
      supportsRestartRequest: true,
      supportsDataBreakpoints: true,
      supportsDataBreakpointBytes: true,
      supportsReadMemoryRequest: true,
      supportsWriteMemoryRequest: true,
      supportsDisassembleRequest: true,
      supportsSteppingGranularity: true,
      supportsInstructionBreakpoints: true,
      supportsSingleThreadExecutionRequests: true,
      supportsLoadedSourcesRequest: true,
      breakpointModes: [
        { mode: 'stop', label: 'Stop', description: 'Stop the run', appliesTo: ['source', 'exception', 'instruction'] },
        { mode: 'log', label: 'Log', description: 'Write the event to the Debug Console in trace-cmd style and go on (a tracepoint)', appliesTo: ['source', 'exception', 'instruction'] },
      ],
    };
    this.sendResponse(response);
  }

  protected override launchRequest(response: DebugProtocol.LaunchResponse, args: DebugProtocol.LaunchRequestArguments): void {
    try {
      this.runtime.launch((args ?? {}) as never); // a client may send no arguments at all
    } catch (e) {
      if (e instanceof LaunchError) {
        this.sendErrorResponse(response, { id: 1001, format: e.message.replace(/\{/g, '(').replace(/\}/g, ')'), showUser: true });
        return;
      }
      throw e;
    }
    this.launched = true;
    this.sendResponse(response);
    for (const v of this.runtime.machine.kvm.vcpus) this.sendEvent(new ThreadEvent('started', v.vcpu_id + 1));
    this.sendEvent(new InitializedEvent());
  }

  protected override configurationDoneRequest(response: DebugProtocol.ConfigurationDoneResponse): void {
    this.sendResponse(response);
    if (this.launched) this.runtime.start();
  }

  protected override async restartRequest(response: DebugProtocol.RestartResponse, args: DebugProtocol.RestartArguments): Promise<void> {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    let restarted: { previousThreads: number[]; breakpoints: BreakpointResult[] };
    try {
      // the client may send changed launch attributes; without them, the same ones
      restarted = await this.runtime.restart(((args?.arguments as object | undefined) ?? this.runtime.launchArguments) as never);
    } catch (e) {
      // asynchronous: nothing catches for us, and the request must be answered whatever happened
      const message = e instanceof LaunchError ? e.message : `restart failed: ${e instanceof Error ? e.message : String(e)}`;
      this.sendErrorResponse(response, { id: 1001, format: message.replace(/\{/g, '(').replace(/\}/g, ')'), showUser: true });
      return;
    }
    this.frames.reset();
    this.vars.reset();
    this.varVcpus.clear();
    this.sendResponse(response);
    for (const id of restarted.previousThreads) this.sendEvent(new ThreadEvent('exited', id));
    for (const t of this.runtime.threads()) this.sendEvent(new ThreadEvent('started', t.id));
    for (const r of restarted.breakpoints) this.sendEvent(new BreakpointEvent('changed', breakpointBody(r)));
    this.memoryChanged();
    if (!this.runtime.stopOnEntry) this.sendEvent(new ContinuedEvent(1, true));
    this.runtime.start();
  }

  protected override disconnectRequest(response: DebugProtocol.DisconnectResponse): void {
    if (this.launched && this.runtime.isRunning) this.runtime.pause();
    this.sendResponse(response);
    this.shutdown(); // a stand-alone adapter exits (ignored in server mode and inline)
  }

  protected override terminateRequest(response: DebugProtocol.TerminateResponse): void {
    if (this.launched && this.runtime.isRunning) this.runtime.pause();
    this.sendResponse(response);
    this.sendEvent(new TerminatedEvent());
  }

  // ---- running -------------------------------------------------------------------------------------------

  protected override continueRequest(response: DebugProtocol.ContinueResponse, args: DebugProtocol.ContinueArguments): void {
    if (!this.needsStopped(response) || this.vcpuOfThread(args.threadId, response) === undefined) return;
    response.body = { allThreadsContinued: !args.singleThread };
    this.sendResponse(response);
    this.runtime.continue(args.threadId, args.singleThread ?? false);
  }

  private stepRequest(response: DebugProtocol.Response, args: { threadId: number; singleThread?: boolean; granularity?: DebugProtocol.SteppingGranularity }, how: 'in' | 'over' | 'out'): void {
    if (!this.needsStopped(response) || this.vcpuOfThread(args.threadId, response) === undefined) return;
    this.sendResponse(response);
    this.runtime.step(args.threadId, how, args.granularity === 'instruction' ? 'instruction' : 'line', args.singleThread ?? false);
  }

  protected override nextRequest(response: DebugProtocol.NextResponse, args: DebugProtocol.NextArguments): void {
    this.stepRequest(response, args, 'over');
  }

  protected override stepInRequest(response: DebugProtocol.StepInResponse, args: DebugProtocol.StepInArguments): void {
    this.stepRequest(response, args, 'in');
  }

  protected override stepOutRequest(response: DebugProtocol.StepOutResponse, args: DebugProtocol.StepOutArguments): void {
    this.stepRequest(response, args, 'out');
  }

  protected override pauseRequest(response: DebugProtocol.PauseResponse): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    this.sendResponse(response);
    this.runtime.pause();
  }

  // ---- breakpoints -----------------------------------------------------------------------------------------

  protected override setBreakPointsRequest(response: DebugProtocol.SetBreakpointsResponse, args: DebugProtocol.SetBreakpointsArguments): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    const path = args.source.path ?? args.source.name ?? '';
    const results = this.runtime.setSourceBreakpoints(path, (args.breakpoints ?? []).map((b) => ({ ...b, mode: (b as { mode?: string }).mode })));
    response.body = { breakpoints: results.map(breakpointBody) };
    this.sendResponse(response);
  }

  protected override setInstructionBreakpointsRequest(response: DebugProtocol.SetInstructionBreakpointsResponse, args: DebugProtocol.SetInstructionBreakpointsArguments): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    response.body = { breakpoints: this.runtime.setInstructionBreakpoints(args.breakpoints).map(breakpointBody) };
    this.sendResponse(response);
  }

  protected override setFunctionBreakPointsRequest(response: DebugProtocol.SetFunctionBreakpointsResponse, args: DebugProtocol.SetFunctionBreakpointsArguments): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    response.body = { breakpoints: this.runtime.setFunctionBreakpoints(args.breakpoints).map(breakpointBody) };
    this.sendResponse(response);
  }

  protected override setExceptionBreakPointsRequest(response: DebugProtocol.SetExceptionBreakpointsResponse, args: DebugProtocol.SetExceptionBreakpointsArguments): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    const specs = [
      ...args.filters.map((filter) => ({ filter })),
      ...(args.filterOptions ?? []).map((o) => ({ filter: o.filterId, condition: o.condition, mode: (o as { mode?: string }).mode })),
    ];
    const r = this.runtime.setEventFilters(specs);
    if (!r.ok) return this.fail(response, r.message);
    response.body = { breakpoints: specs.map(() => ({ verified: true })) };
    this.sendResponse(response);
  }

  protected override exceptionInfoRequest(response: DebugProtocol.ExceptionInfoResponse, args: DebugProtocol.ExceptionInfoArguments): void {
    const s = this.runtime.stopInfo;
    if (!s || s.threadId !== args.threadId || s.reason !== 'exception') return this.fail(response, `thread ${args.threadId} did not stop on an event`);
    const e = s.event!;
    response.body = {
      exceptionId: e.kind === 'violation' ? e.violation : e.kind,
      description: s.description,
      breakMode: 'always',
      details: { message: s.description, stackTrace: (e.hostStack ?? []).join('\n'), typeName: e.kind },
    };
    this.sendResponse(response);
  }

  protected override dataBreakpointInfoRequest(response: DebugProtocol.DataBreakpointInfoResponse, args: DebugProtocol.DataBreakpointInfoArguments): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    const frame = args.frameId !== undefined ? this.frames.get(args.frameId) : undefined;
    const vcpu = frame ? frame.vcpu : args.variablesReference !== undefined ? this.varVcpus.get(args.variablesReference) : undefined;
    const bytes = (args as { bytes?: number }).bytes;
    const info = this.runtime.dataBreakpointInfo(args.name, vcpu ?? undefined, bytes && bytes > 0 ? bytes : undefined);
    response.body = { dataId: info.dataId, description: info.description, accessTypes: ['write'], canPersist: false };
    this.sendResponse(response);
  }

  protected override setDataBreakpointsRequest(response: DebugProtocol.SetDataBreakpointsResponse, args: DebugProtocol.SetDataBreakpointsArguments): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    response.body = { breakpoints: this.runtime.setDataBreakpoints(args.breakpoints).map(breakpointBody) };
    this.sendResponse(response);
  }

  // ---- threads, frames, variables ---------------------------------------------------------------------------

  protected override threadsRequest(response: DebugProtocol.ThreadsResponse): void {
    if (!this.launched) {
      response.body = { threads: [] };
      return this.sendResponse(response);
    }
    const m = this.runtime.machine;
    response.body = { threads: this.runtime.threads().map((t) => new Thread(t.id, t.vcpu ? threadName(m, t.vcpu) : 'VMM')) };
    this.sendResponse(response);
  }

  protected override stackTraceRequest(response: DebugProtocol.StackTraceResponse, args: DebugProtocol.StackTraceArguments): void {
    if (!this.needsStopped(response)) return;
    const task = this.runtime.taskOfThread(args.threadId);
    if (!task) return this.fail(response, `there is no thread ${args.threadId}`);
    const rt = this.runtime;
    const frames: DebugProtocol.StackFrame[] = [];
    const ref: FrameRef = { threadId: args.threadId, vcpu: task.vcpu };
    if (rt.inHostCode(task) || task.vcpu === null) {
      for (const fn of task.hostStack()) {
        const f = new StackFrame(this.frames.create(ref), fn, new Source(KERNEL_FUNCTIONS[fn] ?? 'kernel', undefined, 0, 'KVM model (Linux v6.3)'), 0, 0) as DebugProtocol.StackFrame;
        f.presentationHint = 'subtle';
        if (f.source) f.source.presentationHint = 'deemphasize';
        frames.push(f);
      }
    }
    if (task.vcpu !== null) {
      const cpu = rt.machine.cpus[task.vcpu];
      const calls = rt.shadowStack(task.vcpu).calls;
      const locations = [cpu.rip, ...[...calls].reverse().map((c) => c.from)];
      for (const address of locations) {
        const at = rt.sourceOf(address);
        const name = rt.functionAt(address) ?? hexAddr(address);
        const src = at ? new Source(basename(at.path), at.path) : undefined;
        const f = new StackFrame(this.frames.create(ref), name, src, at?.line ?? 0, 1) as DebugProtocol.StackFrame;
        f.instructionPointerReference = hexAddr(address);
        frames.push(f);
      }
    }
    const start = args.startFrame ?? 0;
    const levels = args.levels || frames.length;
    response.body = { stackFrames: frames.slice(start, start + levels), totalFrames: frames.length };
    this.sendResponse(response);
  }

  protected override scopesRequest(response: DebugProtocol.ScopesResponse, args: DebugProtocol.ScopesArguments): void {
    if (!this.needsStopped(response)) return;
    const ref = this.frames.get(args.frameId);
    if (!ref) return this.fail(response, `there is no frame ${args.frameId}`);
    const m = this.runtime.machine;
    const vcpu = ref.vcpu === null ? null : m.kvm.vcpus[ref.vcpu];
    const scopes: DebugProtocol.Scope[] = [];
    const add = (name: string, children: () => VarNode[], hint?: 'registers') => {
      const s = new Scope(name, this.vars.create(children), false) as DebugProtocol.Scope;
      this.varVcpus.set(s.variablesReference, name === 'VM (KVM)' ? null : ref.vcpu);
      if (hint) s.presentationHint = hint;
      scopes.push(s);
    };
    if (vcpu) {
      add('Registers', () => registers(m, vcpu.vcpu_id), 'registers');
      add('Local APIC', () => localApic(vcpu, (id, off, value) => this.runtime.setApicRegister(id, off, value)));
      add('AVIC', () => avic(vcpu));
      add('vCPU (KVM)', () => vcpuKvm(m, vcpu));
    }
    add('VM (KVM)', () => vmKvm(m));
    response.body = { scopes };
    this.sendResponse(response);
  }

  protected override variablesRequest(response: DebugProtocol.VariablesRequest extends never ? never : DebugProtocol.VariablesResponse, args: DebugProtocol.VariablesArguments): void {
    if (!this.needsStopped(response)) return;
    const children = this.vars.get(args.variablesReference);
    if (!children) return this.fail(response, `there is no variable reference ${args.variablesReference}`);
    response.body = {
      variables: children().map((n) => {
        const ref = n.children ? this.vars.create(n.children) : 0;
        if (ref) this.varVcpus.set(ref, this.varVcpus.get(args.variablesReference) ?? null);
        return { name: n.name, value: n.value, type: n.type, variablesReference: ref, memoryReference: n.memoryReference };
      }),
    };
    this.sendResponse(response);
  }

  protected override setVariableRequest(response: DebugProtocol.SetVariableResponse, args: DebugProtocol.SetVariableArguments): void {
    if (!this.needsStopped(response)) return;
    const children = this.vars.get(args.variablesReference);
    const node = children?.().find((n) => n.name === args.name);
    if (!node?.set) return this.fail(response, `'${args.name}' cannot be set (registers and APIC registers can)`);
    const seq = this.stateSeq;
    const error = node.set(args.value);
    if (error) return this.fail(response, error);
    const now = children!().find((n) => n.name === args.name);
    response.body = { value: now?.value ?? args.value };
    this.sendResponse(response);
    this.runtime.machine.log.add({ kind: 'host-action', vcpu: null, rip: 0, trigger: null, action: `set ${args.name} = ${args.value}`, target: null });
    // an APIC register write ran as host code and has told the client already
    if (this.stateSeq === seq) this.changedWhileStopped();
  }

  // ---- evaluate, completions, memory, disassembly ---------------------------------------------------------------

  protected override evaluateRequest(response: DebugProtocol.EvaluateResponse, args: DebugProtocol.EvaluateArguments): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    const frame = args.frameId !== undefined ? this.frames.get(args.frameId) : undefined;
    const vcpu = frame ? frame.vcpu : 0;
    if (args.context === 'repl' && isCommand(args.expression)) {
      if (this.runtime.isRunning) return this.fail(response, 'the program is running: pause it first');
      const text = runCommand(this.runtime, args.expression, vcpu);
      if (text.startsWith('error: ')) return this.fail(response, text.slice(7));
      response.body = { result: text, variablesReference: 0 };
      return this.sendResponse(response);
    }
    if (this.runtime.isRunning) return this.fail(response, 'the program is running: pause it first');
    const r = evaluateExpression(this.runtime.machine, vcpu ?? 0, args.expression, this.runtime.assembly.symbols);
    if ('error' in r) return this.fail(response, r.error);
    response.body = { result: r.text, variablesReference: 0, memoryReference: r.memoryReference };
    this.sendResponse(response);
  }

  protected override completionsRequest(response: DebugProtocol.CompletionsResponse, args: DebugProtocol.CompletionsArguments): void {
    const before = args.text.slice(0, args.column - 1);
    const words = before.split(/\s+/);
    const last = words[words.length - 1];
    let options: string[] = [];
    if (words.length === 1) options = [...COMMANDS];
    else if (words[0] === 'hostaction') options = ['set-apic-base-msrs=', 'set-apic-base-sregs=', 'set-lapic-id=', 'guest-debug-blockirq=on', 'guest-debug-blockirq=off', 'msi='];
    else if (words[0] === 'inhibit' && words.length === 2) options = ['set', 'clear'];
    else if (words[0] === 'inhibit' && words.length === 3) options = ['DISABLE', 'HYPERV', 'ABSENT', 'BLOCKIRQ', 'PHYSICAL_ID_ALIASED', 'APIC_ID_MODIFIED', 'APIC_BASE_MODIFIED', 'IRQWIN', 'PIT_REINJ', 'SEV', 'LOGICAL_ID_ALIASED'];
    else if (words[0] === 'request' && words.length === 3) options = ['KVM_REQ_APICV_UPDATE', 'KVM_REQ_EVENT', 'KVM_REQ_UNBLOCK', 'KVM_REQ_TLB_FLUSH_CURRENT', 'KVM_REQ_NMI'];
    response.body = { targets: options.filter((o) => o.startsWith(last)).map((o) => ({ label: o, start: before.length - last.length, length: last.length })) };
    this.sendResponse(response);
  }

  protected override readMemoryRequest(response: DebugProtocol.ReadMemoryResponse, args: DebugProtocol.ReadMemoryArguments): void {
    if (!this.needsStopped(response)) return;
    const base = parseAddress(args.memoryReference);
    if (base === undefined) return this.fail(response, `'${args.memoryReference}' is not an address`);
    const address = base + (args.offset ?? 0);
    const count = Math.min(args.count, 1 << 20);
    const { bytes, readable } = peekLinear(this.runtime.machine.cpus[0], BigInt(address), count);
    response.body = { address: hexAddr(address), data: toBase64(bytes.subarray(0, readable)), unreadableBytes: count - readable };
    this.sendResponse(response);
    this.shownMemory.remember({ reference: args.memoryReference, offset: args.offset ?? 0, count }, address, bytes.subarray(0, readable));
  }

  protected override writeMemoryRequest(response: DebugProtocol.WriteMemoryResponse, args: DebugProtocol.WriteMemoryArguments): void {
    if (!this.needsStopped(response)) return;
    const base = parseAddress(args.memoryReference);
    if (base === undefined) return this.fail(response, `'${args.memoryReference}' is not an address`);
    const address = base + (args.offset ?? 0);
    const data = fromBase64(args.data);
    const written = pokeLinear(this.runtime.machine.cpus[0], BigInt(address), data);
    if (written === 0 && data.length > 0) return this.fail(response, `${hexAddr(address)} is not writable RAM`);
    this.runtime.machine.log.add({ kind: 'host-action', vcpu: null, rip: 0, trigger: null, action: `writeMemory ${hexAddr(address)} (${written} bytes)`, target: null });
    response.body = { bytesWritten: written };
    this.sendResponse(response);
    this.changedWhileStopped({ reference: args.memoryReference, offset: args.offset ?? 0, count: written });
  }

  protected override disassembleRequest(response: DebugProtocol.DisassembleResponse, args: DebugProtocol.DisassembleArguments): void {
    if (!this.needsStopped(response)) return;
    const base = parseAddress(args.memoryReference);
    if (base === undefined) return this.fail(response, `'${args.memoryReference}' is not an address`);
    const rt = this.runtime;
    const list = disassemble(rt.machine.cpus[0], BigInt(base + (args.offset ?? 0)), args.instructionOffset ?? 0, args.instructionCount, lineLookupFor(rt.assembly, rt.launched.program));
    response.body = {
      instructions: list.map((i) => ({
        address: i.address, instructionBytes: i.instructionBytes, instruction: i.instruction, symbol: i.symbol, line: i.line,
        location: i.location ? new Source(i.location.name, i.location.path) : undefined, presentationHint: i.presentationHint,
      })),
    };
    this.sendResponse(response);
  }

  protected override loadedSourcesRequest(response: DebugProtocol.LoadedSourcesResponse): void {
    if (!this.launched) return this.fail(response, 'the program has not been launched');
    // the program and every file it %includes (avic.inc from the bundled include folder too)
    response.body = { sources: this.runtime.assembly.files.map((f) => new Source(basename(f), f)) };
    this.sendResponse(response);
  }

  // ---- custom ---------------------------------------------------------------------------------------------------

  protected override customRequest(command: string, response: DebugProtocol.Response, args: unknown): void {
    if (command === 'avic/state') {
      if (!this.launched) return this.fail(response, 'the program has not been launched');
      response.body = avicState(this.runtime.machine, this.stateSeq);
      return this.sendResponse(response);
    }
    if (command === 'avic/help') {
      response.body = { text: HELP };
      return this.sendResponse(response);
    }
    void args;
    this.fail(response, `unknown request '${command}'`);
  }
}

/** a breakpoint as DAP gives it (responses and `breakpoint` events) */
function breakpointBody(r: BreakpointResult): DebugProtocol.Breakpoint {
  const bp: DebugProtocol.Breakpoint = { id: r.id, verified: r.verified };
  if (r.path !== undefined) bp.source = new Source(basename(r.path), r.path);
  if (r.line !== undefined) bp.line = r.line;
  if (r.message) bp.message = r.message;
  if (r.instructionReference) bp.instructionReference = r.instructionReference;
  return bp;
}

function basename(p: string): string {
  const i = Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\'));
  return i < 0 ? p : p.slice(i + 1);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function toBase64(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += B64[(n >>> 18) & 63] + B64[(n >>> 12) & 63] + (i + 1 < bytes.length ? B64[(n >>> 6) & 63] : '=') + (i + 2 < bytes.length ? B64[n & 63] : '=');
  }
  return out;
}

function fromBase64(text: string): Uint8Array {
  const clean = text.replace(/[^A-Za-z0-9+/]/g, '');
  const out: number[] = [];
  for (let i = 0; i < clean.length; i += 4) {
    const n = (B64.indexOf(clean[i]) << 18) | (B64.indexOf(clean[i + 1] ?? 'A') << 12) | ((clean[i + 2] ? B64.indexOf(clean[i + 2]) : 0) << 6) | (clean[i + 3] ? B64.indexOf(clean[i + 3]) : 0);
    out.push((n >>> 16) & 255);
    if (clean[i + 2]) out.push((n >>> 8) & 255);
    if (clean[i + 3]) out.push(n & 255);
  }
  return Uint8Array.from(out);
}

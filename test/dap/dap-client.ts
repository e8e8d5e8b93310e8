// A DebugClient (@vscode/debugadapter-testsupport) on the real adapter process, over stdio
// (`node dist/dap.js`) or TCP (`node dist/cli.js dap --port 0`), with every event recorded so
// a test can wait for "the next stop after this request" without racing the adapter: take a
// mark, send the request, wait for an event after the mark. No sleeps: waits end on events
// (or on the timeout, with the events seen so far in the message).

import { DebugClient } from '@vscode/debugadapter-testsupport';
import type { DebugProtocol } from '@vscode/debugprotocol';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(__dirname, '..', '..');
export const EXAMPLES = join(ROOT, 'examples');
export const example = (name: string): string => join(EXAMPLES, name);

/** the event kinds the adapter sends (recorded for every test) */
const EVENTS = ['initialized', 'stopped', 'continued', 'exited', 'terminated', 'thread', 'output', 'breakpoint', 'memory', 'invalidated', 'avic/stateChanged'];

const WAIT_MS = 15_000;

/** what the client says it handles, as VS Code says it */
export const CLIENT: DebugProtocol.InitializeRequestArguments = {
  adapterID: 'avic', clientID: 'dap-tests', linesStartAt1: true, columnsStartAt1: true, pathFormat: 'path',
  supportsVariableType: true, supportsMemoryReferences: true, supportsMemoryEvent: true, supportsInvalidatedEvent: true,
  supportsRunInTerminalRequest: false, supportsProgressReporting: false,
};

export type Ev = DebugProtocol.Event;
export type StoppedEvent = DebugProtocol.StoppedEvent;
export type OutputEvent = DebugProtocol.OutputEvent;

export class Dap {
  readonly dc: DebugClient;
  readonly events: Ev[] = [];
  private waiters: (() => void)[] = [];
  private server: ChildProcess | undefined;
  /** the stand-alone adapter's process (stdio) */
  adapter: ChildProcess | undefined;
  private adapterExited = false;

  private constructor() {
    this.dc = new DebugClient('node', join(ROOT, 'dist', 'dap.js'), 'avic');
    this.dc.defaultTimeout = WAIT_MS;
    for (const kind of EVENTS) {
      this.dc.on(kind, (e: Ev) => {
        this.events.push(e);
        const waiting = this.waiters;
        this.waiters = [];
        for (const w of waiting) w();
      });
    }
  }

  /** the adapter as a child process over stdio */
  static async stdio(): Promise<Dap> {
    const d = new Dap();
    await d.dc.start();
    d.adapter = (d.dc as unknown as { _adapterProcess: ChildProcess })._adapterProcess;
    d.adapter.once('exit', () => {
      d.adapterExited = true;
    });
    return d;
  }

  /** `avic dap --port 0`: waits for its "listening" line, then connects */
  static async tcp(): Promise<Dap> {
    const d = new Dap();
    const server = spawn('node', [join(ROOT, 'dist', 'cli.js'), 'dap', '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    d.server = server;
    const port = await new Promise<number>((done, fail) => {
      let err = '';
      server.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
        const m = /avic dap: listening on 127\.0\.0\.1:(\d+)/.exec(err);
        if (m) done(Number(m[1]));
      });
      server.on('exit', (code) => fail(new Error(`avic dap exited with ${code}: ${err}`)));
    });
    await d.dc.start(port);
    return d;
  }

  async stop(): Promise<void> {
    if (!this.adapterExited) await this.dc.stop(); // disconnect (no answer from an adapter that has exited)
    if (this.server) {
      const exited = new Promise((done) => this.server!.once('exit', done));
      this.server.kill();
      await exited;
    }
  }

  /** where the next wait starts: events from here on */
  mark(): number {
    return this.events.length;
  }

  /** the first event of `kind` (or of one of several kinds) at or after `since` that `pred` accepts */
  async waitFor<E extends Ev = Ev>(kind: string | readonly string[], since: number, pred: (e: E) => boolean = () => true, ms = WAIT_MS): Promise<E> {
    const started = Date.now();
    const kinds = typeof kind === 'string' ? [kind] : kind;
    for (;;) {
      for (let i = since; i < this.events.length; i++) {
        const e = this.events[i] as E;
        if (kinds.includes(e.event) && pred(e)) return e;
      }
      const left = ms - (Date.now() - started);
      if (left <= 0) {
        const seen = this.events.slice(since).map((e) => `${e.event} ${JSON.stringify(e.body ?? {}).slice(0, 160)}`).join('\n  ');
        throw new Error(`no '${kinds.join("' or '")}' event within ${ms} ms; events since the mark:\n  ${seen || '(none)'}`);
      }
      await new Promise<void>((done) => {
        const timer = setTimeout(done, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          done();
        });
      });
    }
  }

  stopped(since: number): Promise<StoppedEvent> {
    return this.waitFor<StoppedEvent>('stopped', since);
  }

  /** the events of `kind` after `since` (no waiting) */
  after(kind: string, since: number): Ev[] {
    return this.events.slice(since).filter((e) => e.event === kind);
  }

  /** the text of the output events of `category` after `since` */
  output(since: number, category?: string): string {
    return (this.after('output', since) as OutputEvent[]).filter((e) => !category || e.body.category === category).map((e) => e.body.output).join('');
  }

  /**
   * initialize, launch, then (after `initialized`) the configuration `configure` sends, then
   * configurationDone. Returns the initialize response's capabilities.
   */
  async launch(args: Record<string, unknown>, configure?: (d: Dap) => Promise<void>, client = CLIENT): Promise<DebugProtocol.Capabilities> {
    const init = await this.dc.initializeRequest(client);
    const m = this.mark();
    await this.dc.launchRequest(args as DebugProtocol.LaunchRequestArguments);
    await this.waitFor('initialized', m);
    if (configure) await configure(this);
    await this.dc.configurationDoneRequest();
    return init.body ?? {};
  }

  /** launch with stopOnEntry and wait for the entry stop */
  async launchStopped(args: Record<string, unknown>, configure?: (d: Dap) => Promise<void>): Promise<StoppedEvent> {
    const m = this.mark();
    await this.launch({ ...args, stopOnEntry: true }, configure);
    const s = await this.stopped(m);
    assert.equal(s.body.reason, 'entry');
    await this.waitFor('avic/stateChanged', this.events.indexOf(s));
    return s;
  }

  /** sends a request, waits for the next stop */
  async stopAfter(request: () => Promise<unknown>): Promise<StoppedEvent> {
    const m = this.mark();
    await request();
    return this.stopped(m);
  }

  continueTo(threadId = 1): Promise<StoppedEvent> {
    return this.stopAfter(() => this.dc.continueRequest({ threadId }));
  }

  /** continue until the session ends; the exit code */
  async runToExit(threadId = 1): Promise<number> {
    const m = this.mark();
    await this.dc.continueRequest({ threadId });
    const exited = await this.waitFor<DebugProtocol.ExitedEvent>('exited', m);
    await this.waitFor('terminated', m);
    return exited.body.exitCode;
  }

  /** a request that must fail: its error message */
  async fails(request: Promise<unknown>): Promise<string> {
    try {
      await request;
    } catch (e) {
      return (e as Error).message;
    }
    assert.fail('the request succeeded');
  }

  async frames(threadId: number): Promise<DebugProtocol.StackFrame[]> {
    return (await this.dc.stackTraceRequest({ threadId })).body.stackFrames;
  }

  async topFrameId(threadId: number): Promise<number> {
    return (await this.frames(threadId))[0].id;
  }

  /** the scopes of a thread's top frame, by name */
  async scopes(threadId: number, frameIndex = 0): Promise<Map<string, DebugProtocol.Scope>> {
    const frame = (await this.frames(threadId))[frameIndex];
    const scopes = (await this.dc.scopesRequest({ frameId: frame.id })).body.scopes;
    return new Map(scopes.map((s) => [s.name, s]));
  }

  async variables(ref: number): Promise<Map<string, DebugProtocol.Variable>> {
    const vars = (await this.dc.variablesRequest({ variablesReference: ref })).body.variables;
    return new Map(vars.map((v) => [v.name, v]));
  }

  /** a scope's variables of a thread's top frame */
  async scope(threadId: number, name: string): Promise<Map<string, DebugProtocol.Variable>> {
    const s = (await this.scopes(threadId)).get(name);
    assert.ok(s, `no scope '${name}'`);
    return this.variables(s.variablesReference);
  }

  async register(threadId: number, name: string): Promise<bigint> {
    const v = (await this.scope(threadId, 'Registers')).get(name);
    assert.ok(v, `no register ${name}`);
    return BigInt(v.value);
  }

  async evaluate(expression: string, context = 'watch', frameId?: number): Promise<DebugProtocol.EvaluateResponse['body']> {
    return (await this.dc.evaluateRequest({ expression, context, frameId })).body;
  }

  async state(): Promise<AvicState> {
    return (await this.dc.customRequest('avic/state')).body as AvicState;
  }

  readMemory(memoryReference: string, count: number, offset?: number): Promise<DebugProtocol.ReadMemoryResponse> {
    return this.dc.customRequest('readMemory', { memoryReference, count, offset }) as Promise<DebugProtocol.ReadMemoryResponse>;
  }

  writeMemory(memoryReference: string, data: string, offset?: number): Promise<DebugProtocol.WriteMemoryResponse> {
    return this.dc.customRequest('writeMemory', { memoryReference, data, offset }) as Promise<DebugProtocol.WriteMemoryResponse>;
  }

  setInstructionBreakpoints(breakpoints: DebugProtocol.InstructionBreakpoint[]): Promise<DebugProtocol.SetInstructionBreakpointsResponse> {
    return this.dc.customRequest('setInstructionBreakpoints', { breakpoints }) as Promise<DebugProtocol.SetInstructionBreakpointsResponse>;
  }

  /** setExceptionBreakpoints with filter options (condition, mode) */
  setFilters(options: { filterId: string; condition?: string; mode?: string }[], filters: string[] = []): Promise<DebugProtocol.SetExceptionBreakpointsResponse> {
    return this.dc.setExceptionBreakpointsRequest({ filters, filterOptions: options });
  }
}

export interface AvicState {
  seq: number;
  vm: {
    kernel: string; design: string; avic: boolean; x2avic: boolean; nested: boolean; apicvActivated: boolean;
    apicvInhibits: string[];
    inhibitTable: { reason: string; bit: number; set: boolean; lastChange: { seq: number; vcpu: number | null; hostStack: string[] } | null }[];
    apicAccessMemslot: { enabled: boolean; inhibited: boolean };
    memslots: { id: number; gpa: string; size: number; private: boolean }[];
  };
  vcpus: {
    id: number; threadId: number; state: string; mode: string; apic: { mode: string; apicvActive: boolean }; inhibits: string[];
    requests: string[]; srcuDepth: number; srcuReaders: number; expectedSrcuDepth: number; hostStack: string[];
  }[];
}

// ---- guest programs in a temp dir ---------------------------------------------------------------

let tempDir: string | undefined;

/** writes a guest program to the temp dir; its path */
export function program(name: string, text: string): string {
  tempDir ??= mkdtempSync(join(tmpdir(), 'avic-dap-'));
  const path = join(tempDir, name);
  writeFileSync(path, text);
  return path;
}

export function removePrograms(): void {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
}

/** the 1-based line of the first line of `text` that contains `needle` */
export function lineOf(text: string, needle: string): number {
  const i = text.split('\n').findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `'${needle}' is not in the program`);
  return i + 1;
}

export function fromBase64(data: string | undefined): Buffer {
  return Buffer.from(data ?? '', 'base64');
}

// The adapter's life cycle over DAP (contracts/dap.md): initialize and its capabilities, launch
// with and without stopOnEntry, configurationDone, threads (one per vCPU, id = index + 1),
// output of the guest's console, exited (codes as `avic run`) and terminated, terminate and
// disconnect; and the same over TCP (`avic dap --port 0`).

import type { DebugProtocol } from '@vscode/debugprotocol';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { Dap, example, lineOf, program, removePrograms } from './dap-client';
import { CALLS, write } from './programs';

const FILTERS = ['vcpu-request', 'x2apic-msr-write', 'memslot-change', 'inhibit-change', 'srcu', 'vmexit', 'violation'];

describe('dap: life cycle', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  it('initialize answers the capabilities of the contract', async () => {
    const caps = (await d.dc.initializeRequest()).body!;
    for (const flag of [
      'supportsConfigurationDoneRequest', 'supportsFunctionBreakpoints', 'supportsConditionalBreakpoints', 'supportsHitConditionalBreakpoints',
      'supportsLogPoints', 'supportsSetVariable', 'supportsCompletionsRequest', 'supportsExceptionInfoRequest', 'supportsExceptionFilterOptions',
      'supportsTerminateRequest', 'supportsDataBreakpoints', 'supportsDataBreakpointBytes', 'supportsReadMemoryRequest', 'supportsWriteMemoryRequest',
      'supportsDisassembleRequest', 'supportsSteppingGranularity', 'supportsInstructionBreakpoints', 'supportsSingleThreadExecutionRequests',
      'supportsRestartRequest', 'supportsLoadedSourcesRequest',
    ] as const) {
      assert.equal(caps[flag], true, flag);
    }
    const filters = caps.exceptionBreakpointFilters!;
    assert.deepEqual(filters.map((f) => f.filter), FILTERS);
    assert.deepEqual(filters.filter((f) => f.default).map((f) => f.filter), ['violation']);
    for (const f of filters) {
      assert.equal(f.supportsCondition, true, f.filter);
      assert.ok(f.label && f.conditionDescription, f.filter);
    }
    const modes = caps.breakpointModes!;
    assert.deepEqual(modes.map((m) => m.mode), ['stop', 'log']);
    for (const m of modes) for (const kind of ['source', 'exception'] as const) assert.ok(m.appliesTo.includes(kind), `${m.mode} applies to ${kind}`);
  });

  it('launch without stopOnEntry runs to the end: console output, thread events, exited 0, terminated', async () => {
    await d.launch({ program: example('hello.vasm') });
    await d.waitFor('terminated', 0);
    const exited = d.after('exited', 0) as DebugProtocol.ExitedEvent[];
    assert.deepEqual(exited.map((e) => e.body.exitCode), [0]);
    assert.equal(d.output(0, 'stdout'), 'hello from vCPU 0\nhello from vCPU 1\nhello from vCPU 2\nhello from vCPU 3\n');
    assert.match(d.output(0, 'console'), /avic: done: \d+ steps, \d+ instructions/);
    const started = (d.after('thread', 0) as DebugProtocol.ThreadEvent[]).filter((e) => e.body.reason === 'started').map((e) => e.body.threadId);
    assert.deepEqual(started, [1, 2, 3, 4]);
    assert.equal(d.after('stopped', 0).length, 0);
  });

  it("launch attributes override the program's avic-run line (vcpus, sched, seed, quantum, memory)", async () => {
    await d.launch({ program: example('hello.vasm'), vcpus: 2, sched: 'random', seed: 5, quantum: 7, memory: 128 });
    assert.equal((await d.waitFor<DebugProtocol.ExitedEvent>('exited', 0)).body.exitCode, 0);
    assert.equal(d.output(0, 'stdout'), 'hello from vCPU 0\nhello from vCPU 1\n');
    assert.deepEqual((d.after('thread', 0) as DebugProtocol.ThreadEvent[]).map((e) => e.body.threadId), [1, 2]);
  });

  it('stopOnEntry stops every vCPU at _start; threads are one per vCPU with ids index + 1 and state names', async () => {
    const s = await d.launchStopped({ program: example('hello.vasm') });
    assert.equal(s.body.threadId, 1);
    assert.equal(s.body.allThreadsStopped, true);
    const threads = (await d.dc.threadsRequest()).body.threads;
    assert.deepEqual(threads.map((t) => t.id), [1, 2, 3, 4]);
    assert.deepEqual(threads.map((t) => t.name), [0, 1, 2, 3].map((i) => `vCPU ${i} [xAPIC, AVIC, SRCU 0]`));
    for (const t of threads) {
      const frames = await d.frames(t.id);
      assert.equal(frames[0].name, '_start');
      assert.equal(frames[0].source?.name, 'hello.vasm');
      assert.equal(frames[0].instructionPointerReference, '0x100000');
    }
    // the stop is followed by avic/stateChanged
    const changed = await d.waitFor('avic/stateChanged', 0);
    assert.ok(d.events.indexOf(changed) > d.events.indexOf(s));
    assert.equal(await d.runToExit(), 0);
  });

  it('thread names follow the vCPU: x2APIC, AVIC inhibited, done; no AVIC under avic false', async () => {
    await d.launch({ program: example('x2apic-hybrid-mmio.vasm') }, async (c) => {
      await c.setFilters([{ filterId: 'x2apic-msr-write', condition: 'msr == 0x1b' }]);
    });
    await d.stopped(0);
    const names = (await d.dc.threadsRequest()).body.threads.map((t) => t.name);
    assert.match(names[0], /^vCPU 0 \[x2APIC, AVIC( inhibited)?, SRCU [01]\]$/);
    assert.match(names[1], /^vCPU 1 \[xAPIC, AVIC, SRCU [01]\]$/);
    await d.stop();
    d = await Dap.stdio();
    await d.launch({ program: example('apicv-update-all-vcpus.vasm') }, async (c) => {
      await c.setFilters([{ filterId: 'inhibit-change', condition: 'APIC_ID_MODIFIED && !set && changed' }]);
    });
    await d.stopped(0);
    const inhibited = (await d.dc.threadsRequest()).body.threads.map((t) => t.name);
    assert.equal(inhibited[0], 'vCPU 0 [xAPIC, AVIC inhibited, SRCU 1]');
    for (const name of inhibited) assert.match(name, /^vCPU \d \[xAPIC, AVIC inhibited, SRCU [01](, done)?\]$/);
    await d.stop();
    d = await Dap.stdio();
    await d.launchStopped({ program: example('hello.vasm'), vcpus: 1, avic: false });
    assert.deepEqual((await d.dc.threadsRequest()).body.threads.map((t) => t.name), ['vCPU 0 [xAPIC, SRCU 0]']);
  });

  it('exit code 2 when a violation ends the run (the violation filter off) or the step limit does', async () => {
    await d.launch({ program: example('x2apic-hybrid-mmio.vasm'), design: 'pre-fix' }, async (c) => {
      await c.dc.setExceptionBreakpointsRequest({ filters: [] });
    });
    const exited = await d.waitFor<DebugProtocol.ExitedEvent>('exited', 0);
    assert.equal(exited.body.exitCode, 2);
    assert.match(d.output(0, 'console'), /avic: violation: .*\navic: violation xapic-access-in-x2apic-mode \(vCPU 0, event \d+\)/);
    assert.equal(d.after('stopped', 0).length, 0);
    await d.waitFor('terminated', 0);
    await d.stop();

    d = await Dap.stdio();
    await d.launch({ program: write.spin(), maxSteps: 5000 });
    assert.equal((await d.waitFor<DebugProtocol.ExitedEvent>('exited', 0)).body.exitCode, 2);
    assert.match(d.output(0, 'console'), /avic: step-limit: 5000 steps/);
  });

  it('terminate while stopped and while running ends the session with terminated', async () => {
    await d.launchStopped({ program: write.spin() });
    let m = d.mark();
    await d.dc.terminateRequest();
    await d.waitFor('terminated', m);
    await d.stop();

    d = await Dap.stdio();
    await d.launch({ program: write.spin() });
    m = d.mark();
    await d.dc.terminateRequest();
    await d.waitFor('terminated', m);
  });

  it('disconnect ends the stand-alone adapter process', async () => {
    await d.launchStopped({ program: write.spin() });
    const adapter = d.adapter!;
    const exited = new Promise<number | null>((done) => adapter.once('exit', (code) => done(code)));
    await d.dc.disconnectRequest();
    assert.equal(await exited, 0);
  });

  it('restart: a fresh machine with the same attributes, breakpoints kept with their ids, the same run again', async () => {
    const path = write.calls();
    const m0 = d.mark();
    let bpId = 0;
    await d.launch({ program: path, stopOnEntry: true }, async (c) => {
      const r = await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(CALLS, 'INNER-FIRST') }] });
      bpId = r.body.breakpoints[0].id!;
    });
    await d.stopped(m0);
    let s = await d.continueTo();
    assert.deepEqual(s.body.hitBreakpointIds, [bpId]);
    const raxBefore = await d.register(1, 'rax');
    // mid-run: the program has counted to 5 and its memory says so
    assert.match((await d.evaluate('dword [counter]')).result, /\(5\)$/);
    const m = d.mark();
    await d.dc.customRequest('restart', {});
    s = await d.stopped(m);
    assert.equal(s.body.reason, 'entry');
    const threads = (d.after('thread', m) as DebugProtocol.ThreadEvent[]).map((e) => `${e.body.reason} ${e.body.threadId}`);
    assert.deepEqual(threads, ['exited 1', 'exited 2', 'started 1', 'started 2']);
    const changed = d.after('breakpoint', m) as DebugProtocol.BreakpointEvent[];
    assert.deepEqual(changed.map((e) => [e.body.reason, e.body.breakpoint.id, e.body.breakpoint.verified, e.body.breakpoint.line]), [['changed', bpId, true, lineOf(CALLS, 'INNER-FIRST')]]);
    assert.match((await d.evaluate('dword [counter]')).result, /\(0\)$/, 'memory as loaded');
    assert.equal((await d.frames(1))[0].instructionPointerReference, '0x100000');
    s = await d.continueTo();
    assert.deepEqual(s.body.hitBreakpointIds, [bpId]);
    assert.equal(await d.register(1, 'rax'), raxBefore, 'the same run');
    assert.equal(await d.runToExit(), 0);
  });

  it('restart with changed attributes and an edited program: breakpoints resolved again; bad attributes keep the session', async () => {
    const path = program('edit.vasm', CALLS);
    const m0 = d.mark();
    let ids: number[] = [];
    await d.launch({ program: path, stopOnEntry: true }, async (c) => {
      const r = await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(CALLS, 'INNER-FIRST') }, { line: lineOf(CALLS, 'AFTER-OUTER') }] });
      ids = r.body.breakpoints.map((b) => b.id!);
    });
    await d.stopped(m0);
    // bad attributes: an error naming the attribute; the run goes on as it was
    assert.match(await d.fails(d.dc.customRequest('restart', { arguments: { program: path, vcpus: 0 } })), /launch attribute 'vcpus'/);
    assert.equal((await d.dc.threadsRequest()).body.threads.length, 2);
    // the edit puts a comment line where INNER-FIRST was: that breakpoint moves to the code after it
    const edited = CALLS.replace(/^inner:.*INNER-FIRST$/m, '; gone\ninner:  add     rax, rax                ; INNER-FIRST');
    writeFileSync(path, edited);
    const m = d.mark();
    await d.dc.customRequest('restart', { arguments: { program: path, stopOnEntry: false, vcpus: 1 } });
    const s = await d.stopped(m);
    const changed = (d.after('breakpoint', m) as DebugProtocol.BreakpointEvent[]).map((e) => e.body.breakpoint);
    assert.deepEqual(changed.map((b) => [b.id, b.verified, b.line]), [[ids[0], true, lineOf(edited, 'INNER-FIRST')], [ids[1], true, lineOf(CALLS, 'AFTER-OUTER')]]);
    assert.equal(s.body.reason, 'breakpoint');
    assert.deepEqual(s.body.hitBreakpointIds, [ids[0]]);
    assert.equal(d.after('continued', m).length, 1, 'running after the restart');
    assert.deepEqual((await d.dc.threadsRequest()).body.threads.map((t) => t.id), [1]);
  });

  it('restart to a program that assembles but cannot be loaded: an error naming it, and the run goes on', async () => {
    const path = program('load.vasm', CALLS);
    const m0 = d.mark();
    await d.launch({ program: path, stopOnEntry: true });
    await d.stopped(m0);
    // org 0x1000 puts the image on the loader's GDT and page tables
    writeFileSync(path, `org 0x1000\n${CALLS}`);
    const message = await d.fails(d.dc.customRequest('restart', {}));
    assert.match(message, /load\.vasm: the image would start at 0x1000, inside the loader's GDT and page tables/);
    // the old machine is intact: threads, frames, and it runs to its end
    assert.equal((await d.dc.threadsRequest()).body.threads.length, 2);
    assert.equal((await d.frames(1))[0].name, '_start');
    writeFileSync(path, CALLS);
    assert.equal(await d.runToExit(), 0);
  });

  it('restart while running: the old run says nothing more, the new one runs', async () => {
    const path = write.spin();
    const m0 = d.mark();
    await d.launch({ program: path });
    await d.waitFor('thread', m0);
    const m = d.mark();
    await d.dc.customRequest('restart', {});
    const continued = await d.waitFor('continued', m);
    assert.ok(continued);
    const threads = (d.after('thread', m) as DebugProtocol.ThreadEvent[]).map((e) => `${e.body.reason} ${e.body.threadId}`);
    assert.deepEqual(threads, ['exited 1', 'exited 2', 'exited 3', 'started 1', 'started 2', 'started 3']);
    // it runs: a pause stops it, once
    const p = d.mark();
    await d.dc.pauseRequest({ threadId: 1 });
    const s = await d.stopped(p);
    assert.equal(s.body.reason, 'pause');
    await d.waitFor('avic/stateChanged', p);
    assert.equal(d.after('stopped', m).length, 1);
    assert.equal(d.after('exited', m).length, 0);
  });

  it('verified source breakpoints come back under the path the client sent', async () => {
    const path = write.calls();
    const spelled = path.replace(/\/([^/]+)$/, '/./$1');
    const m0 = d.mark();
    let got: DebugProtocol.Breakpoint[] = [];
    await d.launch({ program: path, stopOnEntry: true }, async (c) => {
      got = (await c.dc.setBreakpointsRequest({ source: { path: spelled }, breakpoints: [{ line: lineOf(CALLS, 'INNER-FIRST') }] })).body.breakpoints;
    });
    await d.stopped(m0);
    assert.equal(got[0].verified, true);
    assert.equal(got[0].source?.path, spelled);
    const s = await d.continueTo();
    assert.deepEqual(s.body.hitBreakpointIds, [got[0].id]);
  });

  it('the guest console arrives as stdout output before exited and terminated', async () => {
    const path = write.calls();
    await d.launchStopped({ program: path });
    const m = d.mark();
    assert.equal(await d.runToExit(), 0);
    assert.equal(d.output(m, 'stdout'), 'ok');
    const order = d.events.slice(m).map((e) => e.event).filter((e) => e !== 'avic/stateChanged' && e !== 'thread');
    assert.deepEqual(order, ['output', 'output', 'exited', 'terminated']);
  });
});

describe('dap: over TCP (avic dap --port 0)', () => {
  let d: Dap;
  afterEach(async () => {
    await d.stop();
  });

  it('serves a whole session: launch, entry stop, threads, stack, evaluate, run to the end', async () => {
    d = await Dap.tcp();
    const caps = await d.launch({ program: example('hello.vasm'), stopOnEntry: true });
    assert.equal(caps.supportsSingleThreadExecutionRequests, true);
    const s = await d.stopped(0);
    assert.equal(s.body.reason, 'entry');
    assert.equal((await d.dc.threadsRequest()).body.threads.length, 4);
    assert.equal((await d.frames(2))[0].name, '_start');
    assert.equal((await d.evaluate('rdi', 'watch', await d.topFrameId(3))).result, '0x0000000000000002 (2)');
    assert.equal(await d.runToExit(), 0);
    assert.match(d.output(0, 'stdout'), /hello from vCPU 3\n$/);
  });
});

// Running and stopping over DAP (contracts/dap.md, "Threads and frames"): stack traces with
// guest frames from the call/ret shadow stack and host frames above them; continue, pause,
// next, stepIn and stepOut at instruction and line granularity, in guest and in host frames;
// singleThread requests (the other vCPUs stay frozen; a wait on a frozen vCPU stops with
// `pause` naming it); pause and continue of every vCPU.

import type { DebugProtocol } from '@vscode/debugprotocol';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Dap, example, lineOf, removePrograms, ROOT } from './dap-client';
import { CALLS, write } from './programs';

const line = (marker: string) => lineOf(CALLS, marker);

/** name and line of each frame, innermost first */
async function where(d: Dap, threadId: number): Promise<[string, number][]> {
  return (await d.frames(threadId)).map((f) => [f.name, f.line]);
}

/** host frame names (no source path), innermost first */
async function hostFrames(d: Dap, threadId: number): Promise<string[]> {
  return (await d.frames(threadId)).filter((f) => !f.source?.path).map((f) => f.name);
}

describe('dap: stack traces', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  it('guest frames come from the shadow stack: inner, outer, _start with .vasm source and the call lines', async () => {
    const path = write.calls();
    await d.launch({ program: path }, async (c) => {
      await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: line('INNER-FIRST') }] });
    });
    const s = await d.stopped(0);
    assert.equal(s.body.reason, 'breakpoint');
    assert.equal(s.body.threadId, 1);
    const frames = await d.frames(1);
    assert.deepEqual(frames.map((f) => [f.name, f.line]), [['inner', line('INNER-FIRST')], ['outer', line('CALL-INNER')], ['_start', line('CALL-OUTER')]]);
    for (const f of frames) {
      assert.equal(f.source?.path, path);
      assert.equal(f.source?.name, 'calls.vasm');
      assert.match(f.instructionPointerReference ?? '', /^0x[0-9a-f]+$/);
    }
    // levels and startFrame page through them
    const page = (await d.dc.stackTraceRequest({ threadId: 1, startFrame: 1, levels: 1 })).body;
    assert.equal(page.totalFrames, 3);
    assert.deepEqual(page.stackFrames.map((f) => f.name), ['outer']);
    // the other vCPU has its own stack: one frame, in the idle loop or at _start
    assert.equal((await d.frames(2)).length, 1);
  });

  it('host frames with kernel function names sit above the guest frame at a function breakpoint', async () => {
    const path = example('x2apic-hybrid-mmio.vasm');
    await d.launch({ program: path }, async (c) => {
      const r = await c.dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_vcpu_update_apicv' }] });
      assert.equal(r.body.breakpoints[0].verified, true);
    });
    const s = await d.stopped(0);
    assert.equal(s.body.reason, 'function breakpoint');
    assert.equal(s.body.threadId, 1);
    assert.deepEqual(s.body.hitBreakpointIds?.length, 1);
    const frames = await d.frames(1);
    assert.deepEqual(frames.slice(0, 5).map((f) => [f.name, f.source?.name, f.line]), [
      ['kvm_vcpu_update_apicv', 'arch/x86/kvm/x86.c', 0],
      ['vcpu_enter_guest', 'arch/x86/kvm/x86.c', 0],
      ['vcpu_run', 'arch/x86/kvm/x86.c', 0],
      ['kvm_arch_vcpu_ioctl_run', 'arch/x86/kvm/x86.c', 0],
      ['kvm_vcpu_ioctl', 'virt/kvm/kvm_main.c', 0],
    ]);
    const guest = frames[5];
    assert.equal(guest.name, '_start');
    assert.equal(guest.source?.path, path);
    const text = readFileSync(path, 'utf8');
    // the guest frame is at the WRMSR that enabled x2APIC, or just after it
    assert.ok(guest.line >= lineOf(text, 'wrmsr') && guest.line <= lineOf(text, 'mov     dword [x2apic_on], 1'), `line ${guest.line}`);
    assert.equal(frames.length, 6);
  });
});

describe('dap: stack traces in included files, and done vCPUs', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
  });
  afterEach(async () => {
    await d.stop();
  });

  it("a frame in an included file (console.inc's puts) carries that file as its source", async () => {
    const inc = join(ROOT, 'include', 'console.inc');
    const line = lineOf(readFileSync(inc, 'utf8'), '.next:  lodsb');
    await d.launch({ program: example('x2apic-hybrid-mmio.vasm') }, async (c) => {
      const r = await c.dc.setBreakpointsRequest({ source: { path: inc }, breakpoints: [{ line }] });
      assert.equal(r.body.breakpoints[0].verified, true);
    });
    await d.stopped(0);
    const frames = await d.frames(1);
    assert.deepEqual(frames.map((f) => [f.name, f.source?.path, f.line]), [
      ['puts', inc, line],
      ['_start', example('x2apic-hybrid-mmio.vasm'), lineOf(readFileSync(example('x2apic-hybrid-mmio.vasm'), 'utf8'), 'call    puts')],
    ]);
    // line steps stay in the included file's lines
    await d.stopAfter(() => d.dc.nextRequest({ threadId: 1 }));
    assert.equal((await d.frames(1))[0].line, line + 1);
  });

  it('a step on a vCPU that is done stops at once, saying so', async () => {
    const path = example('hello.vasm');
    await d.launch({ program: path }, async (c) => {
      await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(readFileSync(path, 'utf8'), '.mine:'), condition: 'rdi == 2' }] });
    });
    assert.equal((await d.stopped(0)).body.threadId, 3);
    assert.match((await d.dc.threadsRequest()).body.threads[0].name, /^vCPU 0 \[.*, done\]$/);
    const rip = await d.register(3, 'rip');
    const s = await d.stopAfter(() => d.dc.nextRequest({ threadId: 1 }));
    assert.equal(s.body.threadId, 1);
    assert.match(s.body.description ?? '', /vCPU 0 is done/);
    assert.equal(await d.register(3, 'rip'), rip, 'nothing ran');
    assert.equal(await d.runToExit(3), 0);
  });
});

describe('dap: stepping in guest code', () => {
  let d: Dap;
  let path: string;
  beforeEach(async () => {
    d = await Dap.stdio();
    path = write.calls();
    await d.launch({ program: path }, async (c) => {
      await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: line('CALL-OUTER') }] });
    });
    await d.stopped(0);
    await d.dc.setBreakpointsRequest({ source: { path }, breakpoints: [] });
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  const step = (kind: 'next' | 'stepIn' | 'stepOut', args: Partial<DebugProtocol.StepInArguments> = {}) =>
    d.stopAfter(() => (d.dc[`${kind}Request`] as (a: DebugProtocol.StepInArguments) => Promise<unknown>)({ threadId: 1, ...args }));

  it('line granularity: stepIn enters the call, next steps over one, stepOut returns to the caller', async () => {
    let s = await step('stepIn');
    assert.equal(s.body.reason, 'step');
    assert.equal(s.body.threadId, 1);
    assert.deepEqual(await where(d, 1), [['outer', line('OUTER-FIRST')], ['_start', line('CALL-OUTER')]]);
    s = await step('next');
    assert.deepEqual(await where(d, 1), [['outer', line('CALL-INNER')], ['_start', line('CALL-OUTER')]]);
    // next over `call inner`: inner runs, the stop is on the next line of outer
    await step('next');
    assert.deepEqual(await where(d, 1), [['outer', line('AFTER-INNER')], ['_start', line('CALL-OUTER')]]);
    assert.equal(await d.register(1, 'rax'), 10n, 'inner doubled 5');
    await step('stepOut');
    assert.deepEqual(await where(d, 1), [['_start', line('AFTER-OUTER')]]);
    assert.equal(await d.register(1, 'rax'), 15n, 'outer added 5');
  });

  it('stepOut from a nested call stops in its caller, not further out', async () => {
    await step('stepIn');
    await step('next');
    await step('stepIn');
    assert.deepEqual((await where(d, 1)).map(([n]) => n), ['inner', 'outer', '_start']);
    await step('stepOut');
    assert.deepEqual(await where(d, 1), [['outer', line('AFTER-INNER')], ['_start', line('CALL-OUTER')]]);
  });

  it('instruction granularity: each step runs one instruction', async () => {
    const dis = (await d.dc.disassembleRequest({ memoryReference: `0x${(await d.register(1, 'rip')).toString(16)}`, instructionCount: 3 })).body!.instructions;
    // at `call outer`: stepIn by instruction goes to outer's first instruction, next by instruction over it
    await step('stepIn', { granularity: 'instruction' });
    assert.deepEqual(await where(d, 1), [['outer', line('OUTER-FIRST')], ['_start', line('CALL-OUTER')]]);
    const rip = await d.register(1, 'rip');
    await step('stepIn', { granularity: 'instruction' });
    const next = await d.register(1, 'rip');
    assert.equal(next - rip, 3n, 'mov rbx, rax is three bytes');
    await step('stepOut', { granularity: 'instruction' });
    assert.equal(await d.register(1, 'rip'), BigInt(dis[1].address), 'back at the instruction after the call');
    await step('next', { granularity: 'instruction' });
    assert.equal(await d.register(1, 'rip'), BigInt(dis[2].address));
  });

  it('singleThread: one vCPU steps while the other stays frozen', async () => {
    const rip1 = await d.register(2, 'rip');
    for (let i = 0; i < 5; i++) await step('next', { singleThread: true, granularity: 'instruction' });
    assert.equal(await d.register(2, 'rip'), rip1, 'vCPU 1 did not move');
    // the other way round: vCPU 1 steps, vCPU 0 stays
    const rip0 = await d.register(1, 'rip');
    const s = await d.stopAfter(() => d.dc.nextRequest({ threadId: 2, singleThread: true, granularity: 'instruction' }));
    assert.equal(s.body.threadId, 2);
    assert.equal(await d.register(1, 'rip'), rip0, 'vCPU 0 did not move');
    assert.notEqual(await d.register(2, 'rip'), rip1, 'vCPU 1 moved');
  });
});

describe('dap: singleThread steps', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
    await d.launchStopped({ program: write.spin() });
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  const counters = async () => Promise.all([0, 1, 2].map(async (i) => BigInt((await d.evaluate(`qword [counters + ${i * 8}]`)).result.split(' ')[0])));
  const rips = async () => Promise.all([1, 2, 3].map((t) => d.register(t, 'rip')));

  it('with singleThread only the stepped vCPU runs; without it the others run meanwhile', async () => {
    const start = await rips();
    for (let i = 0; i < 6; i++) {
      const s = await d.stopAfter(() => d.dc.stepInRequest({ threadId: 2, singleThread: true, granularity: 'instruction' }));
      assert.equal(s.body.threadId, 2);
    }
    const [c0, c1, c2] = await counters();
    assert.deepEqual([c0, c2], [0n, 0n], 'vCPUs 0 and 2 are frozen');
    assert.ok(c1 >= 2n, `vCPU 1 counted: ${c1}`);
    const now = await rips();
    assert.deepEqual([now[0], now[2]], [start[0], start[2]]);
    // a step without singleThread: the other vCPUs run while vCPU 1 takes its step
    await d.stopAfter(() => d.dc.stepInRequest({ threadId: 2, granularity: 'instruction' }));
    const after = await counters();
    assert.ok(after[0] > 0n && after[2] > 0n, `the others ran: ${after}`);
  });
});

/** is `after` inside a function that the top frame of `before` called (what a `next` must not stop in)? */
function insideCallee(before: readonly string[], after: readonly string[]): boolean {
  return after.length > before.length && after.slice(-before.length).every((f, i) => f === before[i]);
}

describe('dap: stepping in host frames', () => {
  let d: Dap;
  afterEach(async () => {
    await d.stop();
  });

  async function stopIn(fn: string): Promise<void> {
    d = await Dap.stdio();
    await d.launch({ program: example('x2apic-hybrid-mmio.vasm') }, async (c) => {
      await c.dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: fn }] });
    });
    await d.stopped(0);
    await d.dc.setFunctionBreakpointsRequest({ breakpoints: [] });
    assert.equal((await hostFrames(d, 1))[0], fn);
  }

  const hostStep = async (kind: 'next' | 'stepIn' | 'stepOut'): Promise<string[]> => {
    const s = await d.stopAfter(() => d.dc[`${kind}Request`]({ threadId: 1 }));
    assert.equal(s.body.reason, 'step');
    assert.equal(s.body.threadId, 1);
    return hostFrames(d, 1);
  };

  it('stepIn goes into the callee; stepOut returns to the caller, not past it', async () => {
    await stopIn('kvm_inhibit_apic_access_page');
    const at = await hostFrames(d, 1);
    let now = await hostStep('stepIn');
    assert.ok(insideCallee(at, now), `stepIn went into a callee: ${now.join(' < ')}`);
    // kvm_inhibit_apic_access_page drops SRCU, then takes slots_lock: step into mutex_lock
    for (let i = 0; i < 10 && now[0] !== 'mutex_lock'; i++) {
      now = await hostStep('stepIn');
      assert.ok(now.includes('kvm_inhibit_apic_access_page'), now.join(' < '));
    }
    assert.equal(now[0], 'mutex_lock');
    now = await hostStep('stepOut');
    assert.ok(!now.includes('mutex_lock'), `out of mutex_lock: ${now.join(' < ')}`);
    assert.ok(now.includes('kvm_inhibit_apic_access_page'), `still in its caller: ${now.join(' < ')}`);
  });

  it('next never stops inside a callee of the frame it steps', async () => {
    await stopIn('kvm_inhibit_apic_access_page');
    let before = await hostStep('stepIn');
    for (let i = 0; i < 10 && before.includes('kvm_inhibit_apic_access_page'); i++) {
      const after = await hostStep('next');
      assert.ok(!insideCallee(before, after), `${before.join(' < ')} -> ${after.join(' < ')}`);
      before = after;
    }
    assert.ok(!before.includes('kvm_inhibit_apic_access_page'), 'the nexts left the function');
  });

  it('next over a function runs all of it: the APIC-access slot is gone at the stop', async () => {
    await stopIn('kvm_vcpu_update_apicv');
    assert.ok((await d.state()).vm.memslots.some((s) => s.id === 32765));
    const now = await hostStep('next');
    assert.ok(!now.includes('kvm_vcpu_update_apicv'), now.join(' < '));
    assert.equal(now[now.length - 1], 'kvm_vcpu_ioctl');
    assert.ok(!(await d.state()).vm.memslots.some((s) => s.id === 32765), 'kvm_inhibit_apic_access_page deleted the slot');
  });

  it('stepOut of the outermost host frames leaves host code for the guest', async () => {
    await stopIn('kvm_vcpu_update_apicv');
    let frames = await hostFrames(d, 1);
    for (let i = 0; i < 10 && frames.length > 0; i++) {
      const next = await hostStep('stepOut');
      assert.ok(!insideCallee(frames, next) && (next.length === 0 || next[0] !== frames[0] || next.length < frames.length), `${frames.join(' < ')} -> ${next.join(' < ')}`);
      frames = next;
    }
    assert.deepEqual(frames, [], 'back in the guest');
    assert.equal((await d.frames(1))[0].source?.name, 'x2apic-hybrid-mmio.vasm');
  });
});

describe('dap: continue, pause, singleThread continue', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  const counters = async () => Promise.all([0, 1, 2].map(async (i) => BigInt((await d.evaluate(`qword [counters + ${i * 8}]`)).result.split(' ')[0])));

  it('pause stops every vCPU; continue runs them all again', async () => {
    await d.launchStopped({ program: write.spin() });
    let before = await counters();
    assert.deepEqual(before, [0n, 0n, 0n]);
    for (let round = 0; round < 2; round++) {
      const m = d.mark();
      const cont = await d.dc.continueRequest({ threadId: 1 });
      assert.equal(cont.body.allThreadsContinued, true);
      await d.dc.pauseRequest({ threadId: 1 });
      const s = await d.stopped(m);
      assert.equal(s.body.reason, 'pause');
      assert.equal(s.body.allThreadsStopped, true);
      assert.ok([1, 2, 3].includes(s.body.threadId!), `stopped on a vCPU thread, not ${s.body.threadId}`);
      const now = await counters();
      for (let i = 0; i < 3; i++) assert.ok(now[i] > before[i], `vCPU ${i} ran in round ${round}: ${before[i]} -> ${now[i]}`);
      before = now;
      // stopped: the counters stay
      assert.deepEqual(await counters(), now);
    }
  });

  it('a singleThread continue runs only that vCPU', async () => {
    await d.launchStopped({ program: write.spin() });
    const m = d.mark();
    const cont = await d.dc.continueRequest({ threadId: 2, singleThread: true });
    assert.equal(cont.body.allThreadsContinued, false);
    await d.dc.pauseRequest({ threadId: 2 });
    const s = await d.stopped(m);
    assert.equal(s.body.reason, 'pause');
    assert.equal(s.body.threadId, 2);
    const [c0, c1, c2] = await counters();
    assert.equal(c0, 0n);
    assert.ok(c1 > 0n);
    assert.equal(c2, 0n);
  });

  it('a singleThread continue that waits on a frozen vCPU stops with pause, naming the wait and its holders', async () => {
    const path = example('apicv-update-all-vcpus.vasm');
    const text = readFileSync(path, 'utf8');
    await d.launch({ program: path }, async (c) => {
      await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(text, 'mov     dword [rbx], 5 << 24') }] });
    });
    assert.equal((await d.stopped(0)).body.threadId, 1);
    await d.dc.setBreakpointsRequest({ source: { path }, breakpoints: [] });
    const others = [await d.register(2, 'rip'), await d.register(3, 'rip'), await d.register(4, 'rip')];
    const s = await d.stopAfter(() => d.dc.continueRequest({ threadId: 1, singleThread: true }));
    assert.equal(s.body.reason, 'pause');
    assert.equal(s.body.threadId, 1);
    assert.match(s.body.description ?? '', /vcpu 0 waits for IPI acknowledgement \(KVM_REQ_APICV_UPDATE\), held by vcpu 1, vcpu 2, vcpu 3 \(frozen\)/);
    assert.equal((await hostFrames(d, 1))[0], 'kvm_make_all_cpus_request');
    assert.deepEqual([await d.register(2, 'rip'), await d.register(3, 'rip'), await d.register(4, 'rip')], others);
    // all threads go on: the run ends clean
    assert.equal(await d.runToExit(), 0);
  });
});

describe('dap: the VMM thread', () => {
  let d: Dap;
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  it('a VM ioctl appears as thread vcpus + 1 named VMM while it runs; it stops and steps like a vCPU thread', async () => {
    d = await Dap.stdio();
    // avic off: the MSI's delivery makes KVM_REQ_EVENT from the VMM's task
    await d.launch({ program: write.apicOn(), avic: false, hostActions: ['step=1000:msi=0/0x40'] }, async (c) => {
      await c.setFilters([{ filterId: 'vcpu-request', condition: 'from == null' }]);
    });
    const s = await d.stopped(0);
    assert.equal(s.body.threadId, 2);
    assert.match(s.body.description ?? '', /avic_request_make: vcpu 0 KVM_REQ_EVENT/);
    const started = (d.after('thread', 0) as DebugProtocol.ThreadEvent[]).map((e) => [e.body.reason, e.body.threadId]);
    assert.deepEqual(started, [['started', 1], ['started', 2]]);
    assert.deepEqual((await d.dc.threadsRequest()).body.threads, [{ id: 1, name: 'vCPU 0 [xAPIC, SRCU 0]' }, { id: 2, name: 'VMM' }]);
    const frames = await d.frames(2);
    assert.equal(frames[frames.length - 1].name, 'kvm_vm_ioctl');
    assert.ok(frames.some((f) => f.name === 'kvm_send_userspace_msi'));
    assert.ok(frames.every((f) => !f.source?.path), 'host frames only');
    assert.deepEqual([...(await d.scopes(2)).keys()], ['VM (KVM)']);
    assert.equal((await d.dc.exceptionInfoRequest({ threadId: 2 })).body.exceptionId, 'request-make');
    // stepping out of the ioctl: the VMM has no work left, its thread exits; the stop moves to vCPU 0
    let stop = s;
    for (let i = 0; i < 10 && stop.body.threadId === 2; i++) stop = await d.stopAfter(() => d.dc.stepOutRequest({ threadId: 2 }));
    assert.equal(stop.body.threadId, 1);
    assert.match(stop.body.description ?? '', /the VMM task has finished its work/);
    assert.deepEqual((d.after('thread', 0) as DebugProtocol.ThreadEvent[]).pop()!.body, { reason: 'exited', threadId: 2 });
    assert.deepEqual((await d.dc.threadsRequest()).body.threads.map((t) => t.id), [1]);
    assert.match(await d.fails(d.dc.stackTraceRequest({ threadId: 2 })), /there is no thread 2/);
    assert.equal((await d.scope(1, 'Local APIC')).get('IRR')!.value, '0x40');
  });

  it('a console command that waits on a frozen vCPU shows as the VMM thread until it has run', async () => {
    d = await Dap.stdio();
    await d.launchStopped({ program: example('apicv-update-all-vcpus.vasm') });
    await d.stopAfter(() => d.dc.nextRequest({ threadId: 1, singleThread: true, granularity: 'instruction' }));
    const m = d.mark();
    const r = await d.evaluate('inhibit set BLOCKIRQ', 'repl');
    assert.match(r.result, /queued; .*vmm waits for IPI acknowledgement \(KVM_REQ_APICV_UPDATE\), held by vcpu 0 \(frozen\)/);
    assert.deepEqual((d.after('thread', m) as DebugProtocol.ThreadEvent[]).map((e) => e.body), [{ reason: 'started', threadId: 5 }]);
    const vmm = (await d.frames(5)).map((f) => f.name);
    assert.deepEqual(vmm.slice(0, 3), ['kvm_make_all_cpus_request', '__kvm_set_or_clear_apicv_inhibit', 'kvm_set_or_clear_apicv_inhibit']);
    // on resume the command runs; at the next stop the VMM thread is gone and BLOCKIRQ is set
    const path = example('apicv-update-all-vcpus.vasm');
    await d.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(readFileSync(path, 'utf8'), '.done:  out') }] });
    await d.continueTo();
    assert.deepEqual((d.after('thread', m) as DebugProtocol.ThreadEvent[]).map((e) => e.body), [{ reason: 'started', threadId: 5 }, { reason: 'exited', threadId: 5 }]);
    assert.equal((await d.dc.threadsRequest()).body.threads.length, 4);
    assert.ok((await d.state()).vm.apicvInhibits.includes('BLOCKIRQ'));
  });
});

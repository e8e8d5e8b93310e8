// Breakpoints over DAP: source lines with conditions on registers, hit conditions and
// logpoints (the `log` mode); instruction breakpoints; function breakpoints on kernel
// functions (unverified, with the reason, when the design lacks the function); data
// breakpoints on an inhibit bit, on a vCPU's srcu_depth and on guest memory.

import type { DebugProtocol } from '@vscode/debugprotocol';
import assert from 'node:assert/strict';
import { Dap, example, lineOf, removePrograms } from './dap-client';
import { CALLS, write } from './programs';

const line = (marker: string) => lineOf(CALLS, marker);

describe('dap: source and instruction breakpoints', () => {
  let d: Dap;
  let path: string;
  beforeEach(async () => {
    d = await Dap.stdio();
    path = write.calls();
    await d.launchStopped({ program: path });
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  const setLines = (breakpoints: DebugProtocol.SourceBreakpoint[]) => d.dc.setBreakpointsRequest({ source: { path }, breakpoints });

  it('a condition on a register stops only where it holds', async () => {
    const r = await setLines([{ line: line('COUNT-STORE'), condition: 'rax == 3' }]);
    assert.deepEqual(r.body.breakpoints.map((b) => [b.verified, b.line]), [[true, line('COUNT-STORE')]]);
    const s = await d.continueTo();
    assert.equal(s.body.reason, 'breakpoint');
    assert.deepEqual(s.body.hitBreakpointIds, [r.body.breakpoints[0].id]);
    assert.equal((await d.frames(1))[0].line, line('COUNT-STORE'));
    assert.equal((await d.evaluate('rax')).result, '0x0000000000000003 (3)');
    // the count has stored 2 so far: the stop is before the store of 3
    assert.equal((await d.evaluate('dword [counter]')).result, '0x0000000000000002 (2)');
    assert.equal(await d.runToExit(), 0, 'the condition holds once');
  });

  it('conditions combine registers and memory: eax > 1 && dword [counter] == 3', async () => {
    await setLines([{ line: line('COUNT-STORE'), condition: 'eax > 1 && dword [counter] == 3' }]);
    await d.continueTo();
    assert.equal(await d.register(1, 'rax'), 4n);
  });

  it('hit conditions: N (at least N), == N, % N', async () => {
    await setLines([{ line: line('COUNT-STORE'), hitCondition: '4' }]);
    await d.continueTo();
    assert.equal(await d.register(1, 'rax'), 4n);
    await d.continueTo();
    assert.equal(await d.register(1, 'rax'), 5n, 'from the 4th hit on, every hit stops');

    await d.stop();
    d = await Dap.stdio();
    await d.launchStopped({ program: path });
    await setLines([{ line: line('COUNT-STORE'), hitCondition: '% 2' }]);
    await d.continueTo();
    assert.equal(await d.register(1, 'rax'), 2n);
    await d.continueTo();
    assert.equal(await d.register(1, 'rax'), 4n);
    assert.equal(await d.runToExit(), 0);
  });

  it('a logpoint writes its message with {expressions} and does not stop', async () => {
    await setLines([{ line: line('COUNT-STORE'), logMessage: 'count {eax}, stored {dword [counter]}' }]);
    const m = d.mark();
    assert.equal(await d.runToExit(), 0);
    assert.equal(d.after('stopped', m).length, 0);
    const lines = d.output(m, 'console').split('\n').filter((l) => l.startsWith('count'));
    assert.deepEqual(lines, [1, 2, 3, 4, 5].map((i) => `count 0x${i.toString(16).padStart(16, '0')}, stored 0x${(i - 1).toString(16).padStart(16, '0')}`));
  });

  it('the log mode on a source breakpoint logs the vCPU and address and goes on', async () => {
    await setLines([{ line: line('AFTER-OUTER'), mode: 'log' } as DebugProtocol.SourceBreakpoint]);
    const m = d.mark();
    assert.equal(await d.runToExit(), 0);
    assert.equal(d.after('stopped', m).length, 0);
    assert.match(d.output(m, 'console'), /^vCPU 0 at 0x[0-9a-f]+$/m);
  });

  it('a line with no code moves to the next line with code; other files and bad conditions are unverified', async () => {
    const r = await setLines([
      { line: line('NO-CODE') },
      { line: line('COUNT-STORE'), condition: 'rax == (' },
      { line: line('COUNT-STORE'), hitCondition: 'often' },
    ]);
    const [moved, badCondition, badHits] = r.body.breakpoints;
    assert.equal(moved.verified, true);
    assert.equal(moved.line, line('OUTER-FIRST'));
    assert.equal(badCondition.verified, false);
    assert.match(badCondition.message ?? '', /column 9/);
    assert.equal(badHits.verified, false);
    assert.match(badHits.message ?? '', /hit condition 'often'/);
    const other = await d.dc.setBreakpointsRequest({ source: { path: example('hello.vasm') }, breakpoints: [{ line: 16 }] });
    assert.equal(other.body.breakpoints[0].verified, false);
    assert.match(other.body.breakpoints[0].message ?? '', /not part of the program/);
    // the verified one works
    const s = await d.continueTo();
    assert.equal(s.body.reason, 'breakpoint');
    assert.equal((await d.frames(s.body.threadId!))[0].line, moved.line);
  });

  it('an instruction breakpoint stops at its address (with an offset too)', async () => {
    const inner = (await d.evaluate('inner')).result.split(' ')[0];
    const outer = BigInt((await d.evaluate('outer')).result.split(' ')[0]);
    const r = await d.setInstructionBreakpoints([{ instructionReference: inner }, { instructionReference: 'nowhere' }]);
    assert.deepEqual(r.body.breakpoints.map((b) => b.verified), [true, false]);
    assert.equal(r.body.breakpoints[0].line, line('INNER-FIRST'));
    assert.match(r.body.breakpoints[1].message ?? '', /not an address/);
    let s = await d.continueTo();
    assert.equal(s.body.reason, 'instruction breakpoint');
    assert.deepEqual(s.body.hitBreakpointIds, [r.body.breakpoints[0].id]);
    assert.equal(await d.register(1, 'rip'), BigInt(inner));
    // restart-free: a new set replaces the old; offset 3 from outer is `call inner`
    await d.stop();
    d = await Dap.stdio();
    await d.launchStopped({ program: path });
    await d.setInstructionBreakpoints([{ instructionReference: `0x${outer.toString(16)}`, offset: 3 }]);
    s = await d.continueTo();
    assert.equal(await d.register(1, 'rip'), outer + 3n);
    assert.equal((await d.frames(1))[0].line, line('CALL-INNER'));
  });
});

describe('dap: function breakpoints', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
  });
  afterEach(async () => {
    await d.stop();
  });

  it('verified when the design has the function, unverified with the reason when it lacks it', async () => {
    await d.launchStopped({ program: example('x2apic-hybrid-mmio.vasm'), design: 'pre-fix' });
    const r = await d.dc.setFunctionBreakpointsRequest({
      breakpoints: [{ name: 'kvm_inhibit_apic_access_page' }, { name: '__kvm_vcpu_update_apicv' }, { name: 'kvm_lapic_set_base' }, { name: 'no_such_function' }],
    });
    const [inhibit, core, setBase, unknown] = r.body.breakpoints;
    assert.equal(inhibit.verified, false);
    assert.match(inhibit.message ?? '', /pre-fix design never calls kvm_inhibit_apic_access_page/);
    assert.equal(core.verified, false);
    assert.match(core.message ?? '', /pre-fix design has no __kvm_vcpu_update_apicv/);
    assert.equal(setBase.verified, true);
    assert.equal(unknown.verified, false);
    assert.match(unknown.message ?? '', /not a kernel function of the model/);
    const s = await d.continueTo();
    assert.equal(s.body.reason, 'function breakpoint');
    assert.deepEqual(s.body.hitBreakpointIds, [setBase.id]);
    assert.equal((await d.frames(1))[0].name, 'kvm_lapic_set_base');
  });

  it('under upstream both exist and stop in order: kvm_vcpu_update_apicv, then __kvm_vcpu_update_apicv', async () => {
    await d.launch({ program: example('x2apic-hybrid-mmio.vasm') }, async (c) => {
      const r = await c.dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'kvm_inhibit_apic_access_page' }, { name: '__kvm_vcpu_update_apicv' }] });
      assert.deepEqual(r.body.breakpoints.map((b) => b.verified), [true, true]);
    });
    const first = await d.stopped(0);
    assert.equal((await d.frames(first.body.threadId!))[0].name, 'kvm_inhibit_apic_access_page');
    const second = await d.continueTo();
    const frames = (await d.frames(second.body.threadId!)).map((f) => f.name);
    assert.deepEqual(frames.slice(0, 2), ['__kvm_vcpu_update_apicv', 'kvm_vcpu_update_apicv']);
  });
});

describe('dap: data breakpoints', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  it('an inhibit bit: stops when APIC_ID_MODIFIED is set, then when it is cleared', async () => {
    await d.launchStopped({ program: example('apicv-update-all-vcpus.vasm') });
    const info = (await d.dc.dataBreakpointInfoRequest({ name: 'APIC_ID_MODIFIED' })).body;
    assert.ok(info.dataId);
    assert.match(info.description, /APIC_ID_MODIFIED \(bit 5\)/);
    const set = await d.dc.setDataBreakpointsRequest({ breakpoints: [{ dataId: info.dataId }] });
    assert.equal(set.body.breakpoints[0].verified, true);
    let s = await d.continueTo();
    assert.equal(s.body.reason, 'data breakpoint');
    assert.deepEqual(s.body.hitBreakpointIds, [set.body.breakpoints[0].id]);
    assert.match(s.body.description ?? '', /APIC_ID_MODIFIED set/);
    assert.deepEqual((await d.state()).vm.apicvInhibits, ['APIC_ID_MODIFIED']);
    s = await d.continueTo();
    assert.match(s.body.description ?? '', /APIC_ID_MODIFIED cleared/);
    assert.deepEqual((await d.state()).vm.apicvInhibits, []);
    assert.equal(await d.runToExit(), 0);
  });

  it("a vCPU's srcu_depth (from a frame, or from its vCPU (KVM) variable)", async () => {
    await d.launchStopped({ program: example('apicv-update-all-vcpus.vasm') });
    const byFrame = (await d.dc.dataBreakpointInfoRequest({ name: 'srcu_depth', frameId: await d.topFrameId(2) })).body;
    assert.match(byFrame.description, /vCPU 1's srcu_depth/);
    const kvm = (await d.scopes(3)).get('vCPU (KVM)')!;
    const byVariable = (await d.dc.dataBreakpointInfoRequest({ name: 'srcu_depth', variablesReference: kvm.variablesReference })).body;
    assert.match(byVariable.description, /vCPU 2's srcu_depth/);
    await d.dc.setDataBreakpointsRequest({ breakpoints: [{ dataId: byFrame.dataId! }] });
    let s = await d.continueTo();
    assert.equal(s.body.reason, 'data breakpoint');
    assert.equal(s.body.threadId, 2);
    assert.match(s.body.description ?? '', /vCPU 1's srcu_depth is now 1 \(kvm_vcpu_srcu_read_lock\)/);
    s = await d.continueTo();
    assert.equal(s.body.threadId, 2);
    assert.match(s.body.description ?? '', /vCPU 1's srcu_depth is now 0 \(kvm_vcpu_srcu_read_unlock\)/);
  });

  it('guest memory by label and by address: stops after the guest store, on the vCPU that wrote', async () => {
    const path = write.calls();
    await d.launchStopped({ program: path });
    const byLabel = (await d.dc.dataBreakpointInfoRequest({ name: 'result', bytes: 8 } as DebugProtocol.DataBreakpointInfoArguments)).body;
    assert.ok(byLabel.dataId, byLabel.description);
    assert.match(byLabel.description, /result \(0x[0-9a-f]+\), 8 bytes/);
    const address = (await d.evaluate('counter')).result.split(' ')[0];
    const byAddress = (await d.dc.dataBreakpointInfoRequest({ name: address, asAddress: true, bytes: 4 } as DebugProtocol.DataBreakpointInfoArguments)).body;
    assert.match(byAddress.description, /4 bytes/);
    const r = await d.dc.setDataBreakpointsRequest({ breakpoints: [{ dataId: byAddress.dataId! }, { dataId: byLabel.dataId }] });
    assert.deepEqual(r.body.breakpoints.map((b) => b.verified), [true, true]);
    let s = await d.continueTo();
    assert.equal(s.body.reason, 'data breakpoint');
    assert.equal(s.body.threadId, 1);
    assert.deepEqual(s.body.hitBreakpointIds, [r.body.breakpoints[0].id]);
    assert.equal((await d.evaluate('dword [counter]')).result, '0x0000000000000001 (1)');
    // the stop is after the storing instruction
    assert.equal((await d.frames(1))[0].line, lineOf(CALLS, 'cmp     eax, 5'));
    // only `result` now: the next stop is its store, after the calls
    await d.dc.setDataBreakpointsRequest({ breakpoints: [{ dataId: byLabel.dataId }] });
    s = await d.continueTo();
    assert.equal((await d.evaluate('qword [result]')).result, '0x000000000000000f (15)');
    assert.equal((await d.frames(1))[0].line, lineOf(CALLS, "mov     al, 'o'"));
  });

  it('names that cannot be watched get no dataId', async () => {
    await d.launchStopped({ program: example('hello.vasm') });
    const r = (await d.dc.dataBreakpointInfoRequest({ name: 'rax' })).body;
    assert.equal(r.dataId, null);
    assert.match(r.description, /cannot be watched/);
  });
});

// Looking at and changing the machine over DAP: scopes and variables (Registers, Local APIC,
// AVIC, vCPU (KVM), VM (KVM)), setVariable, evaluate (registers, memory, labels), readMemory and
// writeMemory, disassemble with source locations, the console commands and their completions,
// `avic/state` with `avic/stateChanged`; and reads with no side effect (contracts/dap.md, "Side
// effects"): the S1 load the debugger makes at 0xFEE00030 trips nothing.

import type { DebugProtocol } from '@vscode/debugprotocol';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type AvicState, Dap, example, fromBase64, lineOf, removePrograms } from './dap-client';
import { APIC_ON, CALLS, write } from './programs';

const HEX64 = /^0x[0-9a-f]{16}$/;
const HEX32 = /^0x[0-9a-f]{8}$/;

/** the value of an evaluate result (`0x... (decimal)`) */
function valueOf(result: string): bigint {
  const m = /^(0x[0-9a-f]{16}) \((\d+)\)$/.exec(result);
  assert.ok(m, `not a value: ${result}`);
  assert.equal(BigInt(m[1]), BigInt(m[2]));
  return BigInt(m[1]);
}

describe('dap: scopes and variables', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  it('a vCPU frame has Registers, Local APIC, AVIC, vCPU (KVM), VM (KVM), with hex values', async () => {
    await d.launchStopped({ program: example('hello.vasm') });
    const scopes = await d.scopes(3);
    assert.deepEqual([...scopes.keys()], ['Registers', 'Local APIC', 'AVIC', 'vCPU (KVM)', 'VM (KVM)']);
    assert.equal(scopes.get('Registers')!.presentationHint, 'registers');

    const regs = await d.variables(scopes.get('Registers')!.variablesReference);
    for (const r of ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r15', 'rip', 'rflags']) assert.match(regs.get(r)?.value ?? '', HEX64, r);
    assert.equal(regs.get('rdi')!.value, '0x0000000000000002', 'vCPU 2 starts with its index in RDI');
    assert.equal(regs.get('rip')!.value, '0x0000000000100000');
    const flags = await d.variables(regs.get('rflags')!.variablesReference);
    assert.equal(flags.get('IF')!.value, '0');
    assert.equal(flags.get('ZF')!.value, '0');

    const lapic = await d.variables(scopes.get('Local APIC')!.variablesReference);
    assert.equal(lapic.get('mode')!.value, 'xapic');
    assert.equal(lapic.get('ID')!.value, '0x02000000');
    assert.equal(lapic.get('LVR')!.value, '0x00050014');
    assert.match(lapic.get('TPR')!.value, HEX32);
    for (const vectors of ['ISR', 'IRR']) {
      const v = lapic.get(vectors)!;
      assert.equal(v.value, '-');
      const words = await d.variables(v.variablesReference);
      assert.deepEqual([...words.keys()], [0, 1, 2, 3, 4, 5, 6, 7].map((w) => `${vectors}${w}`));
      for (const w of words.values()) assert.equal(w.value, '0x00000000');
    }

    const avic = await d.variables(scopes.get('AVIC')!.variablesReference);
    assert.equal(avic.get('AVIC (module parameter)')!.value, 'true');
    assert.equal(avic.get('x2AVIC (host)')!.value, 'false');
    assert.ok(avic.get('physical ID table entry')!.variablesReference > 0);

    const vcpu = await d.variables(scopes.get('vCPU (KVM)')!.variablesReference);
    assert.equal(vcpu.get('mode')!.value, 'OUTSIDE_GUEST_MODE');
    assert.equal(vcpu.get('srcu_depth')!.value, '0');
    assert.equal(vcpu.get('apic->apicv_active')!.value, 'true');

    const vm = await d.variables(scopes.get('VM (KVM)')!.variablesReference);
    assert.equal(vm.get('kernel')!.value, 'v6.3');
    assert.equal(vm.get('design')!.value, 'upstream');
    assert.equal(vm.get('apicv_inhibit_reasons')!.value, '0x00000000');
    const table = await d.variables(vm.get('apicv_inhibit_reasons')!.variablesReference);
    assert.equal(table.size, 12);
    assert.equal(table.get('5 APIC_ID_MODIFIED')!.value, 'clear');
    const slots = await d.variables(vm.get('memslots')!.variablesReference);
    assert.deepEqual([...slots.keys()], ['slot 0', 'slot 32765']);
  });

  it('ISR/IRR follow the machine: an IRQ injected into a software-enabled LAPIC shows in IRR', async () => {
    const path = write.apicOn();
    await d.launch({ program: path }, async (c) => {
      await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(APIC_ON, 'READY') }] });
    });
    await d.stopped(0);
    assert.match((await d.evaluate('irq 0 0x40', 'repl')).result, /irq 0 0x40: done/);
    const lapic = await d.scope(1, 'Local APIC');
    assert.equal(lapic.get('SPIV')!.value, '0x000001ff');
    assert.equal(lapic.get('IRR')!.value, '0x40');
    const irr = await d.variables(lapic.get('IRR')!.variablesReference);
    assert.equal(irr.get('IRR2')!.value, '0x00000001', 'vector 0x40 is bit 0 of IRR word 2');
    assert.equal(lapic.get('ISR')!.value, '-', 'IF = 0: not taken');
    assert.equal(lapic.get('deliverable')!.value, '0x40');
  });

  it('the inhibit table follows the machine: the guest set APIC_ID_MODIFIED, with the event and the task that set it', async () => {
    await d.launchStopped({ program: example('apicv-update-all-vcpus.vasm') });
    await d.dc.setDataBreakpointsRequest({ breakpoints: [{ dataId: (await d.dc.dataBreakpointInfoRequest({ name: 'APIC_ID_MODIFIED' })).body.dataId! }] });
    await d.continueTo();
    const vm = await d.scope(1, 'VM (KVM)');
    assert.equal(vm.get('apicv_inhibit_reasons')!.value, '0x00000020 APIC_ID_MODIFIED');
    assert.equal(vm.get('kvm_apicv_activated')!.value, 'false');
    const table = await d.variables(vm.get('apicv_inhibit_reasons')!.variablesReference);
    assert.match(table.get('5 APIC_ID_MODIFIED')!.value, /^set \(event \d+, vCPU 0: __kvm_set_or_clear_apicv_inhibit\)$/);
    assert.equal(table.get('3 BLOCKIRQ')!.value, 'clear');
  });

  it('setVariable on a register: the new value shows in the response, in evaluate, and a stateChanged follows', async () => {
    await d.launchStopped({ program: write.calls() });
    const regs = (await d.scopes(1)).get('Registers')!;
    const m = d.mark();
    const r = await d.dc.setVariableRequest({ variablesReference: regs.variablesReference, name: 'rax', value: '0x1234' });
    assert.equal(r.body.value, '0x0000000000001234');
    assert.equal((await d.evaluate('rax')).result, '0x0000000000001234 (4660)');
    assert.equal((await d.evaluate('ax')).result, '0x0000000000001234 (4660)');
    const changed = await d.waitFor('avic/stateChanged', m);
    assert.equal((await d.state()).seq, (changed.body as { seq: number }).seq);
    // decimal and negative numbers; other vCPUs keep theirs
    await d.dc.setVariableRequest({ variablesReference: regs.variablesReference, name: 'rbx', value: '-1' });
    assert.equal(await d.register(1, 'rbx'), 0xffffffffffffffffn);
    assert.equal(await d.register(2, 'rbx'), 0n);
    assert.match(await d.fails(d.dc.setVariableRequest({ variablesReference: regs.variablesReference, name: 'rax', value: 'lots' })), /'lots' is not a number/);
    const lapic = (await d.scopes(1)).get('Local APIC')!;
    assert.match(await d.fails(d.dc.setVariableRequest({ variablesReference: lapic.variablesReference, name: 'LVR', value: '1' })), /cannot be set/);
  });

  it('an APIC register set by the debugger goes through KVM_SET_LAPIC in the vCPU\'s thread', async () => {
    await d.launchStopped({ program: example('apicv-update-all-vcpus.vasm') });
    const lapic = (await d.scopes(2)).get('Local APIC')!;
    const m = d.mark();
    await d.dc.setVariableRequest({ variablesReference: lapic.variablesReference, name: 'TPR', value: '0x20' });
    assert.equal((await d.scope(2, 'Local APIC')).get('TPR')!.value, '0x00000020');
    // one change, told once
    await d.waitFor('avic/stateChanged', m);
    assert.equal(d.after('invalidated', m).length, 1);
    assert.equal(d.after('avic/stateChanged', m).length, 1);
    assert.equal((await d.scope(1, 'Local APIC')).get('TPR')!.value, '0x00000000', 'vCPU 0 keeps its own');
    // a new xAPIC ID: the map recalculation sets APIC_ID_MODIFIED, in kvm_apic_set_state
    await d.dc.setVariableRequest({ variablesReference: (await d.scopes(2)).get('Local APIC')!.variablesReference, name: 'ID', value: '0x07000000' });
    const st = (await d.state()) as { vm: { apicvInhibits: string[]; inhibitTable: { reason: string; lastChange: { hostStack: string[] } | null }[] } };
    assert.deepEqual(st.vm.apicvInhibits, ['APIC_ID_MODIFIED']);
    const row = st.vm.inhibitTable.find((r) => r.reason === 'APIC_ID_MODIFIED')!;
    assert.ok(row.lastChange!.hostStack.includes('kvm_apic_set_state') && row.lastChange!.hostStack.includes('kvm_vcpu_ioctl_set_lapic'), row.lastChange!.hostStack.join(' '));
  });

  it('a register set by the debugger changes what the guest computes', async () => {
    const path = write.calls();
    await d.launch({ program: path }, async (c) => {
      await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(CALLS, 'CALL-OUTER') }] });
    });
    await d.stopped(0);
    const regs = (await d.scopes(1)).get('Registers')!;
    await d.dc.setVariableRequest({ variablesReference: regs.variablesReference, name: 'rax', value: '7' });
    await d.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(CALLS, 'AFTER-OUTER') }] });
    await d.continueTo();
    assert.equal(await d.register(1, 'rax'), 21n, '7 * 2 + 7');
  });
});

describe('dap: evaluate, memory, disassembly', () => {
  let d: Dap;
  let path: string;
  beforeEach(async () => {
    d = await Dap.stdio();
    path = write.calls();
    await d.launch({ program: path }, async (c) => {
      await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(CALLS, 'INNER-FIRST') }] });
    });
    await d.stopped(0);
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  it('evaluate: registers, labels, arithmetic, [rsp+8], dword [label], per frame', async () => {
    assert.equal(valueOf((await d.evaluate('rax')).result), 5n);
    assert.equal(valueOf((await d.evaluate('eax + 1')).result), 6n);
    assert.equal(valueOf((await d.evaluate('rax == 5 && rbx == 5')).result), 1n);
    const counter = await d.evaluate('dword [counter]');
    assert.equal(valueOf(counter.result), 5n);
    assert.equal(counter.memoryReference, `0x${valueOf((await d.evaluate('counter')).result).toString(16)}`);
    // [rsp] is inner's return address (into outer), [rsp+8] outer's (into _start)
    const afterInner = BigInt((await d.dc.disassembleRequest({ memoryReference: (await d.evaluate('outer')).result.split(' ')[0], instructionCount: 3 })).body!.instructions[2].address);
    assert.equal(valueOf((await d.evaluate('[rsp]')).result), afterInner);
    const ret = valueOf((await d.evaluate('[rsp+8]')).result);
    const frames = await d.frames(1);
    assert.equal(frames[2].name, '_start');
    assert.ok(ret > BigInt(frames[2].instructionPointerReference!), 'the return address is after the call');
    // another thread's frame evaluates on that vCPU
    assert.equal(valueOf((await d.evaluate('rdi', 'watch', await d.topFrameId(2))).result), 1n);
    assert.equal(valueOf((await d.evaluate('rdi', 'hover', frames[0].id)).result), 0n);
  });

  it('readMemory and writeMemory (base64) on guest RAM; the guest and evaluate see the write', async () => {
    const counter = (await d.evaluate('counter')).result.split(' ')[0];
    const r = await d.readMemory(counter, 12);
    assert.equal(BigInt(r.body?.address ?? -1), BigInt(counter));
    assert.equal(r.body?.unreadableBytes ?? 0, 0);
    assert.deepEqual([...fromBase64(r.body?.data)], [5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 'counter = 5, result = 0');
    const m = d.mark();
    const w = await d.writeMemory(counter, Buffer.from([0x2a, 0, 0, 0]).toString('base64'), 0);
    assert.equal(w.body?.bytesWritten, 4);
    const memory = await d.waitFor('memory', m);
    assert.deepEqual(memory.body, { memoryReference: counter, offset: 0, count: 4 }, 'the reference as the client gave it');
    await d.waitFor('avic/stateChanged', m);
    assert.equal(valueOf((await d.evaluate('dword [counter]')).result), 42n);
    // with an offset: the high byte of `result`
    await d.writeMemory(counter, Buffer.from([0x80]).toString('base64'), 11);
    assert.equal(valueOf((await d.evaluate('qword [result]')).result), 0x8000000000000000n);
    // not RAM: an error, and reads report the unreadable bytes
    assert.match(await d.fails(d.writeMemory('0xfee00000', 'AAAA')), /not writable RAM/);
    const outside = await d.readMemory('0x7fffffff0', 16);
    assert.equal(outside.body?.unreadableBytes, 16);
  });

  it('memory a client shows: a `memory` event when the guest wrote it by the next stop, none for memory unchanged', async () => {
    const counter = valueOf((await d.evaluate('counter')).result);
    const code = (await d.evaluate('outer')).result.split(' ')[0];
    await d.readMemory(`0x${counter.toString(16)}`, 12); // counter and result
    await d.readMemory(code, 16); // code: nothing writes it
    await d.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(CALLS, 'AFTER-OUTER') + 1 }] });
    const m = d.mark();
    await d.continueTo(); // past `mov [result], rax`
    await d.waitFor('avic/stateChanged', m); // sent after the stop's memory events
    const events = d.after('memory', m);
    assert.deepEqual(events.map((e) => e.body), [{ memoryReference: `0x${counter.toString(16)}`, offset: 0, count: 12 }]);
    assert.ok(d.events.indexOf(events[0]) > d.events.indexOf(d.after('stopped', m)[0]), 'after the stop it describes');
    // read again: shown as it is now, so the next stop without a write sends nothing
    const m2 = d.mark();
    await d.dc.stepInRequest({ threadId: 1, granularity: 'instruction' });
    await d.stopped(m2);
    await d.waitFor('avic/stateChanged', m2);
    assert.equal(d.after('memory', m2).length, 0);
  });

  it('a change made while stopped sends `invalidated` (threads, stacks, variables), not a stop', async () => {
    const regs = (await d.scopes(1)).get('Registers')!;
    let m = d.mark();
    await d.dc.setVariableRequest({ variablesReference: regs.variablesReference, name: 'rbx', value: '0x1234' });
    const inv = await d.waitFor('invalidated', m);
    assert.deepEqual(inv.body.areas, ['threads', 'stacks', 'variables']);
    await d.waitFor('avic/stateChanged', m);
    // the references the client holds still work, and show the new value
    assert.equal(BigInt((await d.variables(regs.variablesReference)).get('rbx')!.value), 0x1234n);
    m = d.mark();
    await d.evaluate('irq 1 0x40', 'repl');
    await d.waitFor('invalidated', m);
    assert.equal(d.after('stopped', m).length, 0, 'no fake stop');
  });

  it('a client that does not handle `memory` and `invalidated` events gets none', async () => {
    const e = await Dap.stdio();
    try {
      const m = e.mark();
      await e.launch({ program: path, stopOnEntry: true }, undefined, { adapterID: 'avic', pathFormat: 'path' });
      await e.stopped(m);
      const counter = (await e.evaluate('counter')).result.split(' ')[0];
      await e.readMemory(counter, 4);
      await e.writeMemory(counter, Buffer.from([1, 2, 3, 4]).toString('base64'));
      const regs = (await e.scopes(1)).get('Registers')!;
      await e.dc.setVariableRequest({ variablesReference: regs.variablesReference, name: 'rbx', value: '1' });
      await e.evaluate('irq 0 0x40', 'repl');
      await e.state();
      assert.equal(e.after('memory', m).length, 0);
      assert.equal(e.after('invalidated', m).length, 0);
      assert.ok(e.after('avic/stateChanged', m).length >= 3);
    } finally {
      await e.stop();
    }
  });

  it('writeMemory into code changes what runs (the block cache forgets the old code)', async () => {
    // inner's `add rax, rax` (3 bytes) becomes three NOPs: outer returns 5 + 5
    const inner = (await d.evaluate('inner')).result.split(' ')[0];
    const before = (await d.dc.disassembleRequest({ memoryReference: inner, instructionCount: 1 })).body!.instructions[0];
    assert.equal(before.instruction, 'add rax, rax');
    await d.writeMemory(inner, Buffer.from([0x90, 0x90, 0x90]).toString('base64'));
    const now = (await d.dc.disassembleRequest({ memoryReference: inner, instructionCount: 3 })).body!.instructions;
    assert.deepEqual(now.map((i) => i.instruction), ['nop', 'nop', 'nop']);
    await d.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(CALLS, 'AFTER-OUTER') }] });
    await d.continueTo();
    assert.equal(await d.register(1, 'rax'), 10n);
  });

  it('loadedSources lists the program and the files it includes', async () => {
    const sources = ((await d.dc.customRequest('loadedSources', {})) as DebugProtocol.LoadedSourcesResponse).body.sources;
    assert.deepEqual(sources.map((s) => s.name), ['calls.vasm', 'avic.inc']);
    assert.equal(sources[0].path, path);
    assert.match(sources[1].path ?? '', /include[\\/]avic\.inc$/);
  });

  it('disassemble: instructions with bytes, symbols and .vasm source locations', async () => {
    const start = (await d.evaluate('outer')).result.split(' ')[0];
    const r = await d.dc.disassembleRequest({ memoryReference: start, instructionCount: 4, resolveSymbols: true });
    const list = r.body!.instructions;
    assert.equal(list.length, 4);
    assert.deepEqual(list.map((i) => i.instruction.split(' ')[0]), ['mov', 'call', 'add', 'ret']);
    assert.deepEqual(list.map((i) => i.line), ['OUTER-FIRST', 'CALL-INNER', 'AFTER-INNER', 'AFTER-INNER'].map((m, k) => lineOf(CALLS, m) + (k === 3 ? 1 : 0)));
    for (const i of list) {
      assert.match(i.address, HEX64);
      assert.equal(i.location?.path, path);
      assert.match(i.instructionBytes ?? '', /^[0-9a-f]{2}( [0-9a-f]{2})*$/);
    }
    assert.equal(list[0].symbol, 'outer');
    assert.equal(list[0].instructionBytes, '48 89 c3');
    // a negative instruction offset reads backwards from the reference
    const back = (await d.dc.disassembleRequest({ memoryReference: start, instructionOffset: -1, instructionCount: 2 })).body!.instructions;
    assert.equal(back[1].address, list[0].address);
  });
});

describe('dap: console commands, completions, avic/state', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
    await d.launchStopped({ program: example('apicv-update-all-vcpus.vasm') });
  });
  afterEach(async () => {
    await d.stop();
  });

  /** runs a console command; its text and the stateChanged event after it */
  async function command(text: string, frameId?: number): Promise<{ result: string; state: AvicState }> {
    const m = d.mark();
    const result = (await d.evaluate(text, 'repl', frameId)).result;
    // the command's stateChanged comes before its answer
    const changed = d.after('avic/stateChanged', m).pop();
    assert.ok(changed, 'a stateChanged after the command');
    const state = await d.state();
    assert.equal(state.seq, (changed.body as { seq: number }).seq, 'avic/state is as of the last stateChanged');
    return { result, state };
  }

  it('help lists the commands', async () => {
    const help = (await d.evaluate('help', 'repl')).result;
    for (const c of ['hostaction', 'inhibit set|clear', 'request VCPU', 'irq VCPU VECTOR', 'help']) assert.ok(help.includes(c), c);
  });

  it('hostaction set-lapic-id=5:1 runs KVM_SET_LAPIC on vCPU 1: APIC_ID_MODIFIED, requests to every vCPU', async () => {
    const { result, state } = await command('hostaction set-lapic-id=5:1');
    assert.equal(result, 'set-lapic-id=5:1: done on vCPU 1');
    assert.deepEqual(state.vm.apicvInhibits, ['APIC_ID_MODIFIED']);
    assert.equal(state.vm.apicvActivated, false);
    for (const v of state.vcpus) assert.ok(v.requests.includes('KVM_REQ_APICV_UPDATE'), `vCPU ${v.id}: ${v.requests}`);
    const row = state.vm.inhibitTable.find((r) => r.reason === 'APIC_ID_MODIFIED')!;
    assert.equal(row.set, true);
    assert.equal(row.lastChange?.vcpu, 1);
    assert.ok(row.lastChange?.hostStack.includes('kvm_vcpu_ioctl_set_lapic'), row.lastChange?.hostStack.join(' < '));
    assert.equal((await d.scope(2, 'Local APIC')).get('ID')!.value, '0x05000000');
    // the default vCPU is the frame's thread
    const again = await command('hostaction set-lapic-id=6', await d.topFrameId(3));
    assert.equal(again.result, 'set-lapic-id=6: done on vCPU 2');
  });

  it('inhibit set/clear BLOCKIRQ runs in a task of no vCPU', async () => {
    let { result, state } = await command('inhibit set BLOCKIRQ');
    assert.equal(result, 'inhibit set BLOCKIRQ: done');
    assert.deepEqual(state.vm.apicvInhibits, ['BLOCKIRQ']);
    const row = state.vm.inhibitTable.find((r) => r.reason === 'BLOCKIRQ')!;
    assert.equal(row.bit, 3);
    assert.equal(row.lastChange?.vcpu, null);
    ({ state } = await command('inhibit clear APICV_INHIBIT_REASON_BLOCKIRQ'));
    assert.deepEqual(state.vm.apicvInhibits, []);
    assert.match(await d.fails(d.evaluate('inhibit set NOPE', 'repl')), /usage: inhibit set\|clear REASON/);
  });

  it('request 1 KVM_REQ_APICV_UPDATE makes the request on vCPU 1 only', async () => {
    const { result, state } = await command('request 1 KVM_REQ_APICV_UPDATE');
    assert.equal(result, 'request 1 KVM_REQ_APICV_UPDATE: done');
    assert.deepEqual(state.vcpus.map((v) => v.requests.includes('KVM_REQ_APICV_UPDATE')), [false, true, false, false]);
    assert.match(await d.fails(d.evaluate('request 9 KVM_REQ_APICV_UPDATE', 'repl')), /usage: request VCPU KVM_REQ_NAME/);
  });

  it("irq 0 0x40 reaches vCPU 0's LAPIC, which drops it while software-disabled (as the kernel does)", async () => {
    const { result } = await command('irq 0 0x40');
    assert.equal(result, 'irq 0 0x40: done');
    assert.equal((await d.scope(1, 'Local APIC')).get('IRR')!.value, '-', 'SPIV bit 8 is clear at reset');
    assert.match(await d.fails(d.evaluate('irq 0 300', 'repl')), /usage: irq VCPU VECTOR/);
  });

  it('a command that waits on a frozen vCPU stays queued, says what it waits for, and runs on resume', async () => {
    // vCPU 0 in guest mode (stepped alone), vCPU 1's KVM_SET_LAPIC then waits for its acknowledgement
    await d.stopAfter(() => d.dc.nextRequest({ threadId: 1, singleThread: true, granularity: 'instruction' }));
    const { result, state } = await command('hostaction set-lapic-id=5:1');
    assert.match(result, /^set-lapic-id=5:1: queued; it runs when execution resumes\. Paused: vcpu 1 waits for IPI acknowledgement \(KVM_REQ_APICV_UPDATE\), held by vcpu 0 \(frozen\)$/);
    assert.equal(state.vcpus[1].state, 'blocked');
    assert.equal((await d.scope(2, 'Local APIC')).get('ID')!.value, '0x05000000', 'the ID is written; the map update waits');
    assert.equal(await d.runToExit(), 0);
  });

  it('completions: commands, then their arguments', async () => {
    const labels = async (text: string) => (await d.dc.completionsRequest({ text, column: text.length + 1 })).body.targets.map((t) => t.label);
    assert.deepEqual(await labels('hos'), ['hostaction']);
    assert.deepEqual(await labels('i'), ['inhibit', 'irq']);
    assert.deepEqual(await labels('inhibit s'), ['set']);
    assert.deepEqual(await labels('inhibit set APIC_'), ['APIC_ID_MODIFIED', 'APIC_BASE_MODIFIED']);
    assert.ok((await labels('hostaction set-')).includes('set-lapic-id='));
    assert.deepEqual(await labels('request 1 KVM_REQ_APICV'), ['KVM_REQ_APICV_UPDATE']);
    const t = (await d.dc.completionsRequest({ text: 'inhibit set APIC_', column: 18 })).body.targets[0];
    assert.equal(t.start, 12);
    assert.equal(t.length, 5);
  });

  it('avic/state has the fields of the contract, and seq matches the last avic/stateChanged', async () => {
    const state = await d.state();
    const last = d.after('avic/stateChanged', 0).pop()!;
    assert.equal(state.seq, (last.body as { seq: number }).seq);
    assert.deepEqual(Object.keys(state).sort(), ['seq', 'vcpus', 'vm']);
    assert.deepEqual(Object.keys(state.vm).sort(), ['apicAccessMemslot', 'apicvActivated', 'apicvInhibits', 'avic', 'design', 'inhibitTable', 'kernel', 'memslots', 'nested', 'x2avic'].sort());
    assert.equal(state.vm.kernel, 'v6.3');
    assert.equal(state.vm.design, 'upstream');
    assert.deepEqual([state.vm.avic, state.vm.x2avic, state.vm.nested, state.vm.apicvActivated], [true, false, false, true]);
    assert.deepEqual(state.vm.apicAccessMemslot, { enabled: true, inhibited: false });
    assert.deepEqual(state.vm.memslots, [
      { id: 0, gpa: '0x0000000000000000', size: 64 * 1024 * 1024, private: false },
      { id: 32765, gpa: '0x00000000fee00000', size: 4096, private: true },
    ]);
    assert.deepEqual(state.vm.inhibitTable.map((r) => [r.bit, r.reason]), [
      'DISABLE', 'HYPERV', 'ABSENT', 'BLOCKIRQ', 'PHYSICAL_ID_ALIASED', 'APIC_ID_MODIFIED', 'APIC_BASE_MODIFIED', 'NESTED', 'IRQWIN', 'PIT_REINJ', 'SEV', 'LOGICAL_ID_ALIASED',
    ].map((r, i) => [i, r]));
    assert.equal(state.vcpus.length, 4);
    for (const v of state.vcpus) {
      assert.deepEqual(Object.keys(v).sort(), ['apic', 'expectedSrcuDepth', 'hostStack', 'id', 'inhibits', 'mode', 'requests', 'srcuDepth', 'srcuReaders', 'state', 'threadId'].sort());
      assert.equal(v.threadId, v.id + 1);
      assert.deepEqual(v.apic, { mode: 'xapic', apicvActive: true });
      assert.equal(v.state, 'running');
      assert.equal(v.mode, 'OUTSIDE_GUEST_MODE');
    }
    // at a host stop the vCPU's hostStack is its frames' (innermost first)
    await d.setFilters([{ filterId: 'inhibit-change', condition: 'APIC_ID_MODIFIED && set' }]);
    const s = await d.continueTo();
    const st = await d.state();
    const frames = (await d.frames(s.body.threadId!)).filter((f) => !f.source?.path).map((f) => f.name);
    assert.deepEqual(st.vcpus[0].hostStack, frames);
    assert.equal(st.vcpus[0].hostStack[st.vcpus[0].hostStack.length - 1], 'kvm_vcpu_ioctl');
    assert.equal(st.vcpus[0].srcuDepth, 1);
    assert.equal(st.vcpus[0].expectedSrcuDepth, 1);
  });
});

describe('dap: reads have no side effect', () => {
  let d: Dap;
  afterEach(async () => {
    await d.stop();
  });

  it('S1 under pre-fix: readMemory and evaluate at 0xFEE00030 of the x2APIC vCPU trip nothing', async () => {
    const path = example('x2apic-hybrid-mmio.vasm');
    const text = readFileSync(path, 'utf8');
    d = await Dap.stdio();
    await d.launch({ program: path, design: 'pre-fix' }, async (c) => {
      // vCPU 0 has enabled x2APIC and is back in the guest; nobody has loaded 0xFEE00030 yet
      await c.dc.setBreakpointsRequest({ source: { path }, breakpoints: [{ line: lineOf(text, 'mov     dword [x2apic_on], 1') }] });
    });
    const stop = await d.stopped(0);
    assert.equal(stop.body.threadId, 1);
    await d.dc.setBreakpointsRequest({ source: { path }, breakpoints: [] });
    const before = await d.state();
    assert.equal(before.vcpus[0].apic.mode, 'x2apic');
    assert.equal(before.vcpus[0].apic.apicvActive, true);
    assert.ok(before.vm.memslots.some((s) => s.id === 32765), 'pre-fix keeps the APIC-access slot');

    const m = d.mark();
    const read = await d.readMemory('0xfee00030', 4);
    assert.equal(read.body?.unreadableBytes, 4);
    assert.equal(fromBase64(read.body?.data).length, 0);
    for (const frameId of [await d.topFrameId(1), await d.topFrameId(2)]) {
      assert.match(await d.fails(d.evaluate('dword [0xfee00030]', 'watch', frameId)), /0xfee00030: not readable RAM/);
    }
    const dis = await d.dc.disassembleRequest({ memoryReference: '0xfee00030', instructionCount: 1 });
    assert.equal(dis.body!.instructions[0].presentationHint, 'invalid');
    await d.scope(1, 'Local APIC');
    await d.scope(1, 'AVIC');
    assert.deepEqual(d.events.slice(m).map((e) => e.event), [], 'no event at all');
    assert.deepEqual(await d.state(), before);

    // the only violation is the guest's own load, after the debugger's reads
    const s = await d.continueTo();
    assert.equal(s.body.reason, 'exception');
    const info = (await d.dc.exceptionInfoRequest({ threadId: 1 })).body;
    assert.equal(info.exceptionId, 'xapic-access-in-x2apic-mode');
    assert.equal((await d.frames(1))[0].line, lineOf(text, 'mov     [lvr + rdi * 4], eax'), 'stopped after the guest load');
    assert.equal(await d.runToExit(), 2);
    assert.equal(d.output(0, 'console').match(/avic: violation xapic-access-in-x2apic-mode/g)?.length, 1);
  });
});

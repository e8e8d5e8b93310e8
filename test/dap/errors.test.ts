// Bad input over DAP: each is answered with an error response whose message says what is wrong,
// and the session goes on working (contracts/dap.md: an invalid launch attribute is named; a
// condition that does not parse is rejected with its position).

import assert from 'node:assert/strict';
import { Dap, example, removePrograms } from './dap-client';
import { write } from './programs';

describe('dap: bad launch configurations', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
    await d.dc.initializeRequest();
  });
  afterEach(async () => {
    await d.stop();
  });
  after(removePrograms);

  const hello = example('hello.vasm');
  const BAD: readonly [string, Record<string, unknown>, RegExp][] = [
    ['no arguments at all', {}, /launch attribute 'program': the path of a \.vasm program is required/],
    ['program missing', { vcpus: 2 }, /launch attribute 'program': the path of a \.vasm program is required/],
    ['program of the wrong type', { program: 42 }, /launch attribute 'program'/],
    ['program that does not exist', { program: '/nonexistent/dir/x.vasm' }, /launch attribute 'program': cannot read \/nonexistent\/dir\/x\.vasm/],
    ['vcpus a string', { program: hello, vcpus: 'two' }, /launch attribute 'vcpus': expected an integer 1\.\.512, got "two"/],
    ['vcpus 0', { program: hello, vcpus: 0 }, /launch attribute 'vcpus'/],
    ['vcpus above the AVIC limit', { program: hello, vcpus: 300 }, /launch attribute 'vcpus': 300 vCPUs, but AVIC without x2AVIC .* at most 255/],
    ['memory not a number', { program: hello, memory: '64M' }, /launch attribute 'memory'/],
    ['unknown design', { program: hello, design: 'v2' }, /launch attribute 'design': expected one of upstream, v3, pre-fix/],
    ['avic not a boolean', { program: hello, avic: 'on' }, /launch attribute 'avic': expected true or false, got "on"/],
    ['stopOnEntry not a boolean', { program: hello, stopOnEntry: 1 }, /launch attribute 'stopOnEntry'/],
    ['sched unknown', { program: hello, sched: 'fifo' }, /launch attribute 'sched': expected "rr" or "random", got "fifo"/],
    ['seed negative', { program: hello, seed: -1 }, /launch attribute 'seed'/],
    ['hostActions not an array', { program: hello, hostActions: 'out=1:msi=0/0x40' }, /launch attribute 'hostActions': expected an array of strings/],
    ['hostActions malformed', { program: hello, hostActions: ['out=1:reboot=1'] }, /launch attribute 'hostActions': .*unknown action 'reboot'/],
    ['schedule (not replayable yet)', { program: hello, schedule: '/tmp/s.json' }, /launch attribute 'schedule'/],
  ];

  for (const [what, args, message] of BAD) {
    it(`${what}: the launch fails naming it`, async () => {
      assert.match(await d.fails(d.dc.launchRequest(args as never)), message);
      assert.deepEqual((await d.dc.threadsRequest()).body.threads, [], 'nothing was launched');
    });
  }

  it('a program with assembly errors: the message names file:line:col', async () => {
    const path = write.bad();
    const message = await d.fails(d.dc.launchRequest({ program: path } as never));
    assert.ok(message.includes(`${path}:6:9: `), message);
    assert.match(message, /does not assemble/);
  });

  it('after a failed launch, a good one works', async () => {
    await d.fails(d.dc.launchRequest({ program: example('hello.vasm'), design: 'nope' } as never));
    const m = d.mark();
    await d.dc.launchRequest({ program: example('hello.vasm'), stopOnEntry: true } as never);
    await d.waitFor('initialized', m);
    await d.dc.configurationDoneRequest();
    assert.equal((await d.stopped(m)).body.reason, 'entry');
    assert.equal((await d.dc.threadsRequest()).body.threads.length, 4);
  });

  it('requests before the launch are refused, not crashed on', async () => {
    assert.match(await d.fails(d.evaluate('rax')), /not been launched/);
    assert.match(await d.fails(d.dc.setBreakpointsRequest({ source: { path: example('hello.vasm') }, breakpoints: [{ line: 16 }] })), /not been launched/);
    assert.match(await d.fails(d.state()), /not been launched/);
    assert.deepEqual((await d.dc.threadsRequest()).body.threads, []);
  });
});

describe('dap: bad requests during a session', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
    await d.launchStopped({ program: example('hello.vasm') });
  });
  afterEach(async () => {
    await d.stop();
  });

  /** the session still answers and still runs */
  async function stillWorks(): Promise<void> {
    assert.equal((await d.dc.threadsRequest()).body.threads.length, 4);
    assert.equal((await d.evaluate('rdi', 'watch', await d.topFrameId(2))).result, '0x0000000000000001 (1)');
  }

  it('an unknown thread id, for every request that takes one', async () => {
    for (const threadId of [0, 5, 99]) {
      assert.match(await d.fails(d.dc.stackTraceRequest({ threadId })), new RegExp(`there is no thread ${threadId}`));
      assert.match(await d.fails(d.dc.continueRequest({ threadId })), new RegExp(`there is no thread ${threadId}`));
      assert.match(await d.fails(d.dc.nextRequest({ threadId })), new RegExp(`there is no thread ${threadId}`));
      assert.match(await d.fails(d.dc.stepInRequest({ threadId })), new RegExp(`there is no thread ${threadId}`));
      assert.match(await d.fails(d.dc.stepOutRequest({ threadId })), new RegExp(`there is no thread ${threadId}`));
      assert.match(await d.fails(d.dc.exceptionInfoRequest({ threadId })), /did not stop on an event/);
    }
    assert.equal(d.after('stopped', 0).length, 1, 'only the entry stop: nothing ran');
    await stillWorks();
  });

  it('a filter condition that does not parse: the error says the column; the filters in force stay', async () => {
    await d.setFilters([{ filterId: 'vmexit', condition: 'exit == SVM_EXIT_IOIO' }]);
    const cases: [string, string, RegExp][] = [
      ['vcpu-request', 'req == && op == make', /vcpu-request condition 'req == && op == make': .* at column 8/],
      ['inhibit-change', 'reason = APIC_ID_MODIFIED', /unexpected '=' at column 8; use '=='/],
      ['x2apic-msr-write', 'msr == 0x1b &&', /at column 15/],
      ['srcu', 'depth > one', /at column 9/],
      ['vmexit', 'exit == NOT_AN_EXIT', /at column 9/],
      ['memslot-change', '(slot & 0xff == 1', /at column \d+/],
    ];
    for (const [filterId, condition, message] of cases) {
      assert.match(await d.fails(d.setFilters([{ filterId, condition }])), message, condition);
    }
    assert.match(await d.fails(d.setFilters([{ filterId: 'no-such-filter' }])), /unknown event filter 'no-such-filter'/);
    // the vmexit filter set first is still the one in force
    const s = await d.continueTo();
    assert.equal(s.body.reason, 'exception');
    assert.match(s.body.description ?? '', /SVM_EXIT_IOIO/);
  });

  it('evaluate of nonsense: an error with the position; then evaluate works', async () => {
    const cases: [string, RegExp][] = [
      ['((( garbage', /'garbage' at column 5 is not a register or a label/],
      ['1 +* 2', /unexpected '\*' at column 4/],
      ['[rsp', /expected '\]' at column 5/],
      ['rax rbx', /unexpected 'rbx' at column 5, after the expression/],
      ['rax +', /the expression ends too early at column 6/],
      ['#', /unexpected '#' at column 1/],
      ['dword [0xfec00000]', /0xfec00000: not readable RAM/],
    ];
    for (const [expression, message] of cases) assert.match(await d.fails(d.evaluate(expression)), message, expression);
    assert.match(await d.fails(d.evaluate('bogus 1', 'repl')), /'bogus' at column 1/);
    assert.match(await d.fails(d.evaluate('hostaction reboot=1', 'repl')), /unknown action 'reboot'/);
    assert.match(await d.fails(d.evaluate('hostaction set-lapic-id=5:9', 'repl')), /there is no vCPU 9/);
    await stillWorks();
  });

  it('unknown frames, variable references, addresses and requests', async () => {
    assert.match(await d.fails(d.dc.scopesRequest({ frameId: 424242 })), /there is no frame 424242/);
    assert.match(await d.fails(d.dc.variablesRequest({ variablesReference: 424242 })), /there is no variable reference 424242/);
    assert.match(await d.fails(d.dc.setVariableRequest({ variablesReference: 424242, name: 'rax', value: '1' })), /cannot be set/);
    assert.match(await d.fails(d.readMemory('not-an-address', 4)), /'not-an-address' is not an address/);
    assert.match(await d.fails(d.writeMemory('0xzz', 'AAAA')), /is not an address/);
    assert.match(await d.fails(d.dc.disassembleRequest({ memoryReference: 'here', instructionCount: 1 })), /is not an address/);
    assert.match(await d.fails(d.dc.customRequest('avic/nope')), /unknown request 'avic\/nope'/);
    await stillWorks();
  });

  it('requests that need a stopped machine are refused while it runs', async () => {
    await d.stop();
    d = await Dap.stdio();
    await d.launchStopped({ program: write.spin() });
    const m = d.mark();
    await d.dc.continueRequest({ threadId: 1 });
    assert.match(await d.fails(d.evaluate('rax')), /running: pause it first/);
    assert.match(await d.fails(d.dc.stackTraceRequest({ threadId: 1 })), /running: pause it first/);
    assert.match(await d.fails(d.dc.nextRequest({ threadId: 1 })), /running: pause it first/);
    await d.dc.pauseRequest({ threadId: 1 });
    assert.equal((await d.stopped(m)).body.reason, 'pause');
    assert.equal((await d.frames(1))[0].source?.name, 'spin.vasm');
  });
});

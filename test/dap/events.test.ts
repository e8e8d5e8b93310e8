// Event filters over DAP (contracts/dap.md, "Event filters"): each of the seven, with and without
// a condition, on the thread's examples; exceptionInfo after an event stop; the `log` mode
// (trace-cmd lines, no stop); the violation filter on by default, and off; continuing through a
// sequence of event stops.

import type { DebugProtocol } from '@vscode/debugprotocol';
import assert from 'node:assert/strict';
import { Dap, example } from './dap-client';

interface Case {
  readonly program: string;
  readonly design?: string;
  readonly hostActions?: readonly string[];
  readonly filter: string;
  readonly condition?: string;
  /** the label the stop's text carries */
  readonly label: string;
  readonly threadId: number;
  readonly exceptionId: string;
  readonly description: RegExp;
  /** a kernel function the event's host stack (exceptionInfo) holds */
  readonly inStack?: string;
}

const S1 = 'x2apic-hybrid-mmio.vasm';
const S3 = 'apicv-update-all-vcpus.vasm';

const CASES: readonly Case[] = [
  {
    program: S3, filter: 'vcpu-request', condition: 'KVM_REQ_APICV_UPDATE', label: 'vCPU request', threadId: 1, exceptionId: 'request-make',
    description: /avic_request_make: vcpu 0 KVM_REQ_APICV_UPDATE/, inStack: 'kvm_make_all_cpus_request',
  },
  {
    program: S3, filter: 'vcpu-request', condition: 'op == check && vcpu == 2', label: 'vCPU request', threadId: 3, exceptionId: 'request-check',
    description: /avic_request_check: KVM_REQ_APICV_UPDATE/, inStack: 'kvm_check_request',
  },
  { program: S3, filter: 'vcpu-request', label: 'vCPU request', threadId: 1, exceptionId: 'request-make', description: /avic_request_make: vcpu 0 KVM_REQ_APICV_UPDATE/ },
  {
    program: S1, filter: 'x2apic-msr-write', condition: 'msr == 0x1b && (value & 0x400) != 0', label: 'APIC MSR write', threadId: 1, exceptionId: 'msr-write',
    description: /kvm_msr: msr_write 1b = 0xfee00d00/, inStack: 'kvm_emulate_wrmsr',
  },
  { program: S1, filter: 'x2apic-msr-write', condition: 'host', label: 'APIC MSR write', threadId: 0, exceptionId: '', description: /never/ },
  {
    program: 'apic-base-srcu.vasm', hostActions: ['out=1:set-apic-base-msrs=0xfee00c00'], filter: 'x2apic-msr-write', condition: 'host && vcpu == 1',
    label: 'APIC MSR write', threadId: 2, exceptionId: 'msr-write', description: /host_msr_write: msr_write 1b = 0xfee00c00/, inStack: 'kvm_arch_vcpu_ioctl',
  },
  { program: S1, filter: 'x2apic-msr-write', label: 'APIC MSR write', threadId: 1, exceptionId: 'msr-write', description: /msr_write 1b = 0xfee00d00/ },
  {
    program: S1, filter: 'memslot-change', condition: 'slot == 32765 && op == delete && changed', label: 'Memslot change', threadId: 1, exceptionId: 'memslot-change',
    description: /avic_memslot_change: slot 32765 delete gpa 0xfee00000/, inStack: 'kvm_inhibit_apic_access_page',
  },
  { program: S1, filter: 'memslot-change', condition: 'op == create', label: 'Memslot change', threadId: 0, exceptionId: '', description: /never/ },
  { program: S1, filter: 'memslot-change', label: 'Memslot change', threadId: 1, exceptionId: 'memslot-change', description: /slot 32765 delete/ },
  {
    program: S3, filter: 'inhibit-change', condition: 'reason == APIC_ID_MODIFIED && set', label: 'APICv inhibit change', threadId: 1, exceptionId: 'inhibit-change',
    description: /kvm_apicv_inhibit_changed: set reason=5, inhibits=0x20 \(APIC_ID_MODIFIED\)/, inStack: 'kvm_recalculate_apic_map',
  },
  {
    program: S3, filter: 'inhibit-change', condition: 'APICV_INHIBIT_REASON_APIC_ID_MODIFIED && !set && changed', label: 'APICv inhibit change', threadId: 1,
    exceptionId: 'inhibit-change', description: /cleared reason=5, inhibits=0x0 \(APIC_ID_MODIFIED\)/, inStack: 'apic_mmio_write',
  },
  { program: S3, filter: 'inhibit-change', label: 'APICv inhibit change', threadId: 1, exceptionId: 'inhibit-change', description: /cleared reason=4, inhibits=0x0 \(PHYSICAL_ID_ALIASED\)/ },
  {
    program: S1, filter: 'srcu', condition: 'op == synchronize', label: 'kvm->srcu', threadId: 1, exceptionId: 'srcu-sync',
    description: /synchronize_srcu_expedited readers 0/, inStack: 'kvm_swap_active_memslots',
  },
  { program: S1, filter: 'srcu', condition: 'op == lock && vcpu == 1 && depth == 1', label: 'kvm->srcu', threadId: 2, exceptionId: 'srcu-lock', description: /kvm_vcpu_srcu_read_lock srcu_depth 1/ },
  { program: S1, filter: 'srcu', condition: 'depth > 1', label: 'kvm->srcu', threadId: 0, exceptionId: '', description: /never/ },
  { program: S3, filter: 'srcu', label: 'kvm->srcu', threadId: 1, exceptionId: 'srcu-lock', description: /kvm_vcpu_srcu_read_lock srcu_depth 1 readers 1/ },
  {
    program: S3, filter: 'vmexit', condition: 'exit == AVIC_NOACCEL', label: '#VMEXIT', threadId: 1, exceptionId: 'vmexit',
    description: /kvm_exit: vcpu 0 reason SVM_EXIT_AVIC_UNACCELERATED_ACCESS/, inStack: 'svm_vcpu_run',
  },
  { program: S1, filter: 'vmexit', condition: 'SVM_EXIT_MSR && vcpu == 0', label: '#VMEXIT', threadId: 1, exceptionId: 'vmexit', description: /vcpu 0 reason SVM_EXIT_MSR .* info2 0x000000000000001b/ },
  { program: S3, filter: 'vmexit', label: '#VMEXIT', threadId: 1, exceptionId: 'vmexit', description: /vcpu 0 reason SVM_EXIT_AVIC_UNACCELERATED_ACCESS/ },
  {
    program: S1, design: 'pre-fix', filter: 'violation', condition: 'kind == xapic-access-in-x2apic-mode && vcpu == 0', label: 'Checker violation', threadId: 1,
    exceptionId: 'xapic-access-in-x2apic-mode', description: /a load from 0xfee00030 was served by AVIC's backing page while vCPU 0 is in x2APIC mode/,
  },
  { program: S1, design: 'pre-fix', filter: 'violation', label: 'Checker violation', threadId: 1, exceptionId: 'xapic-access-in-x2apic-mode', description: /xapic-access-in-x2apic-mode/ },
];

/**
 * The stopped thread's frames: host frames (kernel names, no .vasm source) down to the ioctl entry
 * above the guest frame when the event came from host code; the guest frame alone for a
 * violation the guest's own access tripped.
 */
async function assertFrames(d: Dap, c: Case): Promise<void> {
  const frames = await d.frames(c.threadId);
  const host = frames.filter((f) => !f.source?.path);
  const guest = frames.filter((f) => f.source?.path);
  assert.equal(guest.length, 1);
  assert.equal(guest[0].source?.name, c.program);
  assert.equal(frames[frames.length - 1], guest[0], 'the guest frame is outermost');
  if (c.filter === 'violation') return assert.equal(host.length, 0, host.map((f) => f.name).join(' < '));
  assert.ok(host.length > 0, 'host frames above the guest frame');
  assert.equal(host[host.length - 1].name, 'kvm_vcpu_ioctl');
  for (const f of host) assert.match(f.source?.name ?? '', /^(arch\/x86\/kvm|virt\/kvm|include\/linux|kernel)\//, f.name);
}

describe('dap: event filters', () => {
  let d: Dap;
  beforeEach(async () => {
    d = await Dap.stdio();
  });
  afterEach(async () => {
    await d.stop();
  });

  for (const c of CASES) {
    const title = `${c.filter} ${c.condition ? `'${c.condition}'` : '(no condition)'} on ${c.program}${c.design ? ` (${c.design})` : ''}`;
    it(c.threadId === 0 ? `${title} never stops` : `${title} stops on thread ${c.threadId}`, async () => {
      await d.launch({ program: example(c.program), design: c.design, hostActions: c.hostActions }, async (s) => {
        const r = await s.setFilters(c.condition ? [{ filterId: c.filter, condition: c.condition }] : [], c.condition ? [] : [c.filter]);
        assert.deepEqual(r.body?.breakpoints?.map((b) => b.verified), [true]);
      });
      const e = await d.waitFor<DebugProtocol.StoppedEvent>(['stopped', 'exited'], 0);
      if (c.threadId === 0) {
        assert.equal(e.event, 'exited', JSON.stringify(e.body));
        assert.equal((e as unknown as DebugProtocol.ExitedEvent).body.exitCode, 0);
        return;
      }
      assert.equal(e.event, 'stopped');
      assert.equal(e.body.reason, 'exception');
      assert.equal(e.body.text, c.label);
      assert.equal(e.body.threadId, c.threadId);
      assert.match(e.body.description ?? '', c.description);
      const info = (await d.dc.exceptionInfoRequest({ threadId: c.threadId })).body;
      assert.equal(info.exceptionId, c.exceptionId);
      assert.equal(info.breakMode, 'always');
      assert.match(info.description ?? '', c.description);
      if (c.inStack) assert.ok(info.details?.stackTrace?.split('\n').includes(c.inStack), info.details?.stackTrace);
      await assertFrames(d, c);
      // the stop is followed by avic/stateChanged; another thread has no event to report
      await d.waitFor('avic/stateChanged', d.events.indexOf(e));
      const other = c.threadId === 1 ? 2 : 1;
      assert.match(await d.fails(d.dc.exceptionInfoRequest({ threadId: other })), /did not stop on an event/);
    });
  }

  it('continue goes from one event stop to the next: eight APICV_UPDATE requests made, then the end', async () => {
    await d.launch({ program: example(S3) }, async (s) => {
      await s.setFilters([{ filterId: 'vcpu-request', condition: 'KVM_REQ_APICV_UPDATE && op == make' }]);
    });
    let s = await d.stopped(0);
    const targets: string[] = [];
    for (;;) {
      targets.push(/vcpu (\d) KVM_REQ_APICV_UPDATE transition (\d)/.exec(s.body.description ?? '')!.slice(1).join('/'));
      const m = d.mark();
      await d.dc.continueRequest({ threadId: s.body.threadId! });
      const next = await d.waitFor<DebugProtocol.StoppedEvent>(['stopped', 'exited'], m);
      if (next.event === 'exited') break;
      s = next;
    }
    // two flips (set, then clear), each requesting every vCPU in order
    assert.deepEqual(targets, ['0/1', '1/1', '2/1', '3/1', '0/2', '1/2', '2/2', '3/2']);
  });

  it('the log mode writes trace-cmd lines to the Debug Console and does not stop', async () => {
    await d.launch({ program: example(S3) }, async (s) => {
      await s.setFilters([{ filterId: 'inhibit-change', condition: 'changed', mode: 'log' }, { filterId: 'memslot-change', mode: 'log' }]);
    });
    const exited = await d.waitFor<DebugProtocol.ExitedEvent>('exited', 0);
    assert.equal(exited.body.exitCode, 0);
    assert.equal(d.after('stopped', 0).length, 0);
    const lines = d.output(0, 'console').split('\n').filter((l) => l.includes('kvm_apicv_inhibit_changed'));
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines[0], /^\s+CPU 0\/KVM-1000 \[000\]\s+\d+\.\d{9}: kvm_apicv_inhibit_changed: set reason=5, inhibits=0x20 \(APIC_ID_MODIFIED\)$/);
    assert.match(lines[1], /^\s+CPU 0\/KVM-1000 \[000\]\s+\d+\.\d{9}: kvm_apicv_inhibit_changed: cleared reason=5, inhibits=0x0 \(APIC_ID_MODIFIED\)$/);
    // the timestamps are virtual time: they grow
    const times = lines.map((l) => Number(/(\d+\.\d{9}):/.exec(l)![1]));
    assert.ok(times[1] > times[0]);
  });

  it('violation is on by default: the S1 violation under pre-fix stops, and continue goes on as keepGoing does', async () => {
    await d.launch({ program: example(S1), design: 'pre-fix' });
    const s = await d.stopped(0);
    assert.equal(s.body.reason, 'exception');
    assert.equal((await d.dc.exceptionInfoRequest({ threadId: s.body.threadId! })).body.exceptionId, 'xapic-access-in-x2apic-mode');
    const m = d.mark();
    assert.equal(await d.runToExit(s.body.threadId!), 2, 'done with a violation recorded');
    assert.equal(d.after('stopped', m).length, 0, 'the second vCPU is xAPIC: no second violation');
    assert.equal(d.output(0, 'stdout'), 'vcpu 0 lvr 00050014\nvcpu 1 lvr 00050014\n');
  });

  it('with the violation filter off and keepGoing, the run goes past the violation to the end, exit code 2', async () => {
    await d.launch({ program: example(S1), design: 'pre-fix', keepGoing: true }, async (s) => {
      await s.dc.setExceptionBreakpointsRequest({ filters: [] });
    });
    assert.equal((await d.waitFor<DebugProtocol.ExitedEvent>('exited', 0)).body.exitCode, 2);
    assert.equal(d.after('stopped', 0).length, 0);
    assert.equal(d.output(0, 'stdout'), 'vcpu 0 lvr 00050014\nvcpu 1 lvr 00050014\n');
    assert.match(d.output(0, 'console'), /avic: done: .*\navic: violation xapic-access-in-x2apic-mode/);
  });

  it("the README's first session: S3 under toggle-in-update stops on the double toggle, and upstream is clean", async () => {
    await d.launch({ program: example(S3), design: 'toggle-in-update' }, async (c) => {
      await c.setFilters([{ filterId: 'inhibit-change', mode: 'log' }, { filterId: 'violation' }]);
    });
    const s = await d.stopped(0);
    assert.equal(s.body.threadId, 2);
    assert.match(s.body.description!, /^Paused on Checker violation: .*memslot-double-toggle: __x86_set_memory_region on APIC_ACCESS_PAGE_PRIVATE_MEMSLOT .* is call 2 for APICv transition #1$/);
    assert.deepEqual((await d.frames(2)).slice(0, 3).map((f) => f.name), ['mutex_unlock', 'kvm_vcpu_update_apicv', 'vcpu_enter_guest']);
    const state = await d.state();
    const modified = state.vm.inhibitTable.find((r) => r.reason === 'APIC_ID_MODIFIED')!;
    assert.equal(modified.set, true);
    assert.equal(modified.lastChange?.vcpu, 0);
    for (const id of [2, 3]) {
      const v = state.vcpus[id];
      assert.equal(v.state, 'blocked');
      assert.deepEqual(v.hostStack.slice(0, 2), ['mutex_lock', 'kvm_vcpu_update_apicv']);
      assert.equal(v.srcuDepth, v.expectedSrcuDepth, 'SRCU dropped as the design means');
    }
    await d.waitFor('avic/stateChanged', 0);
    assert.match(d.output(0, 'console'), /kvm_apicv_inhibit_changed: set reason=5, inhibits=0x20 \(APIC_ID_MODIFIED\)/);
    await d.stop();
    d = await Dap.stdio();
    await d.launch({ program: example(S3), design: 'upstream' });
    assert.equal((await d.waitFor<DebugProtocol.ExitedEvent>('exited', 0)).body.exitCode, 0);
    assert.equal(d.after('stopped', 0).length, 0);
  });

  it('a filter replaced by an empty list stops no more', async () => {
    await d.launchStopped({ program: example(S3) });
    await d.setFilters([], ['vmexit']);
    const s = await d.continueTo();
    assert.equal(s.body.reason, 'exception');
    await d.dc.setExceptionBreakpointsRequest({ filters: [] });
    assert.equal(await d.runToExit(), 0);
  });
});

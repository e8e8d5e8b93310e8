// The checkers on synthetic event logs (contracts/kvm-model.md: `apicv-state-mismatch-at-entry`
// is tripped by no design, and some checker paths by no scenario), and the deadlock checker on a
// live machine whose guest makes the host wait for ever.

import assert from 'node:assert/strict';
import type { MachineEvent, NewEvent } from '../../src/machine/events';
import { checkLog } from '../../src/machine/kvm/checkers';
import { APIC_ACCESS_PAGE_PRIVATE_MEMSLOT } from '../../src/machine/kvm/kvm_host';

/** an event as a test writes it: no seq, step or rip */
type Synthetic = NewEvent extends infer E ? (E extends unknown ? Omit<E, 'rip'> & { rip?: number } : never) : never;

/** a log from synthetic events */
function log(...events: Synthetic[]): MachineEvent[] {
  return events.map((e, i) => ({ rip: 0, ...e, seq: i + 1, step: i } as MachineEvent));
}

const stack = ['vcpu_enter_guest', 'vcpu_run', 'kvm_arch_vcpu_ioctl_run', 'kvm_vcpu_ioctl'];

describe('checkers on synthetic logs', () => {
  it('apicv-state-mismatch-at-entry: the WARN in vcpu_enter_guest, unless the APIC is hardware-disabled', () => {
    const v = checkLog(log(
      { kind: 'vmentry', vcpu: 0, activated: true, apicvActive: true, apicDisabled: false, hostStack: stack },
      { kind: 'vmentry', vcpu: 1, activated: false, apicvActive: false, apicDisabled: false, hostStack: stack },
      { kind: 'vmentry', vcpu: 1, activated: true, apicvActive: false, apicDisabled: true, hostStack: stack },
      { kind: 'vmentry', vcpu: 2, activated: false, apicvActive: true, apicDisabled: false, hostStack: stack },
    ));
    assert.equal(v.length, 1);
    assert.deepEqual([v[0].kind, v[0].vcpu, v[0].seq], ['apicv-state-mismatch-at-entry', 2, 4]);
    assert.deepEqual(v[0].hostStack, stack);
  });

  it('srcu-unlock-unbalanced: the vCPU helpers only, on lock and on unlock', () => {
    const v = checkLog(log(
      { kind: 'srcu-lock', vcpu: 0, raw: false, depth: 1, readers: 1 },
      { kind: 'srcu-lock', vcpu: 0, raw: true, depth: -1, readers: 2 },
      { kind: 'srcu-unlock', vcpu: 0, raw: true, depth: -1, readers: 1 },
      { kind: 'srcu-unlock', vcpu: 0, raw: false, depth: 0, readers: 0 },
      { kind: 'srcu-unlock', vcpu: 1, raw: false, depth: -1, readers: 0 },
      { kind: 'srcu-lock', vcpu: 1, raw: false, depth: 0, readers: 1 },
      { kind: 'srcu-lock', vcpu: 2, raw: false, depth: 1, readers: 1 },
      { kind: 'srcu-lock', vcpu: 2, raw: false, depth: 2, readers: 2 },
    ));
    assert.deepEqual(v.map((x) => [x.kind, x.vcpu, x.seq]), [
      ['srcu-unlock-unbalanced', 1, 5], ['srcu-unlock-unbalanced', 1, 6], ['srcu-unlock-unbalanced', 2, 8],
    ]);
    assert.match(v[0].message, /UNLOCK/);
    assert.match(v[2].message, /LOCK: kvm_vcpu_srcu_read_lock with srcu_depth 1/);
  });

  it('synchronize-srcu-in-read-section: any read section of the calling task, raw included', () => {
    const v = checkLog(log(
      { kind: 'srcu-sync', vcpu: 0, expedited: true, readers: 0 },
      { kind: 'srcu-sync', vcpu: 1, expedited: true, readers: 1 },
      { kind: 'srcu-sync', vcpu: null, expedited: false, readers: 2 },
    ));
    assert.deepEqual(v.map((x) => [x.kind, x.vcpu]), [['synchronize-srcu-in-read-section', 1], ['synchronize-srcu-in-read-section', null]]);
    assert.match(v[1].message, /^synchronize_srcu\(&kvm->srcu\) inside 2 /);
  });

  it('memslot-double-toggle: a second call for one transition, even a no-op; other slots and transitions are separate', () => {
    const slot = APIC_ACCESS_PAGE_PRIVATE_MEMSLOT;
    const v = checkLog(log(
      { kind: 'memslot-change', vcpu: 0, slot, gpa: 0xfee00000, size: 0, create: false, changed: true, transition: 1 },
      { kind: 'memslot-change', vcpu: 1, slot, gpa: 0xfee00000, size: 4096, create: true, changed: true, transition: 2 },
      { kind: 'memslot-change', vcpu: 0, slot: 5, gpa: 0, size: 0, create: false, changed: true, transition: 2 },
      { kind: 'memslot-change', vcpu: 2, slot, gpa: 0xfee00000, size: 0, create: false, changed: false, transition: 1 },
    ));
    assert.deepEqual(v.map((x) => [x.kind, x.vcpu, x.seq]), [['memslot-double-toggle', 2, 4]]);
    assert.match(v[0].message, /a no-op this time\) is call 2 for APICv transition #1/);
  });

  it('xapic-access-in-x2apic-mode: AVIC\'s backing page only, and only for an x2APIC vCPU', () => {
    const v = checkLog(log(
      { kind: 'apic-page-access', vcpu: 0, gpa: 0xfee00030, size: 4, value: 0x50014, write: false, path: 'avic-backing-page', x2apic: false },
      { kind: 'apic-page-access', vcpu: 0, gpa: 0xfee00030, size: 4, value: 0, write: false, path: 'private-page', x2apic: true },
      { kind: 'apic-page-access', vcpu: 1, gpa: 0xfee00080, size: 4, value: 0x20, write: true, path: 'avic-backing-page', x2apic: true },
    ));
    assert.deepEqual(v.map((x) => [x.kind, x.vcpu]), [['xapic-access-in-x2apic-mode', 1]]);
  });

  it('lock-order-inversion: SRCU read sections nest freely; synchronize_srcu closes a cycle', () => {
    const acq = (vcpu: number | null, lock: 'slots_lock' | 'apicv_update_lock', mode: 'read' | 'write' = 'write') =>
      ({ kind: 'lock-acquire' as const, vcpu, lock, mode });
    const rel = (vcpu: number | null, lock: 'slots_lock' | 'apicv_update_lock', mode: 'read' | 'write' = 'write') =>
      ({ kind: 'lock-release' as const, vcpu, lock, mode });
    const srcu = (vcpu: number | null) => ({ kind: 'srcu-lock' as const, vcpu, raw: true, depth: -1, readers: 1 });
    const unsrcu = (vcpu: number | null) => ({ kind: 'srcu-unlock' as const, vcpu, raw: true, depth: -1, readers: 0 });
    // upstream's pattern: apicv(W) -> srcu(R) (the zap) and srcu(R) -> apicv(R) (the update): no report
    assert.deepEqual(checkLog(log(acq(0, 'apicv_update_lock'), srcu(0), unsrcu(0), rel(0, 'apicv_update_lock'),
      srcu(1), acq(1, 'apicv_update_lock', 'read'), rel(1, 'apicv_update_lock', 'read'), unsrcu(1))), []);
    // slots_lock -> srcu(sync) alone is fine too
    assert.deepEqual(checkLog(log(acq(0, 'slots_lock'), { kind: 'srcu-sync', vcpu: 0, expedited: true, readers: 0 }, rel(0, 'slots_lock'))), []);
    // srcu(R) -> apicv, then apicv -> srcu(sync): the inversion srcu-drop-in-inhibit shows
    const v = checkLog(log(srcu(1), acq(1, 'apicv_update_lock', 'read'), rel(1, 'apicv_update_lock', 'read'), unsrcu(1),
      acq(0, 'apicv_update_lock'), acq(0, 'slots_lock'), { kind: 'srcu-sync', vcpu: 0, expedited: true, readers: 0 }));
    assert.deepEqual(v.map((x) => [x.kind, x.vcpu, x.seq]), [['lock-order-inversion', 0, 7]]);
    assert.match(v[0].message, /kvm->srcu -> apicv_update_lock -> kvm->srcu/);
    // a plain ABBA between the two sleeping locks
    const abba = checkLog(log(acq(0, 'slots_lock'), acq(0, 'apicv_update_lock'), rel(0, 'apicv_update_lock'), rel(0, 'slots_lock'),
      acq(1, 'apicv_update_lock'), acq(1, 'slots_lock')));
    assert.deepEqual(abba.map((x) => x.kind), ['lock-order-inversion']);
  });
});

// The APIC-access page as the guest sees it (contracts/kvm-model.md, "The APIC-access page, seen
// by the guest"): a 32-bit load at 0xFEE00030, then a store there and a second load, per design,
// AVIC, x2AVIC, APIC mode and slot state; and who served each access (the event log).

import assert from 'node:assert/strict';
import type { MachineOptions } from '../../src/machine/machine';
import { run } from './helpers';

/** `prelude` runs first; then eax = [LVR], [LVR] = 0x1234, ebx = [LVR]; done. */
function program(prelude: string): string {
  return `
        bits 64
_start:
${prelude}
        mov     rsi, 0xfee00030
        mov     eax, [rsi]
        mov     dword [rsi], 0x1234
        mov     ebx, [rsi]
        out     0xf4, al
`;
}

const X2APIC_ON = `
        mov     ecx, 0x1b
        rdmsr
        or      eax, 1 << 10
        wrmsr`;
const APIC_OFF = `
        mov     ecx, 0x1b
        rdmsr
        and     eax, ~(1 << 11)
        wrmsr`;

function access(prelude: string, options: Partial<MachineOptions>) {
  const r = run(program(prelude), options);
  assert.equal(r.result.status, 'done', JSON.stringify(r.result.violations));
  const paths = r.machine.events.flatMap((e) => (e.kind === 'apic-page-access' ? [e.path] : e.kind === 'mmio-read' || e.kind === 'mmio-write' ? ['emulated'] : []));
  return { first: Number(r.reg('rax') & 0xffffffffn), second: Number(r.reg('rbx') & 0xffffffffn), paths: [...new Set(paths)], r };
}

describe('the APIC-access page, seen by the guest', () => {
  it('--avic off, xAPIC: emulated MMIO, LVR reads 0x00050014 and ignores stores', () => {
    const a = access('', { avic: false });
    assert.deepEqual([a.first, a.second, a.paths], [0x00050014, 0x00050014, ['emulated']]);
    assert.deepEqual(a.r.result.vm!.memslots.map((s) => s.id), [0], 'the slot is never created');
  });

  it('--avic off, x2APIC: the MMIO hole reads all-ones and drops stores (KVM_X86_QUIRK_LAPIC_MMIO_HOLE)', () => {
    const a = access(X2APIC_ON, { avic: false });
    assert.deepEqual([a.first, a.second, a.paths], [0xffffffff, 0xffffffff, ['emulated']]);
  });

  it('upstream, AVIC without x2AVIC, xAPIC, slot present: served by AVIC from the backing page', () => {
    const a = access('', {});
    assert.deepEqual([a.first, a.second], [0x00050014, 0x00050014]);
    // the load is accelerated; the store to LVR is a fault-style unaccelerated access, emulated
    assert.deepEqual(a.paths, ['avic-backing-page', 'emulated']);
    assert.ok(a.r.machine.events.some((e) => e.kind === 'avic-unaccelerated-access' && e.offset === 0x30 && e.write && !e.isTrap));
  });

  it('upstream, AVIC without x2AVIC, x2APIC: its own KVM_REQ_APICV_UPDATE deleted the slot before re-entry', () => {
    const a = access(X2APIC_ON, {});
    assert.deepEqual([a.first, a.second, a.paths], [0xffffffff, 0xffffffff, ['emulated']]);
    assert.deepEqual(a.r.result.vm!.apicAccessMemslot, { enabled: false, inhibited: true });
    assert.deepEqual(a.r.result.vm!.memslots.map((s) => s.id), [0]);
  });

  it('upstream, x2AVIC, x2APIC: the slot stays; the private page has memory semantics, not the backing page', () => {
    // x2AVIC in x2APIC mode does not decode the xAPIC BAR: the guest reaches its vAPIC through MSRs
    // (AMD APM vol. 2, x2AVIC; Maxim in the thread: "when x2avic bit is enabled, AVIC mmio is no longer decoded")
    const a = access(X2APIC_ON, { x2avic: true });
    assert.deepEqual([a.first, a.second, a.paths], [0, 0x1234, ['private-page']]);
    assert.deepEqual(a.r.result.vm!.apicAccessMemslot, { enabled: true, inhibited: false });
  });

  it('v3, x2AVIC too: the slot is deleted for any x2APIC enable on an AVIC host', () => {
    const a = access(X2APIC_ON, { design: 'v3', x2avic: true });
    assert.deepEqual([a.first, a.second, a.paths], [0xffffffff, 0xffffffff, ['emulated']]);
  });

  it('pre-fix, AVIC without x2AVIC, x2APIC: AVIC serves the xAPIC page (the bug)', () => {
    const r = run(program(X2APIC_ON), { design: 'pre-fix' });
    assert.equal(r.result.status, 'violation');
    assert.equal(r.result.violations[0].kind, 'xapic-access-in-x2apic-mode');
  });

  it('VM word non-zero (BLOCKIRQ from a host action): emulated MMIO, in xAPIC and in x2APIC mode', () => {
    const blockirq = { hostActions: [{ trigger: { kind: 'step', step: 0 }, action: 'guest-debug-blockirq', arg: 'on', vcpu: 0, text: 'step=0:guest-debug-blockirq=on' }] } as const;
    const x = access('', blockirq);
    assert.deepEqual([x.first, x.second, x.paths], [0x00050014, 0x00050014, ['emulated']]);
    assert.deepEqual(x.r.result.vm!.apicvInhibits, ['BLOCKIRQ']);
    const x2 = access(X2APIC_ON, { ...blockirq, x2avic: true });
    assert.deepEqual([x2.first, x2.second, x2.paths], [0xffffffff, 0xffffffff, ['emulated']]);
  });

  it('hardware-disabled APIC, slot present: the private page\'s memory semantics', () => {
    const a = access(APIC_OFF, {});
    assert.deepEqual([a.first, a.second, a.paths], [0, 0x1234, ['private-page']]);
    assert.deepEqual(a.r.result.vcpus[0].apic, { mode: 'disabled', apicvActive: false });
  });
});

// The KVM views' content (src/extension/state-tree.ts) from real `avic/state` bodies: the
// inhibit bitmap bit by bit with the call that last changed each bit, and the vCPUs with their
// SRCU depth checked against what the kernel expects.

import assert from 'node:assert/strict';
import type { AvicState } from '../../src/debug/avic-state';
import { avicState } from '../../src/debug/inspect';
import { inhibitNodes, type StateNode, vcpuNodes } from '../../src/extension/state-tree';
import type { Machine } from '../../src/machine/machine';
import { exampleMachine } from '../machine/helpers';

/** an example run to its end (or until `until` holds after an event), as the adapter would show it */
function stateOf(example: string, until?: (m: Machine) => boolean): AvicState {
  const m = exampleMachine(example);
  if (until) m.log.onEvent(() => {
    if (until(m)) m.requestStop();
  });
  m.run();
  return avicState(m, 1);
}

const find = (nodes: readonly StateNode[], label: string): StateNode => {
  const n = nodes.find((x) => x.label === label);
  assert.ok(n, `no node '${label}' in ${nodes.map((x) => x.label).join(', ')}`);
  return n;
};

describe('extension: the KVM views', () => {
  it('APICv Inhibits: the word, every v6.3 reason by bit, the set one marked, with who set it and the host stack', () => {
    // S3: vCPU 0 writes its xAPIC ID: APIC_ID_MODIFIED is set by kvm_recalculate_apic_map
    const s = stateOf('apicv-update-all-vcpus.vasm', (m) => m.kvm.arch.apicv_inhibit_reasons !== 0);
    const nodes = inhibitNodes(s);
    const word = nodes[0];
    assert.equal(word.label, 'apicv_inhibit_reasons');
    assert.equal(word.description, '0x20 · APICv inhibited');
    const reasons = nodes.slice(1, -1);
    assert.equal(reasons.length, 12);
    assert.deepEqual(reasons.map((r) => r.description?.split(' ')[1]), Array.from({ length: 12 }, (_, i) => String(i)));
    assert.deepEqual(reasons.filter((r) => r.icon === 'set').map((r) => r.label), ['APIC_ID_MODIFIED']);
    const set = find(reasons, 'APIC_ID_MODIFIED');
    assert.equal(set.description, 'bit 5 · set');
    const last = set.children![0];
    assert.match(last.label, /^set by vCPU 0, event \d+$/);
    const frames = last.children!.map((f) => f.label);
    assert.equal(frames[0], '__kvm_set_or_clear_apicv_inhibit');
    assert.ok(frames.includes('kvm_recalculate_apic_map'), frames.join(' <- '));
    assert.equal(find(reasons, 'BLOCKIRQ').children, undefined, 'never changed: nothing to expand');
    const slot = nodes[nodes.length - 1];
    assert.equal(slot.label, 'APIC-access memslot');
    assert.ok(slot.children!.some((c) => c.label === 'slot 32765' && /0x00000000fee00000 · 4096 bytes · private/.test(c.description ?? '')));
    // ids are stable: an expanded node stays expanded across refreshes
    assert.deepEqual(inhibitNodes(s).map((n) => n.id), nodes.map((n) => n.id));
  });

  it('vCPUs (KVM): mode, APIC, SRCU and requests per vCPU; a depth the kernel does not expect is a warning', () => {
    const s = stateOf('apicv-update-all-vcpus.vasm', (m) => m.kvm.vcpus.some((v) => v.pendingRequestNames().includes('KVM_REQ_APICV_UPDATE')));
    const nodes = vcpuNodes(s);
    assert.deepEqual(nodes.map((n) => n.label), ['vCPU 0', 'vCPU 1', 'vCPU 2', 'vCPU 3']);
    const pending = nodes.filter((n) => find(n.children!, 'requests').description!.includes('KVM_REQ_APICV_UPDATE'));
    assert.ok(pending.length > 0);
    for (const n of pending) assert.match(n.description!, /^xAPIC · APICv (in)?active · SRCU [01] · \d+ requests?/);
    for (const n of nodes) {
      assert.equal(n.icon, 'vcpu', 'the model keeps srcu_depth as the kernel expects');
      assert.deepEqual(n.children!.map((c) => c.label), ['state', 'vcpu->mode', 'apic', 'srcu_depth', 'requests', 'host stack']);
    }
    // the same state with vCPU 1 holding SRCU where the kernel expects none
    const bad: AvicState = { ...s, vcpus: s.vcpus.map((v) => (v.id === 1 ? { ...v, srcuDepth: v.expectedSrcuDepth + 1 } : v)) };
    const warned = vcpuNodes(bad)[1];
    assert.equal(warned.icon, 'warning');
    assert.match(warned.tooltip!, /^srcu_depth is \d+ where the kernel expects \d+$/);
    assert.equal(find(warned.children!, 'srcu_depth').icon, 'warning');
  });

  it('after the run: the word is clear again, and the views say AVIC is off when it is', () => {
    const s = stateOf('apicv-update-all-vcpus.vasm');
    const nodes = inhibitNodes(s);
    assert.equal(nodes[0].description, '0x0 · APICv activated');
    assert.match(find(nodes, 'APIC_ID_MODIFIED').children![0].label, /^cleared by vCPU 0, event \d+$/);
    const off = inhibitNodes({ ...s, vm: { ...s.vm, avic: false } });
    assert.equal(off[0].description, '0x0 · AVIC off');
    // vCPU 0 cleared the inhibit and ran on; a vCPU that had left for good keeps the request it never serviced
    const after = vcpuNodes(s);
    assert.equal(after[0].description, 'xAPIC · APICv active · SRCU 0 · done');
    for (const n of after) assert.match(n.description!, /^xAPIC · APICv (active · SRCU 0|inactive · SRCU 0 · 1 request) · done$/);
  });
});

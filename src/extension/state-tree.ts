// What the two KVM views show, derived from one `avic/state` body (debug/avic-state.ts): the
// APICv inhibit bitmap (kvm->arch.apicv_inhibit_reasons bit by bit, with the call that last
// changed each bit and its host stack) and the vCPUs (vcpu->mode, APIC mode, APICv, pending
// requests, srcu_depth against what the kernel expects there, host stack). Plain data with no
// `vscode` import, so it is tested without an editor; state-views.ts turns it into tree items.

import type { AvicState, AvicVcpuState } from '../debug/avic-state';

export type StateIcon = 'set' | 'clear' | 'word' | 'vcpu' | 'warning' | 'frame' | 'field' | 'memslot';

export interface StateNode {
  /** stable across refreshes, so an expanded node stays expanded */
  readonly id: string;
  readonly label: string;
  readonly description?: string;
  readonly tooltip?: string;
  readonly icon: StateIcon;
  readonly children?: readonly StateNode[];
}

const hex = (n: number): string => '0x' + n.toString(16);

function stack(prefix: string, frames: readonly string[]): StateNode[] {
  return frames.map((fn, i) => ({ id: `${prefix}/${i}`, label: fn, icon: 'frame' as const }));
}

/** The inhibit view: the word, then each reason of the modelled enum by bit, then the APIC-access memslot. */
export function inhibitNodes(s: AvicState): StateNode[] {
  const vm = s.vm;
  const word = vm.inhibitTable.reduce((w, r) => (r.set ? w | (1 << r.bit) : w), 0) >>> 0;
  const nodes: StateNode[] = [{
    id: 'word',
    label: 'apicv_inhibit_reasons',
    description: `${hex(word)}${vm.avic ? (vm.apicvActivated ? ' · APICv activated' : ' · APICv inhibited') : ' · AVIC off'}`,
    tooltip: `kvm->arch.apicv_inhibit_reasons = ${hex(word)}${vm.apicvInhibits.length ? ` (${vm.apicvInhibits.join(' | ')})` : ''}\n` +
      `design ${vm.design}, Linux ${vm.kernel}; avic ${vm.avic}, x2avic ${vm.x2avic}, nested ${vm.nested}`,
    icon: 'word',
  }];
  for (const r of vm.inhibitTable) {
    const last = r.lastChange;
    const by = last ? `${last.vcpu === null ? 'the VMM' : `vCPU ${last.vcpu}`}, event ${last.seq}` : undefined;
    nodes.push({
      id: `reason/${r.reason}`,
      label: r.reason,
      description: `bit ${r.bit}${r.set ? ' · set' : ''}`,
      tooltip: `APICV_INHIBIT_REASON_${r.reason} (bit ${r.bit}) is ${r.set ? 'set' : 'clear'}` + (by ? `; last changed by ${by}` : '; never changed in this run'),
      icon: r.set ? 'set' : 'clear',
      children: last ? [{
        id: `reason/${r.reason}/last`,
        label: `${r.set ? 'set' : 'cleared'} by ${by}`,
        icon: 'field',
        children: stack(`reason/${r.reason}/last`, last.hostStack),
      }] : undefined,
    });
  }
  const slot = vm.apicAccessMemslot;
  nodes.push({
    id: 'memslot',
    label: 'APIC-access memslot',
    description: `${slot.enabled ? 'enabled' : 'disabled'}${slot.inhibited ? ' · inhibited' : ''}`,
    tooltip: `kvm->arch.apic_access_memslot_enabled = ${slot.enabled}, apic_access_memslot_inhibited = ${slot.inhibited}`,
    icon: 'memslot',
    children: vm.memslots.map((m) => ({
      id: `memslot/${m.id}`, label: `slot ${m.id}`, description: `${m.gpa} · ${m.size} bytes${m.private ? ' · private' : ''}`, icon: 'field' as const,
    })),
  });
  return nodes;
}

/** srcu_depth as the kernel would judge it here: a note when it differs from what is expected */
function srcuMismatch(v: AvicVcpuState): string | undefined {
  return v.srcuDepth === v.expectedSrcuDepth ? undefined : `srcu_depth is ${v.srcuDepth} where the kernel expects ${v.expectedSrcuDepth}`;
}

/** The vCPU view: one node per vCPU with its KVM state as children. */
export function vcpuNodes(s: AvicState): StateNode[] {
  return s.vcpus.map((v) => {
    const apic = v.apic.mode === 'x2apic' ? 'x2APIC' : v.apic.mode === 'xapic' ? 'xAPIC' : `APIC ${v.apic.mode}`;
    const apicv = s.vm.avic ? (v.apic.apicvActive ? 'APICv active' : 'APICv inactive') : undefined;
    const mismatch = srcuMismatch(v);
    const id = `vcpu/${v.id}`;
    const field = (name: string, label: string, description: string, tooltip?: string, icon: StateIcon = 'field'): StateNode =>
      ({ id: `${id}/${name}`, label, description, tooltip, icon });
    const children: StateNode[] = [
      field('state', 'state', v.state),
      field('mode', 'vcpu->mode', v.mode),
      field('apic', 'apic', [apic, apicv].filter(Boolean).join(' · ')),
      field('srcu', 'srcu_depth', `${v.srcuDepth} (expected ${v.expectedSrcuDepth}) · kvm->srcu readers ${v.srcuReaders}`, mismatch, mismatch ? 'warning' : 'field'),
      field('requests', 'requests', v.requests.length ? v.requests.join(', ') : 'none'),
    ];
    if (v.inhibits.length) children.push(field('inhibits', 'vCPU inhibits', v.inhibits.join(', ')));
    children.push({
      id: `${id}/stack`, label: 'host stack', description: v.hostStack.length ? v.hostStack[0] : 'in guest or idle', icon: 'field',
      children: v.hostStack.length ? stack(`${id}/stack`, v.hostStack) : undefined,
    });
    return {
      id,
      label: `vCPU ${v.id}`,
      description: [apic, apicv, `SRCU ${v.srcuDepth}`, v.requests.length ? `${v.requests.length} request${v.requests.length > 1 ? 's' : ''}` : '', v.state !== 'running' ? v.state : '']
        .filter(Boolean).join(' · '),
      tooltip: mismatch,
      icon: mismatch ? 'warning' : 'vcpu',
      children,
    };
  });
}

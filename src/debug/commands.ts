// The Debug Console's commands (contracts/dap.md, "Console commands"): `hostaction`, `inhibit`,
// `request`, `irq`, `help`. Each runs as host code in a task, exactly as the model's own paths
// run (a host action in the vCPU's thread, the others in the VMM thread), is logged as a
// `host-action` event, and answers when its task has finished, or says what it waits for.

import { apic_x2apic_mode, kvm_set_or_clear_apicv_inhibit } from '../machine/kvm/apicv';
import { APICV_INHIBIT_NAMES, KVM_REQUESTS, kvm_make_request } from '../machine/kvm/kvm_host';
import { kvm_vcpu_kick } from '../machine/kvm/kvm_main';
import { kvm_irq_delivery_to_apic, kvm_xapic_id } from '../machine/kvm/lapic';
import { kfn } from '../machine/kvm/task';
import { type ActionCode, HOST_ACTION_NAMES, type HostActionSpec, parseHostAction } from '../machine/kvm/userspace';
import type { AvicRuntime } from './runtime';

export const COMMANDS = ['hostaction', 'inhibit', 'request', 'irq', 'help'] as const;

export const HELP = `Commands (each runs as host code and is logged as a host-action event):
  hostaction ACTION=ARG[:VCPU]   a userspace ioctl, as --host-action runs it: ${HOST_ACTION_NAMES.join(', ')}
                                 e.g. hostaction set-apic-base-msrs=0xfee00c00:1
  inhibit set|clear REASON       kvm_set_or_clear_apicv_inhibit from a task of no vCPU (e.g. inhibit set BLOCKIRQ)
  request VCPU KVM_REQ_...       kvm_make_request and a kick, from a task of no vCPU
  irq VCPU VECTOR                a fixed interrupt to the vCPU's local APIC, as KVM_SIGNAL_MSI delivers it
  help                           this text
Anything else is an expression: registers (rax, eax, rip, cr3), labels, numbers, + - * & | << >>,
comparisons, and memory: [rsp+8], dword [counter].`;

export function isCommand(text: string): boolean {
  const word = text.trim().split(/\s+/)[0];
  return (COMMANDS as readonly string[]).includes(word);
}

function num(text: string | undefined): number | undefined {
  if (text === undefined || !/^(0x[0-9a-f]+|\d+)$/i.test(text)) return undefined;
  return Number(text);
}

/** Runs a console command; returns the text for the Debug Console (an error starts with "error:"). */
export function runCommand(rt: AvicRuntime, text: string, frameVcpu: number | null): string {
  const m = rt.machine;
  const [word, ...args] = text.trim().split(/\s+/);
  const consoleSpec = (vcpu: number | null): HostActionSpec => ({ trigger: { kind: 'step', step: m.steps }, action: 'console', arg: text.trim(), vcpu, text: text.trim() });
  const vmm = m.tasks[m.tasks.length - 1];
  const runCode = (vcpu: number | null, code: ActionCode): string => {
    const q = m.vmm.queue(vmm, consoleSpec(vcpu), null, null, code);
    const waiting = rt.runAction(vcpu, () => q.done);
    if (waiting) return `${text.trim()}: queued; it runs when execution resumes. ${waiting}`;
    return q.error ? `error: ${q.error}` : `${text.trim()}: done`;
  };
  switch (word) {
    case 'help':
      return HELP;
    case 'hostaction': {
      if (args.length !== 1) return 'error: usage: hostaction ACTION=ARG[:VCPU], e.g. hostaction set-apic-base-msrs=0xfee00c00:1';
      let spec: HostActionSpec;
      try {
        spec = parseHostAction(`step=0:${args[0]}`);
      } catch (e) {
        return `error: ${(e as Error).message.replace('--host-action step=0:', 'hostaction ')}`;
      }
      const vcpu = spec.vcpu ?? frameVcpu ?? 0;
      if (vcpu >= m.cpus.length) return `error: there is no vCPU ${vcpu}`;
      const q = m.vmm.queue(vmm, { ...spec, vcpu, text: args[0] }, null, null);
      if (q.done && q.error) return `error: ${q.error}`;
      const waiting = rt.runAction(q.target, () => q.done);
      if (waiting) return `${args[0]}: queued; it runs when execution resumes. ${waiting}`;
      return q.error ? `error: ${q.error}` : `${args[0]}: done on ${q.target === null ? 'the VMM' : `vCPU ${q.target}`}`;
    }
    case 'inhibit': {
      const set = args[0] === 'set' ? true : args[0] === 'clear' ? false : undefined;
      const reason = (args[1] ?? '').replace(/^APICV_INHIBIT_REASON_/, '');
      const bit = (APICV_INHIBIT_NAMES as readonly string[]).indexOf(reason);
      if (set === undefined || bit < 0 || args.length !== 2) return `error: usage: inhibit set|clear REASON (one of ${APICV_INHIBIT_NAMES.slice(0, 12).join(', ')})`;
      return runCode(null, (t) => kfn(t, 'avic_debugger_inhibit', function* () {
        yield* kvm_set_or_clear_apicv_inhibit(t, m.kvm, bit, set);
        return undefined;
      }));
    }
    case 'request': {
      const vcpu = num(args[0]);
      const req = KVM_REQUESTS[args[1] ?? ''];
      if (vcpu === undefined || vcpu >= m.cpus.length || req === undefined || args.length !== 2) return 'error: usage: request VCPU KVM_REQ_NAME, e.g. request 1 KVM_REQ_APICV_UPDATE';
      const target = m.kvm.vcpus[vcpu];
      return runCode(null, (t) => kfn(t, 'avic_debugger_request', function* () {
        yield* kvm_make_request(t, req, target);
        yield* kvm_vcpu_kick(t, target);
        return undefined;
      }));
    }
    case 'irq': {
      const vcpu = num(args[0]);
      const vector = num(args[1]);
      if (vcpu === undefined || vcpu >= m.cpus.length || vector === undefined || vector > 255 || args.length !== 2) return 'error: usage: irq VCPU VECTOR, e.g. irq 0 0x40';
      const target = m.kvm.vcpus[vcpu];
      const dest = apic_x2apic_mode(target) ? target.vcpu_id : kvm_xapic_id(target.apic);
      return runCode(null, (t) => kfn(t, 'avic_debugger_irq', function* () {
        yield* kvm_irq_delivery_to_apic(t, m.kvm, null, { vector, delivery_mode: 0, dest_mode_logical: false, level: true, trig_mode: false, shorthand: 0, dest_id: dest });
        return undefined;
      }));
    }
    default:
      return `error: unknown command '${word}' (try help)`;
  }
}

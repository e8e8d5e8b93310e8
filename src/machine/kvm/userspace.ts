// Userspace: what a VMM (QEMU's vCPU threads, its main loop) does around KVM here. Each vCPU
// thread loops on KVM_RUN and handles the exits that reach userspace: the console port 0xE9,
// the done port 0xF4, the host-action trigger port 0xF0, unhandled port I/O and MMIO (reads see
// all-ones), shutdown. Host actions (contracts/kvm-model.md) are userspace ioctls: a vCPU ioctl
// runs in its vCPU's thread once that thread is out of KVM_RUN (a signal kicks it out); a VM
// ioctl runs in the VMM thread.

import { type Kvm, type KvmVcpu } from './kvm_host';
import { kvm_vcpu_wake_up } from './kvm_main';
import { type HostCode, type Task, waitUntil } from './task';
import {
  kvm_ioctl_set_guest_debug, kvm_ioctl_set_lapic_id, kvm_ioctl_set_msrs, kvm_ioctl_set_sregs_apic_base, kvm_vcpu_ioctl_run,
  kvm_vm_ioctl_signal_msi,
} from './x86';
import { MSR_IA32_APICBASE } from './apicdef';

export const PORT_CONSOLE = 0xe9;
export const PORT_DONE = 0xf4;
export const PORT_HOST_ACTION = 0xf0;
export const USERSPACE_PORTS: ReadonlySet<number> = new Set([PORT_CONSOLE, PORT_DONE, PORT_HOST_ACTION]);

export const HOST_ACTION_NAMES = ['set-apic-base-msrs', 'set-apic-base-sregs', 'set-lapic-id', 'guest-debug-blockirq', 'msi'] as const;
export type HostActionName = (typeof HOST_ACTION_NAMES)[number];

export type HostTrigger = { readonly kind: 'step'; readonly step: number } | { readonly kind: 'out'; readonly value: number };

/** `--host-action TRIGGER:ACTION[:VCPU]` (contracts/run-json.md) */
export interface HostActionSpec {
  readonly trigger: HostTrigger;
  /** `console`: a debugger console command (its host code comes with the queued action) */
  readonly action: HostActionName | 'console';
  /** the argument as written: a number, on/off, or APICID/VECTOR */
  readonly arg: string;
  /** null: the vCPU that wrote the trigger, or 0 */
  readonly vcpu: number | null;
  /** the text as given, for messages */
  readonly text: string;
}

export function isVmIoctl(a: HostActionName | 'console'): boolean {
  return a === 'msi';
}

/** Host code the debugger runs as an action (console commands): returns an error message or undefined. */
export type ActionCode = (t: Task) => HostCode<string | undefined>;

/** A host action queued for a task, and whether it has finished. */
export interface QueuedAction {
  readonly spec: HostActionSpec;
  /** the debugger's own host code, run instead of `spec`'s ioctl */
  readonly code?: ActionCode;
  readonly target: number | null;
  readonly trigger: number | null;
  done: boolean;
  error?: string;
}

/** What the VMM reports back to the machine. */
export interface VmmEvents {
  console(byte: number): void;
  done(vcpu: KvmVcpu): void;
  shutdown(vcpu: KvmVcpu): void;
  internalError(vcpu: KvmVcpu, message: string): void;
  /** an action could not run (bad argument for this vCPU, the ioctl failed) */
  actionFailed(action: QueuedAction): void;
}

export class Vmm {
  /** actions waiting for each vCPU thread, and for the VMM thread */
  private readonly vcpuQueues: QueuedAction[][];
  private readonly vmmQueue: QueuedAction[] = [];
  readonly finished: boolean[];

  constructor(private readonly kvm: Kvm, private readonly specs: readonly HostActionSpec[], private readonly out: VmmEvents) {
    this.vcpuQueues = kvm.vcpus.map(() => []);
    this.finished = kvm.vcpus.map(() => false);
  }

  get vmmHasWork(): boolean {
    return this.vmmQueue.length > 0;
  }

  /** Queues an action (from a trigger); a vCPU target is signalled out of KVM_RUN. */
  queue(t: Task | null, spec: HostActionSpec, writer: number | null, trigger: number | null, code?: ActionCode): QueuedAction {
    const target = isVmIoctl(spec.action) || (code && spec.vcpu === null) ? null : spec.vcpu ?? writer ?? 0;
    const q: QueuedAction = { spec, code, target, trigger, done: false };
    t?.emit({ kind: 'host-action', trigger, action: spec.text, target });
    if (target === null) {
      this.vmmQueue.push(q);
      return q;
    }
    const vcpu = this.kvm.vcpus[target];
    if (!vcpu || this.finished[target]) {
      q.done = true;
      q.error = !vcpu ? `host action ${spec.text}: there is no vCPU ${target}` : `host action ${spec.text}: vCPU ${target} is done`;
      this.out.actionFailed(q);
      return q;
    }
    this.vcpuQueues[target].push(q);
    this.signal(t, vcpu);
    return q;
  }

  /** pthread_kill to the vCPU thread: a pending signal, a wake-up, an IPI if it is in guest mode */
  private signal(t: Task | null, vcpu: KvmVcpu): void {
    vcpu.signalPending = true;
    if (t) kvm_vcpu_wake_up(t, vcpu);
    else if (vcpu.blocking) vcpu.woken = true;
    if (vcpu.irqsDisabled) {
      vcpu.ipiPending = true;
      vcpu.cpu.eventPending = true;
    }
  }

  /** Step triggers due at `step` (run by the machine before that step). */
  stepTriggers(step: number): HostActionSpec[] {
    return this.specs.filter((s) => s.trigger.kind === 'step' && s.trigger.step === step);
  }

  /** The userspace loop of one vCPU thread. */
  *vcpuThread(t: Task, vcpu: KvmVcpu): HostCode {
    const queue = this.vcpuQueues[vcpu.vcpu_id];
    for (;;) {
      while (queue.length > 0) {
        const q = queue.shift()!;
        yield* this.runAction(t, q);
      }
      vcpu.signalPending = false;
      const exit = yield* kvm_vcpu_ioctl_run(t, vcpu);
      switch (exit.reason) {
        case 'KVM_EXIT_IO':
          if (!exit.write) break;
          if (exit.port === PORT_CONSOLE) {
            for (let k = 0; k < exit.size; k++) this.out.console((exit.data >>> (8 * k)) & 0xff);
          } else if (exit.port === PORT_DONE) {
            this.finished[vcpu.vcpu_id] = true;
            this.out.done(vcpu);
            return;
          } else if (exit.port === PORT_HOST_ACTION) {
            const value = exit.data & 0xff;
            const mine = this.specs.filter((s) => s.trigger.kind === 'out' && s.trigger.value === value);
            const waits: QueuedAction[] = [];
            for (const spec of mine) {
              const q = this.queue(t, spec, vcpu.vcpu_id, value);
              if (q.target !== vcpu.vcpu_id) waits.push(q);
            }
            // the writer stays out of KVM_RUN until actions it triggered elsewhere have finished
            if (waits.length > 0) {
              yield* waitUntil(() => waits.every((q) => q.done), 'host actions to finish', 'userspace',
                () => waits.filter((q) => !q.done && q.target !== null).map((q) => this.kvm.vcpus[q.target!].task));
            }
          }
          break;
        case 'KVM_EXIT_SHUTDOWN':
          this.out.shutdown(vcpu);
          return;
        case 'KVM_EXIT_INTERNAL_ERROR':
          this.out.internalError(vcpu, exit.message);
          return;
        default:
          break; // KVM_EXIT_MMIO (unhandled: reads saw all-ones, writes dropped), KVM_EXIT_INTR
      }
    }
  }

  /** The VMM thread: VM ioctls as they are queued. */
  *vmmThread(t: Task): HostCode {
    for (;;) {
      yield* waitUntil(() => this.vmmQueue.length > 0, 'a VM ioctl', 'userspace');
      const q = this.vmmQueue.shift()!;
      yield* this.runAction(t, q);
    }
  }

  private *runAction(t: Task, q: QueuedAction): HostCode {
    const kvm = this.kvm;
    const { action, arg } = q.spec;
    let error: string | undefined;
    const vcpu = q.target === null ? null : kvm.vcpus[q.target];
    if (q.code) {
      q.error = yield* q.code(t);
      q.done = true;
      return;
    }
    switch (action) {
      case 'set-apic-base-msrs':
        error = yield* kvm_ioctl_set_msrs(t, vcpu!, MSR_IA32_APICBASE, BigInt(arg));
        break;
      case 'set-apic-base-sregs':
        error = yield* kvm_ioctl_set_sregs_apic_base(t, vcpu!, BigInt(arg));
        break;
      case 'set-lapic-id':
        error = yield* kvm_ioctl_set_lapic_id(t, vcpu!, Number(arg));
        break;
      case 'guest-debug-blockirq':
        error = yield* kvm_ioctl_set_guest_debug(t, vcpu!, arg === 'on');
        break;
      case 'msi': {
        const [id, vector] = arg.split('/').map((x) => Number(x));
        error = yield* kvm_vm_ioctl_signal_msi(t, kvm, id, vector);
        break;
      }
    }
    q.done = true;
    if (error !== undefined) {
      q.error = error;
      this.out.actionFailed(q);
    }
  }
}

/** Parses `TRIGGER:ACTION=ARG[:VCPU]`; throws Error with a message naming what is wrong. */
export function parseHostAction(text: string): HostActionSpec {
  const m = /^(step|out)=([^:]+):([a-z-]+)=([^:]+)(?::(\d+))?$/.exec(text);
  if (!m) throw new Error(`--host-action ${text}: expected TRIGGER:ACTION=ARG[:VCPU], e.g. out=1:set-apic-base-msrs=0xfee00c00:1`);
  const [, kind, tv, action, arg, vcpu] = m;
  const num = (s: string) => (/^(0x[0-9a-f]+|\d+)$/i.test(s) ? Number(s) : NaN);
  const trigger: HostTrigger = kind === 'step' ? { kind: 'step', step: num(tv) } : { kind: 'out', value: num(tv) };
  if (trigger.kind === 'step' ? !(trigger.step >= 0) : !(trigger.value >= 0 && trigger.value <= 0xff)) {
    throw new Error(`--host-action ${text}: ${kind}=${tv} is not a ${kind === 'step' ? 'step number' : 'byte value'}`);
  }
  if (!(HOST_ACTION_NAMES as readonly string[]).includes(action)) {
    throw new Error(`--host-action ${text}: unknown action '${action}' (one of ${HOST_ACTION_NAMES.join(', ')})`);
  }
  const a = action as HostActionName;
  const okArg =
    a === 'guest-debug-blockirq' ? arg === 'on' || arg === 'off'
      : a === 'msi' ? /^(0x[0-9a-f]+|\d+)\/(0x[0-9a-f]+|\d+)$/i.test(arg) && Number(arg.split('/')[1]) <= 0xff
        : /^(0x[0-9a-f]+|\d+)$/i.test(arg);
  if (!okArg) throw new Error(`--host-action ${text}: bad argument '${arg}' for ${a}`);
  return { trigger, action: a, arg, vcpu: vcpu === undefined ? null : Number(vcpu), text };
}


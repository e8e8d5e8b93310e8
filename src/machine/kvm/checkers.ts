// The checkers of contracts/kvm-model.md: what the kernel would WARN on (PROVE_RCU's vCPU SRCU
// checks, lockdep's synchronize_srcu-in-read-section and lock-order reports, the APICv state
// WARN in vcpu_enter_guest), the thread's memslot double toggle, an x2APIC vCPU reading the
// xAPIC page through AVIC, and host tasks that can never run again. All but `deadlock` read the
// event log only, so they can be run over any log, recorded or synthetic (`checkLog`).

import type { LockName, MachineEvent } from '../events';
import type { EventLog } from '../events';
import { APIC_ACCESS_PAGE_PRIVATE_MEMSLOT } from './kvm_host';
import type { Task } from './task';

export const VIOLATION_KINDS = [
  'srcu-unlock-unbalanced', 'synchronize-srcu-in-read-section', 'memslot-double-toggle', 'apicv-state-mismatch-at-entry',
  'xapic-access-in-x2apic-mode', 'lock-order-inversion', 'deadlock',
] as const;

export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export interface Violation {
  readonly kind: ViolationKind;
  readonly vcpu: number | null;
  /** the event that tripped it */
  readonly seq: number;
  readonly message: string;
  readonly hostStack: readonly string[];
}

type LockClass = 'slots_lock' | 'apicv_update_lock' | 'kvm->srcu';

interface Edge {
  readonly heldRecursive: boolean;
  readonly acquiredRecursive: boolean;
  readonly seq: number;
}

/**
 * Lockdep over the contract's three lock classes, with SRCU read sections as recursive reads:
 * a new dependency closes a cycle only along a strong path (no dependency that acquires a lock
 * as a recursive reader followed by one that holds it as a recursive reader), so SRCU read
 * sections nest freely and only synchronize_srcu (a write acquisition) can close a cycle.
 */
class Lockdep {
  private readonly held = new Map<string, { cls: LockClass; recursive: boolean }[]>();
  private readonly edges = new Map<LockClass, Map<LockClass, Edge[]>>();

  /** Returns a description of the cycle the acquisition closes, if any. */
  acquire(task: string, cls: LockClass, recursive: boolean, momentary: boolean, seq: number): string | undefined {
    const list = this.held.get(task) ?? [];
    let cycle: string | undefined;
    for (const h of list) {
      if (h.cls === cls && recursive && h.recursive) continue;
      if (!cycle) {
        const path = this.strongPath(cls, h.cls, recursive, h.recursive);
        if (path) cycle = [...path, cls].join(' -> ');
      }
      this.addEdge(h.cls, cls, { heldRecursive: h.recursive, acquiredRecursive: recursive, seq });
    }
    if (!momentary) {
      list.push({ cls, recursive });
      this.held.set(task, list);
    }
    return cycle;
  }

  release(task: string, cls: LockClass): void {
    const list = this.held.get(task);
    if (!list) return;
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i].cls === cls) {
        list.splice(i, 1);
        return;
      }
    }
  }

  private addEdge(from: LockClass, to: LockClass, e: Edge): void {
    let m = this.edges.get(from);
    if (!m) this.edges.set(from, (m = new Map()));
    const list = m.get(to) ?? [];
    if (!list.some((x) => x.heldRecursive === e.heldRecursive && x.acquiredRecursive === e.acquiredRecursive)) list.push(e);
    m.set(to, list);
  }

  /**
   * A strong path from `from` to `to` that the new dependency to -> from (held as
   * `toHeldRecursive`, acquiring `from` as `fromRecursive`) closes into a strong cycle.
   */
  private strongPath(from: LockClass, to: LockClass, fromRecursive: boolean, toHeldRecursive: boolean): LockClass[] | undefined {
    type State = { node: LockClass; lastAcquiredRecursive: boolean; path: LockClass[] };
    const seen = new Set<string>();
    const queue: State[] = [{ node: from, lastAcquiredRecursive: fromRecursive, path: [from] }];
    while (queue.length > 0) {
      const s = queue.shift()!;
      for (const [next, edges] of this.edges.get(s.node) ?? []) {
        for (const e of edges) {
          if (s.lastAcquiredRecursive && e.heldRecursive) continue;
          const path = [...s.path, next];
          if (next === to && !(e.acquiredRecursive && toHeldRecursive)) return path;
          const key = `${next}:${e.acquiredRecursive}`;
          if (seen.has(key)) continue;
          seen.add(key);
          queue.push({ node: next, lastAcquiredRecursive: e.acquiredRecursive, path });
        }
      }
    }
    return undefined;
  }
}

const CONTRACT_LOCKS: ReadonlySet<LockName> = new Set<LockName>(['slots_lock', 'apicv_update_lock']);

/** Runs the log checkers over events one at a time. */
export class LogChecker {
  private readonly lockdep = new Lockdep();
  /** memslot-change calls on the APIC-access slot per transition */
  private readonly slotCalls = new Map<number, number>();

  constructor(private readonly report: (v: Violation) => void) {}

  check(e: MachineEvent): void {
    const task = e.vcpu === null ? 'vmm' : `vcpu${e.vcpu}`;
    const fire = (kind: ViolationKind, message: string) =>
      this.report({ kind, vcpu: e.vcpu, seq: e.seq, message, hostStack: e.hostStack ?? [] });
    switch (e.kind) {
      case 'srcu-lock':
        if (!e.raw && e.depth !== 1) fire('srcu-unlock-unbalanced', `Illegal vCPU srcu_idx LOCK: kvm_vcpu_srcu_read_lock with srcu_depth ${e.depth - 1}`);
        this.lockOrder(task, 'kvm->srcu', true, false, e.seq, fire);
        break;
      case 'srcu-unlock':
        if (!e.raw && e.depth !== 0) fire('srcu-unlock-unbalanced', `Illegal vCPU srcu_idx UNLOCK: kvm_vcpu_srcu_read_unlock left srcu_depth ${e.depth}`);
        this.lockdep.release(task, 'kvm->srcu');
        break;
      case 'srcu-sync':
        if (e.readers > 0) {
          fire('synchronize-srcu-in-read-section', `${e.expedited ? 'synchronize_srcu_expedited' : 'synchronize_srcu'}(&kvm->srcu) inside ${e.readers} kvm->srcu read section${e.readers > 1 ? 's' : ''} of the same task: it waits for itself`);
        }
        this.lockOrder(task, 'kvm->srcu', false, true, e.seq, fire);
        break;
      case 'lock-acquire':
        if (CONTRACT_LOCKS.has(e.lock)) this.lockOrder(task, e.lock as LockClass, false, false, e.seq, fire);
        break;
      case 'lock-release':
        if (CONTRACT_LOCKS.has(e.lock)) this.lockdep.release(task, e.lock as LockClass);
        break;
      case 'memslot-change':
        if (e.slot === APIC_ACCESS_PAGE_PRIVATE_MEMSLOT && e.transition !== null) {
          const n = (this.slotCalls.get(e.transition) ?? 0) + 1;
          this.slotCalls.set(e.transition, n);
          if (n > 1) {
            fire('memslot-double-toggle', `__x86_set_memory_region on APIC_ACCESS_PAGE_PRIVATE_MEMSLOT (${e.create ? 'create' : 'delete'}${e.changed ? '' : ', a no-op this time'}) is call ${n} for APICv transition #${e.transition}`);
          }
        }
        break;
      case 'vmentry':
        if (e.activated !== e.apicvActive && !e.apicDisabled) {
          fire('apicv-state-mismatch-at-entry', `WARN in vcpu_enter_guest: kvm_vcpu_apicv_activated() is ${e.activated} but apic->apicv_active is ${e.apicvActive}`);
        }
        break;
      case 'apic-page-access':
        if (e.path === 'avic-backing-page' && e.x2apic) {
          fire('xapic-access-in-x2apic-mode', `a ${e.write ? 'store to' : 'load from'} 0x${e.gpa.toString(16)} was served by AVIC's backing page while vCPU ${e.vcpu} is in x2APIC mode`);
        }
        break;
      default:
        break;
    }
  }

  private lockOrder(task: string, cls: LockClass, recursive: boolean, momentary: boolean, seq: number, fire: (k: ViolationKind, m: string) => void): void {
    const cycle = this.lockdep.acquire(task, cls, recursive, momentary, seq);
    if (cycle) fire('lock-order-inversion', `possible circular locking dependency: ${cycle} (${cls}${momentary ? ' by synchronize_srcu' : recursive ? ' for read' : ''})`);
  }
}

/** Checks a whole log (recorded or synthetic). */
export function checkLog(events: readonly MachineEvent[]): Violation[] {
  const out: Violation[] = [];
  const c = new LogChecker((v) => out.push(v));
  for (const e of events) c.check(e);
  return out;
}

/** The checkers attached to a live machine: violations are recorded and logged as events. */
export class Checkers {
  readonly violations: Violation[] = [];
  private readonly checker: LogChecker;

  constructor(private readonly log: EventLog, _kvm: unknown) {
    this.checker = new LogChecker((v) => this.record(v, log));
    log.onEvent((e) => {
      if (e.kind !== 'violation') this.checker.check(e);
    });
  }

  private record(v: Violation, log: EventLog): void {
    this.violations.push(v);
    log.add({ kind: 'violation', vcpu: v.vcpu, rip: 0, hostStack: v.hostStack, violation: v.kind, message: v.message });
  }

  /** Host tasks wait on each other, or on what no runnable task can release. */
  deadlock(stuck: readonly Task[]): void {
    if (this.violations.some((v) => v.kind === 'deadlock')) return;
    const lines = stuck.map((t) => {
      const p = t.pending;
      const what = p?.kind === 'wait' ? p.what : '?';
      const holders = p?.kind === 'wait' ? p.holders().map((h) => h.name) : [];
      const stack = t.hostStack();
      const where = stack.length === 0 ? 'userspace' : stack.length === 1 ? stack[0] : `${stack[0]} from ${stack[1]}`;
      return `${t.name} waits for ${what}${holders.length ? ` (held by ${holders.join(', ')})` : ''} in ${where}`;
    });
    const first = stuck[0];
    this.record({
      kind: 'deadlock', vcpu: first.vcpu, seq: this.log.length + 1, message: lines.join('; '), hostStack: first.hostStack(),
    }, this.log);
  }
}

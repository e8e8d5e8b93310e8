// The event log: every observable thing the machine does, in order, with a sequence number, the
// vCPU (null for a task of no vCPU), the guest RIP and, for host code, the host call stack
// (innermost first). Breakpoints, views, traces, the CLI's JSON, the checkers and reverse
// execution all read it; nothing keeps a second copy of what it records.

export type EventKind =
  | 'pio' | 'mmio-read' | 'mmio-write' | 'apic-page-access' | 'msr-read' | 'msr-write' | 'halt' | 'sched' | 'exception' | 'done'
  | 'host-action' | 'request-make' | 'request-check' | 'kick' | 'wakeup' | 'inhibit-change' | 'apicv-update' | 'memslot-change'
  | 'srcu-lock' | 'srcu-unlock' | 'srcu-sync' | 'lock-acquire' | 'lock-release' | 'vmexit' | 'vmentry' | 'ipi' | 'irq-accept'
  | 'avic-incomplete-ipi' | 'avic-unaccelerated-access' | 'avic-doorbell' | 'violation';

interface Base<K extends EventKind> {
  readonly kind: K;
  readonly seq: number;
  /** scheduler step at which it happened */
  readonly step: number;
  readonly vcpu: number | null;
  readonly rip: number;
  /** kernel functions, innermost first, for events that host code emits */
  readonly hostStack?: readonly string[];
}

/** Who serves a guest access to guest-physical memory outside RAM. */
export type MmioPath = 'emulated' | 'unhandled';

/** Who serves a guest access to the APIC-access page without an exit. */
export type ApicPagePath = 'avic-backing-page' | 'private-page';

export type LockName = 'slots_lock' | 'apicv_update_lock' | 'apic_map_lock';

export type MachineEvent =
  | (Base<'pio'> & { readonly port: number; readonly size: number; readonly value: number; readonly write: boolean; readonly unhandled: boolean })
  | (Base<'mmio-read' | 'mmio-write'> & { readonly gpa: number; readonly size: number; readonly value: number; readonly unhandled: boolean })
  /** a load or store served by hardware at the APIC-access page (no exit) */
  | (Base<'apic-page-access'> & { readonly gpa: number; readonly size: number; readonly value: number; readonly write: boolean; readonly path: ApicPagePath; readonly x2apic: boolean })
  | (Base<'msr-read' | 'msr-write'> & { readonly msr: number; readonly value: bigint; readonly ok: boolean; readonly host: boolean })
  | (Base<'halt'>)
  | (Base<'sched'> & { readonly from: number | null; readonly task: string })
  | (Base<'exception'> & { readonly vector: number; readonly errorCode: number | undefined })
  | (Base<'done'>)
  | (Base<'host-action'> & { readonly trigger: number | null; readonly action: string; readonly target: number | null })
  /** kvm_make_request (and each vCPU of kvm_make_all_cpus_request): `transition` names the change that raised it */
  | (Base<'request-make'> & { readonly target: number; readonly request: number; readonly name: string; readonly transition: number | null })
  /** kvm_check_request that consumed a pending request */
  | (Base<'request-check'> & { readonly request: number; readonly name: string; readonly transition: number | null })
  | (Base<'kick'> & { readonly target: number; readonly ipi: boolean })
  | (Base<'wakeup'> & { readonly target: number })
  /** kvm_apicv_inhibit_changed: every set-or-clear call; `inhibits` is the word after it */
  | (Base<'inhibit-change'> & { readonly reason: number; readonly set: boolean; readonly inhibits: number; readonly changed: boolean; readonly flip: boolean })
  /** __kvm_vcpu_update_apicv applied a new activation */
  | (Base<'apicv-update'> & { readonly activate: boolean })
  /** __x86_set_memory_region on a slot; `changed` false for a no-op (absent slot deleted, present slot created) */
  | (Base<'memslot-change'> & { readonly slot: number; readonly gpa: number; readonly size: number; readonly create: boolean; readonly changed: boolean; readonly transition: number | null })
  /** a kvm->srcu read lock: `raw` for srcu_read_lock, else kvm_vcpu_srcu_read_lock; depth and readers after it */
  | (Base<'srcu-lock' | 'srcu-unlock'> & { readonly raw: boolean; readonly depth: number; readonly readers: number })
  /** synchronize_srcu(_expedited) on kvm->srcu begins; `readers` the calling task holds */
  | (Base<'srcu-sync'> & { readonly expedited: boolean; readonly readers: number })
  | (Base<'lock-acquire' | 'lock-release'> & { readonly lock: LockName; readonly mode: 'read' | 'write' })
  | (Base<'vmexit'> & { readonly code: number; readonly name: string; readonly info1: bigint; readonly info2: bigint })
  /** guest entry, with what the WARN in vcpu_enter_guest compares */
  | (Base<'vmentry'> & { readonly activated: boolean; readonly apicvActive: boolean; readonly apicDisabled: boolean })
  | (Base<'ipi'> & { readonly icrLow: number; readonly dest: number })
  | (Base<'irq-accept'> & { readonly apicId: number; readonly deliveryMode: number; readonly triggerMode: number; readonly vector: number; readonly coalesced: boolean })
  | (Base<'avic-incomplete-ipi'> & { readonly icrHigh: number; readonly icrLow: number; readonly id: number; readonly index: number })
  | (Base<'avic-unaccelerated-access'> & { readonly offset: number; readonly isTrap: boolean; readonly write: boolean; readonly value: number })
  | (Base<'avic-doorbell'> & { readonly target: number; readonly apicId: number })
  | (Base<'violation'> & { readonly violation: string; readonly message: string });

/** Distributes an event type over the union (keeps the kind-specific fields). */
export type InhibitChangeEvent = Extract<MachineEvent, { kind: 'inhibit-change' }>;

type WithoutBase<E> = E extends unknown ? Omit<E, 'seq' | 'step'> : never;
export type NewEvent = WithoutBase<MachineEvent>;

/**
 * How many of the newest events stay in memory (between this and twice this): a long run records
 * millions (an IPI round trip is about 40), and every one is counted, traced, checked and shown
 * to listeners as it happens; only the in-memory history is bounded.
 */
export const EVENTS_KEPT = 1 << 16;

export class EventLog {
  private kept: MachineEvent[] = [];
  /** events recorded before the first one kept */
  private dropped = 0;
  readonly counts = new Map<EventKind, number>();
  private readonly listeners: ((e: MachineEvent) => void)[] = [];

  constructor(private readonly now: () => number) {}

  /** Records `e`, which becomes the event (it gets its seq and step): pass a fresh object. */
  add(e: NewEvent): MachineEvent {
    const full = e as MachineEvent & { seq: number; step: number };
    full.seq = this.dropped + this.kept.length + 1;
    full.step = this.now();
    this.kept.push(full);
    if (this.kept.length >= 2 * EVENTS_KEPT) {
      this.kept = this.kept.slice(EVENTS_KEPT);
      this.dropped += EVENTS_KEPT;
    }
    this.counts.set(e.kind, (this.counts.get(e.kind) ?? 0) + 1);
    for (const l of this.listeners) l(full);
    return full;
  }

  onEvent(l: (e: MachineEvent) => void): void {
    this.listeners.push(l);
  }

  /** the newest events, in order (all of them in a run of fewer than EVENTS_KEPT) */
  get events(): readonly MachineEvent[] {
    return this.kept;
  }

  /** every event recorded so far (the last one's seq) */
  get length(): number {
    return this.dropped + this.kept.length;
  }
}

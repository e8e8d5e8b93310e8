// The event log: every observable thing the machine does, in order, with a sequence number, the
// vCPU (null for a task of no vCPU) and the guest RIP. Breakpoints, views, traces, the CLI's JSON
// and reverse execution all read it; nothing keeps a second copy of what it records.

export type EventKind =
  | 'pio' | 'mmio-read' | 'mmio-write' | 'msr-read' | 'msr-write' | 'halt' | 'sched' | 'exception' | 'done' | 'host-action';

interface Base<K extends EventKind> {
  readonly kind: K;
  readonly seq: number;
  /** scheduler step at which it happened */
  readonly step: number;
  readonly vcpu: number | null;
  readonly rip: number;
}

export type MachineEvent =
  | (Base<'pio'> & { readonly port: number; readonly size: number; readonly value: number; readonly write: boolean; readonly unhandled: boolean })
  | (Base<'mmio-read' | 'mmio-write'> & { readonly gpa: number; readonly size: number; readonly value: number; readonly unhandled: boolean })
  | (Base<'msr-read' | 'msr-write'> & { readonly msr: number; readonly value: bigint; readonly ok: boolean; readonly host: boolean })
  | (Base<'halt'>)
  | (Base<'sched'> & { readonly from: number | null })
  | (Base<'exception'> & { readonly vector: number; readonly errorCode: number | undefined })
  | (Base<'done'>)
  | (Base<'host-action'> & { readonly trigger: number });

/** Distributes an event type over the union (keeps the kind-specific fields). */
type WithoutBase<E> = E extends unknown ? Omit<E, 'seq' | 'step'> : never;
export type NewEvent = WithoutBase<MachineEvent>;

export class EventLog {
  readonly events: MachineEvent[] = [];
  readonly counts = new Map<EventKind, number>();
  private readonly listeners: ((e: MachineEvent) => void)[] = [];

  constructor(private readonly now: () => number) {}

  add(e: NewEvent): MachineEvent {
    const full = { ...e, seq: this.events.length + 1, step: this.now() } as MachineEvent;
    this.events.push(full);
    this.counts.set(e.kind, (this.counts.get(e.kind) ?? 0) + 1);
    for (const l of this.listeners) l(full);
    return full;
  }

  onEvent(l: (e: MachineEvent) => void): void {
    this.listeners.push(l);
  }

  get length(): number {
    return this.events.length;
  }
}

// kvm->srcu as kernel/rcu/srcutree.c provides it to KVM: read sections per task (raw
// srcu_read_lock/srcu_read_unlock), and synchronize_srcu(_expedited), which waits until every
// read section that began before it has ended. Grace periods are not batched: a synchronize
// waits exactly for the pre-existing readers, which is what the deadlock and lockdep checks need.

import { type HostCode, kfn, preempt, type Task, waitUntil } from './task';

export class SrcuStruct {
  private seq = 0;
  /** read sections each task holds, by the sequence number of their srcu_read_lock, oldest first */
  private readonly sections = new Map<Task, number[]>();

  /** read sections `t` holds (raw and vCPU-helper ones alike) */
  readers(t: Task): number {
    return this.sections.get(t)?.length ?? 0;
  }

  /** Begins a read section without a preemption point or an event (the helpers add both). */
  enter(t: Task): number {
    const idx = ++this.seq;
    let list = this.sections.get(t);
    if (!list) this.sections.set(t, (list = []));
    list.push(idx);
    return idx;
  }

  /** Ends `t`'s newest read section; false when it holds none (an unbalanced unlock). */
  leave(t: Task): boolean {
    const list = this.sections.get(t);
    if (!list || list.length === 0) return false;
    list.pop();
    return true;
  }

  /** Tasks holding a read section that began before `seq`. */
  readersBefore(seq: number): Task[] {
    const out: Task[] = [];
    for (const [t, list] of this.sections) if (list.length > 0 && list[0] <= seq) out.push(t);
    return out;
  }

  get sequence(): number {
    return this.seq;
  }
}

/** srcu_read_lock(&kvm->srcu) (srcutree.c @ v6.3): a raw read section, not counted in srcu_depth. */
export function srcu_read_lock(t: Task, ssp: SrcuStruct): HostCode {
  return kfn(t, 'srcu_read_lock', function* () {
    yield* preempt();
    ssp.enter(t);
    t.emit({ kind: 'srcu-lock', raw: true, depth: -1, readers: ssp.readers(t) });
  });
}

export function srcu_read_unlock(t: Task, ssp: SrcuStruct): HostCode {
  return kfn(t, 'srcu_read_unlock', function* () {
    yield* preempt();
    ssp.leave(t);
    t.emit({ kind: 'srcu-unlock', raw: true, depth: -1, readers: ssp.readers(t) });
  });
}

/**
 * synchronize_srcu / synchronize_srcu_expedited (srcutree.c @ v6.3): waits for every read
 * section that began before the call. A task inside a read section waits for itself: the
 * `synchronize-srcu-in-read-section` checker reports it, and the scheduler then sees the deadlock.
 */
export function synchronize_srcu(t: Task, ssp: SrcuStruct, expedited: boolean): HostCode {
  return kfn(t, expedited ? 'synchronize_srcu_expedited' : 'synchronize_srcu', function* () {
    yield* preempt();
    t.emit({ kind: 'srcu-sync', expedited, readers: ssp.readers(t) });
    const snapshot = ssp.sequence;
    yield* waitUntil(() => ssp.readersBefore(snapshot).length === 0, 'an SRCU grace period of kvm->srcu', 'srcu', () => ssp.readersBefore(snapshot));
  });
}

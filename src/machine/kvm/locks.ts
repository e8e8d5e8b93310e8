// The two sleeping locks of the modelled paths: kvm->slots_lock (a mutex) and
// kvm->arch.apicv_update_lock (an rw_semaphore, kernel/locking/rwsem.c: a reader that finds a
// writer waiting queues behind it). Each acquire and release is a preemption point and an event;
// the lockdep-style order check reads those events (checkers.ts).

import type { LockName } from '../events';
import { type HostCode, kfn, preempt, type Task, waitUntil } from './task';

export class Mutex {
  owner: Task | null = null;
  constructor(readonly name: LockName) {}
}

export class RwSemaphore {
  writer: Task | null = null;
  readonly readers: Task[] = [];
  /** tasks waiting to take it for write (readers arriving after them wait too) */
  writersWaiting = 0;
  constructor(readonly name: LockName) {}

  holders(): Task[] {
    return this.writer ? [this.writer] : [...this.readers];
  }
}

/** mutex_lock (kernel/locking/mutex.c) */
export function mutex_lock(t: Task, m: Mutex): HostCode {
  return kfn(t, 'mutex_lock', function* () {
    yield* preempt();
    if (m.owner === t) throw new Error(`${t.name} takes ${m.name} recursively`);
    yield* waitUntil(() => m.owner === null, m.name, 'lock', () => (m.owner ? [m.owner] : []));
    m.owner = t;
    t.emit({ kind: 'lock-acquire', lock: m.name, mode: 'write' });
  });
}

export function mutex_unlock(t: Task, m: Mutex): HostCode {
  return kfn(t, 'mutex_unlock', function* () {
    yield* preempt();
    if (m.owner !== t) throw new Error(`${t.name} releases ${m.name}, which it does not hold`);
    m.owner = null;
    t.emit({ kind: 'lock-release', lock: m.name, mode: 'write' });
  });
}

/** down_write */
export function down_write(t: Task, s: RwSemaphore): HostCode {
  return kfn(t, 'down_write', function* () {
    yield* preempt();
    s.writersWaiting++;
    try {
      yield* waitUntil(() => s.writer === null && s.readers.length === 0, s.name, 'lock', () => s.holders());
    } finally {
      s.writersWaiting--;
    }
    s.writer = t;
    t.emit({ kind: 'lock-acquire', lock: s.name, mode: 'write' });
  });
}

export function up_write(t: Task, s: RwSemaphore): HostCode {
  return kfn(t, 'up_write', function* () {
    yield* preempt();
    if (s.writer !== t) throw new Error(`${t.name} releases ${s.name} for write, which it does not hold`);
    s.writer = null;
    t.emit({ kind: 'lock-release', lock: s.name, mode: 'write' });
  });
}

/** down_read */
export function down_read(t: Task, s: RwSemaphore): HostCode {
  return kfn(t, 'down_read', function* () {
    yield* preempt();
    yield* waitUntil(() => s.writer === null && s.writersWaiting === 0, s.name, 'lock', () => s.holders());
    s.readers.push(t);
    t.emit({ kind: 'lock-acquire', lock: s.name, mode: 'read' });
  });
}

export function up_read(t: Task, s: RwSemaphore): HostCode {
  return kfn(t, 'up_read', function* () {
    yield* preempt();
    const i = s.readers.indexOf(t);
    if (i < 0) throw new Error(`${t.name} releases ${s.name} for read, which it does not hold`);
    s.readers.splice(i, 1);
    t.emit({ kind: 'lock-release', lock: s.name, mode: 'read' });
  });
}

// Host tasks: kernel code paths as interleavable steps. A task is a generator; every `yield` is a
// point where the kernel could be preempted or block (lock acquire/release, SRCU read lock/unlock,
// synchronize_srcu, request make/check, kick, block), and costs one scheduler step. A task that
// waits yields a condition and is not scheduled until it holds. A vCPU task yields `guest` to
// run guest code and is resumed with the VM exit. Each task keeps the kernel call stack that the
// debugger shows above the guest frames, and emits the events of the code it runs.

import type { VmExit } from '../cpu/vmexit';
import type { NewEvent } from '../events';

/** Why a task waits: `halt` is a vCPU in kvm_vcpu_halt (the run may end `halted`); anything else is a kernel wait. */
export type WaitKind = 'halt' | 'lock' | 'srcu' | 'ack' | 'userspace';

/** What a task gives the scheduler at each preemption point. */
export type Yield =
  | { readonly kind: 'step' }
  /** a function breakpoint: the task stops on entry to `fn` (the debugger's stop point; otherwise a step) */
  | { readonly kind: 'break'; readonly fn: string }
  | { readonly kind: 'wait'; readonly until: () => boolean; readonly what: string; readonly why: WaitKind; readonly holders: () => readonly Task[] }
  | { readonly kind: 'guest' };

/** Host code: a generator over preemption points, resumed with a VmExit after `guest`. */
export type HostCode<T = void> = Generator<Yield, T, VmExit | undefined>;

export type TaskState = 'runnable' | 'waiting' | 'guest' | 'finished';

/** An event as host code emits it: the task fills in the vCPU, the guest RIP and the host stack. */
export type HostEvent = NewEvent extends infer E ? (E extends unknown ? Omit<E, 'vcpu' | 'rip' | 'hostStack'> : never) : never;

const STEP: Yield = Object.freeze({ kind: 'step' });
const GUEST: Yield = Object.freeze({ kind: 'guest' });

export class Task {
  /** innermost last (the order it grows in); hostStack() gives innermost first */
  readonly stack: string[] = [];
  /** a serial number per entry of `stack`: tells a frame from a later call at the same depth (debugger steps) */
  readonly frames: number[] = [];
  private entered = 0;
  /** what the task yielded last (the scheduler acts on it) */
  pending: Yield | null = null;
  /** the exit the task is resumed with after `guest` */
  resume: VmExit | undefined;
  finished = false;
  /** preemption points passed (host steps run) */
  stepsTaken = 0;
  /**
   * The APICv transition the code running now applies (contracts/kvm-model.md, memslot-double-toggle):
   * set where a transition starts or a request that carries one is consumed.
   */
  transition: number | null = null;
  /** the debugger's function breakpoints: true stops the task on entry to a kernel function */
  breakOnEntry: ((fn: string) => boolean) | null = null;
  private gen: HostCode | undefined;

  constructor(
    readonly id: number,
    readonly name: string,
    /** the vCPU this task belongs to, or null (a VM ioctl, a debugger action) */
    readonly vcpu: number | null,
    private readonly sink: (t: Task, e: HostEvent) => void,
  ) {}

  start(body: HostCode): void {
    this.gen = body;
    this.pending = STEP;
    this.finished = false;
  }

  get state(): TaskState {
    if (this.finished || !this.gen) return 'finished';
    if (this.pending?.kind === 'guest') return 'guest';
    if (this.pending?.kind === 'wait' && !this.pending.until()) return 'waiting';
    return 'runnable';
  }

  /** Runs the task to its next preemption point (one scheduler step). */
  step(): void {
    if (!this.gen || this.finished) return;
    const exit = this.resume;
    this.resume = undefined;
    this.stepsTaken++;
    const r = this.gen.next(exit);
    if (r.done) {
      this.finished = true;
      this.pending = null;
    } else this.pending = r.value;
  }

  /** Enters a kernel function: its frame goes on the host stack. */
  enter(name: string): void {
    this.stack.push(name);
    this.frames.push(++this.entered);
    this.snapshot = null;
  }

  leave(): void {
    this.stack.pop();
    const frame = this.frames.pop();
    if (frame !== undefined) this.srcuDropped.delete(frame);
    this.snapshot = null;
  }

  /**
   * The frames (serials of `frames`) that have dropped the vCPU's SRCU with
   * kvm_vcpu_srcu_read_unlock and not taken it back yet: the windows where the kernel means it
   * not to be held (around guest mode, a halt, a memslot change), whatever the depth really is.
   */
  private readonly srcuDropped = new Set<number>();

  /** kvm_vcpu_srcu_read_unlock from the frame below the helper's own: a window opens there */
  srcuDrop(): void {
    const caller = this.frames[this.frames.length - 2];
    if (caller !== undefined) this.srcuDropped.add(caller);
  }

  /** kvm_vcpu_srcu_read_lock from the frame below the helper's own: that frame's window closes */
  srcuRetake(): void {
    const caller = this.frames[this.frames.length - 2];
    if (caller !== undefined) this.srcuDropped.delete(caller);
  }

  /** Is a frame on the stack inside its SRCU-dropped window? */
  get inSrcuDropWindow(): boolean {
    if (this.srcuDropped.size === 0) return false;
    for (const f of this.frames) if (this.srcuDropped.has(f)) return true;
    return false;
  }

  /** the last hostStack() answer, while the stack has not changed: the events of one frame share it */
  private snapshot: readonly string[] | null = null;

  /** Kernel function names, innermost first, as stack traces and events show them (shared: never changed). */
  hostStack(): readonly string[] {
    return (this.snapshot ??= Object.freeze([...this.stack].reverse()));
  }

  emit(e: HostEvent): void {
    this.sink(this, e);
  }
}

/** One preemption point. */
export function* preempt(): HostCode {
  yield STEP;
}

/** Waits (without using steps) until `until()` holds; `holders` name who could release it, for deadlock reports. */
export function* waitUntil(until: () => boolean, what: string, why: WaitKind, holders: () => readonly Task[] = () => []): HostCode {
  if (until()) return;
  yield { kind: 'wait', until, what, why, holders };
}

/** Runs guest code until the next VM exit. */
export function* runGuest(): HostCode<VmExit> {
  const exit = yield GUEST;
  if (!exit) throw new Error('a vCPU task resumed from guest mode without a VM exit');
  return exit;
}

/**
 * Enters a kernel function: its name is on the task's host stack while `body` runs. Kernel
 * functions are written `function name(t, ...): HostCode<T> { return kfn(t, 'name', function* () {...}) }`
 * (a generator of their own only when code must run before the frame), and called with `yield*`.
 */
export function kfn<T>(t: Task, name: string, body: () => HostCode<T>): HostCode<T> {
  return new KernelFrame(t, name, body);
}

/**
 * kfn's frame: the body's generator with the name on the host stack from the first step to
 * the last, as a plain iterator rather than one more generator, so that a step deep in the
 * kernel resumes one generator per kernel function instead of two (a step passes through every
 * frame of its task, and the host model's speed is set by that).
 */
class KernelFrame<T> implements HostCode<T> {
  private inner: HostCode<T> | null = null;
  /** not entered yet, entered (the body not started: a function breakpoint stops here), running, done */
  private state: 'new' | 'entered' | 'running' | 'done' = 'new';

  constructor(private readonly t: Task, private readonly name: string, private readonly body: () => HostCode<T>) {}

  next(v?: VmExit): IteratorResult<Yield, T> {
    if (this.state === 'new') {
      this.t.enter(this.name);
      this.state = 'entered';
      if (this.t.breakOnEntry !== null && this.t.breakOnEntry(this.name)) return { done: false, value: { kind: 'break', fn: this.name } };
    }
    if (this.state === 'done') return { done: true, value: undefined as T };
    if (this.state === 'entered') {
      try {
        this.inner = this.body();
      } catch (e) {
        this.finish();
        throw e;
      }
      this.state = 'running';
      v = undefined;
    }
    return this.settle(this.inner!, 'next', v);
  }

  return(value: T): IteratorResult<Yield, T> {
    if (this.state !== 'running') {
      this.finish();
      return { done: true, value };
    }
    return this.settle(this.inner!, 'return', value);
  }

  throw(e: unknown): IteratorResult<Yield, T> {
    if (this.state !== 'running') {
      this.finish();
      throw e;
    }
    return this.settle(this.inner!, 'throw', e);
  }

  /** one step of the body; the frame leaves the host stack when the body ends, however it ends */
  private settle(inner: HostCode<T>, how: 'next' | 'return' | 'throw', arg: unknown): IteratorResult<Yield, T> {
    let r: IteratorResult<Yield, T>;
    try {
      r = how === 'next' ? inner.next(arg as VmExit | undefined) : how === 'return' ? inner.return(arg as T) : inner.throw(arg);
    } catch (e) {
      this.finish();
      throw e;
    }
    if (r.done) this.finish();
    return r;
  }

  private finish(): void {
    const entered = this.state === 'entered' || this.state === 'running';
    this.state = 'done';
    this.inner = null;
    if (entered) this.t.leave();
  }

  [Symbol.iterator](): HostCode<T> {
    return this;
  }
}

/** Runs `body` with `t.transition` set to `transition`, restoring it afterwards. */
export function* withTransition<T>(t: Task, transition: number | null, body: () => HostCode<T>): HostCode<T> {
  const saved = t.transition;
  t.transition = transition;
  try {
    return yield* body();
  } finally {
    t.transition = saved;
  }
}

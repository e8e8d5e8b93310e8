// Host tasks (src/machine/kvm/task.ts): a kernel function's frame (`kfn`) is on the host stack
// from its first step to its last however the body ends (returns, throws, is closed, throws
// before its first step), and a function breakpoint stops on entry before the body has run.

import assert from 'node:assert/strict';
import { type HostCode, kfn, preempt, Task } from '../../src/machine/kvm/task';

function task(): Task {
  return new Task(0, 'test', null, () => {});
}

describe('machine: kernel function frames', () => {
  it('enter on the first step, leave when the body returns; nested frames stack innermost last', () => {
    const t = task();
    const seen: string[][] = [];
    function* inner(): HostCode<number> {
      return yield* kfn(t, 'inner', function* () {
        seen.push([...t.stack]);
        yield* preempt();
        return 7;
      });
    }
    const outer = kfn(t, 'outer', function* () {
      const v = yield* inner();
      seen.push([...t.stack]);
      return v * 2;
    });
    assert.deepEqual(t.stack, [], 'nothing runs before the first step');
    let r = outer.next();
    assert.equal(r.done, false);
    assert.deepEqual(t.hostStack(), ['inner', 'outer']);
    r = outer.next();
    assert.deepEqual(r, { done: true, value: 14 });
    assert.deepEqual(seen, [['outer', 'inner'], ['outer']]);
    assert.deepEqual(t.stack, []);
    assert.deepEqual(t.frames, []);
  });

  it('leaves when the body throws, at its first step too, and when the caller closes it', () => {
    const t = task();
    const throwsLater = kfn(t, 'later', function* () {
      yield* preempt();
      throw new Error('boom');
    });
    throwsLater.next();
    assert.deepEqual(t.stack, ['later']);
    assert.throws(() => throwsLater.next(), /boom/);
    assert.deepEqual(t.stack, []);

    const throwsAtOnce = kfn(t, 'at-once', () => {
      throw new RangeError('before a generator exists');
    });
    assert.throws(() => throwsAtOnce.next(), RangeError);
    assert.deepEqual(t.stack, []);

    const closed = kfn(t, 'closed', function* () {
      yield* preempt();
      yield* preempt();
    });
    closed.next();
    assert.deepEqual(closed.return(undefined), { done: true, value: undefined });
    assert.deepEqual(t.stack, []);

    // an exception thrown in at a step reaches the body, which may catch it
    const catches = kfn(t, 'catches', function* () {
      try {
        yield* preempt();
      } catch {
        return 'caught';
      }
      return 'not';
    });
    catches.next();
    assert.deepEqual(catches.throw(new Error('x')), { done: true, value: 'caught' });
    assert.deepEqual(t.stack, []);
  });

  it('a function breakpoint stops on entry, on the host stack, before the body has run', () => {
    const t = task();
    t.breakOnEntry = (fn) => fn === 'watched';
    let ran = false;
    const f = kfn(t, 'watched', () => {
      ran = true;
      return (function* () {
        yield* preempt();
      })();
    });
    assert.deepEqual(f.next(), { done: false, value: { kind: 'break', fn: 'watched' } });
    assert.deepEqual(t.stack, ['watched']);
    assert.equal(ran, false);
    f.next();
    assert.equal(ran, true);
    assert.deepEqual(f.next(), { done: true, value: undefined });
    assert.deepEqual(t.stack, []);
  });
});

// The event log keeps the newest events in memory and no more, however long the run: every event
// is numbered, counted and shown to listeners as it happens.

import assert from 'node:assert/strict';
import { EventLog, EVENTS_KEPT, type MachineEvent } from '../../src/machine/events';

describe('machine: the event log', () => {
  it('keeps between EVENTS_KEPT and twice that of the newest events; seq, counts and listeners see them all', () => {
    let step = 0;
    const log = new EventLog(() => step);
    let heard = 0;
    let last: MachineEvent | undefined;
    log.onEvent((e) => {
      heard++;
      last = e;
    });
    const total = 2 * EVENTS_KEPT + 5;
    for (let i = 0; i < total; i++) {
      step = i;
      log.add({ kind: 'halt', vcpu: 0, rip: i });
    }
    assert.equal(log.length, total);
    assert.equal(heard, total);
    assert.equal(log.counts.get('halt'), total);
    assert.ok(log.events.length >= EVENTS_KEPT && log.events.length < 2 * EVENTS_KEPT, `${log.events.length} kept`);
    const kept = log.events;
    assert.equal(kept[kept.length - 1], last);
    assert.equal(last!.seq, total);
    assert.equal(last!.step, total - 1);
    // the kept ones are the newest, in order, numbered without a gap
    for (let i = 1; i < kept.length; i++) assert.equal(kept[i].seq, kept[i - 1].seq + 1);
  });
});

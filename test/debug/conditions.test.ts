// Event filters and their condition grammar (contracts/dap.md, "Event filters"): the filter
// list, which machine event maps to which filter with which field values, conditions that
// match or not, and compile errors with their columns.

import assert from 'node:assert/strict';
import {
  compileCondition, EVENT_FILTERS, exceptionBreakpointFilters, filterOf, type FieldValues, type FilterId,
} from '../../src/debug/conditions';
import type { MachineEvent } from '../../src/machine/events';

const base = { seq: 1, step: 10, rip: 0x1000 };

/** Compiles a condition that must compile and returns its test. */
function cond(filter: FilterId, text: string): (fields: FieldValues) => boolean {
  const c = compileCondition(filter, text);
  if (!c.ok) assert.fail(`'${text}' did not compile: ${c.message}`);
  return (fields) => c.test(fields);
}

/** The fields of an event, which must belong to `filter`. */
function fieldsOf(filter: FilterId, e: MachineEvent): FieldValues {
  const m = filterOf(e);
  assert.ok(m, `${e.kind} has no filter`);
  assert.equal(m.filter, filter);
  return m.fields;
}

function error(filter: FilterId, text: string): { message: string; column: number } {
  const c = compileCondition(filter, text);
  if (c.ok) assert.fail(`'${text}' compiled`);
  return { message: c.message, column: c.column };
}

// ---- realistic events -------------------------------------------------------------------------

const requestMake: MachineEvent = {
  ...base, kind: 'request-make', vcpu: 0, target: 1, request: 25 + 8, name: 'KVM_REQ_APICV_UPDATE', transition: 3,
  hostStack: ['kvm_make_all_cpus_request', '__kvm_set_or_clear_apicv_inhibit'],
};
const requestMakeFromVmm: MachineEvent = { ...base, kind: 'request-make', vcpu: null, target: 0, request: 14, name: 'KVM_REQ_EVENT', transition: null };
const requestCheck: MachineEvent = { ...base, kind: 'request-check', vcpu: 1, request: 33, name: 'KVM_REQ_APICV_UPDATE', transition: 3 };
const apicBaseWrite: MachineEvent = { ...base, kind: 'msr-write', vcpu: 0, msr: 0x1b, value: 0xfee00d00n, ok: true, host: false };
const x2apicIcrWrite: MachineEvent = { ...base, kind: 'msr-write', vcpu: 2, msr: 0x830, value: 0x0000000100000030n, ok: true, host: false };
const hostApicBase: MachineEvent = { ...base, kind: 'msr-write', vcpu: 0, msr: 0x1b, value: 0xfee00900n, ok: true, host: true };
const efer: MachineEvent = { ...base, kind: 'msr-write', vcpu: 0, msr: 0xc0000080, value: 0x1500n, ok: true, host: false };
const memslotDelete: MachineEvent = {
  ...base, kind: 'memslot-change', vcpu: 0, slot: 32765, gpa: 0xfee00000, size: 4096, create: false, changed: true, transition: 4,
};
const memslotNoop: MachineEvent = { ...base, kind: 'memslot-change', vcpu: null, slot: 32765, gpa: 0xfee00000, size: 4096, create: true, changed: false, transition: null };
const inhibitSet: MachineEvent = { ...base, kind: 'inhibit-change', vcpu: 0, reason: 5, set: true, inhibits: 1 << 5, changed: true, flip: true };
const inhibitClear: MachineEvent = { ...base, kind: 'inhibit-change', vcpu: null, reason: 8, set: false, inhibits: 0, changed: false, flip: false };
const srcuLock: MachineEvent = { ...base, kind: 'srcu-lock', vcpu: 0, raw: false, depth: 2, readers: 2 };
const srcuRawUnlock: MachineEvent = { ...base, kind: 'srcu-unlock', vcpu: null, raw: true, depth: -1, readers: 0 };
const srcuSync: MachineEvent = { ...base, kind: 'srcu-sync', vcpu: 1, expedited: false, readers: 1 };
const noAccel: MachineEvent = { ...base, kind: 'vmexit', vcpu: 1, code: 0x402, name: 'SVM_EXIT_AVIC_UNACCELERATED_ACCESS', info1: 0x1_0000_0300n, info2: 0n };
const npf: MachineEvent = { ...base, kind: 'vmexit', vcpu: 0, code: 0x400, name: 'SVM_EXIT_NPF', info1: 6n, info2: 0xfec00000n };
const violation: MachineEvent = {
  ...base, kind: 'violation', vcpu: 0, violation: 'srcu-unlock-unbalanced', message: 'srcu_read_unlock without a lock',
};

describe('debug event filters', () => {
  describe('the filter list', () => {
    it('has the contract seven filters in order, only violation on by default', () => {
      assert.deepEqual(EVENT_FILTERS.map((f) => f.filter),
        ['vcpu-request', 'x2apic-msr-write', 'memslot-change', 'inhibit-change', 'srcu', 'vmexit', 'violation']);
      assert.deepEqual(EVENT_FILTERS.filter((f) => f.default).map((f) => f.filter), ['violation']);
      for (const f of EVENT_FILTERS) {
        assert.equal(f.supportsCondition, true);
        assert.ok(f.label && f.description && f.conditionDescription.startsWith('e.g. '), f.filter);
      }
    });

    it('lists the contract fields in order', () => {
      const fields = Object.fromEntries(EVENT_FILTERS.map((f) => [f.filter, f.fields.map((x) => x.name)]));
      assert.deepEqual(fields, {
        'vcpu-request': ['req', 'op', 'vcpu', 'from'],
        'x2apic-msr-write': ['msr', 'value', 'vcpu', 'host'],
        'memslot-change': ['slot', 'op', 'changed', 'gpa', 'vcpu'],
        'inhibit-change': ['reason', 'set', 'changed', 'inhibits'],
        srcu: ['op', 'depth', 'readers', 'vcpu'],
        vmexit: ['exit', 'vcpu'],
        violation: ['kind', 'vcpu'],
      });
    });

    it('gives DAP exceptionBreakpointFilters without the field lists', () => {
      const dap = exceptionBreakpointFilters();
      assert.equal(dap.length, 7);
      assert.deepEqual(Object.keys(dap[6]).sort(), ['conditionDescription', 'default', 'description', 'filter', 'label', 'supportsCondition']);
      assert.equal(dap[6].default, true);
    });
  });

  describe('filterOf', () => {
    it('vcpu-request: make (target, requester) and check', () => {
      assert.deepEqual(fieldsOf('vcpu-request', requestMake), { req: 'KVM_REQ_APICV_UPDATE', op: 'make', vcpu: 1, from: 0 });
      assert.deepEqual(fieldsOf('vcpu-request', requestMakeFromVmm), { req: 'KVM_REQ_EVENT', op: 'make', vcpu: 0, from: null });
      assert.deepEqual(fieldsOf('vcpu-request', requestCheck), { req: 'KVM_REQ_APICV_UPDATE', op: 'check', vcpu: 1, from: 1 });
    });

    it('x2apic-msr-write: IA32_APIC_BASE and 0x800-0x8FF only', () => {
      assert.deepEqual(fieldsOf('x2apic-msr-write', apicBaseWrite), { msr: 0x1b, value: 0xfee00d00n, vcpu: 0, host: false });
      assert.deepEqual(fieldsOf('x2apic-msr-write', hostApicBase), { msr: 0x1b, value: 0xfee00900n, vcpu: 0, host: true });
      assert.equal(fieldsOf('x2apic-msr-write', x2apicIcrWrite).msr, 0x830);
      assert.equal(filterOf(efer), undefined);
      assert.equal(filterOf({ ...base, kind: 'msr-write', vcpu: 0, msr: 0x900, value: 0n, ok: false, host: false }), undefined);
      assert.equal(filterOf({ ...base, kind: 'msr-read', vcpu: 0, msr: 0x1b, value: 0n, ok: true, host: false }), undefined);
    });

    it('memslot-change', () => {
      assert.deepEqual(fieldsOf('memslot-change', memslotDelete), { slot: 32765, op: 'delete', changed: true, gpa: 0xfee00000, vcpu: 0 });
      assert.deepEqual(fieldsOf('memslot-change', memslotNoop), { slot: 32765, op: 'create', changed: false, gpa: 0xfee00000, vcpu: null });
    });

    it('inhibit-change: the reason by name', () => {
      assert.deepEqual(fieldsOf('inhibit-change', inhibitSet), { reason: 'APIC_ID_MODIFIED', set: true, changed: true, inhibits: 32 });
      assert.deepEqual(fieldsOf('inhibit-change', inhibitClear), { reason: 'IRQWIN', set: false, changed: false, inhibits: 0 });
    });

    it('srcu: lock, raw unlock (depth as given), synchronize (no depth)', () => {
      assert.deepEqual(fieldsOf('srcu', srcuLock), { op: 'lock', depth: 2, readers: 2, vcpu: 0 });
      assert.deepEqual(fieldsOf('srcu', srcuRawUnlock), { op: 'unlock', depth: -1, readers: 0, vcpu: null });
      assert.deepEqual(fieldsOf('srcu', srcuSync), { op: 'synchronize', depth: null, readers: 1, vcpu: 1 });
    });

    it('vmexit and violation', () => {
      assert.deepEqual(fieldsOf('vmexit', noAccel), { exit: 'SVM_EXIT_AVIC_UNACCELERATED_ACCESS', vcpu: 1 });
      assert.deepEqual(fieldsOf('violation', violation), { kind: 'srcu-unlock-unbalanced', vcpu: 0 });
    });

    it('other events belong to no filter', () => {
      assert.equal(filterOf({ ...base, kind: 'halt', vcpu: 0 }), undefined);
      assert.equal(filterOf({ ...base, kind: 'apicv-update', vcpu: 0, activate: false }), undefined);
      assert.equal(filterOf({ ...base, kind: 'lock-acquire', vcpu: 0, lock: 'slots_lock', mode: 'write' }), undefined);
    });
  });

  describe('conditions: the contract examples', () => {
    it('KVM_REQ_APICV_UPDATE (a bare name: req ==)', () => {
      const c = cond('vcpu-request', 'KVM_REQ_APICV_UPDATE');
      assert.equal(c(fieldsOf('vcpu-request', requestMake)), true);
      assert.equal(c(fieldsOf('vcpu-request', requestMakeFromVmm)), false);
    });

    it('msr == 0x1b && (value & 0x400) != 0', () => {
      const c = cond('x2apic-msr-write', 'msr == 0x1b && (value & 0x400) != 0');
      assert.equal(c(fieldsOf('x2apic-msr-write', apicBaseWrite)), true);
      assert.equal(c(fieldsOf('x2apic-msr-write', hostApicBase)), false);
      assert.equal(c(fieldsOf('x2apic-msr-write', x2apicIcrWrite)), false);
    });

    it('reason == APIC_ID_MODIFIED && set, and the APICV_INHIBIT_REASON_ form', () => {
      for (const text of ['reason == APIC_ID_MODIFIED && set', 'reason == APICV_INHIBIT_REASON_APIC_ID_MODIFIED && set', 'APIC_ID_MODIFIED && set']) {
        const c = cond('inhibit-change', text);
        assert.equal(c(fieldsOf('inhibit-change', inhibitSet)), true, text);
        assert.equal(c({ ...fieldsOf('inhibit-change', inhibitSet), set: false }), false, text);
        assert.equal(c(fieldsOf('inhibit-change', inhibitClear)), false, text);
      }
    });

    it('depth > 1', () => {
      const c = cond('srcu', 'depth > 1');
      assert.equal(c(fieldsOf('srcu', srcuLock)), true);
      assert.equal(c(fieldsOf('srcu', srcuRawUnlock)), false);
      assert.equal(c(fieldsOf('srcu', srcuSync)), false, 'null orders with nothing');
    });

    it('exit == AVIC_NOACCEL, the kernel name and the bare forms', () => {
      for (const text of ['exit == AVIC_NOACCEL', 'exit == SVM_EXIT_AVIC_UNACCELERATED_ACCESS', 'AVIC_NOACCEL', "exit == 'AVIC_NOACCEL'"]) {
        const c = cond('vmexit', text);
        assert.equal(c(fieldsOf('vmexit', noAccel)), true, text);
        assert.equal(c(fieldsOf('vmexit', npf)), false, text);
      }
      assert.equal(cond('vmexit', 'NPF && vcpu == 0')(fieldsOf('vmexit', npf)), true);
    });

    it('hyphenated violation kinds', () => {
      assert.equal(cond('violation', 'srcu-unlock-unbalanced')(fieldsOf('violation', violation)), true);
      assert.equal(cond('violation', 'kind == deadlock')(fieldsOf('violation', violation)), false);
      assert.equal(cond('violation', 'kind != "deadlock" && vcpu == 0')(fieldsOf('violation', violation)), true);
    });
  });

  describe('conditions: the grammar', () => {
    const srcu = { op: 'lock', depth: 2, readers: 2, vcpu: 0 };

    it('empty or blank means always', () => {
      assert.equal(cond('srcu', '')(srcu), true);
      assert.equal(cond('srcu', '  \t ')(srcu), true);
    });

    it('! binds tighter than &&, && tighter than ||', () => {
      // true || (false && false) == true; (true || false) && false would be false
      assert.equal(cond('srcu', 'op == lock || depth == 0 && readers == 0')(srcu), true);
      assert.equal(cond('srcu', '(op == lock || depth == 0) && readers == 0')(srcu), false);
      // (!false) && true
      assert.equal(cond('srcu', '!depth == 0 && readers == 2')(srcu), true);
      assert.equal(cond('srcu', '!(depth == 2 && readers == 2)')(srcu), false);
      assert.equal(cond('srcu', '!!lock')(srcu), true);
      assert.equal(cond('srcu', 'unlock || synchronize || !lock')(srcu), false);
    });

    it('parentheses nest, also around a mask operand', () => {
      assert.equal(cond('srcu', '((depth == 2) && ((readers & 0x2) == 2))')(srcu), true);
      assert.equal(cond('srcu', '(readers & 1) == 0 && ((depth & 3) >= 2)')(srcu), true);
    });

    it('every comparison operator on numbers', () => {
      const results = ['==', '!=', '<', '<=', '>', '>='].map((op) => cond('srcu', `depth ${op} 2`)(srcu));
      assert.deepEqual(results, [true, false, false, true, false, true]);
      assert.equal(cond('srcu', 'depth < 0x10')(srcu), true);
      assert.equal(cond('srcu', 'depth == -1')({ ...srcu, depth: -1 }), true);
    });

    it('null: == and != on nullable fields', () => {
      const fromVmm = fieldsOf('vcpu-request', requestMakeFromVmm);
      const fromVcpu = fieldsOf('vcpu-request', requestMake);
      assert.equal(cond('vcpu-request', 'from == null')(fromVmm), true);
      assert.equal(cond('vcpu-request', 'from == null')(fromVcpu), false);
      assert.equal(cond('vcpu-request', 'from != null && op == make')(fromVcpu), true);
      assert.equal(cond('vcpu-request', 'from == 0')(fromVmm), false);
      assert.equal(cond('vcpu-request', 'from != 0')(fromVmm), true);
      assert.equal(cond('srcu', 'vcpu == null')(fieldsOf('srcu', srcuRawUnlock)), true);
    });

    it('bigint values beyond 2^53', () => {
      const icr = fieldsOf('x2apic-msr-write', x2apicIcrWrite);
      assert.equal(cond('x2apic-msr-write', 'value == 0x100000030')(icr), true);
      assert.equal(cond('x2apic-msr-write', '(value & 0xffffffff00000000) == 0x100000000')(icr), true);
      const big = { ...icr, value: 0xffff_ffff_ffff_fff0n };
      assert.equal(cond('x2apic-msr-write', 'value == 18446744073709551600')(big), true);
      assert.equal(cond('x2apic-msr-write', 'value > 0xfffffffffffffff0')(big), false);
      assert.equal(cond('x2apic-msr-write', 'value >= 0xfffffffffffffff0')(big), true);
      assert.equal(cond('x2apic-msr-write', '(value & 0x8000000000000000) != 0')(big), true);
    });

    it('booleans: bare, compared, negated', () => {
      const host = fieldsOf('x2apic-msr-write', hostApicBase);
      assert.equal(cond('x2apic-msr-write', 'host')(host), true);
      assert.equal(cond('x2apic-msr-write', '!host')(host), false);
      assert.equal(cond('x2apic-msr-write', 'host == true')(host), true);
      assert.equal(cond('x2apic-msr-write', 'host != false')(host), true);
      assert.equal(cond('memslot-change', 'op == delete && !changed')(fieldsOf('memslot-change', memslotDelete)), false);
    });

    it('names and strings compare the same', () => {
      const make = fieldsOf('vcpu-request', requestMake);
      for (const text of ['op == make', 'op == "make"', "op == 'make'", 'req == "KVM_REQ_APICV_UPDATE"', 'APICV_UPDATE']) {
        assert.equal(cond('vcpu-request', text)(make), true, text);
      }
      assert.equal(cond('vcpu-request', 'op != make')(make), false);
      assert.equal(cond('memslot-change', 'slot == 32765 && op == delete && changed')(fieldsOf('memslot-change', memslotDelete)), true);
    });
  });

  describe('conditions: errors', () => {
    it('points at the offending column', () => {
      assert.deepEqual(error('x2apic-msr-write', 'msr =='), { message: 'expected a number at column 7', column: 7 });
      assert.deepEqual(error('srcu', 'depth > > 1'), { message: 'expected a number at column 9', column: 9 });
      assert.deepEqual(error('x2apic-msr-write', '(msr & ) == 1'), { message: 'expected a mask (a number) at column 8', column: 8 });
      assert.deepEqual(error('srcu', 'op == "make'), { message: 'unterminated string at column 7', column: 7 });
      assert.deepEqual(error('srcu', 'depth > 1)'), { message: "unexpected ')' at column 10", column: 10 });
      assert.deepEqual(error('srcu', 'depth > 1 && '), { message: "expected a field, a name or '(' at column 14", column: 14 });
      assert.deepEqual(error('srcu', '(depth > 1'), { message: "expected ')' at column 11", column: 11 });
      assert.equal(error('srcu', 'depth = 1').column, 7);
      assert.equal(error('srcu', 'lock | unlock').column, 6);
      assert.equal(error('srcu', 'depth == 12ab').column, 10);
      assert.equal(error('srcu', 'depth == 0x').column, 10);
      assert.equal(error('srcu', 'depth == 1 lock').column, 12);
      assert.equal(error('srcu', 'depth @ 1').column, 7);
    });

    it('unknown names: the field, the column and what is valid', () => {
      const reason = error('inhibit-change', 'reason == NOPE');
      assert.equal(reason.column, 11);
      assert.match(reason.message, /^unknown inhibit reason 'NOPE' at column 11; valid: DISABLE, .*APIC_ID_MODIFIED/);
      const req = error('vcpu-request', 'op == make && KVM_REQ_FOO');
      assert.equal(req.column, 15);
      assert.match(req.message, /^unknown request 'KVM_REQ_FOO' at column 15; expected a KVM_REQ_\* name/);
      assert.match(error('vcpu-request', 'req == KVM_REQ_APICV_UPDAT').message, /did you mean KVM_REQ_APICV_UPDATE\?/);
      assert.match(error('vmexit', 'exit == SVM_EXIT_NFP').message, /^unknown exit 'SVM_EXIT_NFP' at column 9; did you mean SVM_EXIT_NPF\?/);
      assert.match(error('srcu', 'op == "make"').message, /^unknown op 'make' at column 7; valid: lock, unlock, synchronize$/);
      assert.match(error('violation', 'srcu-unbalanced').message, /^unknown violation kind 'srcu-unbalanced' at column 1/);
    });

    it('unknown fields and fields used the wrong way', () => {
      assert.deepEqual(error('srcu', '(count & 1) == 1'),
        { message: "unknown field 'count' of srcu at column 2; fields: op, depth, readers, vcpu", column: 2 });
      assert.equal(error('srcu', 'count == 1').column, 1);
      assert.deepEqual(error('srcu', 'readers > 0 && depth'),
        { message: "'depth' is a number, not a boolean at column 16; compare it, e.g. depth == 1", column: 16 });
      assert.equal(error('x2apic-msr-write', 'KVM_REQ_EVENT').message,
        "'KVM_REQ_EVENT' is not a field of x2apic-msr-write at column 1; fields: msr, value, vcpu, host");
      assert.equal(error('x2apic-msr-write', '(host & 1) == 1').column, 2);
      assert.equal(error('x2apic-msr-write', '(value & 0x400)').column, 16);
    });

    it('wrong literal types and ordering of non-numbers', () => {
      assert.equal(error('inhibit-change', 'set < true').column, 5);
      assert.equal(error('srcu', 'op >= lock').column, 4);
      assert.equal(error('inhibit-change', 'set == 1').message, 'expected true or false at column 8');
      assert.equal(error('srcu', 'op == 1').message, 'expected a name or a quoted string at column 7');
      assert.equal(error('srcu', 'depth == lock').message, 'expected a number or null at column 10');
      assert.equal(error('x2apic-msr-write', 'msr == null').message, "'msr' is never null at column 8");
      assert.equal(error('vcpu-request', 'from < null').column, 8);
      assert.equal(error('srcu', 'true').column, 1);
    });
  });
});

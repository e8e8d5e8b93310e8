// Generates src/machine/cpu/ops/fused.generated.ts: one closure literal per (producer, operand
// form, width, branch kind) for the macro-fused pairs of fuse.ts; and alu.generated.ts, the same
// producers on their own, with their flags and without them (alu.ts). Separate literals matter: closures
// made from one literal share their optimized code in V8, so a switch on the producer inside one
// literal would run on every instruction. Run: node scripts/gen-fused.mjs (--check: exit 1 if stale)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const kinds = {
  add: { lazy: 'LAZY_ADD', w64: ['const lo = (alo + blo) | 0;', 'const hi = (ahi + bhi + ((lo >>> 0) < (alo >>> 0) ? 1 : 0)) | 0;'], w32: 'const v = (a + b) | 0;', writes: true, keepA: true },
  sub: { lazy: 'LAZY_SUB', w64: ['const lo = (alo - blo) | 0;', 'const hi = (ahi - bhi - ((alo >>> 0) < (blo >>> 0) ? 1 : 0)) | 0;'], w32: 'const v = (a - b) | 0;', writes: true, keepA: true },
  cmp: { lazy: 'LAZY_SUB', w64: ['const lo = (alo - blo) | 0;', 'const hi = (ahi - bhi - ((alo >>> 0) < (blo >>> 0) ? 1 : 0)) | 0;'], w32: 'const v = (a - b) | 0;', writes: false, keepA: true },
  and: { lazy: 'LAZY_LOGIC', w64: ['const lo = alo & blo;', 'const hi = ahi & bhi;'], w32: 'const v = a & b;', writes: true, keepA: false },
  test: { lazy: 'LAZY_LOGIC', w64: ['const lo = alo & blo;', 'const hi = ahi & bhi;'], w32: 'const v = a & b;', writes: false, keepA: false },
  or: { lazy: 'LAZY_LOGIC', w64: ['const lo = alo | blo;', 'const hi = ahi | bhi;'], w32: 'const v = a | b;', writes: true, keepA: false },
  xor: { lazy: 'LAZY_LOGIC', w64: ['const lo = alo ^ blo;', 'const hi = ahi ^ bhi;'], w32: 'const v = a ^ b;', writes: true, keepA: false },
};

const branch = (zf, zero) => zf
  ? `c.rip = (${zero}) === taken ? t : next;`
  : 'c.rip = condition(c, cc) ? t : next;';

/** a register ALU producer: its result and its lazy flag record (what alu.ts's fast ops do) */
function producer(kind, width, imm) {
  const k = kinds[kind];
  const lines = [];
  if (width === 64) {
    lines.push('const r = c.r;', 'const alo = r[d];', 'const ahi = r[d + 1];');
    lines.push(imm ? 'const blo = ilo;' : 'const blo = r[s];', imm ? 'const bhi = ihi;' : 'const bhi = r[s + 1];');
    lines.push(...k.w64);
    if (k.writes) lines.push('r[d] = lo;', 'r[d + 1] = hi;');
    lines.push('c.lazy = ARITH;', `c.lazyKind = ${k.lazy};`, 'c.lazySize = 8;');
    if (k.keepA) lines.push('c.lazyAlo = alo;', 'c.lazyAhi = ahi;');
    lines.push('c.lazyRlo = lo;', 'c.lazyRhi = hi;');
  } else {
    lines.push('const r = c.r;', 'const a = r[d];', imm ? 'const b = ilo;' : 'const b = r[s];', k.w32);
    if (k.writes) lines.push('r[d] = v;', 'r[d + 1] = 0;');
    lines.push('c.lazy = ARITH;', `c.lazyKind = ${k.lazy};`, 'c.lazySize = 4;');
    if (k.keepA) lines.push('c.lazyAlo = a;', 'c.lazyAhi = 0;');
    lines.push('c.lazyRlo = v;', 'c.lazyRhi = 0;');
  }
  return lines;
}

/** the producer fused with a jcc on its result */
function binary(kind, width, imm, zf) {
  return [...producer(kind, width, imm), branch(zf, width === 64 ? '(lo | hi) === 0' : 'v === 0'), 'return 1;'];
}

function unary(kind, width, zf) {
  const inc = kind === 'inc';
  const lines = ['keepCF(c);', 'const r = c.r;'];
  if (width === 64) {
    lines.push('const alo = r[d];', 'const ahi = r[d + 1];', `const lo = (alo ${inc ? '+' : '-'} 1) | 0;`,
      inc ? 'const hi = lo === 0 ? (ahi + 1) | 0 : ahi;' : 'const hi = alo === 0 ? (ahi - 1) | 0 : ahi;',
      'r[d] = lo;', 'r[d + 1] = hi;', 'c.lazy = ARITH & ~CF;', `c.lazyKind = ${inc ? 'LAZY_INC' : 'LAZY_DEC'};`, 'c.lazySize = 8;',
      'c.lazyRlo = lo;', 'c.lazyRhi = hi;', branch(zf, '(lo | hi) === 0'));
  } else {
    lines.push('const v = (r[d] ' + (inc ? '+' : '-') + ' 1) | 0;', 'r[d] = v;', 'r[d + 1] = 0;', 'c.lazy = ARITH & ~CF;',
      `c.lazyKind = ${inc ? 'LAZY_INC' : 'LAZY_DEC'};`, 'c.lazySize = 4;', 'c.lazyRlo = v;', 'c.lazyRhi = 0;', branch(zf, 'v === 0'));
  }
  lines.push('return 1;');
  return lines;
}

const entries = [];
for (const kind of Object.keys(kinds)) for (const width of [64, 32]) for (const imm of [false, true]) for (const zf of [true, false]) {
  entries.push([`${kind}${width}${imm ? 'i' : 'r'}${zf ? 'z' : 'c'}`, binary(kind, width, imm, zf)]);
}
for (const kind of ['inc', 'dec']) for (const width of [64, 32]) for (const zf of [true, false]) {
  entries.push([`${kind}${width}${zf ? 'z' : 'c'}`, unary(kind, width, zf)]);
}

const PARAMS = ['d', 's', 'ilo', 'ihi', 't', 'next', 'cc', 'taken'];
const body = entries.map(([name, lines]) => {
  const text = lines.join('\n');
  const params = PARAMS.map((p) => (new RegExp(`\\b${p}\\b`).test(text) ? p : `_${p}`)).join(', ');
  return `  ${name}: (${params}) => (c) => {\n${lines.map((l) => '    ' + l).join('\n')}\n  },`;
}).join('\n');

const text = `// Fused (flag producer, jcc) closures, one literal per producer, operand form, width and branch
// kind (z: je/jne read the fresh result; c: any condition through the lazy record). Generated by
// scripts/gen-fused.mjs; do not edit by hand.

import type { Cpu } from '../cpu';
import { ARITH, CF, condition, keepCF, LAZY_ADD, LAZY_DEC, LAZY_INC, LAZY_LOGIC, LAZY_SUB } from '../flags';

export type FusedFactory = (d: number, s: number, ilo: number, ihi: number, t: number, next: number, cc: number, taken: boolean) => (c: Cpu) => number;

// GENERATOR-BEGIN: fused
export const FUSED: Readonly<Record<string, FusedFactory>> = {
${body}
};
// GENERATOR-END: fused
`;
// ---- dead flags: the same producers without their flags (alu.ts, "dead flags") ----------------------

/** the producer's result only: for when the next instruction overwrites every flag it would set */
function quiet(kind, width, imm) {
  const k = kinds[kind];
  if (width === 64) {
    return ['const r = c.r;', 'const alo = r[d];', 'const ahi = r[d + 1];', imm ? 'const blo = ilo;' : 'const blo = r[s];',
      imm ? 'const bhi = ihi;' : 'const bhi = r[s + 1];', ...k.w64, 'r[d] = lo;', 'r[d + 1] = hi;'];
  }
  return ['const r = c.r;', 'const a = r[d];', imm ? 'const b = ilo;' : 'const b = r[s];', k.w32, 'r[d] = v;', 'r[d + 1] = 0;'];
}

const fastEntries = [];
for (const kind of Object.keys(kinds)) for (const width of [64, 32]) for (const imm of [false, true]) {
  fastEntries.push([`${kind}${width}${imm ? 'i' : 'r'}`, [...producer(kind, width, imm), 'return 0;']]);
}
const writers = Object.keys(kinds).filter((k) => kinds[k].writes);
const logic = writers.filter((k) => kinds[k].lazy === 'LAZY_LOGIC');
const quietEntries = [];
for (const kind of writers) for (const width of [64, 32]) for (const imm of [false, true]) {
  quietEntries.push([`${kind}${width}${imm ? 'i' : 'r'}`, [...quiet(kind, width, imm), 'return 0;']]);
}
// and/or/xor leave CF clear: before an inc or dec (which keeps CF) only that survives them
const cfEntries = [];
for (const kind of logic) for (const width of [64, 32]) {
  cfEntries.push([`${kind}${width}r`, [...quiet(kind, width, false), 'c.flags &= ~CF;', 'c.lazy = 0;', 'return 0;']]);
}

const FACTORY_PARAMS = ['d', 's', 'ilo', 'ihi'];
const factories = (list) => list.map(([name, lines]) => {
  const code = lines.join('\n');
  const params = FACTORY_PARAMS.map((p) => (new RegExp(`\\b${p}\\b`).test(code) ? p : `_${p}`)).join(', ');
  return `  ${name}: (${params}) => (c) => {\n${lines.map((l) => '    ' + l).join('\n')}\n  },`;
}).join('\n');

const aluText = `// Register ALU closures (alu.ts), one literal per operation, width and operand form, from the
// same table as the fused pairs: FAST computes the result and records the lazy flags; for dead
// flags (alu.ts, "dead flags") QUIET computes only the result, for an op whose flags the next one
// overwrites, and CF_CLEAR also sets the CF (clear) that an and, or or xor leaves for a
// following inc or dec. Generated by scripts/gen-fused.mjs; do not edit by hand.

import type { Cpu } from '../cpu';
import { ARITH, CF, LAZY_ADD, LAZY_LOGIC, LAZY_SUB } from '../flags';

export type AluFactory = (d: number, s: number, ilo: number, ihi: number) => (c: Cpu) => number;

// GENERATOR-BEGIN: alu
export const FAST: Readonly<Record<string, AluFactory>> = {
${factories(fastEntries)}
};

export const QUIET: Readonly<Record<string, AluFactory>> = {
${factories(quietEntries)}
};

export const CF_CLEAR: Readonly<Record<string, AluFactory>> = {
${factories(cfEntries)}
};
// GENERATOR-END: alu
`;

const outputs = [['src/machine/cpu/ops/fused.generated.ts', text], ['src/machine/cpu/ops/alu.generated.ts', aluText]];
for (const [target, content] of outputs) {
  if (process.argv.includes('--check')) {
    if (!existsSync(target) || readFileSync(target, 'utf8') !== content) {
      console.error(`${target} is out of date: run node scripts/gen-fused.mjs`);
      process.exit(1);
    }
  } else writeFileSync(target, content);
}
console.log(entries.length, 'fused forms,', fastEntries.length + quietEntries.length + cfEntries.length, 'ALU forms');

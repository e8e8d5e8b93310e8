// Robustness: random and mutated sources produce diagnostics, never an exception, a hang or an
// "internal assembler error". Seeded, so a failure reproduces.

import assert from 'node:assert/strict';
import { assemble } from '../../src/asm/assembler';
import { formatDiagnostic } from '../../src/asm/diagnostics';
import { generateCorpus, DIRECTIVE_SOURCES } from './corpus';

/** xorshift32: small, seeded, good enough to pick mutations */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789_.$[]+-*/%<>&|^~!(),:;\'"` \t#@?xXhHbB\\{}=';
const FRAGMENTS = ['rax', 'eax', 'al', 'ah', 'r15b', 'cr0', 'fs', '[', ']', ',', '+', '*8', 'byte', 'dword', 'qword', 'strict',
  'short', 'near', 'rel', 'abs', '$', '$$', '0x', '0ffh', '-', '(', ')', 'times', 'db', 'dq', 'resb', 'equ', 'align', 'section',
  '.data', '.bss', 'org', 'default', 'lock', 'rep', 'mov', 'jmp', 'call', '_start', '.loop', '%define', '%include', '%ifdef',
  '%endif', '"', "'", '`', ';', '\\', ':', 'label', '99999999999999999999', '-0x8000000000000000', '1 << 70', '/ 0', '% 0'];

function mutate(line: string, r: () => number): string {
  let s = line;
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(r() * (s.length + 1));
    const op = r();
    if (op < 0.3 && s.length > 0) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 4));
    else if (op < 0.6) s = s.slice(0, at) + ALPHABET[Math.floor(r() * ALPHABET.length)] + s.slice(at);
    else s = s.slice(0, at) + ' ' + FRAGMENTS[Math.floor(r() * FRAGMENTS.length)] + ' ' + s.slice(at);
  }
  return s;
}

function randomLine(r: () => number): string {
  const n = Math.floor(r() * 8);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    parts.push(r() < 0.5 ? FRAGMENTS[Math.floor(r() * FRAGMENTS.length)] : ALPHABET[Math.floor(r() * ALPHABET.length)]);
  }
  return parts.join(r() < 0.5 ? ' ' : '');
}

function check(text: string, files: Record<string, string> = {}): void {
  let result;
  try {
    result = assemble({ file: 'fuzz.vasm', text, reader: { readFile: (p) => files[p] }, includeDirs: [] });
  } catch (e) {
    assert.fail(`assemble threw on:\n${text}\n${e instanceof Error ? e.stack : e}`);
  }
  const internal = result.diagnostics.find((d) => d.message.startsWith('internal assembler error'));
  assert.equal(internal, undefined, `internal error on:\n${text}\n${internal ? formatDiagnostic(internal) : ''}`);
  if (!result.ok) assert.ok(result.diagnostics.some((d) => d.severity === 'error'));
}

describe('assembler robustness', () => {
  const corpus = generateCorpus();

  it('3,000 mutated corpus lines, each in a small program', () => {
    const r = rng(0xa51c);
    for (let i = 0; i < 3000; i++) {
      const line = corpus[Math.floor(r() * corpus.length)];
      check(`_start: nop\n${mutate(line, r)}\nnear_label: back_label: far_label:\nsection .data\ndata_label: dq 0\n`);
    }
  });

  it('2,000 random token soups', () => {
    const r = rng(7);
    for (let i = 0; i < 2000; i++) check(`${randomLine(r)}\n${randomLine(r)}\n`);
  });

  it('mutated whole programs (directives, sections, preprocessor)', () => {
    const r = rng(99);
    for (let i = 0; i < 300; i++) {
      const src = DIRECTIVE_SOURCES[i % DIRECTIVE_SOURCES.length].split('\n');
      const k = Math.floor(r() * src.length);
      src[k] = mutate(src[k], r);
      check(src.join('\n'), { 'avic.inc': 'X equ 1\n' });
    }
  });

  it('pathological inputs finish quickly with a diagnostic', () => {
    const cases = [
      'times 0x10000000 nop',
      'times 100000000 db 0',
      'resq 0x1000000',
      'a equ b\nb equ a\nmov eax, a',
      'x: times x nop',
      'jmp $ + 0x7fffffff0',
      '%define A A\nmov eax, A',
      '%define A B\n%define B A\nmov eax, A',
      '%define F(x) F(x)\nmov eax, F(1)',
      '%include "self.vasm"',
      `mov eax, ${'('.repeat(200)}1${')'.repeat(200)}`,
      `db ${'1,'.repeat(5000)}1`,
      'align 0x40000000',
      'section .data\nsection .data align=16\n',
      '\u0000\u0001\u00ff',
      'mov eax, [rax+rbx+rcx]',
      'mov eax, [rax*rbx]',
      '%ifdef\n%else\n%else\n%endif\n%endif',
    ];
    for (const c of cases) {
      const t = Date.now();
      check(c, { 'self.vasm': '%include "self.vasm"\n' });
      assert.ok(Date.now() - t < 5000, `took ${Date.now() - t} ms: ${c.slice(0, 60)}`);
    }
  });
});

// Byte equality with `nasm -f bin`: the generated corpus (every form of every mnemonic, each
// line in its own 16-byte slot), the directive/expression sources, and every file in examples/.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatDiagnostic } from '../../src/asm/diagnostics';
import { asm } from './asm-helpers';
import { corpusSource, DIRECTIVE_SOURCES, FIRST_LINE, generateCorpus, SLOT } from './corpus';
import { requireNasm, runNasm } from './nasm';

const EXAMPLES = join(__dirname, '..', '..', 'examples');

/** NASM accepts these silently or with a warning; we reject them on purpose (see README, "Assembler"). */
const STRICTER = [/out of range/, /does not fit/, /operation size not specified/, /cannot be encoded: an absolute address/];

function hexDiff(a: Uint8Array, b: Uint8Array): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const show = (x: Uint8Array) => Buffer.from(x.subarray(Math.max(0, i - 4), i + 12)).toString('hex');
  return `first difference at image offset 0x${i.toString(16)}: nasm ${show(a)} / ours ${show(b)} (lengths ${a.length} / ${b.length})`;
}

describe('assembler: byte equality with nasm -f bin', function () {
  before(function () {
    requireNasm(this);
  });

  it('the generated corpus: every form, every line identical', function () {
    let lines = generateCorpus();
    assert.ok(lines.length > 3000, `corpus has ${lines.length} lines`);
    const srcLine = (i: number) => FIRST_LINE + 2 * i;
    // the generator produces some combinations nasm itself rejects (16-bit call, out-of-range loop): drop them
    let n = runNasm(corpusSource(lines));
    for (let round = 0; round < 6 && !n.ok; round++) {
      const before = lines.length;
      lines = lines.filter((_, i) => !n.errorLines.has(srcLine(i)));
      assert.ok(lines.length < before, `nasm failed without naming a corpus line:\n${n.stderr.slice(0, 2000)}`);
      n = runNasm(corpusSource(lines));
    }
    assert.ok(n.ok, n.stderr.slice(0, 2000));

    // what we reject, nasm must have rejected too or warned about, and only for the documented reasons
    const ours = asm(corpusSource(lines), { file: 'in.asm' });
    const rejected = ours.diagnostics.filter((d) => d.severity === 'error');
    for (const d of rejected) {
      const text = lines[(d.line - FIRST_LINE) / 2];
      assert.ok(n.warningLines.has(d.line) || STRICTER.some((re) => re.test(d.message)),
        `we reject '${text}' (${formatDiagnostic(d)}) which nasm accepts silently`);
    }
    const bad = new Set(rejected.map((d) => d.line));
    lines = lines.filter((_, i) => !bad.has(srcLine(i)));
    assert.ok(lines.length > 3000);

    n = runNasm(corpusSource(lines));
    const r = asm(corpusSource(lines), { file: 'in.asm' });
    assert.ok(n.ok, n.stderr.slice(0, 1000));
    assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
    const mismatches: string[] = [];
    const base = SLOT; // the first slot holds `back_label: nop`
    for (let i = 0; i < lines.length; i++) {
      const a = Buffer.from(n.image.subarray(base + i * SLOT, base + (i + 1) * SLOT)).toString('hex');
      const b = Buffer.from(r.image.subarray(base + i * SLOT, base + (i + 1) * SLOT)).toString('hex');
      if (a !== b) mismatches.push(`${lines[i]}\n    nasm ${a}\n    ours ${b}`);
    }
    assert.equal(mismatches.length, 0, `${mismatches.length} of ${lines.length} lines differ:\n  ${mismatches.slice(0, 30).join('\n  ')}`);
    assert.equal(Buffer.compare(Buffer.from(n.image), Buffer.from(r.image)), 0, hexDiff(n.image, r.image));
  });

  DIRECTIVE_SOURCES.forEach((src, i) => {
    it(`directives and expressions, source ${i + 1}`, function () {
      const text = /^\s*org\b/m.test(src) ? src : `org 0x100000\n${src}`;
      const n = runNasm(text);
      assert.ok(n.ok, n.stderr);
      const r = asm(text, { file: 'in.asm' });
      assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
      assert.equal(Buffer.compare(Buffer.from(n.image), Buffer.from(r.image)), 0, hexDiff(n.image, r.image));
    });
  });

  const examples = readdirSync(EXAMPLES).filter((f) => f.endsWith('.vasm')).sort();
  it('there are examples to compare', () => assert.ok(examples.length > 0));
  for (const name of examples) {
    it(`examples/${name}`, function () {
      const path = join(EXAMPLES, name);
      const text = readFileSync(path, 'utf8');
      const r = asm(text, { file: path, requireStart: true });
      assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic), []);
      // contracts/guest.md: without `org` the comparison runs with `org 0x100000` prepended
      const n = runNasm(/^\s*org\b/im.test(text) ? text : `org 0x100000\n${text}`, [EXAMPLES]);
      assert.ok(n.ok, n.stderr);
      assert.equal(Buffer.compare(Buffer.from(n.image), Buffer.from(r.image)), 0, hexDiff(n.image, r.image));
    });
  }
});

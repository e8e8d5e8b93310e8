// `avic asm` as a user runs it: the built bundle (dist/cli.js, with iced's WASM inlined), from
// another working directory, with its exit codes.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli.js');

function avic(args: string[], cwd: string) {
  return spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8' });
}

describe('avic asm (the built CLI)', () => {
  let dir: string;
  before(() => {
    assert.ok(existsSync(CLI), 'dist/cli.js is missing: run `npm run build` first (npm test does)');
    dir = mkdtempSync(join(tmpdir(), 'avic-cli-'));
  });

  it('assembles the bundled example, writes the binary and prints the listing', () => {
    const out = join(dir, 'hello.bin');
    const r = avic(['asm', join(ROOT, 'examples', 'hello.vasm'), '-o', out, '--listing'], dir);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    const bin = readFileSync(out);
    assert.ok(bin.length > 50);
    assert.match(r.stdout, /^ {5}1 {34}; hello\.vasm/m);
    assert.match(r.stdout, /^ +\d+ 00100000 8B05[0-9A-F]{8} +\.wait: +mov +eax, \[turn\]$/m);
    assert.match(r.stdout, /<1> MSR_IA32_APICBASE/); // included lines carry their depth
  });

  it('defaults the output name to the source name with .bin', () => {
    writeFileSync(join(dir, 'tiny.vasm'), '_start: hlt\n');
    const r = avic(['asm', 'tiny.vasm'], dir);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'tiny.bin')).toString('hex'), 'f4');
  });

  it('searches -I folders for %include', () => {
    const inc = mkdtempSync(join(tmpdir(), 'avic-inc-'));
    writeFileSync(join(inc, 'mine.inc'), 'MY_PORT equ 0x80\n');
    writeFileSync(join(dir, 'inc.vasm'), '%include "mine.inc"\n_start: out MY_PORT, al\n');
    const r = avic(['asm', 'inc.vasm', '-o', 'inc.bin', '-I', inc], dir);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'inc.bin')).toString('hex'), 'e680');
  });

  it('prints file:line:col diagnostics and exits 1 on errors', () => {
    writeFileSync(join(dir, 'bad.vasm'), '_start: nop\n  movq rax, 1\n  jmp nowhere\n');
    const r = avic(['asm', 'bad.vasm'], dir);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, "bad.vasm:2:3: unknown mnemonic 'movq'\nbad.vasm:3:7: symbol 'nowhere' is not defined\n");
    assert.equal(existsSync(join(dir, 'bad.bin')), false);
  });

  it('exits 1 with usage on bad command lines', () => {
    for (const args of [['asm'], ['asm', 'a.vasm', 'b.vasm'], ['asm', '--bogus', 'x'], ['frob'], ['asm', 'x.vasm', '-o']]) {
      const r = avic(args, dir);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^avic: .*\nusage:/);
    }
    assert.equal(avic(['asm', 'missing.vasm'], dir).stderr, 'missing.vasm: cannot read the file\n');
  });
});

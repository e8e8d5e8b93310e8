// peers.test.ts - short functional checks of scripts/peers/peers.ts: the loop guest (bytes, done
// site, nasm agreement, checksum arithmetic), one small loop on each peer that must print the
// expected RAX/RBX checksum, the MIPS functions' result shape, and "missing peer -> mips: null
// with a reason, no throw". No timing assertions: the machines are noisy. A missing peer prints
// why and skips (AVIC_REQUIRE_PEERS=1 turns that into a failure).
// Run: npx mocha --no-config -r tsx/cjs --extension ts --timeout 600000 test/oracle/peers/peers.test.ts

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bochsAvailable } from '../bochs/bochs';
import { kvmAvailable } from '../kvm/kvm';
import {
  DONE_AL, LOAD_ADDRESS, LOOP_BODY, bochsMips, expectedChecksum, kvmMips, kvmUserLoopImage, kvmUserLoopSource,
  loopBody, loopImage, loopSource, qemuAvailable, qemuTcgMips,
  runLoopOnBochs, runLoopOnKvm, runLoopOnQemu, type MeasureOptions, type PeerMips, type PeerRun,
} from '../../../scripts/peers/peers';

const SMALL = 100_000;
const PEERS_TS = path.resolve(__dirname, '..', '..', '..', 'scripts', 'peers', 'peers.ts');

function hasNasm(): boolean {
  const r = spawnSync('nasm', ['-v'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

function nasmBytes(source: string): Uint8Array {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'avic-peers-test-'));
  try {
    fs.writeFileSync(path.join(dir, 'g.asm'), source);
    const r = spawnSync('nasm', ['-f', 'bin', '-o', path.join(dir, 'g.bin'), path.join(dir, 'g.asm')], { encoding: 'utf8' });
    assert.equal(r.status, 0, `nasm failed: ${r.stderr}`);
    return new Uint8Array(fs.readFileSync(path.join(dir, 'g.bin')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** RAX, RBX after the loop, the slow obvious way. */
function referenceChecksum(n: number): { rax: bigint; rbx: bigint } {
  let rax = 0n;
  let rbx = 0n;
  for (let rcx = BigInt(n); rcx > 0n; rcx--) {
    rax = BigInt.asUintN(64, rax + rcx);
    rbx ^= rax;
  }
  return { rax, rbx };
}

function skipUnless(ctx: Mocha.Context, avail: { ok: boolean; reason: string }, label: string): void {
  if (avail.ok) return;
  const msg = `${label} peer unavailable: ${avail.reason}`;
  if (process.env.AVIC_REQUIRE_PEERS === '1') assert.fail(`${msg} (AVIC_REQUIRE_PEERS=1)`);
  console.log(`      ${msg}: skipped`);
  ctx.skip();
}

function assertRan(r: PeerRun, label: string): void {
  assert.equal(r.status, 'ok', `${label}: ${r.error}`);
  assert.equal(r.console, expectedChecksum(SMALL).console, `${label} printed another checksum`);
  assert.equal(r.iterations, SMALL);
}

/** Shape only: a positive figure, or null with the one reason a short run may legitimately give. */
function assertMipsShape(p: PeerMips, iterations: number): void {
  if (p.mips === null) {
    assert.match(p.reason ?? '', /not longer than the start-up/, `unexpected failure: ${p.reason}`);
    return;
  }
  assert.ok(Number.isFinite(p.mips) && p.mips > 0, `mips = ${p.mips}`);
  assert.equal(p.iterations, iterations);
  assert.ok(p.seconds > 0 && p.startupSeconds !== undefined && p.startupSeconds >= 0);
  assert.equal(p.reason, undefined);
}

describe('peers: the benchmark loop guest', () => {
  it('LOOP_BODY is the 4-instruction loop with an ITERATIONS parameter', () => {
    assert.match(LOOP_BODY, /mov\s+rcx, ITERATIONS\n\.loop:\s+add\s+rax, rcx\n\s+xor\s+rbx, rax\n\s+dec\s+rcx\n\s+jnz\s+\.loop\n/);
    assert.ok(loopBody(123).includes('mov     rcx, 123\n'));
    assert.throws(() => loopBody(0), RangeError);
    assert.throws(() => loopImage(1.5), RangeError);
  });

  it('loopImage: _start at offset 0, the loop first, `out 0xf4, al` as the done site', () => {
    const g = loopImage(SMALL);
    // mov ecx, 100000 (what NASM makes of `mov rcx, 100000`), add rax,rcx, xor rbx,rax, dec rcx, jnz
    assert.deepEqual([...g.image.subarray(0, 15)], [0xb9, 0xa0, 0x86, 0x01, 0x00, 0x48, 0x01, 0xc8, 0x48, 0x31, 0xc3, 0x48, 0xff, 0xc9, 0x75]);
    assert.equal(g.doneSites.length, 1);
    const off = g.doneSites[0] - LOAD_ADDRESS;
    assert.deepEqual([...g.image.subarray(off)], [0xe6, 0xf4], 'the done site is the last instruction');
    // `mov al, '\n'` precedes it (QEMU's exit status depends on AL)
    assert.deepEqual([...g.image.subarray(off - 4, off)], [0xb0, DONE_AL, 0xe6, 0xe9]);
    const k = kvmUserLoopImage(SMALL);
    assert.deepEqual([...k.image.subarray(k.doneSites[0] - LOAD_ADDRESS, k.doneSites[0] - LOAD_ADDRESS + 2)], [0xe6, 0xf4]);
  });

  it('our assembler and nasm build the same bytes', function () {
    if (!hasNasm()) {
      console.log('      nasm not installed: skipped');
      this.skip();
    }
    for (const n of [1, SMALL, 0x1_0000_0000, 2 ** 53 - 1]) {
      assert.deepEqual(loopImage(n).image, nasmBytes(loopSource(n)), `loopImage(${n})`);
      assert.deepEqual(kvmUserLoopImage(n).image, nasmBytes(kvmUserLoopSource(n)), `kvmUserLoopImage(${n})`);
    }
  });

  it('expectedChecksum matches a plain BigInt loop', () => {
    for (const n of [1, 2, 3, 1000, 65537, SMALL]) {
      const e = expectedChecksum(n);
      const r = referenceChecksum(n);
      assert.equal(e.rax, r.rax, `rax for ${n}`);
      assert.equal(e.rbx, r.rbx, `rbx for ${n}`);
      assert.equal(e.console, `${r.rax.toString(16).padStart(16, '0')} ${r.rbx.toString(16).padStart(16, '0')}\n`);
    }
  });
});

describe('peers: each peer runs the loop', () => {
  const cases: [string, () => { ok: boolean; reason: string }, (n: number) => PeerRun, (o?: MeasureOptions) => PeerMips, number][] = [
    ['Bochs', bochsAvailable, runLoopOnBochs, bochsMips, 10_000_000],
    ['QEMU TCG', qemuAvailable, runLoopOnQemu, qemuTcgMips, 300_000_000],
    ['KVM (CPL3)', kvmAvailable, runLoopOnKvm, kvmMips, 1_000_000_000],
  ];
  for (const [label, available, run, mips, measured] of cases) {
    it(`${label}: ${SMALL} iterations print the expected RAX/RBX checksum`, function () {
      skipUnless(this, available(), label);
      assertRan(run(SMALL), label);
    });

    it(`${label}: the MIPS function returns a figure for a fixed iteration count (shape only)`, function () {
      skipUnless(this, available(), label);
      assertMipsShape(mips({ iterations: measured, startupRuns: 1 }), measured);
    });
  }
});

describe('peers: a missing peer', () => {
  it('gives mips: null and a reason, without throwing (PATH without the emulators, gcc and nasm)', function () {
    // A child process whose PATH holds only node: every peer is missing.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'avic-peers-path-'));
    try {
      fs.symlinkSync(process.execPath, path.join(bin, 'node'));
      const script = path.join(bin, 'probe.ts');
      fs.writeFileSync(script, [
        `import { measurePeers } from ${JSON.stringify(PEERS_TS)};`,
        'console.log(JSON.stringify(measurePeers()));',
      ].join('\n'));
      const r = spawnSync(process.execPath, ['-r', require.resolve('tsx/cjs'), script], {
        encoding: 'utf8', env: { ...process.env, PATH: bin }, timeout: 120000,
      });
      assert.equal(r.status, 0, `child failed: ${r.stderr}`);
      const res = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
      assert.equal(res.bochs_mips, null);
      assert.equal(res.qemu_tcg_mips, null);
      assert.match(res.reasons.bochs_mips, /Bochs unavailable: .*not on PATH/);
      assert.match(res.reasons.qemu_tcg_mips, /QEMU TCG unavailable: .*not on PATH/);
      if (fs.existsSync('/dev/kvm')) {
        assert.equal(res.kvm_mips, null);
        assert.match(res.reasons.kvm_mips, /KVM \(CPL3\) unavailable: (gcc not found|\/dev\/kvm)/);
      } else {
        assert.match(res.reasons.kvm_mips, /\/dev\/kvm/);
      }
    } finally {
      fs.rmSync(bin, { recursive: true, force: true });
    }
  });
});

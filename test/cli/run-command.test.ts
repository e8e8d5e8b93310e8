// `avic run` as a user and as scripts run it: the built CLI, the contract's exit codes and JSON
// (contracts/run-json.md), the `; avic-run:` line, binaries, --trace.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli.js');

function avic(args: string[], cwd: string, encoding: BufferEncoding = 'utf8') {
  return spawnSync(process.execPath, [CLI, ...args], { cwd, encoding });
}

describe('avic run (the built CLI)', () => {
  let dir: string;
  const write = (name: string, text: string) => writeFileSync(join(dir, name), text);
  before(() => {
    assert.ok(existsSync(CLI), 'dist/cli.js is missing: run `npm run build` first (npm test does)');
    dir = mkdtempSync(join(tmpdir(), 'avic-run-'));
  });

  it('runs the bundled example with its `; avic-run:` options: console, then a summary; exit 0', () => {
    const r = avic(['run', join(ROOT, 'examples', 'hello.vasm')], dir);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.deepEqual(lines.slice(0, 4), ['hello from vCPU 0', 'hello from vCPU 1', 'hello from vCPU 2', 'hello from vCPU 3']);
    assert.match(lines[4], /^avic: done: 4 vCPUs \(4 done\), \d+ steps, \d+ instructions in [\d.]+ s/);
  });

  it('--json prints the contract object; flags override the avic-run line', () => {
    const r = avic(['run', join(ROOT, 'examples', 'hello.vasm'), '--vcpus', '2', '--json'], dir);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(j), ['status', 'console', 'steps', 'vcpus', 'vm', 'violations', 'stats']);
    assert.equal(j.status, 'done');
    assert.equal(j.console, 'hello from vCPU 0\nhello from vCPU 1\n');
    assert.equal(j.vcpus.length, 2);
    assert.deepEqual(Object.keys(j.vcpus[0]), ['id', 'state', 'regs', 'apic', 'inhibits', 'srcuDepth', 'srcuReaders', 'requests', 'mode']);
    assert.deepEqual(j.vcpus[0].apic, { mode: 'xapic', apicvActive: true });
    assert.deepEqual([j.vcpus[0].srcuDepth, j.vcpus[0].srcuReaders, j.vcpus[0].mode], [0, 0, 'OUTSIDE_GUEST_MODE']);
    assert.deepEqual(j.vm, {
      kernel: 'v6.3', design: 'upstream', avic: true, x2avic: false, nested: false, apicvActivated: true, apicvInhibits: [],
      apicAccessMemslot: { enabled: true, inhibited: false },
      memslots: [
        { id: 0, gpa: '0x0000000000000000', size: 64 * 1024 * 1024, private: false },
        { id: 32765, gpa: '0x00000000fee00000', size: 4096, private: true },
      ],
    });
    assert.deepEqual(Object.keys(j.vcpus[0].regs), ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags']);
    for (const v of Object.values(j.vcpus[1].regs)) assert.match(v as string, /^0x[0-9a-f]{16}$/);
    assert.equal(j.vcpus[1].regs.rdi, '0x0000000000000001');
    assert.equal(typeof j.stats.instructions, 'number');
    assert.equal(j.stats.events.pio > 0, true);
    assert.deepEqual(j.violations, []);
  });

  it('the console is one JSON character per byte, any byte value', () => {
    write('bytes.vasm', '_start: xor eax, eax\n.l: out 0xe9, al\n inc eax\n cmp eax, 256\n jne .l\n out 0xf4, al\n');
    const j = JSON.parse(avic(['run', 'bytes.vasm', '--json'], dir).stdout);
    assert.equal(j.console.length, 256);
    for (let i = 0; i < 256; i++) assert.equal(j.console.charCodeAt(i), i);
    // without --json the bytes go to stdout unchanged
    const raw = avic(['run', 'bytes.vasm'], dir, 'latin1').stdout;
    for (let i = 0; i < 256; i++) assert.equal(raw.charCodeAt(i), i);
  });

  it('exit 2 for step-limit, halted and triple-fault, with the status in the JSON', () => {
    write('loop.vasm', '_start: jmp _start\n');
    write('halt.vasm', '_start: hlt\n');
    write('tf.vasm', '_start: ud2\n');
    for (const [file, status, extra] of [['loop.vasm', 'step-limit', ['--max-steps', '1000']], ['halt.vasm', 'halted', []], ['tf.vasm', 'triple-fault', []]] as const) {
      const r = avic(['run', file, '--json', ...extra], dir);
      assert.equal(r.status, 2, `${file}: ${r.stderr}`);
      assert.equal(JSON.parse(r.stdout).status, status);
    }
    assert.equal(JSON.parse(avic(['run', 'loop.vasm', '--json', '--max-steps', '1000'], dir).stdout).steps, 1000);
  });

  it('runs a flat .bin loaded at 0x100000', () => {
    writeFileSync(join(dir, 'tiny.bin'), Buffer.from([0xb0, 0x41, 0xe6, 0xe9, 0xe6, 0xf4])); // mov al,'A'; out 0xe9,al; out 0xf4,al
    const r = avic(['run', 'tiny.bin', '--json'], dir);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.console, 'A');
    assert.equal(j.vcpus[0].regs.rip, '0x0000000000100004');
  });

  it('bad input exits 1 with file:line:col diagnostics, and --json gives status "error"', () => {
    write('bad.vasm', '_start: nop\n  frob rax\n');
    const r = avic(['run', 'bad.vasm', '--json'], dir);
    assert.equal(r.status, 1);
    const j = JSON.parse(r.stdout);
    assert.equal(j.status, 'error');
    assert.deepEqual(j.errors, ["bad.vasm:2:3: unknown mnemonic 'frob'"]);
    assert.equal(r.stderr, "bad.vasm:2:3: unknown mnemonic 'frob'\n");
    write('badline.vasm', '; avic-run: --vcpus 600\n_start: hlt\n');
    const b = avic(['run', 'badline.vasm'], dir);
    assert.equal(b.status, 1);
    assert.equal(b.stderr, 'badline.vasm:1:1: avic-run line: --vcpus 600: expected 1..512\n');
    const c = avic(['run', 'bad.vasm', '--sched', 'fifo'], dir);
    assert.equal(c.status, 1);
    assert.match(c.stderr, /unknown mnemonic|--sched fifo: expected rr or random/);
    write('big.vasm', '_start: hlt\n section .bss\n resb 0xf00000\n');
    assert.match(avic(['run', 'big.vasm'], dir).stderr, /must end below 0x1000000/);
    assert.equal(avic(['run', 'nothere.vasm'], dir).status, 1);
    assert.equal(avic(['run'], dir).status, 1);
  });

  it('--trace prints one trace-cmd style line per event on stderr', () => {
    write('t.vasm', '_start: mov al, 0x68\n out 0xe9, al\n out 0xf4, al\n');
    const r = avic(['run', 't.vasm', '--trace'], dir);
    assert.equal(r.status, 0);
    const lines = r.stderr.trimEnd().split('\n');
    assert.match(lines[0], /^ +CPU 0\/KVM-1000 \[000\] +0\.000000000: avic_sched: vcpu 0 rip 0x100000$/);
    // the kernel's tracepoints, in the kernel's order: entry, the exit at the OUT, the port access
    const entry = lines.findIndex((l) => /: kvm_entry: vcpu 0, rip 0x100000$/.test(l));
    const exit = lines.findIndex((l) => /: kvm_exit: vcpu 0 reason SVM_EXIT_IOIO rip 0x100002 info1 0x0000000000e90010 /.test(l));
    const pio = lines.findIndex((l) => /^ +CPU 0\/KVM-1000 \[000\] +0\.\d{9}: kvm_pio: pio_write at 0xe9 size 1 count 1 val 0x68$/.test(l));
    assert.ok(entry >= 0 && exit > entry && pio > exit, lines.join('\n'));
    assert.ok(lines.some((l) => /kvm_pio: pio_write at 0xf4/.test(l)));
  });

  it('--list-designs prints the seven designs with a summary each', () => {
    const r = avic(['run', '--list-designs'], dir);
    assert.equal(r.status, 0);
    const names = r.stdout.trimEnd().split('\n').map((l) => l.split(/\s+/)[0]);
    assert.deepEqual(names, ['upstream', 'v3', 'pre-fix', 'srcu-drop-in-inhibit', 'toggle-in-update', 'nested-direct-update', 'drop-in-update-direct']);
    assert.match(r.stdout, /^upstream +Linux v6\.3/m);
  });

  it('a violation: exit 2, status "violation" with kind, vCPU, event and host stack; --keep-going runs on', () => {
    const example = join(ROOT, 'examples', 'apicv-update-all-vcpus.vasm');
    const r = avic(['run', example, '--design', 'toggle-in-update', '--json'], dir);
    assert.equal(r.status, 2);
    const j = JSON.parse(r.stdout);
    assert.equal(j.status, 'violation');
    assert.deepEqual(Object.keys(j.violations[0]), ['kind', 'vcpu', 'seq', 'message', 'hostStack']);
    assert.equal(j.violations[0].kind, 'memslot-double-toggle');
    assert.deepEqual(j.violations[0].hostStack.slice(0, 2), ['__x86_set_memory_region', 'kvm_vcpu_update_apicv']);
    assert.equal(j.violations[0].hostStack.at(-1), 'kvm_vcpu_ioctl');
    const k = avic(['run', example, '--design', 'toggle-in-update', '--keep-going', '--json'], dir);
    assert.equal(k.status, 2, 'done, but with violations recorded');
    assert.equal(JSON.parse(k.stdout).status, 'done');
    const text = avic(['run', example, '--design', 'toggle-in-update'], dir);
    assert.match(text.stdout, /avic: violation memslot-double-toggle \(vCPU \d, event \d+\): .*\n  host stack: __x86_set_memory_region <- kvm_vcpu_update_apicv <- vcpu_enter_guest/);
  });

  it('KVM options are checked and named in the message', () => {
    const example = join(ROOT, 'examples', 'hello.vasm');
    for (const [args, msg] of [
      [['--design', 'nope'], /--design nope: expected one of upstream, v3, /],
      [['--avic', 'yes'], /--avic yes: expected on or off/],
      [['--host-action', 'out=1:frob=1'], /unknown action 'frob'/],
      [['--host-action', 'now:msi=1/2'], /expected TRIGGER:ACTION=ARG\[:VCPU\]/],
      [['--host-action', 'out=300:msi=1/2'], /out=300 is not a byte value/],
      [['--vcpus', '256'], /at most 255 vCPUs/],
    ] as const) {
      const r = avic(['run', example, ...args], dir);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
    }
  });
});

// The debug adapter's benchmarks (part of `npm run bench`), through the real adapter process
// (dist/dap.js) over stdio with @vscode/debugadapter-testsupport's DebugClient, as a client sees
// it: launch to the first stop, the round trip of an instruction step with 1 and with 64 vCPUs,
// and a continue to a breakpoint 10^8 guest instructions away.

import { DebugClient } from '@vscode/debugadapter-testsupport';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assemble } from '../src/asm/assembler';
import { DEFAULT_OPTIONS, Machine } from '../src/machine/machine';

export interface DapFigures {
  readonly dap_launch_to_stop_ms: number;
  readonly dap_step_p50_ms_1_vcpu: number;
  readonly dap_step_p99_ms_1_vcpu: number;
  readonly dap_step_p50_ms_64_vcpus: number;
  readonly dap_step_p99_ms_64_vcpus: number;
  /** guest M instructions/s of a continue to a breakpoint 10^8 instructions away */
  readonly dap_continue_mips: number;
  /** the same program run to its end on the machine without the adapter (as `avic run` does) */
  readonly plain_run_mips_same_program: number;
}

/** runs `text` to its end on the machine, in this process: M instructions/s */
function plainRunMips(text: string): number {
  const a = assemble({ file: 'far.vasm', text, reader: { readFile: () => undefined } });
  const m = new Machine({ ...DEFAULT_OPTIONS, maxSteps: 1_000_000_000 }, a.image, a.org, a.end);
  const t = process.hrtime.bigint();
  const stop = m.run();
  if (stop.kind !== 'end' || stop.status !== 'done') throw new Error(`the far program did not finish: ${JSON.stringify(stop)}`);
  return m.instructions / (Number(process.hrtime.bigint() - t) / 1e9) / 1e6;
}

const LOOP = `_start: inc rax
        jmp _start
`;

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function session(adapter: string, program: string, args: Record<string, unknown>): Promise<{ dc: DebugClient; ms: number }> {
  const dc = new DebugClient('node', adapter, 'avic');
  dc.defaultTimeout = 60_000;
  await dc.start();
  const t = process.hrtime.bigint();
  await Promise.all([dc.configurationSequence(), dc.launch({ program, stopOnEntry: true, ...args } as never), dc.waitForEvent('stopped')]);
  return { dc, ms: Number(process.hrtime.bigint() - t) / 1e6 };
}

async function stepTimes(adapter: string, program: string, vcpus: number, count: number): Promise<number[]> {
  const { dc } = await session(adapter, program, { vcpus });
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = process.hrtime.bigint();
    await Promise.all([dc.nextRequest({ threadId: 1, granularity: 'instruction' }), dc.waitForEvent('stopped')]);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  await dc.stop();
  return times;
}

export async function measureDap(root: string): Promise<DapFigures> {
  const adapter = join(root, 'dist', 'dap.js');
  const dir = mkdtempSync(join(tmpdir(), 'avic-dap-bench-'));
  const loop = join(dir, 'loop.vasm');
  writeFileSync(loop, LOOP);
  const launches: number[] = [];
  for (let i = 0; i < 5; i++) {
    const { dc, ms } = await session(adapter, join(root, 'examples', 'hello.vasm'), {});
    launches.push(ms);
    await dc.stop();
  }
  const one = await stepTimes(adapter, loop, 1, 200);
  const many = await stepTimes(adapter, loop, 64, 200);
  // 5 * 10^7 iterations of two instructions, then the breakpoint
  const far = join(dir, 'far.vasm');
  const farText = `_start: mov rcx, 50000000
.loop:  dec rcx
        jnz .loop
there:  out 0xf4, al
`;
  writeFileSync(far, farText);
  // warm up, then the best of three (the adapter's figure is one run: compare it with the plain run at its best)
  plainRunMips(farText);
  const plain = Math.max(plainRunMips(farText), plainRunMips(farText), plainRunMips(farText));
  const { dc } = await session(adapter, far, { maxSteps: 1_000_000_000 });
  await dc.setBreakpointsRequest({ source: { path: far }, breakpoints: [{ line: 4 }] });
  const t = process.hrtime.bigint();
  await Promise.all([dc.continueRequest({ threadId: 1 }), dc.waitForEvent('stopped', 600_000)]);
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  await dc.stop();
  const r = (x: number) => Math.round(x * 100) / 100;
  return {
    dap_launch_to_stop_ms: r(percentile(launches, 50)),
    dap_step_p50_ms_1_vcpu: r(percentile(one, 50)),
    dap_step_p99_ms_1_vcpu: r(percentile(one, 99)),
    dap_step_p50_ms_64_vcpus: r(percentile(many, 50)),
    dap_step_p99_ms_64_vcpus: r(percentile(many, 99)),
    dap_continue_mips: r(1e8 / seconds / 1e6),
    plain_run_mips_same_program: r(plain),
  };
}

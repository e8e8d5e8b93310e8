// run.ts - run a flat guest image on the Bochs oracle by hand and print the result as JSON.
// Usage: npx tsx test/oracle/bochs/run.ts IMAGE.bin [--vcpus N] [--memory MIB] [--load ADDR]
//          [--timeout MS] (--done ADDR[,ADDR...] | --lst NASM.lst)
// --lst takes the done sites from a `nasm -l` listing: every `out 0xf4, ...` line and every line
// containing ';@done' (addresses = load address + listing offset).

import * as fs from 'node:fs';
import { runOnBochs } from './bochs';

function main(argv: string[]): number {
  const args = [...argv];
  const file = args.shift();
  const opts: Record<string, string> = {};
  while (args.length) {
    const k = args.shift()!;
    if (!k.startsWith('--') || !args.length) throw new Error(`bad argument ${k}`);
    opts[k.slice(2)] = args.shift()!;
  }
  if (!file) throw new Error('usage: run.ts IMAGE.bin [--vcpus N] [--memory MIB] [--load ADDR] [--timeout MS] (--done ADDR,... | --lst FILE.lst)');
  const load = opts.load ? Number(opts.load) : 0x100000;
  let doneSites: number[] = [];
  if (opts.done) doneSites = opts.done.split(',').map((s) => Number(s));
  if (opts.lst) {
    for (const line of fs.readFileSync(opts.lst, 'latin1').split('\n')) {
      const m = /^\s*\d+\s+([0-9A-F]{8})\s+[0-9A-F]+\s+(.*)$/.exec(line);
      if (m && (/\bout\s+0xf4\s*,/i.test(m[2]) || m[2].includes(';@done'))) doneSites.push(load + parseInt(m[1], 16));
    }
  }
  const r = runOnBochs(fs.readFileSync(file), {
    vcpus: opts.vcpus ? Number(opts.vcpus) : undefined,
    memoryMiB: opts.memory ? Number(opts.memory) : undefined,
    loadAddress: load,
    timeoutMs: opts.timeout ? Number(opts.timeout) : undefined,
    doneSites,
  });
  process.stdout.write(`${JSON.stringify({ ...r, doneSites: doneSites.map((a) => `0x${a.toString(16)}`) }, null, 1)}\n`);
  return r.status === 'done' ? 0 : 1;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`run.ts: ${(e as Error).message}\n`);
  process.exitCode = 2;
}

// `avic run FILE.vasm|FILE.bin [options]`: assemble if needed, run on the machine, print the
// console and a summary, or the --json object of contracts/run-json.md; `avic run
// --list-designs`. Exit codes: 0 done without violations, 1 bad input, 2 any other end
// (step-limit, halted, violation, triple-fault, or done with violations under --keep-going).

import { readFileSync } from 'node:fs';
import { assemble } from '../asm/assembler';
import { formatDiagnostic } from '../asm/diagnostics';
import { LoadError, DEFAULT_LOAD_ADDRESS } from '../machine/loader';
import { DESIGN_NAMES, DESIGNS } from '../machine/kvm/design';
import { DEFAULT_OPTIONS, Machine, type MachineOptions } from '../machine/machine';
import { errorResult, runResult, type RunResult } from '../machine/result';
import { applyRunFlags, findRunLine, OptionError, RUN_OPTIONS } from '../machine/run-options';
import { formatTraceLine } from '../machine/trace';
import { parseArgs, UsageError, type FlagSpec } from './args';
import { bundledIncludeDir, nodeFileReader } from './files';

export const RUN_USAGE = 'avic run FILE.vasm|FILE.bin [--vcpus N] [--memory MIB] [--design NAME] [--avic on|off] [--x2avic on|off] ' +
  '[--nested on|off] [--sched rr|random] [--quantum N] [--seed N] [--max-steps N] [--host-action TRIGGER:ACTION=ARG[:VCPU]]... ' +
  '[--keep-going] [--json] [--trace] | avic run --list-designs';

const CLI_ONLY = new Set(['--json', '--trace', '--list-designs']);

const SPEC: Record<string, FlagSpec> = {
  ...Object.fromEntries(RUN_OPTIONS.map((o) => [o.flag, o.kind === 'flag' ? {} : { value: true, repeat: o.kind === 'repeat' ? true : undefined }])),
  '--json': {},
  '--trace': {},
  '--list-designs': {},
};

/** Machine flags (every value, in order), from parsed arguments. */
function machineFlags(flags: Map<string, string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [k, v] of flags) if (!CLI_ONLY.has(k)) out.set(k, v);
  return out;
}

export function runCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): number {
  const args = parseArgs(argv, SPEC);
  if (args.flags.has('--list-designs')) {
    if (args.positionals.length > 0) throw new UsageError('--list-designs takes no program');
    const width = Math.max(...DESIGN_NAMES.map((n) => n.length));
    for (const name of DESIGN_NAMES) out(`${name.padEnd(width)}  ${DESIGNS[name].summary}`);
    return 0;
  }
  if (args.positionals.length !== 1) throw new UsageError(`expected one program: ${RUN_USAGE}`);
  const file = args.positionals[0];
  const json = args.flags.has('--json');
  const fail = (errors: string[]): number => {
    if (json) out(JSON.stringify(errorResult(errors), null, 2));
    for (const e of errors) err(e);
    return 1;
  };

  let image: Uint8Array;
  let loadAddress = DEFAULT_LOAD_ADDRESS;
  let imageEnd: number | undefined;
  let options: MachineOptions = DEFAULT_OPTIONS;
  try {
    if (/\.bin$/i.test(file)) {
      image = new Uint8Array(readFileSync(file));
    } else {
      const text = nodeFileReader.readFile(file);
      if (text === undefined) return fail([`${file}: cannot read the file`]);
      const result = assemble({ file, text, reader: nodeFileReader, includeDirs: [bundledIncludeDir()] });
      const errors = result.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic);
      for (const d of result.diagnostics) if (d.severity === 'warning') err(formatDiagnostic(d));
      if (errors.length > 0) return fail(errors);
      image = result.image;
      loadAddress = result.org;
      imageEnd = result.end;
      const line = findRunLine(text);
      if (line) {
        try {
          const parsed = parseArgs(line.words, SPEC);
          if (parsed.positionals.length > 0) throw new UsageError(`unexpected '${parsed.positionals[0]}'`);
          options = applyRunFlags(options, machineFlags(parsed.flags));
        } catch (e) {
          if (e instanceof UsageError || e instanceof OptionError) return fail([`${file}:${line.line}:1: avic-run line: ${e.message}`]);
          throw e;
        }
      }
    }
  } catch (e) {
    if (e instanceof Error && 'code' in e) return fail([`${file}: cannot read the file`]);
    throw e;
  }
  try {
    options = applyRunFlags(options, machineFlags(args.flags));
  } catch (e) {
    if (e instanceof OptionError) return fail([e.message]);
    throw e;
  }

  let machine: Machine;
  try {
    machine = new Machine(options, image, loadAddress, imageEnd);
  } catch (e) {
    if (e instanceof LoadError || e instanceof RangeError) return fail([`${file}: ${e.message}`]);
    throw e;
  }
  if (args.flags.has('--trace')) machine.log.onEvent((e) => err(formatTraceLine(e)));
  const started = Date.now();
  const stop = machine.run();
  const status = stop.kind === 'end' ? stop.status : 'step-limit';
  for (const e of machine.errors) err(`${file}: ${e}`);
  const result: RunResult = runResult(machine, status);
  if (json) out(JSON.stringify(result, null, 2));
  else {
    process.stdout.write(Buffer.from(result.console, 'latin1')); // the guest's bytes, unchanged
    if (result.console.length > 0 && !result.console.endsWith('\n')) out('');
    out(summary(result, (Date.now() - started) / 1000));
  }
  return status === 'error' ? 1 : status === 'done' && result.violations.length === 0 ? 0 : 2;
}

function summary(r: RunResult, seconds: number): string {
  const states = new Map<string, number>();
  for (const v of r.vcpus) states.set(v.state, (states.get(v.state) ?? 0) + 1);
  const detail = [...states].map(([s, n]) => `${n} ${s}`).join(', ');
  const rate = seconds >= 0.1 && r.stats.instructions >= 1e6 ? `, ${(r.stats.instructions / seconds / 1e6).toFixed(1)} M instructions/s` : '';
  const violations = r.violations.map((v) => `\navic: violation ${v.kind} (vCPU ${v.vcpu ?? 'VMM'}, event ${v.seq}): ${v.message}\n  host stack: ${v.hostStack.join(' <- ') || '-'}`).join('');
  return `avic: ${r.status}: ${r.vcpus.length} vCPU${r.vcpus.length === 1 ? '' : 's'} (${detail}), ${r.steps} steps, ${r.stats.instructions} instructions in ${seconds.toFixed(2)} s${rate}${violations}`;
}

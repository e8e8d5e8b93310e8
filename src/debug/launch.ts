// The `launch` request's attributes (contracts/dap.md, "Launch attributes"): validated with
// messages that name the attribute, merged over the defaults and the program's `; avic-run:`
// line exactly as `avic run` merges its flags, and the program assembled with diagnostics as
// `file:line:col: message`.

import { assemble, type AssembleResult } from '../asm/assembler';
import { formatDiagnostic } from '../asm/diagnostics';
import type { FileReader } from '../asm/preprocessor';
import { DESIGN_NAMES, isDesignName } from '../machine/kvm/design';
import { AVIC_MAX_PHYSICAL_ID } from '../machine/kvm/svm/avic';
import { parseHostAction } from '../machine/kvm/userspace';
import { DEFAULT_OPTIONS, MAX_VCPUS, type MachineOptions } from '../machine/machine';
import { applyRunFlags, findRunLine, OptionError, parseRunLine } from '../machine/run-options';

export interface LaunchArguments {
  readonly program?: unknown;
  readonly vcpus?: unknown;
  readonly memory?: unknown;
  readonly design?: unknown;
  readonly avic?: unknown;
  readonly x2avic?: unknown;
  readonly nested?: unknown;
  readonly keepGoing?: unknown;
  readonly stopOnEntry?: unknown;
  readonly sched?: unknown;
  readonly quantum?: unknown;
  readonly seed?: unknown;
  readonly maxSteps?: unknown;
  readonly hostActions?: unknown;
  readonly schedule?: unknown;
}

export interface Launched {
  /** the attributes as the client gave them */
  readonly args: LaunchArguments;
  readonly program: string;
  readonly assembly: AssembleResult;
  readonly options: MachineOptions;
  readonly stopOnEntry: boolean;
}

export class LaunchError extends Error {}

function integer(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new LaunchError(`launch attribute '${name}': expected an integer ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
}

function bool(name: string, v: unknown): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new LaunchError(`launch attribute '${name}': expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** Launch attributes over `base` (defaults, then the `; avic-run:` line). */
export function applyLaunchAttributes(base: MachineOptions, a: LaunchArguments): MachineOptions {
  const o: { -readonly [K in keyof MachineOptions]: MachineOptions[K] } = { ...base };
  const set = <K extends keyof MachineOptions>(k: K, v: MachineOptions[K] | undefined) => {
    if (v !== undefined) o[k] = v;
  };
  set('vcpus', integer('vcpus', a.vcpus, 1, MAX_VCPUS));
  set('memoryMiB', integer('memory', a.memory, 64, 3072));
  if (a.design !== undefined) {
    if (typeof a.design !== 'string' || !isDesignName(a.design)) {
      throw new LaunchError(`launch attribute 'design': expected one of ${DESIGN_NAMES.join(', ')}, got ${JSON.stringify(a.design)}`);
    }
    o.design = a.design;
  }
  set('avic', bool('avic', a.avic));
  set('x2avic', bool('x2avic', a.x2avic));
  set('nested', bool('nested', a.nested));
  set('keepGoing', bool('keepGoing', a.keepGoing));
  if (a.sched !== undefined) {
    if (a.sched !== 'rr' && a.sched !== 'random') throw new LaunchError(`launch attribute 'sched': expected "rr" or "random", got ${JSON.stringify(a.sched)}`);
    o.sched = a.sched;
  }
  set('quantum', integer('quantum', a.quantum, 1, 1e9));
  set('seed', integer('seed', a.seed, 0, 0xffffffff));
  set('maxSteps', integer('maxSteps', a.maxSteps, 1, Number.MAX_SAFE_INTEGER));
  if (a.hostActions !== undefined) {
    if (!Array.isArray(a.hostActions) || a.hostActions.some((x) => typeof x !== 'string')) {
      throw new LaunchError(`launch attribute 'hostActions': expected an array of strings such as "out=1:set-apic-base-msrs=0xfee00c00:1"`);
    }
    try {
      o.hostActions = (a.hostActions as string[]).map(parseHostAction);
    } catch (e) {
      throw new LaunchError(`launch attribute 'hostActions': ${(e as Error).message.replace(/^--host-action /, '')}`);
    }
  }
  if (a.schedule !== undefined) throw new LaunchError(`launch attribute 'schedule': recorded schedules come with the replay issue; this adapter cannot replay one yet`);
  return o;
}

/** KVM_CREATE_VCPU fails above AVIC_MAX_PHYSICAL_ID under AVIC without x2AVIC (the machine would throw). */
function checkVcpuLimit(o: MachineOptions): void {
  if (o.avic && !o.x2avic && o.vcpus > AVIC_MAX_PHYSICAL_ID + 1) {
    throw new LaunchError(`launch attribute 'vcpus': ${o.vcpus} vCPUs, but AVIC without x2AVIC (avic true, x2avic false) allows at most ${AVIC_MAX_PHYSICAL_ID + 1}`);
  }
}

/** Reads, assembles and configures the program; throws LaunchError with the message the client shows. */
export function prepareLaunch(a: LaunchArguments, reader: FileReader, includeDir: string | undefined): Launched {
  if (typeof a.program !== 'string' || a.program === '') throw new LaunchError(`launch attribute 'program': the path of a .vasm program is required`);
  const program = a.program;
  const text = reader.readFile(program);
  if (text === undefined) throw new LaunchError(`launch attribute 'program': cannot read ${program}`);
  const assembly = assemble({ file: program, text, reader, includeDirs: includeDir ? [includeDir] : [] });
  const errors = assembly.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new LaunchError(`${program} does not assemble:\n${errors.map(formatDiagnostic).join('\n')}`);
  let options = DEFAULT_OPTIONS;
  const line = findRunLine(text);
  if (line) {
    try {
      options = applyRunFlags(options, parseRunLine(line.words));
    } catch (e) {
      if (e instanceof OptionError) throw new LaunchError(`${program}:${line.line}:1: avic-run line: ${e.message}`);
      throw e;
    }
  }
  options = applyLaunchAttributes(options, a);
  checkVcpuLimit(options);
  const stopOnEntry = bool('stopOnEntry', a.stopOnEntry) ?? false;
  return { args: a, program, assembly, options, stopOnEntry };
}

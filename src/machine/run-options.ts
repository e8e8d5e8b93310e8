// The options of a run (contracts/run-json.md): names, defaults, validation with messages that
// name the flag, and the `; avic-run: ...` line a source can carry. The CLI and the debug
// adapter's launch attributes both resolve to these; the precedence is defaults, then the
// source's line, then what the user gave (a repeatable flag given later replaces the list).

import { DESIGN_NAMES, isDesignName } from './kvm/design';
import { parseHostAction } from './kvm/userspace';
import { DEFAULT_OPTIONS, MAX_VCPUS, type MachineOptions } from './machine';

export type RunOptionKind = 'value' | 'flag' | 'repeat';

export interface RunOptionSpec {
  readonly flag: string;
  readonly key: keyof MachineOptions;
  /** `value` takes one value (the last wins), `flag` takes none, `repeat` collects values */
  readonly kind: RunOptionKind;
  readonly parse: (text: string) => MachineOptions[keyof MachineOptions] | undefined;
  readonly describe: string;
}

const integer = (min: number, max: number) => (t: string) => {
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  return n >= min && n <= max ? n : undefined;
};

const onOff = (t: string) => (t === 'on' ? true : t === 'off' ? false : undefined);

export const RUN_OPTIONS: readonly RunOptionSpec[] = [
  { flag: '--vcpus', key: 'vcpus', kind: 'value', parse: integer(1, MAX_VCPUS), describe: `1..${MAX_VCPUS}` },
  { flag: '--memory', key: 'memoryMiB', kind: 'value', parse: integer(64, 3072), describe: 'MiB of guest RAM, 64..3072' },
  { flag: '--design', key: 'design', kind: 'value', parse: (t) => (isDesignName(t) ? t : undefined), describe: `one of ${DESIGN_NAMES.join(', ')}` },
  { flag: '--avic', key: 'avic', kind: 'value', parse: onOff, describe: 'on or off' },
  { flag: '--x2avic', key: 'x2avic', kind: 'value', parse: onOff, describe: 'on or off' },
  { flag: '--nested', key: 'nested', kind: 'value', parse: onOff, describe: 'on or off' },
  { flag: '--sched', key: 'sched', kind: 'value', parse: (t) => (t === 'rr' || t === 'random' ? t : undefined), describe: 'rr or random' },
  { flag: '--quantum', key: 'quantum', kind: 'value', parse: integer(1, 1e9), describe: 'guest instructions per turn, >= 1' },
  { flag: '--seed', key: 'seed', kind: 'value', parse: integer(0, 0xffffffff), describe: 'a number 0..4294967295' },
  { flag: '--max-steps', key: 'maxSteps', kind: 'value', parse: integer(1, Number.MAX_SAFE_INTEGER), describe: 'a step bound >= 1' },
  { flag: '--host-action', key: 'hostActions', kind: 'repeat', parse: () => undefined, describe: 'TRIGGER:ACTION=ARG[:VCPU]' },
  { flag: '--keep-going', key: 'keepGoing', kind: 'flag', parse: () => true, describe: '' },
];

export class OptionError extends Error {}

/** Applies flags (values in order, as parsed) over `base`; throws OptionError naming the flag. */
export function applyRunFlags(base: MachineOptions, flags: ReadonlyMap<string, readonly string[]>): MachineOptions {
  const out: Record<string, unknown> = { ...base };
  for (const [flag, values] of flags) {
    const spec = RUN_OPTIONS.find((s) => s.flag === flag);
    if (!spec) throw new OptionError(`unknown option '${flag}'`);
    if (spec.kind === 'flag') {
      out[spec.key] = true;
      continue;
    }
    if (spec.kind === 'repeat') {
      try {
        out[spec.key] = values.map(parseHostAction);
      } catch (e) {
        throw new OptionError((e as Error).message);
      }
      continue;
    }
    const text = values[values.length - 1];
    const v = spec.parse(text);
    if (v === undefined) throw new OptionError(`${flag} ${text}: expected ${spec.describe}`);
    out[spec.key] = v;
  }
  return out as unknown as MachineOptions;
}

/** The words of an `; avic-run:` line as flags with their values in order (`--flag value` or `--flag=value`). */
export function parseRunLine(words: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (!w.startsWith('--')) throw new OptionError(`unexpected '${w}'`);
    const eq = w.indexOf('=');
    const name = eq > 0 ? w.slice(0, eq) : w;
    const spec = RUN_OPTIONS.find((s) => s.flag === name);
    if (!spec) throw new OptionError(`unknown option '${name}'`);
    let value: string;
    if (eq > 0) value = w.slice(eq + 1);
    else if (spec.kind === 'flag') value = 'true';
    else {
      if (i + 1 >= words.length) throw new OptionError(`option '${name}' needs a value`);
      value = words[++i];
    }
    if (spec.kind === 'value' && out.has(name)) throw new OptionError(`option '${name}' given twice`);
    out.set(name, [...(out.get(name) ?? []), value]);
  }
  return out;
}

/** The `; avic-run: ...` line among the first ten lines of a source, split into words. */
export function findRunLine(text: string): { line: number; words: string[] } | undefined {
  const lines = text.split('\n').slice(0, 10);
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*;\s*avic-run:(.*)$/.exec(lines[i]);
    if (m) return { line: i + 1, words: m[1].trim().split(/\s+/).filter((w) => w !== '') };
  }
  return undefined;
}

export { DEFAULT_OPTIONS };

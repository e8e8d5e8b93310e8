// A small command-line parser: flags with values, boolean flags, repeatable flags, positionals.
// Written by hand because the CLI's grammar is tiny and a dependency would be larger than it.

export interface FlagSpec {
  /** takes a value (`-o out.bin`, `--vcpus=2`) */
  readonly value?: boolean;
  /** may be given more than once; values collect in order */
  readonly repeat?: boolean;
}

export interface ParsedArgs {
  readonly flags: Map<string, string[]>;
  readonly positionals: string[];
}

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[], spec: Readonly<Record<string, FlagSpec>>): ParsedArgs {
  const flags = new Map<string, string[]>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      positionals.push(a);
      continue;
    }
    let name = a;
    let value: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      name = a.slice(0, eq);
      value = a.slice(eq + 1);
    } else if (!a.startsWith('--') && a.length > 2 && spec[a.slice(0, 2)]?.value) {
      name = a.slice(0, 2); // -Iinclude, as nasm accepts it
      value = a.slice(2);
    }
    const s = spec[name];
    if (!s) throw new UsageError(`unknown option '${name}'`);
    if (s.value) {
      if (value === undefined) {
        if (i + 1 >= argv.length) throw new UsageError(`option '${name}' needs a value`);
        value = argv[++i];
      }
    } else if (value !== undefined) throw new UsageError(`option '${name}' takes no value`);
    const list = flags.get(name) ?? [];
    if (list.length > 0 && !s.repeat) throw new UsageError(`option '${name}' given twice`);
    list.push(value ?? 'true');
    flags.set(name, list);
  }
  return { flags, positionals };
}

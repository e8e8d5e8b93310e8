// console.ts - parsing the LAPIC corpus console (format in corpus.ts) into check values, and
// rendering check values back into a console. A line "<vcpu>:<name> <value>" is the check
// "<vcpu>:<name>"; a snapshot line "<vcpu>:<name> k=v k=v" is one check per field,
// "<vcpu>:<name>.<k>". Check ids across guests are "<guest>/<key>".

export interface ParsedApicConsole {
  /** name on the `G` line */
  guest?: string;
  /** the `E` line was seen */
  ended: boolean;
  /** check key ("<vcpu>:<name>[.<field>]") -> value, in console order */
  values: Map<string, string>;
  /** the keys that are fields of snapshot lines */
  fields: Set<string>;
  /** keys that came more than once (a guest bug or a broken run) */
  duplicates: string[];
  /** lines that are not records */
  junk: string[];
}

const LINE = /^(\d+):([A-Za-z0-9][A-Za-z0-9._-]*) (.*)$/;
const FIELDS = /^[a-z0-9]+=\S*( [a-z0-9]+=\S*)*$/;

/** Parses a guest's console. */
export function parseApicConsole(text: string): ParsedApicConsole {
  const out: ParsedApicConsole = { ended: false, values: new Map(), fields: new Set(), duplicates: [], junk: [] };
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const put = (k: string, v: string) => {
    if (out.values.has(k)) out.duplicates.push(k);
    out.values.set(k, v);
  };
  for (const line of lines) {
    let m: RegExpExecArray | null;
    if (line.startsWith('G ') && out.guest === undefined) out.guest = line.slice(2);
    else if (line === 'E') out.ended = true;
    else if ((m = LINE.exec(line))) {
      const key = `${m[1]}:${m[2]}`;
      if (FIELDS.test(m[3])) {
        for (const kv of m[3].split(' ')) {
          const i = kv.indexOf('=');
          put(`${key}.${kv.slice(0, i)}`, kv.slice(i + 1));
          out.fields.add(`${key}.${kv.slice(0, i)}`);
        }
      } else put(key, m[3]);
    } else out.junk.push(line);
  }
  return out;
}

/** "<guest>/<key>" */
export const checkId = (guest: string, key: string): string => `${guest}/${key}`;

/** vCPU index of a key. */
export const vcpuOf = (key: string): number => Number(key.slice(0, key.indexOf(':')));

/**
 * A console that parses back into exactly these values: one line per check, snapshot fields
 * regrouped onto one line (their keys must be given consecutively, as parseApicConsole returns
 * them), vCPU 0 first.
 */
export function renderApicConsole(guest: string, values: Iterable<[string, string]>, fieldKeys: ReadonlySet<string>): string {
  const byCpu = new Map<number, string[]>();
  let open: { cpu: number; base: string; parts: string[] } | undefined;
  const flush = () => {
    if (!open) return;
    byCpu.get(open.cpu)!.push(`${open.base} ${open.parts.join(' ')}`);
    open = undefined;
  };
  for (const [key, value] of values) {
    const cpu = vcpuOf(key);
    if (!byCpu.has(cpu)) byCpu.set(cpu, []);
    if (fieldKeys.has(key)) {
      const dot = key.lastIndexOf('.');
      const base = key.slice(0, dot);
      if (!open || open.base !== base) {
        flush();
        open = { cpu, base, parts: [] };
      }
      open.parts.push(`${key.slice(dot + 1)}=${value}`);
    } else {
      flush();
      byCpu.get(cpu)!.push(`${key} ${value}`);
    }
  }
  flush();
  const lines = [`G ${guest}`];
  for (const cpu of [...byCpu.keys()].sort((a, b) => a - b)) lines.push(...byCpu.get(cpu)!);
  lines.push('E');
  return `${lines.join('\n')}\n`;
}

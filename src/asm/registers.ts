// The registers an operand may name, with their class, width and iced-x86 register name.

export type RegKind = 'gpr' | 'cr' | 'dr' | 'seg';

export interface RegInfo {
  /** lower-case NASM name */
  readonly name: string;
  readonly kind: RegKind;
  /** width in bytes */
  readonly size: 1 | 2 | 4 | 8;
  /** encoding number 0..15 */
  readonly num: number;
  /** ah/ch/dh/bh cannot be encoded together with a REX prefix */
  readonly highByte: boolean;
  /** spl/bpl/sil/dil and r8..r15 need one */
  readonly needsRex: boolean;
  /** the member name of iced-x86's `Register` enum */
  readonly iced: string;
}

const TABLE = new Map<string, RegInfo>();

function add(name: string, kind: RegKind, size: RegInfo['size'], num: number, iced: string, extra: Partial<RegInfo> = {}): void {
  TABLE.set(name, { name, kind, size, num, iced, highByte: false, needsRex: num >= 8, ...extra });
}

const LEGACY = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'];
LEGACY.forEach((r, i) => {
  add('r' + r, 'gpr', 8, i, 'R' + r.toUpperCase());
  add('e' + r, 'gpr', 4, i, 'E' + r.toUpperCase());
  add(r, 'gpr', 2, i, r.toUpperCase());
});
['al', 'cl', 'dl', 'bl'].forEach((r, i) => add(r, 'gpr', 1, i, r.toUpperCase()));
['ah', 'ch', 'dh', 'bh'].forEach((r, i) => add(r, 'gpr', 1, i + 4, r.toUpperCase(), { highByte: true }));
['spl', 'bpl', 'sil', 'dil'].forEach((r, i) => add(r, 'gpr', 1, i + 4, r.toUpperCase(), { needsRex: true }));
for (let i = 8; i < 16; i++) {
  add(`r${i}`, 'gpr', 8, i, `R${i}`);
  add(`r${i}d`, 'gpr', 4, i, `R${i}D`);
  add(`r${i}w`, 'gpr', 2, i, `R${i}W`);
  add(`r${i}b`, 'gpr', 1, i, `R${i}L`);
  add(`r${i}l`, 'gpr', 1, i, `R${i}L`);
}
for (const n of [0, 2, 3, 4, 8]) add(`cr${n}`, 'cr', 8, n, `CR${n}`);
for (const n of [0, 1, 2, 3, 6, 7]) add(`dr${n}`, 'dr', 8, n, `DR${n}`);
['es', 'cs', 'ss', 'ds', 'fs', 'gs'].forEach((r, i) => add(r, 'seg', 2, i, r.toUpperCase()));

export function lookupRegister(name: string): RegInfo | undefined {
  return TABLE.get(name.toLowerCase());
}

export function allRegisters(): readonly RegInfo[] {
  return [...TABLE.values()];
}

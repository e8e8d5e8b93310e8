// Which words are mnemonics, prefixes and directives of the NASM subset.

import { FORMS } from './forms.generated';

/** String instructions take no operands in NASM; iced-x86 builds them with `create<Name>`. */
export const STRING_OPS: Readonly<Record<string, string>> = {
  movsb: 'Movsb', movsw: 'Movsw', movsd: 'Movsd', movsq: 'Movsq',
  stosb: 'Stosb', stosw: 'Stosw', stosd: 'Stosd', stosq: 'Stosq',
  lodsb: 'Lodsb', lodsw: 'Lodsw', lodsd: 'Lodsd', lodsq: 'Lodsq',
  cmpsb: 'Cmpsb', cmpsw: 'Cmpsw', cmpsd: 'Cmpsd', cmpsq: 'Cmpsq',
  scasb: 'Scasb', scasw: 'Scasw', scasd: 'Scasd', scasq: 'Scasq',
  insb: 'Insb', insw: 'Insw', insd: 'Insd', outsb: 'Outsb', outsw: 'Outsw', outsd: 'Outsd',
};

export const PREFIXES: Readonly<Record<string, 'lock' | 'rep' | 'repe' | 'repne'>> = {
  lock: 'lock', rep: 'rep', repe: 'repe', repz: 'repe', repne: 'repne', repnz: 'repne',
};

export const DATA_DIRECTIVES: Readonly<Record<string, 1 | 2 | 4 | 8>> = { db: 1, dw: 2, dd: 4, dq: 8 };
export const RESERVE_DIRECTIVES: Readonly<Record<string, 1 | 2 | 4 | 8>> = { resb: 1, resw: 2, resd: 4, resq: 8 };

export const DIRECTIVES = new Set([
  'times', 'equ', 'align', 'alignb', 'section', 'segment', 'bits', 'use64', 'default', 'org', 'global', 'extern', 'common',
  'static', 'cpu', ...Object.keys(DATA_DIRECTIVES), ...Object.keys(RESERVE_DIRECTIVES),
]);

/** NASM words this subset does not implement, so the message can say so instead of "unknown". */
export const UNSUPPORTED = new Set(['dt', 'do', 'dy', 'dz', 'ddq', 'rest', 'reso', 'resy', 'resz', 'incbin', 'struc', 'endstruc',
  'istruc', 'iend', 'at', 'absolute', 'enter', 'xlatb']);

export function isMnemonic(word: string): boolean {
  const w = word.toLowerCase();
  return w in FORMS || w in STRING_OPS;
}

export function isKeyword(word: string): boolean {
  const w = word.toLowerCase();
  return isMnemonic(w) || w in PREFIXES || DIRECTIVES.has(w) || UNSUPPORTED.has(w);
}

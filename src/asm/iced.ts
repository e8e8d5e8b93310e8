// Lazy access to iced-x86 (WASM). Loading it compiles ~800 KB of WASM, so it happens on first
// use, not when a module imports the assembler. iced objects are not garbage collected: every
// Instruction, Decoder, Encoder and Formatter must be freed (see research/iced-eval.md).

import type * as Iced from 'iced-x86';

let loaded: typeof Iced | undefined;

export function iced(): typeof Iced {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loaded ??= require('iced-x86') as typeof Iced;
  return loaded;
}

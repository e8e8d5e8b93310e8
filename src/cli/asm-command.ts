// `avic asm FILE [-o OUT.bin] [--listing] [-I DIR]`: assemble a guest source to a flat binary.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { assemble } from '../asm/assembler';
import { formatDiagnostic } from '../asm/diagnostics';
import { formatListing } from '../asm/listing';
import { parseArgs, UsageError } from './args';
import { bundledIncludeDir, nodeFileReader } from './files';

export const ASM_USAGE = 'avic asm FILE [-o OUT.bin] [--listing] [-I DIR]';

export function asmCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): number {
  const args = parseArgs(argv, { '-o': { value: true }, '--listing': {}, '-I': { value: true, repeat: true } });
  if (args.positionals.length !== 1) throw new UsageError(`expected one source file: ${ASM_USAGE}`);
  const file = args.positionals[0];
  const text = nodeFileReader.readFile(file);
  if (text === undefined) {
    err(`${file}: cannot read the file`);
    return 1;
  }
  const result = assemble({
    file,
    text,
    reader: nodeFileReader,
    includeDirs: [...(args.flags.get('-I') ?? []), bundledIncludeDir()],
  });
  for (const d of result.diagnostics) err(formatDiagnostic(d));
  if (!result.ok) return 1;
  const output = args.flags.get('-o')?.[0] ?? file.replace(/\.(vasm|asm|s)$/i, '') + '.bin';
  mkdirSync(dirname(output), { recursive: true });
  writeFileSync(output, result.image);
  if (args.flags.has('--listing')) out(formatListing(result.listing));
  return 0;
}

// A listing in NASM's `-l` layout: source line number (with `<n>` for %include depth), address,
// bytes (9 per row, `-` when a row continues), then the source line. Addresses are absolute
// guest addresses (NASM prints section offsets), since that is what a debugger shows.

import type { ListingLine } from './assembler';

const BYTES_PER_ROW = 9;

function hexBytes(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).toUpperCase().padStart(2, '0');
  return s;
}

export function formatListing(lines: readonly ListingLine[]): string {
  const out: string[] = [];
  for (const l of lines) {
    const num = String(l.line).padStart(6);
    const depth = l.depth > 0 ? `<${l.depth}>` : '';
    const addr = l.address === undefined ? '        ' : l.address.toString(16).toUpperCase().padStart(8, '0');
    let field: string;
    let rows: string[] = [];
    if (l.reserved !== undefined) field = l.reserved > 0 ? `<res ${l.reserved.toString(16).toUpperCase()}h>` : '';
    else if (l.bytes === undefined || l.bytes.length === 0) field = l.repeat === 0 ? '<rep 0h>' : '';
    else if (l.repeat !== undefined && l.repeat !== 1) field = `${hexBytes(l.bytes)}<rep ${l.repeat.toString(16).toUpperCase()}h>`;
    else {
      const hex = hexBytes(l.bytes);
      for (let i = 0; i < hex.length; i += BYTES_PER_ROW * 2) rows.push(hex.slice(i, i + BYTES_PER_ROW * 2));
      field = rows[0];
      rows = rows.slice(1);
    }
    const cont = rows.length > 0 ? '-' : '';
    // source text starts in column 41, after the bytes field and the include depth (`<1>`), as in NASM
    out.push(`${num} ${l.address === undefined && field === '' ? '        ' : addr} ${(field + cont).padEnd(20)}${depth.padStart(3)} ${l.text}`.trimEnd());
    let a = (l.address ?? 0) + BYTES_PER_ROW;
    rows.forEach((row, i) => {
      const more = i < rows.length - 1 ? '-' : '';
      out.push(`${num} ${a.toString(16).toUpperCase().padStart(8, '0')} ${row}${more}`);
      a += BYTES_PER_ROW;
    });
  }
  return out.join('\n') + '\n';
}

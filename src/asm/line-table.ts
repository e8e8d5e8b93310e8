// The line table: guest address <-> source file:line, built by the assembler (through %include
// too) and read by the debugger for breakpoints, stepping and stack frames.

export interface LineEntry {
  readonly address: number;
  readonly size: number;
  readonly file: string;
  readonly line: number;
}

export interface SourceLocation {
  readonly file: string;
  readonly line: number;
}

export class LineTable {
  /** sorted by address; entries never overlap */
  readonly entries: readonly LineEntry[];
  private readonly byLine = new Map<string, number[]>();

  constructor(entries: readonly LineEntry[]) {
    this.entries = [...entries].filter((e) => e.size > 0).sort((a, b) => a.address - b.address);
    for (const e of this.entries) {
      const key = `${e.file}\n${e.line}`;
      const list = this.byLine.get(key);
      if (list) list.push(e.address);
      else this.byLine.set(key, [e.address]);
    }
  }

  /** The source line whose bytes contain `address`. */
  lookup(address: number): (SourceLocation & { start: number }) | undefined {
    let lo = 0;
    let hi = this.entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = this.entries[mid];
      if (address < e.address) hi = mid - 1;
      else if (address >= e.address + e.size) lo = mid + 1;
      else return { file: e.file, line: e.line, start: e.address };
    }
    return undefined;
  }

  /** Start addresses of the code and data a source line produced (several for `times`/macros). */
  addresses(file: string, line: number): readonly number[] {
    return this.byLine.get(`${file}\n${line}`) ?? [];
  }

  /** Lines of `file` that produced bytes, ascending. */
  linesOf(file: string): number[] {
    const out = new Set<number>();
    for (const e of this.entries) if (e.file === file) out.add(e.line);
    return [...out].sort((a, b) => a - b);
  }
}

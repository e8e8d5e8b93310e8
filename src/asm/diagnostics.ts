// Diagnostics of the guest assembler: a position in a source file and a message, printed as
// `file:line:col: message` (the form compilers and VS Code's problem matchers read).

export interface SourcePos {
  readonly file: string;
  /** 1-based */
  readonly line: number;
  /** 1-based */
  readonly col: number;
}

export type Severity = 'error' | 'warning';

export interface Diagnostic extends SourcePos {
  readonly severity: Severity;
  readonly message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = `${d.file}:${d.line}:${d.col}`;
  return d.severity === 'error' ? `${where}: ${d.message}` : `${where}: warning: ${d.message}`;
}

/** Thrown inside the assembler to abandon one statement; never escapes `assemble`. */
export class AsmError extends Error {
  constructor(readonly pos: SourcePos, message: string) {
    super(message);
  }
}

export class DiagnosticSink {
  readonly list: Diagnostic[] = [];
  private readonly seen = new Set<string>();

  error(pos: SourcePos, message: string): void {
    this.add({ ...posOf(pos), severity: 'error', message });
  }

  warning(pos: SourcePos, message: string): void {
    this.add({ ...posOf(pos), severity: 'warning', message });
  }

  get errorCount(): number {
    return this.list.filter((d) => d.severity === 'error').length;
  }

  private add(d: Diagnostic): void {
    const key = `${formatDiagnostic(d)}`;
    if (this.seen.has(key)) return; // a statement is seen once per pass; report it once
    this.seen.add(key);
    this.list.push(d);
  }
}

function posOf(p: SourcePos): SourcePos {
  return { file: p.file, line: p.line, col: p.col };
}

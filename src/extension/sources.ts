// Reads a guest source and everything it %includes through vscode.workspace.fs (so it works in
// the Node and in the browser extension host), preferring unsaved editor text, and serves the
// result to the assembler's synchronous FileReader. Paths are URI strings: the assembler joins
// them with '/' like file paths.

import * as vscode from 'vscode';
import type { FileReader } from '../asm/preprocessor';
import { dirname, join } from '../asm/paths';

const INCLUDE_LINE = /^\s*%include\s+["<]([^">]+)[">]/gim;

export async function loadSources(mainUri: string, includeDirs: readonly string[]): Promise<FileReader> {
  const files = new Map<string, string | undefined>();
  const read = async (uri: string): Promise<string | undefined> => {
    if (files.has(uri)) return files.get(uri);
    const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri);
    let text: string | undefined;
    if (open) text = open.getText();
    else {
      try {
        text = new TextDecoder().decode(await vscode.workspace.fs.readFile(vscode.Uri.parse(uri)));
      } catch {
        text = undefined;
      }
    }
    files.set(uri, text);
    return text;
  };
  const visit = async (uri: string, depth: number): Promise<void> => {
    const text = await read(uri);
    if (text === undefined || depth > 32) return;
    for (const m of text.matchAll(INCLUDE_LINE)) {
      for (const dir of [dirname(uri), ...includeDirs]) {
        const candidate = join(dir, m[1]);
        if ((await read(candidate)) !== undefined) {
          await visit(candidate, depth + 1);
          break;
        }
      }
    }
  };
  await visit(mainUri, 0);
  return { readFile: (path) => files.get(path) };
}

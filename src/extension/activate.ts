// Activation shared by the Node and the browser extension host: assembler diagnostics for
// `.vasm` documents, the "Show Listing" command, the `avic` debug type and its KVM views.

import * as vscode from 'vscode';
import { assemble, type AssembleResult } from '../asm/assembler';
import { formatListing } from '../asm/listing';
import { registerDebugAdapter } from './debug-adapter';
import { loadSources } from './sources';
import { registerStateViews } from './state-views';

export const LANGUAGE_ID = 'avic-asm';
const LISTING_SCHEME = 'avic-listing';
const DEBOUNCE_MS = 300;

export function activateAvic(context: vscode.ExtensionContext): void {
  const includeDir = vscode.Uri.joinPath(context.extensionUri, 'include').toString();
  const collection = vscode.languages.createDiagnosticCollection(LANGUAGE_ID);
  const listings = new ListingProvider();
  const timers = new Map<string, ReturnType<typeof setTimeout>>();

  const assembleDocument = async (doc: vscode.TextDocument): Promise<AssembleResult> => {
    const uri = doc.uri.toString();
    const reader = await loadSources(uri, [includeDir]);
    return assemble({ file: uri, text: doc.getText(), reader, includeDirs: [includeDir] });
  };

  const check = async (doc: vscode.TextDocument): Promise<void> => {
    if (doc.languageId !== LANGUAGE_ID) return;
    const result = await assembleDocument(doc);
    const byFile = new Map<string, vscode.Diagnostic[]>();
    for (const d of result.diagnostics) {
      const range = new vscode.Range(d.line - 1, d.col - 1, d.line - 1, Number.MAX_SAFE_INTEGER);
      const diag = new vscode.Diagnostic(range, d.message, d.severity === 'error' ? vscode.DiagnosticSeverity.Error : vscode.DiagnosticSeverity.Warning);
      diag.source = 'avic-asm';
      const list = byFile.get(d.file) ?? [];
      list.push(diag);
      byFile.set(d.file, list);
    }
    collection.set(doc.uri, byFile.get(doc.uri.toString()) ?? []);
    for (const [file, list] of byFile) if (file !== doc.uri.toString()) collection.set(vscode.Uri.parse(file), list);
  };

  const schedule = (doc: vscode.TextDocument): void => {
    const key = doc.uri.toString();
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(() => {
      timers.delete(key);
      void check(doc);
    }, DEBOUNCE_MS));
  };

  context.subscriptions.push(
    collection,
    vscode.workspace.registerTextDocumentContentProvider(LISTING_SCHEME, listings),
    vscode.workspace.onDidOpenTextDocument((d) => void check(d)),
    vscode.workspace.onDidChangeTextDocument((e) => schedule(e.document)),
    vscode.workspace.onDidCloseTextDocument((d) => collection.delete(d.uri)),
    vscode.commands.registerCommand('avic.showListing', async () => {
      const doc = vscode.window.activeTextEditor?.document;
      if (!doc || doc.languageId !== LANGUAGE_ID) {
        void vscode.window.showWarningMessage('Open a .vasm guest program to see its listing.');
        return;
      }
      const result = await assembleDocument(doc);
      if (!result.ok) {
        void check(doc);
        void vscode.window.showErrorMessage(`${result.diagnostics.filter((d) => d.severity === 'error').length} assembly error(s): see the Problems panel.`);
        return;
      }
      const uri = vscode.Uri.from({ scheme: LISTING_SCHEME, path: doc.uri.path.replace(/\.vasm$/i, '') + '.lst' });
      listings.set(uri, formatListing(result.listing));
      await vscode.window.showTextDocument(uri, { preview: true, viewColumn: vscode.ViewColumn.Beside });
    }),
  );
  for (const d of vscode.workspace.textDocuments) void check(d);
  registerDebugAdapter(context, includeDir);
  registerStateViews(context);
}

class ListingProvider implements vscode.TextDocumentContentProvider {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  set(uri: vscode.Uri, text: string): void {
    this.texts.set(uri.toString(), text);
    this.changed.fire(uri);
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? '';
  }
}

// Entry point in the browser extension host (VS Code for the Web): the same features, since the
// assembler (and later the machine and the adapter) import neither Node nor VS Code.

import type * as vscode from 'vscode';
import { activateAvic } from './activate';

export function activate(context: vscode.ExtensionContext): void {
  activateAvic(context);
}

export function deactivate(): void {}

// Entry point in the Node extension host (VS Code desktop).

import type * as vscode from 'vscode';
import { activateAvic } from './activate';

export function activate(context: vscode.ExtensionContext): void {
  activateAvic(context);
}

export function deactivate(): void {}

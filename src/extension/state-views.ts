// The two KVM views of the Run and Debug side bar, "APICv Inhibits" and "vCPUs (KVM)": tree
// views over the active `avic` session's state. They ask `avic/state` after every
// `avic/stateChanged` event (contracts/dap.md) and never reach into the session object; the
// answer to the newest event wins.

import * as vscode from 'vscode';
import type { AvicState } from '../debug/avic-state';
import { inhibitNodes, type StateIcon, type StateNode, vcpuNodes } from './state-tree';

const ICONS: Record<StateIcon, vscode.ThemeIcon> = {
  set: new vscode.ThemeIcon('circle-filled', new vscode.ThemeColor('debugIcon.breakpointForeground')),
  clear: new vscode.ThemeIcon('circle-outline'),
  word: new vscode.ThemeIcon('symbol-numeric'),
  vcpu: new vscode.ThemeIcon('server-process'),
  warning: new vscode.ThemeIcon('warning', new vscode.ThemeColor('problemsWarningIcon.foreground')),
  frame: new vscode.ThemeIcon('debug-stackframe-dot'),
  field: new vscode.ThemeIcon('symbol-field'),
  memslot: new vscode.ThemeIcon('symbol-array'),
};

class StateTree implements vscode.TreeDataProvider<StateNode> {
  private nodes: StateNode[] = [];
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly derive: (s: AvicState) => StateNode[]) {}

  show(state: AvicState | undefined): void {
    this.nodes = state ? this.derive(state) : [];
    this.changed.fire();
  }

  getChildren(node?: StateNode): StateNode[] {
    return node ? [...(node.children ?? [])] : this.nodes;
  }

  getTreeItem(node: StateNode): vscode.TreeItem {
    const item = new vscode.TreeItem(node.label, node.children?.length ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
    item.id = node.id;
    item.description = node.description;
    item.tooltip = node.tooltip;
    item.iconPath = ICONS[node.icon];
    return item;
  }

  dispose(): void {
    this.changed.dispose();
  }
}

export function registerStateViews(context: vscode.ExtensionContext): void {
  const inhibits = new StateTree(inhibitNodes);
  const vcpus = new StateTree(vcpuNodes);
  /** the session shown and the newest seq asked for: older answers are dropped */
  let shown: vscode.DebugSession | undefined;
  let asked = 0;

  const refresh = async (session: vscode.DebugSession | undefined): Promise<void> => {
    const seq = ++asked;
    if (!session || session.type !== 'avic') {
      shown = undefined;
      inhibits.show(undefined);
      vcpus.show(undefined);
      return;
    }
    let state: AvicState | undefined;
    try {
      state = (await session.customRequest('avic/state')) as AvicState;
    } catch {
      state = undefined; // not launched yet, or already gone
    }
    if (seq !== asked) return;
    shown = session;
    inhibits.show(state);
    vcpus.show(state);
  };

  context.subscriptions.push(
    inhibits,
    vcpus,
    vscode.window.createTreeView('avic.inhibits', { treeDataProvider: inhibits }),
    vscode.window.createTreeView('avic.vcpus', { treeDataProvider: vcpus }),
    vscode.debug.onDidReceiveDebugSessionCustomEvent((e) => {
      if (e.event === 'avic/stateChanged' && e.session === vscode.debug.activeDebugSession) void refresh(e.session);
    }),
    vscode.debug.onDidChangeActiveDebugSession((s) => void refresh(s)),
    vscode.debug.onDidTerminateDebugSession((s) => {
      if (s === shown) void refresh(vscode.debug.activeDebugSession);
    }),
  );
}

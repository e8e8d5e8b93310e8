// The `avic` debug type in VS Code: the adapter runs inline in the extension host (Node or
// browser alike), as mock-debug's inline mode does. Sources are read through
// vscode.workspace.fs before the session starts (the assembler reads synchronously), keyed both
// by the path the launch configuration names and by its URI. Outside the `file:` scheme (VS Code
// for the Web) `program` becomes its URI string before launch: the adapter then names sources by
// URI, which is what the workbench opens and what it sends with breakpoints.

import * as vscode from 'vscode';
import { isAbsolute } from '../asm/paths';
import type { FileReader } from '../asm/preprocessor';
import type { RuntimeHost } from '../debug/runtime';
import { AvicDebugSession } from '../debug/session';
import { loadSources } from './sources';

/** The URI of a program path as a launch configuration gives it (`${file}`, or relative to the
 * workspace folder), or of a URI string. */
function programUri(program: string): vscode.Uri {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(program)) return vscode.Uri.parse(program);
  const open = vscode.workspace.textDocuments.find((d) => d.uri.fsPath === program || d.uri.path === program);
  if (open) return open.uri;
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (folder && !isAbsolute(program)) return vscode.Uri.joinPath(folder.uri, program.replace(/\\/g, '/'));
  if (folder && folder.uri.scheme !== 'file') return folder.uri.with({ path: program.replace(/\\/g, '/') });
  return vscode.Uri.file(program);
}

/** A reader that answers for paths in the launch configuration's form and in URI form. */
function pathAndUriReader(files: FileReader, program: string, uri: vscode.Uri): FileReader {
  const toUri = (path: string): string => {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) return path;
    return uri.with({ path: path.replace(/\\/g, '/') }).toString();
  };
  return {
    readFile: (path) => files.readFile(path) ?? files.readFile(toUri(path)) ?? (path === program ? files.readFile(uri.toString()) : undefined),
  };
}

/** `program` as the adapter should see it: a path on disk, or else the URI string. */
function adapterProgram(program: unknown): unknown {
  if (typeof program !== 'string' || program === '') return program;
  const uri = programUri(program);
  return uri.scheme === 'file' ? uri.fsPath : uri.toString();
}

export function registerDebugAdapter(context: vscode.ExtensionContext, includeDir: string): void {
  const factory: vscode.DebugAdapterDescriptorFactory = {
    async createDebugAdapterDescriptor(session) {
      const read = async (program: string): Promise<FileReader> => {
        const uri = programUri(program);
        return pathAndUriReader(await loadSources(uri.toString(), [includeDir]), program, uri);
      };
      let reader = await read(String(session.configuration.program ?? ''));
      const host: RuntimeHost = {
        get reader() {
          return reader;
        },
        includeDir,
        defer: (f) => setTimeout(f, 0),
        // a restart assembles the program as the editor has it now, unsaved edits included
        reloadSources: async (program) => {
          reader = await read(String(program ?? ''));
        },
      };
      return new vscode.DebugAdapterInlineImplementation(new AvicDebugSession(host));
    },
  };
  const provider: vscode.DebugConfigurationProvider = {
    resolveDebugConfiguration(_folder, config) {
      // F5 with no launch.json: debug the open .vasm file, stopped at _start
      if (!config.type && !config.request && !config.name) {
        const doc = vscode.window.activeTextEditor?.document;
        if (doc?.languageId === 'avic-asm') {
          return { type: 'avic', request: 'launch', name: 'Debug the guest program', program: '${file}', stopOnEntry: true };
        }
      }
      if (!config.program) {
        return vscode.window.showInformationMessage('Open a .vasm guest program (or set "program" in launch.json) to debug it.').then(() => undefined);
      }
      return config;
    },
    resolveDebugConfigurationWithSubstitutedVariables(_folder, config) {
      // `${file}` is an fsPath (`/sample.vasm`), which the web workbench would open as file:///sample.vasm
      return { ...config, program: adapterProgram(config.program) };
    },
  };
  context.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory('avic', factory),
    vscode.debug.registerDebugConfigurationProvider('avic', provider),
  );
}

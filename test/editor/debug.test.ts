// End-to-end test of the `avic` debugger in a real VS Code (the web workbench served by
// scripts/editor/serve.ts, in Debian's Chromium), used the way a person debugs: F5 on an open
// program with no launch.json, the Call Stack, Variables and Breakpoints views, the KVM views
// (APICv Inhibits, vCPUs), F10, a click in the gutter, the Debug Console, a restart after an
// edit, Shift+F5. The program is calls.vasm (two vCPUs, a function called twice). Each step leaves a PNG `debug-NN-*.png` in .build/editor-screenshots/.
//
// Needs `npm run build` first (dist/web/extension.js). Skips like editor.test.ts without
// Chromium or the npm packages. See test/editor/README.md.

import assert from 'node:assert/strict';
import type { Locator, Page } from 'playwright-core';
import { CALLS_FILE, CALLS_TEXT, serveWorkbench, type Served } from '../../scripts/editor/serve';
import { EVENT_FILTERS } from '../../src/debug/conditions';
import { openWorkbench, screenshots, skipUnlessAvailable, UI_TIMEOUT, type Workbench, workbenchUi } from './browser';

const CALLS_LINES = CALLS_TEXT.split('\n');
/** 1-based line of calls.vasm that holds `text`. */
function callsLine(text: string): number {
  const i = CALLS_LINES.findIndex((l) => l.includes(text));
  assert.ok(i >= 0, `calls.vasm has no line with ${text}`);
  return i + 1;
}
const START_LINE = callsLine('_start:');
const FIRST_CALL_LINE = callsLine('call    add_ecx');
const ADD_LINE = callsLine('add     eax, ecx');
/** What a vCPU thread is called while its local APIC is in xAPIC mode with AVIC active. */
const THREAD_NAME = /^vCPU (\d+) \[xAPIC, AVIC, SRCU 0(, done)?\]$/;

/** The DOM the page-side callbacks read (the project compiles without lib.dom). */
interface DomNode {
  readonly textContent: string | null;
  readonly className: string;
  readonly parentElement: DomNode | null;
  readonly style: { readonly top: string };
  querySelector(selector: string): DomNode | null;
  querySelectorAll(selector: string): Iterable<DomNode>;
}

declare const getComputedStyle: (el: DomNode) => { readonly backgroundColor: string };

/** A thread of the Call Stack view. */
interface ThreadView {
  name: string;
  state: string;
  frames: string[];
}

/** The debugger's marks in an editor: the current-statement line, and the gutter's codicons by line. */
interface EditorDecorations {
  current: number | null;
  glyphs: Record<number, string[]>;
}

describe('VS Code web: debugging a guest program as a user does', function () {
  this.timeout(60_000);
  let served: Served | undefined;
  let workbench: Workbench | undefined;
  let page: Page;
  let shot: (name: string) => Promise<void>;
  const pageErrors: string[] = [];
  /** The status bar's background while no session runs. */
  let idleStatusBar = '';
  const { explorerRow, editorOf, openFile, runCommand } = workbenchUi(() => page);

  before(async function () {
    this.timeout(120_000);
    skipUnlessAvailable(this);
    shot = screenshots('debug-', () => page);
    served = await serveWorkbench();
    workbench = await openWorkbench(served.url, pageErrors);
    page = workbench.page;
    await explorerRow(CALLS_FILE).waitFor({ timeout: 60_000 });
  });

  afterEach(async function () {
    // the screen as it was when a case failed
    if (this.currentTest?.state === 'failed' && page) await shot(`FAILED-${this.currentTest.title.split(/[^A-Za-z0-9]+/).slice(0, 4).join('-')}`);
  });

  after(async function () {
    this.timeout(30_000);
    await workbench?.close();
    await served?.stop();
  });

  // ---- UI helpers -------------------------------------------------------------------------------

  const toolbar = (): Locator => page.locator('.debug-toolbar');
  /** The rows of a view's tree (not the copies in its sticky header, the parents pinned at the top). */
  const rowsOf = (view: string): Locator => page.locator(`.pane-body.${view} .monaco-list-rows > .monaco-list-row`);
  const frameRow = (fn: string, line: number): Locator => rowsOf('debug-call-stack').and(page.locator(`[aria-label="Stack Frame ${fn}, line ${line}, ${CALLS_FILE}"]`));
  const scopeRow = (name: string): Locator => rowsOf('debug-variables').and(page.locator(`[aria-label="Scope ${name}"]`));
  const ripRow = (value: string): Locator => rowsOf('debug-variables').and(page.locator(`[aria-label="rip, value ${value}"]`));
  const replRows = (): Locator => page.locator('.repl .monaco-list-row');

  /** The Call Stack view as shown: each thread with its stop reason and the frames listed under it
   * (none while it is folded), a frame as `function file line:column`. */
  const callStack = (): Promise<ThreadView[]> =>
    rowsOf('debug-call-stack').evaluateAll((rows: DomNode[]) => {
      // no named inner functions: the page cannot run tsx's __name() helper
      const threads: ThreadView[] = [];
      for (const row of rows) {
        const [a, b, c] = ['.thread .name, .stack-frame .label', '.thread .state, .stack-frame .file-name', '.stack-frame .line-number'].map((q) => (row.querySelector(q)?.textContent ?? '').trim());
        if (row.querySelector('.thread')) threads.push({ name: a, state: b, frames: [] });
        else if (row.querySelector('.stack-frame')) threads[threads.length - 1]?.frames.push(`${a} ${b} ${c}`);
      }
      return threads;
    });
  const statusBarColor = (): Promise<string> => page.locator('.part.statusbar').evaluate((el: DomNode) => getComputedStyle(el).backgroundColor);

  /** Waits until `check` holds (polling the page), failing with `what` and the last value seen. */
  const until = async <T>(what: string, read: () => Promise<T>, check: (v: T) => boolean): Promise<T> => {
    const deadline = Date.now() + UI_TIMEOUT;
    let last = await read();
    while (!check(last)) {
      if (Date.now() > deadline) assert.fail(`${what}; last seen: ${JSON.stringify(last)}`);
      await page.waitForTimeout(100);
      last = await read();
    }
    return last;
  };

  /** What the editor draws for the debugger: the line of the current-statement highlight (a
   * whole-line decoration) and the gutter glyphs by line, both placed through the line number
   * drawn at the same height in the margin. */
  const decorations = (editor: Locator): Promise<EditorDecorations> =>
    editor.evaluate((el: DomNode) => {
      const lineAt = new Map<string, number>();
      for (const row of el.querySelectorAll('.margin-view-overlays > div')) lineAt.set(row.style.top, Number(row.querySelector('.line-numbers')?.textContent));
      const glyphs: Record<number, string[]> = {};
      for (const g of el.querySelectorAll('.glyph-margin-widgets > div')) {
        const line = lineAt.get(g.style.top);
        if (line) (glyphs[line] ??= []).push(...g.className.split(' ').filter((c) => c.startsWith('codicon-')));
      }
      const top = el.querySelector('.view-overlays .debug-top-stack-frame-line')?.parentElement?.style.top;
      return { current: (top && lineAt.get(top)) || null, glyphs };
    });
  const hasGlyph = (d: EditorDecorations, line: number, glyph: string): boolean => (d.glyphs[line] ?? []).includes(`codicon-${glyph}`);
  const waitForCurrentLine = (editor: Locator, line: number): Promise<EditorDecorations> =>
    until(`the editor highlights line ${line} as the current statement, with the arrow in the gutter`, () => decorations(editor), (d) => d.current === line && hasGlyph(d, line, 'debug-stackframe'));
  const waitForBreakpointGlyph = (editor: Locator, line: number, shown: boolean): Promise<EditorDecorations> =>
    until(`the gutter ${shown ? 'shows' : 'no longer shows'} a breakpoint at line ${line}`, () => decorations(editor), (d) => hasGlyph(d, line, 'debug-breakpoint') === shown);

  /** Clicks the gutter (the glyph margin) of an editor line, where a user sets a breakpoint. */
  const clickGutter = async (editor: Locator, line: number): Promise<void> => {
    const row = editor.locator('.margin-view-overlays > div').filter({ has: page.locator('.line-numbers', { hasText: new RegExp(`^${line}$`) }) });
    const box = await row.boundingBox();
    assert.ok(box, `line ${line} is not drawn`);
    await page.mouse.click(box.x + 8, box.y + box.height / 2);
    // away from the gutter, where the mouse leaves a breakpoint hint, to the empty editor area below the text
    const area = await editor.boundingBox();
    if (area) await page.mouse.move(area.x + area.width / 2, area.y + area.height - 10);
  };

  /** Drags the sash between the side bar and the editor to make the side bar `width` px wide. */
  const widenSideBar = async (width: number): Promise<void> => {
    const bar = await page.locator('.part.sidebar').boundingBox();
    assert.ok(bar, 'no side bar');
    const y = bar.y + bar.height / 2;
    await page.mouse.move(bar.x + bar.width - 1, y);
    await page.mouse.down();
    await page.mouse.move(bar.x + width, y, { steps: 10 });
    await page.mouse.up();
    await until('the side bar is wider', async () => (await page.locator('.part.sidebar').boundingBox())?.width ?? 0, (w) => w > bar.width + 100);
  };

  /** Scrolls a view with the mouse wheel until `row` is in sight (inside the list, below the
   * sticky header), as a user looks for a row: down, and from the bottom back up (the rows may
   * still be refreshing). */
  const scrollTo = async (view: string, row: Locator): Promise<void> => {
    const list = page.locator(`.pane-body.${view} .monaco-list`);
    const sticky = page.locator(`.pane-body.${view} .monaco-tree-sticky-container`);
    const first = rowsOf(view).and(page.locator('[data-index="0"]'));
    const last = rowsOf(view).and(page.locator('[data-last-element="true"]'));
    const inSight = async (r: Locator): Promise<boolean> => {
      if ((await r.count()) === 0) return false; // not rendered: the list draws the rows in view only
      const [box, within, pinned] = [await r.boundingBox(), await list.boundingBox(), await sticky.boundingBox()];
      if (!box || !within) return false;
      const top = pinned && pinned.height > 0 ? pinned.y + pinned.height : within.y;
      return box.y >= top && box.y + box.height <= within.y + within.height;
    };
    // at the rows' left edge: over a value, the mouse would open the value's hover, which takes the wheel
    await list.hover({ position: { x: 4, y: 30 } });
    let step = 66;
    await until(`${view} scrolled to the row`, async () => {
      if (await inSight(row)) return true;
      if (await inSight(last)) step = -66;
      else if (await inSight(first)) step = 66;
      await page.mouse.wheel(0, step);
      return false;
    }, (found) => found);
  };

  /** Types a line into the Debug Console's input and waits for the answer to appear. */
  const evaluate = async (text: string, answer: RegExp): Promise<string> => {
    const before = await replRows().count();
    await page.locator('.repl-input-wrapper .monaco-editor').click();
    await page.keyboard.type(text);
    await page.keyboard.press('Enter');
    const row = replRows().filter({ hasText: answer }).last();
    await row.waitFor();
    assert.ok((await replRows().count()) > before, `the Debug Console shows nothing new after '${text}'`);
    return row.innerText();
  };

  // ---- the tests ----------------------------------------------------------------------------------

  it('F5 on an open .vasm starts the debugger stopped at _start: toolbar, vCPU threads, current line', async () => {
    const editor = await openFile(CALLS_FILE);
    await page.locator('#status\\.editor\\.mode').filter({ hasText: 'AVIC guest assembly' }).waitFor();
    idleStatusBar = await statusBarColor();
    // no launch.json: the extension's configuration provider debugs ${file} with stopOnEntry
    await page.keyboard.press('F5');
    await toolbar().waitFor();
    await widenSideBar(620); // the thread names and their stop reasons side by side
    await frameRow('_start', START_LINE).waitFor();
    const buttons = await toolbar().locator('.action-label').evaluateAll((as) => as.map((a) => a.getAttribute('aria-label') ?? ''));
    assert.deepEqual(buttons, ['Continue (F5)', 'Step Over (F10)', 'Step Into (F11)', 'Step Out (Shift+F11)', 'Restart (Ctrl+Shift+F5)', 'Stop (Shift+F5)'], 'the debug toolbar of a stopped session');
    const threads = await until('a thread for each vCPU', callStack, (t) => t.length === 2);
    threads.forEach((t, i) => assert.equal(THREAD_NAME.exec(t.name)?.[1], String(i), `thread ${i} is named ${t.name}`));
    assert.match(threads[0].state, /^Paused on entry/i);
    // the stopped vCPU's thread is unfolded: one frame, _start, at its line in calls.vasm
    assert.deepEqual(threads[0].frames, [`_start ${CALLS_FILE} ${START_LINE}:1`]);
    await waitForCurrentLine(editor, START_LINE);
    await until('the status bar takes the debugging color', statusBarColor, (c) => c !== idleStatusBar);
    await shot('stopped-on-entry');
  });

  it('the Variables view shows the five scopes, and Registers shows rip at _start', async () => {
    // the first scope opens by itself: fold it to see them all
    await scopeRow('Registers').waitFor();
    if ((await scopeRow('Registers').getAttribute('aria-expanded')) === 'true') await scopeRow('Registers').click();
    const scopes = await until('only the scopes are listed', () => rowsOf('debug-variables').evaluateAll((rows: DomNode[]) => rows.map((r) => (r.textContent ?? '').trim())), (n) => n.length === 5);
    assert.deepEqual(scopes, ['Registers', 'Local APIC', 'AVIC', 'vCPU (KVM)', 'VM (KVM)']);
    await shot('variables-scopes');

    await scopeRow('Registers').click();
    const rip = ripRow('0x0000000000100000');
    await scrollTo('debug-variables', rip);
    assert.equal((await rip.innerText()).replace(/\s+/g, ' ').trim(), 'rip = 0x0000000000100000');
    await shot('registers-rip');
  });

  it('F10 moves the current line; a breakpoint set in the gutter stops Continue in the called function', async () => {
    const editor = editorOf(CALLS_FILE);
    await page.keyboard.press('F10');
    await waitForCurrentLine(editor, START_LINE + 1);
    await frameRow('_start', START_LINE + 1).waitFor();
    const stepped = (await callStack())[0];
    assert.match(stepped.state, /step/i);
    assert.deepEqual(stepped.frames, [`_start ${CALLS_FILE} ${START_LINE + 1}:1`]);
    // the Variables view follows: rip is past `mov eax, 1` (5 bytes)
    await scrollTo('debug-variables', ripRow('0x0000000000100005'));
    await shot('step-over');

    // a click in the gutter of `add eax, ecx`, inside add_ecx
    await clickGutter(editor, ADD_LINE);
    await waitForBreakpointGlyph(editor, ADD_LINE, true);
    await rowsOf('debug-breakpoints').filter({ hasText: CALLS_FILE }).filter({ hasText: String(ADD_LINE) }).waitFor();

    // both vCPUs run; the first to reach add_ecx stops there, called from _start's first call
    await page.keyboard.press('F5');
    await frameRow('add_ecx', ADD_LINE).waitFor();
    const hit = (await callStack()).find((t) => /breakpoint/i.test(t.state));
    assert.ok(hit, 'a thread is paused on the breakpoint');
    assert.match(hit.name, THREAD_NAME);
    assert.deepEqual(hit.frames, [`add_ecx ${CALLS_FILE} ${ADD_LINE}:1`, `_start ${CALLS_FILE} ${FIRST_CALL_LINE}:1`]);
    await waitForCurrentLine(editor, ADD_LINE);
    // the Variables view follows: that vCPU's rip is add_ecx's first instruction
    await scrollTo('debug-variables', ripRow('0x0000000000100016'));
    await shot('breakpoint-hit');
  });

  it('the Debug Console answers help with the commands and rax with its value', async () => {
    const help = await evaluate('help', /^Commands \(each runs as host code/);
    for (const command of ['hostaction', 'inhibit', 'request', 'irq', 'help']) assert.match(help, new RegExp(`^ +${command}\\b`, 'm'), `help lists ${command}`);
    // add_ecx is entered with eax = 1 (mov eax, 1 before the first call)
    const rax = await evaluate('rax', /^0x[0-9a-f]{16} \(\d+\)$/);
    assert.equal(rax.trim(), '0x0000000000000001 (1)');
    // the console is narrow beside the side bar: maximize the panel to read the help text
    await runCommand('View: Toggle Maximized Panel');
    await replRows().filter({ hasText: /^rax$/ }).waitFor();
    await shot('debug-console');
    await runCommand('View: Toggle Maximized Panel');
  });

  it('the APICv Inhibits and vCPUs (KVM) views show the bitmap and the vCPUs, and follow a console command', async () => {
    const pane = (title: string): Locator => page.locator('.part.sidebar .pane').filter({ has: page.locator('.pane-header', { hasText: new RegExp(`^${title}`) }) });
    const rows = (title: string): Locator => pane(title).locator('.monaco-list-row');
    const texts = (title: string): Promise<string[]> => rows(title).evaluateAll((rs: DomNode[]) => rs.map((r) => (r.textContent ?? '').replace(/\s+/g, ' ').trim()));
    // make room: fold the built-in views (unfolded again at the end), open ours
    const folded: string[] = [];
    for (const title of ['Variables', 'Watch', 'Call Stack', 'Breakpoints']) {
      const header = pane(title).locator('.pane-header');
      if ((await header.getAttribute('aria-expanded')) !== 'true') continue;
      await header.click();
      folded.push(title);
    }
    for (const title of ['APICv Inhibits', 'vCPUs \\(KVM\\)']) {
      const header = pane(title).locator('.pane-header');
      await header.waitFor();
      if ((await header.getAttribute('aria-expanded')) !== 'true') await header.click();
    }
    // (the list draws the rows in sight: the word and the first reasons; all 12 are in test/extension)
    const inhibits = await until('the inhibit view lists the word and the reasons by bit', () => texts('APICv Inhibits'), (t) => t.length >= 5);
    assert.match(inhibits[0], /^apicv_inhibit_reasons ?0x0 · APICv activated$/);
    assert.ok(inhibits.some((t) => /^BLOCKIRQ ?bit 3$/.test(t)), inhibits.join(' | '));
    const vcpus = await until('the vCPU view lists both vCPUs', () => texts('vCPUs \\(KVM\\)'), (t) => t.length === 2);
    vcpus.forEach((t, i) => assert.match(t, new RegExp(`^vCPU ${i} ?xAPIC · APICv active · SRCU 0`)));
    await shot('kvm-views');

    // a debugger action: kvm_set_or_clear_apicv_inhibit requests KVM_REQ_APICV_UPDATE of every
    // vCPU and waits for them, frozen as they are, so it stays queued; the views follow
    // avic/stateChanged: both vCPUs have the request pending, the word is not stored yet
    await evaluate('inhibit set BLOCKIRQ', /^inhibit set BLOCKIRQ: queued; it runs when execution resumes\. Paused: .*KVM_REQ_APICV_UPDATE/);
    await until('both vCPUs show the pending request', () => texts('vCPUs \\(KVM\\)'), (t) => t.length === 2 && t.every((x) => x.endsWith('SRCU 0 · 1 request')));
    assert.match((await texts('APICv Inhibits'))[0], /^apicv_inhibit_reasons ?0x0/);
    await shot('kvm-views-request-pending');
    // Continue: the vCPUs acknowledge, the word takes the bit, and the next breakpoint stop shows it
    await page.keyboard.press('F5');
    await until('the word shows BLOCKIRQ', () => texts('APICv Inhibits'), (t) => /^apicv_inhibit_reasons ?0x8 · APICv inhibited$/.test(t[0]) && t.some((x) => /^BLOCKIRQ ?bit 3 · set$/.test(x)));
    await shot('kvm-views-inhibited');
    for (const title of folded) await pane(title).locator('.pane-header').click();
  });

  it('Ctrl+Shift+F5 restarts in place with the program as edited: stopped at _start again, the breakpoint kept and hit again', async () => {
    const editor = editorOf(CALLS_FILE);
    // an unsaved edit: `mov eax, 1` becomes `mov eax, 7` (same length: the addresses stay)
    const column = CALLS_LINES[START_LINE - 1].indexOf('1') + 1;
    await editor.click();
    await page.keyboard.press('Control+G');
    await page.keyboard.type(`${START_LINE}:${column}`);
    await page.keyboard.press('Enter');
    await page.keyboard.press('Shift+ArrowRight');
    await page.keyboard.type('7');
    await editor.locator('.view-line').filter({ hasText: /^_start:\s+mov\s+eax,\s7\s/ }).waitFor();
    await page.keyboard.press('Control+Shift+F5');
    await frameRow('_start', START_LINE).waitFor();
    await waitForCurrentLine(editor, START_LINE);
    const threads = await until('both vCPU threads again, the first paused on entry', callStack, (t) => t.length === 2 && /^Paused on entry/i.test(t[0].state));
    assert.deepEqual(threads[0].frames, [`_start ${CALLS_FILE} ${START_LINE}:1`]);
    await scrollTo('debug-variables', ripRow('0x0000000000100000'));
    await waitForBreakpointGlyph(editor, ADD_LINE, true);
    await page.keyboard.press('F5');
    await frameRow('add_ecx', ADD_LINE).waitFor();
    await waitForCurrentLine(editor, ADD_LINE);
    // the machine runs the edited program
    assert.equal((await evaluate('rax', /^0x[0-9a-f]{16} \(\d+\)$/)).trim(), '0x0000000000000007 (7)');
    await shot('restarted');
    // undo the edit: the file is as saved again for the sessions after this one
    await editor.click();
    await page.keyboard.press('Control+Z');
    await editor.locator('.view-line').filter({ hasText: /^_start:\s+mov\s+eax,\s1\s/ }).waitFor();
  });

  it('the Breakpoints view lists the event breakpoints; Shift+F5 ends the session', async () => {
    const labels = EVENT_FILTERS.map((f) => f.label);
    const rows = rowsOf('debug-breakpoints');
    await rows.first().waitFor();
    const listed = await rows.evaluateAll((rs) => rs.map((r) => ({ label: r.getAttribute('aria-label') ?? '', checked: !!r.querySelector('input[type=checkbox]:checked') })));
    const events = listed.filter((r) => labels.includes(r.label));
    assert.deepEqual(events.map((r) => r.label), labels, `the event breakpoints (${EVENT_FILTERS.map((f) => f.filter).join(', ')}) in order`);
    const on = events.filter((r) => r.checked).map((r) => r.label);
    assert.deepEqual(on, EVENT_FILTERS.filter((f) => f.default).map((f) => f.label), 'only `violation` is on by default');
    await shot('breakpoints-view');

    await page.keyboard.press('Shift+F5');
    await toolbar().waitFor({ state: 'hidden' });
    await until('the status bar loses the debugging color', statusBarColor, (c) => c === idleStatusBar);
    await page.locator('.pane-body.debug-call-stack').waitFor({ state: 'detached' });
    const after = await waitForBreakpointGlyph(editorOf(CALLS_FILE), ADD_LINE, true); // it stays for the next session
    assert.equal(after.current, null, 'no current line after the session ended');
    assert.deepEqual(await page.locator('.notifications-toasts .notification-toast').allInnerTexts(), [], 'no notification');
    await shot('session-ended');
  });

  it('a run to the end prints the exit summary and ends the session by itself', async () => {
    const editor = editorOf(CALLS_FILE);
    // remove the breakpoint (a second click on it), start again and continue
    await clickGutter(editor, ADD_LINE);
    await waitForBreakpointGlyph(editor, ADD_LINE, false);
    await page.keyboard.press('F5');
    await frameRow('_start', START_LINE).waitFor();
    await page.keyboard.press('F5');
    await replRows().filter({ hasText: /avic: done: \d+ steps, \d+ instructions/ }).waitFor();
    await toolbar().waitFor({ state: 'hidden' });
    await page.locator('.pane-body.debug-call-stack').waitFor({ state: 'detached' });
    await until('the status bar loses the debugging color', statusBarColor, (c) => c === idleStatusBar);
    await shot('ran-to-the-end');
  });

  it('raised no errors in the page', () => {
    assert.deepEqual(pageErrors, [], 'uncaught errors in the workbench page');
  });
});

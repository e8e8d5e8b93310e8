// The grammar's `avic-constants` rule must list exactly the names include/avic.inc defines.
// Fix a failure with: node scripts/gen-grammar-names.mjs
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createRegistry } from "vscode-tmgrammar-test/dist/common/index";

const root = resolve(__dirname, "..", "..");
const grammarPath = join(root, "syntaxes", "avic-asm.tmLanguage.json");
const incPath = join(root, "include", "avic.inc");
const SCOPE = "support.constant.avic.avic-asm variable.other.constant.avic-asm";
const REGEN = "run `node scripts/gen-grammar-names.mjs` to regenerate the grammar's list";

type Grammar = NonNullable<Awaited<ReturnType<ReturnType<typeof createRegistry>["loadGrammar"]>>>;

/** Names defined in the include file: `NAME equ ...` (and %define/%xdefine/%assign NAME). */
function includeNames(): string[] {
  const names: string[] = [];
  for (const raw of readFileSync(incPath, "utf8").split(/\r?\n/)) {
    const line = raw.replace(/;.*$/, "");
    const m =
      /^\s*([A-Za-z_?][\w$#@~.?]*)\s*:?\s+equ\b/i.exec(line) ??
      /^\s*%(?:i?x?define|i?assign)\s+([A-Za-z_?][\w$#@~.?]*)/i.exec(line);
    if (m) names.push(m[1]!);
  }
  return names;
}

/** Names listed in the grammar rule, whose match is `(?<!…)(?:A|B|…)(?!…)`. */
function grammarNames(): string[] {
  const grammar = JSON.parse(readFileSync(grammarPath, "utf8"));
  const rule = grammar.repository?.["avic-constants"];
  assert.ok(rule, "grammar has no repository.avic-constants rule");
  assert.equal(rule.name, SCOPE);
  const m = /^\(\?<!\[[^\]]*\]\)\(\?:([^()]*)\)\(\?!\[[^\]]*\]\)$/.exec(rule.match);
  assert.ok(m, `unexpected shape of avic-constants match (${REGEN}): ${String(rule.match).slice(0, 80)}`);
  return m[1]!.split("|").map((n) => n.replace(/\\(.)/g, "$1"));
}

function scopesOf(grammar: Grammar, line: string, text: string): string[][] {
  const start = line.indexOf(text);
  assert.ok(start >= 0);
  const { tokens } = grammar.tokenizeLine(line, null);
  return tokens
    .filter((t) => t.startIndex < start + text.length && t.endIndex > start)
    .map((t) => {
      assert.equal(t.startIndex, start, `${text} in "${line}" is split into several tokens`);
      assert.equal(t.endIndex, start + text.length, `${text} in "${line}" is split into several tokens`);
      return t.scopes;
    });
}

describe("grammar: names from include/avic.inc", () => {
  let grammar: Grammar;
  const names = includeNames();

  before(async () => {
    const registry = createRegistry([{ scopeName: "source.avic-asm", path: grammarPath }]);
    const g = await registry.loadGrammar("source.avic-asm");
    assert.ok(g, "grammar did not load");
    grammar = g;
  });

  it("finds the names in the include file", () => {
    assert.ok(names.length > 50, `only ${names.length} names found in ${incPath}`);
    assert.ok(names.includes("MSR_IA32_APICBASE"));
    assert.ok(names.includes("X2APIC_ICR"));
    assert.ok(names.includes("APIC_DM_INIT"));
    assert.ok(names.includes("PORT_CONSOLE"));
  });

  it("the grammar lists exactly the names the include file defines", () => {
    const inGrammar = new Set(grammarNames());
    const inInclude = new Set(names);
    const missing = [...inInclude].filter((n) => !inGrammar.has(n));
    const extra = [...inGrammar].filter((n) => !inInclude.has(n));
    assert.deepEqual(
      { missing, extra },
      { missing: [], extra: [] },
      `grammar and include/avic.inc disagree; ${REGEN}`,
    );
  });

  it("every name is highlighted as a support constant where it is used", () => {
    for (const name of names) {
      for (const line of [`    mov eax, ${name}`, `    dd ${name} | 1`, `    mov [rbx + ${name}], eax`, `%define FOO (${name})`]) {
        for (const scopes of scopesOf(grammar, line, name)) {
          // the rule's name carries two scopes: ours, and one the default themes color
          for (const scope of SCOPE.split(" ")) assert.ok(scopes.includes(scope), `${name} in "${line}" has scopes ${scopes.join(" ")}`);
        }
      }
    }
  });

  it("longer or differently cased identifiers are not support constants", () => {
    for (const name of names) {
      for (const text of [`${name}_X`, `X${name}`, name.toLowerCase(), `.${name}`]) {
        const line = `    mov eax, ${text}`;
        for (const scopes of scopesOf(grammar, line, text)) {
          assert.ok(!scopes.includes(SCOPE), `${text} in "${line}" has scopes ${scopes.join(" ")}`);
        }
      }
    }
  });

  it("the include file itself: each name is a constant definition, comments stay comments", () => {
    let state = null as Parameters<Grammar["tokenizeLine"]>[1];
    const seen: string[] = [];
    for (const line of readFileSync(incPath, "utf8").split(/\r?\n/)) {
      const { tokens, ruleStack } = grammar.tokenizeLine(line, state);
      state = ruleStack;
      const def = /^\s*([A-Za-z_?][\w$#@~.?]*)\s+equ\b/i.exec(line);
      if (def) {
        const first = tokens.find((t) => t.startIndex === line.indexOf(def[1]!));
        assert.ok(first?.scopes.includes("entity.name.constant.avic-asm"), `definition of ${def[1]} not highlighted: ${line}`);
        seen.push(def[1]!);
      }
      const semi = line.indexOf(";");
      if (semi >= 0) {
        for (const t of tokens.filter((t) => t.startIndex >= semi && t.endIndex <= line.length)) {
          assert.ok(
            t.scopes.some((s) => s.startsWith("comment.line.semicolon.")),
            `"${line.slice(t.startIndex, t.endIndex)}" after ; is not a comment: ${line}`,
          );
        }
      }
    }
    assert.deepEqual(seen, names.filter((n) => seen.includes(n)));
    assert.ok(seen.length > 50);
  });
});

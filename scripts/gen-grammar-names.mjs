#!/usr/bin/env node
// Regenerates the `avic-constants` rule of syntaxes/avic-asm.tmLanguage.json from include/avic.inc,
// so that every name the include file defines is highlighted as support.constant.avic.avic-asm.
//
//   node scripts/gen-grammar-names.mjs           rewrite the grammar (only that rule changes)
//   node scripts/gen-grammar-names.mjs --check   exit 1 if the grammar is out of date
//
// test/grammar/names.test.ts checks the same thing independently.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const incPath = join(root, "include", "avic.inc");
const grammarPath = join(root, "syntaxes", "avic-asm.tmLanguage.json");

// NASM token boundaries (identifier characters are letters, digits, _ $ # @ ~ . ?).
const B0 = "(?<![\\w.$#@~?])";
const B1 = "(?![\\w.$#@~?])";

/** Names defined by `NAME equ ...` (and %define/%xdefine/%assign NAME) lines, in file order. */
function definedNames(text) {
  const names = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/;.*$/, "");
    const m =
      /^\s*([A-Za-z_?][\w$#@~.?]*)\s*:?\s+equ\b/i.exec(line) ??
      /^\s*%(?:i?x?define|i?assign)\s+([A-Za-z_?][\w$#@~.?]*)/i.exec(line);
    if (m && !names.includes(m[1])) names.push(m[1]);
  }
  return names;
}

function constantsRegex(names) {
  const escaped = [...names].sort().map((n) => n.replace(/[.$?]/g, "\\$&"));
  return `${B0}(?:${escaped.join("|")})${B1}`;
}

const names = definedNames(readFileSync(incPath, "utf8"));
if (names.length === 0) {
  console.error(`no names found in ${incPath}`);
  process.exit(1);
}
const before = readFileSync(grammarPath, "utf8");
const grammar = JSON.parse(before);
const rule = grammar.repository?.["avic-constants"];
if (!rule) {
  console.error(`${grammarPath} has no repository.avic-constants rule`);
  process.exit(1);
}
rule.match = constantsRegex(names);
const after = JSON.stringify(grammar, null, 2) + "\n";

if (process.argv.includes("--check")) {
  if (after !== before) {
    console.error(`${grammarPath} is out of date with ${incPath}; run: node scripts/gen-grammar-names.mjs`);
    process.exit(1);
  }
  console.log(`avic-constants is up to date (${names.length} names)`);
} else if (after !== before) {
  writeFileSync(grammarPath, after);
  console.log(`wrote ${names.length} names to ${grammarPath}`);
} else {
  console.log(`avic-constants already up to date (${names.length} names)`);
}

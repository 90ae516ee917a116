// Deterministic test corpus for the tokenizer differential test: the same seed gives the same
// strings on every machine. The mix aims at the pre-tokenizer's hard cases: every Unicode class
// the regexes test (letters, marks, numbers of many scripts, punctuation, symbols, White_Space
// and the characters JavaScript's \s disagrees on), CJK/kana boundaries, emoji sequences split
// into byte tokens, whitespace runs around newlines, source code, and added-token strings.

// splitmix32: small, fast and fully determined by the seed.
function makeRng(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  const int = (n) => next() % n; // [0, n)
  return {
    int,
    range: (lo, hi) => lo + int(hi - lo + 1),
    chance: (p) => next() / 4294967296 < p,
    pick: (list) => list[int(list.length)],
  };
}

// Unicode blocks (or parts) to draw characters from.
const BLOCKS = [
  [0x20, 0x7e], [0x00, 0x1f], [0x7f, 0x9f], [0xa0, 0xff], [0x100, 0x24f], [0x250, 0x2ff],
  [0x300, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff], [0x530, 0x58f], [0x590, 0x5ff], [0x600, 0x6ff],
  [0x700, 0x74f], [0x900, 0x97f], [0x980, 0x9ff], [0xb80, 0xbff], [0xe00, 0xe7f], [0xe80, 0xeff],
  [0xf00, 0xfff], [0x1000, 0x109f], [0x10a0, 0x10ff], [0x1100, 0x11ff], [0x1200, 0x137f],
  [0x13a0, 0x13ff], [0x1680, 0x169f], [0x1780, 0x17ff], [0x1800, 0x18af], [0x1e00, 0x1eff],
  [0x1f00, 0x1fff], [0x2000, 0x206f], [0x2070, 0x209f], [0x20a0, 0x20cf], [0x20d0, 0x20ff],
  [0x2100, 0x214f], [0x2150, 0x218f], [0x2190, 0x21ff], [0x2200, 0x22ff], [0x2300, 0x23ff],
  [0x2460, 0x24ff], [0x2500, 0x257f], [0x25a0, 0x25ff], [0x2600, 0x26ff], [0x2700, 0x27bf],
  [0x2e80, 0x2fdf], [0x3000, 0x303f], [0x3040, 0x309f], [0x30a0, 0x30ff], [0x3100, 0x312f],
  [0x3130, 0x318f], [0x31f0, 0x31ff], [0x3200, 0x33ff], [0x3400, 0x4dbf], [0x4e00, 0x9fff],
  [0x9f90, 0x9fff], [0xa000, 0xa48f], [0xa640, 0xa69f], [0xa830, 0xa83f], [0xac00, 0xd7a3],
  [0xd7b0, 0xd7ff], [0xe000, 0xe0ff], [0xf900, 0xfaff], [0xfb00, 0xfb4f], [0xfb50, 0xfdff],
  [0xfe00, 0xfe0f], [0xfe10, 0xfe6f], [0xfe70, 0xfeff], [0xff00, 0xffef], [0xfff0, 0xffff],
  [0x10000, 0x1007f], [0x10330, 0x1034f], [0x10a00, 0x10a5f], [0x11000, 0x1107f],
  [0x12000, 0x123ff], [0x13000, 0x1342f], [0x16800, 0x16a3f], [0x1b000, 0x1b0ff],
  [0x1d100, 0x1d1ff], [0x1d400, 0x1d7ff], [0x1e900, 0x1e95f], [0x1f000, 0x1f0ff],
  [0x1f100, 0x1f1ff], [0x1f300, 0x1f64f], [0x1f680, 0x1f6ff], [0x1f900, 0x1f9ff],
  [0x1fa70, 0x1faff], [0x20000, 0x2a6df], [0x2b740, 0x2b81f], [0x30000, 0x3134f],
  [0xe0000, 0xe007f], [0xe0100, 0xe01ef], [0xf0000, 0xf00ff], [0x10fff0, 0x10ffff],
];

// White_Space, plus characters that look like space to some engine: U+FEFF (JavaScript \s),
// U+180E (White_Space before Unicode 6.3), zero-width ones, and controls Python treats as space.
const SPACES = [
  " ", " ", " ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\u0085", "\u00a0", "\u1680", "\u2000",
  "\u2003", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff",
  "\u180e", "\u200b", "\u200c", "\u200d", "\u2060", "\u001c", "\u001f",
];

// Zero of each decimal digit set used here; digit d is zero + d.
const DIGIT_ZEROS = [
  0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66,
  0xe50, 0xed0, 0xf20, 0x1040, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1b50, 0x1c40, 0xa8d0, 0xa900,
  0xaa50, 0xabf0, 0xff10, 0x104a0, 0x11066, 0x1d7ce, 0x1d7d8, 0x1e950,
];
const OTHER_NUMBERS = "²³¹¼½¾⁰⁴⁹₀₅①②⑳⑴⒈ⅠⅡⅫⅰⅹↁ〇〡〩㆒㈠㉑㊀𐄇𐌢";

const WORDS = [
  "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world", "tokenizer",
  "perché", "così", "città", "naïve", "façade", "Straße", "größer", "niño", "über", "ÆØÅ",
  "Привет", "мир", "Ελληνικά", "λόγος", "שלום", "مرحبا", "بالعالم", "नमस्ते", "दुनिया", "বাংলা",
  "สวัสดี", "ภาษาไทย", "Tiếng", "Việt", "你好", "世界", "中华人民共和国", "漢字", "こんにちは",
  "カタカナ", "ひらがな", "ー", "・", "안녕하세요", "세계", "한국어", "ქართული", "Հայերեն",
  "ትግርኛ", "ᏣᎳᎩ", "ᠮᠣᠩᠭᠣᠯ", "ཀ་ཁ་ག", "e\u0301", "a\u0308\u0304", "ﬁ", "Ｆｕｌｌ", "ｶﾀｶﾅ",
  "co-op", "don't", "it's", "U.S.A.", "e.g.", "x86_64", "C++", "#include", "@user", "$HOME",
];
const PUNCT = [
  ",", ".", "!", "?", ";", ":", "...", "…", "—", "–", "-", "“", "”", "‘", "’", "«", "»", "„",
  "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\", "|", "~", "`", "^", "_", "*", "&", "%",
  "$", "€", "£", "¥", "₿", "§", "¶", "†", "•", "·", "。", "，", "、", "！", "？", "：", "「",
  "」", "『", "』", "【", "】", "〜", "～", "｜", "→", "⇒", "∀", "∑", "√", "≠", "≤", "°", "©", "®", "™",
];
const EMOJI = [
  "😀", "🦀", "🚀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇮🇹", "🇯🇵", "1️⃣", "#️⃣", "❤️", "✅", "⭐", "🧑🏿‍💻",
  "🤖", "🎉", "🙏", "💡", "🔥", "👀", "🫠", "🪿",
];

function randomChar(rng, versionDependent) {
  for (;;) {
    const [lo, hi] = rng.pick(BLOCKS);
    const cp = rng.range(lo, hi);
    if (cp >= 0xd800 && cp <= 0xdfff) continue; // not representable in UTF-8
    if (versionDependent(cp)) continue;
    return String.fromCodePoint(cp);
  }
}

function digits(rng, n) {
  const zero = rng.chance(0.5) ? 0x30 : rng.pick(DIGIT_ZEROS);
  let s = "";
  for (let i = 0; i < n; ++i) s += String.fromCodePoint(zero + rng.int(10));
  return s;
}

function number(rng) {
  switch (rng.int(8)) {
    case 0: return digits(rng, rng.range(1, 12));
    case 1: return `${digits(rng, rng.range(1, 4))}.${digits(rng, rng.range(1, 7))}`;
    case 2: return `${digits(rng, 4)}-${digits(rng, 2)}-${digits(rng, 2)}`;
    case 3: return `${digits(rng, 1)},${digits(rng, 3)},${digits(rng, 3)}`;
    case 4: return `+${digits(rng, 2)} ${digits(rng, 3)} ${digits(rng, 4)}`;
    case 5: return rng.pick([...OTHER_NUMBERS]) + digits(rng, rng.range(0, 3));
    case 6: return `${digits(rng, 2)}:${digits(rng, 2)}:${digits(rng, 2)}`;
    default: return `0x${rng.int(0x7fffffff).toString(16)}`;
  }
}

function spaces(rng) {
  let s = "";
  const n = rng.range(1, 6);
  for (let i = 0; i < n; ++i) s += rng.pick(SPACES);
  return s;
}

// Characters of one to three random blocks, with separators sprinkled in.
function scriptMix(rng, versionDependent) {
  const n = rng.range(1, 60);
  let s = "";
  for (let i = 0; i < n; ++i) {
    const r = rng.int(20);
    if (r === 0) s += spaces(rng);
    else if (r === 1) s += number(rng);
    else if (r === 2) s += rng.pick(PUNCT);
    else if (r === 3) s += rng.pick(EMOJI);
    else s += randomChar(rng, versionDependent);
  }
  return s;
}

function prose(rng) {
  const n = rng.range(1, 40);
  let s = rng.chance(0.2) ? spaces(rng) : "";
  for (let i = 0; i < n; ++i) {
    const r = rng.int(12);
    if (r < 7) s += rng.pick(WORDS);
    else if (r < 9) s += rng.pick(PUNCT);
    else if (r < 10) s += number(rng);
    else if (r < 11) s += rng.pick(EMOJI);
    else s += rng.pick(WORDS).toUpperCase();
    s += rng.chance(0.75) ? " " : rng.chance(0.5) ? spaces(rng) : "";
  }
  return s;
}

function whitespaceHeavy(rng) {
  const n = rng.range(1, 20);
  let s = "";
  for (let i = 0; i < n; ++i) {
    const r = rng.int(5);
    if (r === 0) s += " ".repeat(rng.range(1, 12));
    else if (r === 1) s += spaces(rng);
    else if (r === 2) s += rng.pick(["\n", "\n\n", "\r\n", " \n", "\t\n", "\n  ", "\n\t\t"]);
    else if (r === 3) s += rng.pick(PUNCT) + (rng.chance(0.5) ? "\n" : "");
    else s += rng.pick(WORDS);
  }
  return s;
}

const IDENTS = ["i", "n", "x", "buf", "value", "count", "self", "result", "node", "ctx", "_tmp",
  "kMaxSize", "getUser", "HTTPServer", "snake_case_name", "camelCaseName", "__init__", "T", "err"];
const CODE = [
  (a, b, n) => `#include <stdio.h>\n\nint ${a}(int ${b}) {\n    return ${b} * ${n};\n}\n`,
  (a, b, n) => `for (size_t ${a} = 0; ${a} < ${n}; ++${a}) {\n\tif (${b}[${a}] == '\\0') break;\n}`,
  (a, b, n) => `template <typename T>\nstd::vector<T> ${a}(const std::vector<T>& ${b}) { return {${b}.begin(), ${b}.end()}; }`,
  (a, b, n) => `def ${a}(${b}, *args, **kwargs):\n    """Doc ${n}."""\n    if not ${b}:\n        return None\n    return [x ** 2 for x in ${b} if x % ${n} == 0]\n`,
  (a, b, n) => `const ${a} = async (${b}) => {\n  const res = await fetch(\`/api/\${${b}}?page=${n}\`);\n  return res.json();\n};`,
  (a, b, n) => `fn ${a}(${b}: &[u8]) -> Result<usize, Box<dyn Error>> {\n    let mut total = 0usize;\n    for &c in ${b}.iter() { total += c as usize; }\n    Ok(total % ${n})\n}`,
  (a, b, n) => `func ${a}(${b} []string) (map[string]int, error) {\n\tm := make(map[string]int, ${n})\n\tfor _, s := range ${b} {\n\t\tm[s]++\n\t}\n\treturn m, nil\n}`,
  (a, b, n) => `public static int ${a}(List<Integer> ${b}) {\n        return ${b}.stream().mapToInt(Integer::intValue).sum() / ${n};\n    }`,
  (a, b, n) => `<div class="${a}" id="${b}-${n}">\n  <a href="https://example.com/${a}?q=${n}&amp;x=1">Link</a>\n</div>`,
  (a, b, n) => `{"${a}": [${n}, ${n}.5, -1e-3, true, null], "${b}": {"nested": "va\\"lue\\n", "emoji": "😀"}}`,
  (a, b, n) => `SELECT ${a}, COUNT(*) AS n FROM ${b} WHERE id > ${n} GROUP BY ${a} ORDER BY n DESC;`,
  (a, b, n) => `#!/bin/bash\nset -euo pipefail\nfor f in ./${a}/*.txt; do\n  grep -c "${b}" "$f" || echo ${n} >&2\ndone`,
  (a, b, n) => `${a}:\n  - name: ${b}\n    value: ${n}\n    tags: [x, y]\n`,
  (a, b, n) => `## ${a}\n\n* item **${b}**\n* \`code ${n}\`\n\n> quote\n\n| a | b |\n|---|---|\n| ${n} | ${a} |\n`,
  (a, b, n) => `\\begin{equation}\n  ${a}_{${n}} = \\sum_{i=1}^{N} \\frac{${b}_i}{\\sqrt{2\\pi}}\n\\end{equation}`,
  (a, b, n) => `    if (${a} != nullptr && ${b}->size() >= ${n}) { ${a}->push_back(${b}->at(0)); }  // TODO: fix`,
];

function code(rng) {
  let s = "";
  const n = rng.range(1, 3);
  for (let i = 0; i < n; ++i) {
    const snippet = rng.pick(CODE)(rng.pick(IDENTS), rng.pick(IDENTS), digits(rng, rng.range(1, 5)));
    const indent = rng.pick(["", "", "  ", "    ", "\t", "        "]);
    s += snippet.split("\n").map((line) => (line ? indent + line : line)).join(rng.chance(0.1) ? "\r\n" : "\n");
    s += rng.pick(["\n", "\n\n", "", "\n\n\n"]);
  }
  return s;
}

// Text mixed with added-token strings, whole or cut, as a rendered prompt or a user might hold.
function withAddedTokens(rng, added) {
  const n = rng.range(1, 8);
  let s = "";
  for (let i = 0; i < n; ++i) {
    const r = rng.int(6);
    const token = rng.pick(added);
    if (r === 0) s += token;
    else if (r === 1) s += token.slice(0, rng.range(1, token.length));
    else if (r === 2) s += token.slice(rng.range(1, token.length - 1));
    else if (r === 3) s += rng.pick(["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "｜DSML｜", "<｜end▁of▁sentence｜>", "</｜DSML｜parameter>", "<tool_result>"]);
    else s += Array.from(prose(rng)).slice(0, rng.range(0, 30)).join(""); // whole code points
  }
  return s;
}

function long(rng, versionDependent, added) {
  const target = rng.range(1000, 6000);
  let s = "";
  while (s.length < target) {
    const r = rng.int(8);
    if (r === 0) s += " ".repeat(rng.range(50, 2000));
    else if (r === 1) s += rng.pick(["a", "=", "-", "ab", "0", "\n", "😀", "字", "\t"]).repeat(rng.range(50, 1500));
    else if (r === 2) s += code(rng);
    else if (r === 3) s += scriptMix(rng, versionDependent);
    else if (r === 4) s += whitespaceHeavy(rng);
    else if (r === 5) s += withAddedTokens(rng, added);
    else s += prose(rng);
  }
  return s;
}

export function generateCorpus({ seed, count, promptTexts, added, versionDependent }) {
  const rng = makeRng(seed);
  const texts = [...promptTexts];
  // Fixed edge cases first: empty input, lone members of each class, §1.4 examples.
  texts.push("", " ", "\n", "\t", "\r", "\r\n", "\u0085", "\ufeff", "a\u0085\u0085b", "a \ufeff b",
    "x\u0085\ny", "\u00a0nbsp", "12345", "1234567", "3.14159", "١٢٣ ٤٥", "０１２", "²³½①",
    "你好，世界。", "カ・カ", "゠ア", "\u3040\u3041", "    int x;", ">;\n", "a\n\n\nb", "  leading",
    "trailing  ", "tabs\tand\r\ncr", "🦀", "é\u0301\u0301", "\u0301a", "\u0301 ", "~~", " ~x");
  const kinds = [
    [36, () => scriptMix(rng, versionDependent)],
    [15, () => whitespaceHeavy(rng)],
    [15, () => code(rng)],
    [10, () => { let s = ""; for (let i = rng.range(1, 6); i > 0; --i) s += number(rng) + rng.pick(["", " ", ",", ".", "\n", "-", "x"]); return s; }],
    [12, () => prose(rng)],
    [10, () => withAddedTokens(rng, added)],
    [2, () => long(rng, versionDependent, added)],
  ];
  const total = kinds.reduce((sum, [w]) => sum + w, 0);
  while (texts.length < count) {
    let r = rng.int(total);
    for (const [w, make] of kinds) {
      if (r < w) {
        texts.push(make());
        break;
      }
      r -= w;
    }
  }
  return texts;
}

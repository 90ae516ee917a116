// An independent GGUF reader (@huggingface/gguf, the Hugging Face Hub's parser) reads the files
// `dsv4 gen-model` writes, and sees the same metadata and tensor table as our reader (`dsv4
// inspect`). This is the check that gen-model files are loadable by other GGUF readers, not only by
// the code that wrote them: a layout mistake shared by our writer and our reader would pass every
// C++ test and fail here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { join } from "node:path";

// The package comes from tools/js (installed by scripts/setup.sh), not from a node_modules here.
const { gguf } = createRequire(new URL("../../tools/js/package.json", import.meta.url))("@huggingface/gguf");

const DSV4 = process.env.DSV4_BINARY;
if (!DSV4) throw new Error("DSV4_BINARY must name the dsv4 binary");

// ggml type ids (FORMATS.md §4) by the names `dsv4 inspect` prints.
const TYPE_ID = { F32: 0, F16: 1, Q8_0: 8, Q2_K: 10, Q4_K: 12, IQ2_XXS: 16, I32: 26, BF16: 30 };
// Bytes per block and elements per block, for the data-range check.
const BLOCK = { 0: [4, 1], 1: [2, 1], 8: [34, 32], 10: [84, 256], 12: [144, 256], 16: [66, 256], 26: [4, 1], 30: [2, 1] };

function run(...args) {
  return execFileSync(DSV4, args, { encoding: "utf8", maxBuffer: 64 << 20 });
}

// `dsv4 inspect` text: the tensor table lines and the metadata lines.
function inspect(file) {
  const text = run("inspect", file);
  const tensors = [];
  const metadata = new Map();
  let section = "";
  for (const line of text.split("\n")) {
    if (/^\S/.test(line)) {
      section = line.trim();
      continue;
    }
    if (section === "tensors") {
      const m = line.match(/^\s+(\S+)\s+(\S+)\s+\(([\d, ]+)\)\s+offset (\d+)\s+(\d+) bytes$/);
      if (m) tensors.push({ name: m[1], type: m[2], shape: m[3].split(",").map((s) => BigInt(s.trim())), offset: BigInt(m[4]), bytes: BigInt(m[5]) });
    } else if (section === "metadata") {
      const m = line.match(/^\s+(\S+)\s+(.*)$/);
      if (m) metadata.set(m[1], m[2]);
    }
  }
  const header = text.match(/data at (\d+)/);
  return { tensors, metadata, dataOffset: header ? BigInt(header[1]) : -1n };
}

// Whether the other reader's scalar is the value `dsv4 inspect` printed (floats with 6 decimals;
// the JS reader does not say whether a whole number was stored as an integer or a float).
function samePrinted(value, mine) {
  if (typeof value === "string") return JSON.stringify(value) === mine;
  if (typeof value === "boolean" || typeof value === "bigint") return String(value) === mine;
  return Math.abs(Number(mine) - value) <= 5e-7 + 1e-6 * Math.abs(value);
}

async function crossCheck(preset, types) {
  const dir = mkdtempSync(join(tmpdir(), "dsv4-gguf-js-"));
  try {
    const file = join(dir, `${preset}-${types}.gguf`);
    run("gen-model", "--preset", preset, "--types", types, "--out", file);
    const ours = inspect(file);
    const theirs = await gguf(file, { allowLocalFile: true });

    assert.equal(theirs.metadata.version, 3);
    assert.equal(theirs.tensorDataOffset, ours.dataOffset, "tensor data offset");
    assert.equal(Number(theirs.metadata.tensor_count), ours.tensors.length, "tensor count");
    assert.ok(ours.tensors.length > 50, "the inspect table was parsed");

    // Metadata: every key we print, with the same scalar value or the same array length.
    const keys = Object.keys(theirs.metadata).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
    assert.equal(keys.length, ours.metadata.size, "metadata key count");
    assert.equal(Number(theirs.metadata.kv_count), ours.metadata.size);
    for (const key of keys) {
      assert.ok(ours.metadata.has(key), `key ${key} missing from dsv4 inspect`);
      const value = theirs.metadata[key];
      const mine = ours.metadata.get(key);
      if (Array.isArray(value)) {
        const m = mine.match(/^\[\S+ x (\d+)\]/);
        assert.ok(m, `${key}: dsv4 prints no array`);
        assert.equal(value.length, Number(m[1]), `${key}: array length`);
      } else {
        assert.ok(samePrinted(value, mine), `${key}: ${value} read, ${mine} printed`);
      }
    }
    // The tokenizer arrays are whole and consistent with the vocabulary size.
    const vocab = Number(theirs.metadata["deepseek4.vocab_size"]);
    assert.equal(theirs.metadata["tokenizer.ggml.tokens"].length, vocab);
    assert.equal(theirs.metadata["tokenizer.ggml.token_type"].length, vocab);

    // Tensors: same order, names, types, shapes and offsets; data inside the file, aligned, and
    // no two tensors overlapping.
    const size = BigInt(statSync(file).size);
    const alignment = BigInt(theirs.metadata["general.alignment"] ?? 32);
    let end = 0n;
    theirs.tensorInfos.forEach((t, i) => {
      const o = ours.tensors[i];
      assert.equal(t.name, o.name, `tensor ${i} name`);
      assert.equal(t.dtype, TYPE_ID[o.type], `${t.name}: type`);
      assert.deepEqual(t.shape, o.shape, `${t.name}: shape`);
      assert.equal(t.offset, o.offset, `${t.name}: offset`);
      const [blockBytes, blockElems] = BLOCK[t.dtype];
      const elems = t.shape.reduce((a, b) => a * b, 1n);
      assert.equal(elems % BigInt(blockElems), 0n, `${t.name}: whole blocks`);
      const bytes = (elems / BigInt(blockElems)) * BigInt(blockBytes);
      assert.equal(bytes, o.bytes, `${t.name}: byte size`);
      assert.equal(t.offset % alignment, 0n, `${t.name}: alignment`);
      assert.ok(t.offset >= end, `${t.name}: overlaps the previous tensor`);
      end = t.offset + bytes;
      assert.ok(theirs.tensorDataOffset + end <= size, `${t.name}: data past the end of the file`);
    });
    return new Set(theirs.tensorInfos.map((t) => t.dtype));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("tiny preset, f32 weights", async () => {
  const types = await crossCheck("tiny", "f32");
  assert.ok(types.has(TYPE_ID.F32) && types.has(TYPE_ID.I32));
});

test("small preset, the published type mix (Q8_0, IQ2_XXS, Q2_K, F16)", async () => {
  const types = await crossCheck("small", "mixed");
  for (const t of ["Q8_0", "IQ2_XXS", "Q2_K", "F16", "F32", "I32"]) assert.ok(types.has(TYPE_ID[t]), `no ${t} tensor`);
});

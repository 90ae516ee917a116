// Reads the response bodies and SSE streams that api_output_sdk_test.cc wrote with the official
// client SDKs (openai, @anthropic-ai/sdk from tools/js) and checks that each SDK accepts them and
// reconstructs what dsv4 meant. The SDKs are given a fetch that returns the stored bytes, so no
// server is involved: this checks the shapes alone.
//
// Usage: node api_output_sdk_check.mjs CASE_DIR   (CASE_DIR/manifest.json lists the cases)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const modules = path.join(root, 'tools/js/node_modules');
const { default: OpenAI } = await import(pathToFileURL(path.join(modules, 'openai/index.mjs')));
const { default: Anthropic } = await import(
  pathToFileURL(path.join(modules, '@anthropic-ai/sdk/index.mjs')));

const dir = process.argv[2];
const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));

function fetchReturning(c) {
  const body = readFileSync(path.join(dir, c.file));
  const type = c.stream && c.status === 200 ? 'text/event-stream' : 'application/json';
  return async () => new Response(body, { status: c.status, headers: { 'content-type': type } });
}

// Every key of `expected` must be in `actual` with a matching value; arrays match element-wise
// and must have the same length.
function mismatch(expected, actual, where = '$') {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${where}: expected an array, got ${JSON.stringify(actual)}`;
    if (expected.length !== actual.length)
      return `${where}: expected ${expected.length} elements, got ${actual.length}: ${JSON.stringify(actual)}`;
    for (let i = 0; i < expected.length; i++) {
      const m = mismatch(expected[i], actual[i], `${where}[${i}]`);
      if (m) return m;
    }
    return null;
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object')
      return `${where}: expected an object, got ${JSON.stringify(actual)}`;
    for (const key of Object.keys(expected)) {
      const m = mismatch(expected[key], actual[key], `${where}.${key}`);
      if (m) return m;
    }
    return null;
  }
  return expected === actual ? null
                             : `${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

async function run(c) {
  const options = { apiKey: 'test', maxRetries: 0, fetch: fetchReturning(c) };
  const openai = new OpenAI({ ...options, baseURL: 'http://dsv4.invalid/v1' });
  const anthropic = new Anthropic({ ...options, baseURL: 'http://dsv4.invalid' });
  const model = 'deepseek-v4-flash';
  const messages = [{ role: 'user', content: 'hi' }];
  switch (`${c.api}${c.stream ? '_stream' : ''}`) {
    case 'chat':
      return openai.chat.completions.create({ model, messages });
    case 'chat_stream':
      return openai.chat.completions.stream({ model, messages }).finalChatCompletion();
    case 'completions':
      return openai.completions.create({ model, prompt: 'x' });
    case 'completions_stream': {
      const out = { text: '', finish_reason: null, usage: null };
      for await (const chunk of await openai.completions.create({ model, prompt: 'x', stream: true })) {
        if (chunk.usage) out.usage = chunk.usage;
        for (const choice of chunk.choices) {
          out.text += choice.text;
          if (choice.finish_reason) out.finish_reason = choice.finish_reason;
        }
      }
      return out;
    }
    case 'responses':
      return openai.responses.create({ model, input: 'hi' });
    case 'responses_stream':
      return openai.responses.stream({ model, input: 'hi' }).finalResponse();
    case 'messages':
      return anthropic.messages.create({ model, max_tokens: 16, messages });
    case 'messages_stream':
      return anthropic.messages.stream({ model, max_tokens: 16, messages }).finalMessage();
    default:
      throw new Error(`unknown case kind ${c.api}`);
  }
}

let failures = 0;
for (const c of manifest) {
  let problem = null;
  try {
    const result = await run(c);
    problem = c.error ? `expected an error, got ${JSON.stringify(result)}` : mismatch(c.expect, result);
  } catch (e) {
    if (!c.error) {
      problem = `threw ${e?.stack ?? e}`;
    } else {
      // The SDKs prefix the status to the message; the error type sits in the parsed body.
      const type = e.error?.error?.type ?? e.error?.type;
      if ((e.status ?? null) !== (c.error.status ?? null)) problem = `status ${e.status}, expected ${c.error.status}: ${e}`;
      else if (!String(e.message).includes(c.error.message)) problem = `message '${e.message}'`;
      else if (c.error.type && type !== c.error.type) problem = `type ${type}, expected ${c.error.type}`;
    }
  }
  if (problem) {
    failures++;
    console.log(`FAIL ${c.name}: ${problem}`);
  } else {
    console.log(`ok   ${c.name}`);
  }
}
process.exit(failures ? 1 : 0);

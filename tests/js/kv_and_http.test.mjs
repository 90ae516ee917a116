// The reuse ladder and the disk KV cache through the real binary and real restarts: a live hit,
// a miss, a disk hit after a SIGTERM restart, corrupted and truncated cache files (ignored with a
// warning, never loaded, the server keeps working); and raw HTTP: SSE framing, malformed JSON,
// wrong types, a huge body, an unknown model, a missing key, a disconnect in the middle of a
// stream.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { eventually, metric, startServer, tempDir } from './harness.mjs';

const SYSTEM = `You are a careful assistant. ${'Follow the house rules. '.repeat(40)}`;

async function chat(url, messages, extra = {}) {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'deepseek-v4-flash', messages, max_tokens: 4, thinking: false, temperature: 0, ...extra }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}
const conversation = (question) => [{ role: 'system', content: SYSTEM }, { role: 'user', content: question }];
const cached = (r) => r.usage.prompt_tokens_details.cached_tokens;

test('live hit, miss, disk hit after a restart, corrupt files ignored', async () => {
  const dir = tempDir('kv');
  const args = ['--kv-disk-dir', dir, '--kv-cache-min-tokens', '32'];
  let s = await startServer(args);
  const a = await chat(s.url, conversation('Question A'));
  assert.equal(cached(a), 0);                                   // cold
  assert.ok(fs.readdirSync(dir).some((f) => f.endsWith('.dsv4kv'))); // cold store at the chat anchor
  const again = await chat(s.url, conversation('Question A'));
  assert.equal(cached(again), again.usage.prompt_tokens);       // live hit
  const other = await chat(s.url, [{ role: 'user', content: 'Something unrelated' }]);
  assert.equal(cached(other), 0);                               // miss
  assert.equal(await s.stop(), 0);                              // stores the live session

  s = await startServer(args);
  const resumed = await chat(s.url, conversation('Question B'));
  assert.ok(cached(resumed) >= 32, JSON.stringify(resumed.usage)); // the shared system prompt from disk
  assert.match(s.stderr(), /disk hit/);
  assert.equal(await s.stop(), 0);

  // Damage every file: flip bytes in one half, truncate the other half.
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.dsv4kv'));
  assert.ok(files.length >= 2);
  files.forEach((f, i) => {
    const p = path.join(dir, f);
    const bytes = fs.readFileSync(p);
    if (i % 2 === 0) {
      bytes[bytes.length - 9] ^= 0xff;
      fs.writeFileSync(p, bytes);
    } else {
      fs.writeFileSync(p, bytes.subarray(0, Math.floor(bytes.length / 3)));
    }
  });
  fs.writeFileSync(path.join(dir, 'garbage.dsv4kv'), 'not a cache file');
  s = await startServer(args);
  const afterDamage = await chat(s.url, conversation('Question B'));
  assert.equal(cached(afterDamage), 0);
  assert.ok(s.alive());
  assert.match(s.stderr(), /warn/);
  assert.equal(await s.stop(), 0);
});

test('raw HTTP: SSE framing, bad input, limits, keys, and a disconnect mid-stream', async () => {
  const s = await startServer(['--api-key', 'k', '--max-body-mb', '1']);
  const auth = { 'content-type': 'application/json', authorization: 'Bearer k' };
  const post = (p, body, headers = auth, signal = undefined) => fetch(`${s.url}${p}`, { method: 'POST', headers, body, signal });

  // SSE: every frame ends with a blank line; Anthropic frames name their event.
  const sse = await post('/v1/messages', JSON.stringify({ model: 'x', max_tokens: 4, stream: true, messages: [{ role: 'user', content: 'Hi' }] }));
  assert.equal(sse.headers.get('content-type'), 'text/event-stream');
  const text = await sse.text();
  assert.ok(text.endsWith('\n\n'));
  for (const frame of text.slice(0, -2).split('\n\n')) {
    const [ev, data] = frame.split('\n');
    assert.match(ev, /^event: [a-z_]+$/);
    assert.equal(JSON.parse(data.replace(/^data: /, '')).type, ev.slice(7));
  }

  const bad = await post('/v1/chat/completions', '{"messages": [');
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error.message, /^invalid JSON request/);
  const wrongType = await post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'x' }], max_tokens: 'ten' }));
  assert.equal(wrongType.status, 400);
  assert.match((await wrongType.json()).error.message, /^max_tokens/);
  const huge = await post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(2 << 20) }] })).catch((e) => e);
  if (!(huge instanceof Error)) assert.equal(huge.status, 413); // or the server closed before reading it all
  const unknownModel = await fetch(`${s.url}/v1/models/gpt-5`, { headers: auth });
  assert.equal(unknownModel.status, 404);
  const noKey = await post('/v1/chat/completions', '{}', { 'content-type': 'application/json' });
  assert.equal(noKey.status, 401);
  const anthropicNoKey = await post('/v1/messages', '{}', { 'content-type': 'application/json', 'x-api-key': 'wrong' });
  assert.equal(anthropicNoKey.status, 401);
  assert.equal((await anthropicNoKey.json()).type, 'error');

  // A client that leaves in the middle of a stream stops its generation.
  const controller = new AbortController();
  const long = await post('/v1/chat/completions',
    JSON.stringify({ messages: [{ role: 'user', content: 'Tell a long story' }], max_tokens: 6000, stream: true, thinking: false }),
    auth, controller.signal);
  const reader = long.body.getReader();
  await reader.read();
  controller.abort();
  const headers = { authorization: 'Bearer k' };
  assert.ok(await eventually(async () => (await metric(s.url, 'dsv4_requests_cancelled_total', headers)) === 1));
  assert.ok(await eventually(async () => (await metric(s.url, 'dsv4_requests_running', headers)) === 0));
  assert.ok((await metric(s.url, 'dsv4_decode_tokens_total', headers)) < 3000);
  const next = await post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }));
  assert.equal(next.status, 200);
  assert.ok(s.alive());
  assert.equal(await s.stop(), 0);
});

// The official `@anthropic-ai/sdk` npm client against `dsv4 serve` (tiny synthetic model):
// messages streaming (the SDK's MessageStream rebuilds the message from the events and rejects
// malformed ones) and not, thinking on and off, effort, tools and tool results, stop sequences,
// usage with cache reads, count_tokens, and errors as typed exceptions.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { require, startServer } from './harness.mjs';

const Anthropic = require('@anthropic-ai/sdk').default;

let server;
let client;
before(async () => {
  server = await startServer(['--api-key', 'k-test']);
  client = new Anthropic({ baseURL: server.url, apiKey: 'k-test', maxRetries: 0 });
});
after(async () => {
  assert.equal(await server.stop(), 0);
});

const STOPS = ['end_turn', 'max_tokens', 'tool_use', 'stop_sequence'];
const user = (content) => ({ role: 'user', content });

test('messages, not streaming, thinking disabled; usage reports cache reads on a repeat', async () => {
  const req = { model: 'claude-any', max_tokens: 8, temperature: 0, thinking: { type: 'disabled' }, messages: [user('Hello')] };
  const m = await client.messages.create(req);
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, 'claude-any');
  assert.ok(STOPS.includes(m.stop_reason));
  assert.ok(m.content.every((b) => b.type !== 'thinking'));
  assert.ok(m.content.some((b) => b.type === 'text'));
  assert.equal(m.usage.input_tokens, 0);
  assert.ok(m.usage.cache_creation_input_tokens > 0);
  const again = await client.messages.create(req);
  assert.ok(again.usage.cache_read_input_tokens > 0);
  assert.equal(again.usage.cache_creation_input_tokens, 0);
});

test('streaming with thinking enabled and effort: the SDK accepts every event', async () => {
  const stream = client.messages.stream({
    model: 'deepseek-v4-flash', max_tokens: 12, system: 'Be brief.',
    thinking: { type: 'enabled', budget_tokens: 1024 }, output_config: { effort: 'high' },
    messages: [user('Why is the sky blue?')],
  });
  const events = [];
  stream.on('streamEvent', (e) => events.push(e.type));
  const m = await stream.finalMessage();
  assert.equal(events[0], 'message_start');
  assert.equal(events.at(-1), 'message_stop');
  assert.ok(STOPS.includes(m.stop_reason));
  // Thinking first when there is any, and never an empty message.
  assert.ok(m.content.length > 0);
  const kinds = m.content.map((b) => b.type);
  if (kinds.includes('thinking')) {
    assert.equal(kinds[0], 'thinking');
    assert.equal(m.content[0].signature, m.id);
  }
});

test('tools and a tool_result follow-up', async () => {
  const tools = [{
    name: 'Read', description: 'Read a file',
    input_schema: { type: 'object', properties: { file_path: { type: 'string' } }, required: ['file_path'] },
  }];
  const first = await client.messages.stream({
    model: 'deepseek-v4-flash', max_tokens: 12, tools, thinking: { type: 'disabled' }, messages: [user('Read notes.txt')],
  }).finalMessage();
  for (const b of first.content) if (b.type === 'tool_use') assert.match(b.id, /^toolu_[0-9a-f]{32}$/);
  const follow = await client.messages.create({
    model: 'deepseek-v4-flash', max_tokens: 6, tools,
    messages: [
      user('Read notes.txt'),
      { role: 'assistant', content: [{ type: 'thinking', thinking: 'I should read it.', signature: 'x' },
        { type: 'tool_use', id: 'toolu_1', name: 'Read', input: { file_path: 'notes.txt' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'The code is 42.' }] },
    ],
  });
  assert.ok(STOPS.includes(follow.stop_reason));
  const none = await client.messages.create({
    model: 'deepseek-v4-flash', max_tokens: 4, tools, tool_choice: { type: 'none' }, messages: [user('Hi')],
  });
  assert.ok(none.content.every((b) => b.type !== 'tool_use'));
});

test('stop_sequences end the text with stop_reason stop_sequence', async () => {
  const req = { model: 'x', max_tokens: 16, temperature: 0, thinking: { type: 'disabled' }, messages: [user('List things')] };
  const base = await client.messages.create(req);
  const text = base.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
  if (text.length < 4) return; // the model ended at once: nothing to cut
  const stop = text.slice(2, 4);
  const cut = await client.messages.create({ ...req, stop_sequences: [stop] });
  assert.equal(cut.stop_reason, 'stop_sequence');
  assert.equal(cut.stop_sequence, stop);
  assert.equal(cut.content.filter((b) => b.type === 'text').map((b) => b.text).join(''), text.slice(0, text.indexOf(stop)));
});

test('count_tokens', async () => {
  const r = await client.messages.countTokens({ model: 'x', messages: [user('How many tokens is this?')] });
  assert.ok(r.input_tokens > 5);
});

test('errors arrive as the SDK exceptions', async () => {
  const wrong = new Anthropic({ baseURL: server.url, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(wrong.messages.create({ model: 'x', max_tokens: 4, messages: [user('Hi')] }), Anthropic.AuthenticationError);
  await assert.rejects(
    client.messages.create({ model: 'x', max_tokens: 'four', messages: [user('Hi')] }),
    (e) => e instanceof Anthropic.BadRequestError && e.error?.type === 'error',
  );
  await assert.rejects(
    client.messages.create({ model: 'x', max_tokens: 4, messages: [user('y'.repeat(40000))] }),
    (e) => e instanceof Anthropic.BadRequestError && e.error?.error?.n_ctx === 8192,
  );
});

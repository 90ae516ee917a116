// The official `openai` npm client against `dsv4 serve` (tiny synthetic model): chat completions
// streaming and not, thinking on and off, reasoning effort, tools and a tool-call history, stop
// sequences, usage with cached tokens, the Responses API, legacy completions, and errors as the
// SDK's typed exceptions.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { require, startServer } from './harness.mjs';

const { OpenAI } = require('openai');

let server;
let client;
before(async () => {
  server = await startServer(['--api-key', 'k-test']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'k-test', maxRetries: 0 });
});
after(async () => {
  assert.equal(await server.stop(), 0);
});

const user = (content) => ({ role: 'user', content });
const FINISHES = ['stop', 'length', 'tool_calls'];

test('models', async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  assert.equal(list.data[0].id, 'deepseek-v4-flash');
  const m = await client.models.retrieve('deepseek-v4-flash');
  assert.equal(m.object, 'model');
  await assert.rejects(client.models.retrieve('no-such-model'), OpenAI.NotFoundError);
});

test('chat, not streaming, with usage and cached tokens on a repeat', async () => {
  const req = { model: 'deepseek-v4-flash', messages: [user('Hello!')], max_tokens: 8, thinking: false, temperature: 0 };
  const r = await client.chat.completions.create(req);
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-\d+$/);
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(FINISHES.includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 3);
  assert.ok(r.usage.completion_tokens <= 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  const again = await client.chat.completions.create(req);
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, again.usage.prompt_tokens);
  assert.equal(again.choices[0].message.content, r.choices[0].message.content); // greedy
});

test('chat streaming with include_usage, thinking off', async () => {
  const stream = await client.chat.completions.create({
    model: 'deepseek-v4-flash', messages: [user('Count to three')], max_tokens: 10, stream: true,
    stream_options: { include_usage: true }, thinking: { type: 'disabled' },
  });
  let role = null; let text = ''; let finish = null; let usage = null; let reasoning = '';
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) text += c.delta.content;
      if (c.delta.reasoning_content) reasoning += c.delta.reasoning_content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(reasoning, '');
  assert.ok(FINISHES.includes(finish));
  assert.ok(usage && usage.prompt_tokens > 0 && usage.completion_tokens <= 10);
  assert.equal(typeof text, 'string');
});

test('thinking on: the text before </think> streams as reasoning_content', async () => {
  const stream = await client.chat.completions.create({
    model: 'deepseek-v4-flash', messages: [user('Think about it')], max_tokens: 12, stream: true, seed: 3,
  });
  let reasoning = ''; let content = ''; let finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (c.delta.reasoning_content) reasoning += c.delta.reasoning_content;
      if (c.delta.content) content += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(FINISHES.includes(finish));
  // A random model rarely writes </think>: what it wrote is reasoning.
  assert.ok(reasoning.length > 0 || content.length > 0 || finish === 'stop');
  const whole = await client.chat.completions.create({
    model: 'deepseek-v4-flash', messages: [user('Think about it')], max_tokens: 12, seed: 3,
  });
  assert.equal(typeof whole.choices[0].message.content, 'string');
  assert.ok(whole.usage.completion_tokens_details.reasoning_tokens <= whole.usage.completion_tokens);
});

test('reasoning_effort values are accepted, unknown ones are a 400', async () => {
  for (const effort of ['none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max']) {
    const r = await client.chat.completions.create({
      model: 'deepseek-v4-flash', messages: [user('Hi')], max_tokens: 2, reasoning_effort: effort,
    });
    assert.ok(FINISHES.includes(r.choices[0].finish_reason), effort);
  }
  await assert.rejects(
    client.chat.completions.create({ model: 'deepseek-v4-flash', messages: [user('Hi')], reasoning_effort: 'extreme' }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400,
  );
});

const tools = [{
  type: 'function',
  function: {
    name: 'read_file', description: 'Read a file',
    parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
  },
}];

test('tools, and a follow-up carrying the tool call and its result', async () => {
  const first = await client.chat.completions.create({
    model: 'deepseek-v4-flash', messages: [user('Read notes.txt')], tools, max_tokens: 12, thinking: false, stream: true,
  });
  let finish = null;
  for await (const chunk of first) {
    for (const c of chunk.choices) {
      for (const call of c.delta.tool_calls ?? []) if (call.id) assert.match(call.id, /^call_[0-9a-f]{32}$/);
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(FINISHES.includes(finish));
  const follow = await client.chat.completions.create({
    model: 'deepseek-v4-flash', tools, max_tokens: 6, thinking: false,
    messages: [
      user('Read notes.txt'),
      { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'read_file', arguments: '{"path":"notes.txt"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'The code is 42.' },
    ],
  });
  assert.ok(FINISHES.includes(follow.choices[0].finish_reason));
  for (const call of follow.choices[0].message.tool_calls ?? []) JSON.parse(call.function.arguments);
  const none = await client.chat.completions.create({
    model: 'deepseek-v4-flash', messages: [user('Hi')], tools, tool_choice: 'none', max_tokens: 4, thinking: false,
  });
  assert.equal(none.choices[0].message.tool_calls, undefined);
});

test('stop sequences cut the text (legacy completions, greedy)', async () => {
  const base = await client.completions.create({ model: 'deepseek-v4-flash', prompt: 'The list:', max_tokens: 16, temperature: 0 });
  const text = base.choices[0].text;
  assert.equal(base.object, 'text_completion');
  if (text.length < 4) return; // the model ended at once: nothing to cut
  const stop = text.slice(2, 4);
  const cut = await client.completions.create({ model: 'deepseek-v4-flash', prompt: 'The list:', max_tokens: 16, temperature: 0, stop: [stop] });
  assert.equal(cut.choices[0].text, text.slice(0, text.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, 'stop');
  const chat = await client.chat.completions.create({
    model: 'deepseek-v4-flash', messages: [user('Go')], max_tokens: 16, temperature: 0, thinking: false, stop: 'zzzz-never',
  });
  assert.ok(FINISHES.includes(chat.choices[0].finish_reason));
});

test('responses API, streaming and not', async () => {
  const r = await client.responses.create({ model: 'deepseek-v4-flash', input: 'Hello', max_output_tokens: 8, reasoning: { effort: 'none' } });
  assert.equal(r.object, 'response');
  assert.match(r.id, /^resp_[0-9a-f]{24}$/);
  assert.ok(['completed', 'incomplete'].includes(r.status));
  assert.equal(typeof r.output_text, 'string');
  assert.ok(r.usage.input_tokens > 0);
  const stream = await client.responses.create({
    model: 'deepseek-v4-flash', input: [{ role: 'user', content: 'Hi there' }], max_output_tokens: 8, stream: true,
    reasoning: { effort: 'high', summary: 'auto' }, tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: {} } }],
  });
  const types = [];
  for await (const event of stream) types.push(event.type);
  assert.equal(types[0], 'response.created');
  assert.ok(['response.completed', 'response.incomplete'].includes(types.at(-1)), types.at(-1));
  await assert.rejects(
    client.responses.create({ model: 'deepseek-v4-flash', input: 'x', previous_response_id: 'resp_0' }),
    OpenAI.BadRequestError,
  );
});

test('errors arrive as the SDK exceptions', async () => {
  const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'not-the-key', maxRetries: 0 });
  await assert.rejects(wrong.chat.completions.create({ model: 'x', messages: [user('Hi')] }), OpenAI.AuthenticationError);
  await assert.rejects(
    client.chat.completions.create({ model: 'x', messages: [user('Hi')], temperature: 'hot' }),
    (e) => e instanceof OpenAI.BadRequestError && /temperature/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'x', messages: [user('x'.repeat(40000))] }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded',
  );
});

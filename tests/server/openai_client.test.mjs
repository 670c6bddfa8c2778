// `nextn serve` end to end with the official OpenAI client (npm "openai", pinned in package.json)
// and raw HTTP for what a client library would never send. Run by the README's test command
// (scripts/test.sh: node --test tests/server/).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { spawnSync } from 'node:child_process';
import { startServer, generateTokenIds, metrics, nextn, tinyModel } from './support.mjs';

let server;      // plain decoding, max batch 4
let client;
before(async () => {
  server = await startServer(['--max-batch', '4', '--max-queue', '16']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => { assert.equal(await server.stop(), 0); });

const PROMPTS = ['def main():', 'import os\n', 'class Parser:', 'return self.', 'for key in ', '"""JSON'];

async function greedy(prompt, max_tokens = 12, extra = {}) {
  return client.completions.create({ model: 'tiny', prompt, max_tokens, temperature: 0, return_token_ids: true, ...extra });
}

async function streamText(request) {
  let text = '';
  const ids = [];
  let finish = null, usage = null;
  for await (const chunk of await request) {
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    text += choice.text ?? choice.delta?.content ?? '';
    if (choice.token_ids) ids.push(...choice.token_ids);
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  return { text, ids, finish, usage };
}

test('greedy completions are exactly what nextn generate produces', async () => {
  for (const prompt of PROMPTS.slice(0, 3)) {
    const r = await greedy(prompt, 16);
    assert.deepEqual(r.choices[0].token_ids, generateTokenIds(prompt, 16, ['--greedy']), prompt);
    assert.equal(r.object, 'text_completion');
    assert.ok(['length', 'stop'].includes(r.choices[0].finish_reason));
    assert.equal(r.usage.completion_tokens, r.choices[0].token_ids.length);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  }
});

test('a stream delivers the same text and tokens as the whole response', async () => {
  const whole = await greedy('def main():', 20);
  const streamed = await streamText(client.completions.create({
    model: 'tiny', prompt: 'def main():', max_tokens: 20, temperature: 0, stream: true, return_token_ids: true,
    stream_options: { include_usage: true } }));
  assert.equal(streamed.text, whole.choices[0].text);
  assert.deepEqual(streamed.ids, whole.choices[0].token_ids);
  assert.equal(streamed.finish, whole.choices[0].finish_reason);
  assert.equal(streamed.usage.completion_tokens, whole.usage.completion_tokens);
});

test('chat completions, whole and streamed, with the plain template', async () => {
  const messages = [{ role: 'system', content: 'You write Python.' }, { role: 'user', content: 'def parse(' }];
  const whole = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 10, temperature: 0 });
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices[0].message.role, 'assistant');
  assert.equal(typeof whole.choices[0].message.content, 'string');
  let role = null, content = '', finish = null;
  for await (const chunk of await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 10,
                                                                   temperature: 0, stream: true })) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    const delta = chunk.choices[0].delta;
    if (delta.role) role = delta.role;
    content += delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(content, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
});

test('stop strings end the text before them', async () => {
  const full = (await greedy('def main():', 24)).choices[0].text;
  const stop = full.slice(6, 9);  // a piece from the middle of the greedy text
  assert.ok(stop.length > 0);
  const r = await greedy('def main():', 24, { stop: [stop, 'never appears'] });
  assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)));
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('sampling: a request without a seed draws anew each time, one with a seed repeats', async () => {
  const sample = async (extra) => (await client.completions.create({
    model: 'tiny', prompt: 'def main():', max_tokens: 24, temperature: 1.5, return_token_ids: true,
    ...extra })).choices[0].token_ids;
  const unseeded = [await sample({}), await sample({}), await sample({})];
  // Three draws of 24 tokens at temperature 1.5 agreeing would be a fixed seed, not chance.
  assert.ok(new Set(unseeded.map((ids) => ids.join(','))).size > 1, JSON.stringify(unseeded));
  assert.deepEqual(await sample({ seed: 11 }), await sample({ seed: 11 }));
  // ... and what `nextn generate --seed` draws.
  assert.deepEqual(await sample({ seed: 11 }),
    generateTokenIds('def main():', 24, ['--temperature', '1.5', '--seed', '11']));
});

test('log-probabilities of completions and chat', async () => {
  const r = await greedy('import os\n', 5, { logprobs: 3 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 5);
  assert.equal(lp.token_logprobs.length, 5);
  for (let i = 0; i < 5; ++i) {
    assert.ok(lp.token_logprobs[i] <= 0);
    const top = Object.values(lp.top_logprobs[i]);
    assert.ok(top.length >= 1 && top.length <= 3);
    // Greedy: the chosen token is the most likely one.
    assert.ok(Math.abs(Math.max(...top) - lp.token_logprobs[i]) < 1e-9);
  }
  // Streamed, each token's chunk carries its entry: the same as the whole response's.
  const streamed = { tokens: [], token_logprobs: [] };
  for await (const chunk of await client.completions.create({ model: 'tiny', prompt: 'import os\n', max_tokens: 5,
                                                             temperature: 0, logprobs: 3, stream: true })) {
    const l = chunk.choices[0]?.logprobs;
    if (l) { streamed.tokens.push(...l.tokens); streamed.token_logprobs.push(...l.token_logprobs); }
  }
  assert.deepEqual(streamed.tokens, lp.tokens);
  assert.deepEqual(streamed.token_logprobs, lp.token_logprobs);
  // text_offset: where each token's text starts in the response's text, in characters: with echo
  // the prompt's tokens come first (scored), then the generated ones; streamed chunks carry the
  // same absolute offsets.
  const echoed = await greedy('é “x”\n', 12, { logprobs: 0, echo: true });
  const e = echoed.choices[0].logprobs;
  const chars = [...echoed.choices[0].text];
  assert.equal(e.tokens.length, echoed.usage.prompt_tokens - 1 + 12);  // a text prompt's EOS is not shown
  assert.ok(e.token_logprobs.every((l) => l <= 0));
  let at = 0;
  for (let i = 0; i < e.tokens.length; ++i) {
    assert.equal(e.text_offset[i], at, `token ${i}`);
    if (!e.tokens[i].includes('\ufffd')) {
      assert.equal(chars.slice(at, at + [...e.tokens[i]].length).join(''), e.tokens[i], `token ${i}`);
      at += [...e.tokens[i]].length;
    } else {
      at = e.text_offset[i + 1] ?? at;  // a piece of a character: the next token says where the text went on
    }
  }
  const streamedOffsets = [];
  for await (const chunk of await client.completions.create({ model: 'tiny', prompt: 'é “x”\n', max_tokens: 12,
                                                             temperature: 0, logprobs: 0, echo: true, stream: true })) {
    streamedOffsets.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
  }
  assert.deepEqual(streamedOffsets, e.text_offset);
  // A stop string that never matches but whose start is common (' ' here) makes the filter hold
  // text back until it can rule the match out: the offsets must not move.
  const held = await greedy('é “x”\n', 12, { logprobs: 0, echo: true, stop: [' \u0001'] });
  assert.equal(held.choices[0].text, echoed.choices[0].text);
  assert.deepEqual(held.choices[0].logprobs.text_offset, e.text_offset);
  const chat = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }],
                                                     max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2 });
  const content = chat.choices[0].logprobs.content;
  assert.equal(content.length, 3);
  assert.equal(content[0].top_logprobs.length, 2);
  assert.ok(Array.isArray(content[0].bytes));
});

// lm-evaluation-harness's loglikelihood requests (its local-completions model): a batch of one
// token-id prompt, echo, logprobs 1, max_tokens 1 (0 in older versions); it sums the token
// log-probabilities of the continuation and calls it greedy when each is its position's top.
test('scoring a prompt gives what generating it gave', async () => {
  const prompt = [7, 300, 41, 100, 5];
  const generated = await client.completions.create({ model: 'tiny', prompt, max_tokens: 6, temperature: 0,
                                                      logprobs: 2, return_token_ids: true });
  const g = generated.choices[0];
  const continuation = g.token_ids;
  for (const max_tokens of [0, 1]) {
    const scored = await client.completions.create({ model: 'tiny', prompt: [[...prompt, ...continuation]], max_tokens,
                                                     temperature: 0, logprobs: 2, echo: true });
    const c = scored.choices[0];
    const lp = c.logprobs;
    assert.equal(lp.tokens.length, prompt.length + continuation.length + max_tokens);
    assert.equal(lp.token_logprobs[0], null);  // nothing precedes the first token
    assert.equal(lp.top_logprobs[0], null);
    assert.equal(lp.text_offset[0], 0);
    assert.ok(c.text.endsWith(g.text + (max_tokens ? lp.tokens.at(-1) : '')), JSON.stringify(c.text));
    assert.equal(scored.usage.completion_tokens, max_tokens);
    assert.equal(c.finish_reason, 'length');
    // The continuation's entries are the generated tokens' own, to the rounding of a longer head product.
    const at = prompt.length;
    for (let i = 0; i < continuation.length; ++i) {
      assert.ok(Math.abs(lp.token_logprobs[at + i] - g.logprobs.token_logprobs[i]) < 1e-4,
        `token ${i}: ${lp.token_logprobs[at + i]} vs ${g.logprobs.token_logprobs[i]}`);
      assert.deepEqual(Object.keys(lp.top_logprobs[at + i]), Object.keys(g.logprobs.top_logprobs[i]));
      // Greedy tokens: each is its position's most likely, as the harness checks it.
      assert.equal(lp.token_logprobs[at + i], Math.max(...Object.values(lp.top_logprobs[at + i])));
    }
  }
  // Streamed, the first chunk carries the echo with the prompt's entries; all chunks together are
  // the whole response's.
  const whole = await client.completions.create({ model: 'tiny', prompt: [[...prompt, ...continuation]], max_tokens: 2,
                                                  temperature: 0, logprobs: 2, echo: true });
  const streamed = { text: '', tokens: [], token_logprobs: [], text_offset: [] };
  for await (const chunk of await client.completions.create({ model: 'tiny', prompt: [[...prompt, ...continuation]],
                                                             max_tokens: 2, temperature: 0, logprobs: 2, echo: true,
                                                             stream: true })) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    streamed.text += choice.text;
    for (const key of ['tokens', 'token_logprobs', 'text_offset']) streamed[key].push(...(choice.logprobs?.[key] ?? []));
  }
  assert.equal(streamed.text, whole.choices[0].text);
  for (const key of ['tokens', 'token_logprobs', 'text_offset']) {
    assert.deepEqual(streamed[key], whole.choices[0].logprobs[key], key);
  }
  // Only echo asks for no tokens.
  await assert.rejects(client.completions.create({ model: 'tiny', prompt, max_tokens: 0 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'max_tokens');
});

test('a batch of prompts gets a choice each, as each alone', async () => {
  const prompts = ['def main():', 'import os\n', [7, 300, 41]];
  const r = await client.completions.create({ model: 'tiny', prompt: prompts, max_tokens: 8, temperature: 0,
                                              return_token_ids: true });
  assert.equal(r.choices.length, 3);
  let completion = 0;
  for (let i = 0; i < prompts.length; ++i) {
    const c = r.choices.find((x) => x.index === i);
    const alone = await greedy(prompts[i], 8);
    assert.deepEqual(c.token_ids, alone.choices[0].token_ids, `prompt ${i}`);
    assert.equal(c.text, alone.choices[0].text);
    completion += alone.usage.completion_tokens;
  }
  assert.equal(r.usage.completion_tokens, completion);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  // lm-evaluation-harness with --batch_size 2: token-id prompts, echo, logprobs, max_tokens 1.
  const scored = await client.completions.create({ model: 'tiny', prompt: [[7, 300, 41, 100], [5, 6]], max_tokens: 1,
                                                   temperature: 0, logprobs: 1, echo: true });
  assert.deepEqual(scored.choices.map((c) => c.logprobs.tokens.length), [5, 3]);
  // More prompts than places and queue together (4 + 16): never servable, so a 400 that says so,
  // not a 503 to retry.
  await assert.rejects(client.completions.create({ model: 'tiny', prompt: Array(40).fill('x'), max_tokens: 4 }),
    (e) => e instanceof OpenAI.BadRequestError && e.code === 'too_many_choices' && e.param === 'prompt' &&
           /40 choices \(40 prompts x n = 1\) exceed the 20 requests/.test(e.message));
  // A batch that fits an idle server but not beside two running streams (240 tokens each, held
  // open): 18 of its 20 are queued, the 19th is refused, so the whole batch is refused (503) and
  // the 18 leave; every place is free once the streams go.
  const { port } = new URL(server.url);
  const holders = await Promise.all([0, 1].map(() => new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(post('/v1/completions',
      JSON.stringify({ model: 'tiny', prompt: 'def main():', max_tokens: 240, temperature: 0, stream: true,
                      ignore_eos: true }))));
    socket.on('data', (d) => { if (d.toString().includes('data: ')) resolve(socket); });
    socket.on('error', reject);
  })));
  await assert.rejects(client.completions.create({ model: 'tiny', prompt: Array(20).fill('x'), max_tokens: 4 }),
    (e) => e instanceof OpenAI.InternalServerError && e.status === 503 && e.code === 'server_busy');
  for (const socket of holders) socket.destroy();
  let m = await metrics(server.url);
  for (let i = 0; i < 100 && m.nextn_requests_running + m.nextn_requests_queued > 0; ++i) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    m = await metrics(server.url);
  }
  assert.equal(m.nextn_requests_running + m.nextn_requests_queued, 0, 'the refused batch\'s accepted part was dropped');
  assert.deepEqual((await greedy('def main():', 8)).choices[0].token_ids, r.choices[0].token_ids);
  // Streamed: chunks name their choice; each choice's text and finish_reason are the whole
  // response's, and the usage chunk sums them.
  const streamed = new Map();
  const ids = new Set();
  let usage = null;
  for await (const chunk of await client.completions.create({ model: 'tiny', prompt: prompts, max_tokens: 8,
                                                             temperature: 0, stream: true, return_token_ids: true,
                                                             stream_options: { include_usage: true } })) {
    if (chunk.usage) usage = chunk.usage;
    ids.add(chunk.id);
    for (const c of chunk.choices) {
      const s = streamed.get(c.index) ?? { text: '', ids: [], finish: null };
      s.text += c.text;
      if (c.token_ids) s.ids.push(...c.token_ids);
      if (c.finish_reason) s.finish = c.finish_reason;
      streamed.set(c.index, s);
    }
  }
  assert.deepEqual([...streamed.keys()].sort(), [0, 1, 2]);
  for (const c of r.choices) {
    assert.equal(streamed.get(c.index).text, c.text, `choice ${c.index}`);
    assert.deepEqual(streamed.get(c.index).ids, c.token_ids);
    assert.equal(streamed.get(c.index).finish, c.finish_reason);
  }
  assert.equal(usage.completion_tokens, r.usage.completion_tokens);
  assert.equal(ids.size, 1, 'one response, one id');
});

test('n choices: each what n = 1 gives with its seed (seed + j), chat and completions, whole and streamed', async () => {
  const request = { model: 'tiny', prompt: 'def main():', max_tokens: 10, temperature: 1.5, seed: 21,
                    return_token_ids: true };
  const r = await client.completions.create({ ...request, n: 3 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  for (const c of r.choices) {
    const alone = await client.completions.create({ ...request, seed: 21 + c.index });
    assert.deepEqual(c.token_ids, alone.choices[0].token_ids, `choice ${c.index}`);
    assert.equal(c.text, alone.choices[0].text);
  }
  assert.ok(new Set(r.choices.map((c) => c.token_ids.join(','))).size > 1, 'three samples at 1.5 all equal');
  const promptTokens = (await client.completions.create({ ...request })).usage.prompt_tokens;
  assert.equal(r.usage.prompt_tokens, promptTokens, 'the prompt counts once for its n choices');
  assert.equal(r.usage.completion_tokens, r.choices.reduce((sum, c) => sum + c.token_ids.length, 0));
  // Two prompts, n = 2: choices numbered prompt by prompt.
  const batch = await client.completions.create({ ...request, prompt: ['def main():', [7, 300, 41]], n: 2 });
  assert.deepEqual(batch.choices.map((c) => c.index).sort(), [0, 1, 2, 3]);
  for (const [index, seed] of [[2, 21], [3, 22]]) {  // the second prompt's choices j = 0, 1: seeds 21 + j
    const alone = await client.completions.create({ ...request, prompt: [7, 300, 41], seed });
    assert.deepEqual(batch.choices.find((c) => c.index === index).token_ids, alone.choices[0].token_ids, `choice ${index}`);
  }
  assert.equal(batch.usage.prompt_tokens, promptTokens + 3);
  assert.equal(batch.usage.completion_tokens, batch.choices.reduce((sum, c) => sum + c.token_ids.length, 0));
  // Chat, streamed: each choice starts with its role and ends with its finish_reason; the texts are
  // the whole response's.
  const chat = { model: 'tiny', messages: [{ role: 'user', content: 'def' }], max_tokens: 8, temperature: 1.2, seed: 4,
                 n: 2 };
  const whole = await client.chat.completions.create(chat);
  assert.equal(whole.choices.length, 2);
  const streamed = new Map();
  for await (const chunk of await client.chat.completions.create({ ...chat, stream: true })) {
    for (const c of chunk.choices) {
      const s = streamed.get(c.index) ?? { roles: 0, text: '', finish: null };
      if (c.delta.role) s.roles += 1;
      assert.ok(s.roles === 1, `choice ${c.index}: a chunk before its role chunk`);
      s.text += c.delta.content ?? '';
      if (c.finish_reason) s.finish = c.finish_reason;
      streamed.set(c.index, s);
    }
  }
  for (const c of whole.choices) {
    const s = streamed.get(c.index);
    assert.equal(s.roles, 1, `choice ${c.index}`);
    assert.equal(s.text, c.message.content);
    assert.equal(s.finish, c.finish_reason);
  }
  // Greedy: n copies of the one greedy answer.
  const greedyTwice = await greedy('import os\n', 8, { n: 2 });
  assert.deepEqual(greedyTwice.choices[1].token_ids, greedyTwice.choices[0].token_ids);
  await assert.rejects(greedy('x', 4, { n: 129 }), (e) => e instanceof OpenAI.BadRequestError && e.param === 'n');
  await assert.rejects(greedy('x', 4, { n: 2, best_of: 3 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'best_of');
});

test('penalties and logit_bias: what nextn generate gives with the same options', async () => {
  const prompt = 'def main():';
  const plain = (await greedy(prompt, 24)).choices[0].token_ids;
  const penalised = (await greedy(prompt, 24, { frequency_penalty: 2, presence_penalty: 0.5 })).choices[0].token_ids;
  assert.deepEqual(penalised,
    generateTokenIds(prompt, 24, ['--greedy', '--frequency-penalty', '2', '--presence-penalty', '0.5']));
  assert.notDeepEqual(penalised, plain);
  // A bias of 100 makes a token the only choice; -100 rules one out.
  assert.deepEqual((await greedy(prompt, 5, { logit_bias: { 100: 100 } })).choices[0].token_ids, [100, 100, 100, 100, 100]);
  const banned = (await greedy(prompt, 12, { logit_bias: { [plain[0]]: -100 } })).choices[0].token_ids;
  assert.ok(!banned.includes(plain[0]), JSON.stringify(banned));
  assert.deepEqual(banned, generateTokenIds(prompt, 12, ['--greedy', '--logit-bias', `${plain[0]}=-100`]));
  await assert.rejects(greedy(prompt, 3, { logit_bias: { 99999: 1 } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'logit_bias');
  await assert.rejects(greedy(prompt, 3, { presence_penalty: 3 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'presence_penalty');
});

test('errors come back as the client\'s exception types', async () => {
  await assert.rejects(greedy('x', 4, { temperature: 5 }), (e) => e instanceof OpenAI.BadRequestError &&
    e.status === 400 && e.error?.param === 'temperature');
  await assert.rejects(greedy('x', 4, { n: 0 }), OpenAI.BadRequestError);
  await assert.rejects(greedy('x', 0), OpenAI.BadRequestError);
  await assert.rejects(greedy('x', 100000), (e) => e instanceof OpenAI.BadRequestError &&
    e.code === 'context_length_exceeded');
  await assert.rejects(greedy('word '.repeat(400), 4), (e) => e instanceof OpenAI.BadRequestError &&
    e.code === 'context_length_exceeded');
  await assert.rejects(client.completions.create({ model: 'gpt-4', prompt: 'x', max_tokens: 2 }), OpenAI.NotFoundError);
  await assert.rejects(greedy('', 4), OpenAI.BadRequestError);
});

test('concurrent streams each produce their single-request output', async () => {
  const alone = [];
  for (const prompt of PROMPTS) alone.push((await greedy(prompt, 16)).choices[0].token_ids);
  const together = await Promise.all(PROMPTS.map((prompt) => streamText(client.completions.create({
    model: 'tiny', prompt, max_tokens: 16, temperature: 0, stream: true, return_token_ids: true }))));
  together.forEach((r, i) => assert.deepEqual(r.ids, alone[i], PROMPTS[i]));
  const m = await metrics(server.url);
  assert.ok(m['nextn_requests_total{endpoint="completions",status="200"}'] >= 12);
});

// Raw HTTP/1.1 over a socket: bytes no client library would send.
function rawRequest(url, bytes) {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    // Written without half-closing: a peer that shuts its side down counts as gone.
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(bytes));
    let data = '';
    socket.on('data', (d) => { data += d; });
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}
function post(path, body, headers = '') {
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n` +
                                    `Content-Type: application/json\r\n${headers}Content-Length: ${payload.length}\r\n\r\n`), payload]);
}
function statusOf(response) { return Number(response.split(' ')[1]); }
function errorOf(response) { return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)).error; }

test('raw HTTP: invalid UTF-8, malformed JSON, wrong types, oversized bodies, unknown fields', async () => {
  const badUtf8 = Buffer.concat([Buffer.from('{"model":"tiny","prompt":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
  let r = await rawRequest(server.url, post('/v1/completions', badUtf8));
  assert.equal(statusOf(r), 400);
  assert.equal(errorOf(r).code, 'invalid_json');
  r = await rawRequest(server.url, post('/v1/completions', '{"model": "tiny", "prompt": '));
  assert.equal(statusOf(r), 400);
  r = await rawRequest(server.url, post('/v1/completions', '{"model":"tiny","prompt":"x","max_tokens":"5"}'));
  assert.equal(statusOf(r), 400);
  assert.equal(errorOf(r).param, 'max_tokens');
  r = await rawRequest(server.url, post('/v1/completions', '{"model":"tiny","prompt":["a",7]}'));
  assert.equal(statusOf(r), 400);
  assert.equal(errorOf(r).param, 'prompt');
  r = await rawRequest(server.url, post('/v1/chat/completions', '{"model":"tiny","messages":[]}'));
  assert.equal(statusOf(r), 400);
  r = await rawRequest(server.url, post('/v1/completions', `{"model":"tiny","prompt":"${'a'.repeat(2 << 20)}"}`));
  assert.equal(statusOf(r), 413);
  assert.equal(errorOf(r).type, 'invalid_request_error');
  r = await rawRequest(server.url, post('/v1/completions',
    '{"model":"tiny","prompt":"x","max_tokens":2,"temperature":0,"frequency_penalty":0,"user":"u","some_future_field":{}}'));
  assert.equal(statusOf(r), 200);
  r = await rawRequest(server.url, 'GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(r), 404);
  assert.ok(errorOf(r).message.includes('/v1/nothing'));
  // A known path with the wrong method: 405 naming the method to use.
  r = await rawRequest(server.url, 'GET /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(r), 405);
  assert.match(r, /\r\nAllow: POST\r\n/);
  r = await rawRequest(server.url, post('/v1/models', '{}'));
  assert.equal(statusOf(r), 405);
  assert.ok(errorOf(r).message.includes('use GET'));
  r = await rawRequest(server.url, 'DELETE /v1/models/tiny HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(r), 405);
  assert.match(r, /\r\nAllow: GET\r\n/);
  // curl -d's default type caps the body at httplib's form limit: the error says what to send.
  const form = `{"model":"tiny","prompt":"x","max_tokens":1,"padding":"${'a'.repeat(10000)}"}`;
  r = await rawRequest(server.url, `POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n` +
    `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${form.length}\r\n\r\n${form}`);
  assert.equal(statusOf(r), 413);
  assert.ok(errorOf(r).message.includes("'Content-Type: application/json'"), errorOf(r).message);
  assert.equal(statusOf(await rawRequest(server.url, post('/v1/completions', form))), 200);
  // The server still serves normally.
  assert.ok((await greedy('x', 2)).choices[0].text !== undefined);
});

test('health, models and metrics', async () => {
  assert.equal((await fetch(`${server.url}/health`)).status, 200);
  assert.equal((await fetch(`${server.url}/metrics`)).headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const models = await client.models.list();
  assert.equal(models.data[0].id, 'tiny');
  assert.equal((await client.models.retrieve('tiny')).id, 'tiny');
  await assert.rejects(client.models.retrieve('other'), OpenAI.NotFoundError);
  const m = await metrics(server.url);
  for (const name of ['nextn_prompt_tokens_total', 'nextn_generation_tokens_total', 'nextn_requests_running',
                      'nextn_requests_queued', 'nextn_batch_size', 'nextn_time_to_first_token_seconds_count',
                      'nextn_inter_token_latency_seconds_count']) {
    assert.ok(name in m, name);
  }
  assert.ok(m.nextn_time_to_first_token_seconds_count > 0);
  assert.equal(m['nextn_time_to_first_token_seconds_bucket{le="+Inf"}'], m.nextn_time_to_first_token_seconds_count);
});

test('a client that goes away stops its request within a step', async () => {
  const before = await metrics(server.url);
  const { port } = new URL(server.url);
  // A raw stream request; the socket is destroyed as soon as the first event arrives.
  await new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(post('/v1/completions',
      JSON.stringify({ model: 'tiny', prompt: 'def main():', max_tokens: 240, temperature: 0.7, stream: true,
                      ignore_eos: true, seed: 3 }))));  // 240 tokens whatever it draws
    socket.on('data', (d) => { if (d.toString().includes('data: ')) { socket.destroy(); resolve(); } });
    socket.on('error', reject);
  });
  for (let i = 0; i < 100 && (await metrics(server.url)).nextn_requests_running > 0; ++i) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const after = await metrics(server.url);
  assert.equal(after.nextn_requests_running, 0);
  assert.equal(after.nextn_requests_cancelled_total - (before.nextn_requests_cancelled_total ?? 0), 1);
  // It stopped long before its 240 tokens.
  assert.ok(after.nextn_generation_tokens_total - before.nextn_generation_tokens_total < 200);
});

test('a whole (non-streaming) request whose client goes away is stopped too', async () => {
  const before = await metrics(server.url);
  const { port } = new URL(server.url);
  // The request is sent and the connection closed at once: the server reads a request whose
  // client is already gone, and must not generate its 240 tokens.
  await new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      socket.write(post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'import os\n', max_tokens: 240,
                                                              temperature: 0.7, ignore_eos: true })), () => {
        socket.destroy();
        resolve();
      });
    });
  });
  await new Promise((r) => setTimeout(r, 100));
  for (let i = 0; i < 100 && (await metrics(server.url)).nextn_requests_running > 0; ++i) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const after = await metrics(server.url);
  assert.equal(after.nextn_requests_running, 0);
  assert.equal(after.nextn_requests_cancelled_total - before.nextn_requests_cancelled_total, 1);
  assert.ok(after.nextn_generation_tokens_total - before.nextn_generation_tokens_total < 240);
  assert.equal(after['nextn_requests_total{endpoint="completions",status="499"}'] -
               (before['nextn_requests_total{endpoint="completions",status="499"}'] ?? 0), 1);
});

test('the model is named after its directory, also when the path ends in a slash', async () => {
  const s = await startServer([], { model: `${tinyModel()}/`, name: null });
  try {
    const models = await (await fetch(`${s.url}/v1/models`)).json();
    assert.equal(models.data[0].id, 'run');  // support.mjs trains the tiny model into .../run
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test('an API key is required when set, in the OpenAI error format', async () => {
  const secured = await startServer(['--api-key', 'sesame']);
  try {
    const wrong = new OpenAI({ baseURL: `${secured.url}/v1`, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(wrong.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 2 }), OpenAI.AuthenticationError);
    const right = new OpenAI({ baseURL: `${secured.url}/v1`, apiKey: 'sesame', maxRetries: 0 });
    assert.equal((await right.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 2 })).choices.length, 1);
    assert.equal((await fetch(`${secured.url}/health`)).status, 200);  // health needs no key
    // The scheme's name is case-insensitive; the key is not.
    const models = (auth) => fetch(`${secured.url}/v1/models`, { headers: { Authorization: auth } });
    assert.equal((await models('bearer sesame')).status, 200);
    assert.equal((await models('Bearer SESAME')).status, 401);
    assert.equal((await models('Basic sesame')).status, 401);
  } finally {
    assert.equal(await secured.stop(), 0);
  }
});

test('speculative decoding: the same greedy output, and drafts counted per depth', async () => {
  const spec = await startServer(['--speculative', 'mtp', '--draft', '2']);
  try {
    const c = new OpenAI({ baseURL: `${spec.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const r = await c.completions.create({ model: 'tiny', prompt: 'class Parser:', max_tokens: 24, temperature: 0,
                                           return_token_ids: true });
    assert.deepEqual(r.choices[0].token_ids, generateTokenIds('class Parser:', 24, ['--greedy']));
    assert.equal(r.usage.speculative.drafted.length, 2);
    assert.ok(r.usage.speculative.drafted[0] > 0);
    const m = await metrics(spec.url);
    assert.equal(m['nextn_spec_draft_tokens_total{depth="1"}'], r.usage.speculative.drafted[0]);
    assert.equal(m['nextn_spec_accepted_tokens_total{depth="1"}'], r.usage.speculative.accepted[0]);
  } finally {
    assert.equal(await spec.stop(), 0);
  }
});

test('--layout rows: decoding reads the model\'s own rows, the tokens generate --layout rows gives', async () => {
  const rows = await startServer(['--layout', 'rows']);
  try {
    assert.match(rows.output(), /decoding reads the model's rows/);
    assert.match(server.output(), /decoding reads panels \([\d.]+ MiB, (\d+) matrices: \1 fp32\)/);
    const c = new OpenAI({ baseURL: `${rows.url}/v1`, apiKey: 'x', maxRetries: 0 });
    for (const prompt of ['class Parser:', 'import os\n']) {
      const r = await c.completions.create({ model: 'tiny', prompt, max_tokens: 20, temperature: 0, logprobs: 1,
                                             return_token_ids: true });
      assert.deepEqual(r.choices[0].token_ids, generateTokenIds(prompt, 20, ['--greedy', '--layout', 'rows']), prompt);
      // Panels and rows differ in rounding only: the same log-probabilities to ~1e-5.
      const packed = await greedy(prompt, 20, { logprobs: 1 });
      if (packed.choices[0].token_ids.join() !== r.choices[0].token_ids.join()) continue;  // a near-tie went the other way
      r.choices[0].logprobs.token_logprobs.forEach((l, i) =>
        assert.ok(Math.abs(l - packed.choices[0].logprobs.token_logprobs[i]) < 1e-4, `${prompt} token ${i}`));
    }
  } finally {
    assert.equal(await rows.stop(), 0);
  }
  const bad = spawnSync(nextn, ['serve', '--model', tinyModel(), '--layout', 'columns'], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--layout/);
});

test('--precision bf16: bfloat16 panels (the routers\' gates fp32), the tokens generate --precision bf16 gives', async () => {
  const bf16 = await startServer(['--precision', 'bf16']);
  try {
    assert.match(bf16.output(), /decoding reads panels \([\d.]+ MiB, \d+ matrices: \d+ bf16 products, \d+ fp32\)/);
    const c = new OpenAI({ baseURL: `${bf16.url}/v1`, apiKey: 'x', maxRetries: 0 });
    for (const prompt of ['class Parser:', 'import os\n']) {
      const r = await c.completions.create({ model: 'tiny', prompt, max_tokens: 20, temperature: 0, logprobs: 1,
                                             return_token_ids: true });
      assert.deepEqual(r.choices[0].token_ids, generateTokenIds(prompt, 20, ['--greedy', '--precision', 'bf16']), prompt);
      // The weights' rounding moves log-probabilities by a little, not by nothing.
      const fp32 = await greedy(prompt, 20, { logprobs: 1 });
      if (fp32.choices[0].token_ids.join() !== r.choices[0].token_ids.join()) continue;  // a near-tie went the other way
      const diffs = r.choices[0].logprobs.token_logprobs.map((l, i) => Math.abs(l - fp32.choices[0].logprobs.token_logprobs[i]));
      assert.ok(Math.max(...diffs) < 0.1, `${prompt}: ${diffs}`);
      assert.ok(Math.max(...diffs) > 0, `${prompt}: bf16 gave fp32's bits`);
    }
  } finally {
    assert.equal(await bf16.stop(), 0);
  }
  const bad = spawnSync(nextn, ['serve', '--model', tinyModel(), '--layout', 'rows', '--precision', 'bf16'],
                        { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--precision bf16 packs bfloat16 panels; --layout rows/);
});

test('--prefill-chunk: a long prompt runs in chunks beside a running stream, the tokens generate gives; the prefix cache reuses them', async () => {
  const chunked = await startServer(['--prefill-chunk', '16']);
  try {
    const c = new OpenAI({ baseURL: `${chunked.url}/v1`, apiKey: 'x', maxRetries: 0 });
    // ~100 tokens of this vocabulary: 6-7 chunks, while a short prompt's stream runs.
    const long = 'import json\nfrom collections import OrderedDict\n\n' +
                 'def load(path, *, strict=True):\n    """Read a JSON file into an ordered dict."""\n' +
                 '    with open(path) as f:\n        return json.load(f, object_pairs_hook=OrderedDict)\n\n' +
                 'def dump(obj, path):\n';
    const [running, prefilled] = await Promise.all([
      streamText(c.completions.create({ model: 'tiny', prompt: 'class Parser:', max_tokens: 40, temperature: 0,
                                        stream: true, return_token_ids: true, ignore_eos: true })),
      c.completions.create({ model: 'tiny', prompt: long, max_tokens: 20, temperature: 0, return_token_ids: true }),
    ]);
    assert.ok(prefilled.usage.prompt_tokens > 48, `the prompt takes several chunks (${prefilled.usage.prompt_tokens} tokens)`);
    assert.deepEqual(prefilled.choices[0].token_ids, generateTokenIds(long, 20, ['--greedy', '--prefill-chunk', '16']));
    assert.equal(running.ids.length, 40);
    assert.deepEqual(running.ids, generateTokenIds('class Parser:', 40, ['--greedy', '--no-eos-stop']));
    assert.equal(prefilled.usage.prompt_tokens_details.cached_tokens, 0);
    // The same prompt again: all of it from the prefix cache (its last chunk with its logits), the
    // same tokens.
    const again = await c.completions.create({ model: 'tiny', prompt: long, max_tokens: 20, temperature: 0,
                                               return_token_ids: true });
    assert.equal(again.usage.prompt_tokens_details.cached_tokens, again.usage.prompt_tokens);
    assert.deepEqual(again.choices[0].token_ids, prefilled.choices[0].token_ids);
    // A longer prompt that starts with it: its full chunks up to where the tokens differ.
    const longer = `${long}    with open(path, "w") as f:\n`;
    const extended = await c.completions.create({ model: 'tiny', prompt: longer, max_tokens: 20, temperature: 0,
                                                  return_token_ids: true });
    const reused = extended.usage.prompt_tokens_details.cached_tokens;
    assert.ok(reused >= 48 && reused % 16 === 0 && reused < again.usage.prompt_tokens, `${reused} cached`);
    assert.deepEqual(extended.choices[0].token_ids, generateTokenIds(longer, 20, ['--greedy', '--prefill-chunk', '16']));
    const m = await metrics(chunked.url);
    assert.equal(m.nextn_prompt_tokens_cached_total, again.usage.prompt_tokens_details.cached_tokens + reused);
    assert.ok(m.nextn_prefix_cache_bytes > 0);
  } finally {
    assert.equal(await chunked.stop(), 0);
  }
  const bad = spawnSync(nextn, ['serve', '--model', tinyModel(), '--prefill-chunk', '0'], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--prefill-chunk/);
  const negative = spawnSync(nextn, ['serve', '--model', tinyModel(), '--prefix-cache-mb', '-1'], { encoding: 'utf8' });
  assert.notEqual(negative.status, 0);
  assert.match(negative.stderr, /--prefix-cache-mb/);
});

test('--speculative mtp drafts auto by default: the same greedy output, every depth tried', async () => {
  const spec = await startServer(['--speculative', 'mtp']);
  try {
    assert.match(spec.output(), /MTP drafts auto \(0\.\.2 per step\)/);
    const c = new OpenAI({ baseURL: `${spec.url}/v1`, apiKey: 'x', maxRetries: 0 });
    for (const prompt of ['class Parser:', 'def main():']) {
      const r = await c.completions.create({ model: 'tiny', prompt, max_tokens: 32, temperature: 0,
                                             return_token_ids: true });
      assert.deepEqual(r.choices[0].token_ids, generateTokenIds(prompt, 32, ['--greedy']), prompt);
      assert.equal(r.usage.speculative.drafted.length, 2);
      r.usage.speculative.accepted.forEach((a, k) => assert.ok(a <= r.usage.speculative.drafted[k]));
    }
    // The policy tries each count before it settles (the first request drafted at both depths).
    const m = await metrics(spec.url);
    assert.ok(m['nextn_spec_draft_tokens_total{depth="1"}'] > 0);
    assert.ok(m['nextn_spec_draft_tokens_total{depth="2"}'] > 0);
  } finally {
    assert.equal(await spec.stop(), 0);
  }
});

test('--draft-tree: tree drafts give the same greedy output; a bad tree is refused before serving', async () => {
  const spec = await startServer(['--speculative', 'mtp', '--draft-tree', '2,2']);
  try {
    assert.match(spec.output(), /MTP draft tree 2,2/);
    const c = new OpenAI({ baseURL: `${spec.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const r = await c.completions.create({ model: 'tiny', prompt: 'def main():', max_tokens: 24, temperature: 0,
                                           return_token_ids: true });
    assert.deepEqual(r.choices[0].token_ids, generateTokenIds('def main():', 24, ['--greedy']));
    assert.equal(r.usage.speculative.drafted.length, 2);
    assert.ok(r.usage.speculative.drafted[0] > 0);
  } finally {
    assert.equal(await spec.stop(), 0);
  }
  for (const [args, message] of [[['--speculative', 'mtp', '--draft-tree', '2,0'], /--draft-tree/],
                                 [['--speculative', 'mtp', '--draft-tree', '2', '--draft', '1'], /leave out --draft/],
                                 [['--draft-tree', '2'], /need --speculative mtp/]]) {
    const r = spawnSync(nextn, ['serve', '--model', tinyModel(), '--port', '0', ...args], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
  }
});

test('a full queue answers 503 with Retry-After, and no place is lost', async () => {
  const small = await startServer(['--max-batch', '1', '--max-queue', '1']);
  try {
    const body = JSON.stringify({ model: 'tiny', prompt: 'def main():', max_tokens: 60, temperature: 0 });
    const responses = await Promise.all(Array.from({ length: 8 }, () => fetch(`${small.url}/v1/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body })));
    const statuses = responses.map((r) => r.status);
    assert.ok(statuses.includes(503), statuses.join(','));
    assert.ok(statuses.every((s) => s === 200 || s === 503), statuses.join(','));
    const refused = responses.find((r) => r.status === 503);
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal((await refused.json()).error.code, 'server_busy');
    const c = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: 'x', maxRetries: 0 });
    // Greedy, past EOS: a sampled request may draw EOS at once (each unseeded request draws anew).
    assert.equal((await c.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 3, temperature: 0,
                                               ignore_eos: true })).usage.completion_tokens, 3);
    const m = await metrics(small.url);
    assert.equal(m.nextn_requests_running, 0);
    assert.equal(m.nextn_requests_queued, 0);
  } finally {
    assert.equal(await small.stop(), 0);
  }
});

test('SIGTERM: the running request finishes, then the server exits 0', async () => {
  const s = await startServer([]);
  const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const pending = c.completions.create({ model: 'tiny', prompt: 'def main():', max_tokens: 120, temperature: 0.7 });
  await new Promise((r) => setTimeout(r, 50));
  const exited = s.stop();
  const r = await pending;
  assert.equal(r.usage.completion_tokens > 0, true);
  assert.equal(await exited, 0);
  assert.ok(s.output().includes('stopped'));
});

test('SIGTERM past the grace period: a cut stream ends in an error the client raises, not a finish', async () => {
  // One place: the stream waits behind eight long requests (already there: counted in the
  // metrics), and no grace cuts it before it runs (the tiny model would finish a running stream
  // before the signal arrived; a stream that overtook a single request ahead of it did in CI, and
  // one behind three such requests, ~10 ms each, once finished whole).
  const s = await startServer(['--grace', '0', '--max-batch', '1']);
  const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const aheads = Array.from({ length: 8 }, () => c.completions.create({
    model: 'tiny', prompt: 'def main():', max_tokens: 240, temperature: 0, ignore_eos: true }).catch((e) => e));
  for (let i = 0; i < 200; ++i) {
    const m = await metrics(s.url);
    if (m.nextn_requests_running + m.nextn_requests_queued >= 8) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const stream = await c.completions.create({ model: 'tiny', prompt: 'import os', max_tokens: 240, temperature: 0,
                                             ignore_eos: true, stream: true, return_token_ids: true });
  const exited = s.stop();
  let tokens = 0, finish = null, error = null;
  try {
    for await (const chunk of stream) {
      tokens += chunk.choices[0]?.token_ids?.length ?? 0;
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
  } catch (e) {
    error = e;
  }
  assert.ok(tokens < 240, `${tokens} tokens: the stream was not cut`);
  assert.ok(error instanceof OpenAI.APIError, `expected an APIError, got ${error} after ${tokens} tokens`);
  assert.match(error.message, /stopped before the request finished/);
  assert.equal(finish, null);
  for (const first of await Promise.all(aheads)) {  // whole, or refused as cut: never a truncated answer that looks complete
    assert.ok(first instanceof OpenAI.APIError ? first.status === 503 : first.usage.completion_tokens === 240);
  }
  assert.equal(await exited, 0);
});

test('load: 100 concurrent clients are all answered or refused with 503, memory stays bounded', async () => {
  const s = await startServer(['--max-batch', '8', '--max-queue', '24']);
  try {
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => {
      const stream = i % 2 === 0;
      return fetch(`${s.url}/v1/completions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt: PROMPTS[i % PROMPTS.length], max_tokens: 24, temperature: 0.8,
                               seed: i, stream }),
      }).then(async (r) => ({ status: r.status, body: await r.text() }));
    }));
    const ok = results.filter((r) => r.status === 200).length;
    const busy = results.filter((r) => r.status === 503).length;
    assert.equal(ok + busy, 100, results.map((r) => r.status).join(','));
    assert.ok(ok >= 32, `only ${ok} answered`);
    for (const r of results.filter((x) => x.status === 200)) {
      assert.ok(r.body.startsWith('data: ') ? r.body.trimEnd().endsWith('data: [DONE]') : JSON.parse(r.body).choices);
    }
    const status = readFileSync(`/proc/${s.proc.pid}/status`, 'utf8');
    const peakKb = Number(status.match(/VmHWM:\s+(\d+)/)[1]);
    console.log(`load: ${ok} answered, ${busy} refused in ${Date.now() - started} ms; server peak RSS ${(peakKb / 1024).toFixed(0)} MiB`);
    assert.ok(peakKb < 2 * 1024 * 1024, `peak RSS ${peakKb} kB`);
    const m = await metrics(s.url);
    assert.equal(m.nextn_requests_running, 0);
    const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
    assert.equal((await c.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 2, temperature: 0, ignore_eos: true })).usage.completion_tokens, 2);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

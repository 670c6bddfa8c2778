// `nextn bench serve`: its accounting against what it asked for (every request makes max_tokens
// tokens with ignore_eos), medians over rounds, and each round's ratio to its own 1 stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, tinyModel } from './support.mjs';

test('bench serve counts every token of every round and reports ratios to 1 stream', () => {
  const r = run(['bench', 'serve', '--model', tinyModel(), '--streams', '1', '--streams', '3', '--requests', '2',
                 '--max-tokens', '5', '--drafts', '0', '--drafts', 'auto', '--rounds', '2', '--json']);
  const rows = r.stdout.trim().split('\n').map((line) => JSON.parse(line));
  assert.deepEqual(rows.map((row) => [row.variant, row.streams]),
                   [['plain', 1], ['plain', 3], ['MTP, auto', 1], ['MTP, auto', 3]]);
  for (const row of rows) {
    assert.equal(row.requests, row.streams * 2 * 2);  // streams x requests x rounds
    assert.equal(row.tokens, row.requests * 5);
    assert.ok(row.tokens_per_second > 0 && row.ttft_p50 > 0 && row.ttft_p99 >= row.ttft_p50);
    if (row.streams === 1) assert.equal(row.vs_one_stream, 1);
    else assert.ok(row.vs_one_stream > 0);
  }
});

test('bench serve: long random prompts against servers of each --prefill-chunk, with inter-token latencies', () => {
  const r = run(['bench', 'serve', '--model', tinyModel(), '--streams', '2', '--requests', '2', '--max-tokens', '6',
                 '--drafts', '0', '--prompt-tokens', '120', '--prefill-chunk', '16', '--prefill-chunk', '200', '--json']);
  const rows = r.stdout.trim().split('\n').map((line) => JSON.parse(line));
  assert.deepEqual(rows.map((row) => row.variant), ['plain, chunk 16', 'plain, chunk 200']);
  for (const row of rows) {
    assert.equal(row.tokens, 2 * 2 * 6);
    assert.ok(row.itl_p50 > 0 && row.itl_p99 >= row.itl_p50 && row.itl_max >= row.itl_p99, JSON.stringify(row));
    assert.ok(row.ttft_p50 > 0);
  }
  assert.throws(() => run(['bench', 'serve', '--model', tinyModel(), '--prefill-chunk', '0']), /--prefill-chunk/);
});

test('bench serve: a shared prompt prefix against servers with and without the prefix cache', () => {
  const r = run(['bench', 'serve', '--model', tinyModel(), '--streams', '1', '--requests', '2', '--max-tokens', '4',
                 '--drafts', '0', '--prompt-tokens', '100', '--shared-prefix', '90', '--prefill-chunk', '32',
                 '--prefix-cache-mb', '0', '--prefix-cache-mb', '16', '--json']);
  const rows = r.stdout.trim().split('\n').map((line) => JSON.parse(line));
  assert.deepEqual(rows.map((row) => row.variant), ['plain, chunk 32, cache 0 MiB', 'plain, chunk 32, cache 16 MiB']);
  for (const row of rows) assert.equal(row.tokens, 2 * 4);
  assert.throws(() => run(['bench', 'serve', '--model', tinyModel(), '--prompt-tokens', '10', '--shared-prefix', '11']),
                /--shared-prefix 11 must be within --prompt-tokens 10/);
});

test('bench serve refuses a draft variant it cannot start', () => {
  assert.throws(() => run(['bench', 'serve', '--model', tinyModel(), '--drafts', 'two']),
                /--drafts 'two': expected 0 \(plain\), a number of drafts or 'auto'/);
});

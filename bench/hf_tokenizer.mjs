// Hugging Face tokenizers (the npm build of its Rust code) on the documents `nextn bench
// tokenizer --hf` wrote: one thread (encode, one document at a time, in a process with one rayon
// thread), then encodeBatch on all of them. Usage: node bench/hf_tokenizer.mjs TOKENIZER DOCS THREADS
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@anush008/tokenizers';

const [tokenizerPath, documentsPath, threads, mode] = process.argv.slice(2);
const documents = readFileSync(documentsPath, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
const bytes = documents.reduce((sum, d) => sum + Buffer.byteLength(d, 'utf8'), 0);
const mbps = (seconds) => `${(bytes / 1e6 / seconds).toFixed(1)} MB/s`;
const tok = Tokenizer.fromFile(tokenizerPath);

if (mode === 'single') {
  const start = process.hrtime.bigint();
  let tokens = 0;
  for (const d of documents) tokens += (await tok.encode(d, null, { addSpecialTokens: false })).getLength();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`hugging face encode (1 thread): ${mbps(seconds)} (${tokens} tokens)`);
} else {
  // One thread: a child process whose rayon pool has one thread.
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), tokenizerPath, documentsPath, '1', 'single'],
                          { env: { ...process.env, RAYON_NUM_THREADS: '1' }, encoding: 'utf8' });
  process.stdout.write(child.stdout);
  if (child.status !== 0) { process.stderr.write(child.stderr); process.exit(1); }
  process.env.RAYON_NUM_THREADS = threads;
  const start = process.hrtime.bigint();
  const encodings = await tok.encodeBatch(documents, { addSpecialTokens: false });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`hugging face encodeBatch (${threads} threads): ${mbps(seconds)} (${encodings.length} documents)`);
}

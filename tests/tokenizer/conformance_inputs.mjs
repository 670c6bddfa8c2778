// The strings of the tokenizer conformance test: random Unicode across scripts, emoji with ZWJ
// sequences, runs of digits and of white space, code, text with added tokens inside, U+FFFD where
// a command line would have received invalid bytes. Deterministic (seeded), so a failure repeats.

// xorshift32: small, seedable, the same on every machine.
export function rng(seed) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (list) => list[next.int(list.length)];
  return next;
}

// Blocks assigned long before Unicode 9 (Hugging Face's normalization tables are Unicode 9.0,
// nextn's utf8proc newer: characters assigned since differ by design, see docs/TOKENIZERS.md).
const BLOCKS = [
  [0x20, 0x7e], [0xa0, 0xff], [0x100, 0x24f], [0x300, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff],
  [0x590, 0x5ff], [0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x1100, 0x11ff], [0x1e00, 0x1eff],
  [0x2000, 0x206f], [0x2070, 0x209f], [0x20a0, 0x20bf], [0x2100, 0x218f], [0x2190, 0x22ff], [0x2460, 0x24ff],
  [0x2500, 0x257f], [0x3000, 0x303f], [0x3040, 0x30ff], [0x3130, 0x318f], [0x4e00, 0x9fa5], [0xac00, 0xd7a3],
  [0xf900, 0xfaff], [0xfb00, 0xfb4f], [0xfe30, 0xfe4f], [0xff00, 0xffef], [0x1d400, 0x1d7ff], [0x1f300, 0x1f64f],
];
const SPACES = [' ', '  ', '\t', '\n', '\n\n', '\r\n', '\u00a0', '\u3000', '\u2003', ' \n ', '\u0085', '\u200b', '\u2028'];
const EMOJI = ['👨‍👩‍👧‍👦', '🏳️‍🌈', '👍🏽', '🧑‍💻', '❤️', '🇯🇵', '👩🏿‍🔬', '😀😃😄', '✊🏻✊🏿'];
const WORDS = [
  'Hello', 'world', "don't", "I'M", 'naïve', 'café', 'İstanbul', 'ΟΔΟΣ', 'straße', 'ǅemal', 'ﬁne', '①②',
  '你好世界', 'こんにちは', 'カタカナ', '한국어', 'Привет', 'مرحبا', 'שלום', 'नमस्ते', 'สวัสดี', 'x²', '½', 'Ⅻ',
  '٣٤٥', 'ｶﾞ', '１２３', 'e\u0301', 'A\u030a', '\u1e9b\u0323', 'the-final--countdown', '_under_score_', 'ab1 ab_x ab.',
];
const CODE = [
  'def f(x):\n    return x**2  # square\n',
  'for (int i = 0; i < n; ++i) { sum += a[i]; }',
  'const y = await fetch(`/api/${id}`);\n',
  '    if self._file is None:\n        raise ValueError("closed")\n',
  '#include <vector>\nint main() { return 0; }\n',
  'SELECT name, COUNT(*) FROM t WHERE x >= 10 GROUP BY name;',
  '<div class="a">&nbsp;</div>',
  '\t\tfoo_bar = {"k": [1, 2, 3.5e-7]}\r\n',
];

// Characters assigned since Unicode 9 inside the blocks above, whose classes Hugging Face's
// older tables do not know: U+061D ARABIC END OF TEXT MARK (Unicode 14, punctuation for nextn).
const NEWER_THAN_UNICODE_9 = new Set([0x61d]);

function randomChar(r) {
  for (;;) {
    const [lo, hi] = r.pick(BLOCKS);
    const c = lo + r.int(hi - lo + 1);
    if (!NEWER_THAN_UNICODE_9.has(c)) return String.fromCodePoint(c);
  }
}

function randomPiece(r, addedTokens) {
  switch (r.int(10)) {
    case 0: { let s = ''; for (let i = r.int(12) + 1; i > 0; --i) s += randomChar(r); return s; }
    case 1: return r.pick(EMOJI);
    case 2: { let s = ''; for (let i = r.int(20) + 1; i > 0; --i) s += String(r.int(10)); return s; }
    case 3: { let s = ''; for (let i = r.int(4) + 1; i > 0; --i) s += r.pick(SPACES); return s; }
    case 4: return r.pick(CODE);
    case 5: return addedTokens.length ? r.pick(addedTokens) : r.pick(WORDS);
    case 6: return '\ufffd'.repeat(r.int(3) + 1);
    default: return r.pick(WORDS);
  }
}

// `count` strings; `addedTokens`: contents to put inside some of them.
export function conformanceInputs(seed, count, addedTokens) {
  const r = rng(seed);
  const out = ['', ' ', 'a', '  leading and trailing  ', 'Hello world!', '12345678901', ...CODE, ...WORDS, ...EMOJI];
  for (const token of addedTokens.slice(0, 20)) out.push(token, ` ${token} `, `x${token}y`, `${token}${token}`, `\n${token}\t`);
  while (out.length < count) {
    let s = '';
    for (let parts = r.int(8) + 1; parts > 0; --parts) {
      s += randomPiece(r, addedTokens);
      if (r.int(3) === 0) s += ' ';
    }
    out.push(s);
  }
  // Lone surrogates cannot cross into Rust or a UTF-8 file: both sides get what UTF-8 makes of them.
  return out.map((s) => Buffer.from(s, 'utf8').toString('utf8'));
}

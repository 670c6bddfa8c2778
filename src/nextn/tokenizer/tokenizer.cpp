#include "nextn/tokenizer/tokenizer.h"

#include <algorithm>
#include <unordered_map>

#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/bpe_model.h"
#include "nextn/tokenizer/byte_level.h"
#include "nextn/tokenizer/special_tokens.h"
#include "nextn/tokenizer/tokenizer_json.h"
#include "nextn/tokenizer/utf8.h"
#include "nextn/util/error.h"
#include "nextn/util/sha256.h"

namespace nextn::tokenizer {

enum class TokenKind : uint8_t { kNone, kModel, kAdded };

struct Tokenizer::State {
  explicit State(TokenizerSpec s) : spec(std::move(s)), pre_tokenizer(spec.pre_tokenizer) {}

  TokenizerSpec spec;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  AddedTokenMatcher unnormalized_added;  // first matching pass
  AddedTokenMatcher normalized_added;    // second matching pass
  std::vector<std::string> id_bytes;     // what each id decodes to
  std::vector<TokenKind> id_kind;
  std::unordered_map<std::string, int32_t> model_token_ids;  // tokenizer.json text -> id
  std::unordered_map<std::string, int32_t> added_token_ids;  // content -> id
  std::optional<int32_t> bos, eos, pad;
  std::string hash;
};

namespace {

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text) {
    uint8_t byte = uint8_t(c);
    if (byte < 0x20 || byte == 0x7F) out += cat("\\x", "0123456789abcdef"[byte >> 4], "0123456789abcdef"[byte & 15]);
    else out += c;
  }
  return out;
}

int32_t max_id(const TokenizerSpec& spec) {
  int32_t highest = -1;
  for (const auto& [text, id] : spec.vocab) highest = std::max(highest, id);
  for (const AddedToken& token : spec.added_tokens) highest = std::max(highest, token.id);
  return highest;
}

void add_model_tokens(Tokenizer::State& state) {
  for (const auto& [text, id] : state.spec.vocab) {
    NEXTN_CHECK(id >= 0, "vocabulary token '", printable(text), "' has negative id ", id);
    NEXTN_CHECK(state.id_kind[id] == TokenKind::kNone, "vocabulary id ", id, " is used twice ('",
                printable(state.id_bytes[id]), "' and '", printable(text), "')");
    NEXTN_CHECK(state.model_token_ids.emplace(text, id).second, "vocabulary token '", printable(text),
                "' appears twice");
    std::optional<std::string> bytes = byte_level_to_bytes(text);
    state.id_kind[id] = TokenKind::kModel;
    // A vocabulary entry outside the byte-level alphabet can only be an added token's entry
    // (checked in add_added_tokens); Hugging Face's ByteLevel decoder passes such text through.
    state.id_bytes[id] = bytes ? *bytes : text;
  }
}

void add_added_tokens(Tokenizer::State& state) {
  for (const AddedToken& token : state.spec.added_tokens) {
    NEXTN_CHECK(token.id >= 0, "added token '", printable(token.content), "' has negative id ", token.id);
    NEXTN_CHECK(!token.content.empty(), "added token ", token.id, " has empty content");
    NEXTN_CHECK(is_valid_utf8(token.content), "added token ", token.id, " is not valid UTF-8");
    NEXTN_CHECK(state.added_token_ids.emplace(token.content, token.id).second, "added token '",
                printable(token.content), "' appears twice");
    if (state.id_kind[token.id] == TokenKind::kModel) {
      // The same token listed in the model vocabulary too (GPT-2's <|endoftext|>): allowed when
      // the vocabulary entry spells the same content.
      auto it = state.model_token_ids.find(token.content);
      NEXTN_CHECK(it != state.model_token_ids.end() && it->second == token.id, "added token '",
                  printable(token.content), "' has id ", token.id,
                  ", which the model vocabulary gives to another token");
    } else {
      NEXTN_CHECK(state.id_kind[token.id] == TokenKind::kNone, "added token id ", token.id, " is used twice");
    }
    state.id_kind[token.id] = TokenKind::kAdded;
    state.id_bytes[token.id] = token.content;
  }
  // Every model token must be byte-level text unless an added token claimed its id.
  for (const auto& [text, id] : state.spec.vocab) {
    NEXTN_CHECK(state.id_kind[id] == TokenKind::kAdded || byte_level_to_bytes(text).has_value(),
                "vocabulary token '", printable(text), "' (id ", id,
                ") is not in the byte-level alphabet and is not an added token");
  }
}

BpeModel build_model(const Tokenizer::State& state) {
  std::array<int32_t, 256> byte_ids{};
  for (int byte = 0; byte < 256; ++byte) {
    std::string text = bytes_to_byte_level(std::string(1, char(byte)));
    auto it = state.model_token_ids.find(text);
    NEXTN_CHECK(it != state.model_token_ids.end(), "the vocabulary has no token for byte 0x",
                "0123456789abcdef"[byte >> 4], "0123456789abcdef"[byte & 15], " ('", text,
                "'); nextn needs all 256 byte tokens so that any text can be encoded");
    byte_ids[byte] = it->second;
  }
  std::vector<MergeRule> merges;
  merges.reserve(state.spec.merges.size());
  for (std::size_t rank = 0; rank < state.spec.merges.size(); ++rank) {
    const std::string& left = state.spec.merges[rank].first;  // not a structured binding: the
    const std::string& right = state.spec.merges[rank].second;  // lambda below captures them
    auto find = [&](const std::string& text, const char* role) {
      auto it = state.model_token_ids.find(text);
      NEXTN_CHECK(it != state.model_token_ids.end(), "merge ", rank, " ('", printable(left), " ",
                  printable(right), "'): ", role, " '", printable(text), "' is not in the vocabulary");
      return it->second;
    };
    merges.push_back({find(left, "left part"), find(right, "right part"), find(left + right, "result")});
  }
  std::unordered_map<std::string, int32_t> whole_tokens;
  if (state.spec.ignore_merges) {
    for (const auto& [text, id] : state.spec.vocab) {
      if (state.id_kind[id] == TokenKind::kModel) whole_tokens.emplace(state.id_bytes[id], id);
    }
  }
  return BpeModel(byte_ids, std::move(merges), std::move(whole_tokens), state.spec.ignore_merges);
}

std::optional<int32_t> first_added_token(const Tokenizer::State& state, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    auto it = state.added_token_ids.find(name);
    if (it != state.added_token_ids.end()) return it->second;
  }
  return std::nullopt;
}

// Length-prefixed fields, so that no two different contents hash the same byte stream.
void hash_field(Sha256& hash, std::string_view text) {
  std::string length = cat(text.size(), ":");
  hash.update(length);
  hash.update(text);
}

std::string content_hash(const Tokenizer::State& state) {
  const TokenizerSpec& spec = state.spec;
  Sha256 hash;
  hash_field(hash, "nextn-tokenizer-v1");
  std::vector<std::pair<int32_t, std::string>> vocab;
  for (const auto& [text, id] : spec.vocab) vocab.emplace_back(id, text);
  std::sort(vocab.begin(), vocab.end());
  hash_field(hash, cat("vocab ", vocab.size()));
  for (const auto& [id, text] : vocab) {
    hash_field(hash, std::to_string(id));
    hash_field(hash, text);
  }
  hash_field(hash, cat("merges ", spec.merges.size()));
  for (const auto& [left, right] : spec.merges) {
    hash_field(hash, left);
    hash_field(hash, right);
  }
  std::vector<AddedToken> added = spec.added_tokens;
  std::sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  hash_field(hash, cat("added ", added.size()));
  for (const AddedToken& token : added) {
    hash_field(hash, cat(token.id, token.special ? " special" : " plain", token.normalized ? " normalized" : " raw"));
    hash_field(hash, token.content);
  }
  hash_field(hash, cat("splits ", spec.pre_tokenizer.splits.size()));
  for (const SplitPattern& split : spec.pre_tokenizer.splits) {
    hash_field(hash, split.is_literal ? "string" : "regex");
    hash_field(hash, split.pattern);
  }
  hash_field(hash, cat("byte_level_use_regex ", spec.pre_tokenizer.byte_level_use_regex));
  hash_field(hash, cat("ignore_merges ", spec.ignore_merges));
  return "sha256:" + hash.hex_digest();
}

}  // namespace

Tokenizer::Tokenizer(TokenizerSpec spec) {
  auto state = std::make_shared<State>(std::move(spec));
  int32_t highest = max_id(state->spec);
  NEXTN_CHECK(highest >= 0, "the tokenizer has an empty vocabulary");
  // Ids index tables of highest + 1 entries: an id far past the number of tokens (10^9 in a
  // hand-edited file) would allocate gigabytes for nothing. Real files number their tokens
  // densely; a gap of up to 2^20 ids is allowed.
  const int64_t tokens = static_cast<int64_t>(state->spec.vocab.size() + state->spec.added_tokens.size());
  NEXTN_CHECK(highest < tokens + (int64_t{1} << 20), "token id ", highest, " is far past the vocabulary: the tokenizer has ",
              tokens, " tokens (", state->spec.vocab.size(), " in the model, ", state->spec.added_tokens.size(),
              " added), and ids more than 2^20 above that count are refused");
  state->id_bytes.assign(std::size_t(highest) + 1, std::string());
  state->id_kind.assign(std::size_t(highest) + 1, TokenKind::kNone);
  add_model_tokens(*state);
  add_added_tokens(*state);
  state->model = build_model(*state);
  std::vector<AddedToken> unnormalized, normalized;
  for (const AddedToken& token : state->spec.added_tokens) {
    (token.normalized ? normalized : unnormalized).push_back(token);
  }
  state->unnormalized_added = AddedTokenMatcher(unnormalized);
  state->normalized_added = AddedTokenMatcher(normalized);
  state->bos = first_added_token(*state, bos_token_candidates());
  state->eos = first_added_token(*state, eos_token_candidates());
  state->pad = first_added_token(*state, pad_token_candidates());
  state->hash = content_hash(*state);
  state_ = std::move(state);
}

Tokenizer Tokenizer::load(const std::string& tokenizer_json_path) {
  NEXTN_CHECK(io::file_exists(tokenizer_json_path), "tokenizer file '", tokenizer_json_path, "' does not exist");
  return from_json_text(io::read_file(tokenizer_json_path), tokenizer_json_path);
}

Tokenizer Tokenizer::from_json_text(std::string_view json_text, const std::string& source_name) {
  TokenizerSpec spec = parse_tokenizer_json(json_text, source_name);
  try {
    return Tokenizer(std::move(spec));
  } catch (const Error& e) {
    fail(source_name, ": ", e.what());
  }
}

void Tokenizer::save(const std::string& path) const { io::write_file_atomic(path, to_json_text()); }

std::string Tokenizer::to_json_text() const { return write_tokenizer_json(state_->spec); }

void Tokenizer::encode_ordinary_append(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::string_view> pieces;
  state_->pre_tokenizer.split(text, pieces);
  for (std::string_view piece : pieces) state_->model.encode_piece(piece, out);
}

std::vector<int32_t> Tokenizer::encode_ordinary(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  encode_ordinary_append(text, ids);
  return ids;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<TextSegment> segments;
  split_on_added_tokens(text, state_->unnormalized_added, state_->normalized_added, segments);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  for (const TextSegment& segment : segments) {
    if (segment.added_id >= 0) ids.push_back(segment.added_id);
    else encode_ordinary_append(segment.text, ids);
  }
  return ids;
}

void Tokenizer::append_token_bytes(int32_t id, std::string& out) const {
  NEXTN_CHECK(id >= 0 && id < vocab_size() && state_->id_kind[id] != TokenKind::kNone,
              "token id ", id, " is not in the vocabulary (size ", vocab_size(), ")");
  out += state_->id_bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) append_token_bytes(id, out);
  return out;
}

int32_t Tokenizer::vocab_size() const { return int32_t(state_->id_kind.size()); }

std::optional<int32_t> Tokenizer::find_bos_id() const { return state_->bos; }
std::optional<int32_t> Tokenizer::find_eos_id() const { return state_->eos; }

int32_t Tokenizer::bos_id() const {
  NEXTN_CHECK(state_->bos.has_value(), "the tokenizer has no BOS token (looked for ", kBosToken,
              ", <|begin_of_text|>, <s>, <|endoftext|> among its added tokens)");
  return *state_->bos;
}

int32_t Tokenizer::eos_id() const {
  NEXTN_CHECK(state_->eos.has_value(), "the tokenizer has no EOS token (looked for ", kEosToken,
              ", <|end_of_text|>, </s>, <|endoftext|> among its added tokens)");
  return *state_->eos;
}

int32_t Tokenizer::pad_id() const { return state_->pad ? *state_->pad : eos_id(); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  std::string key(token);
  auto added = state_->added_token_ids.find(key);
  if (added != state_->added_token_ids.end()) return added->second;
  auto model = state_->model_token_ids.find(key);
  if (model != state_->model_token_ids.end()) return model->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return std::nullopt;
  switch (state_->id_kind[id]) {
    case TokenKind::kNone: return std::nullopt;
    case TokenKind::kAdded: return state_->id_bytes[id];
    case TokenKind::kModel: return bytes_to_byte_level(state_->id_bytes[id]);
  }
  return std::nullopt;
}

bool Tokenizer::is_added_token(int32_t id) const {
  return id >= 0 && id < vocab_size() && state_->id_kind[id] == TokenKind::kAdded;
}

std::string Tokenizer::hash() const { return state_->hash; }
const TokenizerSpec& Tokenizer::spec() const { return state_->spec; }
const PreTokenizer& Tokenizer::pre_tokenizer() const { return state_->pre_tokenizer; }
std::size_t Tokenizer::num_merges() const { return state_->model.num_merges(); }

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

std::string StreamDecoder::push(int32_t id) {
  tokenizer_.append_token_bytes(id, pending_);
  std::size_t keep = utf8_incomplete_suffix(pending_);
  std::string ready = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return ready;
}

std::string StreamDecoder::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace nextn::tokenizer

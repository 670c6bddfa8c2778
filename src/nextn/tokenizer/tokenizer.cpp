#include "nextn/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
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
  State(TokenizerSpec s, TokenizerConfig c)
      : spec(std::move(s)),
        config(std::move(c)),
        normalizer(spec.normalizer),
        pre_tokenizer(spec.pre_tokenizer),
        decoder(spec.decoder) {}

  TokenizerSpec spec;
  TokenizerConfig config;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Decoder decoder;
  BpeModel model;
  bool map_pieces_to_byte_level = false;  // the pre-tokenizer defers the mapping, the model is in character mode
  AddedTokenMatcher unnormalized_added;  // first matching pass
  AddedTokenMatcher normalized_added;    // second matching pass
  std::vector<std::string> id_text;      // each id's token string (vocabulary key or added content)
  std::vector<std::string> id_bytes;     // what each id decodes to alone (byte-level decoder only)
  std::vector<TokenKind> id_kind;
  std::vector<bool> id_special;
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
                printable(state.id_text[id]), "' and '", printable(text), "')");
    NEXTN_CHECK(state.model_token_ids.emplace(text, id).second, "vocabulary token '", printable(text),
                "' appears twice");
    state.id_kind[id] = TokenKind::kModel;
    state.id_text[id] = text;
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
    state.id_text[token.id] = token.content;
    state.id_special[token.id] = token.special;
  }
}

// Byte mode (one symbol per raw byte) serves byte-level tokenizers whose pre-tokenizer leaves the
// mapping to the model and whose vocabulary has a token for every byte: the same symbols as
// character mode on the mapped text, without building that text.
bool can_use_byte_mode(const Tokenizer::State& state) {
  const TokenizerSpec& spec = state.spec;
  if (!state.pre_tokenizer.defers_byte_level() || spec.byte_fallback) return false;
  if (spec.continuing_subword_prefix.value_or("") != "" || spec.end_of_word_suffix.value_or("") != "") return false;
  for (int byte = 0; byte < 256; ++byte) {
    if (!state.model_token_ids.count(bytes_to_byte_level(std::string(1, char(byte))))) return false;
  }
  return true;
}

std::vector<MergeRule> merge_rules(const Tokenizer::State& state) {
  // Hugging Face: the merged token is left + right without right's continuing-subword prefix.
  const std::size_t prefix_length = state.spec.continuing_subword_prefix.value_or("").size();
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
    NEXTN_CHECK(right.size() >= prefix_length, "merge ", rank, " ('", printable(left), " ", printable(right),
                "'): the right part is shorter than continuing_subword_prefix");
    merges.push_back({find(left, "left part"), find(right, "right part"), find(left + right.substr(prefix_length), "result")});
  }
  return merges;
}

BpeModel build_model(Tokenizer::State& state) {
  const TokenizerSpec& spec = state.spec;
  std::optional<int32_t> unk_id;
  if (spec.unk_token) {
    auto it = state.model_token_ids.find(*spec.unk_token);
    NEXTN_CHECK(it != state.model_token_ids.end(), "model.unk_token '", printable(*spec.unk_token),
                "' is not in the vocabulary");
    unk_id = it->second;
  }
  std::vector<MergeRule> merges = merge_rules(state);
  if (can_use_byte_mode(state)) {
    std::array<int32_t, 256> byte_ids{};
    for (int byte = 0; byte < 256; ++byte) byte_ids[byte] = state.model_token_ids.at(bytes_to_byte_level(std::string(1, char(byte))));
    std::unordered_map<std::string, int32_t> whole_tokens;
    if (spec.ignore_merges) {
      for (const auto& [text, id] : spec.vocab) {
        std::optional<std::string> bytes = byte_level_to_bytes(text);
        if (bytes) whole_tokens.emplace(*bytes, id);
      }
    }
    return BpeModel(byte_ids, std::move(merges), std::move(whole_tokens), spec.ignore_merges);
  }
  state.map_pieces_to_byte_level = state.pre_tokenizer.defers_byte_level();
  BpeCharOptions options;
  options.vocab = state.model_token_ids;
  options.continuing_subword_prefix = spec.continuing_subword_prefix.value_or("");
  options.end_of_word_suffix = spec.end_of_word_suffix.value_or("");
  options.byte_fallback = spec.byte_fallback;
  options.unk_id = unk_id;
  options.fuse_unk = spec.fuse_unk;
  return BpeModel(std::move(options), std::move(merges), spec.ignore_merges);
}

std::optional<int32_t> first_added_token(const Tokenizer::State& state, const std::optional<std::string>& configured,
                                         const std::vector<std::string>& names) {
  if (configured) {
    auto it = state.added_token_ids.find(*configured);
    if (it != state.added_token_ids.end()) return it->second;
    auto model = state.model_token_ids.find(*configured);
    if (model != state.model_token_ids.end()) return model->second;
  }
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
  for (const auto& [text, id] : spec.vocab) {
    // An entry that only repeats an added token (same id, same text) changes nothing.
    if (state.id_kind[id] == TokenKind::kAdded && state.id_text[id] == text) continue;
    vocab.emplace_back(id, text);
  }
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
    std::string flags = cat(token.id, token.special ? " special" : " plain", token.normalized ? " normalized" : " raw");
    // Flags that tokenizers before tokenizer.json conformance could not have: only when set, so
    // that their hashes (written into dataset manifests) stay what they were.
    if (token.single_word) flags += " single_word";
    if (token.lstrip) flags += " lstrip";
    if (token.rstrip) flags += " rstrip";
    hash_field(hash, flags);
    hash_field(hash, token.content);
  }
  const PreTokenizerSpec& pre = spec.pre_tokenizer;
  bool adds_tokens = false;
  for (const PostProcessorStep& step : spec.post_processor.steps) adds_tokens |= step.kind != PostProcessorStep::Kind::kByteLevel;
  const bool legacy_form = pre.is_split_then_byte_level() && spec.normalizer.steps.empty() && !spec.byte_fallback &&
                           !spec.fuse_unk && !spec.continuing_subword_prefix && !spec.end_of_word_suffix && !adds_tokens;
  if (legacy_form) {
    hash_field(hash, cat("splits ", pre.steps.size() - 1));
    for (std::size_t i = 0; i + 1 < pre.steps.size(); ++i) {
      hash_field(hash, pre.steps[i].pattern.is_literal ? "string" : "regex");
      hash_field(hash, pre.steps[i].pattern.pattern);
    }
    hash_field(hash, cat("byte_level_use_regex ", pre.steps.back().use_regex));
  } else {
    hash_field(hash, "components");
    hash_field(hash, write_tokenizer_components_json(spec));
  }
  hash_field(hash, cat("ignore_merges ", spec.ignore_merges));
  return "sha256:" + hash.hex_digest();
}

}  // namespace

PostProcessorSpec TokenizerSpec::byte_level_post_processor() {
  PostProcessorSpec spec;
  spec.present = true;
  PostProcessorStep step;  // ByteLevel, as nextn has always written it
  step.add_prefix_space = true;
  step.trim_offsets = false;
  step.use_regex = true;
  spec.steps.push_back(step);
  return spec;
}

DecoderSpec TokenizerSpec::byte_level_decoder() {
  DecoderSpec spec;
  spec.present = true;
  spec.steps.push_back(DecoderStep{});
  return spec;
}

namespace {

// Hugging Face gives an added token that the model vocabulary also has the vocabulary's id,
// whatever added_tokens says (DeepSeek Coder's file lists byte-level characters such as "õ" as
// added tokens 32000+; they encode as the vocabulary's ids). nextn does the same.
void use_vocabulary_ids_for_added_tokens(TokenizerSpec& spec) {
  std::unordered_map<std::string_view, int32_t> vocab;
  for (const auto& [text, id] : spec.vocab) vocab.emplace(text, id);
  for (AddedToken& token : spec.added_tokens) {
    auto it = vocab.find(token.content);
    if (it != vocab.end()) token.id = it->second;
  }
}

}  // namespace

Tokenizer::Tokenizer(TokenizerSpec spec, TokenizerConfig config) {
  use_vocabulary_ids_for_added_tokens(spec);
  auto state = std::make_shared<State>(std::move(spec), std::move(config));
  int32_t highest = max_id(state->spec);
  NEXTN_CHECK(highest >= 0, "the tokenizer has an empty vocabulary");
  // Ids index tables of highest + 1 entries: an id far past the number of tokens (10^9 in a
  // hand-edited file) would allocate gigabytes for nothing. Real files number their tokens
  // densely; a gap of up to 2^20 ids is allowed.
  const int64_t tokens = static_cast<int64_t>(state->spec.vocab.size() + state->spec.added_tokens.size());
  NEXTN_CHECK(highest < tokens + (int64_t{1} << 20), "token id ", highest, " is far past the vocabulary: the tokenizer has ",
              tokens, " tokens (", state->spec.vocab.size(), " in the model, ", state->spec.added_tokens.size(),
              " added), and ids more than 2^20 above that count are refused");
  const std::size_t table_size = std::size_t(highest) + 1;
  state->id_text.assign(table_size, std::string());
  state->id_kind.assign(table_size, TokenKind::kNone);
  state->id_special.assign(table_size, false);
  add_model_tokens(*state);
  add_added_tokens(*state);
  state->model = build_model(*state);
  if (state->spec.decoder.is_byte_level()) {
    state->id_bytes.resize(table_size);
    for (std::size_t id = 0; id < table_size; ++id) state->id_bytes[id] = byte_level_token_bytes(state->id_text[id]);
  }
  std::vector<AddedToken> unnormalized, normalized;
  std::vector<std::string> normalized_contents;
  for (const AddedToken& token : state->spec.added_tokens) {
    if (!token.normalized) {
      unnormalized.push_back(token);
      continue;
    }
    // Normalized added tokens are matched in normalized text, by their normalized content.
    normalized.push_back(token);
    normalized_contents.push_back(state->normalizer.normalize(token.content));
  }
  state->unnormalized_added = AddedTokenMatcher(unnormalized);
  state->normalized_added = AddedTokenMatcher(normalized, &normalized_contents);
  for (const PostProcessorStep& step : state->spec.post_processor.steps) {
    for (const TemplateSpecialToken& token : step.special_tokens) {
      for (int32_t id : token.ids) {
        NEXTN_CHECK(id < int32_t(table_size) && state->id_kind[id] != TokenKind::kNone, "post_processor: special token '",
                    printable(token.id), "' has id ", id, ", which is not in the vocabulary");
      }
    }
    if (step.kind == PostProcessorStep::Kind::kBert || step.kind == PostProcessorStep::Kind::kRoberta) {
      for (int32_t id : {step.cls_id, step.sep_id}) {
        NEXTN_CHECK(id < int32_t(table_size) && state->id_kind[id] != TokenKind::kNone, "post_processor: id ", id,
                    " is not in the vocabulary");
      }
    }
  }
  state->bos = first_added_token(*state, state->config.bos_token, bos_token_candidates());
  state->eos = first_added_token(*state, state->config.eos_token, eos_token_candidates());
  state->pad = first_added_token(*state, state->config.pad_token, pad_token_candidates());
  state->hash = content_hash(*state);
  state_ = std::move(state);
}

Tokenizer Tokenizer::load(const std::string& tokenizer_json_path) {
  NEXTN_CHECK(io::file_exists(tokenizer_json_path), "tokenizer file '", tokenizer_json_path, "' does not exist");
  TokenizerSpec spec = parse_tokenizer_json(io::read_file(tokenizer_json_path), tokenizer_json_path);
  const std::string config_path = (std::filesystem::path(tokenizer_json_path).parent_path() / "tokenizer_config.json").string();
  TokenizerConfig config = load_tokenizer_config_if_present(config_path);
  try {
    return Tokenizer(std::move(spec), std::move(config));
  } catch (const Error& e) {
    fail(tokenizer_json_path, ": ", e.what());
  }
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

namespace {

// Pre-tokenizes and encodes one stretch of normalized text without added tokens.
void encode_text(const Tokenizer::State& state, std::string_view text, bool at_input_start, PieceArena& arena,
                 std::vector<int32_t>& out) {
  std::vector<std::string_view> pieces;
  state.pre_tokenizer.split(text, pieces, &arena, at_input_start);
  for (std::string_view piece : pieces) {
    if (state.map_pieces_to_byte_level) state.model.encode_piece(bytes_to_byte_level(piece), out);
    else state.model.encode_piece(piece, out);
  }
}

}  // namespace

void Tokenizer::encode_ordinary_append(std::string_view text, std::vector<int32_t>& out) const {
  const State& state = *state_;
  PieceArena arena;
  if (state.normalizer.identity()) {
    encode_text(state, text, true, arena, out);
  } else {
    bool keeps_start = true;
    std::string normalized = state.normalizer.normalize(text, &keeps_start);
    encode_text(state, normalized, keeps_start, arena, out);
  }
}

std::vector<int32_t> Tokenizer::encode_ordinary(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  encode_ordinary_append(text, ids);
  return ids;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const State& state = *state_;
  std::vector<TextSegment> raw_segments, normalized_segments;
  split_on_added_tokens(text, state.unnormalized_added, raw_segments);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  PieceArena arena;
  for (const TextSegment& segment : raw_segments) {
    if (segment.added_id >= 0) {
      ids.push_back(segment.added_id);
      continue;
    }
    std::string_view normalized = segment.text;
    bool keeps_start = true;
    if (!state.normalizer.identity()) normalized = arena.keep(state.normalizer.normalize(segment.text, &keeps_start));
    normalized_segments.clear();
    split_on_added_tokens(normalized, state.normalized_added, normalized_segments);
    for (const TextSegment& part : normalized_segments) {
      if (part.added_id >= 0) ids.push_back(part.added_id);
      else encode_text(state, part.text, segment.offset == 0 && keeps_start && part.offset == 0, arena, ids);
    }
  }
  if (add_special_tokens) ids = tokenizer::add_special_tokens(state.spec.post_processor, std::move(ids));
  return ids;
}

std::vector<std::string> Tokenizer::hugging_face_id_differences() const {
  // Hugging Face ignores the ids of added_tokens: a token the model vocabulary has gets that id,
  // the others the next ids after the vocabulary (its number of entries), in file order.
  const State& state = *state_;
  std::vector<std::string> differences;
  int64_t next_id = int64_t(state.spec.vocab.size());
  std::unordered_map<std::string, int32_t> assigned;
  for (const AddedToken& token : state.spec.added_tokens) {
    int64_t id = 0;
    if (auto it = assigned.find(token.content); it != assigned.end()) id = it->second;
    else if (auto model = state.model_token_ids.find(token.content); model != state.model_token_ids.end()) id = model->second;
    else id = next_id++;
    assigned.emplace(token.content, int32_t(id));
    if (id != token.id) {
      differences.push_back(cat("added token '", printable(token.content), "': id ", token.id, " here, ", id, " in Hugging Face"));
    }
  }
  return differences;
}

bool Tokenizer::decodes_per_token() const { return !state_->id_bytes.empty(); }

void Tokenizer::append_token_bytes(int32_t id, std::string& out) const {
  NEXTN_CHECK(id >= 0 && id < vocab_size() && state_->id_kind[id] != TokenKind::kNone,
              "token id ", id, " is not in the vocabulary (size ", vocab_size(), ")");
  NEXTN_CHECK(decodes_per_token(), "this tokenizer's decoder does not decode token by token");
  out += state_->id_bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const State& state = *state_;
  for (int32_t id : ids) {
    NEXTN_CHECK(id >= 0 && id < vocab_size() && state.id_kind[id] != TokenKind::kNone,
                "token id ", id, " is not in the vocabulary (size ", vocab_size(), ")");
  }
  auto skipped = [&](int32_t id) {
    return skip_special_tokens && state.id_kind[id] == TokenKind::kAdded && state.id_special[id];
  };
  if (decodes_per_token()) {
    std::string out;
    for (int32_t id : ids) {
      if (!skipped(id)) out += state.id_bytes[id];
    }
    return out;
  }
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (!skipped(id)) tokens.push_back(state.id_text[id]);
  }
  return state.decoder.decode(std::move(tokens));
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
    case TokenKind::kAdded:
    case TokenKind::kModel: return state_->id_text[id];
  }
  return std::nullopt;
}

bool Tokenizer::is_added_token(int32_t id) const {
  return id >= 0 && id < vocab_size() && state_->id_kind[id] == TokenKind::kAdded;
}

std::string Tokenizer::hash() const { return state_->hash; }
const TokenizerSpec& Tokenizer::spec() const { return state_->spec; }
const TokenizerConfig& Tokenizer::config() const { return state_->config; }
const PreTokenizer& Tokenizer::pre_tokenizer() const { return state_->pre_tokenizer; }
std::size_t Tokenizer::num_merges() const { return state_->model.num_merges(); }

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

namespace {

// Text that more ids could still change: it ends inside a UTF-8 character or with U+FFFD.
bool ends_incomplete(const std::string& text) {
  return utf8_incomplete_suffix(text) > 0 ||
         (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0);
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
  if (!tokenizer_.decodes_per_token()) {
    // Hugging Face's DecodeStream: decode the window again; hand out what grew past the text
    // already handed out once it is complete, then keep only the last ids as the new window.
    ids_.push_back(id);
    std::string text = tokenizer_.decode(ids_);
    if (text.size() <= pending_.size() || ends_incomplete(text) || text.compare(0, pending_.size(), pending_) != 0) {
      return "";
    }
    std::string ready = text.substr(pending_.size());
    ids_.erase(ids_.begin(), ids_.begin() + std::ptrdiff_t(emitted_));
    emitted_ = ids_.size();
    pending_ = tokenizer_.decode(ids_);
    return ready;
  }
  tokenizer_.append_token_bytes(id, pending_);
  std::size_t keep = utf8_incomplete_suffix(pending_);
  std::string ready = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return ready;
}

std::string StreamDecoder::flush() {
  if (!tokenizer_.decodes_per_token()) {
    std::string text = tokenizer_.decode(ids_);
    std::string rest = text.size() > pending_.size() && text.compare(0, pending_.size(), pending_) == 0
                           ? text.substr(pending_.size())
                           : std::string();
    ids_.clear();
    emitted_ = 0;
    pending_.clear();
    return rest;
  }
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace nextn::tokenizer

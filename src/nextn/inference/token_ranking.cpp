#include "nextn/inference/token_ranking.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>

#include "nextn/io/atomic_file.h"
#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

constexpr const char* kFormat = "nextn-token-ranking";
constexpr int64_t kVersion = 2;

using json = nlohmann::json;

const json& field(const json& root, const char* key, const std::string& path) {
  auto it = root.find(key);
  NEXTN_CHECK(it != root.end(), "token ranking '", path, "': missing field '", key, "'");
  return *it;
}

int64_t integer_field(const json& root, const char* key, const std::string& path) {
  const json& value = field(root, key, path);
  NEXTN_CHECK(value.is_number_integer(), "token ranking '", path, "': '", key, "' must be an integer, found ",
              value.type_name());
  return value.get<int64_t>();
}

std::vector<int64_t> integer_array(const json& root, const char* key, int64_t size, const std::string& path) {
  const json& value = field(root, key, path);
  NEXTN_CHECK(value.is_array(), "token ranking '", path, "': '", key, "' must be an array, found ", value.type_name());
  NEXTN_CHECK(static_cast<int64_t>(value.size()) == size, "token ranking '", path, "': '", key, "' has ", value.size(),
              " entries, vocab_size is ", size);
  std::vector<int64_t> out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    NEXTN_CHECK(value[i].is_number_integer(), "token ranking '", path, "': ", key, "[", i,
                "] must be an integer, found ", value[i].type_name());
    out.push_back(value[i].get<int64_t>());
  }
  return out;
}

// "sha256:" and 64 lower-case hex digits, as Tokenizer::hash() writes it.
void check_tokenizer_hash(const std::string& hash, const std::string& what) {
  const std::string prefix = "sha256:";
  const bool well_formed = hash.size() == prefix.size() + 64 && hash.compare(0, prefix.size(), prefix) == 0 &&
                           std::all_of(hash.begin() + prefix.size(), hash.end(),
                                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  NEXTN_CHECK(well_formed, what, ": 'tokenizer_hash' must be \"sha256:\" and 64 lower-case hex digits, found \"",
              hash, "\"");
}

}  // namespace

int64_t TokenRanking::tokens_counted() const { return std::accumulate(counts.begin(), counts.end(), int64_t{0}); }

std::vector<int64_t> TokenRanking::most_frequent(int64_t k) const {
  NEXTN_CHECK(k >= 1 && k <= vocab_size(), "a draft vocabulary of ", k, " tokens must be in [1, ", vocab_size(),
              "] (the ranked vocabulary's size)");
  return std::vector<int64_t>(ranked_ids.begin(), ranked_ids.begin() + k);
}

TokenRanking rank_tokens(const std::vector<int64_t>& count_per_id, std::string source, std::string tokenizer_hash) {
  NEXTN_CHECK(!count_per_id.empty(), "ranking tokens: no token ids");
  TokenRanking ranking;
  ranking.ranked_ids.resize(count_per_id.size());
  std::iota(ranking.ranked_ids.begin(), ranking.ranked_ids.end(), int64_t{0});
  for (size_t id = 0; id < count_per_id.size(); ++id) {
    NEXTN_CHECK(count_per_id[id] >= 0, "ranking tokens: token ", id, " has a negative count ", count_per_id[id]);
  }
  std::stable_sort(ranking.ranked_ids.begin(), ranking.ranked_ids.end(),
                   [&](int64_t a, int64_t b) { return count_per_id[a] > count_per_id[b]; });
  for (int64_t id : ranking.ranked_ids) ranking.counts.push_back(count_per_id[id]);
  ranking.source = std::move(source);
  ranking.tokenizer_hash = std::move(tokenizer_hash);
  check_tokenizer_hash(ranking.tokenizer_hash, "ranking tokens");
  return ranking;
}

void save_token_ranking(const std::string& path, const TokenRanking& ranking) {
  nlohmann::ordered_json root;
  root["format"] = kFormat;
  root["version"] = kVersion;
  root["vocab_size"] = ranking.vocab_size();
  root["tokens_counted"] = ranking.tokens_counted();
  root["source"] = ranking.source;
  root["tokenizer_hash"] = ranking.tokenizer_hash;
  root["ranked_token_ids"] = ranking.ranked_ids;
  root["counts"] = ranking.counts;
  io::write_file_atomic(path, root.dump() + "\n");
}

TokenRanking load_token_ranking(const std::string& path) {
  NEXTN_CHECK(io::file_exists(path), "token ranking '", path, "' does not exist");
  const json root = io::parse_json_rejecting_duplicate_keys(io::read_file(path), "token ranking '" + path + "'");
  NEXTN_CHECK(root.is_object(), "token ranking '", path, "': expected a JSON object");
  for (auto it = root.begin(); it != root.end(); ++it) {
    static const char* known[] = {"format",         "version",          "vocab_size", "tokens_counted", "source",
                                  "tokenizer_hash", "ranked_token_ids", "counts"};
    NEXTN_CHECK(std::any_of(std::begin(known), std::end(known), [&](const char* k) { return it.key() == k; }),
                "token ranking '", path, "': unknown field '", it.key(), "'");
  }
  const json& format = field(root, "format", path);
  NEXTN_CHECK(format.is_string() && format.get<std::string>() == kFormat, "token ranking '", path,
              "': 'format' must be \"", kFormat, "\", found ", format.dump());
  const int64_t version = integer_field(root, "version", path);
  NEXTN_CHECK(version != 1, "token ranking '", path, "': version 1 does not say which tokenizer made it; rank "
              "again with `nextn draft-vocab`");
  NEXTN_CHECK(version == kVersion, "token ranking '", path, "': version ", version, " is not supported (", kVersion,
              " is)");
  const int64_t vocab_size = integer_field(root, "vocab_size", path);
  NEXTN_CHECK(vocab_size >= 1 && vocab_size <= (int64_t{1} << 31), "token ranking '", path, "': vocab_size ",
              vocab_size, " is out of range");
  const json& source = field(root, "source", path);
  NEXTN_CHECK(source.is_string(), "token ranking '", path, "': 'source' must be a string");
  const json& tokenizer_hash = field(root, "tokenizer_hash", path);
  NEXTN_CHECK(tokenizer_hash.is_string(), "token ranking '", path, "': 'tokenizer_hash' must be a string");

  TokenRanking ranking;
  ranking.source = source.get<std::string>();
  ranking.tokenizer_hash = tokenizer_hash.get<std::string>();
  check_tokenizer_hash(ranking.tokenizer_hash, "token ranking '" + path + "'");
  ranking.ranked_ids = integer_array(root, "ranked_token_ids", vocab_size, path);
  ranking.counts = integer_array(root, "counts", vocab_size, path);
  std::vector<bool> seen(static_cast<size_t>(vocab_size), false);
  int64_t sum = 0;
  for (int64_t i = 0; i < vocab_size; ++i) {
    const int64_t id = ranking.ranked_ids[i];
    NEXTN_CHECK(id >= 0 && id < vocab_size, "token ranking '", path, "': ranked_token_ids[", i, "] = ", id,
                " is outside [0, ", vocab_size, ")");
    NEXTN_CHECK(!seen[id], "token ranking '", path, "': token ", id, " is ranked twice (again at ", i, ")");
    seen[id] = true;
    const int64_t count = ranking.counts[i];
    NEXTN_CHECK(count >= 0, "token ranking '", path, "': counts[", i, "] = ", count, " is negative");
    NEXTN_CHECK(!__builtin_add_overflow(sum, count, &sum), "token ranking '", path, "': the counts overflow");
    if (i > 0) {
      const int64_t before = ranking.counts[i - 1];
      NEXTN_CHECK(count <= before, "token ranking '", path, "': counts[", i, "] = ", count, " exceeds counts[", i - 1,
                  "] = ", before, " (the ranking must be by descending count)");
      NEXTN_CHECK(count < before || ranking.ranked_ids[i - 1] < id, "token ranking '", path, "': tokens ",
                  ranking.ranked_ids[i - 1], " and ", id, " have the same count but are not in id order");
    }
  }
  const int64_t counted = integer_field(root, "tokens_counted", path);
  NEXTN_CHECK(counted == sum, "token ranking '", path, "': tokens_counted is ", counted, " but the counts sum to ", sum);
  return ranking;
}

TokenRanking load_token_ranking_for(const std::string& path, int64_t vocab_size, const std::string& tokenizer_hash) {
  TokenRanking ranking = load_token_ranking(path);
  NEXTN_CHECK(ranking.vocab_size() == vocab_size, "'", path, "' ranks ", ranking.vocab_size(),
              " tokens but the model's vocab_size is ", vocab_size, " (rank again with `nextn draft-vocab`)");
  NEXTN_CHECK(ranking.tokenizer_hash == tokenizer_hash, "'", path, "' ranks the tokens of another tokenizer (",
              ranking.tokenizer_hash, ", the model's is ", tokenizer_hash, "): rank again with `nextn draft-vocab`");
  return ranking;
}

}  // namespace nextn::inference

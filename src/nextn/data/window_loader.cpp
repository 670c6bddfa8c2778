#include "nextn/data/window_loader.h"

#include <algorithm>

#include "nextn/util/error.h"

namespace nextn::data {
namespace {

constexpr const char* kLoaderStateFormat = "nextn-window-loader-v1";

uint64_t mix64(uint64_t x) {  // SplitMix64's finaliser: a bijection that scrambles every bit
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// A uniform integer in [0, n) for window k: a counter-based stream, so any window can be
// computed without drawing the ones before it. Rejection keeps it exactly uniform.
int64_t uniform_below(uint64_t seed, uint64_t k, uint64_t n) {
  const uint64_t reject_below = (0 - n) % n;  // 2^64 mod n
  uint64_t stream = mix64(seed ^ mix64(k));
  for (uint64_t attempt = 0;; ++attempt) {
    uint64_t r = mix64(stream + attempt * 0xD1B54A32D192ED03ULL);
    if (r >= reject_below) return int64_t(r % n);
  }
}

Batch make_batch(const TokenDataset& dataset, Split split, const std::vector<std::pair<std::size_t, int64_t>>& starts,
                 int64_t window) {
  const int64_t rows = int64_t(starts.size());
  const int64_t length = window + 1;
  Batch batch;
  batch.tokens = torch::empty({rows, length}, torch::kInt64);
  batch.segment_ids = torch::empty({rows, length}, torch::kInt32);
  int64_t* tokens = batch.tokens.data_ptr<int64_t>();
  int32_t* segments = batch.segment_ids.data_ptr<int32_t>();
  const std::vector<TokenShard>& shards = dataset.shards(split);
  for (int64_t row = 0; row < rows; ++row) {
    const auto& [shard, start] = starts[row];
    shards[shard].copy_to(start, length, tokens + row * length);
    compute_segment_ids(tokens + row * length, length, dataset.eos_id(), segments + row * length);
  }
  return batch;
}

}  // namespace

WindowLoader::WindowLoader(TokenDataset dataset, Split split, int64_t batch_size, int64_t window, uint64_t seed)
    : dataset_(std::move(dataset)), split_(split), batch_size_(batch_size), window_(window), seed_(seed) {
  NEXTN_CHECK(batch_size > 0, "batch size must be positive, got ", batch_size);
  NEXTN_CHECK(window > 0, "window must be positive, got ", window);
  const std::vector<TokenShard>& shards = dataset_.shards(split);
  for (std::size_t s = 0; s < shards.size(); ++s) {
    int64_t starts = shards[s].size() - window;  // a window needs T+1 tokens
    if (starts <= 0) continue;
    total_starts_ += starts;
    shard_of_range_.push_back(s);
    range_end_.push_back(total_starts_);
  }
  NEXTN_CHECK(total_starts_ > 0, "the ", to_string(split), " split of '", dataset_.dir(), "' has no shard with ",
              window + 1, " tokens (", dataset_.num_tokens(split), " tokens in ", shards.size(),
              " shards); use a smaller window or more data");
  fingerprint_ = dataset_.fingerprint(split);
}

std::pair<std::size_t, int64_t> WindowLoader::window_start(uint64_t k) const {
  int64_t global = uniform_below(seed_, k, uint64_t(total_starts_));
  std::size_t range = std::size_t(std::upper_bound(range_end_.begin(), range_end_.end(), global) - range_end_.begin());
  int64_t range_begin = range == 0 ? 0 : range_end_[range - 1];
  return {shard_of_range_[range], global - range_begin};
}

Batch WindowLoader::next() { return next_slice(0, batch_size_); }

Batch WindowLoader::next_slice(int64_t first_row, int64_t rows) {
  NEXTN_CHECK(first_row >= 0 && rows > 0 && first_row + rows <= batch_size_, "rows [", first_row, ", ",
              first_row + rows, ") are outside a batch of ", batch_size_);
  std::vector<std::pair<std::size_t, int64_t>> starts;
  for (int64_t row = first_row; row < first_row + rows; ++row) starts.push_back(window_start(windows_drawn_ + row));
  windows_drawn_ += uint64_t(batch_size_);
  return make_batch(dataset_, split_, starts, window_);
}

nlohmann::json WindowLoader::state() const {
  return {{"format", kLoaderStateFormat}, {"split", to_string(split_)}, {"window", window_},
          {"seed", seed_},                {"windows_drawn", windows_drawn_}, {"dataset", fingerprint_}};
}

void WindowLoader::restore(const nlohmann::json& state) {
  auto field = [&](const char* key) -> const nlohmann::json& {
    NEXTN_CHECK(state.is_object() && state.contains(key), "window loader state lacks '", key, "'");
    return state.at(key);
  };
  NEXTN_CHECK(field("format") == kLoaderStateFormat, "not a window loader state (format ", field("format").dump(), ")");
  NEXTN_CHECK(field("split") == to_string(split_), "window loader state is for the ", field("split").dump(),
              " split, this loader reads ", to_string(split_));
  NEXTN_CHECK(field("window").is_number_integer() && field("window").get<int64_t>() == window_,
              "window loader state has window ", field("window").dump(), ", this loader uses ", window_);
  NEXTN_CHECK(field("seed").is_number_unsigned() && field("seed").get<uint64_t>() == seed_,
              "window loader state has seed ", field("seed").dump(), ", this loader uses ", seed_);
  NEXTN_CHECK(field("dataset") == fingerprint_, "window loader state was saved on other data (",
              field("dataset").dump(), "), this loader reads ", fingerprint_);
  NEXTN_CHECK(field("windows_drawn").is_number_unsigned(), "window loader state: windows_drawn must be a count");
  windows_drawn_ = field("windows_drawn").get<uint64_t>();
}

EvalWindows::EvalWindows(TokenDataset dataset, Split split, int64_t batch_size, int64_t window)
    : dataset_(std::move(dataset)), split_(split), batch_size_(batch_size), window_(window) {
  NEXTN_CHECK(batch_size > 0, "batch size must be positive, got ", batch_size);
  NEXTN_CHECK(window > 0, "window must be positive, got ", window);
  const std::vector<TokenShard>& shards = dataset_.shards(split);
  for (std::size_t s = 0; s < shards.size(); ++s) {
    for (int64_t start = 0; start + window + 1 <= shards[s].size(); start += window + 1) {
      windows_.emplace_back(s, start);
    }
  }
}

bool EvalWindows::next(Batch& batch) {
  if (next_window_ >= windows_.size()) return false;
  std::size_t end = std::min(windows_.size(), next_window_ + std::size_t(batch_size_));
  std::vector<std::pair<std::size_t, int64_t>> starts(windows_.begin() + next_window_, windows_.begin() + end);
  next_window_ = end;
  batch = make_batch(dataset_, split_, starts, window_);
  return true;
}

void EvalWindows::reset() { next_window_ = 0; }

}  // namespace nextn::data

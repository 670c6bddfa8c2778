// Random training windows. Each window is T+1 consecutive tokens of one shard of a split, its
// start drawn uniformly from every possible start in the split (with replacement). Window number
// k is a pure function of (seed, k) (a counter-based generator), so the loader's whole state is
// the seed and the number of windows drawn: state() is a few bytes of JSON, and a loader
// restored from it continues with exactly the batches the original would have produced.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "nextn/data/batch.h"
#include "nextn/data/token_dataset.h"

namespace nextn::data {

class WindowLoader {
 public:
  // window: T (each row holds T+1 tokens). Errors when the split has no shard of T+1 tokens.
  WindowLoader(TokenDataset dataset, Split split, int64_t batch_size, int64_t window, uint64_t seed);

  Batch next();
  // Rows [first_row, first_row + rows) of the next batch; the loader moves past the whole batch.
  // Data-parallel rank r of W, with a loader of batch W x b, takes next_slice(r * b, b): the ranks
  // read disjoint parts of one global batch, the same windows one process with batch W x b
  // reads, and every rank's loader state stays the same.
  Batch next_slice(int64_t first_row, int64_t rows);

  // {"format", "split", "window", "seed", "windows_drawn", "dataset"}. restore() checks that the
  // state belongs to this split, window, seed and dataset content, and errors otherwise.
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

  int64_t windows_drawn() const { return int64_t(windows_drawn_); }
  int64_t batch_size() const { return batch_size_; }
  int64_t window() const { return window_; }
  // Where window number k starts: (shard, offset). Exposed for tests.
  std::pair<std::size_t, int64_t> window_start(uint64_t k) const;

 private:
  TokenDataset dataset_;
  Split split_;
  int64_t batch_size_;
  int64_t window_;
  uint64_t seed_;
  uint64_t windows_drawn_ = 0;
  std::vector<std::size_t> shard_of_range_;  // shards that can hold a window
  std::vector<int64_t> range_end_;           // cumulative count of window starts
  int64_t total_starts_ = 0;
  std::string fingerprint_;
};

// Every window of a split in a fixed order, for evaluation: non-overlapping windows of T+1
// tokens, shard by shard from the start of each (the tail of a shard shorter than T+1 is left
// out). The last batch may have fewer rows.
class EvalWindows {
 public:
  EvalWindows(TokenDataset dataset, Split split, int64_t batch_size, int64_t window);

  bool next(Batch& batch);  // false when every window was served
  void reset();
  int64_t num_windows() const { return int64_t(windows_.size()); }
  int64_t num_batches() const { return (num_windows() + batch_size_ - 1) / batch_size_; }

 private:
  TokenDataset dataset_;
  Split split_;
  int64_t batch_size_;
  int64_t window_;
  std::vector<std::pair<std::size_t, int64_t>> windows_;  // (shard, start)
  std::size_t next_window_ = 0;
};

}  // namespace nextn::data

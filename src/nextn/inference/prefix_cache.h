// Prompt chunks kept for reuse (vLLM's automatic prefix caching, SGLang's RadixAttention): the
// main model's KV cache entries and hidden states h^0 of a prompt's full chunks and of its last
// one (prompt_prefill.h), keyed by every token up to the chunk's end; a prompt's last chunk also
// keeps the logits at its last position. A chunk's entries depend on those tokens alone (causal
// attention), and a prompt's chunks have bounds fixed by the prompt, so a later prompt that starts
// with the same tokens copies them in instead of computing them and gets exactly the bits it
// would have computed: outputs do not change, only the time to the first token. The same prompt
// again (the n choices of a request) copies all of it and runs no forward at all. Least recently used chunks leave first once the cache holds max_bytes, a chunk
// always after the chunk before it in its prompt (a prefix's later chunks go before its first,
// which every prompt sharing it needs). Not thread-safe: one engine thread uses it. The kept
// tensors live on the model's device (GPU memory on CUDA).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "nextn/inference/kv_cache.h"

namespace nextn::inference {

class PrefixCache {
 public:
  // max_bytes >= 0 (0 keeps nothing). One cache serves prompts run in chunks of `chunk` tokens
  // (a prompt's last chunk depends on the bounds of the chunks before it, which the chunk size sets).
  PrefixCache(int64_t max_bytes, int64_t chunk);

  // Copies the entries of prompt positions [start, end) into `cache` (which holds exactly `start`
  // entries) and returns their h^0 [1, end - start, hidden] (the kept tensor: read, do not
  // modify), if a chunk for prompt[0, end) starting at `start` is kept, and with `logits` given,
  // if it was kept with its last position's logits, which go there ([1, 1, V], the kept tensor);
  // an undefined tensor otherwise (nothing copied).
  torch::Tensor restore(const std::vector<int64_t>& prompt, int64_t start, int64_t end, KvCache& cache,
                        torch::Tensor* logits = nullptr);
  // Keeps the entries [start, end) that `cache` holds (its length is end) and their h^0 `hidden`
  // [1, end - start, hidden] for prompt[0, end), and `logits` [1, 1, V] at position end - 1 when
  // defined (a prompt's last chunk; added to the chunk if it was kept without). Evicts the least
  // recently used chunks to fit; a chunk larger than max_bytes is not kept.
  void keep(const std::vector<int64_t>& prompt, int64_t start, int64_t end, const KvCache& cache,
            const torch::Tensor& hidden, const torch::Tensor& logits = {});

  // Whether restore() would copy this chunk (with its logits where `with_logits`): touches nothing,
  // counts nothing.
  bool holds(const std::vector<int64_t>& prompt, int64_t start, int64_t end, bool with_logits);

  int64_t max_bytes() const { return max_bytes_; }
  int64_t chunk() const { return chunk_; }
  int64_t bytes() const { return bytes_; }
  int64_t chunks() const { return static_cast<int64_t>(entries_.size()); }
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }

 private:
  struct Chunk {
    uint64_t key = 0;
    std::vector<int64_t> tokens;  // prompt[0, end): compared on a hit, so a hash collision cannot match
    int64_t start = 0;
    std::vector<torch::Tensor> c_kv, k_pe;  // per layer [end - start, width], copies
    torch::Tensor hidden;                   // [1, end - start, hidden], a copy
    torch::Tensor logits;                   // [1, 1, V] at end - 1, a copy; undefined unless a prompt's last
    int64_t bytes = 0;
  };
  using Order = std::list<Chunk>;  // most recently used first

  // The chunk of prompt[0, end) from `start` (any start: -1) whose prefix_key is `key`, or order_.end().
  Order::iterator find(uint64_t key, const std::vector<int64_t>& prompt, int64_t start, int64_t end);
  // Marks a chunk used: right after the chunk before it in its prompt where that one is kept (so
  // that eviction, from the back, takes a prefix's last chunks first), at the front otherwise.
  void touch(Order::iterator chunk, const std::vector<int64_t>& prompt);
  void evict_to(int64_t limit);

  // nextn::Error unless [start, end) is one of a prompt's chunks: a full one, or its last one.
  void check_bounds(const std::vector<int64_t>& prompt, int64_t start, int64_t end) const;

  int64_t max_bytes_;
  int64_t chunk_;
  int64_t bytes_ = 0;
  int64_t hits_ = 0, misses_ = 0;
  Order order_;
  std::unordered_multimap<uint64_t, Order::iterator> entries_;
};

// FNV-1a over the token ids of prompt[0, end).
uint64_t prefix_key(const std::vector<int64_t>& prompt, int64_t end);

}  // namespace nextn::inference

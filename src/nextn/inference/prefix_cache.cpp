#include "nextn/inference/prefix_cache.h"

#include <algorithm>

#include "nextn/util/error.h"

namespace nextn::inference {

uint64_t prefix_key(const std::vector<int64_t>& prompt, int64_t end) {
  uint64_t hash = 14695981039346656037ull;
  for (int64_t i = 0; i < end; ++i) {
    auto id = static_cast<uint64_t>(prompt[static_cast<size_t>(i)]);
    for (int byte = 0; byte < 8; ++byte, id >>= 8) {
      hash ^= id & 0xff;
      hash *= 1099511628211ull;
    }
  }
  return hash;
}

PrefixCache::PrefixCache(int64_t max_bytes, int64_t chunk) : max_bytes_(max_bytes), chunk_(chunk) {
  NEXTN_CHECK(max_bytes >= 0, "the prefix cache's size must be >= 0 bytes, got ", max_bytes);
  NEXTN_CHECK(chunk >= 1, "the prefix cache's chunk must be at least 1 token, got ", chunk);
}

void PrefixCache::check_bounds(const std::vector<int64_t>& prompt, int64_t start, int64_t end) const {
  const auto length = static_cast<int64_t>(prompt.size());
  NEXTN_CHECK(0 <= start && start < end && end <= length, "prompt positions [", start, ", ", end,
              ") are outside a prompt of ", length, " tokens");
  NEXTN_CHECK(start % chunk_ == 0 && (end - start == chunk_ || (end == length && end - start < chunk_)),
              "prompt positions [", start, ", ", end, ") are not a chunk of ", chunk_, " tokens of a prompt of ", length);
}

PrefixCache::Order::iterator PrefixCache::find(uint64_t key, const std::vector<int64_t>& prompt, int64_t start,
                                               int64_t end) {
  auto [first, last] = entries_.equal_range(key);
  for (auto it = first; it != last; ++it) {
    const Chunk& chunk = *it->second;
    if ((start < 0 || chunk.start == start) && static_cast<int64_t>(chunk.tokens.size()) == end &&
        std::equal(chunk.tokens.begin(), chunk.tokens.end(), prompt.begin())) {
      return it->second;
    }
  }
  return order_.end();
}

bool PrefixCache::holds(const std::vector<int64_t>& prompt, int64_t start, int64_t end, bool with_logits) {
  check_bounds(prompt, start, end);
  auto it = find(prefix_key(prompt, end), prompt, start, end);
  return it != order_.end() && (!with_logits || it->logits.defined());
}

torch::Tensor PrefixCache::restore(const std::vector<int64_t>& prompt, int64_t start, int64_t end, KvCache& cache,
                                   torch::Tensor* logits) {
  check_bounds(prompt, start, end);
  NEXTN_CHECK(cache.length() == start && cache.batch() == 1, "a prefix chunk from ", start,
              " needs a one-sequence cache holding ", start, " entries, it holds ", cache.length());
  auto it = find(prefix_key(prompt, end), prompt, start, end);
  if (it == order_.end() || (logits != nullptr && !it->logits.defined())) {
    ++misses_;
    return {};
  }
  NEXTN_CHECK(cache.num_layers() == static_cast<int64_t>(it->c_kv.size()) && cache.free_slots() >= end - start &&
                  cache.slot(0).c_kv.scalar_type() == it->c_kv.front().scalar_type() &&
                  cache.slot(0).c_kv.device() == it->c_kv.front().device(),
              "the kept prefix chunk does not fit this KV cache (layers, room, dtype or device)");
  for (int64_t layer = 0; layer < cache.num_layers(); ++layer) {
    const LatentKvSlot slot = cache.slot(layer);
    slot.c_kv[0].narrow(0, start, end - start).copy_(it->c_kv[static_cast<size_t>(layer)]);
    slot.k_pe[0].narrow(0, start, end - start).copy_(it->k_pe[static_cast<size_t>(layer)]);
  }
  cache.advance(end - start);
  touch(it, prompt);
  ++hits_;
  if (logits != nullptr) *logits = it->logits;
  return it->hidden;
}

void PrefixCache::touch(Order::iterator chunk, const std::vector<int64_t>& prompt) {
  // The chunk before it in its prompt: the one that ends where it starts (a prompt's last chunk
  // may be shorter than the chunks before it).
  auto parent = chunk->start > 0 ? find(prefix_key(prompt, chunk->start), prompt, -1, chunk->start) : order_.end();
  if (parent == order_.end()) {
    order_.splice(order_.begin(), order_, chunk);
  } else if (std::next(parent) != chunk) {
    order_.splice(std::next(parent), order_, chunk);
  }
}

void PrefixCache::keep(const std::vector<int64_t>& prompt, int64_t start, int64_t end, const KvCache& cache,
                       const torch::Tensor& hidden, const torch::Tensor& logits) {
  check_bounds(prompt, start, end);
  NEXTN_CHECK(cache.length() == end && cache.batch() == 1, "keeping a prefix chunk up to ", end,
              " needs a one-sequence cache holding ", end, " entries, it holds ", cache.length());
  NEXTN_CHECK(hidden.dim() == 3 && hidden.size(0) == 1 && hidden.size(1) == end - start, "hidden states [1, ",
              end - start, ", hidden] expected, got ", hidden.sizes());
  NEXTN_CHECK(!logits.defined() || (logits.dim() == 3 && logits.size(0) == 1 && logits.size(1) == 1),
              "logits [1, 1, V] expected, got ", logits.sizes());
  const int64_t logits_bytes = logits.defined() ? logits.numel() * logits.element_size() : 0;
  const uint64_t key = prefix_key(prompt, end);
  if (auto kept = find(key, prompt, start, end); kept != order_.end()) {
    touch(kept, prompt);
    // Kept as a longer prompt's chunk, now a prompt's last: its logits join it if both fit.
    if (logits.defined() && !kept->logits.defined() && kept->bytes + logits_bytes <= max_bytes_) {
      kept->logits = logits.clone();
      kept->bytes += logits_bytes;
      bytes_ += logits_bytes;
      evict_to(max_bytes_);
    }
    return;
  }
  // The chunk's size before copying anything: one larger than the budget is not kept.
  int64_t bytes = end * static_cast<int64_t>(sizeof(int64_t)) + hidden.numel() * hidden.element_size() + logits_bytes;
  for (int64_t layer = 0; layer < cache.num_layers(); ++layer) {
    const LatentKvSlot slot = cache.slot(layer);
    bytes += (end - start) * (slot.c_kv.size(2) + slot.k_pe.size(2)) * slot.c_kv.element_size();
  }
  if (bytes > max_bytes_) return;
  evict_to(max_bytes_ - bytes);
  Chunk chunk;
  chunk.key = key;
  chunk.tokens.assign(prompt.begin(), prompt.begin() + end);
  chunk.start = start;
  chunk.bytes = bytes;
  for (int64_t layer = 0; layer < cache.num_layers(); ++layer) {
    chunk.c_kv.push_back(cache.c_kv(layer)[0].narrow(0, start, end - start).clone());
    chunk.k_pe.push_back(cache.k_pe(layer)[0].narrow(0, start, end - start).clone());
  }
  chunk.hidden = hidden.clone();
  if (logits.defined()) chunk.logits = logits.clone();
  bytes_ += chunk.bytes;
  order_.push_front(std::move(chunk));
  entries_.emplace(order_.front().key, order_.begin());
  touch(order_.begin(), prompt);
}

void PrefixCache::evict_to(int64_t limit) {
  while (bytes_ > limit && !order_.empty()) {
    const Chunk& oldest = order_.back();
    auto [first, last] = entries_.equal_range(oldest.key);
    for (auto it = first; it != last; ++it) {
      if (it->second == std::prev(order_.end())) {
        entries_.erase(it);
        break;
      }
    }
    bytes_ -= oldest.bytes;
    order_.pop_back();
  }
}

}  // namespace nextn::inference

#include "nextn/inference/kv_cache.h"

#include "nextn/util/error.h"

namespace nextn::inference {

KvCache::KvCache(int64_t num_layers, int64_t batch, int64_t capacity, int64_t kv_lora_rank, int64_t rope_dim,
                 const torch::TensorOptions& options)
    : batch_(batch), capacity_(capacity) {
  NEXTN_CHECK(num_layers > 0 && batch > 0 && capacity > 0, "KV cache needs positive layers, batch and capacity, got ",
              num_layers, ", ", batch, ", ", capacity);
  for (int64_t i = 0; i < num_layers; ++i) {
    // Zero-filled rather than empty: dead entries are never read, but zeros keep tools and sanitizers
    // from ever seeing uninitialised memory.
    c_kv_.push_back(torch::zeros({batch, capacity, kv_lora_rank}, options));
    k_pe_.push_back(torch::zeros({batch, capacity, rope_dim}, options));
  }
}

KvCache KvCache::for_main_model(const ModelConfig& config, int64_t batch, int64_t capacity,
                                const torch::TensorOptions& options) {
  return KvCache(config.num_hidden_layers, batch, capacity, config.kv_lora_rank, config.qk_rope_head_dim, options);
}

KvCache KvCache::for_mtp_module(const ModelConfig& config, int64_t batch, int64_t capacity,
                                const torch::TensorOptions& options) {
  return KvCache(1, batch, capacity, config.kv_lora_rank, config.qk_rope_head_dim, options);
}

LatentKvSlot KvCache::slot(int64_t layer) const {
  NEXTN_CHECK(layer >= 0 && layer < num_layers(), "KV cache has no layer ", layer);
  return {c_kv_[layer], k_pe_[layer], length_, torch::Tensor()};
}

void KvCache::advance(int64_t count) {
  NEXTN_CHECK(count >= 0 && length_ + count <= capacity_, "KV cache overflow: ", length_, " + ", count,
              " tokens exceed its capacity of ", capacity_);
  length_ += count;
}

void KvCache::truncate(int64_t length) {
  NEXTN_CHECK(length >= 0 && length <= length_, "KV cache cannot be truncated to ", length, " tokens: it holds ",
              length_);
  length_ = length;
}

void KvCache::keep_path(int64_t start, const std::vector<int64_t>& rows) {
  const auto kept = static_cast<int64_t>(rows.size());
  NEXTN_CHECK(start >= 0 && start + kept <= length_, "KV cache cannot keep ", kept, " tree entries from ", start,
              ": it holds ", length_);
  for (int64_t i = 0; i < kept; ++i) {
    NEXTN_CHECK(rows[i] >= i && start + rows[i] < length_ && (i == 0 || rows[i] > rows[i - 1]),
                "tree entries to keep must be increasing and held by the cache, got ", rows[i], " at ", i);
  }
  if (kept > 0) {
    auto index = torch::tensor(rows, torch::kLong).add_(start).to(c_kv_[0].device());
    for (size_t layer = 0; layer < c_kv_.size(); ++layer) {
      for (auto* storage : {&c_kv_[layer], &k_pe_[layer]}) {
        auto rows_kept = storage->index_select(1, index);  // a copy: sources and targets may overlap
        storage->narrow(1, start, kept).copy_(rows_kept);
      }
    }
  }
  length_ = start + kept;
}

torch::Tensor KvCache::c_kv(int64_t layer) const { return slot(layer).c_kv.narrow(1, 0, length_); }
torch::Tensor KvCache::k_pe(int64_t layer) const { return slot(layer).k_pe.narrow(1, 0, length_); }

int64_t KvCache::bytes_per_token() const {
  if (c_kv_.empty()) return 0;
  const int64_t values = c_kv_[0].size(2) + k_pe_[0].size(2);
  return values * num_layers() * static_cast<int64_t>(c_kv_[0].element_size());
}

int64_t KvCache::bytes_allocated() const {
  int64_t total = 0;
  for (size_t i = 0; i < c_kv_.size(); ++i) {
    total += c_kv_[i].numel() * c_kv_[i].element_size() + k_pe_[i].numel() * k_pe_[i].element_size();
  }
  return total;
}

}  // namespace nextn::inference

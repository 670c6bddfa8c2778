// The latent KV cache of MLA in its absorbed form (DeepSeek-V2 section 2.1.2, DeepSeek-V3 section
// 2.1.1): per layer and token only the normalised c_kv (kv_lora_rank values) and the rotated,
// head-shared k_pe (qk_rope_head_dim values) are kept; per-head keys and values are never stored.
// That is (kv_lora_rank + qk_rope_head_dim) x layers x dtype size bytes per token: 576 values per
// layer in DeepSeek-V3 instead of 128 heads x (192 + 128) for a naive cache.
//
// Storage is preallocated to a fixed capacity, so appending never reallocates, and rolling back
// (speculative decoding's rejected drafts) only moves the length: entries past it are dead and
// overwritten by the next append.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "nextn/config/model_config.h"
#include "nextn/model/mla_attention.h"

namespace nextn::inference {

class KvCache {
 public:
  KvCache() = default;
  // `options` gives dtype and device (those of the model's weights).
  KvCache(int64_t num_layers, int64_t batch, int64_t capacity, int64_t kv_lora_rank, int64_t rope_dim,
          const torch::TensorOptions& options);
  // The main model's cache (num_hidden_layers layers), and an MTP module's (its one block).
  static KvCache for_main_model(const ModelConfig& config, int64_t batch, int64_t capacity,
                                const torch::TensorOptions& options);
  static KvCache for_mtp_module(const ModelConfig& config, int64_t batch, int64_t capacity,
                                const torch::TensorOptions& options);

  int64_t num_layers() const { return static_cast<int64_t>(c_kv_.size()); }
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }   // tokens held, the same in every layer
  int64_t free_slots() const { return capacity_ - length_; }

  // Layer `layer`'s storage and the current length; forward_cached writes new tokens from there.
  LatentKvSlot slot(int64_t layer) const;
  // After every layer has written `count` new tokens.
  void advance(int64_t count);
  // Forgets every token at index >= length (a rollback); length must not exceed the current one.
  void truncate(int64_t length);
  void clear() { length_ = 0; }
  // After a tree of drafts was appended from index `start` (TreeSpan): keeps entries start + rows[i]
  // as entries start + i (rows increasing, the accepted path) and forgets the rest.
  void keep_path(int64_t start, const std::vector<int64_t>& rows);

  // The valid entries of one layer, [B, length, .] views (for tests and inspection).
  torch::Tensor c_kv(int64_t layer) const;
  torch::Tensor k_pe(int64_t layer) const;

  // Bytes one token occupies over all layers: (kv_lora_rank + rope_dim) x layers x element size.
  int64_t bytes_per_token() const;
  // Bytes actually allocated: capacity x batch x bytes_per_token().
  int64_t bytes_allocated() const;

 private:
  std::vector<torch::Tensor> c_kv_;  // per layer [B, capacity, kv_lora_rank]
  std::vector<torch::Tensor> k_pe_;  // per layer [B, capacity, rope_dim]
  int64_t batch_ = 0;
  int64_t capacity_ = 0;
  int64_t length_ = 0;
};

}  // namespace nextn::inference

// Multi-token prediction modules, two kinds (config key mtp_kind).
//
// Sequential (DeepSeek-V3 section 2.2, Eq. 21-23), module k = 1..D at position i:
//   h'_i^k = eh_proj([enorm(Emb(t_{i+k})) ; hnorm(h_i^{k-1})])     embedding FIRST, as in the
//                                                                     released weights (FACTS.md)
//   h^k_{1:T-k} = TRM_k(h'^k_{1:T-k})
//   P^k_{i+k+1} = OutHead(shared_head.norm(h_i^k))                    shared embedding and head
// Parallel (Gloeckle et al. 2024): head k runs its own block on the trunk's last hidden state
// h^0 and predicts t_{i+k+1} through its own norm and the shared head.
#pragma once

#include <torch/torch.h>

#include "nextn/config/model_config.h"
#include "nextn/model/decoder_layer.h"
#include "nextn/model/linear.h"
#include "nextn/model/rms_norm.h"

namespace nextn {

class MtpModuleImpl : public torch::nn::Module {
 public:
  MtpModuleImpl(const ModelConfig& config, int64_t depth);  // depth k is 1-based

  // Sequential: previous depth's hidden state h^{k-1} and Emb(t_{i+k}) for the same positions,
  // both [B, L, hidden]. Parallel: `token_embeddings` is ignored (pass an undefined tensor).
  torch::Tensor forward(const torch::Tensor& previous_hidden, const torch::Tensor& token_embeddings,
                        const RopeAngles& angles, MoeStats* moe_stats = nullptr);
  // The same for new positions appended after the module's cached ones (its own KV cache slot);
  // kLastToken: the last position's output only (DecoderLayerImpl::forward_cached).
  torch::Tensor forward_cached(const torch::Tensor& previous_hidden, const torch::Tensor& token_embeddings,
                               const RopeAngles& angles, const LatentKvSlot& slot, MlaForm form,
                               CachedOutput output = CachedOutput::kEveryToken);

  int64_t depth() const { return depth_; }
  MtpKind kind() const { return kind_; }

  RMSNorm enorm{nullptr}, hnorm{nullptr};  // sequential only
  Linear eh_proj{nullptr};      // sequential only, [hidden, 2 * hidden]
  DecoderLayer block{nullptr};
  RMSNorm shared_head_norm{nullptr};

 private:
  // The block's input: Eq. 21 for sequential modules, h^0 itself for parallel heads.
  torch::Tensor block_input(const torch::Tensor& previous_hidden, const torch::Tensor& token_embeddings);

  int64_t depth_;
  MtpKind kind_;
};
TORCH_MODULE(MtpModule);

}  // namespace nextn

#include "nextn/model/mtp_module.h"

#include "nextn/model/linear.h"

namespace nextn {

MtpModuleImpl::MtpModuleImpl(const ModelConfig& config, int64_t depth) : depth_(depth), kind_(config.mtp_kind) {
  const int64_t h = config.hidden_size;
  if (kind_ == MtpKind::kSequential) {
    enorm = register_module("enorm", RMSNorm(h, config.rms_norm_eps));
    hnorm = register_module("hnorm", RMSNorm(h, config.rms_norm_eps));
    eh_proj = register_module("eh_proj", Linear(2 * h, h));
  }
  block = register_module("block", DecoderLayer(config, config.num_hidden_layers + depth - 1));
  shared_head_norm = register_module("shared_head_norm", RMSNorm(h, config.rms_norm_eps));
}

torch::Tensor MtpModuleImpl::forward(const torch::Tensor& previous_hidden, const torch::Tensor& token_embeddings,
                                     const RopeAngles& angles, MoeStats* moe_stats) {
  return block(block_input(previous_hidden, token_embeddings), angles, moe_stats);  // Eq. 22
}

torch::Tensor MtpModuleImpl::forward_cached(const torch::Tensor& previous_hidden, const torch::Tensor& token_embeddings,
                                            const RopeAngles& angles, const LatentKvSlot& slot, MlaForm form,
                                            CachedOutput output) {
  return block->forward_cached(block_input(previous_hidden, token_embeddings), angles, slot, form, output);
}

torch::Tensor MtpModuleImpl::block_input(const torch::Tensor& previous_hidden, const torch::Tensor& token_embeddings) {
  if (kind_ == MtpKind::kParallel) return previous_hidden;
  return eh_proj(torch::cat({enorm(token_embeddings), hnorm(previous_hidden)}, -1));  // Eq. 21
}

}  // namespace nextn

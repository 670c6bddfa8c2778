#include "nextn/model/mtp_module.h"

#include "nextn/model/dense_mlp.h"

namespace nextn {

MtpModuleImpl::MtpModuleImpl(const ModelConfig& config, int64_t depth) : depth_(depth), kind_(config.mtp_kind) {
  const int64_t h = config.hidden_size;
  if (kind_ == MtpKind::kSequential) {
    enorm = register_module("enorm", RMSNorm(h, config.rms_norm_eps));
    hnorm = register_module("hnorm", RMSNorm(h, config.rms_norm_eps));
    eh_proj = register_module("eh_proj", linear_no_bias(2 * h, h));
  }
  block = register_module("block", DecoderLayer(config, config.num_hidden_layers + depth - 1));
  shared_head_norm = register_module("shared_head_norm", RMSNorm(h, config.rms_norm_eps));
}

torch::Tensor MtpModuleImpl::forward(const torch::Tensor& previous_hidden, const torch::Tensor& token_embeddings,
                                     const RopeAngles& angles, MoeStats* moe_stats) {
  if (kind_ == MtpKind::kParallel) return block(previous_hidden, angles, moe_stats);
  auto combined = eh_proj(torch::cat({enorm(token_embeddings), hnorm(previous_hidden)}, -1));  // Eq. 21
  return block(combined, angles, moe_stats);                                                    // Eq. 22
}

}  // namespace nextn

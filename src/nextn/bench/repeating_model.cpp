#include "nextn/bench/repeating_model.h"

#include <string>

#include "nextn/util/strings.h"

namespace nextn {
void make_model_repeat(DeepSeekV3& model) {
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    if (ends_with(name, "o_proj.weight") || ends_with(name, "down_proj.weight") || ends_with(name, "experts.down_proj")) {
      item.value().zero_();
    }
  }
  if (model->lm_head) model->lm_head->weight.copy_(model->embed_tokens->weight);
  for (const auto& module : *model->mtp) {
    auto mtp = module->as<MtpModuleImpl>();
    if (!mtp->eh_proj) continue;  // parallel heads read h^0, which is the token's embedding already
    const int64_t hidden = model->config().hidden_size;
    auto& w = mtp->eh_proj->weight;  // [hidden, 2 * hidden]: embedding half first
    w.zero_();
    w.narrow(1, 0, hidden).copy_(torch::eye(hidden, w.options()));
  }
}

}  // namespace nextn

#include "nextn/inference/draft_head.h"

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/model/linear.h"
#include "nextn/util/error.h"

namespace nextn::inference {

std::string to_string(DraftHeadDtype dtype) { return dtype == DraftHeadDtype::kBFloat16 ? "bf16" : "model"; }

DraftHeadDtype parse_draft_head_dtype(const std::string& text) {
  if (text == "model") return DraftHeadDtype::kModel;
  if (text == "bf16") return DraftHeadDtype::kBFloat16;
  fail("--draft-head must be 'model' (the output head's own weights) or 'bf16', got '", text, "'");
}

void DraftHeadOptions::validate(int64_t vocab_size) const {
  std::vector<bool> seen(static_cast<size_t>(vocab_size), false);
  for (size_t i = 0; i < token_ids.size(); ++i) {
    const int64_t id = token_ids[i];
    NEXTN_CHECK(id >= 0 && id < vocab_size, "draft vocabulary: token id ", id, " (entry ", i,
                ") is outside the model's vocabulary [0, ", vocab_size, ")");
    NEXTN_CHECK(!seen[id], "draft vocabulary: token id ", id, " appears twice (again at entry ", i, ")");
    seen[id] = true;
  }
}

DraftHead::DraftHead(const torch::Tensor& output_weight, const DraftHeadOptions& options) {
  NEXTN_CHECK(output_weight.dim() == 2, "draft head: the output weight must be [vocab, hidden], got ",
              output_weight.sizes());
  options.validate(output_weight.size(0));
  torch::NoGradGuard no_grad;
  torch::Tensor rows = output_weight.detach();
  if (!options.token_ids.empty()) {
    ids_ = options.token_ids;
    token_ids_ = torch::tensor(ids_, torch::kLong).to(output_weight.device());
    rows = rows.index_select(0, token_ids_);
  }
  // A copy of its own only when it differs from the head: the subset's rows, or another dtype.
  weight_ = options.dtype == DraftHeadDtype::kBFloat16 ? rows.to(torch::kBFloat16).contiguous() : rows;
}

torch::Tensor DraftHead::logits(const torch::Tensor& normed_hidden) const {
  NEXTN_CHECK(weight_.defined(), "draft head: not built");
  if (weight_.scalar_type() != torch::kBFloat16) return linear_no_bias(normed_hidden, weight_);
  const int64_t hidden = weight_.size(1);
  // (normed_hidden stands in for the weight in the float32 check: bfloat16 weights are this path's own.)
  if (weight_.device().is_cpu() && takes_few_rows_kernels(normed_hidden, normed_hidden, hidden)) {
    const int64_t rows = normed_hidden.numel() / hidden;
    auto shape = normed_hidden.sizes().vec();
    shape.back() = size();
    auto out = torch::empty({rows, size()}, normed_hidden.options());
    kernels::few_rows_matmul({normed_hidden.data_ptr<float>(), rows, hidden, hidden},
                             kernels::Bf16MatrixView{reinterpret_cast<const uint16_t*>(weight_.data_ptr<at::BFloat16>()),
                                                     size(), hidden, weight_.stride(0)},
                             out.data_ptr<float>(), size());
    return out.view(shape);
  }
  // On a GPU the product runs in bfloat16 (its matrix units' type; any draft distribution keeps the
  // output exact). Elsewhere on CPU (more rows, autograd, float64) the weights are widened exactly.
  if (!weight_.device().is_cpu()) {
    return torch::nn::functional::linear(normed_hidden.to(torch::kBFloat16), weight_).to(normed_hidden.scalar_type());
  }
  return torch::nn::functional::linear(normed_hidden, weight_.to(normed_hidden.scalar_type()));
}

int64_t DraftHead::token(int64_t index) const {
  NEXTN_CHECK(index >= 0 && index < size(), "draft head: candidate ", index, " of ", size());
  return ids_.empty() ? index : ids_[index];
}

torch::Tensor DraftHead::to_vocabulary(const torch::Tensor& candidate_probs, int64_t vocab_size) const {
  NEXTN_CHECK(candidate_probs.dim() == 1 && candidate_probs.size(0) == size(), "draft head: expected ", size(),
              " candidate probabilities, got ", candidate_probs.sizes());
  if (ids_.empty()) {
    NEXTN_CHECK(size() == vocab_size, "draft head: ", size(), " candidates for a vocabulary of ", vocab_size);
    return candidate_probs;
  }
  return torch::zeros({vocab_size}, candidate_probs.options()).index_copy_(0, token_ids_, candidate_probs);
}

}  // namespace nextn::inference

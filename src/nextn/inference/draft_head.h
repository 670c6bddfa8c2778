// The drafter's output head: which tokens a draft may be, and the weights that score them.
//
// DeepSeek-V3's MTP modules share the main model's output head (Eq. 23). At batch 1 on a CPU that
// head is most of a draft's cost: vocab x hidden weights read per draft (8 MB of the ~11 MB a
// `small` draft reads). A drafter may score a subset of the vocabulary, the tokens most frequent
// in a corpus (FR-Spec, Zhao et al. 2025, arXiv 2502.14856; token_ranking.h), and read a bfloat16
// copy of those rows. Neither changes what speculative decoding outputs: greedy drafts are only
// guesses that the main model verifies, and for sampling the acceptance rule is exact for any draft
// distribution q, here one that is 0 outside the subset. They change only how often drafts are
// accepted.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace nextn::inference {

enum class DraftHeadDtype {
  kModel,     // the output head's own weights (no copy when every token may be drafted)
  kBFloat16,  // a bfloat16 copy of the rows, read by the few-rows kernel and widened to float32
};
std::string to_string(DraftHeadDtype dtype);
DraftHeadDtype parse_draft_head_dtype(const std::string& text);  // "model" or "bf16"; else nextn::Error

struct DraftHeadOptions {
  std::vector<int64_t> token_ids;  // the tokens drafts may be, distinct, in [0, vocab); empty: all
  DraftHeadDtype dtype = DraftHeadDtype::kModel;

  void validate(int64_t vocab_size) const;  // nextn::Error naming the bad id or repeat
  bool whole_vocabulary_at_model_dtype() const { return token_ids.empty() && dtype == DraftHeadDtype::kModel; }
};

class DraftHead {
 public:
  DraftHead() = default;
  // output_weight: the model's head [vocab, hidden]. Takes the rows (and the dtype) once here.
  DraftHead(const torch::Tensor& output_weight, const DraftHeadOptions& options);

  // Logits of the candidates for normalised hidden states [..., hidden]: [..., size()], in the
  // order of the options' token_ids (or of the vocabulary). With bfloat16 weights the product is
  // float32 of the exactly widened weights on CPU: decoding's rows (float32, no autograd) in the
  // few-rows kernel, anything else by widening a copy first; on a GPU a bfloat16 product.
  torch::Tensor logits(const torch::Tensor& normed_hidden) const;

  int64_t size() const { return weight_.size(0); }
  // The token id of candidate `index` (an index into logits' last dimension).
  int64_t token(int64_t index) const;
  // A distribution over the candidates [size()] spread onto the whole vocabulary [vocab_size].
  torch::Tensor to_vocabulary(const torch::Tensor& candidate_probs, int64_t vocab_size) const;
  const torch::Tensor& weight() const { return weight_; }

 private:
  torch::Tensor weight_;     // [K, hidden]
  torch::Tensor token_ids_;  // int64 [K] on the weight's device; undefined when K is the vocabulary in order
  std::vector<int64_t> ids_;
};

}  // namespace nextn::inference

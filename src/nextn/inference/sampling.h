// Token sampling: greedy, temperature, top-k, top-p (nucleus), with a seeded generator that the
// sampler owns (no global RNG state: two samplers with one seed draw the same tokens).
//
// The distribution tokens are drawn from is a function of its own, sampling_distribution(), since
// speculative sampling needs both the target's p and the drafter's q explicitly (Leviathan et al.
// 2023, arXiv 2211.17192): drafts must be drawn from exactly the q it is given.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <random>
#include <utility>
#include <vector>

namespace nextn::inference {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax); otherwise logits / temperature
  int64_t top_k = 0;         // keep the k most probable tokens; 0: off
  double top_p = 1.0;        // keep the smallest set whose mass reaches top_p; 1: off
  uint64_t seed = 0;
  // OpenAI's adjustments of the raw logits, before temperature, top-k and top-p: a token this
  // sampler drew before loses presence_penalty once and frequency_penalty per draw; logit_bias adds
  // its value to its token's logit at every step. Plain decoding only: a drafting step's
  // verification judges several tokens against one history, so speculative decoders refuse them.
  double presence_penalty = 0.0;   // in [-2, 2]
  double frequency_penalty = 0.0;  // in [-2, 2]
  std::vector<std::pair<int64_t, double>> logit_bias = {};  // token id, bias in [-100, 100]; ids unique

  bool greedy() const { return temperature == 0.0; }
  bool adjusts_logits() const { return presence_penalty != 0.0 || frequency_penalty != 0.0 || !logit_bias.empty(); }
  void validate() const;  // nextn::Error naming the bad option
};

// Probabilities [..., V] that tokens are drawn from, for logits [..., V]: softmax(logits /
// temperature), then top-k, then top-p (the order of Hugging Face's warpers), renormalised. Ties
// at the top-k boundary are all kept. Greedy: one-hot at the argmax (the first one on ties), which
// makes speculative sampling reduce to greedy verification. Computed in double for double logits,
// in float otherwise.
torch::Tensor sampling_distribution(const torch::Tensor& logits, const SamplingOptions& options);

// The argmax of each row of logits [V] or [R, V] (the first index on ties; a NaN counts as the
// largest, as torch::argmax has it). CPU float32 rows take a plain loop (libtorch's argmax costs
// ~7 us for 8192 logits, a decoding step's few hundred us), anything else torch::argmax.
std::vector<int64_t> greedy_tokens(const torch::Tensor& logits);

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);

  const SamplingOptions& options() const { return options_; }
  torch::Tensor distribution(const torch::Tensor& logits) const { return sampling_distribution(logits, options_); }

  // One token per row of probabilities [B, V] (or [V]) by inverse-CDF sampling with this sampler's
  // uniforms; int64 [B] (or a scalar) on the probabilities' device. Rows need not be normalised.
  torch::Tensor sample(const torch::Tensor& probabilities);
  // The next token for logits [V]: argmax when greedy, else a draw from distribution(logits); with
  // penalties or a logit bias, of adjusted_logits(logits).
  int64_t next_token(const torch::Tensor& logits);
  // `logits` [V] with the penalties of the tokens next_token() drew so far and the logit bias
  // applied (a copy, in their dtype).
  torch::Tensor adjusted_logits(const torch::Tensor& logits) const;

  // A uniform double in [0, 1) from the sampler's own generator (std::mt19937_64, whose output the
  // C++ standard fixes, turned into 53 mantissa bits by hand rather than by
  // std::uniform_real_distribution, whose algorithm is implementation-defined).
  double uniform();

 private:
  SamplingOptions options_;
  std::mt19937_64 engine_;
  std::map<int64_t, int64_t> drawn_;  // token -> times next_token() drew it (kept with penalties only)
  torch::Tensor bias_ids_, bias_values_;  // options_.logit_bias as tensors (undefined without one)
  int64_t largest_biased_token_ = -1;
};

}  // namespace nextn::inference

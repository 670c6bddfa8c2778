// Verifying drafted tokens against the target model: the acceptance rules of speculative decoding.
//
// Drafts d_1..d_N were proposed for positions 1..N after the last verified token; the target
// model ran once over [pending token, d_1..d_N] and gave a next-token distribution at each of the
// N + 1 positions. A prefix of drafts is accepted and one more token comes from the target (the
// token at the first rejection, or a bonus token after all N), so every verify step yields
// between 1 and N + 1 tokens.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "nextn/inference/sampling.h"

namespace nextn::inference {

struct Verification {
  int64_t accepted = 0;     // how many drafts (a prefix) were accepted
  int64_t next_token = -1;  // the target's token after them
};

// Greedy: accept while the draft equals the target's argmax; the next token is the argmax at the
// first mismatch, or the bonus argmax after all N. Output is token-for-token that of greedy
// decoding without drafts. target_logits [N + 1, V].
Verification verify_greedy(const torch::Tensor& target_logits, const std::vector<int64_t>& drafts);

// Speculative sampling (Leviathan et al. 2023, arXiv 2211.17192, Algorithm 1 and Appendix A.1;
// Chen et al. 2023): draft d_i, drawn from q_i, is accepted with probability min(1, p_i(d_i) /
// q_i(d_i)); at the first rejection the next token is drawn from normalize(max(0, p_i - q_i)) and
// the rest are dropped; if all N are accepted a bonus token is drawn from p_{N+1}. Every token
// produced is then distributed exactly as under the target p alone, whatever q is.
// target_probs [N + 1, V] and draft_probs [N, V] are sampling_distribution() outputs (same
// temperature and filters), uniforms and draws come from `sampler`.
Verification verify_sampled(const torch::Tensor& target_probs, const torch::Tensor& draft_probs,
                            const std::vector<int64_t>& drafts, Sampler& sampler);

// The signature of verify_sampled, for tests that substitute a deliberately wrong rule.
using SampledVerifyRule = std::function<Verification(const torch::Tensor& target_probs, const torch::Tensor& draft_probs,
                                                      const std::vector<int64_t>& drafts, Sampler& sampler)>;

}  // namespace nextn::inference

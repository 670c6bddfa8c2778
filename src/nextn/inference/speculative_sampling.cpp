#include "nextn/inference/speculative_sampling.h"

#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

void check_shapes(const torch::Tensor& target, const std::vector<int64_t>& drafts) {
  const int64_t n = static_cast<int64_t>(drafts.size());
  NEXTN_CHECK(target.dim() == 2 && target.size(0) == n + 1, "verification needs target rows for ", n,
              " drafts + 1, got ", target.sizes());
}

}  // namespace

Verification verify_greedy(const torch::Tensor& target_logits, const std::vector<int64_t>& drafts) {
  check_shapes(target_logits, drafts);
  const std::vector<int64_t> target_tokens = greedy_tokens(target_logits);  // one transfer from a GPU
  Verification result;
  while (result.accepted < static_cast<int64_t>(drafts.size()) && drafts[result.accepted] == target_tokens[result.accepted]) {
    ++result.accepted;
  }
  result.next_token = target_tokens[result.accepted];
  return result;
}

Verification verify_sampled(const torch::Tensor& target_probs, const torch::Tensor& draft_probs,
                            const std::vector<int64_t>& drafts, Sampler& sampler) {
  check_shapes(target_probs, drafts);
  const int64_t n = static_cast<int64_t>(drafts.size());
  Verification result;
  if (n > 0) {
    NEXTN_CHECK(draft_probs.dim() == 2 && draft_probs.size(0) == n, "verification needs one draft distribution per draft");
    // p_i(d_i) and q_i(d_i) for every draft, brought to the host in one transfer.
    auto index = torch::tensor(drafts, torch::kLong).to(target_probs.device()).unsqueeze(1);
    auto p_of_draft = target_probs.narrow(0, 0, n).gather(1, index).squeeze(1).to(torch::kDouble);
    auto q_of_draft = draft_probs.gather(1, index).squeeze(1).to(torch::kDouble);
    auto ratios = torch::stack({p_of_draft, q_of_draft}).to(torch::kCPU).contiguous();
    const double* p = ratios.data_ptr<double>();
    const double* q = p + n;
    for (int64_t i = 0; i < n; ++i) {
      // Accept with probability min(1, p/q); written as u q < p. q(d_i) > 0 since d_i was drawn from q.
      if (sampler.uniform() * q[i] < p[i]) {
        ++result.accepted;
        continue;
      }
      // Rejected: the residual max(0, p - q) carries exactly the mass p has beyond q. It is zero only
      // when p == q, where a rejection cannot happen; rounding aside, fall back to p then.
      auto residual = (target_probs[i] - draft_probs[i]).clamp_min(0.0);
      auto source = residual.sum().item<double>() > 0.0 ? residual : target_probs[i];
      result.next_token = sampler.sample(source).item<int64_t>();
      return result;
    }
  }
  result.next_token = sampler.sample(target_probs[n]).item<int64_t>();  // all accepted: the bonus token
  return result;
}

}  // namespace nextn::inference

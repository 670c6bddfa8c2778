// The routed experts of one MoE layer, computed at the cost of the ACTIVATED experts only:
// the N*K (token, expert) assignments are sorted by expert, every expert runs one SwiGLU over its
// contiguous block of tokens, and the weighted outputs are added back to their tokens. Tokens
// are never dropped (no capacity factor) and no expert ever sees a token not routed to it.
//
// Weights are stacked per layer: gate_up_proj [E, 2I, hidden] (gate rows then up rows, so one
// matmul computes both) and down_proj [E, hidden, I]. The HF checkpoint's per-expert
// `experts.{j}.{gate,up,down}_proj.weight` are views into these (checkpoint/hf_tensor_names).
#pragma once

#include <torch/torch.h>

#include "nextn/config/model_config.h"
#include "nextn/model/router.h"

namespace nextn {

class RoutedExpertsImpl;

// Expert parallelism: how tokens reach experts that other ranks hold. A RoutedExperts split over
// the ranks of an expert-parallel group holds experts [first_expert, first_expert + local) of
// the layer's total and hands every forward to its exchange, which all ranks of the group call
// together (distributed/expert_parallel.h: all-to-all over c10d). The model itself stays free of
// any communication library.
class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  // sum_k weight[n, k] * expert_{ids[n, k]}(x_flat[n]) for this rank's tokens, [N, hidden].
  virtual torch::Tensor run(RoutedExpertsImpl& experts, const torch::Tensor& x_flat, const Routing& routing) = 0;
};

// (token, expert) assignments grouped by expert.
struct ExpertDispatch {
  torch::Tensor token_index;            // int64 [N*K]: token of each sorted assignment
  torch::Tensor assignment_order;       // int64 [N*K]: position of each sorted assignment in expert_ids.view(-1)
  std::vector<int64_t> tokens_per_expert;  // [E], sums to N*K
};
ExpertDispatch dispatch_by_expert(const torch::Tensor& expert_ids, int64_t num_experts);

// SwiGLU of each expert over its block of rows of x_sorted; differentiable in x_sorted and both
// weight stacks, with a hand-written backward that writes each expert's weight gradient in place
// (autograd through per-expert slices would allocate a full-size zero gradient per expert).
torch::Tensor grouped_swiglu(const torch::Tensor& x_sorted, const torch::Tensor& gate_up_proj,
                             const torch::Tensor& down_proj, const std::vector<int64_t>& tokens_per_expert);

// libtorch's bf16 products on CPU (oneDNN) build a kernel for each new product shape (~0.5 ms,
// five times a [512, 256] x [256, 128] product) and keep the last 1024; the experts' token counts
// change every step, so nearly every expert product paid it, and bf16 experts ran slower than
// fp32's in a training step. In bf16 on CPU, grouped_swiglu therefore computes each expert over
// its rows padded with zero rows to a multiple of kExpertRowMultiple: the shapes repeat.
constexpr int64_t kExpertRowMultiple = 32;
std::vector<int64_t> pad_expert_rows(const std::vector<int64_t>& tokens_per_expert, int64_t multiple);

// A shared expert's float32 weights for forward_few_tokens: gate and up [inter, hidden], down
// [hidden, inter], each row-major and contiguous (DenseMlp's parameters).
struct SharedExpertRows {
  const float* gate = nullptr;
  const float* up = nullptr;
  const float* down = nullptr;
  int64_t intermediate = 0;
};

class RoutedExpertsImpl : public torch::nn::Module {
 public:
  explicit RoutedExpertsImpl(const ModelConfig& config);
  // x_flat [N, hidden] -> sum_k weight[n, k] * expert_{ids[n, k]}(x_flat[n]), [N, hidden].
  torch::Tensor forward(const torch::Tensor& x_flat, const Routing& routing);
  // The same without libtorch operators, for float32 on CPU outside autograd: each chosen expert
  // runs its tokens' rows through the few-rows kernel. forward() chooses it for decoding's up to
  // kFewRowsMaxRows tokens, where sorting assignments by expert costs more operators than the
  // experts' own products; other types and more tokens take the grouped path.
  torch::Tensor forward_few_tokens(const torch::Tensor& x_flat, const Routing& routing);
  // The same plus a shared expert's output, out = routed + shared(x_flat) bit for bit as adding
  // DenseMlp's few-rows forward afterwards: the shared expert's rows become jobs beside the routed
  // experts', so the two cores share its products instead of one core running it after them.
  torch::Tensor forward_few_tokens(const torch::Tensor& x_flat, const Routing& routing, const SharedExpertRows& shared);
  bool few_token_kernel_applies(const torch::Tensor& x_flat) const;

  // Keeps experts [first, first + count) only (the parameters shrink in place, so references to
  // them stay valid) and sends every later forward through `exchange`.
  void shard(int64_t first, int64_t count, std::shared_ptr<ExpertExchange> exchange);
  bool is_sharded() const { return exchange_ != nullptr; }

  int64_t num_experts() const { return num_experts_; }  // in the layer, on every rank
  int64_t num_local_experts() const { return gate_up_proj.size(0); }
  int64_t first_expert() const { return first_expert_; }
  int64_t intermediate_size() const { return down_proj.size(2); }

  torch::Tensor gate_up_proj;  // [local experts, 2I, hidden]
  torch::Tensor down_proj;     // [local experts, hidden, I]

 private:
  int64_t num_experts_ = 0;
  int64_t first_expert_ = 0;
  std::shared_ptr<ExpertExchange> exchange_;
};
TORCH_MODULE(RoutedExperts);

}  // namespace nextn

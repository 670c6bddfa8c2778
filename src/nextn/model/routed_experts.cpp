#include "nextn/model/routed_experts.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <optional>

#include "nextn/compat/torch_compat.h"
#include "nextn/device/cpu_gemm.h"
#include "nextn/device/precision.h"
#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/kernels/row_ops.h"
#include "nextn/kernels/worker_pool.h"
#include "nextn/model/linear.h"
#include "nextn/util/error.h"
#include "nextn/util/phase_timer.h"

namespace nextn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// silu(gate) * up for pre-activations [n, 2I] = [gate | up].
torch::Tensor swiglu(const torch::Tensor& pre, int64_t inter) {
  return torch::silu(pre.narrow(1, 0, inter)) * pre.narrow(1, inter, inter);
}

// `rows` laid out in blocks of from[e] rows (one per expert, in order), re-laid in blocks of to[e]
// rows: each block keeps its first min(from[e], to[e]) rows, and rows a block gains are zero.
// Pads (to >= from) and un-pads (to <= from); `rows` itself when the layouts are the same.
torch::Tensor relaid_blocks(const torch::Tensor& rows, const std::vector<int64_t>& from,
                            const std::vector<int64_t>& to) {
  if (from == to) return rows;
  const int64_t total = std::accumulate(to.begin(), to.end(), int64_t{0});
  bool gains_rows = false;
  for (size_t e = 0; e < from.size(); ++e) gains_rows = gains_rows || to[e] > from[e];
  auto out = gains_rows ? torch::zeros({total, rows.size(1)}, rows.options())
                        : torch::empty({total, rows.size(1)}, rows.options());
  int64_t from_offset = 0, to_offset = 0;
  for (size_t e = 0; e < from.size(); ++e) {
    const int64_t n = std::min(from[e], to[e]);
    if (n > 0) out.narrow(0, to_offset, n).copy_(rows.narrow(0, from_offset, n));
    from_offset += from[e];
    to_offset += to[e];
  }
  return out;
}

// Per expert only the matrix products run in the loops; the elementwise SwiGLU and its derivative
// run once over all rows. The loops' cost per expert is then a few BLAS calls, which keeps the
// layer's time flat as the expert count grows at a fixed number of tokens (`nextn bench moe`):
// with the elementwise work inside the loop, 64 experts dispatched ~4x the small ops of 16.
class GroupedSwiGLU : public torch::autograd::Function<GroupedSwiGLU> {
 public:
  // Each expert's rows are computed in blocks of padded[e] >= tokens_per_expert[e] rows, the
  // extra ones zero (see kExpertRowMultiple): zero rows give zero outputs and add nothing to the
  // weights' gradients.
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x_rows, torch::Tensor gate_up,
                               torch::Tensor down, std::vector<int64_t> tokens_per_expert,
                               std::vector<int64_t> padded) {
    auto x = relaid_blocks(x_rows, tokens_per_expert, padded);
    std::swap(tokens_per_expert, padded);  // the products below run over the padded blocks
    const int64_t inter = down.size(2);
    auto pre = torch::empty({x.size(0), 2 * inter}, x.options());  // kept for backward
    int64_t offset = 0;
    for (size_t e = 0; e < tokens_per_expert.size(); ++e) {
      const int64_t n = tokens_per_expert[e];
      if (n == 0) continue;
      auto pre_e = pre.narrow(0, offset, n);
      linear_no_bias_out(pre_e, x.narrow(0, offset, n), gate_up[e]);
      offset += n;
    }
    auto act = swiglu(pre, inter);
    auto out = torch::empty({x.size(0), down.size(1)}, x.options());
    offset = 0;
    for (size_t e = 0; e < tokens_per_expert.size(); ++e) {
      const int64_t n = tokens_per_expert[e];
      if (n == 0) continue;
      auto out_e = out.narrow(0, offset, n);
      linear_no_bias_out(out_e, act.narrow(0, offset, n), down[e]);
      offset += n;
    }
    ctx->save_for_backward({x, gate_up, down, pre});
    ctx->saved_data["tokens_per_expert"] = tokens_per_expert;  // padded
    ctx->saved_data["unpadded"] = padded;
    return relaid_blocks(out, tokens_per_expert, padded);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    ScopedPhase phase("moe.experts.backward");  // recorded when a benchmark times backward too
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& gate_up = saved[1];
    const auto& down = saved[2];
    const auto& pre = saved[3];
    auto tokens_per_expert = ctx->saved_data["tokens_per_expert"].toIntVector();
    auto unpadded = ctx->saved_data["unpadded"].toIntVector();
    auto grad_out = relaid_blocks(grad_outputs[0].contiguous(), unpadded, tokens_per_expert);
    const int64_t inter = down.size(2);

    // Gradient at the SwiGLU output, per expert: [n, hidden] x [hidden, I].
    auto grad_act = torch::empty({x.size(0), inter}, x.options());
    int64_t offset = 0;
    for (size_t e = 0; e < tokens_per_expert.size(); ++e) {
      const int64_t n = tokens_per_expert[e];
      if (n == 0) continue;
      auto grad_act_e = grad_act.narrow(0, offset, n);
      matmul_2d_into(grad_act_e, grad_out.narrow(0, offset, n), down[e]);
      offset += n;
    }
    // Through the SwiGLU, all rows at once; d silu(g)/dg = sig * (1 + g * (1 - sig)).
    auto gate = pre.narrow(1, 0, inter);
    auto up = pre.narrow(1, inter, inter);
    auto sig = torch::sigmoid(gate);
    auto silu = gate * sig;
    auto act = silu * up;
    auto grad_pre = torch::cat({grad_act * up * sig * (1 + gate * (1 - sig)), grad_act * silu}, 1);

    auto grad_x = torch::empty_like(x);
    auto grad_gate_up = torch::empty_like(gate_up);
    auto grad_down = torch::empty_like(down);
    offset = 0;
    for (size_t e = 0; e < tokens_per_expert.size(); ++e) {
      const int64_t n = tokens_per_expert[e];
      if (n == 0) {
        grad_gate_up[e].zero_();
        grad_down[e].zero_();
        continue;
      }
      auto grad_pre_e = grad_pre.narrow(0, offset, n);
      auto grad_down_e = grad_down[e];
      matmul_2d_into(grad_down_e, grad_out.narrow(0, offset, n).t(), act.narrow(0, offset, n));  // [hidden, I]
      auto grad_gate_up_e = grad_gate_up[e];
      matmul_2d_into(grad_gate_up_e, grad_pre_e.t(), x.narrow(0, offset, n));  // [2I, hidden]
      auto grad_x_e = grad_x.narrow(0, offset, n);
      matmul_2d_into(grad_x_e, grad_pre_e, gate_up[e]);  // [n, hidden]
      offset += n;
    }
    return {relaid_blocks(grad_x, tokens_per_expert, unpadded), grad_gate_up, grad_down, torch::Tensor(),
            torch::Tensor()};
  }
};

// Decoding's assignments a = t * K + j grouped by expert, experts in order of first appearance.
std::vector<std::pair<int64_t, std::vector<int64_t>>> assignments_by_expert(const int64_t* expert_ids,
                                                                            int64_t count) {
  std::vector<std::pair<int64_t, std::vector<int64_t>>> experts;
  for (int64_t a = 0; a < count; ++a) {
    auto it = std::find_if(experts.begin(), experts.end(), [&](const auto& e) { return e.first == expert_ids[a]; });
    if (it == experts.end()) {
      experts.push_back({expert_ids[a], {a}});
    } else {
      it->second.push_back(a);
    }
  }
  return experts;
}

// Buffers for up to `tokens` rows through one expert: its inputs, [gate | up], the SwiGLU, outputs.
struct ExpertRowsScratch {
  ExpertRowsScratch(int64_t tokens, int64_t hidden, int64_t inter)
      : hidden(hidden), inter(inter), rows(tokens * hidden), pre(tokens * 2 * inter), act(tokens * inter),
        y(tokens * hidden) {}
  int64_t hidden, inter;
  std::vector<float> rows, pre, act, y;
};

// y = down (silu(gate) * up) for the first m of s.rows through one expert, in float32 with the
// few-rows kernel: the expert's weights are read once for all its tokens.
void expert_swiglu_rows(int64_t m, const float* gate_up, const float* down, ExpertRowsScratch& s) {
  const int64_t hidden = s.hidden, inter = s.inter;
  kernels::few_rows_matmul({s.rows.data(), m, hidden, hidden}, {gate_up, 2 * inter, hidden, hidden}, s.pre.data(),
                           2 * inter);
  for (int64_t r = 0; r < m; ++r) {
    const float* gate = s.pre.data() + r * 2 * inter;
    kernels::swiglu(gate, gate + inter, inter, s.act.data() + r * inter);
  }
  kernels::few_rows_matmul({s.act.data(), m, inter, inter}, {down, hidden, inter, inter}, s.y.data(), hidden);
}

// The shared expert for `m` consecutive token rows, as DenseMlp's few-rows forward computes it
// (gate and up products, kernels::swiglu, down product; each row independent of the others), into
// out [m, hidden].
void shared_swiglu_rows(const float* x, int64_t m, const SharedExpertRows& shared, ExpertRowsScratch& s, float* out) {
  const int64_t hidden = s.hidden, inter = s.inter;
  float* gate = s.pre.data();
  float* up = s.pre.data() + m * inter;
  kernels::few_rows_matmul({x, m, hidden, hidden}, {shared.gate, inter, hidden, hidden}, gate, inter);
  kernels::few_rows_matmul({x, m, hidden, hidden}, {shared.up, inter, hidden, hidden}, up, inter);
  kernels::swiglu(gate, up, m * inter, s.act.data());
  kernels::few_rows_matmul({s.act.data(), m, inter, inter}, {shared.down, hidden, inter, inter}, out, hidden);
}

}  // namespace

ExpertDispatch dispatch_by_expert(const torch::Tensor& expert_ids, int64_t num_experts) {
  const int64_t k = expert_ids.size(1);
  auto flat = expert_ids.reshape({-1});
  ExpertDispatch d;
  d.assignment_order = compat::stable_argsort(flat);
  d.token_index = torch::div(d.assignment_order, k, "floor");
  auto counts = torch::bincount(flat, /*weights=*/{}, num_experts).to(torch::kCPU);
  auto accessor = counts.accessor<int64_t, 1>();
  d.tokens_per_expert.assign(accessor.data(), accessor.data() + num_experts);
  return d;
}

torch::Tensor grouped_swiglu(const torch::Tensor& x_sorted, const torch::Tensor& gate_up_proj,
                             const torch::Tensor& down_proj, const std::vector<int64_t>& tokens_per_expert) {
  NEXTN_CHECK(static_cast<int64_t>(tokens_per_expert.size()) == gate_up_proj.size(0),
              "grouped_swiglu: ", tokens_per_expert.size(), " token counts for ", gate_up_proj.size(0), " experts");
  // Under bf16 autocast the experts compute in bf16 (the SwiGLU too, as in DeepSeek-V3's bf16
  // experts); the casts sit outside the Function, so autograd brings fp32 gradients to fp32 weights.
  const auto dtype = product_dtype(x_sorted);
  const bool through_onednn = x_sorted.device().is_cpu() && dtype == torch::kBFloat16;
  auto y = GroupedSwiGLU::apply(x_sorted.to(dtype).contiguous(), gate_up_proj.to(dtype), down_proj.to(dtype),
                                tokens_per_expert,
                                pad_expert_rows(tokens_per_expert, through_onednn ? kExpertRowMultiple : 1));
  return y.to(x_sorted.scalar_type());
}

std::vector<int64_t> pad_expert_rows(const std::vector<int64_t>& tokens_per_expert, int64_t multiple) {
  NEXTN_CHECK(multiple >= 1, "expert rows padded to a multiple of ", multiple);
  std::vector<int64_t> padded;
  for (int64_t n : tokens_per_expert) {
    NEXTN_CHECK(n >= 0, "an expert with ", n, " tokens");
    padded.push_back((n + multiple - 1) / multiple * multiple);
  }
  return padded;
}

RoutedExpertsImpl::RoutedExpertsImpl(const ModelConfig& config) {
  const int64_t e = config.n_routed_experts, h = config.hidden_size, inter = config.moe_intermediate_size;
  gate_up_proj = register_parameter("gate_up_proj", torch::empty({e, 2 * inter, h}));
  down_proj = register_parameter("down_proj", torch::empty({e, h, inter}));
  num_experts_ = e;
}

void RoutedExpertsImpl::shard(int64_t first, int64_t count, std::shared_ptr<ExpertExchange> exchange) {
  NEXTN_CHECK(!is_sharded() && num_local_experts() == num_experts_, "routed experts are already sharded");
  NEXTN_CHECK(first >= 0 && count > 0 && first + count <= num_experts_, "expert shard [", first, ", ", first + count,
              ") is outside the layer's ", num_experts_, " experts");
  NEXTN_CHECK(exchange != nullptr, "a sharded expert layer needs an exchange");
  torch::NoGradGuard no_grad;
  // set_data keeps the parameter objects (the module's registry and any holder see the slice).
  gate_up_proj.set_data(gate_up_proj.narrow(0, first, count).clone());
  down_proj.set_data(down_proj.narrow(0, first, count).clone());
  first_expert_ = first;
  exchange_ = std::move(exchange);
}

torch::Tensor RoutedExpertsImpl::forward(const torch::Tensor& x_flat, const Routing& routing) {
  if (exchange_) return exchange_->run(*this, x_flat, routing);
  if (few_rows_fit(x_flat.size(0)) && few_token_kernel_applies(x_flat)) {
    return forward_few_tokens(x_flat, routing);
  }
  ExpertDispatch d;
  torch::Tensor x_sorted;
  {
    ScopedPhase phase("moe.dispatch");
    d = dispatch_by_expert(routing.expert_ids, num_local_experts());
    x_sorted = x_flat.index_select(0, d.token_index);
  }
  torch::Tensor y_sorted;
  {
    ScopedPhase phase("moe.experts");
    y_sorted = grouped_swiglu(x_sorted, gate_up_proj.to(x_flat.scalar_type()), down_proj.to(x_flat.scalar_type()),
                              d.tokens_per_expert);
  }
  ScopedPhase phase("moe.combine");
  auto weights = routing.weights.reshape({-1}).index_select(0, d.assignment_order).to(y_sorted.scalar_type());
  return torch::zeros_like(x_flat).index_add(0, d.token_index, y_sorted * weights.unsqueeze(1));
}

bool RoutedExpertsImpl::few_token_kernel_applies(const torch::Tensor& x_flat) const {
  return !torch::GradMode::is_enabled() && x_flat.device().is_cpu() && x_flat.scalar_type() == torch::kFloat &&
         gate_up_proj.scalar_type() == torch::kFloat && down_proj.scalar_type() == torch::kFloat &&
         gate_up_proj.is_contiguous() && down_proj.is_contiguous();
}

torch::Tensor RoutedExpertsImpl::forward_few_tokens(const torch::Tensor& x_flat, const Routing& routing) {
  return forward_few_tokens(x_flat, routing, SharedExpertRows{});
}

torch::Tensor RoutedExpertsImpl::forward_few_tokens(const torch::Tensor& x_flat, const Routing& routing,
                                                    const SharedExpertRows& shared) {
  NEXTN_CHECK(few_token_kernel_applies(x_flat), "forward_few_tokens: needs float32 tokens on CPU outside "
              "autograd, got ", x_flat.scalar_type(), " on ", x_flat.device());
  const int64_t tokens = x_flat.size(0), k = routing.expert_ids.size(1);
  auto ids = routing.expert_ids.to(torch::kCPU).contiguous();
  auto weights = routing.weights.to(torch::kCPU, torch::kFloat).contiguous();
  const float* weight = weights.data_ptr<float>();
  const int64_t hidden = x_flat.size(1), inter = intermediate_size();
  auto x = x_flat.contiguous();
  const float* x_data = x.data_ptr<float>();
  const float* gate_up_data = gate_up_proj.data_ptr<float>();
  const float* down_data = down_proj.data_ptr<float>();

  // One job per expert and kernel call of at most kernels::kFewRowsMax of its tokens; a job points into
  // its expert's list of assignments.
  struct Job {
    int64_t expert;              // kSharedExpert: the shared expert, over tokens [first_token, + rows)
    const int64_t* assignments;  // a = t * K + j (routed jobs)
    int64_t rows;
    int64_t first_output_row;  // of this job's rows in job_outputs
    int64_t first_token = 0;
  };
  constexpr int64_t kSharedExpert = -1;
  const auto by_expert = assignments_by_expert(ids.data_ptr<int64_t>(), tokens * k);
  std::vector<Job> jobs;
  int64_t output_rows = 0;
  for (const auto& [expert, assignments] : by_expert) {
    const auto count = static_cast<int64_t>(assignments.size());
    for (int64_t first = 0; first < count; first += kernels::kFewRowsMax) {
      const int64_t rows = std::min(kernels::kFewRowsMax, count - first);
      jobs.push_back({expert, assignments.data() + first, rows, output_rows});
      output_rows += rows;
    }
  }
  const bool with_shared = shared.gate != nullptr;
  const int64_t routed_output_rows = output_rows;
  if (with_shared) {
    // First in line: the largest job (every token), so it does not finish last on one core.
    std::vector<Job> shared_jobs;
    for (int64_t first = 0; first < tokens; first += kernels::kFewRowsMax) {
      const int64_t rows = std::min(kernels::kFewRowsMax, tokens - first);
      shared_jobs.push_back({kSharedExpert, nullptr, rows, output_rows, first});
      output_rows += rows;
    }
    jobs.insert(jobs.begin(), shared_jobs.begin(), shared_jobs.end());
  }

  // The jobs are independent (each reads its own expert's weights, cold in decoding), so threads
  // take them in turn from a counter: on this path one thread waits on memory for a few small
  // matrices at a time, two wait for twice as many. Each job writes its own rows.
  std::vector<float> job_outputs(output_rows * hidden);
  const int threads = static_cast<int>(std::min<int64_t>(kernels::few_rows_matmul_threads(), jobs.size()));
  std::atomic<size_t> next_job{0};
  kernels::run_in_parts(threads, [&](int) {
    const int64_t most_rows = std::min(tokens, kernels::kFewRowsMax);
    ExpertRowsScratch scratch(most_rows, hidden, inter);
    std::optional<ExpertRowsScratch> shared_scratch;
    for (size_t j = next_job.fetch_add(1); j < jobs.size(); j = next_job.fetch_add(1)) {
      const Job& job = jobs[j];
      float* y = job_outputs.data() + job.first_output_row * hidden;
      if (job.expert == kSharedExpert) {
        if (!shared_scratch) shared_scratch.emplace(most_rows, hidden, shared.intermediate);
        shared_swiglu_rows(x_data + job.first_token * hidden, job.rows, shared, *shared_scratch, y);
        continue;
      }
      for (int64_t r = 0; r < job.rows; ++r) {
        std::copy_n(x_data + job.assignments[r] / k * hidden, hidden, scratch.rows.data() + r * hidden);
      }
      expert_swiglu_rows(job.rows, gate_up_data + job.expert * 2 * inter * hidden,
                         down_data + job.expert * hidden * inter, scratch);
      std::copy_n(scratch.y.data(), job.rows * hidden, y);
    }
  });

  // Each token's weighted sum in its own routing order (j = 0..K-1), on one thread: a token's
  // output depends neither on the thread count nor on the other tokens of the call (job order
  // would: it follows the experts' first appearance), so a speculative verify's rows are bit for
  // bit what plain decoding computes for the same tokens.
  std::vector<int64_t> output_row(static_cast<size_t>(tokens * k));
  for (const Job& job : jobs) {
    if (job.expert == kSharedExpert) continue;
    for (int64_t r = 0; r < job.rows; ++r) output_row[job.assignments[r]] = job.first_output_row + r;
  }
  auto out = torch::zeros_like(x);
  float* out_data = out.data_ptr<float>();
  for (int64_t a = 0; a < tokens * k; ++a) {
    const float* y = job_outputs.data() + output_row[a] * hidden;
    float* target = out_data + a / k * hidden;
    for (int64_t c = 0; c < hidden; ++c) target[c] += weight[a] * y[c];
  }
  if (with_shared) {
    // Then the shared expert, one addition per element: what `routed + shared` computed.
    const float* y = job_outputs.data() + routed_output_rows * hidden;
    for (int64_t i = 0; i < tokens * hidden; ++i) out_data[i] += y[i];
  }
  return out;
}

}  // namespace nextn

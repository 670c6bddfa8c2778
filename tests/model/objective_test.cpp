// The objective against Eq. 24-25 computed with plain loops, and the model's gradients against
// central finite differences in double precision for every kind of parameter.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "nextn/model/deepseek_v3.h"
#include "nextn/model/cross_entropy.h"
#include "nextn/model/objective.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::tiny_config;

// -log softmax(logits)[target] with std:: math.
double nll(const torch::Tensor& logits_row, int64_t target) {
  double top = logits_row.max().item<double>(), z = 0;
  for (int64_t v = 0; v < logits_row.size(0); ++v) z += std::exp(logits_row[v].item<double>() - top);
  return -(logits_row[target].item<double>() - top - std::log(z));
}

TEST(Objective, EqualsEquations24And25ComputedDirectly) {
  torch::manual_seed(21);
  const int64_t batch = 2, length = 6, vocab = 7, depth = 2;
  ModelOutput out;
  out.logits = torch::randn({batch, length, vocab}, torch::kDouble);
  for (int64_t k = 1; k <= depth; ++k) out.mtp_logits.push_back(torch::randn({batch, length - k, vocab}, torch::kDouble));
  auto window = torch::randint(vocab, {batch, length + 1}, torch::kLong);
  auto labels = window.narrow(1, 1, length);
  ObjectiveOptions options;
  options.mtp_lambda = 0.3;
  ObjectiveOutput got = compute_objective(out, labels, torch::Tensor(), options);

  double main = 0;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < length; ++i) main += nll(out.logits[b][i], window[b][i + 1].item<int64_t>());
  }
  main /= batch * length;
  EXPECT_NEAR(got.main_loss.item<double>(), main, 1e-12);
  double total = main;
  for (int64_t k = 1; k <= depth; ++k) {
    // Eq. 24: -(1/T) sum over the T-k positions that have a target t_{i+k+1}, averaged over sequences.
    double sum = 0;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t i = 0; i + k < length; ++i) sum += nll(out.mtp_logits[k - 1][b][i], window[b][i + k + 1].item<int64_t>());
    }
    double expected = sum / (batch * length);
    EXPECT_NEAR(got.mtp_loss[k - 1].item<double>(), expected, 1e-12) << "depth " << k;
    EXPECT_EQ(got.mtp_tokens[k - 1], batch * (length - k));
    total += options.mtp_lambda / depth * expected;  // Eq. 25
  }
  EXPECT_NEAR(got.total.item<double>(), total, 1e-12);
}

TEST(Objective, DocumentBoundariesMaskMtpTargetsAndAccuracyCounts) {
  const int64_t length = 5, vocab = 4;
  ModelOutput out;
  // Logits that put all mass on token 2 everywhere.
  out.logits = torch::full({1, length, vocab}, -20.0, torch::kDouble);
  out.logits.select(2, 2).fill_(20.0);
  out.mtp_logits.push_back(out.logits.narrow(1, 0, length - 1).clone());
  auto window = torch::tensor({0, 2, 2, 3, 2, 2}, torch::kLong).view({1, length + 1});
  auto labels = window.narrow(1, 1, length);
  // Documents: positions 0..3 (the EOS is token 3 at position 3) then 4..5.
  auto segments = torch::tensor({0, 0, 0, 0, 1, 1}, torch::kInt).view({1, length + 1});
  ObjectiveOutput got = compute_objective(out, labels, segments, ObjectiveOptions{});
  // Depth 1, position i predicts window[i+2] and counts only if segment[i] == segment[i+2]:
  // i = 0, 1 count (targets 2, 3); i = 2, 3 cross into document 1 and are masked.
  EXPECT_EQ(got.mtp_tokens[0], 2);
  EXPECT_NEAR(got.mtp_accuracy[0].item<double>(), 0.5, 1e-12);  // predicts 2: right once, wrong once
  EXPECT_NEAR(got.main_accuracy.item<double>(), 4.0 / 5.0, 1e-12);
  double expected_mtp = (nll(out.mtp_logits[0][0][0], 2) + nll(out.mtp_logits[0][0][1], 3)) / length;
  EXPECT_NEAR(got.mtp_loss[0].item<double>(), expected_mtp, 1e-9);
}

TEST(Objective, BalanceTermsAreScaledByAlphaAndSummedOverLayers) {
  ModelOutput out;
  out.logits = torch::zeros({1, 2, 3}, torch::kDouble);
  for (double v : {1.5, 2.5}) {
    MoeStats s;
    s.sequence_balance = torch::tensor(v, torch::kDouble);
    s.batch_balance = torch::tensor(10 * v, torch::kDouble);
    out.moe_stats.push_back(s);
  }
  ObjectiveOptions options;
  options.sequence_balance_alpha = 0.01;
  options.batch_balance_alpha = 0.001;
  auto got = compute_objective(out, torch::zeros({1, 2}, torch::kLong), torch::Tensor(), options);
  EXPECT_NEAR(got.balance_loss.item<double>(), 0.01 * 4.0 + 0.001 * 40.0, 1e-12);
  EXPECT_NEAR(got.total.item<double>(), std::log(3.0) + 0.08, 1e-12);
}

// ---- finite differences -------------------------------------------------------------------

struct Probe {
  torch::Tensor inputs, labels;
  ObjectiveOptions options;
};

double loss_and_routing(DeepSeekV3& model, const Probe& probe, std::vector<torch::Tensor>* routing) {
  torch::NoGradGuard no_grad;
  ModelOutput out = model(probe.inputs);
  if (routing != nullptr) {
    routing->clear();
    for (const auto& s : out.moe_stats) routing->push_back(s.expert_ids);
  }
  return compute_objective(out, probe.labels, torch::Tensor(), probe.options).total.item<double>();
}

bool same_routing(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

void check_gradients(ModelConfig config, std::set<std::string> required_kinds) {
  torch::manual_seed(22);
  DeepSeekV3 model(config);
  model->to(torch::kDouble);
  // Larger weights than the default init so that every path carries a visible gradient.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      if (p.value().dim() > 1) p.value().normal_(0.0, 0.2);
      else p.value().uniform_(0.5, 1.5);
    }
    for (auto& moe : model->moe_layers()) moe->gate->e_score_correction_bias.uniform_(-0.05, 0.05);
  }
  Probe probe;
  auto window = torch::randint(config.vocab_size, {2, 9}, torch::kLong);
  probe.inputs = window.narrow(1, 0, 8);
  probe.labels = window.narrow(1, 1, 8);
  probe.options.mtp_lambda = 0.5;
  probe.options.sequence_balance_alpha = 0.05;
  probe.options.batch_balance_alpha = 0.05;

  model->zero_grad();
  ModelOutput out = model(probe.inputs);
  compute_objective(out, probe.labels, torch::Tensor(), probe.options).total.backward();
  std::vector<torch::Tensor> base_routing;
  loss_and_routing(model, probe, &base_routing);

  const double eps = 1e-6;
  std::set<std::string> checked_kinds;
  int64_t checked = 0, skipped = 0;
  for (auto& named : model->named_parameters()) {
    torch::Tensor param = named.value();
    torch::Tensor grad = param.grad();
    ASSERT_TRUE(grad.defined()) << named.key() << " has no gradient";
    auto flat = param.view({-1});
    auto flat_grad = grad.view({-1});
    // A few elements per tensor: the largest-gradient one and some random ones.
    std::vector<int64_t> elements = {flat_grad.abs().argmax().item<int64_t>()};
    for (int r = 0; r < 3; ++r) elements.push_back(torch::randint(flat.numel(), {1}).item<int64_t>());
    for (int64_t index : elements) {
      double original = flat[index].item<double>();
      std::vector<torch::Tensor> routing_plus, routing_minus;
      {
        torch::NoGradGuard no_grad;
        flat[index] = original + eps;
      }
      double plus = loss_and_routing(model, probe, &routing_plus);
      {
        torch::NoGradGuard no_grad;
        flat[index] = original - eps;
      }
      double minus = loss_and_routing(model, probe, &routing_minus);
      {
        torch::NoGradGuard no_grad;
        flat[index] = original;
      }
      if (!same_routing(routing_plus, base_routing) || !same_routing(routing_minus, base_routing)) {
        ++skipped;  // a top-K boundary was crossed: the loss is not differentiable there
        continue;
      }
      double numeric = (plus - minus) / (2 * eps);
      double analytic = flat_grad[index].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-7 + 1e-5 * std::abs(numeric)) << named.key() << "[" << index << "]";
      ++checked;
    }
    // The parameter's kind: the last name component that says what it is.
    std::string key = named.key();
    for (const std::string& kind : required_kinds) {
      if (key.find(kind) != std::string::npos) checked_kinds.insert(kind);
    }
  }
  EXPECT_GT(checked, 10 * skipped) << "too many elements sat on a routing boundary";
  for (const std::string& kind : required_kinds) EXPECT_TRUE(checked_kinds.count(kind)) << "no parameter of kind " << kind;
}

TEST(Gradients, FiniteDifferencesSequentialMtpWithLowRankQueries) {
  check_gradients(tiny_config(),
                  {"embed_tokens", "input_layernorm", "post_attention_layernorm", "q_a_proj", "q_a_layernorm",
                   "q_b_proj", "kv_a_proj_with_mqa", "kv_a_layernorm", "kv_b_proj", "o_proj", "mlp.gate_proj",
                   "mlp.up_proj", "mlp.down_proj", "mlp.gate.weight", "experts.gate_up_proj", "experts.down_proj",
                   "shared_experts", "enorm", "hnorm", "eh_proj", "shared_head_norm", "lm_head", "norm.weight"});
}

TEST(Gradients, FiniteDifferencesParallelMtpWithPlainQueriesAndTiedHead) {
  ModelConfig c = tiny_config();
  c.mtp_kind = MtpKind::kParallel;
  c.q_lora_rank.reset();
  c.tie_word_embeddings = true;
  check_gradients(c, {"embed_tokens", "q_proj", "kv_b_proj", "experts.gate_up_proj", "shared_head_norm"});
}

}  // namespace
}  // namespace nextn

namespace nextn {
namespace {

TEST(CrossEntropy, ValueAndGradientEqualAutogradThroughLogSoftmax) {
  torch::manual_seed(23);
  auto logits = torch::randn({9, 11}, torch::kDouble).requires_grad_(true);
  auto reference_logits = logits.detach().clone().requires_grad_(true);
  auto targets = torch::randint(11, {9}, torch::kLong);
  targets[2] = -100;
  targets[5] = -100;
  CrossEntropySum ours = cross_entropy_sum(logits, targets, -100);
  auto counted = targets.ne(-100);
  auto reference = -torch::log_softmax(reference_logits, -1)
                        .gather(1, targets.masked_fill(counted.logical_not(), 0).unsqueeze(1))
                        .squeeze(1)
                        .masked_fill(counted.logical_not(), 0.0)
                        .sum();
  EXPECT_NEAR(ours.loss_sum.item<double>(), reference.item<double>(), 1e-12);
  EXPECT_EQ(ours.count, 7);
  (ours.loss_sum * 0.7).backward();
  (reference * 0.7).backward();
  EXPECT_LT(testing::max_abs_diff(logits.grad(), reference_logits.grad()), 1e-14);
  EXPECT_EQ(logits.grad()[2].abs().sum().item<double>(), 0.0);  // ignored rows get no gradient
  auto argmax = logits.argmax(-1);
  double correct = 0;
  for (int64_t i = 0; i < 9; ++i) correct += counted[i].item<bool>() && argmax[i].item<int64_t>() == targets[i].item<int64_t>();
  EXPECT_EQ(ours.correct.item<double>(), correct);
}

}  // namespace
}  // namespace nextn

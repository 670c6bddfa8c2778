// bf16 mixed precision (device/precision.h) against fp32 and against explicit bf16 formulas: the
// fused head, the experts, the router (which must stay fp32) and a whole model's training step.
#include <gtest/gtest.h>

#include <limits>

#include "nextn/device/precision.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/fused_head_loss.h"
#include "nextn/model/objective.h"
#include "nextn/model/router.h"
#include "nextn/model/routed_experts.h"
#include "nextn/model/softmax_to.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::tiny_config;

const torch::Device kCpu(torch::kCPU);

double relative_error(const torch::Tensor& a, const torch::Tensor& reference) {
  auto r = reference.to(torch::kDouble);
  return (a.to(torch::kDouble) - r).norm().item<double>() / std::max(r.norm().item<double>(), 1e-30);
}

torch::Tensor bf16_rounded(const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kDouble); }

TEST(MixedPrecision, FusedHeadInBf16IsTheLossOfBf16Logits) {
  torch::manual_seed(1);
  const int64_t rows = 300, hidden = 32, vocab = 500;
  auto x = torch::randn({rows, hidden}).requires_grad_(true);
  auto w = torch::randn({vocab, hidden}).mul_(0.3).requires_grad_(true);
  auto targets = torch::randint(vocab, {rows}, torch::kLong);
  CrossEntropySum s;
  {
    TrainingPrecisionScope bf16(kCpu, Precision::kBf16);
    s = fused_head_cross_entropy(x, w, targets, -100, 64);
  }
  s.loss_sum.backward();
  EXPECT_EQ(x.grad().scalar_type(), torch::kFloat);
  EXPECT_EQ(w.grad().scalar_type(), torch::kFloat);

  // The formula in double from bf16 operands: z = x W^T (each logit rounded to bf16 as the
  // product returns it), loss = sum(logsumexp(z) - z_t), g = softmax(z) - onehot(t),
  // dx = bf16(g) W, dW = bf16(g)^T x.
  auto xb = bf16_rounded(x.detach()), wb = bf16_rounded(w.detach());
  auto z = bf16_rounded(torch::mm(xb, wb.t()));
  auto loss = (torch::logsumexp(z, -1) - z.gather(1, targets.unsqueeze(1)).squeeze(1)).sum().item<double>();
  auto g = torch::softmax(z, -1) - torch::one_hot(targets, vocab).to(torch::kDouble);
  EXPECT_NEAR(s.loss_sum.item<double>(), loss, 1e-5 * loss);
  EXPECT_LT(relative_error(x.grad(), torch::mm(bf16_rounded(g), wb)), 1e-2);
  EXPECT_LT(relative_error(w.grad(), torch::mm(bf16_rounded(g).t(), xb)), 1e-2);

  // And it is not the fp32 loss: the products did run in bf16.
  torch::NoGradGuard no_grad;
  auto fp32 = fused_head_cross_entropy(x, w, targets, -100, 64).loss_sum.item<double>();
  EXPECT_NE(fp32, s.loss_sum.item<double>());
  EXPECT_NEAR(fp32, s.loss_sum.item<double>(), 1e-2 * fp32);
}

TEST(MixedPrecision, TheRouterStaysFp32UnderBf16) {
  ModelConfig config = tiny_config();
  torch::manual_seed(2);
  MoeGate gate(config);
  torch::nn::init::normal_(gate->weight, 0.0, 0.3);
  gate->e_score_correction_bias.normal_(0.0, 0.05);
  auto x = torch::randn({96, config.hidden_size});
  Routing fp32 = gate->forward(x);
  Routing bf16;
  {
    TrainingPrecisionScope scope(kCpu, Precision::kBf16);
    bf16 = gate->forward(x);
    // Without the gate's own scope this product would be bf16 and the scores would differ.
    EXPECT_EQ(torch::mm(x, gate->weight.t()).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(bf16.scores.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(bf16.scores, fp32.scores));
  EXPECT_TRUE(torch::equal(bf16.expert_ids, fp32.expert_ids));
  EXPECT_TRUE(torch::equal(bf16.weights, fp32.weights));
}

TEST(MixedPrecision, ExpertsInBf16MatchTheirBf16FormulaAndReturnFp32Gradients) {
  torch::manual_seed(3);
  // Padded to 32, 0, 32 and 64 rows inside (kExpertRowMultiple): the padding must not show.
  const int64_t experts = 4, hidden = 16, inter = 8;
  const std::vector<int64_t> tokens_per_expert = {5, 0, 7, 33};
  auto x = torch::randn({45, hidden}).requires_grad_(true);
  auto gate_up = torch::randn({experts, 2 * inter, hidden}).mul_(0.3).requires_grad_(true);
  auto down = torch::randn({experts, hidden, inter}).mul_(0.3).requires_grad_(true);
  torch::Tensor y;
  {
    TrainingPrecisionScope scope(kCpu, Precision::kBf16);
    y = grouped_swiglu(x, gate_up, down, tokens_per_expert);
  }
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  (y * y).sum().backward();
  EXPECT_EQ(gate_up.grad().scalar_type(), torch::kFloat);

  // The same experts in double, by a loop over rows, from bf16-rounded operands.
  auto xd = bf16_rounded(x.detach()).requires_grad_(true);
  auto gud = bf16_rounded(gate_up.detach()).requires_grad_(true);
  auto dd = bf16_rounded(down.detach()).requires_grad_(true);
  std::vector<torch::Tensor> rows;
  int64_t row = 0;
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t i = 0; i < tokens_per_expert[e]; ++i, ++row) {
      auto pre = torch::mv(gud[e], xd[row]);
      auto act = torch::silu(pre.narrow(0, 0, inter)) * pre.narrow(0, inter, inter);
      rows.push_back(torch::mv(dd[e], act));
    }
  }
  auto reference = torch::stack(rows);
  (reference * reference).sum().backward();
  EXPECT_LT(relative_error(y, reference), 2e-2);
  EXPECT_GT(relative_error(y, reference), 0.0);
  EXPECT_LT(relative_error(x.grad(), xd.grad()), 3e-2);
  EXPECT_LT(relative_error(gate_up.grad(), gud.grad()), 3e-2);
  EXPECT_LT(relative_error(down.grad(), dd.grad()), 3e-2);
  EXPECT_EQ(gate_up.grad()[1].abs().sum().item<double>(), 0.0);  // an expert without tokens
}

TEST(MixedPrecision, SoftmaxToBf16KeepsTheBf16ProbabilitiesAndTheirGradient) {
  torch::manual_seed(6);
  auto logits = (torch::randn({2, 3, 5, 7}) * 3).requires_grad_(true);
  auto mask = torch::triu(torch::full({5, 7}, -std::numeric_limits<float>::infinity()), 3);
  auto upstream = torch::randn({2, 3, 5, 7});
  auto probs = softmax_to(logits + mask, torch::kBFloat16);
  // Forward: exactly softmax's result, rounded to bf16.
  EXPECT_TRUE(torch::equal(probs, torch::softmax(logits.detach() + mask, -1).to(torch::kBFloat16)));
  (probs.to(torch::kFloat) * upstream).sum().backward();
  // Backward against autograd's softmax in double (with the upstream gradient rounded to bf16, as
  // the bf16 probabilities' gradient arrives): within bf16's rounding of p.
  auto reference_logits = logits.detach().to(torch::kDouble).requires_grad_(true);
  auto reference = torch::softmax(reference_logits + mask.to(torch::kDouble), -1);
  (reference * upstream.to(torch::kBFloat16).to(torch::kDouble)).sum().backward();
  EXPECT_EQ(logits.grad().scalar_type(), torch::kFloat);
  EXPECT_LT(relative_error(logits.grad(), reference_logits.grad()), 1e-2);
  EXPECT_EQ(logits.grad().select(2, 0).narrow(-1, 3, 4).abs().max().item<double>(), 0.0);  // masked: none
  // In the logits' own type it is torch::softmax, autograd's backward included.
  auto same = logits.detach().clone().requires_grad_(true), plain = logits.detach().clone().requires_grad_(true);
  (softmax_to(same, torch::kFloat) * upstream).sum().backward();
  (torch::softmax(plain, -1) * upstream).sum().backward();
  EXPECT_TRUE(torch::equal(same.grad(), plain.grad()));
}

TEST(MixedPrecision, AModelsStepInBf16IsCloseToFp32WithFp32Gradients) {
  ModelConfig config = tiny_config();  // D = 2 sequential MTP modules
  auto step = [&](Precision precision, bool fused) {
    torch::manual_seed(4);
    DeepSeekV3 model(config);
    torch::manual_seed(5);
    auto window = torch::randint(config.vocab_size, {3, 33}, torch::kLong);
    ObjectiveOptions options;
    options.sequence_balance_alpha = 1e-4;
    ObjectiveOutput obj;
    ModelOutput out;
    {
      TrainingPrecisionScope scope(kCpu, precision);
      out = model->forward(window.narrow(1, 0, 32), ForwardOptions{true, true, fused});
      obj = compute_objective(out, window.narrow(1, 1, 32), torch::Tensor(), options);
    }
    obj.total.backward();
    std::vector<std::pair<std::string, torch::Tensor>> grads;
    for (auto& p : model->named_parameters()) {
      EXPECT_EQ(p.value().scalar_type(), torch::kFloat) << p.key();
      if (p.value().grad().defined()) {
        EXPECT_EQ(p.value().grad().scalar_type(), torch::kFloat) << p.key();
        grads.push_back({p.key(), p.value().grad().clone()});
      }
    }
    return std::make_pair(obj.total.item<double>(), grads);
  };
  auto [fp32_loss, fp32_grads] = step(Precision::kFp32, true);
  for (bool fused : {true, false}) {
    auto [bf16_loss, bf16_grads] = step(Precision::kBf16, fused);
    EXPECT_NE(bf16_loss, fp32_loss);
    EXPECT_NEAR(bf16_loss, fp32_loss, 1e-2 * fp32_loss) << (fused ? "fused" : "unfused");
    ASSERT_EQ(bf16_grads.size(), fp32_grads.size());
    for (size_t i = 0; i < fp32_grads.size(); ++i) {
      EXPECT_LT(relative_error(bf16_grads[i].second, fp32_grads[i].second), 0.1)
          << fp32_grads[i].first << (fused ? " fused" : " unfused");
    }
  }
}

}  // namespace
}  // namespace nextn

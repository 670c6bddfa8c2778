// The FLOPs formula behind `nextn bench train`'s throughput and MFU, against the matrix products
// a forward pass actually runs, counted from their operand shapes by a RecordFunction observer.
#include <gtest/gtest.h>

#include <ATen/record_function.h>

#include "nextn/model/deepseek_v3.h"
#include "nextn/model/model_flops.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::tiny_config;

thread_local int64_t observed_flops = 0;

// 2 x multiply-adds of every matrix product the dispatcher sees (the leaf operators that
// matmul, linear and einsum end in); out= variants carry the output as a third operand.
std::unique_ptr<at::ObserverContext> count_product(const at::RecordFunction& fn) {
  const std::string name = fn.name();
  auto inputs = fn.inputs();
  auto shape = [&](size_t i) { return inputs[i].toTensor().sizes(); };
  if (name == "aten::mm") {
    observed_flops += 2 * shape(0)[0] * shape(0)[1] * shape(1)[1];
  } else if (name == "aten::addmm") {
    observed_flops += 2 * shape(1)[0] * shape(1)[1] * shape(2)[1];
  } else if (name == "aten::bmm") {
    observed_flops += 2 * shape(0)[0] * shape(0)[1] * shape(0)[2] * shape(1)[2];
  } else if (name == "aten::mv") {
    observed_flops += 2 * shape(0)[0] * shape(0)[1];
  } else if (name == "aten::dot" || name == "aten::addmv" || name == "aten::baddbmm") {
    ADD_FAILURE() << name << " is not counted by this test";
  }
  return nullptr;
}

int64_t flops_of_forward(DeepSeekV3& model, const torch::Tensor& ids, bool with_mtp) {
  observed_flops = 0;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(&count_product).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  ForwardOptions options;
  options.run_mtp = with_mtp;
  model->forward(ids, options);
  at::removeCallback(handle);
  return observed_flops;
}

ModelConfig parallel_dense_q_config() {
  ModelConfig c = tiny_config();
  c.mtp_kind = MtpKind::kParallel;
  c.q_lora_rank.reset();
  return c;
}

TEST(ModelFlops, EqualsTheProductsAForwardRuns) {
  for (const ModelConfig& config : {tiny_config(), parallel_dense_q_config()}) {
    torch::manual_seed(0);
    DeepSeekV3 model(config);
    for (bool with_mtp : {true, false}) {
      auto ids = torch::randint(config.vocab_size, {2, 12}, torch::kLong);
      const int64_t expected = forward_flops(config, 2, 12, with_mtp).total();
      EXPECT_EQ(flops_of_forward(model, ids, with_mtp), expected)
          << to_string(config.mtp_kind) << (with_mtp ? " with" : " without") << " MTP";
    }
  }
}

TEST(ModelFlops, AttentionGrowsWithTheSquareOfTheWindowAndTrainingIsThreeForwards) {
  ModelConfig c = tiny_config();
  auto short_window = forward_flops(c, 1, 8, false);
  auto long_window = forward_flops(c, 1, 16, false);
  EXPECT_EQ(long_window.projections, 2 * short_window.projections);
  EXPECT_EQ(long_window.attention, 4 * short_window.attention);
  EXPECT_EQ(training_step_flops(c, 3, 8, true), 3 * forward_flops(c, 3, 8, true).total());
  // Without MTP modules in the config, "with MTP" adds nothing.
  c.num_nextn_predict_layers = 0;
  EXPECT_EQ(forward_flops(c, 1, 8, true).total(), forward_flops(c, 1, 8, false).total());
}

}  // namespace
}  // namespace nextn

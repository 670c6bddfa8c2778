// `nextn smoke`: a forward/backward run of a model config on random tokens. It checks that the
// model, the MTP objective and the optimizer step work on this machine and shows the loss of
// every MTP depth falling as a few AdamW steps fit one fixed random batch.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "command_registry.h"
#include "nextn/config/model_config.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/load_balance.h"
#include "nextn/model/objective.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

struct SmokeOptions {
  std::string config_path;
  int64_t batch = 4;
  int64_t length = 128;
  int64_t steps = 5;
  double lr = 3e-3;
  double mtp_lambda = 0.3;
  uint64_t seed = 0;
  int threads = 0;
};

void run_smoke(const SmokeOptions& o) {
  apply_threads(o.threads);
  ModelConfig config = load_model_config(o.config_path);
  NEXTN_CHECK(o.length >= 2 && o.length <= config.max_position_embeddings, "--length must be in [2, ",
              config.max_position_embeddings, "]");
  std::cout << describe(runtime_info()) << "\n";
  ParameterCount count = count_parameters(config);
  std::printf("model %s: %.2fM parameters (%.2fM activated), MTP depth %lld (%s)\n", o.config_path.c_str(),
              count.total / 1e6, count.activated / 1e6, static_cast<long long>(config.mtp_depth()),
              to_string(config.mtp_kind).c_str());

  torch::manual_seed(o.seed);
  DeepSeekV3 model(config);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(0.0));
  auto window = torch::randint(config.vocab_size, {o.batch, o.length + 1}, torch::kLong);
  auto inputs = window.narrow(1, 0, o.length);
  auto labels = window.narrow(1, 1, o.length);
  ObjectiveOptions objective;
  objective.mtp_lambda = o.mtp_lambda;
  objective.sequence_balance_alpha = 1e-4;

  for (int64_t step = 1; step <= o.steps; ++step) {
    auto start = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    ModelOutput out = model(inputs);
    ObjectiveOutput loss = compute_objective(out, labels, torch::Tensor(), objective);
    loss.total.backward();
    optimizer.step();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double max_vio = 0.0;
    for (const auto& stats : out.moe_stats) max_vio = std::max(max_vio, max_violation(stats.expert_counts));
    std::printf("step %lld  loss %.4f  main %.4f", static_cast<long long>(step), loss.total.item<double>(),
                loss.main_loss.item<double>());
    for (size_t k = 0; k < loss.mtp_loss.size(); ++k) {
      std::printf("  mtp%zu %.4f", k + 1, loss.mtp_loss[k].item<double>());
    }
    std::printf("  max_vio %.2f  %.0f tok/s\n", max_vio, static_cast<double>(o.batch * o.length) / seconds);
  }
}

void setup_smoke(CLI::App& app) {
  auto options = std::make_shared<SmokeOptions>();
  auto* cmd = app.add_subcommand("smoke", "Forward/backward steps of a config on random tokens");
  cmd->add_option("--config", options->config_path, "model config.json")->required();
  cmd->add_option("--batch", options->batch, "sequences per step")->check(positive());
  cmd->add_option("--length", options->length, "tokens per sequence")->check(positive());
  cmd->add_option("--steps", options->steps, "AdamW steps on one random batch")->check(positive());
  cmd->add_option("--lr", options->lr, "learning rate");
  cmd->add_option("--mtp-lambda", options->mtp_lambda, "weight of the MTP losses");
  cmd->add_option("--seed", options->seed, "random seed");
  add_threads_option(*cmd, options->threads);
  cmd->callback([options] { run_smoke(*options); });
}

NEXTN_REGISTER_COMMAND(10, setup_smoke);

}  // namespace
}  // namespace nextn::cli

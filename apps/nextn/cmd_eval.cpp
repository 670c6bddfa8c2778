// `nextn eval`: validation losses, per-depth accuracy and expert load; with --acceptance, how often
// the MTP modules' drafts are accepted when they draft for the model on held-out prompts.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "command_registry.h"
#include "decoding_weights_flags.h"
#include "nextn/inference/decoding_panels.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/device/device.h"
#include "nextn/training/drafting_eval.h"
#include "nextn/training/evaluator.h"
#include "nextn/training/metrics_log.h"
#include "nextn/training/model_dataset.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/util/error.h"

namespace fs = std::filesystem;

namespace nextn::cli {
namespace {

std::string temperature_label(double temperature) {
  if (temperature == 0.0) return "greedy";
  char buffer[48];
  std::snprintf(buffer, sizeof(buffer), "temperature %g", temperature);
  return buffer;
}

// One line per temperature, and the figures as JSON.
nlohmann::json report_acceptance(const DraftingEvalResult& r) {
  const auto& o = r.options;
  const auto& t = r.totals;
  std::printf("acceptance (%s, %lld prompts of %lld tokens, %lld new tokens each, %lld drafts per step):",
              temperature_label(o.sampling.temperature).c_str(), static_cast<long long>(o.prompts),
              static_cast<long long>(o.prompt_tokens), static_cast<long long>(o.new_tokens),
              static_cast<long long>(o.draft_tokens));
  nlohmann::json per_depth = nlohmann::json::array();
  for (int64_t k = 1; k <= o.draft_tokens; ++k) {
    std::printf(" depth %lld %.1f%% (%lld/%lld)", static_cast<long long>(k), 100.0 * t.acceptance_rate(k),
                static_cast<long long>(t.accepted_per_depth.at(k - 1)), static_cast<long long>(t.reached_per_depth.at(k - 1)));
    per_depth.push_back({{"depth", k},
                         {"acceptance", t.acceptance_rate(k)},
                         {"accepted", t.accepted_per_depth.at(k - 1)},
                         {"reached", t.reached_per_depth.at(k - 1)},
                         {"drafted", t.drafted_per_depth.at(k - 1)}});
  }
  std::printf(" | %.3f tokens per step\n", t.mean_tokens_per_step());
  return {{"temperature", o.sampling.temperature}, {"prompts", o.prompts},        {"prompt_tokens", o.prompt_tokens},
          {"new_tokens", o.new_tokens},           {"draft_tokens", o.draft_tokens}, {"seed", o.sampling.seed},
          {"tokens_per_step", t.mean_tokens_per_step()}, {"depths", per_depth}};
}

void setup_eval(CLI::App& app) {
  struct EvalFlags {
    std::string model_dir, data_dir;
    EvalOptions options;
    bool no_mtp = false;
    int threads = 0;
    std::string device = "cpu";
    bool no_verify = false;
    DraftingEvalOptions drafting;
    int64_t acceptance_prompts = 0;
    std::vector<double> temperatures{0.0};
    DecodingWeightsFlags decoding_weights;  // --acceptance's decoding
  };
  auto f = std::make_shared<EvalFlags>();
  auto* cmd = app.add_subcommand("eval", "Validation losses, per-depth accuracy and expert load of a model; "
                                         "with --acceptance, its drafts' acceptance on held-out prompts");
  cmd->add_option("--model", f->model_dir, "model or run directory")->required();
  cmd->add_option("--data", f->data_dir, "dataset directory")->required();
  cmd->add_option("--batch-size", f->options.batch_size, "sequences per batch");
  cmd->add_option("--seq-len", f->options.seq_len, "tokens per sequence");
  cmd->add_option("--max-batches", f->options.max_batches, "batches to evaluate (0: the whole validation split)")
      ->check(non_negative());
  cmd->add_flag("--no-mtp", f->no_mtp, "evaluate the main model only");
  cmd->add_option("--acceptance", f->acceptance_prompts,
                  "also draft with the MTP modules after this many held-out prompts (spread over the validation "
                  "split) and report each depth's acceptance (0: not)");
  cmd->add_option("--prompt-tokens", f->drafting.prompt_tokens, "--acceptance: tokens per prompt");
  cmd->add_option("--new-tokens", f->drafting.new_tokens, "--acceptance: tokens generated after each prompt");
  cmd->add_option("--draft", f->drafting.draft_tokens, "--acceptance: drafts per step (default: the MTP depth)");
  cmd->add_option("--temperature", f->temperatures,
                  "--acceptance: sampling temperatures, one measurement each (0: greedy; default 0)");
  cmd->add_option("--seed", f->drafting.sampling.seed, "--acceptance: sampling seed (prompt i uses seed + i)");
  add_threads_option(*cmd, f->threads);
  cmd->add_option("--device", f->device, "cpu or cuda[:N]");
  add_no_verify_option(*cmd, f->no_verify);
  f->decoding_weights.add(*cmd);
  cmd->callback([f] {
    apply_threads(f->threads);
    NEXTN_CHECK(f->acceptance_prompts >= 0, "--acceptance must be >= 0, got ", f->acceptance_prompts);
    NEXTN_CHECK(!(f->no_mtp && f->acceptance_prompts > 0), "--acceptance drafts with the MTP modules: not with --no-mtp");
    const torch::Device device = resolve_device(f->device);
    const std::string dir = resolve_model_dir(f->model_dir);
    const ModelConfig config = load_model_config((fs::path(dir) / "config.json").string());
    auto dataset = open_dataset_for_model(f->data_dir, dir, config.vocab_size);
    std::vector<DraftingEvalOptions> drafting;
    for (double temperature : f->temperatures) {  // every option checked before any work
      DraftingEvalOptions o = f->drafting;
      o.prompts = std::max<int64_t>(1, f->acceptance_prompts);
      o.sampling.temperature = temperature;
      if (f->acceptance_prompts > 0) o.validate(config);
      drafting.push_back(o);
    }
    DeepSeekV3 model = load_model(dir, device, !f->no_verify);
    EvalOptions options = f->options;
    options.mtp = !f->no_mtp;
    EvalMetrics m = evaluate(*model, dataset, options);
    std::cout << "model " << dir << "\n" << format_eval_line(m) << "\n";
    for (size_t l = 0; l < m.expert_load.size(); ++l) {
      std::cout << "MoE layer " << l << " MaxVio " << m.max_vio_global[l] << " load";
      for (double v : m.expert_load[l]) std::printf(" %.3f", v);
      std::cout << "\n";
    }
    nlohmann::json out = to_json(m);
    if (f->acceptance_prompts > 0) {
      const auto panels = f->decoding_weights.pack(model);  // decoding as generate and serve decode
      out["acceptance"] = nlohmann::json::array();
      for (const auto& o : drafting) {
        std::cout.flush();
        out["acceptance"].push_back(report_acceptance(evaluate_drafting(model, dataset, o)));
      }
    }
    std::cout << out.dump() << "\n";
  });
}

NEXTN_REGISTER_COMMAND(50, setup_eval);

}  // namespace
}  // namespace nextn::cli

// `nextn model info`: what a config describes: layers, MoE layout, MTP, parameter counts.
// `nextn model init`: a model directory of freshly initialized weights (checkpoint/model_export.h).
#include <iomanip>
#include <iostream>

#include "command_registry.h"
#include "nextn/checkpoint/model_export.h"
#include "nextn/config/model_config.h"

namespace nextn::cli {
namespace {

std::string millions(int64_t n) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << static_cast<double>(n) / 1e6 << "M";
  return out.str();
}

void print_model_info(const std::string& config_path) {
  ModelConfig config = load_model_config(config_path);
  ParameterCount count = count_parameters(config);
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) moe_layers += config.is_moe_layer(l);
  std::cout << "config: " << config_path << "\n"
            << "layers: " << config.num_hidden_layers << " (" << config.num_hidden_layers - moe_layers
            << " dense, " << moe_layers << " MoE), hidden " << config.hidden_size << ", heads "
            << config.num_attention_heads << ", vocab " << config.vocab_size << "\n"
            << "MoE: " << config.n_routed_experts << " routed + " << config.n_shared_experts
            << " shared experts, top-" << config.num_experts_per_tok << " of " << config.n_group
            << " groups (keep " << config.topk_group << ", scored by their " << config.group_score_topk
            << " best)\n"
            << "MTP: depth " << config.mtp_depth() << ", " << to_string(config.mtp_kind) << "\n"
            << "parameters: total " << millions(count.total) << ", main model "
            << millions(count.main_model) << ", activated per token " << millions(count.activated)
            << ", MTP modules " << millions(count.mtp) << "\n";
  for (const auto& difference : reference_code_differences(config)) std::cout << "note: " << difference << "\n";
}

void setup_model(CLI::App& app) {
  auto* model = app.add_subcommand("model", "Inspect model configurations");
  model->require_subcommand(1);
  auto* info = model->add_subcommand("info", "Print layers and parameter counts of a config.json");
  auto path = std::make_shared<std::string>();
  info->add_option("--config", *path, "config.json (or a preset in configs/)")->required();
  info->callback([path] { print_model_info(*path); });

  struct InitFlags {
    std::string config, out_dir, tokenizer, dtype;
    uint64_t seed = 0;
  };
  auto f = std::make_shared<InitFlags>();
  auto* init = model->add_subcommand("init", "Write a model directory of freshly initialized weights (those a training "
                                             "run with the same --seed starts from), to measure a model's size untrained");
  init->add_option("--config", f->config, "config.json (or a preset in configs/)")->required();
  init->add_option("--out", f->out_dir, "output directory (new, empty, or an earlier export)")->required();
  init->add_option("--tokenizer", f->tokenizer, "tokenizer.json to put beside the weights (nextn serve needs one)");
  init->add_option("--seed", f->seed, "initialization seed (train's --seed)");
  init->add_option("--dtype", f->dtype, "float32, bfloat16 or float16 (default: the config's torch_dtype)");
  init->callback([f] {
    const ModelConfig config = load_model_config(f->config);
    SaveModelOptions options;
    if (!f->dtype.empty()) options.dtype = dtype_from_name(f->dtype);
    const ExportResult result = init_model_directory(config, f->seed, f->tokenizer, f->out_dir, options);
    for (const auto& difference : reference_code_differences(config)) std::cout << "note: " << difference << "\n";
    std::cout << "wrote " << f->out_dir << ": " << millions(count_parameters(config).total)
              << " parameters initialized with seed " << f->seed
              << (result.has_tokenizer ? "" : " (no tokenizer.json: pass --tokenizer to serve it)") << "\n";
  });
}

NEXTN_REGISTER_COMMAND(20, setup_model);

}  // namespace
}  // namespace nextn::cli

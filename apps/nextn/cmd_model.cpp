// `nextn model info`: what a config describes: layers, MoE layout, MTP, parameter counts.
#include <iomanip>
#include <iostream>

#include "command_registry.h"
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
}

NEXTN_REGISTER_COMMAND(20, setup_model);

}  // namespace
}  // namespace nextn::cli

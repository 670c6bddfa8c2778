// The model configuration, in the Hugging Face DeepSeek-V3 `config.json` format (model_type
// "deepseek_v3"), plus the few keys nextn adds for what the hub format lacks (`mtp_kind`).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nextn {

enum class MtpKind {
  kSequential,  // DeepSeek-V3: D chained modules, module k sees module k-1's hidden state
  kParallel,    // Gloeckle et al.: D independent heads on the same trunk hidden state
};

std::string to_string(MtpKind kind);
MtpKind mtp_kind_from_string(const std::string& name);  // "sequential" | "parallel"

// YaRN context extension (rope_scaling.type == "yarn").
struct RopeScaling {
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  // Vocabulary and widths.
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense SwiGLU layers
  int64_t moe_intermediate_size = 0;  // each routed and shared expert
  int64_t num_hidden_layers = 0;
  int64_t first_k_dense_replace = 0;  // layers [0, k) are dense
  int64_t moe_layer_freq = 1;         // then every moe_layer_freq-th layer is MoE

  // MLA attention.
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;        // must equal num_attention_heads for MLA
  std::optional<int64_t> q_lora_rank;     // nullopt: a plain q_proj
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // DeepSeekMoE.
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;  // K
  int64_t n_group = 1;
  int64_t topk_group = 1;
  // Group-limited routing scores each group by the sum of its group_score_topk largest biased
  // affinities. DeepSeek's inference code and Hugging Face's modeling code sum 2 (the default when
  // the key is absent); the report's words ("the sum of the highest K_r/M affinity scores") give
  // num_experts_per_tok / topk_group, which only equals 2 for DeepSeek-V3's 8 / 4. nextn's key.
  int64_t group_score_topk = 2;
  double routed_scaling_factor = 1.0;
  std::string scoring_func = "sigmoid";
  std::string topk_method = "noaux_tc";
  bool norm_topk_prob = true;

  // Norms, positions.
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  int64_t max_position_embeddings = 0;

  // Multi-token prediction.
  int64_t num_nextn_predict_layers = 0;  // D
  MtpKind mtp_kind = MtpKind::kSequential;

  bool tie_word_embeddings = false;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;
  double initializer_range = 0.02;
  std::string torch_dtype = "float32";  // the dtype weights are saved in by default

  // Keys nextn does not interpret (architectures, auto_map, ...), kept so that a config read and
  // written back loses nothing.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();

  // Derived values.
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  int64_t mtp_depth() const { return num_nextn_predict_layers; }
  // The attention softmax scale, including YaRN's mscale^2 when rope_scaling is set.
  double softmax_scale() const;

  // Throws nextn::Error naming the first key that is missing, out of range or inconsistent.
  void validate() const;
};

// Parsing validates every key it reads and the whole config; errors name the key.
ModelConfig model_config_from_json(const nlohmann::json& json);
ModelConfig load_model_config(const std::string& path);
nlohmann::ordered_json model_config_to_json(const ModelConfig& config);
void save_model_config(const ModelConfig& config, const std::string& path);

// How the config would compute differently in Hugging Face's modeling code and DeepSeek's
// inference code, one sentence each (empty: the same). `nextn export` refuses such a model unless
// told to, and `nextn model info` lists them.
std::vector<std::string> reference_code_differences(const ModelConfig& config);

// Parameter counts, for `nextn model info` and for checking the presets' sizes.
struct ParameterCount {
  int64_t total = 0;       // every parameter, MTP modules included
  int64_t main_model = 0;  // without the MTP modules
  int64_t activated = 0;   // per token in the main model: K routed experts instead of all
  int64_t mtp = 0;         // the MTP modules (shared embedding and head not counted again)
};
ParameterCount count_parameters(const ModelConfig& config);

}  // namespace nextn

#include "nextn/config/model_config.h"

#include <cmath>
#include <set>

#include "nextn/io/atomic_file.h"
#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

using json = nlohmann::json;

// The keys nextn reads; everything else in a config.json is carried along in `extra`.
const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      "model_type", "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
      "num_hidden_layers", "first_k_dense_replace", "moe_layer_freq", "num_attention_heads",
      "num_key_value_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
      "v_head_dim", "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "n_group",
      "topk_group", "group_score_topk", "routed_scaling_factor", "scoring_func", "topk_method", "norm_topk_prob",
      "rms_norm_eps", "rope_theta", "rope_scaling", "max_position_embeddings",
      "num_nextn_predict_layers", "mtp_kind", "tie_word_embeddings", "bos_token_id",
      "eos_token_id", "initializer_range", "torch_dtype", "hidden_act", "attention_bias",
      "quantization_config"};
  return keys;
}

// What Hugging Face's DeepseekV3Config (transformers, models/deepseek_v3/configuration_deepseek_v3.py)
// takes for a key that config.json lacks: a config must mean the same here as there. (It has
// defaults for the shapes too, those of the 671B model; nextn requires those keys instead of
// reading a file without them as that model.)
namespace hf_default {
constexpr int64_t kIntermediateSize = 18432;
constexpr int64_t kMoeIntermediateSize = 2048;
constexpr int64_t kFirstKDenseReplace = 3;
constexpr int64_t kNumKeyValueHeads = 128;  // when absent; null means num_attention_heads there
constexpr int64_t kQLoraRank = 1536;        // when absent; null means a plain q_proj
constexpr int64_t kNRoutedExperts = 256;
constexpr int64_t kNSharedExperts = 1;
constexpr int64_t kNumExpertsPerTok = 8;
constexpr int64_t kNGroup = 8;
constexpr int64_t kTopkGroup = 4;
constexpr double kRoutedScalingFactor = 2.5;
constexpr bool kNormTopkProb = true;
constexpr double kRmsNormEps = 1e-6;
constexpr double kRopeTheta = 10000.0;
constexpr bool kTieWordEmbeddings = false;
constexpr int64_t kBosTokenId = 0;
constexpr int64_t kEosTokenId = 1;
constexpr double kInitializerRange = 0.02;
}  // namespace hf_default

// The keys above, for telling a user which values did not come from the file.
const std::vector<std::string>& hf_defaulted_keys() {
  static const std::vector<std::string> keys = {
      "intermediate_size", "moe_intermediate_size", "first_k_dense_replace", "num_key_value_heads", "q_lora_rank",
      "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "n_group", "topk_group",
      "routed_scaling_factor", "norm_topk_prob", "rms_norm_eps", "rope_theta", "tie_word_embeddings",
      "bos_token_id", "eos_token_id", "initializer_range"};
  return keys;
}

const json* find(const json& j, const std::string& key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

bool is_explicit_null(const json& j, const std::string& key) {
  const json* v = find(j, key);
  return v != nullptr && v->is_null();
}

int64_t as_int(const json& value, const std::string& key) {
  if (value.is_number_integer()) return value.get<int64_t>();
  // 4096.0 is an integer written as a float; accept it, reject 4096.5.
  if (value.is_number_float()) {
    double d = value.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
  }
  fail("config key '", key, "' must be an integer, got ", value.dump());
}

double as_double(const json& value, const std::string& key) {
  NEXTN_CHECK(value.is_number(), "config key '", key, "' must be a number, got ", value.dump());
  double d = value.get<double>();
  NEXTN_CHECK(std::isfinite(d), "config key '", key, "' must be finite, got ", value.dump());
  return d;
}

int64_t required_int(const json& j, const std::string& key) {
  const json* v = find(j, key);
  NEXTN_CHECK(v != nullptr && !v->is_null(), "config is missing required key '", key, "'");
  return as_int(*v, key);
}

int64_t optional_int(const json& j, const std::string& key, int64_t fallback) {
  const json* v = find(j, key);
  return (v == nullptr || v->is_null()) ? fallback : as_int(*v, key);
}

double optional_double(const json& j, const std::string& key, double fallback) {
  const json* v = find(j, key);
  return (v == nullptr || v->is_null()) ? fallback : as_double(*v, key);
}

bool optional_bool(const json& j, const std::string& key, bool fallback) {
  const json* v = find(j, key);
  if (v == nullptr || v->is_null()) return fallback;
  NEXTN_CHECK(v->is_boolean(), "config key '", key, "' must be true or false, got ", v->dump());
  return v->get<bool>();
}

std::string optional_string(const json& j, const std::string& key, const std::string& fallback) {
  const json* v = find(j, key);
  if (v == nullptr || v->is_null()) return fallback;
  NEXTN_CHECK(v->is_string(), "config key '", key, "' must be a string, got ", v->dump());
  return v->get<std::string>();
}

// HF's yarn_get_mscale: the attention-temperature correction of YaRN (Peng et al. 2023, Eq. 22).
double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

std::optional<RopeScaling> parse_rope_scaling(const json& j) {
  const json* v = find(j, "rope_scaling");
  if (v == nullptr || v->is_null()) return std::nullopt;
  NEXTN_CHECK(v->is_object(), "config key 'rope_scaling' must be an object or null");
  std::string type = optional_string(*v, "type", optional_string(*v, "rope_type", ""));
  NEXTN_CHECK(type == "yarn", "config key 'rope_scaling.type' must be \"yarn\" (the only scaling "
              "DeepSeek-V3 uses), got \"", type, "\"");
  RopeScaling s;
  const json* factor = find(*v, "factor");
  NEXTN_CHECK(factor != nullptr, "config is missing required key 'rope_scaling.factor'");
  s.factor = as_double(*factor, "rope_scaling.factor");
  s.original_max_position_embeddings =
      required_int(*v, "original_max_position_embeddings");
  s.beta_fast = optional_double(*v, "beta_fast", s.beta_fast);
  s.beta_slow = optional_double(*v, "beta_slow", s.beta_slow);
  s.mscale = optional_double(*v, "mscale", s.mscale);
  s.mscale_all_dim = optional_double(*v, "mscale_all_dim", s.mscale_all_dim);
  return s;
}

void check_positive(int64_t value, const char* key) {
  NEXTN_CHECK(value > 0, "config key '", key, "' must be positive, got ", value);
}

// " (keys absent from the file take Hugging Face's defaults: n_group=8, ...)" for an invalid
// config, so that a value the user never wrote is explained; "" when every such key was given.
std::string hf_defaults_taken(const json& j, const ModelConfig& c) {
  const nlohmann::ordered_json values = model_config_to_json(c);
  std::string taken;
  for (const std::string& key : hf_defaulted_keys()) {
    if (find(j, key) == nullptr) taken += cat(taken.empty() ? "" : ", ", key, "=", values.at(key).dump());
  }
  if (taken.empty()) return "";
  return cat(" (keys absent from the file take Hugging Face's DeepseekV3Config defaults: ", taken, ")");
}

}  // namespace

std::string to_string(MtpKind kind) {
  return kind == MtpKind::kSequential ? "sequential" : "parallel";
}

MtpKind mtp_kind_from_string(const std::string& name) {
  if (name == "sequential") return MtpKind::kSequential;
  if (name == "parallel") return MtpKind::kParallel;
  fail("config key 'mtp_kind' must be \"sequential\" or \"parallel\", got \"", name, "\"");
}

double ModelConfig::softmax_scale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (rope_scaling && rope_scaling->mscale_all_dim != 0.0) {
    double m = yarn_get_mscale(rope_scaling->factor, rope_scaling->mscale_all_dim);
    scale *= m * m;
  }
  return scale;
}

// Bounds far above any real model, so that sizes multiply without overflow and a typo such as
// 10^12 layers is refused here rather than looped over or allocated.
void check_at_most(int64_t value, int64_t limit, const char* key) {
  NEXTN_CHECK(value <= limit, "config key '", key, "' is ", value, ", more than nextn supports (", limit, ")");
}

void ModelConfig::validate() const {
  check_positive(vocab_size, "vocab_size");
  NEXTN_CHECK(vocab_size >= 2, "config key 'vocab_size' must be at least 2, got ", vocab_size);
  constexpr int64_t kMaxSize = int64_t{1} << 31;  // token ids and tensor rows are int32 in places
  check_at_most(vocab_size, kMaxSize - 1, "vocab_size");
  for (auto [value, key] : {std::pair<int64_t, const char*>{hidden_size, "hidden_size"},
                            {intermediate_size, "intermediate_size"},
                            {moe_intermediate_size, "moe_intermediate_size"},
                            {num_attention_heads, "num_attention_heads"},
                            {kv_lora_rank, "kv_lora_rank"},
                            {q_lora_rank.value_or(0), "q_lora_rank"},
                            {qk_nope_head_dim, "qk_nope_head_dim"},
                            {qk_rope_head_dim, "qk_rope_head_dim"},
                            {v_head_dim, "v_head_dim"},
                            {n_routed_experts, "n_routed_experts"},
                            {n_shared_experts, "n_shared_experts"},
                            {max_position_embeddings, "max_position_embeddings"}}) {
    check_at_most(value, kMaxSize, key);
  }
  check_at_most(num_hidden_layers, 1 << 16, "num_hidden_layers");
  check_at_most(num_nextn_predict_layers, 1 << 10, "num_nextn_predict_layers");
  check_positive(hidden_size, "hidden_size");
  check_positive(num_hidden_layers, "num_hidden_layers");
  check_positive(num_attention_heads, "num_attention_heads");
  check_positive(kv_lora_rank, "kv_lora_rank");
  check_positive(qk_nope_head_dim, "qk_nope_head_dim");
  check_positive(qk_rope_head_dim, "qk_rope_head_dim");
  check_positive(v_head_dim, "v_head_dim");
  check_positive(max_position_embeddings, "max_position_embeddings");
  check_positive(moe_layer_freq, "moe_layer_freq");
  NEXTN_CHECK(qk_rope_head_dim % 2 == 0, "config key 'qk_rope_head_dim' must be even (RoPE rotates "
              "pairs), got ", qk_rope_head_dim);
  NEXTN_CHECK(num_key_value_heads == num_attention_heads, "config key 'num_key_value_heads' (",
              num_key_value_heads, ") must equal 'num_attention_heads' (", num_attention_heads,
              "): MLA gives every head its own key and value");
  if (q_lora_rank) check_positive(*q_lora_rank, "q_lora_rank");
  NEXTN_CHECK(first_k_dense_replace >= 0 && first_k_dense_replace <= num_hidden_layers,
              "config key 'first_k_dense_replace' must be in [0, num_hidden_layers=",
              num_hidden_layers, "], got ", first_k_dense_replace);

  bool has_dense = false;
  for (int64_t l = 0; l < num_hidden_layers + num_nextn_predict_layers; ++l) {
    has_dense = has_dense || !is_moe_layer(l);
  }
  if (has_dense) check_positive(intermediate_size, "intermediate_size");

  NEXTN_CHECK(n_routed_experts >= 0, "config key 'n_routed_experts' must be >= 0, got ",
              n_routed_experts);
  if (n_routed_experts > 0) {
    check_positive(moe_intermediate_size, "moe_intermediate_size");
    NEXTN_CHECK(n_shared_experts >= 0, "config key 'n_shared_experts' must be >= 0, got ",
                n_shared_experts);
    check_positive(num_experts_per_tok, "num_experts_per_tok");
    NEXTN_CHECK(num_experts_per_tok <= n_routed_experts, "config key 'num_experts_per_tok' (",
                num_experts_per_tok, ") exceeds 'n_routed_experts' (", n_routed_experts, ")");
    check_positive(n_group, "n_group");
    check_positive(topk_group, "topk_group");
    NEXTN_CHECK(n_routed_experts % n_group == 0, "config key 'n_routed_experts' (",
                n_routed_experts, ") is not divisible into 'n_group' (", n_group, ") equal groups");
    NEXTN_CHECK(topk_group <= n_group, "config key 'topk_group' (", topk_group,
                ") exceeds 'n_group' (", n_group, ")");
    const int64_t per_group = n_routed_experts / n_group;
    NEXTN_CHECK(topk_group * per_group >= num_experts_per_tok, "config key 'num_experts_per_tok' (",
                num_experts_per_tok, ") exceeds the experts of the 'topk_group' (", topk_group,
                ") groups a token may use (", per_group, " each)");
    check_positive(group_score_topk, "group_score_topk");
    NEXTN_CHECK(group_score_topk <= per_group, "config key 'group_score_topk' (", group_score_topk,
                ") exceeds the experts per group (", per_group, ")",
                per_group == 1 ? "; set it to 1 (Hugging Face's and DeepSeek's code need 2 experts per group)" : "");
    NEXTN_CHECK(scoring_func == "sigmoid", "config key 'scoring_func' must be \"sigmoid\" "
                "(DeepSeek-V3), got \"", scoring_func, "\"");
    NEXTN_CHECK(topk_method == "noaux_tc", "config key 'topk_method' must be \"noaux_tc\" "
                "(DeepSeek-V3 bias-based routing), got \"", topk_method, "\"");
    NEXTN_CHECK(routed_scaling_factor > 0, "config key 'routed_scaling_factor' must be positive, "
                "got ", routed_scaling_factor);
  }
  NEXTN_CHECK(rms_norm_eps > 0, "config key 'rms_norm_eps' must be positive, got ", rms_norm_eps);
  NEXTN_CHECK(rope_theta > 0, "config key 'rope_theta' must be positive, got ", rope_theta);
  if (rope_scaling) {
    NEXTN_CHECK(rope_scaling->factor >= 1.0, "config key 'rope_scaling.factor' must be >= 1, got ",
                rope_scaling->factor);
    check_positive(rope_scaling->original_max_position_embeddings,
                   "rope_scaling.original_max_position_embeddings");
    NEXTN_CHECK(rope_scaling->beta_fast > rope_scaling->beta_slow && rope_scaling->beta_slow > 0,
                "config keys 'rope_scaling.beta_fast' (", rope_scaling->beta_fast,
                ") and 'rope_scaling.beta_slow' (", rope_scaling->beta_slow,
                ") must satisfy beta_fast > beta_slow > 0");
  }
  NEXTN_CHECK(num_nextn_predict_layers >= 0, "config key 'num_nextn_predict_layers' must be >= 0, "
              "got ", num_nextn_predict_layers);
  NEXTN_CHECK(bos_token_id >= 0 && bos_token_id < vocab_size, "config key 'bos_token_id' (",
              bos_token_id, ") must be a token id below vocab_size (", vocab_size, ")");
  NEXTN_CHECK(eos_token_id >= 0 && eos_token_id < vocab_size, "config key 'eos_token_id' (",
              eos_token_id, ") must be a token id below vocab_size (", vocab_size, ")");
  NEXTN_CHECK(initializer_range > 0, "config key 'initializer_range' must be positive, got ",
              initializer_range);
  NEXTN_CHECK(torch_dtype == "float32" || torch_dtype == "bfloat16" || torch_dtype == "float16",
              "config key 'torch_dtype' must be \"float32\", \"bfloat16\" or \"float16\", got \"",
              torch_dtype, "\"");
}

ModelConfig model_config_from_json(const json& j) {
  NEXTN_CHECK(j.is_object(), "config must be a JSON object");
  std::string model_type = optional_string(j, "model_type", "deepseek_v3");
  NEXTN_CHECK(model_type == "deepseek_v3", "config key 'model_type' must be \"deepseek_v3\", got \"",
              model_type, "\"");
  NEXTN_CHECK(find(j, "quantization_config") == nullptr || find(j, "quantization_config")->is_null(),
              "config key 'quantization_config' is set: quantized (fp8) checkpoints are not "
              "supported; convert the weights to bf16 first (DeepSeek-V3's fp8_cast_bf16.py)");
  std::string act = optional_string(j, "hidden_act", "silu");
  NEXTN_CHECK(act == "silu", "config key 'hidden_act' must be \"silu\", got \"", act, "\"");
  NEXTN_CHECK(!optional_bool(j, "attention_bias", false),
              "config key 'attention_bias' must be false: MLA projections have no bias");
  // transformers v5 writes the rotary settings as one rope_parameters object, in place of rope_theta
  // and rope_scaling; read as absent they would fall back to defaults and make another model.
  if (const json* v5 = find(j, "rope_parameters"); v5 != nullptr && !v5->is_null()) {
    fail("config key 'rope_parameters' (transformers v5's form) is not read: write its values as 'rope_theta' "
         "and, for YaRN, 'rope_scaling' (transformers v4's keys, as DeepSeek-V3's config.json has them)");
  }
  // HF's DeepseekV3 rotates interleaved pairs (DeepSeek's layout) unless rope_interleave is false;
  // nextn always interleaves, so a false would compute another model here than there.
  if (const json* interleave = find(j, "rope_interleave"); interleave != nullptr && !interleave->is_null()) {
    NEXTN_CHECK(interleave->is_boolean() && interleave->get<bool>(), "config key 'rope_interleave' must be true "
                "(DeepSeek's interleaved rotary layout, the one nextn implements), got ", interleave->dump());
  }

  ModelConfig c;
  c.vocab_size = required_int(j, "vocab_size");
  c.hidden_size = required_int(j, "hidden_size");
  c.intermediate_size = optional_int(j, "intermediate_size", hf_default::kIntermediateSize);
  c.moe_intermediate_size = optional_int(j, "moe_intermediate_size", hf_default::kMoeIntermediateSize);
  c.num_hidden_layers = required_int(j, "num_hidden_layers");
  c.first_k_dense_replace = optional_int(j, "first_k_dense_replace", hf_default::kFirstKDenseReplace);
  // Not in HF's config: its modeling code makes every layer from first_k_dense_replace on MoE, as 1 does.
  c.moe_layer_freq = optional_int(j, "moe_layer_freq", 1);
  c.num_attention_heads = required_int(j, "num_attention_heads");
  c.num_key_value_heads = is_explicit_null(j, "num_key_value_heads")
                              ? c.num_attention_heads
                              : optional_int(j, "num_key_value_heads", hf_default::kNumKeyValueHeads);
  if (const json* q = find(j, "q_lora_rank"); q == nullptr) {
    c.q_lora_rank = hf_default::kQLoraRank;
  } else if (!q->is_null()) {
    c.q_lora_rank = as_int(*q, "q_lora_rank");
  }
  c.kv_lora_rank = required_int(j, "kv_lora_rank");
  c.qk_nope_head_dim = required_int(j, "qk_nope_head_dim");
  c.qk_rope_head_dim = required_int(j, "qk_rope_head_dim");
  c.v_head_dim = required_int(j, "v_head_dim");
  c.n_routed_experts = optional_int(j, "n_routed_experts", hf_default::kNRoutedExperts);
  c.n_shared_experts = optional_int(j, "n_shared_experts", hf_default::kNSharedExperts);
  c.num_experts_per_tok = optional_int(j, "num_experts_per_tok", hf_default::kNumExpertsPerTok);
  c.n_group = optional_int(j, "n_group", hf_default::kNGroup);
  c.topk_group = optional_int(j, "topk_group", hf_default::kTopkGroup);
  c.group_score_topk = optional_int(j, "group_score_topk", 2);  // what HF and DeepSeek's code sum
  c.routed_scaling_factor = optional_double(j, "routed_scaling_factor", hf_default::kRoutedScalingFactor);
  // Not in HF's config: its modeling code always routes this way.
  c.scoring_func = optional_string(j, "scoring_func", "sigmoid");
  c.topk_method = optional_string(j, "topk_method", "noaux_tc");
  c.norm_topk_prob = optional_bool(j, "norm_topk_prob", hf_default::kNormTopkProb);
  c.rms_norm_eps = optional_double(j, "rms_norm_eps", hf_default::kRmsNormEps);
  c.rope_theta = optional_double(j, "rope_theta", hf_default::kRopeTheta);
  c.rope_scaling = parse_rope_scaling(j);
  c.max_position_embeddings = required_int(j, "max_position_embeddings");
  c.num_nextn_predict_layers = optional_int(j, "num_nextn_predict_layers", 0);  // HF's code has no MTP
  c.mtp_kind = mtp_kind_from_string(optional_string(j, "mtp_kind", "sequential"));
  c.tie_word_embeddings = optional_bool(j, "tie_word_embeddings", hf_default::kTieWordEmbeddings);
  c.bos_token_id = optional_int(j, "bos_token_id", hf_default::kBosTokenId);
  c.eos_token_id = optional_int(j, "eos_token_id", hf_default::kEosTokenId);
  c.initializer_range = optional_double(j, "initializer_range", hf_default::kInitializerRange);
  c.torch_dtype = optional_string(j, "torch_dtype", "float32");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (known_keys().count(it.key()) == 0) c.extra[it.key()] = it.value();
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail(e.what(), hf_defaults_taken(j, c));
  }
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  const json j = io::parse_json_rejecting_duplicate_keys(io::read_file(path), "'" + path + "'");
  try {
    return model_config_from_json(j);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
}

nlohmann::ordered_json model_config_to_json(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["model_type"] = "deepseek_v3";
  j["architectures"] = json::array({"DeepseekV3ForCausalLM"});
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["q_lora_rank"] = c.q_lora_rank ? json(*c.q_lora_rank) : json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["n_routed_experts"] = c.n_routed_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["group_score_topk"] = c.group_score_topk;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["scoring_func"] = c.scoring_func;
  j["topk_method"] = c.topk_method;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling) {
    const RopeScaling& s = *c.rope_scaling;
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", s.factor},
                         {"original_max_position_embeddings", s.original_max_position_embeddings},
                         {"beta_fast", s.beta_fast},
                         {"beta_slow", s.beta_slow},
                         {"mscale", s.mscale},
                         {"mscale_all_dim", s.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["mtp_kind"] = to_string(c.mtp_kind);
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["initializer_range"] = c.initializer_range;
  j["torch_dtype"] = c.torch_dtype;
  for (auto it = c.extra.begin(); it != c.extra.end(); ++it) {
    if (!j.contains(it.key())) j[it.key()] = it.value();
  }
  return j;
}

void save_model_config(const ModelConfig& config, const std::string& path) {
  io::write_file_atomic(path, model_config_to_json(config).dump(2) + "\n");
}

std::vector<std::string> reference_code_differences(const ModelConfig& c) {
  std::vector<std::string> differences;
  const bool group_limited = c.n_routed_experts > 0 && c.n_group > 1 && c.topk_group < c.n_group;
  if (group_limited && c.group_score_topk != 2) {
    differences.push_back(cat("group_score_topk is ", c.group_score_topk,
                              ": Hugging Face's and DeepSeek's code score each expert group by its 2 largest "
                              "affinities, so the model would route its tokens differently there"));
  }
  return differences;
}

ParameterCount count_parameters(const ModelConfig& c) {
  // In double: every term is an integer below 2^53 when the total is, so the count is exact,
  // and a config of absurd sizes cannot overflow an int64 on the way.
  const double h = static_cast<double>(c.hidden_size);
  const double heads = static_cast<double>(c.num_attention_heads);
  const double q_rank = static_cast<double>(c.q_lora_rank.value_or(0));
  double attention = c.q_lora_rank ? h * q_rank + q_rank + q_rank * heads * c.qk_head_dim() : h * heads * c.qk_head_dim();
  attention += h * (c.kv_lora_rank + c.qk_rope_head_dim) + c.kv_lora_rank +
               c.kv_lora_rank * heads * (c.qk_nope_head_dim + c.v_head_dim) +
               heads * c.v_head_dim * h;
  const double norms = 2 * h;
  const double dense_mlp = 3 * h * static_cast<double>(c.intermediate_size);
  const double expert = 3 * h * static_cast<double>(c.moe_intermediate_size);
  const double moe_shared = static_cast<double>(c.n_routed_experts) * h + static_cast<double>(c.n_shared_experts) * expert;

  auto layer_params = [&](int64_t layer, bool activated_only) {
    const double experts = static_cast<double>(activated_only ? c.num_experts_per_tok : c.n_routed_experts);
    const double mlp = c.is_moe_layer(layer) ? moe_shared + experts * expert : dense_mlp;
    return attention + norms + mlp;
  };

  const double embedding = static_cast<double>(c.vocab_size) * h;
  const double head = c.tie_word_embeddings ? 0 : embedding;
  double main_model = embedding + head + h;  // + final norm
  double activated = main_model;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    main_model += layer_params(l, false);
    activated += layer_params(l, true);
  }
  double mtp = 0;
  for (int64_t k = 1; k <= c.num_nextn_predict_layers; ++k) {
    const int64_t layer = c.num_hidden_layers + k - 1;
    double module = layer_params(layer, false) + h;  // + shared_head.norm
    if (c.mtp_kind == MtpKind::kSequential) module += 2 * h + 2 * h * h;  // enorm, hnorm, eh_proj
    mtp += module;
  }
  NEXTN_CHECK(main_model + mtp < 0x1p53, "the config describes ", main_model + mtp,
              " parameters, more than nextn can count exactly (2^53)");
  ParameterCount count;
  count.main_model = static_cast<int64_t>(main_model);
  count.activated = static_cast<int64_t>(activated);
  count.mtp = static_cast<int64_t>(mtp);
  count.total = count.main_model + count.mtp;
  return count;
}

}  // namespace nextn

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

#include "nextn/config/model_config.h"
#include "nextn/io/atomic_file.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

nlohmann::json preset_json(const std::string& name) {
  return nlohmann::json::parse(io::read_file(std::string(NEXTN_SOURCE_DIR) + "/configs/" + name + ".json"));
}

// Expects parsing `j` to fail with a message that contains every one of `fragments`.
void expect_config_error(const nlohmann::json& j, std::initializer_list<const char*> fragments) {
  try {
    model_config_from_json(j);
    FAIL() << "expected a config error for " << j.dump();
  } catch (const Error& e) {
    for (const char* fragment : fragments) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
          << "message '" << e.what() << "' lacks '" << fragment << "'";
    }
  }
}

TEST(ModelConfig, PresetsLoadWithTheirIntendedSizes) {
  ModelConfig tiny = model_config_from_json(preset_json("tiny"));
  ModelConfig small = model_config_from_json(preset_json("small"));
  ModelConfig base = model_config_from_json(preset_json("base"));
  EXPECT_LT(count_parameters(tiny).total, 1'000'000);
  EXPECT_GE(count_parameters(small).total, 5'000'000);
  EXPECT_LE(count_parameters(small).total, 20'000'000);
  EXPECT_GE(count_parameters(base).total, 150'000'000);
  EXPECT_LE(count_parameters(base).total, 300'000'000);
  EXPECT_EQ(tiny.mtp_kind, MtpKind::kSequential);
  EXPECT_TRUE(tiny.q_lora_rank.has_value());
  EXPECT_FALSE(small.q_lora_rank.has_value());
}

TEST(ModelConfig, MissingRequiredKeyIsNamed) {
  for (const char* key : {"vocab_size", "hidden_size", "num_hidden_layers", "kv_lora_rank",
                          "qk_rope_head_dim", "max_position_embeddings"}) {
    nlohmann::json j = preset_json("tiny");
    j.erase(key);
    expect_config_error(j, {"missing", key});
  }
}

// Hugging Face's DeepseekV3Config defaults, typed here from transformers'
// src/transformers/models/deepseek_v3/configuration_deepseek_v3.py: what a key absent from
// config.json means there, and so must mean here.
const std::vector<std::pair<std::string, nlohmann::json>>& hugging_face_defaults() {
  static const std::vector<std::pair<std::string, nlohmann::json>> defaults = {
      {"intermediate_size", 18432}, {"moe_intermediate_size", 2048}, {"first_k_dense_replace", 3},
      {"num_key_value_heads", 128}, {"q_lora_rank", 1536}, {"n_routed_experts", 256},
      {"n_shared_experts", 1}, {"num_experts_per_tok", 8}, {"n_group", 8}, {"topk_group", 4},
      {"routed_scaling_factor", 2.5}, {"norm_topk_prob", true}, {"rms_norm_eps", 1e-6},
      {"rope_theta", 10000.0}, {"rope_scaling", nullptr}, {"tie_word_embeddings", false},
      {"bos_token_id", 0}, {"eos_token_id", 1}, {"initializer_range", 0.02},
      {"hidden_act", "silu"}, {"attention_bias", false}};
  return defaults;
}

// The keys nextn requires (the shapes: HF's defaults there are the 671B model's), and nothing else.
nlohmann::json minimal_config_json() {
  return {{"vocab_size", 1000}, {"hidden_size", 64}, {"num_hidden_layers", 4}, {"num_attention_heads", 128},
          {"kv_lora_rank", 16}, {"qk_nope_head_dim", 8}, {"qk_rope_head_dim", 4}, {"v_head_dim", 8},
          {"max_position_embeddings", 256}};
}

TEST(ModelConfig, AbsentKeysTakeHuggingFacesDefaults) {
  const ModelConfig c = model_config_from_json(minimal_config_json());
  const nlohmann::ordered_json written = model_config_to_json(c);
  for (const auto& [key, value] : hugging_face_defaults()) {
    ASSERT_TRUE(written.contains(key)) << key << " is not written: nextn's own files would depend on the default";
    EXPECT_EQ(written.at(key).dump(), value.dump()) << key;
  }
  EXPECT_EQ(c.q_lora_rank, std::optional<int64_t>(1536));  // a low-rank query, not a plain q_proj
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  // Keys HF's config does not have, read as its modeling code computes: every layer from
  // first_k_dense_replace on is MoE (moe_layer_freq 1), sigmoid scores with the bias (noaux_tc),
  // no MTP modules.
  std::vector<bool> moe;
  for (int64_t layer = 0; layer < 4; ++layer) moe.push_back(c.is_moe_layer(layer));
  EXPECT_EQ(moe, (std::vector<bool>{false, false, false, true}));
  EXPECT_EQ(c.scoring_func, "sigmoid");
  EXPECT_EQ(c.topk_method, "noaux_tc");
  EXPECT_EQ(c.num_nextn_predict_layers, 0);
}

// null is not absence there: num_key_value_heads null means num_attention_heads ("for backward
// compatibility"), q_lora_rank null a plain q_proj.
TEST(ModelConfig, NullKeysMeanWhatTheyMeanToHuggingFace) {
  nlohmann::json j = minimal_config_json();
  j["num_attention_heads"] = 16;
  j["num_key_value_heads"] = nullptr;
  j["q_lora_rank"] = nullptr;
  const ModelConfig c = model_config_from_json(j);
  EXPECT_EQ(c.num_key_value_heads, 16);
  EXPECT_FALSE(c.q_lora_rank.has_value());
}

// A default the user never wrote that makes the config invalid is named as such.
TEST(ModelConfig, AnInvalidConfigNamesTheDefaultsItTook) {
  nlohmann::json j = minimal_config_json();
  j["num_attention_heads"] = 16;  // MLA needs num_key_value_heads 16, HF's default is 128
  expect_config_error(j, {"'num_key_value_heads' (128) must equal 'num_attention_heads' (16)",
                          "keys absent from the file take Hugging Face's DeepseekV3Config defaults",
                          "num_key_value_heads=128", "routed_scaling_factor=2.5"});
  j = minimal_config_json();
  j["num_hidden_layers"] = 2;  // fewer layers than HF's default of 3 dense ones
  expect_config_error(j, {"first_k_dense_replace", "first_k_dense_replace=3"});
}

TEST(ModelConfig, WrongTypesAreNamed) {
  nlohmann::json j = preset_json("tiny");
  j["hidden_size"] = "32";
  expect_config_error(j, {"hidden_size", "integer"});
  j = preset_json("tiny");
  j["hidden_size"] = 32.5;
  expect_config_error(j, {"hidden_size"});
  j = preset_json("tiny");
  j["norm_topk_prob"] = 1;
  expect_config_error(j, {"norm_topk_prob"});
  j = preset_json("tiny");
  j["rope_scaling"]["type"] = "linear";
  expect_config_error(j, {"rope_scaling.type"});
  // HF's DeepseekV3 reads rope_interleave false as another rotary layout: refused, not ignored.
  j = preset_json("tiny");
  j["rope_interleave"] = false;
  expect_config_error(j, {"rope_interleave", "interleaved"});
  j["rope_interleave"] = "yes";
  expect_config_error(j, {"rope_interleave"});
  j["rope_interleave"] = true;
  EXPECT_NO_THROW(model_config_from_json(j));
  // transformers v5's rotary object would otherwise be carried along unread, the defaults taken.
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 50000.0}};
  expect_config_error(j, {"rope_parameters", "rope_theta"});
}

// The group score sums each group's 2 largest scores unless the config says otherwise, as
// DeepSeek's and Hugging Face's code do; any other count is named as a difference from them.
TEST(ModelConfig, GroupScoresFollowTheReferenceCodeUnlessTold) {
  nlohmann::json j = preset_json("tiny");
  j.erase("group_score_topk");
  ModelConfig c = model_config_from_json(j);
  EXPECT_EQ(c.group_score_topk, 2);
  EXPECT_TRUE(reference_code_differences(c).empty());
  EXPECT_EQ(model_config_to_json(c)["group_score_topk"], 2);  // written explicitly from now on

  j["num_experts_per_tok"] = 3;  // K / topk_group is no integer: fine for the reference rule
  EXPECT_NO_THROW(model_config_from_json(j));
  j["group_score_topk"] = 1;
  c = model_config_from_json(j);
  ASSERT_EQ(reference_code_differences(c).size(), 1u);
  EXPECT_NE(reference_code_differences(c)[0].find("group_score_topk is 1"), std::string::npos);
  c.topk_group = c.n_group;  // no group is ever dropped: the score does not matter
  EXPECT_TRUE(reference_code_differences(c).empty());
}

TEST(ModelConfig, InconsistentRoutingIsNamed) {
  nlohmann::json j = preset_json("tiny");
  j["topk_group"] = 5;  // n_group is 4
  expect_config_error(j, {"topk_group", "n_group"});
  j = preset_json("tiny");
  j["n_group"] = 3;  // 8 experts into 3 groups
  expect_config_error(j, {"n_routed_experts", "n_group"});
  j = preset_json("tiny");
  j["topk_group"] = 1;  // one group of 2 experts cannot hold K = 4
  expect_config_error(j, {"num_experts_per_tok", "topk_group"});
  j = preset_json("tiny");
  j["group_score_topk"] = 3;  // groups of 2
  expect_config_error(j, {"group_score_topk", "experts per group (2)"});
  j = preset_json("tiny");
  j["num_experts_per_tok"] = 9;
  expect_config_error(j, {"num_experts_per_tok", "n_routed_experts"});
  j = preset_json("tiny");
  j["num_key_value_heads"] = 1;
  expect_config_error(j, {"num_key_value_heads"});
  j = preset_json("tiny");
  j["qk_rope_head_dim"] = 5;
  expect_config_error(j, {"qk_rope_head_dim", "even"});
  j = preset_json("tiny");
  j["first_k_dense_replace"] = 7;
  expect_config_error(j, {"first_k_dense_replace"});
  j = preset_json("tiny");
  j["scoring_func"] = "softmax";
  expect_config_error(j, {"scoring_func"});
  j = preset_json("tiny");
  j["mtp_kind"] = "diagonal";
  expect_config_error(j, {"mtp_kind"});
  j = preset_json("tiny");
  j["eos_token_id"] = 128;
  expect_config_error(j, {"eos_token_id"});
  j = preset_json("tiny");
  j["quantization_config"] = {{"quant_method", "fp8"}};
  expect_config_error(j, {"quantization_config", "fp8"});
}

TEST(ModelConfig, JsonRoundTripKeepsEveryKeyIncludingUnknownOnes) {
  nlohmann::json j = preset_json("tiny");
  j["auto_map"] = {{"AutoConfig", "configuration_deepseek.DeepseekV3Config"}};
  j["ep_size"] = 1;
  ModelConfig first = model_config_from_json(j);
  nlohmann::ordered_json written = model_config_to_json(first);
  EXPECT_EQ(written["auto_map"].dump(), j["auto_map"].dump());
  EXPECT_EQ(written["ep_size"], 1);
  ModelConfig second = model_config_from_json(written);
  EXPECT_EQ(model_config_to_json(second).dump(), written.dump());
  EXPECT_EQ(second.rope_scaling->factor, 2.0);
  EXPECT_EQ(second.q_lora_rank.value(), 24);
}

TEST(ModelConfig, SaveAndLoadThroughAFile) {
  auto dir = std::filesystem::temp_directory_path() / "nextn_config_test";
  std::filesystem::create_directories(dir);
  ModelConfig config = model_config_from_json(preset_json("small"));
  config.mtp_kind = MtpKind::kParallel;
  save_model_config(config, (dir / "config.json").string());
  ModelConfig loaded = load_model_config((dir / "config.json").string());
  EXPECT_EQ(loaded.mtp_kind, MtpKind::kParallel);
  EXPECT_EQ(loaded.vocab_size, 8192);
  EXPECT_FALSE(loaded.q_lora_rank.has_value());
  std::filesystem::remove_all(dir);
}

TEST(ModelConfig, BadJsonFileNamesThePath) {
  auto path = std::filesystem::temp_directory_path() / "nextn_bad_config.json";
  io::write_file_atomic(path.string(), "{\"vocab_size\": 12,");
  try {
    load_model_config(path.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nextn_bad_config.json"), std::string::npos);
  }
  std::filesystem::remove(path);
}

TEST(ModelConfig, SoftmaxScaleFollowsYarn) {
  ModelConfig tiny = model_config_from_json(preset_json("tiny"));
  // mscale = 0.1 * mscale_all_dim * ln(factor) + 1; scale = (nope + rope)^-0.5 * mscale^2.
  double mscale = 0.1 * 1.0 * std::log(2.0) + 1.0;
  EXPECT_NEAR(tiny.softmax_scale(), mscale * mscale / std::sqrt(12.0), 1e-12);
  ModelConfig small = model_config_from_json(preset_json("small"));
  EXPECT_NEAR(small.softmax_scale(), 1.0 / std::sqrt(48.0), 1e-12);
}

TEST(ModelConfig, MoeLayerLayout) {
  nlohmann::json j = preset_json("tiny");
  j["num_hidden_layers"] = 6;
  j["first_k_dense_replace"] = 2;
  j["moe_layer_freq"] = 2;
  ModelConfig c = model_config_from_json(j);
  std::vector<bool> moe;
  for (int l = 0; l < 6; ++l) moe.push_back(c.is_moe_layer(l));
  EXPECT_EQ(moe, (std::vector<bool>{false, false, true, false, true, false}));
}

}  // namespace
}  // namespace nextn

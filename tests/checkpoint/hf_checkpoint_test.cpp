// Model checkpoints in the HF DeepSeek-V3 layout: round trips, names, and bad files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/checkpoint/hf_tensor_map.h"
#include "nextn/io/checkpoint_shards.h"
#include "nextn/io/safetensors.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::max_abs_diff;
using testing::TempDir;
using testing::tiny_config;

DeepSeekV3 random_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  DeepSeekV3 model(config);
  torch::NoGradGuard no_grad;
  for (auto& moe : model->moe_layers()) moe->gate->e_score_correction_bias.uniform_(-0.1, 0.1);
  return model;
}

void expect_error_containing(const std::function<void()>& action, const std::string& fragment) {
  try {
    action();
    FAIL() << "expected an error mentioning '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(HfCheckpoint, TensorNamesFollowTheDeepSeekV3Layout) {
  ModelConfig c = tiny_config();  // 3 layers (1 dense), 8 experts, 2 MTP modules
  DeepSeekV3 model(c);
  std::set<std::string> names;
  for (const auto& t : hf_tensor_map(*model)) EXPECT_TRUE(names.insert(t.name).second) << "duplicate " << t.name;
  for (const char* name : {"model.embed_tokens.weight", "model.layers.0.self_attn.q_a_proj.weight",
                           "model.layers.0.self_attn.q_a_layernorm.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
                           "model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.gate.weight",
                           "model.layers.1.mlp.gate.e_score_correction_bias", "model.layers.2.mlp.experts.7.down_proj.weight",
                           "model.layers.2.mlp.shared_experts.up_proj.weight", "model.norm.weight", "lm_head.weight",
                           // MTP module 1 = layer 3, module 2 = layer 4.
                           "model.layers.3.enorm.weight", "model.layers.3.hnorm.weight", "model.layers.3.eh_proj.weight",
                           "model.layers.3.shared_head.norm.weight", "model.layers.3.shared_head.head.weight",
                           "model.layers.3.embed_tokens.weight", "model.layers.4.self_attn.o_proj.weight",
                           "model.layers.4.mlp.experts.0.gate_proj.weight"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  EXPECT_FALSE(names.count("model.layers.0.mlp.gate.weight"));  // layer 0 is dense
  // Expert j's gate/up rows are views of the stacked weight: writing one writes the model.
  auto map = hf_tensor_map(*model);
  for (auto& t : map) {
    if (t.name == "model.layers.2.mlp.experts.5.up_proj.weight") {
      torch::NoGradGuard no_grad;
      t.tensor.fill_(7.0);
    }
  }
  auto stacked = model->layer(2)->moe->experts->gate_up_proj[5];
  EXPECT_EQ(stacked.narrow(0, c.moe_intermediate_size, c.moe_intermediate_size).eq(7.0).all().item<bool>(), true);
  EXPECT_EQ(stacked.narrow(0, 0, c.moe_intermediate_size).eq(7.0).any().item<bool>(), false);
  EXPECT_EQ(map.size(), names.size());
}

TEST(HfCheckpoint, RoundTripGivesIdenticalOutputs) {
  ModelConfig c = tiny_config();
  DeepSeekV3 saved = random_model(c, 31);
  TempDir dir("ckpt_roundtrip");
  save_model(*saved, dir.path());
  EXPECT_TRUE(io::file_exists(dir.file("config.json")));
  EXPECT_TRUE(io::file_exists(dir.file("model.safetensors")));
  DeepSeekV3 loaded = load_model(dir.path());
  auto ids = torch::randint(c.vocab_size, {2, 12}, torch::kLong);
  auto a = saved(ids), b = loaded(ids);
  EXPECT_TRUE(torch::equal(a.logits, b.logits));
  for (size_t k = 0; k < a.mtp_logits.size(); ++k) EXPECT_TRUE(torch::equal(a.mtp_logits[k], b.mtp_logits[k]));
  EXPECT_TRUE(torch::equal(saved->layer(1)->moe->gate->e_score_correction_bias,
                           loaded->layer(1)->moe->gate->e_score_correction_bias));
}

TEST(HfCheckpoint, HalfPrecisionOnDiskWithFp32Bias) {
  ModelConfig c = tiny_config();
  DeepSeekV3 saved = random_model(c, 32);
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    TempDir dir("ckpt_half");
    SaveModelOptions options;
    options.dtype = dtype;
    save_model(*saved, dir.path(), options);
    io::CheckpointShards shards(dir.path());
    EXPECT_EQ(shards.entry("model.layers.1.self_attn.o_proj.weight").dtype, dtype == torch::kHalf ? "F16" : "BF16");
    EXPECT_EQ(shards.entry("model.layers.1.mlp.gate.e_score_correction_bias").dtype, "F32");
    EXPECT_EQ(load_model_config(dir.file("config.json")).torch_dtype, dtype_name(dtype));
    DeepSeekV3 loaded = load_model(dir.path());
    // Every weight equals the fp32 original rounded to the disk dtype.
    auto original = hf_tensor_map(*saved);
    auto restored = hf_tensor_map(*loaded);
    for (size_t i = 0; i < original.size(); ++i) {
      auto expected = original[i].keep_fp32 ? original[i].tensor : original[i].tensor.to(dtype).to(torch::kFloat);
      EXPECT_TRUE(torch::equal(restored[i].tensor, expected)) << original[i].name;
    }
  }
}

TEST(HfCheckpoint, ShardedCheckpointRoundTrip) {
  ModelConfig c = tiny_config();
  DeepSeekV3 saved = random_model(c, 33);
  TempDir dir("ckpt_sharded");
  SaveModelOptions options;
  options.max_shard_bytes = 64 * 1024;  // forces several shards
  save_model(*saved, dir.path(), options);
  io::CheckpointShards shards(dir.path());
  EXPECT_TRUE(shards.has_index());
  EXPECT_GT(shards.files().size(), 2u);
  DeepSeekV3 loaded = load_model(dir.path());
  auto ids = torch::randint(c.vocab_size, {1, 10}, torch::kLong);
  EXPECT_TRUE(torch::equal(saved(ids).logits, loaded(ids).logits));
}

TEST(HfCheckpoint, DropMtpWritesALoadableMainModel) {
  ModelConfig c = tiny_config();
  DeepSeekV3 saved = random_model(c, 34);
  TempDir dir("ckpt_drop_mtp");
  SaveModelOptions options;
  options.drop_mtp = true;
  save_model(*saved, dir.path(), options);
  EXPECT_EQ(load_model_config(dir.file("config.json")).num_nextn_predict_layers, 0);
  io::CheckpointShards shards(dir.path());
  EXPECT_FALSE(shards.contains("model.layers.3.eh_proj.weight"));
  DeepSeekV3 loaded = load_model(dir.path());
  auto ids = torch::randint(c.vocab_size, {1, 10}, torch::kLong);
  EXPECT_TRUE(torch::equal(saved(ids, ForwardOptions{false, false}).logits, loaded(ids).logits));
  EXPECT_TRUE(loaded(ids).mtp_logits.empty());
}

// Rewrites the checkpoint in `dir` with `edit` applied to its tensor list.
void rewrite_checkpoint(const std::string& dir, const std::function<void(std::vector<io::NamedTensor>&)>& edit) {
  io::CheckpointShards shards(dir);
  std::vector<io::NamedTensor> tensors;
  for (const auto& name : shards.names()) tensors.push_back({name, shards.read(name)});
  edit(tensors);
  io::write_safetensors(dir + "/model.safetensors", tensors);
}

TEST(HfCheckpoint, MissingExtraOrMisshapedTensorIsNamed) {
  ModelConfig c = tiny_config();
  DeepSeekV3 saved = random_model(c, 35);
  {
    TempDir dir("ckpt_missing");
    save_model(*saved, dir.path());
    rewrite_checkpoint(dir.path(), [](auto& t) {
      t.erase(std::remove_if(t.begin(), t.end(), [](auto& x) { return x.name == "model.layers.2.mlp.experts.3.up_proj.weight"; }),
              t.end());
    });
    expect_error_containing([&] { load_model(dir.path()); }, "model.layers.2.mlp.experts.3.up_proj.weight");
  }
  {
    TempDir dir("ckpt_extra");
    save_model(*saved, dir.path());
    rewrite_checkpoint(dir.path(), [](auto& t) { t.push_back({"model.layers.9.mystery.weight", torch::zeros({2})}); });
    expect_error_containing([&] { load_model(dir.path()); }, "model.layers.9.mystery.weight");
  }
  {
    TempDir dir("ckpt_shape");
    save_model(*saved, dir.path());
    rewrite_checkpoint(dir.path(), [](auto& t) {
      for (auto& x : t) {
        if (x.name == "model.layers.0.self_attn.kv_b_proj.weight") x.tensor = torch::zeros({3, 3});
      }
    });
    expect_error_containing([&] { load_model(dir.path()); }, "model.layers.0.self_attn.kv_b_proj.weight");
  }
}

// Integer and boolean tensors used to be converted to float and loaded as weights (garbage that
// generated text); a floating type other than the model's converts exactly as before.
TEST(HfCheckpoint, AWeightOfANonFloatingDtypeIsRefusedByNameAndDtype) {
  ModelConfig c = tiny_config();
  DeepSeekV3 saved = random_model(c, 37);
  const std::string weight = "model.layers.0.self_attn.o_proj.weight";
  const std::vector<std::pair<torch::Dtype, std::string>> refused = {
      {torch::kInt32, "I32"}, {torch::kInt64, "I64"}, {torch::kUInt8, "U8"},
      {torch::kInt8, "I8"},   {torch::kInt16, "I16"}, {torch::kBool, "BOOL"}};
  for (const auto& [dtype, name] : refused) {
    TempDir dir("ckpt_int_dtype");
    save_model(*saved, dir.path());
    rewrite_checkpoint(dir.path(), [&, dtype = dtype](auto& t) {
      for (auto& x : t) {
        if (x.name == weight) x.tensor = x.tensor.gt(0).to(dtype);
      }
    });
    expect_error_containing([&] { load_model(dir.path()); },
                            "tensor '" + weight + "' has dtype " + name + "; model weights must be F32, BF16, F16 or F64");
  }
  TempDir dir("ckpt_f64");
  save_model(*saved, dir.path());
  rewrite_checkpoint(dir.path(), [&](auto& t) {
    for (auto& x : t) {
      if (x.name == weight) x.tensor = x.tensor.to(torch::kDouble);
    }
  });
  DeepSeekV3 loaded = load_model(dir.path());
  auto ids = torch::randint(c.vocab_size, {1, 10}, torch::kLong);
  EXPECT_TRUE(torch::equal(saved(ids).logits, loaded(ids).logits));
}

// float16 ends at 65504: a larger weight used to be written as inf without a word. Nothing is
// written, and the message names the tensor and its magnitude.
TEST(HfCheckpoint, AWeightPastFloat16sRangeIsRefusedBeforeAnythingIsWritten) {
  ModelConfig c = tiny_config();
  DeepSeekV3 saved = random_model(c, 38);
  {
    torch::NoGradGuard no_grad;
    for (auto& t : hf_tensor_map(*saved)) {
      if (t.name == "model.norm.weight") t.tensor[3] = -1e6;
    }
  }
  TempDir dir("ckpt_fp16_range");
  SaveModelOptions options;
  options.dtype = torch::kHalf;
  expect_error_containing([&] { save_model(*saved, dir.file("out"), options); },
                          "tensor 'model.norm.weight' holds values up to 1e+06 in magnitude, past float16's largest 65504");
  EXPECT_FALSE(std::filesystem::exists(dir.file("out")));
  options.dtype = torch::kBFloat16;  // bfloat16 has float32's range
  save_model(*saved, dir.file("out"), options);
  EXPECT_EQ(load_model(dir.file("out"))->norm->weight[3].item<float>(), static_cast<float>(c10::BFloat16(-1e6f)));
}

TEST(HfCheckpoint, TruncatedOrCorruptedFileFailsWithAClearMessage) {
  ModelConfig c = tiny_config();
  DeepSeekV3 saved = random_model(c, 36);
  TempDir dir("ckpt_truncated");
  save_model(*saved, dir.path());
  const std::string file = dir.file("model.safetensors");
  const auto size = std::filesystem::file_size(file);
  std::string original = io::read_file(file);
  for (uint64_t keep : {uint64_t{0}, uint64_t{5}, uint64_t{100}, size / 2, size - 1}) {
    io::write_file_atomic(file, original.substr(0, keep));
    expect_error_containing([&] { load_model(dir.path()); }, "model.safetensors");
  }
  // A corrupted header length.
  std::string corrupted = original;
  corrupted[3] = '\x7f';
  io::write_file_atomic(file, corrupted);
  expect_error_containing([&] { load_model(dir.path()); }, "model.safetensors");
  // A config.json that no longer matches the weights.
  io::write_file_atomic(file, original);
  ModelConfig other = c;
  other.n_routed_experts = 16;
  save_model_config(other, dir.file("config.json"));
  expect_error_containing([&] { load_model(dir.path()); }, "model.layers.1.mlp.gate.weight");
}

}  // namespace
}  // namespace nextn

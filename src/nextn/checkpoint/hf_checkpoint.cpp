#include "nextn/checkpoint/hf_checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <set>

#include "nextn/checkpoint/hf_tensor_map.h"
#include "nextn/config/model_config.h"
#include "nextn/io/checkpoint_shards.h"
#include "nextn/io/file_checksums.h"
#include "nextn/io/safetensors.h"
#include "nextn/util/error.h"

namespace nextn {

torch::ScalarType dtype_from_name(const std::string& name) {
  if (name == "float32") return torch::kFloat;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kHalf;
  fail("unsupported dtype '", name, "' (expected float32, bfloat16 or float16)");
}

std::string dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kHalf: return "float16";
    default: fail("unsupported checkpoint dtype ", dtype);
  }
}

namespace {

double largest_finite(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kHalf: return static_cast<double>(std::numeric_limits<c10::Half>::max());
    case torch::kBFloat16: return static_cast<double>(std::numeric_limits<c10::BFloat16>::max());
    default: return std::numeric_limits<float>::max();
  }
}

// A value past the largest of a narrower dtype (65504 for float16) turns into inf when converted:
// refused, naming the tensor, rather than written as a model that computes inf and NaN.
void check_representable(const std::string& name, const torch::Tensor& source, const torch::Tensor& converted,
                         const std::string& dir) {
  const torch::Tensor overflowed = torch::isinf(converted) & torch::isfinite(source);
  if (!overflowed.any().item<bool>()) return;
  const double largest = source.masked_select(torch::isfinite(source)).abs().max().item<double>();
  fail("cannot write '", dir, "' as ", dtype_name(converted.scalar_type()), ": tensor '", name, "' holds values up to ",
       largest, " in magnitude, past ", dtype_name(converted.scalar_type()), "'s largest ",
       largest_finite(converted.scalar_type()), " (write it as bfloat16 or float32)");
}

}  // namespace

void save_model(DeepSeekV3Impl& model, const std::string& dir, const SaveModelOptions& options) {
  ModelConfig config = model.config();
  torch::ScalarType dtype = options.dtype.value_or(dtype_from_name(config.torch_dtype));
  config.torch_dtype = dtype_name(dtype);
  if (options.drop_mtp) config.num_nextn_predict_layers = 0;
  const int64_t main_layers = config.num_hidden_layers;

  std::vector<io::NamedTensor> tensors;
  torch::NoGradGuard no_grad;
  for (const HfTensor& t : hf_tensor_map(model, options.full_experts)) {
    if (options.drop_mtp && t.name.rfind("model.layers.", 0) == 0) {
      int64_t layer = std::stoll(t.name.substr(13, t.name.find('.', 13) - 13));
      if (layer >= main_layers) continue;
    }
    const torch::Tensor source = t.tensor.detach().to(torch::kCPU);
    auto on_disk = source.to(t.keep_fp32 ? torch::kFloat : dtype).contiguous();
    check_representable(t.name, source, on_disk, dir);
    tensors.push_back({t.name, on_disk});
  }
  // Every tensor is converted and checked above: an invalid argument leaves `dir` untouched.
  NEXTN_CHECK(options.max_shard_bytes > 0, "cannot write '", dir, "': the shard size limit must be positive");
  std::filesystem::create_directories(dir);
  io::write_checkpoint_shards(dir, tensors, options.max_shard_bytes, {{"format", "pt"}});
  save_model_config(config, (std::filesystem::path(dir) / "config.json").string());
}

namespace {

// Weights are converted to the model's dtype on loading: from another floating type that keeps
// their values, but integers or booleans would turn into numbers that mean nothing (a quantized
// or mislabelled file), so those are refused. FP8 needs its scales (weight_scale_inv), which
// nextn does not read.
void check_weight_dtype(const io::SafetensorsEntry& entry, const std::string& dir) {
  static const std::set<std::string> kFloating = {"F32", "BF16", "F16", "F64"};
  NEXTN_CHECK(kFloating.count(entry.dtype) > 0, "checkpoint '", dir, "': tensor '", entry.name, "' has dtype ",
              entry.dtype, "; model weights must be F32, BF16, F16 or F64");
}

}  // namespace

void load_weights(DeepSeekV3Impl& model, const std::string& dir) {
  for (auto& moe : model.moe_layers()) {
    NEXTN_CHECK(!moe->experts->is_sharded(), "load_weights: the model's experts are sharded; load before sharding");
  }
  io::CheckpointShards shards(dir);
  std::vector<HfTensor> expected = hf_tensor_map(model);

  // Check names and shapes of everything before touching the model.
  std::set<std::string> expected_names;
  for (const HfTensor& t : expected) {
    expected_names.insert(t.name);
    NEXTN_CHECK(shards.contains(t.name), "checkpoint '", dir, "' lacks tensor '", t.name, "'");
    const io::SafetensorsEntry& entry = shards.entry(t.name);
    NEXTN_CHECK(torch::IntArrayRef(entry.shape) == t.tensor.sizes(), "checkpoint tensor '", t.name,
                "' has shape ", torch::IntArrayRef(entry.shape), ", the model expects ", t.tensor.sizes());
    check_weight_dtype(entry, dir);
  }
  for (const std::string& name : shards.names()) {
    NEXTN_CHECK(expected_names.count(name), "checkpoint '", dir, "' has tensor '", name,
                "' that a model with this config.json does not have");
  }

  torch::NoGradGuard no_grad;
  for (const HfTensor& t : expected) {
    if (t.shared_copy) continue;
    t.tensor.copy_(shards.read(t.name));
  }
  // The MTP modules' copies of the shared embedding and head should equal the main tensors; nextn
  // shares one tensor, so a difference means the file's copies are ignored: say so.
  for (const HfTensor& t : expected) {
    if (!t.shared_copy) continue;
    auto copy = shards.read(t.name).to(t.tensor.scalar_type());
    if (!torch::equal(copy, t.tensor.to(torch::kCPU))) {
      std::cerr << "nextn: warning: '" << t.name << "' differs from the main model's tensor; nextn uses the "
                << "main model's (MTP modules share the embedding and output head)\n";
    }
  }
}

DeepSeekV3 load_model(const std::string& dir, torch::Device device, bool verify_checksums) {
  if (verify_checksums) {
    // An unreadable checksums.json is damage too: refused with the same advice as a changed file.
    const io::ChecksumReport report = io::verify_checksums_reporting(dir);
    NEXTN_CHECK(report.ok(), io::describe_problems(dir, report),
                " (`nextn checkpoint verify` checks a run's checkpoints; --no-verify loads it anyway)");
    if (report.seconds > 2.0) {
      std::fprintf(stderr, "verified %.2f GB of '%s' in %.1f s (--no-verify skips this)\n", report.bytes / 1e9,
                   dir.c_str(), report.seconds);
    }
  }
  ModelConfig config = load_model_config((std::filesystem::path(dir) / "config.json").string());
  DeepSeekV3 model(config);
  load_weights(*model, dir);
  model->to(device);
  return model;
}

}  // namespace nextn

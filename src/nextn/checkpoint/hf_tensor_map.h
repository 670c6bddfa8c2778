// The Hugging Face DeepSeek-V3 names of every tensor of a model, each bound to the tensor (or the
// view of a stacked tensor) that holds it in nextn:
//   model.embed_tokens.weight, model.layers.{i}.{input_layernorm, self_attn.*, mlp.*}, model.norm.weight,
//   lm_head.weight; routed expert j of a layer is mlp.experts.{j}.{gate,up,down}_proj.weight, views
//   of the layer's stacked gate_up_proj / down_proj; MTP module k is layer num_hidden_layers+k-1
//   with enorm, hnorm, eh_proj, shared_head.norm, its decoder layer, and physical copies of the
//   shared embedding and head (embed_tokens.weight, shared_head.head.weight).
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "nextn/model/deepseek_v3.h"

namespace nextn {

struct HfTensor {
  std::string name;
  torch::Tensor tensor;  // a view into the model: writing it writes the model
  // A per-MTP-module copy of a tensor the model shares (embedding, output head): saved for
  // compatibility, checked on load, never loaded into the model a second time.
  bool shared_copy = false;
  // Kept in fp32 on disk whatever the checkpoint dtype (the expert bias, as in DeepSeek-V3).
  bool keep_fp32 = false;
};

// Every routed expert of a layer, stacked: what a checkpoint of an expert-parallel run gathers from
// the ranks that hold the layer's slices.
struct ExpertStacks {
  torch::Tensor gate_up_proj;  // [E, 2I, hidden]
  torch::Tensor down_proj;     // [E, hidden, I]
};
using FullExperts = std::map<const RoutedExpertsImpl*, ExpertStacks>;

// A layer whose experts are sharded lists the experts it holds, under their global numbers;
// `full_experts` replaces a layer's stacks by the gathered ones (a checkpoint's complete list).
std::vector<HfTensor> hf_tensor_map(DeepSeekV3Impl& model, const FullExperts& full_experts = {});

}  // namespace nextn

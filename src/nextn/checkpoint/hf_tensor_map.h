// The Hugging Face DeepSeek-V3 names of every tensor of a model, each bound to the tensor (or the
// view of a stacked tensor) that holds it in nextn:
//   model.embed_tokens.weight, model.layers.{i}.{input_layernorm, self_attn.*, mlp.*}, model.norm.weight,
//   lm_head.weight; routed expert j of a layer is mlp.experts.{j}.{gate,up,down}_proj.weight, views
//   of the layer's stacked gate_up_proj / down_proj; MTP module k is layer num_hidden_layers+k-1
//   with enorm, hnorm, eh_proj, shared_head.norm, its decoder layer, and physical copies of the
//   shared embedding and head (embed_tokens.weight, shared_head.head.weight).
#pragma once

#include <torch/torch.h>

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

std::vector<HfTensor> hf_tensor_map(DeepSeekV3Impl& model);

}  // namespace nextn

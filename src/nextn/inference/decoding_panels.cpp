#include "nextn/inference/decoding_panels.h"

#include <set>
#include <sstream>

#include "nextn/kernels/panel_matmul.h"
#include "nextn/util/error.h"
#include "nextn/util/strings.h"

namespace nextn::inference {

DecodingPrecision parse_decoding_precision(const std::string& name) {
  if (name == "auto") return DecodingPrecision::kAuto;
  if (name == "fp32") return DecodingPrecision::kFloat32;
  if (name == "bf16") return DecodingPrecision::kBfloat16;
  fail("unknown decoding precision '", name, "' (expected auto, fp32 or bf16)");
}

std::string decoding_precision_name(DecodingPrecision precision) {
  switch (precision) {
    case DecodingPrecision::kAuto: return "auto";
    case DecodingPrecision::kFloat32: return "fp32";
    case DecodingPrecision::kBfloat16: return "bf16";
  }
  return "?";
}

namespace {

// The copy of one matrix (see the header): bf16 products under bf16, a router's gate as under
// auto; auto: bfloat16 weights exactly where they are bfloat16 values.
kernels::PanelType type_for(const kernels::MatrixView& w, DecodingPrecision precision, bool router_gate) {
  if (precision == DecodingPrecision::kBfloat16 && !router_gate) return kernels::PanelType::kBfloat16Dot;
  if (precision != DecodingPrecision::kFloat32 && kernels::holds_bfloat16_exactly(w)) return kernels::PanelType::kBfloat16;
  return kernels::PanelType::kFloat32;
}

}  // namespace

DecodingPanels::DecodingPanels(const DeepSeekV3& model, DecodingPrecision precision) {
  if (precision == DecodingPrecision::kBfloat16) {
    const torch::Device device = model->embed_tokens->weight.device();
    NEXTN_CHECK(device.is_cpu(), "--precision bf16 packs panels for CPU decoding; the model is on ", device.str(),
                ", which decodes in the model's own dtype");
  }
  if (!kernels::panel_matmul_vectorised()) {
    NEXTN_CHECK(precision != DecodingPrecision::kBfloat16, "bf16 decoding weights need the panel kernel's vector "
                "path (x86 with AVX2 and FMA, or AVX-512), which this CPU or build lacks");
    return;
  }
  try {
    register_all(model, precision);
  } catch (...) {
    unregister_all();  // a failed packing (out of memory) leaves nothing registered
    throw;
  }
}

void DecodingPanels::register_all(const DeepSeekV3& model, DecodingPrecision precision) {
  const bool tied = model->config().tie_word_embeddings;
  std::set<const void*> router_gates;  // float32 under bf16 (see the header)
  for (const auto& moe : const_cast<DeepSeekV3&>(model)->moe_layers()) router_gates.insert(moe->gate->weight.data_ptr());
  for (const auto& item : model->named_parameters()) {
    const torch::Tensor& w = item.value();
    if (!w.device().is_cpu() || w.scalar_type() != torch::kFloat || !w.is_contiguous()) continue;
    if (w.dim() < 2 || w.dim() > 3 || w.numel() == 0) continue;
    if (!tied && ends_with(item.key(), "embed_tokens.weight")) continue;  // a lookup table, no product
    // A 3-D parameter is a stack of matrices (the routed experts'), each multiplied on its own.
    const int64_t count = w.dim() == 3 ? w.size(0) : 1;
    const int64_t rows = w.size(-2), cols = w.size(-1);
    for (int64_t m = 0; m < count; ++m) {
      const kernels::MatrixView view{w.data_ptr<float>() + m * rows * cols, rows, cols, cols};
      // Its memory first: a parameter whose data is swapped later (set_data) keeps this storage,
      // so its address cannot come back with other weights while the copy is registered.
      if (m == 0) weights_.push_back(w.detach());
      const kernels::PanelType type = type_for(view, precision, router_gates.count(w.data_ptr()) > 0);
      try {
        kernels::register_panels(view, type);
      } catch (const std::invalid_argument&) {
        fail("decoding panels in ", decoding_precision_name(precision), ": '", item.key(), "' is packed already in ",
             "another precision by a DecodingPanels still alive (one precision per model at a time)");
      }
      views_.push_back(view);
      ++counts_[static_cast<size_t>(type)];
      bytes_ += kernels::PanelMatrix::bytes_for(rows, cols, type);
    }
  }
}

void DecodingPanels::unregister_all() {
  for (const kernels::MatrixView& view : views_) kernels::unregister_panels(view);
  views_.clear();
}

DecodingPanels::~DecodingPanels() { unregister_all(); }

int64_t DecodingPanels::matrices_of(kernels::PanelType type) const { return counts_[static_cast<size_t>(type)]; }

std::string DecodingPanels::describe() const {
  std::ostringstream out;
  out.precision(1);
  out << std::fixed << static_cast<double>(bytes_) / (1024.0 * 1024.0) << " MiB, " << matrices() << " matrices";
  const std::pair<kernels::PanelType, const char*> kinds[] = {{kernels::PanelType::kBfloat16Dot, "bf16 products"},
                                                             {kernels::PanelType::kBfloat16, "bf16 weights"},
                                                             {kernels::PanelType::kFloat32, "fp32"}};
  std::vector<std::string> parts;
  for (const auto& [type, name] : kinds) {
    if (matrices_of(type) > 0) parts.push_back(std::to_string(matrices_of(type)) + " " + name);
  }
  for (size_t i = 0; i < parts.size(); ++i) out << (i == 0 ? ": " : ", ") << parts[i];
  return out.str();
}

}  // namespace nextn::inference

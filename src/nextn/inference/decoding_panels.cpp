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

DecodingPanels::DecodingPanels(const DeepSeekV3& model, DecodingPrecision precision) {
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
      const bool exact = precision == DecodingPrecision::kFloat32 ? false : kernels::holds_bfloat16_exactly(view);
      const bool rounded = precision == DecodingPrecision::kBfloat16 && router_gates.count(w.data_ptr()) == 0;
      const auto type = exact || rounded ? kernels::PanelType::kBfloat16 : kernels::PanelType::kFloat32;
      kernels::register_panels(view, type);
      views_.push_back(view);
      bfloat16_matrices_ += type == kernels::PanelType::kBfloat16 ? 1 : 0;
      bytes_ += kernels::PanelMatrix::bytes_for(rows, cols, type);
    }
  }
}

void DecodingPanels::unregister_all() {
  for (const kernels::MatrixView& view : views_) kernels::unregister_panels(view);
  views_.clear();
}

DecodingPanels::~DecodingPanels() { unregister_all(); }

std::string DecodingPanels::describe() const {
  std::ostringstream out;
  out.precision(1);
  out << std::fixed << static_cast<double>(bytes_) / (1024.0 * 1024.0) << " MiB, " << matrices() << " matrices";
  const int64_t fp32 = matrices() - bfloat16_matrices_;
  if (bfloat16_matrices_ == 0) {
    out << " in fp32";
  } else if (fp32 == 0) {
    out << " in bf16";
  } else {
    out << ": " << bfloat16_matrices_ << " in bf16, " << fp32 << " in fp32";
  }
  return out.str();
}

}  // namespace nextn::inference

#include "nextn/inference/decoding_panels.h"

#include "nextn/kernels/panel_matmul.h"
#include "nextn/util/strings.h"

namespace nextn::inference {
DecodingPanels::DecodingPanels(const DeepSeekV3& model) {
  if (!kernels::panel_matmul_vectorised()) return;
  try {
    register_all(model);
  } catch (...) {
    unregister_all();  // a failed packing (out of memory) leaves nothing registered
    throw;
  }
}

void DecodingPanels::register_all(const DeepSeekV3& model) {
  const bool tied = model->config().tie_word_embeddings;
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
      kernels::register_panels(view);
      views_.push_back(view);
      bytes_ += kernels::PanelMatrix::bytes_for(rows, cols);
    }
  }
}

void DecodingPanels::unregister_all() {
  for (const kernels::MatrixView& view : views_) kernels::unregister_panels(view);
  views_.clear();
}

DecodingPanels::~DecodingPanels() { unregister_all(); }

}  // namespace nextn::inference

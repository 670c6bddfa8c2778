#include "nextn/data/batch.h"

#include "nextn/util/error.h"

namespace nextn::data {

void compute_segment_ids(const int64_t* tokens, int64_t length, int64_t eos_id, int32_t* out) {
  int32_t segment = 0;
  for (int64_t i = 0; i < length; ++i) {
    out[i] = segment;
    if (tokens[i] == eos_id) ++segment;
  }
}

torch::Tensor same_document_mask(const torch::Tensor& segment_ids, int64_t offset) {
  NEXTN_CHECK(segment_ids.dim() == 2, "segment_ids must be [B, L], got ", segment_ids.dim(), " dimensions");
  int64_t length = segment_ids.size(1);
  NEXTN_CHECK(offset >= 0 && offset < length, "offset ", offset, " must be in [0, ", length, ")");
  using torch::indexing::Slice;
  return segment_ids.index({Slice(), Slice(0, length - offset)}) == segment_ids.index({Slice(), Slice(offset, length)});
}

}  // namespace nextn::data

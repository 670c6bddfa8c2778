// A training or evaluation batch: windows of T+1 consecutive tokens (inputs are [:, :T], the main
// loss's targets [:, 1:], MTP depth k's targets [:, 1+k:]), and for each token the number of the
// document it belongs to inside its window, so that no target crosses a document boundary.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace nextn::data {

struct Batch {
  torch::Tensor tokens;       // int64 [B, T+1]
  torch::Tensor segment_ids;  // int32 [B, T+1]: document number inside the window, counting from 0;
                              // the token after an EOS starts a new segment (EOS belongs to the
                              // document it ends)
};

// Segment ids of one window: out[0] = 0, out[i] = out[i-1] + (tokens[i-1] == eos_id).
void compute_segment_ids(const int64_t* tokens, int64_t length, int64_t eos_id, int32_t* out);

// bool [B, L - offset]: mask[b, i] is true when tokens i and i + offset of row b belong to the
// same document, i.e. position i may be trained to predict the token `offset` places ahead
// (offset 1: the main model's next token; offset 1 + k: MTP depth k).
torch::Tensor same_document_mask(const torch::Tensor& segment_ids, int64_t offset);

}  // namespace nextn::data

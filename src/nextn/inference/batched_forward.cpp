#include "nextn/inference/batched_forward.h"

#include "nextn/model/linear.h"
#include "nextn/util/error.h"
#include "nextn/util/phase_timer.h"

namespace nextn::inference {

BatchedStep run_main_model_batched(DeepSeekV3Impl& model, const std::vector<BatchedSequence>& sequences) {
  torch::NoGradGuard no_grad;
  ScopedBatchedDecoding batched;
  const ModelConfig& config = model.config();
  NEXTN_CHECK(!sequences.empty(), "a batched step needs at least one sequence");
  BatchedStep step;
  std::vector<int64_t> ids, positions;
  for (const BatchedSequence& s : sequences) {
    NEXTN_CHECK(s.cache != nullptr && s.cache->batch() == 1 && s.cache->num_layers() == config.num_hidden_layers,
                "a batched sequence needs a main-model KV cache of batch 1");
    NEXTN_CHECK(!s.tokens.empty(), "a batched sequence needs at least one new token");
    NEXTN_CHECK(static_cast<int64_t>(s.tokens.size()) <= s.cache->free_slots(), "KV cache overflow: ",
                s.cache->length(), " cached + ", s.tokens.size(), " new tokens exceed its capacity of ",
                s.cache->capacity());
    step.first_row.push_back(static_cast<int64_t>(ids.size()));
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      NEXTN_CHECK(s.tokens[t] >= 0 && s.tokens[t] < config.vocab_size, "token id ", s.tokens[t],
                  " is outside the vocabulary [0, ", config.vocab_size, ")");
      ids.push_back(s.tokens[t]);
      positions.push_back(s.cache->length() + static_cast<int64_t>(t));
    }
  }
  const int64_t rows = static_cast<int64_t>(ids.size());
  NEXTN_CHECK(positions.empty() || *std::max_element(positions.begin(), positions.end()) < config.max_position_embeddings,
              "a position is beyond max_position_embeddings (", config.max_position_embeddings, ")");
  const torch::Device device = model.embed_tokens->weight.device();
  auto position_index = torch::tensor(positions, torch::kLong).to(device);
  // Each row's own position: rows of the rotary tables, shaped as one sequence of R tokens.
  RopeAngles angles{model.rotary->cos_table.index_select(0, position_index).view({1, rows, 1, -1}),
                    model.rotary->sin_table.index_select(0, position_index).view({1, rows, 1, -1})};
  auto h = model.embed(torch::tensor(ids, torch::kLong).view({1, rows}).to(device));
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    std::vector<RaggedSlot> slots;
    for (size_t s = 0; s < sequences.size(); ++s) {
      slots.push_back({sequences[s].cache->slot(i), step.first_row[s], static_cast<int64_t>(sequences[s].tokens.size())});
    }
    h = model.layer(i)->forward_cached_ragged(h, angles, slots);
  }
  for (const BatchedSequence& s : sequences) s.cache->advance(static_cast<int64_t>(s.tokens.size()));
  step.hidden = h.view({rows, -1});
  ScopedPhase phase("decode.head");
  step.logits = model.output_head(h, model.norm).view({rows, -1});
  return step;
}

}  // namespace nextn::inference

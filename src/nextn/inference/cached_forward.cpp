#include "nextn/inference/cached_forward.h"

#include <optional>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/model/linear.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

MlaForm choose_form(AttentionForm form, const KvCache& cache, int64_t new_tokens) {
  switch (form) {
    case AttentionForm::kNaive:
      return MlaForm::kNaive;
    case AttentionForm::kAbsorbed:
      return MlaForm::kAbsorbed;
    case AttentionForm::kAuto:
      break;
  }
  const bool prefill = cache.length() == 0 && new_tokens > 1;
  return prefill && new_tokens > kernels::kFewRowsMax ? MlaForm::kNaive : MlaForm::kAbsorbed;
}

void check_fits(const KvCache& cache, int64_t new_tokens) {
  NEXTN_CHECK(new_tokens >= 1, "a cached forward needs at least one new token");
  NEXTN_CHECK(new_tokens <= cache.free_slots(), "KV cache overflow: ", cache.length(), " cached + ", new_tokens,
              " new tokens exceed its capacity of ", cache.capacity());
}

// The angles and the mask of T new tokens: the next T positions, causal; or a tree's.
RopeAngles angles_for(const RotaryEmbeddingImpl& rotary, const KvCache& cache, int64_t new_tokens,
                      const TreeSpan* tree) {
  if (!tree) return rope_angles_for_span(rotary, cache.length(), new_tokens);
  NEXTN_CHECK(static_cast<int64_t>(tree->positions.size()) == new_tokens && tree->mask.defined(),
              "a tree of ", new_tokens, " new tokens needs a position for each and a mask");
  for (int64_t position : tree->positions) {
    NEXTN_CHECK(position >= 0 && position < rotary.max_positions(), "tree position ", position,
                " is outside [0, max_position_embeddings = ", rotary.max_positions(), ")");
  }
  auto positions = torch::tensor(tree->positions, torch::kLong).to(rotary.cos_table.device());
  return rotary.angles(positions);
}

LatentKvSlot slot_for(const KvCache& cache, int64_t layer, const TreeSpan* tree) {
  LatentKvSlot slot = cache.slot(layer);
  if (tree) slot.new_token_mask = tree->mask;
  return slot;
}

}  // namespace

RopeAngles rope_angles_for_span(const RotaryEmbeddingImpl& rotary, int64_t start, int64_t length) {
  NEXTN_CHECK(start >= 0 && length >= 0 && start + length <= rotary.max_positions(), "positions ", start, "..",
              start + length - 1, " are beyond max_position_embeddings (", rotary.max_positions(), ")");
  return {rotary.cos_table.narrow(0, start, length).view({1, length, 1, -1}),
          rotary.sin_table.narrow(0, start, length).view({1, length, 1, -1})};
}

MainModelStep run_main_model_cached(DeepSeekV3Impl& model, const torch::Tensor& ids, KvCache& cache,
                                    LogitsFor logits_for, AttentionForm form, const TreeSpan* tree) {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(ids.dim() == 2 && ids.size(0) == cache.batch(), "ids must be [", cache.batch(), ", T], got ",
              ids.sizes());
  NEXTN_CHECK(cache.num_layers() == model.config().num_hidden_layers, "KV cache has ", cache.num_layers(),
              " layers, the model ", model.config().num_hidden_layers);
  const int64_t new_tokens = ids.size(1);
  check_fits(cache, new_tokens);
  const MlaForm mla_form = choose_form(form, cache, new_tokens);
  // A short prompt (one kernel call of rows) runs on decoding's kernels, as a verify of as many
  // tokens would: libtorch's naive form and BLAS's sgemm, which pack every weight for a few rows,
  // took 4.3-4.5 ms for the 7-token prompts of `bench serve` on `small`, the kernels ~2.9 ms.
  std::optional<ScopedBatchedDecoding> short_prompt;
  if (mla_form == MlaForm::kAbsorbed && cache.length() == 0 && new_tokens <= kernels::kFewRowsMax) short_prompt.emplace();
  auto angles = angles_for(*model.rotary, cache, new_tokens, tree);
  auto h = model.embed(ids);
  for (int64_t i = 0; i < model.config().num_hidden_layers; ++i) {
    h = model.layer(i)->forward_cached(h, angles, slot_for(cache, i, tree), mla_form);
  }
  cache.advance(new_tokens);
  if (logits_for == LogitsFor::kNone) return {torch::Tensor(), h};
  auto head_input = logits_for == LogitsFor::kLastPosition ? h.narrow(1, new_tokens - 1, 1) : h;
  return {model.output_head(head_input, model.norm), h};
}

torch::Tensor run_mtp_module_cached(DeepSeekV3Impl& model, int64_t module, const torch::Tensor& previous_hidden,
                                    const torch::Tensor& token_ids, KvCache& cache, AttentionForm form,
                                    CachedOutput output, const TreeSpan* tree) {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(module >= 1 && module <= model.config().mtp_depth(), "MTP module ", module,
              " does not exist (the model has ", model.config().mtp_depth(), ")");
  NEXTN_CHECK(cache.num_layers() == 1, "an MTP module's KV cache has one layer, got ", cache.num_layers());
  NEXTN_CHECK(previous_hidden.dim() == 3 && previous_hidden.size(0) == cache.batch(), "previous hidden states must be [",
              cache.batch(), ", T, hidden], got ", previous_hidden.sizes());
  const int64_t new_tokens = previous_hidden.size(1);
  check_fits(cache, new_tokens);
  MtpModule mtp = model.mtp_module(module);
  torch::Tensor token_embeddings;
  if (mtp->kind() == MtpKind::kSequential) {
    NEXTN_CHECK(token_ids.defined() && token_ids.dim() == 2 && token_ids.size(1) == new_tokens,
                "a sequential MTP module needs one token per position");
    token_embeddings = model.embed(token_ids);
  }
  auto angles = angles_for(*model.rotary, cache, new_tokens, tree);
  auto h = mtp->forward_cached(previous_hidden, token_embeddings, angles, slot_for(cache, 0, tree),
                               choose_form(form, cache, new_tokens), output);
  cache.advance(new_tokens);
  return h;
}

torch::Tensor mtp_logits(DeepSeekV3Impl& model, int64_t module, const torch::Tensor& hidden) {
  torch::NoGradGuard no_grad;
  return model.output_head(hidden, model.mtp_module(module)->shared_head_norm);
}

}  // namespace nextn::inference

#include "nextn/training/drafting_eval.h"

#include "nextn/data/split.h"
#include "nextn/inference/generator.h"
#include "nextn/util/error.h"

namespace nextn {

void DraftingEvalOptions::validate(const ModelConfig& config) const {
  NEXTN_CHECK(prompts >= 1, "acceptance: the number of prompts must be >= 1, got ", prompts);
  NEXTN_CHECK(prompt_tokens >= 1, "acceptance: prompt tokens must be >= 1, got ", prompt_tokens);
  NEXTN_CHECK(new_tokens >= 2, "acceptance: new tokens must be >= 2 (the first comes from the prompt's forward), got ",
              new_tokens);
  NEXTN_CHECK(config.mtp_depth() >= 1, "acceptance: the model has no MTP modules to draft with");
  NEXTN_CHECK(draft_tokens >= 0 && draft_tokens <= config.mtp_depth(), "acceptance: drafts per step must be in [1, ",
              config.mtp_depth(), "] (the model's MTP depth; 0 means all of them), got ", draft_tokens);
  NEXTN_CHECK(prompt_tokens + new_tokens <= config.max_position_embeddings, "acceptance: prompt tokens + new tokens = ",
              prompt_tokens + new_tokens, " exceed the model's context of ", config.max_position_embeddings);
  sampling.validate();
}

std::vector<std::vector<int64_t>> held_out_prompts(const data::TokenDataset& dataset, int64_t count,
                                                    int64_t prompt_tokens) {
  NEXTN_CHECK(count >= 1 && prompt_tokens >= 1, "held_out_prompts: count and prompt_tokens must be >= 1");
  const auto& shards = dataset.shards(data::Split::kValidation);
  std::vector<int64_t> starts_per_shard;
  int64_t places = 0;
  for (const auto& shard : shards) {
    starts_per_shard.push_back(std::max<int64_t>(0, shard.size() - prompt_tokens + 1));
    places += starts_per_shard.back();
  }
  NEXTN_CHECK(places >= count, "the validation split of '", dataset.dir(), "' has ", places, " places for a prompt of ",
              prompt_tokens, " tokens, fewer than the ", count, " prompts asked for");
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t i = 0; i < count; ++i) {
    int64_t place = static_cast<int64_t>((static_cast<double>(i) + 0.5) * static_cast<double>(places) /
                                         static_cast<double>(count));
    size_t s = 0;
    while (place >= starts_per_shard[s]) place -= starts_per_shard[s++];
    std::vector<int64_t> prompt(prompt_tokens);
    shards[s].copy_to(place, prompt_tokens, prompt.data());
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

DraftingEvalResult evaluate_drafting(DeepSeekV3 model, const data::TokenDataset& dataset,
                                     const DraftingEvalOptions& options_in) {
  const ModelConfig& config = model->config();
  options_in.validate(config);
  DraftingEvalResult result;
  result.options = options_in;
  if (result.options.draft_tokens == 0) result.options.draft_tokens = config.mtp_depth();
  const DraftingEvalOptions& options = result.options;

  inference::GenerationOptions generation;
  generation.max_new_tokens = options.new_tokens;
  generation.sampling = options.sampling;
  generation.draft_tokens = options.draft_tokens;
  inference::Generator generator(model);
  int64_t index = 0;
  for (const auto& prompt : held_out_prompts(dataset, options.prompts, options.prompt_tokens)) {
    // Each prompt samples with its own seed, so a prompt's draws do not depend on the others'.
    generation.sampling.seed = options.sampling.seed + static_cast<uint64_t>(index++);
    result.totals.accumulate(generator.generate(prompt, generation).stats);
  }
  return result;
}

}  // namespace nextn

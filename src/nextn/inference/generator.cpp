#include "nextn/inference/generator.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "nextn/inference/plain_decoder.h"
#include "nextn/inference/speculative_decoder.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn::inference {

std::string to_string(StopReason reason) {
  switch (reason) {
    case StopReason::kMaxNewTokens:
      return "max_new_tokens";
    case StopReason::kStopToken:
      return "stop_token";
    case StopReason::kCallback:
      return "callback";
    case StopReason::kContextFull:
      return "context_full";
  }
  return "unknown";
}

void GenerationOptions::validate(const ModelConfig& config) const {
  sampling.validate();
  NEXTN_CHECK(max_new_tokens >= 0, "max_new_tokens must be >= 0, got ", max_new_tokens);
  NEXTN_CHECK(draft_tokens >= 0, "draft_tokens must be >= 0 (0: no speculative decoding), got ", draft_tokens);
  NEXTN_CHECK(context_length >= 0 && context_length <= config.max_position_embeddings, "context_length ",
              context_length, " must be in [0, max_position_embeddings=", config.max_position_embeddings,
              "] (0: the model's)");
  draft_head.validate(config.vocab_size);
  check_prefill_chunk(prefill_chunk);
  NEXTN_CHECK(draft_tree.empty() || (draft_tokens == static_cast<int64_t>(draft_tree.size()) && !adaptive_draft),
              "a draft tree of ", draft_tree.size(), " levels drafts ", draft_tree.size(), " deep per step (got ",
              draft_tokens, adaptive_draft ? ", auto" : "", ")");
  for (int64_t id : stop_token_ids) {
    NEXTN_CHECK(id >= 0 && id < config.vocab_size, "stop token id ", id, " is outside the vocabulary [0, ",
                config.vocab_size, ")");
  }
}

Generator::Generator(DeepSeekV3 model) : model_(std::move(model)) {}

int64_t Generator::context_length(const GenerationOptions& options) const {
  return options.context_length > 0 ? options.context_length : model_->config().max_position_embeddings;
}

GenerationResult Generator::generate(const std::vector<int64_t>& prompt_in, const GenerationOptions& options,
                                     const TokenCallback& on_token) {
  torch::NoGradGuard no_grad;
  const ModelConfig& config = model_->config();
  options.validate(config);
  GenerationResult result;
  NEXTN_CHECK(!prompt_in.empty(), "the prompt is empty: at least one token is needed");
  if (options.max_new_tokens == 0) return result;

  const int64_t context = context_length(options);
  std::vector<int64_t> prompt = prompt_in;
  const int64_t length = static_cast<int64_t>(prompt.size());
  if (options.truncate_long_prompt && length + options.max_new_tokens > context) {
    const int64_t keep = std::max<int64_t>(1, context - options.max_new_tokens);
    result.prompt_tokens_dropped = length - keep;
    prompt.erase(prompt.begin(), prompt.begin() + result.prompt_tokens_dropped);
  }
  NEXTN_CHECK(static_cast<int64_t>(prompt.size()) < context, "the prompt has ", prompt.size(),
              " tokens, more than the context of ", context, " tokens leaves room for; shorten it, or allow "
              "dropping its oldest tokens (truncate_long_prompt, --truncate-prompt)");

  // Caches are sized for this run only: the sequence never exceeds prompt + max_new_tokens.
  const int64_t capacity = std::min<int64_t>(context, static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  std::unique_ptr<TokenDecoder> decoder;
  if (options.draft_tokens > 0) {
    SpeculativeOptions speculative;
    speculative.draft_tokens = options.draft_tokens;
    speculative.reuse_last_module = options.reuse_last_mtp_module;
    speculative.adaptive = options.adaptive_draft;
    if (options.adaptive_draft) {
      auto& costs = draft_step_costs_[options.draft_tokens];
      if (!costs) costs = std::make_shared<DraftStepCosts>(options.draft_tokens);
      speculative.step_costs = costs;
    }
    speculative.draft_head = options.draft_head;
    speculative.tree = options.draft_tree;
    speculative.prefill_chunk = options.prefill_chunk;
    decoder = std::make_unique<SpeculativeDecoder>(model_, speculative, options.sampling, capacity);
  } else {
    decoder = std::make_unique<PlainDecoder>(model_, options.sampling, capacity, options.prefill_chunk);
  }

  // Hands tokens out one by one; false once generation must end.
  auto emit = [&](const std::vector<int64_t>& tokens) {
    for (int64_t token : tokens) {
      result.tokens.push_back(token);
      const bool stop_token =
          std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) != options.stop_token_ids.end();
      const bool callback_continues = !on_token || on_token(token);
      if (stop_token) {
        result.stop_reason = StopReason::kStopToken;
        return false;
      }
      if (!callback_continues) {
        result.stop_reason = StopReason::kCallback;
        return false;
      }
      if (static_cast<int64_t>(result.tokens.size()) >= options.max_new_tokens) {
        result.stop_reason = StopReason::kMaxNewTokens;
        return false;
      }
    }
    return true;
  };

  bool running = emit(decoder->start(prompt));  // the prefill: BLAS's threads pay off there
  // Decoding's BLAS calls are the attention's small products over the cache, too small to gain from
  // a second thread, while OpenBLAS's idle threads keep polling and take the core that the
  // few-rows kernel's helper needs (kernels/worker_pool.h): one BLAS thread while decoding on CPU
  // (`base`: plain steps ~6% faster, docs/BENCHMARKS.md).
  std::optional<ScopedBlasThreads> decoding_blas_threads;
  if (model_->embed_tokens->weight.device().is_cpu()) decoding_blas_threads.emplace(1);
  while (running) {
    if (decoder->room() == 0) {
      result.stop_reason = StopReason::kContextFull;
      break;
    }
    running = emit(decoder->step(options.max_new_tokens - static_cast<int64_t>(result.tokens.size())));
  }
  result.stats = decoder->stats();
  // Tokens a step produced beyond a stop are dropped: count what was handed out.
  result.stats.generated_tokens = static_cast<int64_t>(result.tokens.size());
  return result;
}

}  // namespace nextn::inference

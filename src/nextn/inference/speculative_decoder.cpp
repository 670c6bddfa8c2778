#include "nextn/inference/speculative_decoder.h"

#include <algorithm>

#include "nextn/inference/cached_forward.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/util/error.h"

namespace nextn::inference {

SpeculativeDecoder::SpeculativeDecoder(DeepSeekV3 model, const SpeculativeOptions& options,
                                       const SamplingOptions& sampling, int64_t capacity)
    : model_(std::move(model)), options_(options), sampler_(sampling), capacity_(capacity) {
  const ModelConfig& config = model_->config();
  if (!options.tree.empty()) {
    NEXTN_CHECK(!options.adaptive, "tree drafts take a fixed tree: --draft auto chooses chain lengths only");
    for (int64_t children : options.tree) NEXTN_CHECK(children >= 1, "a draft tree's branching must be >= 1");
    options_.draft_tokens = static_cast<int64_t>(options.tree.size());
  }
  check_capacity(capacity, config);
  check_prefill_chunk(options.prefill_chunk);
  NEXTN_CHECK(!sampling.adjusts_logits(), "presence/frequency penalties and logit_bias need plain decoding: "
              "a speculative step verifies several tokens against one history");
  const int64_t depth_count = config.mtp_depth();
  NEXTN_CHECK(depth_count >= 1, "speculative decoding needs MTP modules, and this model has none "
              "(num_nextn_predict_layers = 0)");
  NEXTN_CHECK(options_.draft_tokens >= 1, "the number of draft tokens must be >= 1, got ", options_.draft_tokens);
  NEXTN_CHECK(options_.draft_tokens <= depth_count || options.reuse_last_module, "drafting ", options_.draft_tokens,
              " tokens needs ", options_.draft_tokens, " MTP modules but the model has ", depth_count,
              "; reuse the last module for the deeper drafts with the option to do so (--reuse-last-module)");
  sequential_ = config.mtp_kind == MtpKind::kSequential;
  draft_head_ = DraftHead(model_->output_weight(), options.draft_head);

  const auto& weight = model_->embed_tokens->weight;
  const auto tensor_options = torch::TensorOptions().dtype(weight.scalar_type()).device(weight.device());
  main_cache_ = KvCache::for_main_model(config, 1, capacity, tensor_options);
  main_hidden_ = torch::zeros({1, capacity, config.hidden_size}, tensor_options);
  for (int64_t k = 1; k <= options_.draft_tokens; ++k) {
    DraftDepth depth;
    depth.module = std::min(k, depth_count);
    depth.cache = KvCache::for_mtp_module(config, 1, capacity, tensor_options);
    // Only a deeper sequential depth reads this depth's outputs.
    if (sequential_ && k < options_.draft_tokens) {
      depth.hidden_history = torch::zeros({1, capacity, config.hidden_size}, tensor_options);
    }
    depths_.push_back(std::move(depth));
  }
  stats_.draft_tokens = options_.draft_tokens;
}

const KvCache& SpeculativeDecoder::draft_cache(int64_t depth) const {
  NEXTN_CHECK(depth >= 1 && depth <= static_cast<int64_t>(depths_.size()), "no draft depth ", depth);
  return depths_[depth - 1].cache;
}

int64_t SpeculativeDecoder::module_for_depth(int64_t depth) const {
  NEXTN_CHECK(depth >= 1 && depth <= static_cast<int64_t>(depths_.size()), "no draft depth ", depth);
  return depths_[depth - 1].module;
}

void SpeculativeDecoder::begin(const std::vector<int64_t>& prompt) {
  check_prompt(prompt, model_->config(), capacity_);
  main_cache_.clear();
  for (auto& depth : depths_) depth.cache.clear();
  stats_ = DecodeStats();
  stats_.draft_tokens = options_.draft_tokens;
  const auto depth_count = static_cast<size_t>(options_.draft_tokens);
  stats_.drafted_per_depth.assign(depth_count, 0);
  stats_.reached_per_depth.assign(depth_count, 0);
  stats_.accepted_per_depth.assign(depth_count, 0);
  stats_.prompt_tokens = static_cast<int64_t>(prompt.size());
  stats_.steps_by_draft_count.assign(depth_count + 1, 0);
  if (options_.adaptive) policy_.emplace(options_.draft_tokens, options_.step_costs);  // fresh costs when null
  prefill_ = PromptPrefill(prompt, options_.prefill_chunk, prefix_cache_);
  tokens_ = prompt;  // the first generated token joins them after the last chunk
  started_ = false;
}

std::optional<int64_t> SpeculativeDecoder::run_prefill_chunk() {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(!prefill_.done(), "run_prefill_chunk() without a prompt left to run (begin() first)");
  const auto started = std::chrono::steady_clock::now();
  // The MTP caches are not filled here: the first step's draft runs each depth over the whole
  // prompt, which is their prefill.
  const int64_t position = prefill_.next_position();
  auto out = prefill_.run_next_chunk(*model_, main_cache_);
  main_hidden_.narrow(1, position, out.hidden.size(1)).copy_(out.hidden);
  stats_.cached_prompt_tokens = prefill_.reused_tokens();
  if (!prefill_.done()) {
    stats_.prefill_seconds += seconds_since(started);
    return std::nullopt;
  }
  const int64_t first = sampler_.next_token(out.logits[0][0]);
  tokens_.push_back(first);
  started_ = true;  // only now: a chunk that threw leaves the decoder unable to step
  stats_.generated_tokens = 1;
  stats_.prefill_seconds += seconds_since(started);
  return first;
}

torch::Tensor SpeculativeDecoder::input_hidden_history(int64_t depth) const {
  return sequential_ && depth > 1 ? depths_[depth - 2].hidden_history : main_hidden_;
}

torch::Tensor SpeculativeDecoder::catch_up(int64_t depth, int64_t end, const std::vector<int64_t>& tokens_with_drafts) {
  DraftDepth& d = depths_[depth - 1];
  const int64_t first = d.cache.length();  // positions [first, end) are missing
  const int64_t count = end - first;
  auto previous_hidden = input_hidden_history(depth).narrow(1, first, count);
  torch::Tensor token_ids;
  if (sequential_) {
    // Position j takes Emb(t_{j+k}): verified tokens, then (near the end) the drafts of the
    // shallower depths of this step.
    std::vector<int64_t> ids(tokens_with_drafts.begin() + first + depth, tokens_with_drafts.begin() + end + depth);
    token_ids = ids_tensor(ids, main_hidden_.device());
  }
  // A depth whose outputs no deeper depth reads (the last one, and every parallel head) needs the
  // positions before the last only in its cache: their feed-forward is skipped.
  const CachedOutput output = d.hidden_history.defined() ? CachedOutput::kEveryToken : CachedOutput::kLastToken;
  auto h = run_mtp_module_cached(*model_, d.module, previous_hidden, token_ids, d.cache, AttentionForm::kAuto, output);
  if (d.hidden_history.defined()) d.hidden_history.narrow(1, first, count).copy_(h);
  return h;  // [1, count, hidden] or, kLastToken, [1, 1, hidden]: position end - 1's last either way
}

SpeculativeDecoder::Drafts SpeculativeDecoder::draft(int64_t count) {
  Drafts drafts;
  std::vector<int64_t> tokens_with_drafts = tokens_;  // t_0..t_n, then d_1, d_2, ...
  for (int64_t k = 1; k <= count; ++k) {
    auto h = catch_up(k, main_cache_.length(), tokens_with_drafts);  // the draft position is n - 1
    // Eq. 23's head (the module's own final norm, the shared output projection), as the draft head reads it.
    auto normed = model_->mtp_module(depths_[k - 1].module)->shared_head_norm(h.narrow(1, h.size(1) - 1, 1));
    auto logits = draft_head_.logits(normed)[0][0];
    int64_t token;
    if (sampler_.options().greedy()) {
      token = draft_head_.token(greedy_tokens(logits)[0]);
    } else {
      // Drafts come from q at the same temperature and filters as the target's p (the rule is
      // exact for any q, but acceptance is highest when q is close). A draft vocabulary gives q
      // zeros outside it.
      auto q = sampler_.distribution(logits);
      token = draft_head_.token(sampler_.sample(q).item<int64_t>());
      drafts.distributions.push_back(draft_head_.to_vocabulary(q, model_->config().vocab_size));
    }
    drafts.tokens.push_back(token);
    drafts.logits.push_back(logits);
    tokens_with_drafts.push_back(token);
  }
  return drafts;
}

void SpeculativeDecoder::roll_back_draft_caches(int64_t verified_length) {
  // Parallel heads read h^0 only, and h^0 at the positions they cached is verified: nothing to undo.
  if (!sequential_) return;
  // Depth k's entry j used t_{j+k}; tokens up to index verified_length - 1 are verified ones
  // (t_{verified_length} is the new pending token, which replaced a rejected draft if any).
  for (int64_t k = 1; k <= static_cast<int64_t>(depths_.size()); ++k) {
    KvCache& cache = depths_[k - 1].cache;
    const int64_t keep = std::max<int64_t>(0, verified_length - k);
    if (cache.length() > keep) cache.truncate(keep);
  }
}

std::vector<int64_t> SpeculativeDecoder::step(int64_t max_tokens) {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(started_, "step() before the prompt's prefill");
  NEXTN_CHECK(max_tokens >= 1 && room() >= 1, "no room left to decode");
  const int64_t n = main_cache_.length();  // tokens_[n] is pending
  if (!options_.tree.empty()) {
    const int64_t levels = tree_levels_that_fit(max_tokens);
    if (levels > 0) return tree_step(levels);
  }
  // A step yields up to count + 1 tokens: stay within the caller's budget and the capacity.
  const int64_t limit = options_.tree.empty() ? std::min({options_.draft_tokens, max_tokens - 1, room() - 1}) : 0;
  const int64_t count = policy_ ? policy_->choose(limit) : limit;

  const auto started = std::chrono::steady_clock::now();
  if (count == 0) {
    // No drafts: plain decoding's step (one row, the sampler's next token), keeping h^0 for the
    // drafter's caches to catch up from when the request drafts again.
    auto out = run_main_model_cached(*model_, ids_tensor({tokens_[n]}, main_hidden_.device()), main_cache_);
    return {take_plain_step(n, out.logits[0][0], out.hidden, seconds_since(started), true)};
  }
  Drafts drafts = draft(count);
  const double draft_seconds = seconds_since(started);

  // Verify the pending token and every draft in one forward; row i predicts t_{n+i+1}.
  std::vector<int64_t> verify_ids{tokens_[n]};
  verify_ids.insert(verify_ids.end(), drafts.tokens.begin(), drafts.tokens.end());
  auto out = run_main_model_cached(*model_, ids_tensor(verify_ids, main_hidden_.device()), main_cache_);
  main_hidden_.narrow(1, n, count + 1).copy_(out.hidden);
  const Verification verdict = judge(out.logits[0], drafts);
  return commit(n, std::move(drafts), verdict, draft_seconds, seconds_since(started), true);
}

Verification SpeculativeDecoder::judge(const torch::Tensor& target_logits, const Drafts& drafts) {
  if (sampler_.options().greedy()) return verify_greedy(target_logits, drafts.tokens);
  auto target_probs = sampler_.distribution(target_logits);
  auto draft_probs = drafts.tokens.empty() ? torch::Tensor() : torch::stack(drafts.distributions);
  return options_.sampled_verify_override
             ? options_.sampled_verify_override(target_probs, draft_probs, drafts.tokens, sampler_)
             : verify_sampled(target_probs, draft_probs, drafts.tokens, sampler_);
}

std::vector<int64_t> SpeculativeDecoder::commit(int64_t n, Drafts drafts, const Verification& verdict,
                                                double draft_seconds, double step_seconds, bool timed_alone) {
  // Commit the accepted drafts and the target's token; forget everything computed from the rest.
  const auto count = static_cast<int64_t>(drafts.tokens.size());
  std::vector<int64_t> produced(drafts.tokens.begin(), drafts.tokens.begin() + verdict.accepted);
  produced.push_back(verdict.next_token);
  tokens_.insert(tokens_.end(), produced.begin(), produced.end());
  const int64_t verified_length = n + verdict.accepted + 1;
  main_cache_.truncate(verified_length);
  roll_back_draft_caches(verified_length);

  last_step_ = SpeculativeStep();
  last_step_.position = n;
  last_step_.drafts = drafts.tokens;
  last_step_.draft_logits = std::move(drafts.logits);
  last_step_.accepted = verdict.accepted;
  last_step_.next_token = verdict.next_token;
  // A step inside a server's batch took the batch's time, not this request's alone: the policy
  // learns step times from its own steps only.
  if (policy_ && timed_alone) policy_->record(count, verdict.accepted, step_seconds);
  count_step(count, verdict.accepted, static_cast<int64_t>(produced.size()), draft_seconds, step_seconds);
  return produced;
}

void SpeculativeDecoder::count_step(int64_t depths, int64_t accepted, int64_t produced, double draft_seconds,
                                    double step_seconds) {
  for (int64_t k = 1; k <= depths; ++k) {
    stats_.drafted_per_depth[k - 1] += 1;
    if (k <= accepted + 1) stats_.reached_per_depth[k - 1] += 1;
    if (k <= accepted) stats_.accepted_per_depth[k - 1] += 1;
  }
  stats_.steps_by_draft_count[depths] += 1;
  stats_.steps += 1;
  stats_.step_tokens += produced;
  stats_.generated_tokens += produced;
  stats_.draft_seconds += draft_seconds;
  stats_.verify_seconds += step_seconds - draft_seconds;
  stats_.decode_seconds += step_seconds;
}

BatchedSequence SpeculativeDecoder::batched_input() {
  NEXTN_CHECK(started_, "batched_input() before the prompt's prefill");
  NEXTN_CHECK(room() >= 1, "no room left to decode");
  return {&main_cache_, {tokens_.back()}};
}

int64_t SpeculativeDecoder::finish_batched_step(const torch::Tensor& logits_row, const torch::Tensor& hidden_row,
                                                double step_seconds) {
  torch::NoGradGuard no_grad;
  // The batched forward cached the pending token: it sits at n = length - 1 now.
  const int64_t n = main_cache_.length() - 1;
  NEXTN_CHECK(n >= 0 && n + 1 == static_cast<int64_t>(tokens_.size()), "finish_batched_step() without its batched forward");
  return take_plain_step(n, logits_row, hidden_row, step_seconds, false);
}

int64_t SpeculativeDecoder::take_plain_step(int64_t n, const torch::Tensor& logits_row, const torch::Tensor& hidden_row,
                                            double step_seconds, bool timed_alone) {
  main_hidden_.narrow(1, n, 1).copy_(hidden_row.reshape({1, 1, -1}));
  const int64_t next = sampler_.next_token(logits_row.reshape({-1}));  // what judge() gives without drafts
  tokens_.push_back(next);
  last_step_ = SpeculativeStep();
  last_step_.position = n;
  last_step_.next_token = next;
  if (policy_ && timed_alone) policy_->record(0, 0, step_seconds);
  count_step(0, 0, 1, 0.0, step_seconds);
  return next;
}

}  // namespace nextn::inference

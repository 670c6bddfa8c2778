// The server's decoding engine: continuous batching over one model on one thread.
//
// Requests wait in a bounded queue; up to max_batch run at once, each with its own KV cache.
// Every iteration the engine admits waiting requests into free places, runs prompt chunks of the
// admitted ones up to a budget of prefill_chunk tokens (inference/prompt_prefill.h: a long prompt
// takes several iterations, so the running requests wait for one chunk per token, not for its
// whole prefill; with a prefix cache, chunks an earlier prompt left are copied, not computed:
// inference/prefix_cache.h), then runs one decoding step for every request whose prompt has run:
// the plain ones together, in one forward over all their pending tokens
// (inference/batched_forward.h); a speculative one alone with its own drafts and verify. Finished
// and cancelled requests leave after the iteration that ended them, so a cancellation (a client
// that went away) costs at most one more iteration.
//
// Speculative decoding policy (measured, docs/BENCHMARKS.md "Serving"): a request drafts with
// the MTP modules when it is admitted into an empty engine and asked for no log-probabilities
// and no penalties or logit bias
// (with adaptive_draft, each of its steps drafts the count the draft policy expects to pay, none
// when drafting does not pay on this machine);
// a request that joins running ones decodes plainly in the shared batch, where one more row costs
// a fraction of a step while a verify of its own would cost a whole one; and a drafting request
// drafts only on steps where it runs alone, taking plain steps in the batch while others run. Either way greedy
// output is the same (speculative greedy output equals plain), and sampled output is distributed
// as the model's.
//
// Every token a request produces is what `nextn generate` produces for it alone: the batched
// step's rows are bit for bit single-sequence decoding's, each request has its own seeded
// sampler, and the stop rules are the generator's (a stop token ends the output and is part of
// it, the callback may stop it, max_tokens, a full context).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "nextn/inference/draft_head.h"
#include "nextn/inference/draft_policy.h"
#include "nextn/inference/prompt_prefill.h"
#include "nextn/inference/prompt_scoring.h"
#include "nextn/inference/sampling.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::server {

struct EngineOptions {
  int64_t max_batch = 8;        // requests decoding at once
  int64_t max_queue = 64;       // requests waiting beyond those; more are refused
  int64_t context_length = 0;   // prompt + generated tokens at most; 0: max_position_embeddings
  int64_t draft_tokens = 0;     // N > 0: MTP speculative decoding with N drafts (policy above)
  // With draft_tokens > 0: each step of a drafting request drafts the count in 0..N that the draft
  // policy expects to give the most tokens per second (inference/draft_policy.h); the step times
  // by count are learnt online and shared by all the engine's requests.
  bool adaptive_draft = false;
  // --draft-tree: a drafting request's steps draft this tree (children per node at each level,
  // inference/draft_tree.h) instead of a chain; draft_tokens is then its level count.
  std::vector<int64_t> draft_tree;
  inference::DraftHeadOptions draft_head;
  // Prompt tokens per forward, and the most prompt tokens an iteration runs (at least one chunk):
  // `nextn generate` with the same value gives the same tokens (prompt_prefill.h).
  int64_t prefill_chunk = inference::kDefaultPrefillChunk;
  // Bytes of prompt chunks kept for reuse by later prompts that start with the same tokens
  // (inference/prefix_cache.h: the same outputs, a shorter prefill); 0: none kept.
  int64_t prefix_cache_bytes = 0;
};

// A token, and with log-probabilities asked for its log-probability under the model (softmax of
// the raw logits, before temperature and truncation) and the most likely tokens there.
using TokenEvent = inference::ScoredToken;

enum class FinishReason { kStopToken, kStoppedByCaller, kLength, kCancelled, kError };
const char* to_string(FinishReason reason);

struct RequestStats {
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // of them, copied from the prefix cache instead of computed
  int64_t completion_tokens = 0;
  bool speculative = false;
  std::vector<int64_t> drafted_per_depth, accepted_per_depth;
  double queue_seconds = 0;  // from submit() to its admission (a place; its prompt's chunks run from then)
  std::string error;         // kError: what went wrong
};

struct EngineRequest {
  std::vector<int64_t> prompt;  // not empty, ids inside the vocabulary, shorter than the context
  // >= 0, prompt + max_tokens within the context; 0: the prefill only (to score the prompt), no token
  int64_t max_tokens = 16;
  inference::SamplingOptions sampling;
  std::vector<int64_t> stop_token_ids;  // generation ends after one of these (it is part of the output)
  int64_t logprobs = -1;                // -1: none; 0: the token's own; k: and the k most likely
  // >= 0: the prompt is scored too (completions with echo and logprobs): on_prompt is called once,
  // after the prefill and before the first token, with an event for each prompt token but the
  // first (its log-probability after the tokens before it), each with this many most likely tokens.
  int64_t prompt_logprobs = -1;
  std::function<void(const std::vector<TokenEvent>&)> on_prompt;
  // Called on the engine thread, in order (on_prompt first). on_token returning false ends the request
  // (kStoppedByCaller: a stop string matched); on_finish is called exactly once, last.
  std::function<bool(const TokenEvent&)> on_token;
  std::function<void(FinishReason, const RequestStats&)> on_finish;
  // Set from any thread (the client went away): the engine drops the request at its next step.
  std::atomic<bool> cancelled{false};
};

class Engine {
 public:
  Engine(DeepSeekV3 model, EngineOptions options);
  ~Engine();  // cancels whatever still runs, then stops the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  enum class Admission { kAccepted, kQueueFull, kStopping };
  // Queues a request (checked: nextn::Error for a prompt or max_tokens that does not fit).
  Admission submit(std::shared_ptr<EngineRequest> request);

  // SIGTERM: refuse new requests; wait_idle() then waits for the running and queued ones.
  void stop_accepting();
  bool wait_idle(std::chrono::milliseconds timeout);
  // The grace period is over: every running and waiting request ends (kCancelled) at the next step.
  void cancel_all();

  int64_t context_length() const { return context_length_; }
  const ModelConfig& config() const { return model_->config(); }
  const EngineOptions& options() const { return options_; }
  int64_t running() const { return running_count_; }
  int64_t queued() const;
  int64_t last_batch_size() const { return last_batch_size_; }  // plain rows of the latest step
  int64_t prefill_chunks() const { return prefill_chunks_; }     // prompt chunks run so far
  int64_t prefix_cache_bytes() const { return prefix_cache_bytes_; }  // held by kept prompt chunks
  int64_t steps() const { return steps_; }  // engine iterations (prompt chunks and a decoding step each)

 private:
  struct Active;
  void run();
  void admit(std::vector<std::unique_ptr<Active>>& active);
  void prefill(std::vector<std::unique_ptr<Active>>& active);
  void run_prefill_chunk(Active& a);
  void step(std::vector<std::unique_ptr<Active>>& active);
  bool emit(Active& a, const std::vector<int64_t>& tokens);
  void finish(Active& a, FinishReason reason);

  DeepSeekV3 model_;
  EngineOptions options_;
  int64_t context_length_;
  std::shared_ptr<inference::DraftStepCosts> draft_step_costs_;  // adaptive drafting only
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<std::shared_ptr<EngineRequest>, std::chrono::steady_clock::time_point>> queue_;
  bool accepting_ = true;
  bool shutting_down_ = false;
  std::atomic<bool> cancel_all_{false};
  std::atomic<int64_t> running_count_{0}, last_batch_size_{0}, steps_{0}, prefill_chunks_{0}, prefix_cache_bytes_{0};
  std::unique_ptr<inference::PrefixCache> prefix_cache_;  // null without prefix_cache_bytes; engine thread only
  std::thread thread_;
};

}  // namespace nextn::server

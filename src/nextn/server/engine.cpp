#include "nextn/server/engine.h"

#include <algorithm>
#include <iostream>
#include <optional>
#include <utility>

#include "nextn/inference/batched_forward.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/inference/speculative_decoder.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn::server {

using Clock = std::chrono::steady_clock;

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStopToken: return "stop token";
    case FinishReason::kStoppedByCaller: return "stopped by caller";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "?";
}

struct Engine::Active {
  std::shared_ptr<EngineRequest> request;
  std::unique_ptr<inference::PlainDecoder> plain;              // one of these two
  std::unique_ptr<inference::SpeculativeDecoder> speculative;
  inference::TokenDecoder* decoder = nullptr;
  int64_t generated = 0;
  bool prefilling = true;  // until its prompt's last chunk has run
  bool finished = false;
  std::vector<TokenEvent> prompt_events;  // the prompt's scores so far (prompt_logprobs)
  RequestStats stats;
};

Engine::Engine(DeepSeekV3 model, EngineOptions options) : model_(std::move(model)), options_(std::move(options)) {
  const ModelConfig& config = model_->config();
  context_length_ = options_.context_length > 0 ? options_.context_length : config.max_position_embeddings;
  NEXTN_CHECK(context_length_ >= 2 && context_length_ <= config.max_position_embeddings, "context length ",
              context_length_, " must be in [2, max_position_embeddings=", config.max_position_embeddings, "]");
  NEXTN_CHECK(options_.max_batch >= 1, "--max-batch must be at least 1, got ", options_.max_batch);
  NEXTN_CHECK(options_.max_queue >= 0, "--max-queue must be >= 0, got ", options_.max_queue);
  NEXTN_CHECK(options_.draft_tokens >= 0, "--draft must be >= 0, got ", options_.draft_tokens);
  NEXTN_CHECK(options_.draft_tokens <= config.mtp_depth(), "--draft ", options_.draft_tokens, " needs as many MTP "
              "modules; the model has ", config.mtp_depth());
  NEXTN_CHECK(!options_.adaptive_draft || options_.draft_tokens > 0, "adaptive drafting needs draft_tokens > 0");
  inference::check_prefill_chunk(options_.prefill_chunk);
  NEXTN_CHECK(options_.prefix_cache_bytes >= 0, "the prefix cache's size must be >= 0, got ", options_.prefix_cache_bytes);
  if (options_.prefix_cache_bytes > 0) prefix_cache_ = std::make_unique<inference::PrefixCache>(options_.prefix_cache_bytes,
                                                                                              options_.prefill_chunk);
  NEXTN_CHECK(options_.draft_tree.empty() ||
                  (options_.draft_tokens == static_cast<int64_t>(options_.draft_tree.size()) && !options_.adaptive_draft),
              "a draft tree of ", options_.draft_tree.size(), " levels drafts ", options_.draft_tree.size(),
              " deep per step (draft_tokens ", options_.draft_tokens, ", adaptive ", options_.adaptive_draft, ")");
  if (options_.adaptive_draft) draft_step_costs_ = std::make_shared<inference::DraftStepCosts>(options_.draft_tokens);
  model_->eval();
  thread_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shutting_down_ = true;
    accepting_ = false;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Engine::Admission Engine::submit(std::shared_ptr<EngineRequest> request) {
  const ModelConfig& config = model_->config();
  const auto length = static_cast<int64_t>(request->prompt.size());
  NEXTN_CHECK(length > 0, "the prompt is empty");
  for (int64_t id : request->prompt) {
    NEXTN_CHECK(id >= 0 && id < config.vocab_size, "prompt token id ", id, " is outside the vocabulary [0, ",
                config.vocab_size, ")");
  }
  NEXTN_CHECK(request->max_tokens >= 0, "max_tokens must be non-negative, got ", request->max_tokens);
  // The prefill picks a first token even for max_tokens 0: a prompt must leave it a place.
  NEXTN_CHECK(length < context_length_, "the prompt (", length, " tokens) fills the context of ", context_length_,
              " tokens: it must leave room for one more");
  NEXTN_CHECK(request->prompt_logprobs < 0 || request->on_prompt, "prompt_logprobs without on_prompt");
  NEXTN_CHECK(length + request->max_tokens <= context_length_, "the prompt (", length, " tokens) and max_tokens (",
              request->max_tokens, ") exceed the context of ", context_length_, " tokens");
  request->sampling.validate();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!accepting_) return Admission::kStopping;
  // Requests whose clients went away while they waited hold no place (admit() drops them).
  const auto waiting = std::count_if(queue_.begin(), queue_.end(), [](const auto& q) { return !q.first->cancelled; });
  if (waiting >= options_.max_queue + std::max<int64_t>(0, options_.max_batch - running_count_)) {
    return Admission::kQueueFull;
  }
  queue_.emplace_back(std::move(request), Clock::now());
  wake_.notify_all();
  return Admission::kAccepted;
}

void Engine::stop_accepting() {
  std::lock_guard<std::mutex> lock(mutex_);
  accepting_ = false;
}

bool Engine::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return wake_.wait_for(lock, timeout, [&] { return queue_.empty() && running_count_ == 0; });
}

void Engine::cancel_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  accepting_ = false;
  cancel_all_ = true;
  for (auto& [request, since] : queue_) request->cancelled = true;
  wake_.notify_all();
}

int64_t Engine::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

void Engine::run() {
  torch::NoGradGuard no_grad;  // grad mode is per thread
  std::vector<std::unique_ptr<Active>> active;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return shutting_down_ || !queue_.empty() || !active.empty(); });
      if (shutting_down_) break;
    }
    admit(active);
    prefill(active);
    step(active);
    std::lock_guard<std::mutex> lock(mutex_);
    running_count_ = static_cast<int64_t>(active.size());
    wake_.notify_all();
  }
  // Shutting down: whatever still runs or waits ends as cancelled.
  for (auto& a : active) finish(*a, FinishReason::kCancelled);
  std::deque<std::pair<std::shared_ptr<EngineRequest>, Clock::time_point>> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting.swap(queue_);
  }
  for (auto& [request, since] : waiting) {
    Active a;
    a.request = request;
    a.stats.prompt_tokens = static_cast<int64_t>(request->prompt.size());
    finish(a, FinishReason::kCancelled);
  }
}

void Engine::admit(std::vector<std::unique_ptr<Active>>& active) {
  while (static_cast<int64_t>(active.size()) < options_.max_batch) {
    std::shared_ptr<EngineRequest> request;
    Clock::time_point since;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (queue_.empty()) return;
      std::tie(request, since) = queue_.front();
      queue_.pop_front();
      running_count_ = static_cast<int64_t>(active.size()) + 1;
    }
    auto a = std::make_unique<Active>();
    a->request = request;
    a->stats.prompt_tokens = static_cast<int64_t>(request->prompt.size());
    a->stats.queue_seconds = std::chrono::duration<double>(Clock::now() - since).count();
    if (request->cancelled) {
      finish(*a, FinishReason::kCancelled);
      continue;
    }
    // The prefill picks a first token even for max_tokens 0 (then dropped): room for one.
    const int64_t capacity = std::min<int64_t>(
        context_length_, static_cast<int64_t>(request->prompt.size()) + std::max<int64_t>(request->max_tokens, 1));
    const bool scores_prompt = request->prompt_logprobs >= 0;
    const bool draft = options_.draft_tokens > 0 && active.empty() && request->max_tokens > 0 &&
                       request->logprobs < 0 && !scores_prompt && !request->sampling.adjusts_logits();
    try {
      if (draft) {
        inference::SpeculativeOptions speculative;
        speculative.draft_tokens = options_.draft_tokens;
        speculative.draft_head = options_.draft_head;
        speculative.adaptive = options_.adaptive_draft;
        speculative.step_costs = draft_step_costs_;
        speculative.tree = options_.draft_tree;
        speculative.prefill_chunk = options_.prefill_chunk;
        a->speculative = std::make_unique<inference::SpeculativeDecoder>(model_, speculative, request->sampling, capacity);
        a->speculative->use_prefix_cache(prefix_cache_.get());
        a->decoder = a->speculative.get();
        a->stats.speculative = true;
      } else {
        a->plain = std::make_unique<inference::PlainDecoder>(model_, request->sampling, capacity, options_.prefill_chunk);
        if (scores_prompt) a->plain->keep_prompt_hidden();
        a->plain->use_prefix_cache(prefix_cache_.get());
        a->decoder = a->plain.get();
      }
      a->decoder->begin(request->prompt);
    } catch (const std::exception& e) {
      a->stats.error = e.what();
      finish(*a, FinishReason::kError);
    }
    if (!a->finished) active.push_back(std::move(a));
  }
}

void Engine::prefill(std::vector<std::unique_ptr<Active>>& active) {
  // Chunks in admission order up to prefill_chunk tokens in all: the oldest prompt always runs
  // one, later ones a chunk that fits what is left. The running requests' next step waits for no
  // more than that. Every prompt still running is checked for cancellation, run or not.
  int64_t budget = options_.prefill_chunk;
  bool ran = false;
  for (auto& a : active) {
    if (!a->prefilling || a->finished) continue;
    if (a->request->cancelled || cancel_all_) {
      finish(*a, FinishReason::kCancelled);
      continue;
    }
    const int64_t tokens = a->decoder->next_prefill_tokens();
    if (ran && tokens > budget) continue;
    budget -= tokens;
    ran = true;
    run_prefill_chunk(*a);
  }
  active.erase(std::remove_if(active.begin(), active.end(), [](const auto& a) { return a->finished; }), active.end());
}

void Engine::run_prefill_chunk(Active& a) {
  EngineRequest& request = *a.request;
  try {
    const std::optional<int64_t> first = a.decoder->run_prefill_chunk();
    ++prefill_chunks_;
    if (prefix_cache_) prefix_cache_bytes_ = prefix_cache_->bytes();
    if (request.prompt_logprobs >= 0) {  // the chunks' positions, scored while their h^0 is at hand
      NEXTN_CHECK(a.plain, "a request that scores its prompt decodes plainly");
      const torch::Tensor hidden = a.plain->take_chunk_hidden();
      const int64_t from = a.plain->chunk_hidden_position();
      // One chunk per call (the prefix cache's copied ones come with the computed one): the head's
      // rows grouped as without the cache, so the scores are the same bits.
      for (int64_t at = 0; at < hidden.size(1); at += options_.prefill_chunk) {
        const int64_t rows = std::min<int64_t>(options_.prefill_chunk, hidden.size(1) - at);
        for (TokenEvent& event : inference::score_prompt_span(*model_, hidden.narrow(1, at, rows), request.prompt,
                                                              from + at, request.prompt_logprobs)) {
          a.prompt_events.push_back(std::move(event));
        }
      }
    }
    if (!first) return;
    a.prefilling = false;
    if (request.prompt_logprobs >= 0) request.on_prompt(std::exchange(a.prompt_events, {}));
    if (request.cancelled) {  // the client went away, or the prompt's chunk could not be sent
      finish(a, FinishReason::kCancelled);
    } else if (request.max_tokens == 0) {
      finish(a, FinishReason::kLength);
    } else {
      emit(a, {*first});
    }
  } catch (const std::exception& e) {
    a.stats.error = e.what();
    finish(a, FinishReason::kError);
  }
}

void Engine::step(std::vector<std::unique_ptr<Active>>& active) {
  // Decoding's products are the few-rows kernels; OpenBLAS's idle threads would take the core
  // their helper needs (generator.cpp): one BLAS thread while stepping.
  std::optional<ScopedBlasThreads> blas_threads;
  if (model_->embed_tokens->weight.device().is_cpu()) blas_threads.emplace(1);
  std::vector<Active*> running;
  const bool cancel_everything = cancel_all_;
  for (auto& a : active) {
    if (a->finished || a->prefilling) continue;
    if (a->request->cancelled || cancel_everything) {
      finish(*a, FinishReason::kCancelled);
    } else if (a->decoder->room() == 0) {
      finish(*a, FinishReason::kLength);
    } else {
      running.push_back(a.get());
    }
  }
  // A drafting request drafts while it runs alone; beside others it takes plain steps in their
  // batch (one more row costs a fraction of a step, a verify of its own a whole one).
  if (running.size() == 1 && running[0]->speculative) {
    Active& a = *running[0];
    try {
      emit(a, a.speculative->step(a.request->max_tokens - a.generated));
    } catch (const std::exception& e) {
      a.stats.error = e.what();
      finish(a, FinishReason::kError);
    }
    last_batch_size_ = 1;
  } else if (!running.empty()) {
    const auto started = Clock::now();
    std::vector<inference::BatchedSequence> batch;
    for (Active* a : running) batch.push_back(a->plain ? a->plain->batched_input() : a->speculative->batched_input());
    try {
      inference::BatchedStep out = inference::run_main_model_batched(*model_, batch);
      const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
      for (size_t i = 0; i < running.size(); ++i) {
        const int64_t row = out.first_row[i];
        const int64_t token = running[i]->plain
                                  ? running[i]->plain->finish_batched_step(out.logits[row], seconds)
                                  : running[i]->speculative->finish_batched_step(out.logits[row], out.hidden[row], seconds);
        emit(*running[i], {token});
      }
    } catch (const std::exception& e) {
      for (Active* a : running) {
        a->stats.error = e.what();
        finish(*a, FinishReason::kError);
      }
    }
    last_batch_size_ = static_cast<int64_t>(running.size());
  }
  ++steps_;
  active.erase(std::remove_if(active.begin(), active.end(), [](const auto& a) { return a->finished; }), active.end());
}

bool Engine::emit(Active& a, const std::vector<int64_t>& tokens) {
  EngineRequest& r = *a.request;
  for (int64_t token : tokens) {
    if (a.finished) return false;
    ++a.generated;
    TokenEvent event;
    event.token = token;
    if (r.logprobs >= 0 && a.plain) event = inference::score_token(a.plain->last_logits(), token, r.logprobs);
    bool continues = true;
    try {
      continues = !r.on_token || r.on_token(event);
    } catch (const std::exception& e) {  // the request's own failure (500), not a cancellation
      a.stats.error = std::string("delivering a token failed: ") + e.what();
      finish(a, FinishReason::kError);
      return false;
    }
    const bool stop_token = std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), token) != r.stop_token_ids.end();
    if (stop_token) {
      finish(a, FinishReason::kStopToken);
    } else if (r.cancelled) {
      finish(a, FinishReason::kCancelled);
    } else if (!continues) {
      finish(a, FinishReason::kStoppedByCaller);
    } else if (a.generated >= r.max_tokens) {
      finish(a, FinishReason::kLength);
    }
  }
  return !a.finished;
}

void Engine::finish(Active& a, FinishReason reason) {
  if (a.finished) return;
  a.finished = true;
  a.stats.completion_tokens = a.generated;
  if (a.decoder) a.stats.cached_prompt_tokens = a.decoder->stats().cached_prompt_tokens;
  if (a.speculative) {
    const inference::DecodeStats& s = a.speculative->stats();
    a.stats.drafted_per_depth = s.drafted_per_depth;
    a.stats.accepted_per_depth = s.accepted_per_depth;
  }
  try {
    if (a.request->on_finish) a.request->on_finish(reason, a.stats);
  } catch (const std::exception& e) {
    std::cerr << "nextn serve: a request's finish callback failed: " << e.what() << "\n";
  }
}

}  // namespace nextn::server

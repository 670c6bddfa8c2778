// The serving engine against a direct sequential run: requests that run together (joining and
// leaving a running batch, waiting in the queue) produce exactly what the generator produces for
// each alone; queue limits, cancellation, the speculative policy, stopping.
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "inference/inference_test_support.h"
#include "nextn/inference/generator.h"
#include "nextn/server/engine.h"
#include "nextn/util/error.h"

namespace nextn::server {
namespace {

using testing::random_prompt;

// What one request produced, filled in by its callbacks.
struct Outcome {
  std::vector<int64_t> tokens;
  std::vector<TokenEvent> events;
  FinishReason reason = FinishReason::kError;
  RequestStats stats;
  std::promise<void> done;
};

std::shared_ptr<EngineRequest> make_request(const std::vector<int64_t>& prompt, int64_t max_tokens,
                                            std::shared_ptr<Outcome> outcome, double temperature = 0.0,
                                            uint64_t seed = 0) {
  auto r = std::make_shared<EngineRequest>();
  r->prompt = prompt;
  r->max_tokens = max_tokens;
  r->sampling.temperature = temperature;
  r->sampling.seed = seed;
  r->on_token = [outcome](const TokenEvent& e) {
    outcome->tokens.push_back(e.token);
    outcome->events.push_back(e);
    return true;
  };
  r->on_finish = [outcome](FinishReason reason, const RequestStats& stats) {
    outcome->reason = reason;
    outcome->stats = stats;
    outcome->done.set_value();
  };
  return r;
}

void wait_for(Outcome& o) {
  ASSERT_EQ(o.done.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
}

inference::GenerationResult alone(DeepSeekV3 model, const std::vector<int64_t>& prompt, int64_t max_tokens,
                                  double temperature = 0.0, uint64_t seed = 0, int64_t draft = 0,
                                  int64_t prefill_chunk = inference::kDefaultPrefillChunk) {
  inference::GenerationOptions o;
  o.prefill_chunk = prefill_chunk;
  o.max_new_tokens = max_tokens;
  o.sampling.temperature = temperature;
  o.sampling.seed = seed;
  o.draft_tokens = draft;
  return inference::Generator(model).generate(prompt, o);
}

DeepSeekV3 float_model(uint64_t seed) { return testing::random_model(testing::tiny_config(), seed, 0.3, torch::kFloat); }

TEST(Engine, RequestsRunTogetherProduceWhatEachProducesAlone) {
  DeepSeekV3 model = float_model(31);
  EngineOptions options;
  options.max_batch = 4;  // six requests: two wait in the queue, then join as others leave
  Engine engine(model, options);
  std::vector<std::shared_ptr<Outcome>> outcomes;
  std::vector<std::vector<int64_t>> prompts;
  std::vector<int64_t> budgets = {5, 12, 3, 9, 7, 10};
  for (int i = 0; i < 6; ++i) {
    prompts.push_back(random_prompt(2 + 3 * i, engine.config().vocab_size, 40 + i));
    outcomes.push_back(std::make_shared<Outcome>());
    const double temperature = i % 2 == 0 ? 0.0 : 0.8;  // sampled ones use their own seeded sampler
    ASSERT_EQ(engine.submit(make_request(prompts[i], budgets[i], outcomes[i], temperature, 100 + i)),
              Engine::Admission::kAccepted);
  }
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    wait_for(*outcomes[i]);
    auto expected = alone(model, prompts[i], budgets[i], i % 2 == 0 ? 0.0 : 0.8, 100 + i);
    EXPECT_EQ(outcomes[i]->tokens, expected.tokens);
    EXPECT_EQ(outcomes[i]->reason, FinishReason::kLength);
    EXPECT_EQ(outcomes[i]->stats.completion_tokens, budgets[i]);
    EXPECT_EQ(outcomes[i]->stats.prompt_tokens, static_cast<int64_t>(prompts[i].size()));
  }
  EXPECT_TRUE(engine.wait_idle(std::chrono::seconds(5)));
}

TEST(Engine, ARequestJoinsARunningOneAndBothMatchTheirSoloRuns) {
  DeepSeekV3 model = float_model(32);
  Engine engine(model, EngineOptions{});
  auto first = std::make_shared<Outcome>(), second = std::make_shared<Outcome>();
  const auto prompt_a = random_prompt(6, engine.config().vocab_size, 1), prompt_b = random_prompt(4, engine.config().vocab_size, 2);
  auto request_a = make_request(prompt_a, 30, first);
  std::shared_ptr<EngineRequest> request_b = make_request(prompt_b, 10, second);
  int64_t batch_seen = 0;
  // A submits B from its third token on the engine thread: B joins while A runs.
  auto submit_b = request_a->on_token;
  request_a->on_token = [&, submit_b](const TokenEvent& e) {
    if (first->tokens.size() == 2) {
      EXPECT_EQ(engine.submit(request_b), Engine::Admission::kAccepted);
    }
    batch_seen = std::max(batch_seen, engine.last_batch_size());
    return submit_b(e);
  };
  ASSERT_EQ(engine.submit(request_a), Engine::Admission::kAccepted);
  wait_for(*first);
  wait_for(*second);
  EXPECT_EQ(first->tokens, alone(model, prompt_a, 30).tokens);
  EXPECT_EQ(second->tokens, alone(model, prompt_b, 10).tokens);
  EXPECT_EQ(batch_seen, 2);  // they shared steps
}

TEST(Engine, TheQueueIsBoundedAndACancelledRequestStopsWithinAStep) {
  DeepSeekV3 model = float_model(33);
  EngineOptions options;
  options.max_batch = 1;
  options.max_queue = 1;
  Engine engine(model, options);
  const auto prompt = random_prompt(5, engine.config().vocab_size, 3);
  // The running request holds the engine in its callback until released.
  std::mutex m;
  std::condition_variable cv;
  bool released = false;
  auto running = std::make_shared<Outcome>();
  auto hold = make_request(prompt, 50, running);
  auto record = hold->on_token;
  hold->on_token = [&, record](const TokenEvent& e) {
    record(e);
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return released; });
    return true;
  };
  ASSERT_EQ(engine.submit(hold), Engine::Admission::kAccepted);
  while (engine.running() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto waiting = std::make_shared<Outcome>(), refused = std::make_shared<Outcome>();
  ASSERT_EQ(engine.submit(make_request(prompt, 3, waiting)), Engine::Admission::kAccepted);
  EXPECT_EQ(engine.submit(make_request(prompt, 3, refused)), Engine::Admission::kQueueFull);
  EXPECT_EQ(engine.queued(), 1);
  // Cancel the running one, then let it go: it ends after at most one more token.
  hold->cancelled = true;
  {
    std::lock_guard<std::mutex> lock(m);
    released = true;
  }
  cv.notify_all();
  wait_for(*running);
  EXPECT_EQ(running->reason, FinishReason::kCancelled);
  EXPECT_LE(running->tokens.size(), 2u);
  wait_for(*waiting);  // the queued one runs after it, unchanged
  EXPECT_EQ(waiting->tokens, alone(model, prompt, 3).tokens);
  EXPECT_TRUE(engine.wait_idle(std::chrono::seconds(5)));
  EXPECT_EQ(engine.running(), 0);  // no place was lost
  auto again = std::make_shared<Outcome>();
  ASSERT_EQ(engine.submit(make_request(prompt, 3, again)), Engine::Admission::kAccepted);
  wait_for(*again);
  EXPECT_EQ(again->tokens, waiting->tokens);
}

TEST(Engine, StopTokensTheCallerAndTheContextEndRequests) {
  DeepSeekV3 model = float_model(34);
  EngineOptions options;
  options.context_length = 20;
  Engine engine(model, options);
  const auto prompt = random_prompt(5, engine.config().vocab_size, 4);
  const auto reference = alone(model, prompt, 15).tokens;
  // A stop token: the output ends with it.
  auto stopped = std::make_shared<Outcome>();
  auto r = make_request(prompt, 15, stopped);
  r->stop_token_ids = {reference[3]};
  engine.submit(r);
  wait_for(*stopped);
  EXPECT_EQ(stopped->reason, FinishReason::kStopToken);
  EXPECT_EQ(stopped->tokens.back(), reference[3]);
  EXPECT_LE(stopped->tokens.size(), 4u);
  // The caller (a stop string) ends it after the token it saw.
  auto by_caller = std::make_shared<Outcome>();
  auto c = make_request(prompt, 15, by_caller);
  auto record = c->on_token;
  c->on_token = [record, by_caller](const TokenEvent& e) { return record(e) && by_caller->tokens.size() < 2; };
  engine.submit(c);
  wait_for(*by_caller);
  EXPECT_EQ(by_caller->reason, FinishReason::kStoppedByCaller);
  EXPECT_EQ(by_caller->tokens.size(), 2u);
  // A callback that throws fails its request (an error, not a cancellation), naming why.
  auto failing = std::make_shared<Outcome>();
  auto t = make_request(prompt, 15, failing);
  auto keep = t->on_token;
  t->on_token = [keep, failing](const TokenEvent& e) -> bool {
    keep(e);
    if (failing->tokens.size() == 3) throw std::runtime_error("socket buffer exploded");
    return true;
  };
  engine.submit(t);
  wait_for(*failing);
  EXPECT_EQ(failing->reason, FinishReason::kError);
  EXPECT_EQ(failing->tokens.size(), 3u);
  EXPECT_NE(failing->stats.error.find("socket buffer exploded"), std::string::npos) << failing->stats.error;
  // What does not fit the context is refused at submit.
  auto no = std::make_shared<Outcome>();
  try {
    engine.submit(make_request(prompt, 16, no));
    ADD_FAILURE() << "prompt + max_tokens beyond the context must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceed the context of 20 tokens"), std::string::npos) << e.what();
  }
  EXPECT_THROW(engine.submit(make_request({}, 3, no)), Error);
  EXPECT_THROW(engine.submit(make_request({engine.config().vocab_size}, 3, no)), Error);
  EXPECT_THROW(engine.submit(make_request(prompt, -1, no)), Error);
  // A prompt that fills the context leaves no place for the token the prefill picks, even with
  // max_tokens 0 (context 20 here).
  EXPECT_THROW(engine.submit(make_request(random_prompt(20, engine.config().vocab_size, 1), 0, no)), Error);
  auto unscored = make_request(prompt, 3, no);
  unscored->prompt_logprobs = 1;  // no on_prompt to hand the scores to
  EXPECT_THROW(engine.submit(unscored), Error);
}

TEST(Engine, LogProbabilitiesAreTheModelsSoftmax) {
  DeepSeekV3 model = float_model(35);
  Engine engine(model, EngineOptions{});
  const auto prompt = random_prompt(5, engine.config().vocab_size, 5);
  auto outcome = std::make_shared<Outcome>();
  auto r = make_request(prompt, 3, outcome);
  r->logprobs = 3;
  engine.submit(r);
  wait_for(*outcome);
  ASSERT_EQ(outcome->events.size(), 3u);
  // The first token's distribution, from the full forward of the prompt.
  torch::NoGradGuard no_grad;
  auto logits = model->forward(torch::tensor(prompt).view({1, -1}), ForwardOptions{false, false}).logits[0][-1];
  auto logprobs = torch::log_softmax(logits.to(torch::kDouble), -1);
  const TokenEvent& e = outcome->events[0];
  EXPECT_NEAR(e.logprob, logprobs[e.token].item<double>(), 1e-5);
  ASSERT_EQ(e.top.size(), 3u);
  EXPECT_EQ(e.top[0].first, e.token);  // greedy: the token is the most likely
  EXPECT_NEAR(e.top[1].second, std::get<0>(logprobs.topk(3))[1].item<double>(), 1e-5);
  EXPECT_GE(e.top[1].second, e.top[2].second);
}

// Scoring the prompt (completions with echo and logprobs; evaluation harnesses' loglikelihood):
// each prompt token's log-probability after the ones before it, against the training forward's
// logits of the whole prompt; the first token and what follows stay what they are unscored.
TEST(Engine, ScoresThePromptAgainstTheFullForward) {
  DeepSeekV3 model = float_model(37);
  const auto prompt = random_prompt(9, model->config().vocab_size, 9);
  torch::NoGradGuard no_grad;
  auto logprobs = torch::log_softmax(
      model->forward(torch::tensor(prompt).view({1, -1}), ForwardOptions{false, false}).logits[0].to(torch::kDouble), -1);
  // The whole prompt in one chunk, or in chunks of 4 scored as they run (4, 4, 1).
  for (const auto& [chunk, max_tokens] : std::vector<std::pair<int64_t, int64_t>>{
           {inference::kDefaultPrefillChunk, 0}, {inference::kDefaultPrefillChunk, 4}, {4, 0}, {4, 4}}) {
    SCOPED_TRACE("max_tokens " + std::to_string(max_tokens) + ", prefill chunk " + std::to_string(chunk));
    EngineOptions options;
    options.draft_tokens = 2;  // a scored request decodes plainly even where it would draft
    options.prefill_chunk = chunk;
    Engine engine(model, options);
    auto outcome = std::make_shared<Outcome>();
    std::vector<TokenEvent> scored;
    size_t tokens_before_scores = 99;
    auto r = make_request(prompt, max_tokens, outcome);
    r->prompt_logprobs = 2;
    r->on_prompt = [&, outcome](const std::vector<TokenEvent>& events) {
      tokens_before_scores = outcome->tokens.size();
      scored = events;
    };
    ASSERT_EQ(engine.submit(r), Engine::Admission::kAccepted);
    wait_for(*outcome);
    EXPECT_EQ(tokens_before_scores, 0u);
    ASSERT_EQ(scored.size(), prompt.size() - 1);
    for (size_t i = 0; i + 1 < prompt.size(); ++i) {
      const auto at = static_cast<int64_t>(i);
      EXPECT_EQ(scored[i].token, prompt[i + 1]);
      EXPECT_NEAR(scored[i].logprob, logprobs[at][prompt[i + 1]].item<double>(), 1e-5) << "position " << i;
      auto [values, ids] = logprobs[at].topk(2);
      ASSERT_EQ(scored[i].top.size(), 2u);
      EXPECT_EQ(scored[i].top[0].first, ids[0].item<int64_t>());
      EXPECT_NEAR(scored[i].top[1].second, values[1].item<double>(), 1e-5);
    }
    EXPECT_EQ(outcome->reason, FinishReason::kLength);
    EXPECT_EQ(outcome->stats.completion_tokens, max_tokens);
    EXPECT_FALSE(outcome->stats.speculative);
    if (max_tokens == 0) {
      EXPECT_TRUE(outcome->tokens.empty());
    } else {
      EXPECT_EQ(outcome->tokens, alone(model, prompt, max_tokens, 0.0, 0, 0, chunk).tokens)
          << "the tokens of an unscored request";
    }
  }
}

// A long prompt runs one chunk per engine iteration: a request already running gets a token after
// each of its chunks instead of waiting for its whole prefill, and both give what each gives alone
// (the generator running the same chunks).
TEST(Engine, ALongPromptsChunksInterleaveWithTheRunningRequestsSteps) {
  DeepSeekV3 model = float_model(38);
  EngineOptions options;
  options.prefill_chunk = 4;
  Engine engine(model, options);
  const int64_t vocab = engine.config().vocab_size;
  const auto prompt_a = random_prompt(3, vocab, 11), prompt_b = random_prompt(18, vocab, 12);  // B: 5 chunks
  auto first = std::make_shared<Outcome>(), second = std::make_shared<Outcome>();
  auto request_a = make_request(prompt_a, 20, first);
  auto request_b = make_request(prompt_b, 6, second);
  std::vector<int64_t> chunks_at_a;  // engine.prefill_chunks() as each of A's tokens came
  int64_t chunks_at_b = -1;          // ... and as B's first came
  auto record_a = request_a->on_token;
  request_a->on_token = [&, record_a](const TokenEvent& e) {  // on the engine thread
    chunks_at_a.push_back(engine.prefill_chunks());
    if (chunks_at_a.size() == 1) {
      EXPECT_EQ(engine.submit(request_b), Engine::Admission::kAccepted);
    }
    return record_a(e);
  };
  auto record_b = request_b->on_token;
  request_b->on_token = [&, record_b](const TokenEvent& e) {
    if (chunks_at_b < 0) chunks_at_b = engine.prefill_chunks();
    return record_b(e);
  };
  ASSERT_EQ(engine.submit(request_a), Engine::Admission::kAccepted);
  wait_for(*first);
  wait_for(*second);
  EXPECT_EQ(first->tokens, alone(model, prompt_a, 20, 0.0, 0, 0, 4).tokens);
  EXPECT_EQ(second->tokens, alone(model, prompt_b, 6, 0.0, 0, 0, 4).tokens);
  // A's prompt is chunk 1; B's are chunks 2..6, and A took a step after each of them.
  EXPECT_EQ(chunks_at_b, 6);
  ASSERT_GE(chunks_at_a.size(), 7u);
  EXPECT_EQ(std::vector<int64_t>(chunks_at_a.begin(), chunks_at_a.begin() + 7),
            (std::vector<int64_t>{1, 1, 2, 3, 4, 5, 6}));
}

// An iteration runs prompt chunks up to prefill_chunk tokens in all, in arrival order: the oldest
// prompt always runs a chunk, later ones a chunk that fits what is left.
TEST(Engine, PromptsShareAnIterationsPrefillBudget) {
  DeepSeekV3 model = float_model(39);
  EngineOptions options;
  options.prefill_chunk = 8;
  Engine engine(model, options);
  const int64_t vocab = engine.config().vocab_size;
  auto runner = std::make_shared<Outcome>();
  auto request_runner = make_request(random_prompt(2, vocab, 20), 10, runner);
  // 3 + 4 fit in 8, and 1 after them (5 and 12's first chunk of 8 do not); then 5; 12: 8, then 4.
  const std::vector<int64_t> lengths = {3, 4, 5, 12, 1};
  std::vector<std::shared_ptr<Outcome>> outcomes;
  std::vector<std::shared_ptr<EngineRequest>> requests;
  std::vector<int64_t> step_at_first(lengths.size(), -1);
  for (size_t i = 0; i < lengths.size(); ++i) {
    outcomes.push_back(std::make_shared<Outcome>());
    requests.push_back(make_request(random_prompt(lengths[i], vocab, 21 + i), 3, outcomes[i]));
    auto record = requests[i]->on_token;
    requests[i]->on_token = [&, record, i](const TokenEvent& e) {
      if (step_at_first[i] < 0) step_at_first[i] = engine.steps();
      return record(e);
    };
  }
  auto record_runner = request_runner->on_token;
  request_runner->on_token = [&, record_runner](const TokenEvent& e) {
    if (runner->tokens.empty()) {  // all four arrive together, while the runner runs
      for (auto& r : requests) EXPECT_EQ(engine.submit(r), Engine::Admission::kAccepted);
    }
    return record_runner(e);
  };
  ASSERT_EQ(engine.submit(request_runner), Engine::Admission::kAccepted);
  wait_for(*runner);
  for (size_t i = 0; i < lengths.size(); ++i) {
    wait_for(*outcomes[i]);
    EXPECT_EQ(outcomes[i]->tokens, alone(model, requests[i]->prompt, 3, 0.0, 0, 0, 8).tokens) << "request " << i;
  }
  const int64_t s = step_at_first[0];
  EXPECT_EQ(step_at_first, (std::vector<int64_t>{s, s, s + 1, s + 3, s}));
}

// A request whose client goes away while its prompt waits for the budget (another prompt takes
// every chunk) is dropped at the next iteration, not after that prompt's prefill.
TEST(Engine, ACancelledRequestLeavesWhileAnotherPromptRuns) {
  DeepSeekV3 model = float_model(40);
  EngineOptions options;
  options.prefill_chunk = 4;
  Engine engine(model, options);
  const int64_t vocab = engine.config().vocab_size;
  auto runner = std::make_shared<Outcome>(), long_one = std::make_shared<Outcome>(), gone = std::make_shared<Outcome>();
  auto request_runner = make_request(random_prompt(2, vocab, 30), 12, runner);
  auto request_long = make_request(random_prompt(40, vocab, 31), 2, long_one);  // 10 chunks
  auto request_gone = make_request(random_prompt(6, vocab, 32), 5, gone);       // its first chunk never fits
  int64_t chunks_when_gone = -1;
  auto finish_gone = request_gone->on_finish;
  request_gone->on_finish = [&, finish_gone](FinishReason reason, const RequestStats& stats) {
    chunks_when_gone = engine.prefill_chunks();
    finish_gone(reason, stats);
  };
  auto record = request_runner->on_token;
  request_runner->on_token = [&, record](const TokenEvent& e) {
    if (runner->tokens.empty()) {
      EXPECT_EQ(engine.submit(request_long), Engine::Admission::kAccepted);
      EXPECT_EQ(engine.submit(request_gone), Engine::Admission::kAccepted);
    }
    if (runner->tokens.size() == 3) request_gone->cancelled = true;  // the long prompt has run ~3 chunks
    return record(e);
  };
  ASSERT_EQ(engine.submit(request_runner), Engine::Admission::kAccepted);
  wait_for(*gone);
  wait_for(*long_one);
  wait_for(*runner);
  EXPECT_EQ(gone->reason, FinishReason::kCancelled);
  EXPECT_TRUE(gone->tokens.empty());
  EXPECT_GT(chunks_when_gone, 1);
  EXPECT_LE(chunks_when_gone, 1 + 5) << "dropped within an iteration of its cancellation, the long prompt still running";
  EXPECT_EQ(long_one->tokens, alone(model, request_long->prompt, 2, 0.0, 0, 0, 4).tokens);
  EXPECT_EQ(runner->tokens, alone(model, request_runner->prompt, 12, 0.0, 0, 0, 4).tokens);
}

// With a prefix cache, a prompt that starts with an earlier prompt's full chunks copies them: the
// same tokens and prompt scores as computing them, the reused tokens counted per request.
TEST(Engine, APromptReusesAnEarlierPromptsChunks) {
  DeepSeekV3 model = float_model(41);
  EngineOptions options;
  options.prefill_chunk = 4;
  options.prefix_cache_bytes = 1 << 20;
  Engine engine(model, options);
  const int64_t vocab = engine.config().vocab_size;
  const auto first_prompt = random_prompt(14, vocab, 50);
  auto second_prompt = first_prompt;  // the same 9 first tokens: chunks [0, 4) and [4, 8) reused
  for (size_t i = 9; i < second_prompt.size(); ++i) second_prompt[i] = (second_prompt[i] + 3) % vocab;
  std::vector<TokenEvent> scores_whole, scores_reused, scores_again;
  for (auto* prompt_and_scores : {&scores_whole, &scores_reused, &scores_again}) {
    // The first prompt, another sharing its first chunks, then the first again (all of it copied).
    const auto& prompt = prompt_and_scores == &scores_reused ? second_prompt : first_prompt;
    auto outcome = std::make_shared<Outcome>();
    auto r = make_request(prompt, 5, outcome);
    r->prompt_logprobs = 1;
    r->on_prompt = [prompt_and_scores](const std::vector<TokenEvent>& events) { *prompt_and_scores = events; };
    ASSERT_EQ(engine.submit(r), Engine::Admission::kAccepted);
    wait_for(*outcome);
    EXPECT_EQ(outcome->tokens, alone(model, prompt, 5, 0.0, 0, 0, 4).tokens);
    EXPECT_EQ(outcome->stats.cached_prompt_tokens,
              prompt_and_scores == &scores_whole ? 0 : prompt_and_scores == &scores_reused ? 8 : 14);
  }
  ASSERT_EQ(scores_again.size(), scores_whole.size());
  for (size_t i = 0; i < scores_whole.size(); ++i) {
    EXPECT_EQ(scores_again[i].token, scores_whole[i].token);
    EXPECT_EQ(scores_again[i].logprob, scores_whole[i].logprob) << "position " << i;
    EXPECT_EQ(scores_again[i].top, scores_whole[i].top) << "position " << i;
  }
  EXPECT_GT(engine.prefix_cache_bytes(), 0);
  // The scores of the shared positions are the same bits, copied or computed.
  ASSERT_EQ(scores_reused.size(), second_prompt.size() - 1);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(scores_reused[i].token, scores_whole[i].token);
    EXPECT_EQ(scores_reused[i].logprob, scores_whole[i].logprob) << "position " << i;
  }
  // Without the cache nothing is reused.
  EngineOptions without = options;
  without.prefix_cache_bytes = 0;
  Engine plain(model, without);
  auto outcome = std::make_shared<Outcome>();
  ASSERT_EQ(plain.submit(make_request(first_prompt, 2, outcome)), Engine::Admission::kAccepted);
  wait_for(*outcome);
  auto again = std::make_shared<Outcome>();
  ASSERT_EQ(plain.submit(make_request(first_prompt, 2, again)), Engine::Admission::kAccepted);
  wait_for(*again);
  EXPECT_EQ(again->stats.cached_prompt_tokens, 0);
  EXPECT_EQ(plain.prefix_cache_bytes(), 0);
}

// The same prompt several times at once (the n choices of one request): one computes it, the
// others copy all of it, one call each, and every greedy output is the one of decoding it alone.
// (That a copy counts nothing against an iteration's prefill budget is PromptPrefill's
// next_computed_tokens, tested in tests/inference/prefix_cache_test.cpp.)
TEST(Engine, TheSamePromptAtOnceIsComputedOnce) {
  DeepSeekV3 model = float_model(43);
  EngineOptions options;
  options.prefill_chunk = 8;
  options.prefix_cache_bytes = 1 << 20;
  const auto prompt = random_prompt(13, model->config().vocab_size, 52);
  const std::vector<int64_t> expected = alone(model, prompt, 6, 0.0, 0, 0, 8).tokens;
  Engine engine(model, options);
  std::vector<std::shared_ptr<Outcome>> outcomes;
  for (int i = 0; i < 4; ++i) {
    outcomes.push_back(std::make_shared<Outcome>());
    ASSERT_EQ(engine.submit(make_request(prompt, 6, outcomes.back())), Engine::Admission::kAccepted);
  }
  int64_t cached = 0;
  for (const auto& outcome : outcomes) {
    wait_for(*outcome);
    EXPECT_EQ(outcome->tokens, expected);
    cached += outcome->stats.cached_prompt_tokens;
  }
  EXPECT_EQ(cached, 3 * 13);  // whichever the engine admitted first computed it
  EXPECT_EQ(engine.prefill_chunks(), 1 + 1 + 3);  // the first's two chunks, one call each for the others
}

// Penalties and logit bias adjust each step's logits by the request's own history: such a request
// decodes plainly where it would draft, and gives what the generator gives with the same options.
TEST(Engine, PenalisedRequestsDecodePlainlyAsTheGeneratorDoes) {
  DeepSeekV3 model = float_model(38);
  EngineOptions options;
  options.draft_tokens = 2;
  Engine engine(model, options);
  const auto prompt = random_prompt(6, engine.config().vocab_size, 8);
  auto outcome = std::make_shared<Outcome>();
  auto r = make_request(prompt, 10, outcome);
  r->sampling.frequency_penalty = 1.5;
  r->sampling.presence_penalty = 0.5;
  r->sampling.logit_bias = {{prompt[0], 3.0}};
  ASSERT_EQ(engine.submit(r), Engine::Admission::kAccepted);
  wait_for(*outcome);
  EXPECT_FALSE(outcome->stats.speculative);
  inference::GenerationOptions generation;
  generation.max_new_tokens = 10;
  generation.sampling = r->sampling;
  const auto expected = inference::Generator(model).generate(prompt, generation).tokens;
  EXPECT_EQ(outcome->tokens, expected);
  EXPECT_NE(expected, alone(model, prompt, 10).tokens) << "the adjustments changed nothing: a weak test";
}

TEST(Engine, DraftsOnlyForARequestThatStartsAlone) {
  ModelConfig config = testing::small_vocab_config(24);
  DeepSeekV3 model = testing::agreeable_model(config, 36);
  model->to(torch::kFloat);
  // A's 14-token prompt whole, and in chunks of 4 (the speculative decoder's prefill as plain's).
  for (int64_t chunk : {inference::kDefaultPrefillChunk, int64_t{4}}) {
    SCOPED_TRACE("prefill chunk " + std::to_string(chunk));
    EngineOptions options;
    options.draft_tokens = 2;
    options.prefill_chunk = chunk;
    options.prefix_cache_bytes = 1 << 20;
    Engine engine(model, options);
    const auto prompt_a = random_prompt(14, config.vocab_size, 6), prompt_b = random_prompt(3, config.vocab_size, 7);
    auto first = std::make_shared<Outcome>(), second = std::make_shared<Outcome>();
    auto request_a = make_request(prompt_a, 24, first);
    auto request_b = make_request(prompt_b, 12, second);
    auto record = request_a->on_token;
    request_a->on_token = [&, record](const TokenEvent& e) {
      if (first->tokens.size() == 1) engine.submit(request_b);
      return record(e);
    };
    engine.submit(request_a);
    wait_for(*first);
    wait_for(*second);
    EXPECT_TRUE(first->stats.speculative);
    EXPECT_FALSE(second->stats.speculative);  // it joined a running request
    ASSERT_EQ(first->stats.drafted_per_depth.size(), 2u);
    EXPECT_GT(first->stats.drafted_per_depth[0], 0);
    EXPECT_GT(first->stats.accepted_per_depth[0], 0);
    // Greedy output is plain decoding's either way.
    EXPECT_EQ(first->tokens, alone(model, prompt_a, 24, 0.0, 0, 0, chunk).tokens);
    EXPECT_EQ(second->tokens, alone(model, prompt_b, 12, 0.0, 0, 0, chunk).tokens);
    // A again, alone: it drafts from main-model hidden states the prefix cache copied in, all of
    // its prompt (the last chunk with its logits: the same prompt before).
    auto again = std::make_shared<Outcome>();
    engine.submit(make_request(prompt_a, 24, again));
    wait_for(*again);
    EXPECT_TRUE(again->stats.speculative);
    EXPECT_EQ(again->stats.cached_prompt_tokens, 14);
    EXPECT_EQ(again->tokens, first->tokens);
    EXPECT_GT(again->stats.accepted_per_depth.at(0), 0);
  }
}

// --draft auto: each step drafts what the policy chooses (every count is tried first, so both
// depths draft), and the greedy output is still plain decoding's, for requests one after another
// that share the engine's learnt step times.
TEST(Engine, AdaptiveDraftingKeepsGreedyOutputAndCountsEachDepth) {
  ModelConfig config = testing::small_vocab_config(24);
  DeepSeekV3 model = testing::agreeable_model(config, 36);
  model->to(torch::kFloat);
  EngineOptions options;
  options.draft_tokens = 2;
  options.adaptive_draft = true;
  Engine engine(model, options);
  for (uint64_t seed : {11u, 12u, 13u}) {
    const auto prompt = random_prompt(5, config.vocab_size, seed);
    auto outcome = std::make_shared<Outcome>();
    engine.submit(make_request(prompt, 40, outcome));
    wait_for(*outcome);
    EXPECT_TRUE(outcome->stats.speculative);
    ASSERT_EQ(outcome->stats.drafted_per_depth.size(), 2u);
    if (seed == 11u) {
      EXPECT_GT(outcome->stats.drafted_per_depth[0], 0);
      EXPECT_GT(outcome->stats.drafted_per_depth[1], 0);
    }
    EXPECT_LE(outcome->stats.accepted_per_depth[0], outcome->stats.drafted_per_depth[0]);
    EXPECT_EQ(outcome->tokens, alone(model, prompt, 40).tokens) << "seed " << seed;
  }
  EngineOptions without_drafts;
  without_drafts.adaptive_draft = true;
  EXPECT_THROW(Engine(model, without_drafts), Error);
}

// --draft-tree: a request alone drafts a tree each step, one that joins it decodes in the batch
// (and the first takes plain steps beside it, its MTP caches catching up after a tree step); both
// greedy outputs are plain decoding's.
TEST(Engine, TreeDraftsKeepGreedyOutputBesideABatch) {
  ModelConfig config = testing::small_vocab_config(24);
  DeepSeekV3 model = testing::agreeable_model(config, 36);
  model->to(torch::kFloat);
  EngineOptions options;
  options.draft_tree = {2, 2};
  options.draft_tokens = 2;
  Engine engine(model, options);
  const auto prompt_a = random_prompt(6, config.vocab_size, 16), prompt_b = random_prompt(4, config.vocab_size, 17);
  auto first = std::make_shared<Outcome>(), second = std::make_shared<Outcome>();
  auto request_a = make_request(prompt_a, 40, first);
  auto request_b = make_request(prompt_b, 8, second);
  auto record = request_a->on_token;
  request_a->on_token = [&, record](const TokenEvent& e) {
    if (first->tokens.size() == 12) engine.submit(request_b);
    return record(e);
  };
  engine.submit(request_a);
  wait_for(*first);
  wait_for(*second);
  EXPECT_TRUE(first->stats.speculative);
  EXPECT_FALSE(second->stats.speculative);
  ASSERT_EQ(first->stats.drafted_per_depth.size(), 2u);
  EXPECT_GT(first->stats.accepted_per_depth[0], 0);
  EXPECT_GT(first->stats.accepted_per_depth[1], 0);
  EXPECT_EQ(first->tokens, alone(model, prompt_a, 40).tokens);
  EXPECT_EQ(second->tokens, alone(model, prompt_b, 8).tokens);

  EngineOptions mismatched = options;
  mismatched.draft_tokens = 1;  // the tree has two levels
  EXPECT_THROW(Engine(model, mismatched), Error);
  mismatched.draft_tokens = 2;
  mismatched.adaptive_draft = true;
  EXPECT_THROW(Engine(model, mismatched), Error);
}

TEST(Engine, StoppingRefusesNewRequestsAndFinishesTheRunningOnes) {
  DeepSeekV3 model = float_model(37);
  Engine engine(model, EngineOptions{});
  const auto prompt = random_prompt(4, engine.config().vocab_size, 8);
  auto outcome = std::make_shared<Outcome>();
  engine.submit(make_request(prompt, 20, outcome));
  engine.stop_accepting();
  auto late = std::make_shared<Outcome>();
  EXPECT_EQ(engine.submit(make_request(prompt, 3, late)), Engine::Admission::kStopping);
  EXPECT_TRUE(engine.wait_idle(std::chrono::seconds(30)));
  wait_for(*outcome);
  EXPECT_EQ(outcome->reason, FinishReason::kLength);
  EXPECT_EQ(outcome->tokens.size(), 20u);
}

}  // namespace
}  // namespace nextn::server

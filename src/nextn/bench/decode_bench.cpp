#include "nextn/bench/decode_bench.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "nextn/bench/median.h"
#include "nextn/inference/draft_tree.h"
#include "nextn/inference/generator.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/inference/speculative_decoder.h"
#include "nextn/util/op_profiler.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

using inference::GenerationOptions;
using inference::GenerationResult;

double per_step_ms(double seconds, int64_t steps) { return steps > 0 ? 1e3 * seconds / steps : 0.0; }

struct Samples {
  std::vector<double> tokens_per_second, prefill, step_ms, draft_ms, verify_ms;
  inference::DecodeStats totals;  // acceptance counts summed over repeats
  std::vector<int64_t> first_output;
  bool same_output_as_plain = true;
};

// "V=2048 bf16" for a draft head of 2048 tokens in bfloat16; "" for the model's own.
std::string head_label(const inference::DraftHeadOptions& head) {
  std::string label;
  if (!head.token_ids.empty()) label += " V=" + std::to_string(head.token_ids.size());
  if (head.dtype != inference::DraftHeadDtype::kModel) label += " " + inference::to_string(head.dtype);
  return label;
}

std::string fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
  return buffer;
}

}  // namespace

std::vector<inference::DraftHeadOptions> DecodeBenchOptions::draft_heads() const {
  std::vector<inference::DraftHeadOptions> heads{{}};
  if (!draft_vocabulary.empty()) heads.push_back({draft_vocabulary, inference::DraftHeadDtype::kModel});
  if (bf16_draft_head) {
    heads.push_back({{}, inference::DraftHeadDtype::kBFloat16});
    if (!draft_vocabulary.empty()) heads.push_back({draft_vocabulary, inference::DraftHeadDtype::kBFloat16});
  }
  return heads;
}

std::vector<DecodeBenchResult> benchmark_decoding(DeepSeekV3 model, const std::vector<int64_t>& prompt,
                                                  const DecodeBenchOptions& options) {
  NEXTN_CHECK(options.new_tokens >= 2, "bench decode: --new-tokens must be >= 2, got ", options.new_tokens);
  NEXTN_CHECK(options.repeats >= 1, "bench decode: --repeats must be >= 1, got ", options.repeats);
  NEXTN_CHECK(options.max_draft >= 0, "bench decode: --max-draft must be >= 0, got ", options.max_draft);
  const int64_t depth = model->config().mtp_depth();
  struct Variant {
    int64_t drafts = 0;
    inference::DraftHeadOptions head;
    bool adaptive = false;
    std::vector<int64_t> tree;
  };
  std::vector<Variant> variants(1);  // plain decoding first
  auto add = [&](int64_t drafts, const inference::DraftHeadOptions& head, bool adaptive, const std::vector<int64_t>& tree) {
    Variant v;
    v.drafts = drafts;
    v.head = head;
    v.adaptive = adaptive;
    v.tree = tree;
    variants.push_back(std::move(v));
  };
  for (const auto& head : options.draft_heads()) {
    for (int64_t n = 1; n <= options.max_draft; ++n) {
      if (depth > 0 && (n <= depth || options.reuse_last_module)) add(n, head, false, {});
    }
  }
  const int64_t auto_max = options.reuse_last_module ? options.max_draft : std::min(options.max_draft, depth);
  if (options.adaptive && depth > 0 && auto_max >= 1) add(auto_max, inference::DraftHeadOptions(), true, {});
  for (const auto& tree : options.trees) {
    const auto levels = static_cast<int64_t>(tree.size());
    NEXTN_CHECK(depth > 0 && (levels <= depth || options.reuse_last_module), "bench decode: a draft tree of ", levels,
                " levels needs as many MTP modules (the model has ", depth, ")");
    add(levels, inference::DraftHeadOptions(), false, tree);
  }

  inference::Generator generator(model);
  GenerationOptions base;
  base.max_new_tokens = options.new_tokens;
  base.sampling.temperature = options.temperature;
  base.sampling.seed = options.seed;
  base.reuse_last_mtp_module = options.reuse_last_module;

  std::vector<Samples> samples(variants.size());
  // One untimed plain run warms the allocator's pages and the BLAS threads.
  generator.generate(prompt, base);
  for (int64_t r = 0; r < options.repeats; ++r) {
    for (size_t v = 0; v < variants.size(); ++v) {
      GenerationOptions run = base;
      run.draft_tokens = variants[v].drafts;
      run.draft_head = variants[v].head;
      run.adaptive_draft = variants[v].adaptive;
      run.draft_tree = variants[v].tree;
      GenerationResult result = generator.generate(prompt, run);
      NEXTN_CHECK(static_cast<int64_t>(result.tokens.size()) == options.new_tokens, "bench decode: generated ",
                  result.tokens.size(), " tokens, expected ", options.new_tokens, " (context too short?)");
      const auto& s = result.stats;
      Samples& out = samples[v];
      out.tokens_per_second.push_back(s.decode_tokens_per_second());
      out.prefill.push_back(s.prefill_seconds);
      out.step_ms.push_back(per_step_ms(s.decode_seconds, s.steps));
      out.draft_ms.push_back(per_step_ms(s.draft_seconds, s.steps));
      out.verify_ms.push_back(per_step_ms(s.verify_seconds, s.steps));
      out.totals.accumulate(s);
      if (r == 0) out.first_output = result.tokens;
      if (base.sampling.greedy() && result.tokens != samples[0].first_output) out.same_output_as_plain = false;
    }
  }

  std::vector<DecodeBenchResult> results;
  for (size_t v = 0; v < variants.size(); ++v) {
    const Samples& s = samples[v];
    const int64_t drafts = variants[v].drafts;
    DecodeBenchResult r;
    r.draft_tokens = drafts;
    r.draft_vocab = static_cast<int64_t>(variants[v].head.token_ids.size());
    if (r.draft_vocab > 0) r.draft_vocab_source = options.draft_vocabulary_source;
    r.draft_head_dtype = inference::to_string(variants[v].head.dtype);
    r.variant = drafts == 0 ? "plain" : "mtp N=" + std::to_string(drafts) + head_label(variants[v].head);
    if (variants[v].adaptive) {
      r.variant = "mtp auto N<=" + std::to_string(drafts);
      r.steps_by_draft_count = s.totals.steps_by_draft_count;
    }
    if (!variants[v].tree.empty()) {
      r.variant = "mtp tree " + inference::draft_tree_label(variants[v].tree);
      r.draft_tree = variants[v].tree;
      r.tree_nodes = inference::draft_tree_nodes(variants[v].tree);
    }
    r.decode_tokens_per_second = median(s.tokens_per_second);
    r.prefill_seconds = median(s.prefill);
    r.step_ms = median(s.step_ms);
    r.draft_ms = median(s.draft_ms);
    r.verify_ms = median(s.verify_ms);
    r.mean_tokens_per_step = drafts == 0 ? 1.0 : s.totals.mean_tokens_per_step();
    for (int64_t k = 1; k <= drafts; ++k) r.acceptance_per_depth.push_back(s.totals.acceptance_rate(k));
    // Speedup as the median of per-repeat ratios: each repeat ran plain and this variant back to
    // back, so a slow phase of a shared machine that hits one repeat hits both sides of its ratio.
    std::vector<double> ratios;
    for (size_t i = 0; i < s.tokens_per_second.size(); ++i) {
      ratios.push_back(s.tokens_per_second[i] / samples[0].tokens_per_second[i]);
    }
    r.speedup = median(ratios);
    r.efficiency = r.speedup / r.mean_tokens_per_step;
    r.same_output_as_plain = s.same_output_as_plain;
    results.push_back(r);
  }
  return results;
}

std::string format_decode_bench(const std::vector<DecodeBenchResult>& results) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof(line), "%-21s %10s %9s %9s %9s %11s %8s %10s  %s\n", "variant", "tokens/s", "step ms",
                "draft ms", "verify ms", "tokens/step", "speedup", "efficiency", "acceptance per depth");
  out << line;
  for (const auto& r : results) {
    std::string acceptance;
    for (size_t k = 0; k < r.acceptance_per_depth.size(); ++k) {
      acceptance += (k ? " " : "") + fixed(100.0 * r.acceptance_per_depth[k], 1) + "%";
    }
    if (!r.steps_by_draft_count.empty()) {
      acceptance += "  steps drafting";
      for (size_t n = 0; n < r.steps_by_draft_count.size(); ++n) {
        acceptance += " " + std::to_string(n) + ":" + std::to_string(r.steps_by_draft_count[n]);
      }
    }
    if (!r.same_output_as_plain) acceptance += "  OUTPUT DIFFERS FROM PLAIN";
    std::snprintf(line, sizeof(line), "%-21s %10.1f %9.3f %9.3f %9.3f %11.3f %7.2fx %10.3f  %s\n", r.variant.c_str(),
                  r.decode_tokens_per_second, r.step_ms, r.draft_ms, r.verify_ms, r.mean_tokens_per_step, r.speedup,
                  r.efficiency, acceptance.c_str());
    out << line;
  }
  return out.str();
}

std::string profile_decoding(DeepSeekV3 model, const std::vector<int64_t>& prompt, const DecodeBenchOptions& options,
                             int64_t draft_tokens, const inference::DraftHeadOptions& draft_head, int top) {
  inference::SamplingOptions sampling;
  sampling.temperature = options.temperature;
  sampling.seed = options.seed;
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + options.new_tokens;
  std::unique_ptr<inference::TokenDecoder> decoder;
  if (draft_tokens == 0) {
    decoder = std::make_unique<inference::PlainDecoder>(model, sampling, capacity);
  } else {
    inference::SpeculativeOptions speculative;
    speculative.draft_tokens = draft_tokens;
    speculative.reuse_last_module = options.reuse_last_module;
    speculative.draft_head = draft_head;
    decoder = std::make_unique<inference::SpeculativeDecoder>(model, speculative, sampling, capacity);
  }
  decoder->start(prompt);
  const auto started = std::chrono::steady_clock::now();
  int64_t steps = 0, produced = 1;
  std::string report;
  {
    OpProfiler profiler;
    while (produced < options.new_tokens && decoder->room() > 0) {
      produced += static_cast<int64_t>(decoder->step(options.new_tokens - produced).size());
      ++steps;
    }
    report = profiler.report(top, static_cast<double>(steps), "step");
  }
  const double seconds = inference::seconds_since(started);
  std::ostringstream out;
  out << (draft_tokens == 0 ? std::string("plain") : "mtp N=" + std::to_string(draft_tokens))
      << (draft_tokens > 0 ? head_label(draft_head) : std::string()) << ": " << steps
      << " steps, " << fixed(1e3 * seconds / steps, 3) << " ms per step with the profiler on, "
      << fixed(static_cast<double>(produced - 1) / steps, 3) << " tokens per step\n"
      << report;
  return out.str();
}

std::string decode_bench_json(const std::vector<DecodeBenchResult>& results) {
  std::ostringstream out;
  for (const auto& r : results) {
    out << "{\"variant\":\"" << r.variant << "\",\"draft_tokens\":" << r.draft_tokens
        << ",\"draft_vocab\":" << r.draft_vocab << ",\"draft_vocab_source\":" << nlohmann::json(r.draft_vocab_source).dump()
        << ",\"draft_head_dtype\":\"" << r.draft_head_dtype << "\""
        << ",\"draft_tree\":\"" << inference::draft_tree_label(r.draft_tree) << "\",\"tree_nodes\":" << r.tree_nodes
        << ",\"tokens_per_second\":" << fixed(r.decode_tokens_per_second, 3) << ",\"step_ms\":" << fixed(r.step_ms, 4)
        << ",\"draft_ms\":" << fixed(r.draft_ms, 4) << ",\"verify_ms\":" << fixed(r.verify_ms, 4)
        << ",\"prefill_seconds\":" << fixed(r.prefill_seconds, 5)
        << ",\"mean_tokens_per_step\":" << fixed(r.mean_tokens_per_step, 4) << ",\"acceptance_per_depth\":[";
    for (size_t k = 0; k < r.acceptance_per_depth.size(); ++k) {
      out << (k ? "," : "") << fixed(r.acceptance_per_depth[k], 4);
    }
    out << "],\"steps_by_draft_count\":" << nlohmann::json(r.steps_by_draft_count).dump();
    out << ",\"speedup\":" << fixed(r.speedup, 4) << ",\"efficiency\":" << fixed(r.efficiency, 4)
        << ",\"same_output_as_plain\":" << (r.same_output_as_plain ? "true" : "false") << "}\n";
  }
  return out.str();
}

}  // namespace nextn

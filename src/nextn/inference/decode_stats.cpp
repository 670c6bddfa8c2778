#include "nextn/inference/decode_stats.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace nextn::inference {
namespace {

double ratio(double numerator, double denominator) { return denominator > 0 ? numerator / denominator : 0.0; }

int64_t at(const std::vector<int64_t>& values, int64_t depth) {
  return depth >= 1 && depth <= static_cast<int64_t>(values.size()) ? values[depth - 1] : 0;
}

std::string fixed(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
  return buffer;
}

void add_counts(std::vector<int64_t>& sum, const std::vector<int64_t>& more) {
  if (sum.size() < more.size()) sum.resize(more.size(), 0);
  for (size_t i = 0; i < more.size(); ++i) sum[i] += more[i];
}

}  // namespace

void DecodeStats::accumulate(const DecodeStats& other) {
  prompt_tokens += other.prompt_tokens;
  cached_prompt_tokens += other.cached_prompt_tokens;
  generated_tokens += other.generated_tokens;
  prefill_seconds += other.prefill_seconds;
  decode_seconds += other.decode_seconds;
  steps += other.steps;
  draft_tokens = std::max(draft_tokens, other.draft_tokens);
  draft_seconds += other.draft_seconds;
  verify_seconds += other.verify_seconds;
  step_tokens += other.step_tokens;
  add_counts(drafted_per_depth, other.drafted_per_depth);
  add_counts(reached_per_depth, other.reached_per_depth);
  add_counts(accepted_per_depth, other.accepted_per_depth);
  add_counts(steps_by_draft_count, other.steps_by_draft_count);
}

double DecodeStats::acceptance_rate(int64_t depth) const {
  return ratio(at(accepted_per_depth, depth), at(reached_per_depth, depth));
}

double DecodeStats::overall_acceptance_rate(int64_t depth) const {
  return ratio(at(accepted_per_depth, depth), at(drafted_per_depth, depth));
}

double DecodeStats::mean_tokens_per_step() const { return ratio(step_tokens, steps); }

double DecodeStats::tokens_per_second() const { return ratio(generated_tokens, prefill_seconds + decode_seconds); }

double DecodeStats::decode_tokens_per_second() const {
  return ratio(generated_tokens > 0 ? generated_tokens - 1 : 0, decode_seconds);
}

std::string DecodeStats::summary() const {
  std::ostringstream out;
  out << "prompt " << prompt_tokens << " tokens, generated " << generated_tokens << " tokens in "
      << fixed(prefill_seconds + decode_seconds, 3) << " s (prefill " << fixed(prefill_seconds, 3) << " s, "
      << steps << " steps " << fixed(decode_seconds, 3) << " s): " << fixed(tokens_per_second(), 1)
      << " tokens/s, decode " << fixed(decode_tokens_per_second(), 1) << " tokens/s\n";
  if (draft_tokens > 0) {
    out << "speculative, at most " << draft_tokens << " drafts per step: " << fixed(mean_tokens_per_step(), 3)
        << " tokens per verify step; draft " << fixed(draft_seconds, 3) << " s, verify " << fixed(verify_seconds, 3)
        << " s\n";
    for (size_t k = 1; k <= drafted_per_depth.size(); ++k) {
      out << "  depth " << k << ": accepted " << at(accepted_per_depth, k) << " / reached " << at(reached_per_depth, k)
          << " (" << fixed(100.0 * acceptance_rate(k), 1) << "%), " << at(drafted_per_depth, k) << " drafted ("
          << fixed(100.0 * overall_acceptance_rate(k), 1) << "% kept)\n";
    }
    out << "  steps by drafts made:";
    for (size_t n = 0; n < steps_by_draft_count.size(); ++n) out << " " << n << ": " << steps_by_draft_count[n];
    out << "\n";
  }
  return out.str();
}

}  // namespace nextn::inference

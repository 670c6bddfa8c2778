#include "nextn/data/tokenizer_training.h"

#include <chrono>

#include "nextn/data/parallel_batches.h"
#include "nextn/data/split.h"
#include "nextn/util/error.h"

namespace nextn::data {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

tokenizer::Tokenizer train_tokenizer(const CorpusOptions& corpus, const TokenizerTrainingOptions& options,
                                     TokenizerTrainingReport& report,
                                     const std::function<void(const std::string&)>& log) {
  auto start = std::chrono::steady_clock::now();
  CorpusReader reader(corpus);
  tokenizer::PreTokenizer pre_tokenizer(options.bpe.pre_tokenizer);
  tokenizer::PieceCounts counts;
  std::function<tokenizer::PieceCounts(DocumentBatch&)> count_batch = [&](DocumentBatch& batch) {
    tokenizer::PieceCounts local;
    for (std::size_t i = 0; i < batch.documents.size(); ++i) {
      int64_t index = batch.first_index + int64_t(i);
      if (options.exclude_validation_ppm > 0 &&
          split_of_document(index, options.exclude_validation_ppm) == Split::kValidation) {
        continue;
      }
      local.add_text(pre_tokenizer, batch.documents[i].text);
    }
    return local;
  };
  std::function<void(tokenizer::PieceCounts&)> add_counts = [&](tokenizer::PieceCounts& local) {
    counts.merge_from(std::move(local));
  };
  process_in_order(reader, options.threads, std::size_t(1) << 20, count_batch, add_counts);
  report.corpus = reader.stats();
  NEXTN_CHECK(report.corpus.documents > 0, "no usable documents in the input (", report.corpus.describe(), ")");
  report.distinct_pieces = int64_t(counts.counts().size());
  report.total_pieces = counts.total_pieces();
  report.count_seconds = seconds_since(start);
  if (log) {
    log(cat("counted ", report.total_pieces, " pieces (", report.distinct_pieces, " distinct) in ",
            report.corpus.documents, " documents in ", report.count_seconds, " s"));
  }

  auto merge_start = std::chrono::steady_clock::now();
  tokenizer::TrainProgress progress;
  if (log) {
    progress = [&](int32_t done, int32_t wanted) {
      if (done % 2048 == 0 || done == wanted) log(cat("merges: ", done, " / ", wanted));
    };
  }
  tokenizer::TokenizerSpec spec = tokenizer::train_bpe(counts, options.bpe, progress);
  report.merge_seconds = seconds_since(merge_start);
  return tokenizer::Tokenizer(std::move(spec));
}

}  // namespace nextn::data

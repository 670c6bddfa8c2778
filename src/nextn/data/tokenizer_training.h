// Training a tokenizer on a corpus: pieces are counted on worker threads, batch by batch, then
// BPE merges are learned from the counts (see tokenizer/bpe_trainer.h).
#pragma once

#include <functional>
#include <string>

#include "nextn/data/corpus_reader.h"
#include "nextn/tokenizer/bpe_trainer.h"
#include "nextn/tokenizer/tokenizer.h"

namespace nextn::data {

struct TokenizerTrainingOptions {
  tokenizer::BpeTrainerOptions bpe;
  int threads = 1;
  // Documents whose split is validation are left out when > 0 (see split.h), so that a dataset's
  // validation text is never seen by its tokenizer either.
  int64_t exclude_validation_ppm = 0;
};

struct TokenizerTrainingReport {
  CorpusStats corpus;
  int64_t distinct_pieces = 0;
  int64_t total_pieces = 0;
  double count_seconds = 0;
  double merge_seconds = 0;
};

tokenizer::Tokenizer train_tokenizer(const CorpusOptions& corpus, const TokenizerTrainingOptions& options,
                                     TokenizerTrainingReport& report,
                                     const std::function<void(const std::string&)>& log = {});

}  // namespace nextn::data

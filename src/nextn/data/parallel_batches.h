// The streaming pipeline shared by tokenizer training and dataset preparation: documents are
// read in batches, each batch is processed on a worker thread, and results are consumed in corpus
// order. At most `2 * threads` batches are in flight, so memory stays bounded no matter how large
// the corpus is, and results never depend on thread timing.
#pragma once

#include <deque>
#include <functional>
#include <future>
#include <vector>

#include "nextn/data/corpus_reader.h"

namespace nextn::data {

struct DocumentBatch {
  int64_t first_index = 0;  // corpus index of documents[0]
  std::vector<Document> documents;
};

template <typename Result>
void process_in_order(CorpusReader& reader, int threads, std::size_t batch_bytes,
                      const std::function<Result(DocumentBatch&)>& work,
                      const std::function<void(Result&)>& consume) {
  if (threads < 1) threads = 1;
  const std::size_t max_in_flight = std::size_t(threads) * 2;
  std::deque<std::future<Result>> in_flight;
  int64_t next_index = 0;
  bool more = true;
  auto finish_oldest = [&] {
    Result result = in_flight.front().get();  // rethrows a worker's error here
    in_flight.pop_front();
    consume(result);
  };
  while (more || !in_flight.empty()) {
    if (more && in_flight.size() < max_in_flight) {
      auto batch = std::make_shared<DocumentBatch>();
      batch->first_index = next_index;
      std::size_t bytes = 0;
      Document document;
      while (bytes < batch_bytes && (more = reader.next(document))) {
        bytes += document.text.size();
        batch->documents.push_back(std::move(document));
      }
      next_index += int64_t(batch->documents.size());
      if (!batch->documents.empty()) {
        in_flight.push_back(std::async(std::launch::async, [batch, &work] { return work(*batch); }));
      }
      continue;
    }
    finish_oldest();
  }
}

}  // namespace nextn::data

// The streaming pipeline shared by tokenizer training and dataset preparation: documents are
// read in batches, each batch is processed on one of `threads` long-lived worker threads (so
// per-thread caches such as the tokenizer's piece cache stay warm), and results are consumed in
// corpus order. At most `2 * threads` batches are in flight, so memory stays bounded no matter
// how large the corpus is, and results never depend on thread timing.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "nextn/data/corpus_reader.h"

namespace nextn::data {

struct DocumentBatch {
  int64_t first_index = 0;  // corpus index of documents[0]
  std::vector<Document> documents;
};

template <typename Result>
class BatchWorkers {
 public:
  BatchWorkers(int threads, const std::function<Result(DocumentBatch&)>& work) : work_(work) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { run(); });
  }
  // Stops and joins the workers, also when the caller unwinds from an error: batches not yet
  // started are dropped (their futures report a broken promise, which nobody waits for).
  ~BatchWorkers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      queue_.clear();
    }
    ready_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  std::future<Result> submit(DocumentBatch batch) {
    auto job = std::make_shared<Job>();
    job->batch = std::move(batch);
    std::future<Result> result = job->promise.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(job));
    }
    ready_.notify_one();
    return result;
  }

 private:
  struct Job {
    DocumentBatch batch;
    std::promise<Result> promise;
  };

  void run() {
    while (true) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      try {
        job->promise.set_value(work_(job->batch));
      } catch (...) {
        job->promise.set_exception(std::current_exception());  // rethrown where the result is taken
      }
    }
  }

  const std::function<Result(DocumentBatch&)>& work_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

template <typename Result>
void process_in_order(CorpusReader& reader, int threads, std::size_t batch_bytes,
                      const std::function<Result(DocumentBatch&)>& work,
                      const std::function<void(Result&)>& consume) {
  if (threads < 1) threads = 1;
  const std::size_t max_in_flight = std::size_t(threads) * 2;
  std::deque<std::future<Result>> in_flight;  // declared first: destroyed after the workers stop
  BatchWorkers<Result> workers(threads, work);
  int64_t next_index = 0;
  bool more = true;
  while (more || !in_flight.empty()) {
    if (more && in_flight.size() < max_in_flight) {
      DocumentBatch batch;
      batch.first_index = next_index;
      std::size_t bytes = 0;
      Document document;
      while (bytes < batch_bytes && (more = reader.next(document))) {
        bytes += document.text.size();
        batch.documents.push_back(std::move(document));
      }
      next_index += int64_t(batch.documents.size());
      if (!batch.documents.empty()) in_flight.push_back(workers.submit(std::move(batch)));
      continue;
    }
    Result result = in_flight.front().get();  // rethrows a worker's error here
    in_flight.pop_front();
    consume(result);
  }
}

}  // namespace nextn::data

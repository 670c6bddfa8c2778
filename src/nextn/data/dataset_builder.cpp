#include "nextn/data/dataset_builder.h"

#include <chrono>
#include <filesystem>
#include <memory>
#include <regex>

#include "nextn/data/parallel_batches.h"
#include "nextn/data/shard_writer.h"
#include "nextn/data/split.h"
#include "nextn/io/atomic_file.h"
#include "nextn/util/error.h"

namespace nextn::data {

namespace fs = std::filesystem;

namespace {

// Files a dataset directory may hold: what prepare writes, and temporaries of an interrupted run.
bool is_dataset_file(const std::string& name) {
  static const std::regex pattern(R"((manifest\.json|tokenizer\.json|(train|validation)-[0-9]+\.bin)(\.tmp\.[0-9]+)?)");
  return std::regex_match(name, pattern);
}

// Makes output_dir an empty directory, removing an old dataset when allowed. The manifest goes
// first, so that an interruption never leaves a manifest that lists removed or mixed shards.
void prepare_output_dir(const PrepareOptions& options) {
  const fs::path dir(options.output_dir);
  std::error_code error;
  if (!fs::exists(dir, error)) {
    fs::create_directories(dir, error);
    NEXTN_CHECK(!error, "cannot create '", dir.string(), "': ", error.message());
    return;
  }
  NEXTN_CHECK(fs::is_directory(dir, error), "output '", dir.string(), "' exists and is not a directory");
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  if (names.empty()) return;
  NEXTN_CHECK(options.overwrite, "output directory '", dir.string(),
              "' is not empty; pass --overwrite to replace the dataset in it");
  for (const std::string& name : names) {
    NEXTN_CHECK(is_dataset_file(name), "output directory '", dir.string(), "' holds '", name,
                "', which nextn did not write; not overwriting");
  }
  fs::remove(dir / kManifestFile, error);
  io::fsync_directory(dir.string());
  for (const std::string& name : names) fs::remove(dir / name, error);
}

std::string shard_name(Split split, std::size_t index) {
  char number[16];
  std::snprintf(number, sizeof(number), "%05zu", index);
  return to_string(split) + "-" + number + ".bin";
}

// The shards of one split, opened as documents arrive.
class SplitWriter {
 public:
  SplitWriter(const PrepareOptions& options, Split split, TokenDType dtype, int32_t vocab_size)
      : options_(options), split_(split), dtype_(dtype), vocab_size_(vocab_size) {}

  void add_document(const std::vector<int32_t>& tokens) {
    if (!current_) {
      current_ = std::make_unique<ShardWriter>(options_.output_dir, shard_name(split_, info_.shards.size()),
                                               dtype_, vocab_size_);
    }
    current_->append_document(tokens);
    info_.tokens += int64_t(tokens.size());
    ++info_.documents;
    if (current_->num_tokens() >= options_.shard_tokens) close_shard();
  }

  SplitInfo finish() {
    close_shard();
    return info_;
  }

 private:
  void close_shard() {
    if (!current_) return;
    info_.shards.push_back(current_->finish());
    current_.reset();
  }

  const PrepareOptions& options_;
  Split split_;
  TokenDType dtype_;
  int32_t vocab_size_;
  std::unique_ptr<ShardWriter> current_;
  SplitInfo info_;
};

struct EncodedBatch {
  int64_t first_index = 0;
  std::vector<std::vector<int32_t>> documents;
};

}  // namespace

PrepareReport prepare_dataset(const tokenizer::Tokenizer& tokenizer, const PrepareOptions& options,
                              const std::function<void(const std::string&)>& log) {
  auto start = std::chrono::steady_clock::now();
  NEXTN_CHECK(!options.output_dir.empty(), "no output directory given");
  NEXTN_CHECK(options.shard_tokens > 0, "shard size must be positive");
  const int64_t validation_ppm = fraction_to_ppm(options.validation_fraction);
  const int32_t eos = tokenizer.eos_id();
  const int32_t vocab_size = tokenizer.vocab_size();
  const TokenDType dtype = token_dtype_for_vocab(vocab_size);

  CorpusReader reader(options.corpus);  // lists the files first: a bad input fails before any writing
  prepare_output_dir(options);

  SplitWriter train(options, Split::kTrain, dtype, vocab_size);
  SplitWriter validation(options, Split::kValidation, dtype, vocab_size);
  std::function<EncodedBatch(DocumentBatch&)> encode_batch = [&](DocumentBatch& batch) {
    EncodedBatch encoded;
    encoded.first_index = batch.first_index;
    for (const Document& document : batch.documents) {
      // encode_ordinary: a document that spells a special token cannot forge an EOS.
      std::vector<int32_t> ids = tokenizer.encode_ordinary(document.text);
      ids.push_back(eos);
      encoded.documents.push_back(std::move(ids));
    }
    return encoded;
  };
  int64_t written = 0;
  std::function<void(EncodedBatch&)> write_batch = [&](EncodedBatch& batch) {
    for (std::size_t i = 0; i < batch.documents.size(); ++i) {
      int64_t index = batch.first_index + int64_t(i);
      SplitWriter& target = split_of_document(index, validation_ppm) == Split::kTrain ? train : validation;
      target.add_document(batch.documents[i]);
      batch.documents[i] = {};
    }
    written += int64_t(batch.documents.size());
    if (log) log(cat("encoded ", written, " documents"));
  };
  process_in_order(reader, options.threads, std::size_t(1) << 20, encode_batch, write_batch);

  PrepareReport report;
  report.corpus = reader.stats();
  NEXTN_CHECK(report.corpus.documents > 0, "no usable documents in the input (", report.corpus.describe(), ")");

  DatasetManifest& m = report.manifest;
  m.train = train.finish();
  m.validation = validation.finish();
  m.tokenizer_hash = tokenizer.hash();
  m.vocab_size = vocab_size;
  m.eos_id = eos;
  m.bos_id = tokenizer.find_bos_id();
  m.pad_id = tokenizer.pad_id();
  m.token_dtype = dtype;
  m.validation_fraction = options.validation_fraction;
  m.created_by = cat("nextn ", NEXTN_VERSION);
  m.corpus = report.corpus.to_json();
  m.corpus["inputs"] = options.corpus.inputs;
  m.corpus["include"] = options.corpus.include;
  m.corpus["exclude"] = options.corpus.exclude;

  tokenizer.save((fs::path(options.output_dir) / kDatasetTokenizerFile).string());
  io::write_file_atomic((fs::path(options.output_dir) / kManifestFile).string(), m.to_json().dump(2) + "\n");
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace nextn::data

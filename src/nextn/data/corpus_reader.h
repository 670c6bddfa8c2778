// Reading a text corpus as a stream of documents: files and directories (recursive, in sorted
// path order, filtered by include/exclude globs), `.jsonl` files with one document per line (a
// JSON object with a text field), every other file one document. Binary files (a NUL byte),
// text that is not UTF-8, empty files and files over a size limit are skipped and counted, never
// fatal; a path that does not exist or cannot be read is an error.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace nextn::data {

struct CorpusOptions {
  std::vector<std::string> inputs;   // files or directories
  std::vector<std::string> include;  // globs for files found in directories; empty: all files
  std::vector<std::string> exclude;  // globs for files and directories found in directories
  std::string text_field = "text";   // the field of a .jsonl record that holds the text
  uint64_t max_document_bytes = uint64_t(256) << 20;
};

// The machine's Python standard library sources (the newest /usr/lib/python3.N that has
// os.py): inputs, include "*.py", exclude site-/dist-packages and __pycache__. An error names
// where it looked when there is none.
CorpusOptions python_stdlib_corpus();

// Whether `path` (relative to its input root) matches a glob: a glob with a '/' is matched
// against the whole relative path, one without against the file name; '*' also crosses '/'.
bool glob_matches(const std::string& glob, const std::string& relative_path);

struct CorpusStats {
  int64_t files = 0;           // files listed
  int64_t documents = 0;       // documents produced
  int64_t bytes = 0;           // their total size
  int64_t skipped_binary = 0;  // files with a NUL byte
  int64_t skipped_not_utf8 = 0;
  int64_t skipped_empty = 0;
  int64_t skipped_too_large = 0;
  int64_t skipped_records = 0;  // .jsonl lines that are not an object with a string text field

  nlohmann::json to_json() const;
  std::string describe() const;  // one line for summaries
};

struct Document {
  std::string text;
  std::string source;  // "path" or "path:line" for .jsonl records
};

class CorpusReader {
 public:
  // Lists the files (errors: an input that does not exist, no file at all).
  explicit CorpusReader(CorpusOptions options);
  ~CorpusReader();

  // The next document in corpus order; false at the end.
  bool next(Document& document);

  const std::vector<std::string>& files() const { return files_; }
  const CorpusStats& stats() const { return stats_; }

 private:
  bool next_jsonl_record(Document& document);
  // Checks a document's text; counts and returns false when it must be skipped.
  bool accept_text(const std::string& text);

  CorpusOptions options_;
  std::vector<std::string> files_;
  std::size_t next_file_ = 0;
  std::unique_ptr<std::ifstream> jsonl_;  // open while reading a .jsonl file
  std::string jsonl_path_;
  int64_t jsonl_line_ = 0;
  CorpusStats stats_;
};

// All files of the corpus in reading order, for callers that only need the list.
std::vector<std::string> list_corpus_files(const CorpusOptions& options);

}  // namespace nextn::data

#include "nextn/data/corpus_reader.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>

#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/utf8.h"
#include "nextn/util/strings.h"
#include "nextn/util/error.h"

namespace nextn::data {

namespace fs = std::filesystem;

namespace {

bool is_jsonl(const std::string& path) { return ends_with(path, ".jsonl"); }

bool matches_any(const std::vector<std::string>& globs, const std::string& relative_path) {
  return std::any_of(globs.begin(), globs.end(),
                     [&](const std::string& glob) { return glob_matches(glob, relative_path); });
}

void list_directory(const fs::path& root, const CorpusOptions& options, std::vector<std::string>& files) {
  std::error_code error;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, error);
  NEXTN_CHECK(!error, "cannot read directory '", root.string(), "': ", error.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(error)) {
    NEXTN_CHECK(!error, "cannot read directory '", root.string(), "': ", error.message());
    const fs::directory_entry& entry = *it;
    std::string relative = entry.path().lexically_relative(root).string();
    if (matches_any(options.exclude, relative)) {
      if (entry.is_directory()) it.disable_recursion_pending();
      continue;
    }
    // Symbolic links to files are followed; links to directories are not (no cycles).
    if (!entry.is_regular_file()) continue;
    if (!options.include.empty() && !matches_any(options.include, relative)) continue;
    files.push_back(entry.path().string());
  }
}

// "3.11" -> {3, 11}, for picking the newest Python.
std::vector<int> version_numbers(const std::string& version) {
  std::vector<int> numbers;
  std::size_t pos = 0;
  while (pos < version.size()) {
    std::size_t dot = version.find('.', pos);
    if (dot == std::string::npos) dot = version.size();
    numbers.push_back(std::stoi(version.substr(pos, dot - pos)));
    pos = dot + 1;
  }
  return numbers;
}

}  // namespace

bool glob_matches(const std::string& glob, const std::string& relative_path) {
  if (glob.find('/') != std::string::npos) return ::fnmatch(glob.c_str(), relative_path.c_str(), 0) == 0;
  std::string name = fs::path(relative_path).filename().string();
  return ::fnmatch(glob.c_str(), name.c_str(), 0) == 0;
}

CorpusOptions python_stdlib_corpus() {
  const std::string lib = "/usr/lib";
  std::string best_dir;
  std::vector<int> best_version;
  std::error_code error;
  std::regex python_dir(R"(python(3\.[0-9]+))");
  if (fs::is_directory(lib, error)) {
    for (const fs::directory_entry& entry : fs::directory_iterator(lib, error)) {
      std::smatch match;
      std::string name = entry.path().filename().string();
      if (!std::regex_match(name, match, python_dir)) continue;
      if (!fs::exists(entry.path() / "os.py", error)) continue;
      std::vector<int> version = version_numbers(match[1].str());
      if (best_dir.empty() || version > best_version) {
        best_dir = entry.path().string();
        best_version = version;
      }
    }
  }
  NEXTN_CHECK(!best_dir.empty(),
              "no input given and no Python standard library found (looked for /usr/lib/python3.*/os.py); "
              "pass --input");
  CorpusOptions options;
  options.inputs = {best_dir};
  options.include = {"*.py"};
  options.exclude = {"site-packages", "dist-packages", "__pycache__"};
  return options;
}

std::vector<std::string> list_corpus_files(const CorpusOptions& options) {
  NEXTN_CHECK(!options.inputs.empty(), "no input files or directories given");
  std::vector<std::string> files;
  for (const std::string& input : options.inputs) {
    std::error_code error;
    fs::file_status status = fs::status(input, error);
    NEXTN_CHECK(!error && fs::exists(status), "input '", input, "' does not exist");
    if (fs::is_directory(status)) {
      std::vector<std::string> found;
      list_directory(input, options, found);
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(input);  // named explicitly: read whatever the globs say
    }
  }
  NEXTN_CHECK(!files.empty(), "the input (", options.inputs.front(), options.inputs.size() > 1 ? ", ..." : "",
              ") has no files", options.include.empty() ? "" : " matching the include globs");
  return files;
}

nlohmann::json CorpusStats::to_json() const {
  return {{"files", files},
          {"documents", documents},
          {"bytes", bytes},
          {"skipped_binary_files", skipped_binary},
          {"skipped_not_utf8", skipped_not_utf8},
          {"skipped_empty", skipped_empty},
          {"skipped_too_large", skipped_too_large},
          {"skipped_jsonl_records", skipped_records}};
}

std::string CorpusStats::describe() const {
  return cat(files, " files, ", documents, " documents, ", bytes, " bytes; skipped: ", skipped_binary,
             " binary, ", skipped_not_utf8, " not UTF-8, ", skipped_empty, " empty, ", skipped_too_large,
             " too large, ", skipped_records, " bad .jsonl records");
}

CorpusReader::CorpusReader(CorpusOptions options) : options_(std::move(options)) {
  files_ = list_corpus_files(options_);
  stats_.files = int64_t(files_.size());
}

CorpusReader::~CorpusReader() = default;

bool CorpusReader::accept_text(const std::string& text) {
  if (text.empty()) {
    ++stats_.skipped_empty;
    return false;
  }
  if (text.size() > options_.max_document_bytes) {
    ++stats_.skipped_too_large;
    return false;
  }
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) {
    ++stats_.skipped_binary;
    return false;
  }
  if (!tokenizer::is_valid_utf8(text)) {
    ++stats_.skipped_not_utf8;
    return false;
  }
  return true;
}

bool CorpusReader::next_jsonl_record(Document& document) {
  std::string line;
  while (std::getline(*jsonl_, line)) {
    ++jsonl_line_;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    auto field = record.is_object() ? record.find(options_.text_field) : record.end();
    if (!record.is_object() || field == record.end() || !field->is_string()) {
      ++stats_.skipped_records;
      continue;
    }
    std::string text = field->get<std::string>();
    if (!accept_text(text)) continue;
    document.text = std::move(text);
    document.source = cat(jsonl_path_, ":", jsonl_line_);
    return true;
  }
  NEXTN_CHECK(!jsonl_->bad(), "cannot read '", jsonl_path_, "'");
  jsonl_.reset();
  return false;
}

bool CorpusReader::next(Document& document) {
  while (true) {
    if (jsonl_ && next_jsonl_record(document)) {
      ++stats_.documents;
      stats_.bytes += int64_t(document.text.size());
      return true;
    }
    if (next_file_ >= files_.size()) return false;
    const std::string& path = files_[next_file_++];
    if (is_jsonl(path)) {
      jsonl_ = std::make_unique<std::ifstream>(path, std::ios::binary);
      NEXTN_CHECK(jsonl_->good(), "cannot open '", path, "'");
      jsonl_path_ = path;
      jsonl_line_ = 0;
      continue;
    }
    std::error_code error;
    uint64_t size = fs::file_size(path, error);
    NEXTN_CHECK(!error, "cannot read '", path, "': ", error.message());
    if (size > options_.max_document_bytes) {
      ++stats_.skipped_too_large;
      continue;
    }
    std::string text = io::read_file(path);
    if (!accept_text(text)) continue;
    document.text = std::move(text);
    document.source = path;
    ++stats_.documents;
    stats_.bytes += int64_t(document.text.size());
    return true;
  }
}

}  // namespace nextn::data

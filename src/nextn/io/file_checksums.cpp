#include "nextn/io/file_checksums.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "nextn/io/atomic_file.h"
#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"
#include "nextn/util/sha256.h"

namespace fs = std::filesystem;

namespace nextn::io {
namespace {

constexpr const char* kFormat = "nextn-checksums";
constexpr int kVersion = 1;

struct FileHash {
  int64_t bytes = 0;
  std::string sha256;
};

FileHash hash_file(const fs::path& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  NEXTN_CHECK(file != nullptr, "cannot open '", path.string(), "' to hash it: ", errno_text());
  Sha256 hash;
  std::vector<char> buffer(1 << 20);
  FileHash result;
  for (size_t got; (got = std::fread(buffer.data(), 1, buffer.size(), file)) > 0;) {
    hash.update(buffer.data(), got);
    result.bytes += static_cast<int64_t>(got);
  }
  const bool failed = std::ferror(file) != 0;
  const std::string why = failed ? errno_text() : std::string();
  std::fclose(file);
  NEXTN_CHECK(!failed, "cannot read '", path.string(), "' to hash it: ", why);
  result.sha256 = hash.hex_digest();
  return result;
}

bool is_lower_hex(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// A listed name must be a plain file name: no path may lead out of the directory.
bool is_plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

std::vector<std::pair<std::string, FileHash>> read_listing(const std::string& path) {
  const nlohmann::json root = parse_json_rejecting_duplicate_keys(read_file(path), "'" + path + "'");
  auto field = [&](const nlohmann::json& object, const char* key) -> const nlohmann::json& {
    NEXTN_CHECK(object.is_object() && object.contains(key), "'", path, "' lacks \"", key, "\"");
    return object.at(key);
  };
  NEXTN_CHECK(field(root, "format") == kFormat, "'", path, "': format must be \"", kFormat, "\", got ",
              root.at("format").dump());
  NEXTN_CHECK(field(root, "version") == kVersion, "'", path, "': version ", root.at("version").dump(),
              " is not supported (", kVersion, ")");
  NEXTN_CHECK(field(root, "algorithm") == "sha256", "'", path, "': algorithm must be \"sha256\", got ",
              root.at("algorithm").dump());
  const nlohmann::json& files = field(root, "files");
  NEXTN_CHECK(files.is_object(), "'", path, "': \"files\" must be an object");
  std::vector<std::pair<std::string, FileHash>> listing;
  for (const auto& [name, entry] : files.items()) {
    NEXTN_CHECK(is_plain_name(name) && name != kChecksumsFile, "'", path, "' lists '", name,
                "', which is not a file name of the directory");
    const nlohmann::json& bytes = field(entry, "bytes");
    const nlohmann::json& sha = field(entry, "sha256");
    NEXTN_CHECK(bytes.is_number_unsigned(), "'", path, "': files.", name, ".bytes must be a non-negative integer");
    NEXTN_CHECK(sha.is_string() && sha.get<std::string>().size() == 64 && is_lower_hex(sha.get<std::string>()), "'",
                path, "': files.", name, ".sha256 must be 64 lower-case hex digits");
    listing.push_back({name, FileHash{bytes.get<int64_t>(), sha.get<std::string>()}});
  }
  return listing;
}

}  // namespace

void write_checksums(const std::string& dir) {
  std::vector<fs::path> paths;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename() != kChecksumsFile) paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());
  nlohmann::ordered_json files = nlohmann::ordered_json::object();
  for (const auto& path : paths) {
    const FileHash hash = hash_file(path);
    files[path.filename().string()] = {{"bytes", hash.bytes}, {"sha256", hash.sha256}};
  }
  const nlohmann::ordered_json root = {
      {"format", kFormat}, {"version", kVersion}, {"algorithm", "sha256"}, {"files", files}};
  write_file_atomic((fs::path(dir) / kChecksumsFile).string(), root.dump(2) + "\n");
}

ChecksumReport verify_checksums(const std::string& dir, bool contents) {
  ChecksumReport report;
  const fs::path listing_path = fs::path(dir) / kChecksumsFile;
  if (!file_exists(listing_path.string())) return report;
  report.listed = true;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& [name, expected] : read_listing(listing_path.string())) {
    const fs::path path = fs::path(dir) / name;
    std::error_code error;
    const auto size = fs::file_size(path, error);
    if (error || !fs::is_regular_file(path)) {
      report.problems.push_back(name + " is missing");
      continue;
    }
    if (static_cast<int64_t>(size) != expected.bytes) {
      report.problems.push_back(cat(name, " has ", size, " bytes, ", expected.bytes, " when saved"));
      continue;
    }
    if (!contents) continue;
    const FileHash actual = hash_file(path);
    ++report.files;
    report.bytes += actual.bytes;
    if (actual.sha256 != expected.sha256) {
      report.problems.push_back(name + "'s SHA-256 differs from the one recorded when it was saved");
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

ChecksumReport verify_checksums_reporting(const std::string& dir, bool contents) {
  // A listing that does not parse is the directory's damage. A listed file that cannot be read
  // (permissions, an I/O error, a file system gone away) is not: that error propagates, so that a
  // resume fails instead of setting a good checkpoint aside.
  const fs::path listing_path = fs::path(dir) / kChecksumsFile;
  if (file_exists(listing_path.string())) {
    try {
      read_listing(listing_path.string());
    } catch (const Error& e) {
      ChecksumReport report;
      report.listed = true;
      report.problems.push_back(e.what());
      return report;
    }
  }
  return verify_checksums(dir, contents);
}

std::string describe_problems(const std::string& dir, const ChecksumReport& report) {
  std::string text = "'" + dir + "' is corrupt: ";
  for (size_t i = 0; i < report.problems.size(); ++i) text += (i > 0 ? "; " : "") + report.problems[i];
  return text;
}

}  // namespace nextn::io

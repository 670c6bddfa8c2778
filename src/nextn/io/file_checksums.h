// checksums.json: the size and SHA-256 of every file of a directory (a training checkpoint, a
// model), written when the directory is saved and checked when it is loaded, so that a flipped
// bit or a truncated copy is found instead of trained on.
//
//   {"format": "nextn-checksums", "version": 1, "algorithm": "sha256",
//    "files": {"model.safetensors": {"bytes": 56623104, "sha256": "<64 hex digits>"}, ...}}
//
// Files added to the directory later (draft_vocab.json, written by `nextn draft-vocab` into the
// newest checkpoint) are not listed: they carry their own validation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nextn::io {

constexpr const char* kChecksumsFile = "checksums.json";

// Hashes every regular file directly in `dir` (not checksums.json) and writes checksums.json
// atomically.
void write_checksums(const std::string& dir);

struct ChecksumReport {
  bool listed = false;                // dir has a checksums.json
  std::vector<std::string> problems;  // one line per missing, resized or changed file
  int64_t files = 0, bytes = 0;       // what was hashed
  double seconds = 0;
  bool ok() const { return problems.empty(); }
};

// Checks every file listed in dir/checksums.json: present, of its size and, when `contents`,
// of its hash. A directory without checksums.json gives listed = false and no problems. A
// checksums.json that is not valid throws nextn::Error naming the field.
ChecksumReport verify_checksums(const std::string& dir, bool contents = true);

// The same, except that a checksums.json that cannot be read (or a file that cannot be hashed) is
// reported as the directory's problem instead of thrown: a damaged listing is damage like any
// other, and callers that refuse or set aside damaged directories treat them all alike.
ChecksumReport verify_checksums_reporting(const std::string& dir, bool contents = true);

// The problems as one sentence for an error message: "'DIR' is corrupt: a; b".
std::string describe_problems(const std::string& dir, const ChecksumReport& report);

}  // namespace nextn::io

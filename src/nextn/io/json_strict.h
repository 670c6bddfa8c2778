// JSON parsing for file formats that forbid what nlohmann::json silently accepts. The safetensors
// spec disallows duplicate keys ("Duplicate keys are disallowed. Not all parsers may respect
// this." -- huggingface/safetensors README), and nlohmann keeps only the last of them, so a file
// could otherwise show one tensor to us and another to a different reader. nlohmann also treats a
// NUL byte as the end of the input, which would let bytes after it hide in a header.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace nextn::io {

// Parses `text` as one JSON value (surrounding whitespace allowed). Throws nextn::Error whose
// message starts with `what` (e.g. "safetensors header of 'a.safetensors'") when the text is not
// valid JSON or an object anywhere in it repeats a key; the message names the key and its path.
nlohmann::json parse_json_rejecting_duplicate_keys(const std::string& text, const std::string& what);

}  // namespace nextn::io

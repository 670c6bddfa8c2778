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

// The integer at object[key], checked: nlohmann's get<int64_t>() converts a float such as 1e300
// with undefined behaviour (found by fuzz/run_state_fuzzer), and throws its own exceptions for a
// missing key or another type. nextn::Error "<what>: '<key>' ..." otherwise. With a default,
// an absent key gives the default.
int64_t json_integer(const nlohmann::json& object, const char* key, const std::string& what);
int64_t json_integer(const nlohmann::json& object, const char* key, const std::string& what, int64_t absent);
uint64_t json_unsigned(const nlohmann::json& object, const char* key, const std::string& what);

}  // namespace nextn::io

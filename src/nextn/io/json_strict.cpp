#include "nextn/io/json_strict.h"

#include <set>
#include <vector>

#include "nextn/util/error.h"

namespace nextn::io {
namespace {

using json = nlohmann::json;

// Follows the parser through nested containers and remembers which keys each open object has
// seen, so the first repeated key can be reported with the path that leads to it.
class DuplicateKeyTracker {
 public:
  void on_event(json::parse_event_t event, const json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: scopes_.push_back(Scope{true, {}, {}}); break;
      case json::parse_event_t::array_start: scopes_.push_back(Scope{false, {}, {}}); break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!scopes_.empty()) scopes_.pop_back();
        break;
      case json::parse_event_t::key: on_key(parsed.get<std::string>()); break;
      case json::parse_event_t::value: break;
    }
  }

  bool found() const { return !duplicate_path_.empty(); }
  const std::string& duplicate_path() const { return duplicate_path_; }

 private:
  struct Scope {
    bool is_object;
    std::set<std::string> keys;
    std::string current_key;
  };

  void on_key(const std::string& key) {
    if (scopes_.empty() || !scopes_.back().is_object) return;
    Scope& scope = scopes_.back();
    if (!scope.keys.insert(key).second && !found()) duplicate_path_ = path_to(key);
    scope.current_key = key;
  }

  // "'outer' > 'inner'" for the key `key` inside the currently open objects.
  std::string path_to(const std::string& key) const {
    std::string path;
    for (size_t i = 0; i + 1 < scopes_.size(); ++i) {
      if (scopes_[i].is_object) path += cat("'", scopes_[i].current_key, "' > ");
    }
    return cat(path, "'", key, "'");
  }

  std::vector<Scope> scopes_;
  std::string duplicate_path_;
};

}  // namespace

json parse_json_rejecting_duplicate_keys(const std::string& text, const std::string& what) {
  // nlohmann stops at a NUL byte as if the input ended there, so "{}\0anything" would parse; a
  // NUL is never valid in JSON text (inside strings it must be escaped), so reject it up front.
  const size_t nul = text.find('\0');
  NEXTN_CHECK(nul == std::string::npos, what, " is not valid JSON: NUL byte at offset ", nul);
  DuplicateKeyTracker tracker;
  json::parser_callback_t callback = [&tracker](int /*depth*/, json::parse_event_t event,
                                                json& parsed) {
    tracker.on_event(event, parsed);
    return true;
  };
  json parsed;
  try {
    parsed = json::parse(text, callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(what, " is not valid JSON: ", e.what());
  }
  NEXTN_CHECK(!tracker.found(), what, " repeats the key ", tracker.duplicate_path());
  return parsed;
}

int64_t json_integer(const json& object, const char* key, const std::string& what) {
  NEXTN_CHECK(object.is_object() && object.contains(key), what, ": '", key, "' is missing");
  const json& value = object.at(key);
  NEXTN_CHECK(value.is_number_integer(), what, ": '", key, "' must be an integer, got ", value.dump());
  NEXTN_CHECK(!value.is_number_unsigned() || value.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX), what, ": '",
              key, "' is out of range, got ", value.dump());
  return value.get<int64_t>();
}

int64_t json_integer(const json& object, const char* key, const std::string& what, int64_t absent) {
  return object.is_object() && !object.contains(key) ? absent : json_integer(object, key, what);
}

uint64_t json_unsigned(const json& object, const char* key, const std::string& what) {
  NEXTN_CHECK(object.is_object() && object.contains(key), what, ": '", key, "' is missing");
  const json& value = object.at(key);
  NEXTN_CHECK(value.is_number_unsigned(), what, ": '", key, "' must be a non-negative integer, got ", value.dump());
  return value.get<uint64_t>();
}

}  // namespace nextn::io

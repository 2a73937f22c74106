// Strict reading of JSON objects for sprout's versioned documents (spec, manifest,
// agent config). Every accessor marks its key as known; finish() rejects any key
// nobody asked for. Errors are InputError with "SOURCE: KEY.PATH: expected X, got Y",
// so a user can find and fix the exact value.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "error.h"

namespace sprout {

/// A short human name for a JSON value's type and, for scalars, its value.
std::string describe_json(const nlohmann::json& value);

/// The word of `known` nearest to `word` by edit distance, when it is near enough to be
/// what was meant (at most 2 edits, or a third of the word); "" otherwise. For "did you
/// mean" hints.
std::string nearest_word(std::string_view word, const std::vector<std::string>& known);

/// The deepest nesting of lists and objects in any JSON that sprout or its agent
/// reads. None of their documents comes near it (a status line's detail may nest 8);
/// a deeper one is refused while it is parsed, before anything that walks a document
/// recursively (a copy, dump(), the checks here) could run out of stack on it.
inline constexpr std::size_t kMaxJsonDepth = 64;

/// What the parsers below throw for nesting deeper than kMaxJsonDepth.
struct JsonTooDeep : InputError {
  using InputError::InputError;
};

/// Parses `text` as JSON; a syntax error, a repeated key, a NUL in a string or nesting
/// deeper than kMaxJsonDepth becomes an InputError naming `source`.
nlohmann::json parse_json_text(std::string_view text, std::string_view source);

/// Parses `text` with nlohmann's own rules (a repeated key keeps its last value), for
/// what sprout reads without checking it key by key (status.json, events.jsonl,
/// export.json, qemu's output), but no deeper than kMaxJsonDepth either: InputError
/// naming `source` for a syntax error or deeper nesting.
nlohmann::json parse_json_loosely(std::string_view text, std::string_view source);

class StrictObject {
 public:
  /// `value` must be an object, else InputError. `path` is its key path ("" at the top).
  StrictObject(const nlohmann::json& value, std::string source, std::string path = "");

  /// The value at `key`, or nullptr when absent. JSON null counts as absent.
  const nlohmann::json* get(std::string_view key);
  bool has(std::string_view key) { return get(key) != nullptr; }

  std::string string(std::string_view key);  // required
  std::string string_or(std::string_view key, std::string fallback);
  std::optional<std::string> optional_string(std::string_view key);
  /// A string that must be one of `choices`.
  std::string choice_or(std::string_view key, const std::vector<std::string_view>& choices,
                        std::string fallback);
  std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max);  // required
  std::uint64_t unsigned_integer(std::string_view key);                            // required, 0 to 2^64-1
  std::int64_t integer_or(std::string_view key, std::int64_t fallback, std::int64_t min,
                          std::int64_t max);
  bool boolean_or(std::string_view key, bool fallback);
  std::vector<std::string> strings_or_empty(std::string_view key, std::size_t max_items = 1024);
  /// A nested object (required) / an optional nested object.
  StrictObject object(std::string_view key);
  std::optional<StrictObject> optional_object(std::string_view key);
  /// The array at `key` (empty when absent); each element checked by the caller.
  const nlohmann::json::array_t& array_or_empty(std::string_view key, std::size_t max_items = 1024);

  /// Throws for the first key that no accessor asked for.
  void finish() const;

  std::string path_of(std::string_view key) const;
  const std::string& source() const { return source_; }
  [[noreturn]] void fail(std::string_view key, std::string_view expected) const;
  [[noreturn]] void fail_value(std::string_view key, std::string_view message) const;

 private:
  const nlohmann::json* value_;
  std::string source_;
  std::string path_;
  std::set<std::string, std::less<>> seen_;
};

}  // namespace sprout

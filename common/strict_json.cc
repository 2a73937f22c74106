#include "strict_json.h"

#include <algorithm>
#include <set>
#include <vector>

#include <fmt/format.h>

namespace sprout {

using nlohmann::json;

std::string describe_json(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return fmt::format("the number {}", v.dump());
    case json::value_t::number_float: return fmt::format("the number {}", v.dump());
    case json::value_t::string: {
      std::string s = v.get<std::string>();
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return fmt::format("the string {}", json(s).dump(-1, ' ', true, json::error_handler_t::replace));
    }
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

namespace {

/// "line L, column C" of byte offset `byte` (1-based, as nlohmann reports it).
std::string position_of(std::string_view text, std::size_t byte) {
  std::size_t end = std::min(byte > 0 ? byte - 1 : 0, text.size());
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("line {}, column {}", line, col);
}

/// The library's explanation without its "[json.exception...] parse error at ...: "
/// prefix: "syntax error while parsing object - unexpected '}'; expected string literal".
std::string_view reason_of(std::string_view what) {
  auto col = what.find("column ");
  auto colon = what.find(": ", col == std::string_view::npos ? 0 : col);
  if (colon == std::string_view::npos) {
    auto bracket = what.find("] ");
    return bracket == std::string_view::npos ? what : what.substr(bracket + 2);
  }
  return what.substr(colon + 2);
}

struct DuplicateKey {
  std::string key;
};

/// InputError for the first string (value or key) holding a NUL: it would end the
/// string early wherever it becomes an argument, a path or a file name.
void refuse_nul(const json& v, std::string_view source, const std::string& path) {
  auto where = [&](std::string_view k) { return path.empty() ? std::string(k) : path + "." + std::string(k); };
  if (v.is_string()) {
    if (v.get_ref<const std::string&>().find('\0') != std::string::npos)
      throw InputError(fmt::format("{}: {}: contains a NUL character, which no path, name or argument may hold",
                                   source, path.empty() ? "top level" : path));
  } else if (v.is_object()) {
    for (const auto& [k, child] : v.items()) {
      if (k.find('\0') != std::string::npos)
        throw InputError(fmt::format("{}: {}: a key contains a NUL character", source, path.empty() ? "top level" : path));
      refuse_nul(child, source, where(k));
    }
  } else if (v.is_array()) {
    std::size_t i = 0;
    for (const auto& child : v) refuse_nul(child, source, fmt::format("{}[{}]", path, i++));
  }
}

struct TooDeep {};

/// nlohmann's parse of `text`, refusing nesting deeper than kMaxJsonDepth as it goes
/// (and, when `strict`, a key repeated in one object); errors name `source`.
json parse_bounded(std::string_view text, std::string_view source, bool strict) {
  std::size_t depth = 0;
  // Keys seen so far in each open object, innermost last: a duplicate is refused
  // (nlohmann keeps the last silently, so `"vcpus": 2, "vcpus": 1` would mean 1).
  std::vector<std::set<std::string>> open_objects;
  json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        if (strict) open_objects.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::array_start:
        if (++depth > kMaxJsonDepth) throw TooDeep{};
        break;
      case json::parse_event_t::object_end:
        if (strict) open_objects.pop_back();
        [[fallthrough]];
      case json::parse_event_t::array_end: --depth; break;
      case json::parse_event_t::key:
        if (strict && !open_objects.back().insert(parsed.get<std::string>()).second)
          throw DuplicateKey{parsed.get<std::string>()};
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), on_event);
  } catch (const TooDeep&) {
    throw JsonTooDeep(fmt::format("{}: lists and objects nested more than {} deep; sprout reads no JSON that deep",
                                  source, kMaxJsonDepth));
  } catch (const DuplicateKey& d) {
    throw InputError(fmt::format("{}: the key \"{}\" appears twice in one object; keep one", source,
                                 json(d.key).get<std::string>()));
  } catch (const json::parse_error& e) {
    throw InputError(fmt::format("{}: not valid JSON at {}: {}", source, position_of(text, e.byte), reason_of(e.what())));
  } catch (const json::exception& e) {
    // out_of_range.406: a number too big for a double (1e400).
    throw InputError(fmt::format("{}: not valid JSON: {}", source, reason_of(e.what())));
  }
}

}  // namespace

json parse_json_text(std::string_view text, std::string_view source) {
  json doc = parse_bounded(text, source, /*strict=*/true);
  refuse_nul(doc, source, "");
  return doc;
}

json parse_json_loosely(std::string_view text, std::string_view source) {
  return parse_bounded(text, source, /*strict=*/false);
}

StrictObject::StrictObject(const json& value, std::string source, std::string path)
    : value_(&value), source_(std::move(source)), path_(std::move(path)) {
  if (!value.is_object())
    throw InputError(fmt::format("{}: {}: expected an object, got {}", source_,
                                 path_.empty() ? "top level" : path_, describe_json(value)));
}

std::string StrictObject::path_of(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

void StrictObject::fail(std::string_view key, std::string_view expected) const {
  const json* v = nullptr;
  if (auto it = value_->find(key); it != value_->end()) v = &*it;
  throw InputError(fmt::format("{}: {}: expected {}, got {}", source_, path_of(key), expected,
                               v ? describe_json(*v) : "nothing (the key is missing)"));
}

void StrictObject::fail_value(std::string_view key, std::string_view message) const {
  throw InputError(fmt::format("{}: {}: {}", source_, path_of(key), message));
}

const json* StrictObject::get(std::string_view key) {
  seen_.emplace(key);
  auto it = value_->find(key);
  if (it == value_->end() || it->is_null()) return nullptr;
  return &*it;
}

std::string StrictObject::string(std::string_view key) {
  const json* v = get(key);
  if (!v || !v->is_string()) fail(key, "a string");
  return v->get<std::string>();
}

std::string StrictObject::string_or(std::string_view key, std::string fallback) {
  auto s = optional_string(key);
  return s ? *s : std::move(fallback);
}

std::optional<std::string> StrictObject::optional_string(std::string_view key) {
  const json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) fail(key, "a string");
  return v->get<std::string>();
}

std::string StrictObject::choice_or(std::string_view key, const std::vector<std::string_view>& choices,
                                    std::string fallback) {
  const json* v = get(key);
  std::string expected;
  for (std::size_t i = 0; i < choices.size(); ++i)
    expected += fmt::format("{}\"{}\"", i == 0 ? "" : (i + 1 == choices.size() ? " or " : ", "), choices[i]);
  if (!v) return fallback;
  if (v->is_string()) {
    auto s = v->get<std::string>();
    for (auto c : choices)
      if (c == s) return s;
  }
  fail(key, expected);
}

std::int64_t StrictObject::integer(std::string_view key, std::int64_t min, std::int64_t max) {
  const json* v = get(key);
  auto expected = fmt::format("an integer from {} to {}", min, max);
  if (!v || !v->is_number_integer()) fail(key, expected);
  if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
    fail(key, expected);
  auto n = v->get<std::int64_t>();
  if (n < min || n > max) fail(key, expected);
  return n;
}

std::uint64_t StrictObject::unsigned_integer(std::string_view key) {
  const json* v = get(key);
  if (!v || !v->is_number_unsigned()) fail(key, "an integer from 0 to 18446744073709551615");
  return v->get<std::uint64_t>();
}

std::int64_t StrictObject::integer_or(std::string_view key, std::int64_t fallback, std::int64_t min,
                                      std::int64_t max) {
  if (!get(key)) return fallback;
  return integer(key, min, max);
}

bool StrictObject::boolean_or(std::string_view key, bool fallback) {
  const json* v = get(key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(key, "true or false");
  return v->get<bool>();
}

std::vector<std::string> StrictObject::strings_or_empty(std::string_view key, std::size_t max_items) {
  std::vector<std::string> out;
  const auto& arr = array_or_empty(key, max_items);
  for (std::size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string())
      throw InputError(fmt::format("{}: {}[{}]: expected a string, got {}", source_, path_of(key), i,
                                   describe_json(arr[i])));
    out.push_back(arr[i].get<std::string>());
  }
  return out;
}

StrictObject StrictObject::object(std::string_view key) {
  const json* v = get(key);
  if (!v || !v->is_object()) fail(key, "an object");
  return StrictObject(*v, source_, path_of(key));
}

std::optional<StrictObject> StrictObject::optional_object(std::string_view key) {
  const json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_object()) fail(key, "an object or null");
  return StrictObject(*v, source_, path_of(key));
}

const json::array_t& StrictObject::array_or_empty(std::string_view key, std::size_t max_items) {
  static const json::array_t kEmpty;
  const json* v = get(key);
  if (!v) return kEmpty;
  if (!v->is_array()) fail(key, "a list");
  if (v->size() > max_items) fail_value(key, fmt::format("at most {} items are allowed", max_items));
  return v->get_ref<const json::array_t&>();
}

namespace {

// Edits between two words, a swap of neighbours counting as one (optimal string
// alignment): "wiat" is one edit from "wait", as a typist sees it.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i)
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

}  // namespace

std::string nearest_word(std::string_view word, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_d = std::string::npos;
  for (const auto& k : known) {
    std::size_t d = edit_distance(word, k);
    if (d < best_d) best_d = d, best = k;
  }
  return !best.empty() && best_d <= std::max<std::size_t>(2, word.size() / 3) ? best : "";
}

void StrictObject::finish() const {
  for (const auto& [k, v] : value_->items()) {
    if (seen_.contains(k)) continue;
    // The keys this object takes are the ones asked for: suggest the nearest.
    std::string best = nearest_word(k, std::vector<std::string>(seen_.begin(), seen_.end()));
    std::string hint = !best.empty() ? fmt::format("did you mean \"{}\"?", best)
                                     : "check its spelling against the documentation";
    throw InputError(fmt::format("{}: {}: unknown key ({})", source_, path_of(k), hint));
  }
}

}  // namespace sprout

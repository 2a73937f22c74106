#include "strict_json.h"

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

json parse_json_text(std::string_view text, std::string_view source) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    throw InputError(fmt::format("{}: not valid JSON (byte {}): {}", source, e.byte,
                                 std::string_view(e.what()).substr(std::string_view(e.what()).rfind(": ") + 2)));
  }
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

void StrictObject::finish() const {
  for (const auto& [k, v] : value_->items()) {
    if (!seen_.contains(k))
      throw InputError(fmt::format("{}: {}: unknown key (check its spelling against the documentation)",
                                   source_, path_of(k)));
  }
}

}  // namespace sprout

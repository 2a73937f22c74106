#include "narinfo_index.h"

#include <stdexcept>

#include <fmt/format.h>

namespace sprout {

std::string narinfo_index_record(const std::string& narinfo_text) {
  std::string r = narinfo_text;
  if (r.empty() || r.back() != '\n') r += '\n';
  return r + '\n';
}

std::map<std::string, std::string> split_narinfo_index(const std::string& index) {
  std::map<std::string, std::string> out;
  std::size_t at = 0, n = 0;
  while (at < index.size()) {
    ++n;
    std::size_t end = index.find("\n\n", at);
    if (index[at] == '\n')
      throw std::runtime_error(fmt::format("{}: an empty line where record {} begins", kNarInfoIndexFile, n));
    if (end == std::string::npos)
      throw std::runtime_error(fmt::format("{}: record {} does not end in an empty line", kNarInfoIndexFile, n));
    std::string text = index.substr(at, end + 1 - at);
    at = end + 2;
    std::size_t sp = text.rfind("StorePath: ", 0) == 0 ? 0 : text.find("\nStorePath: ");
    if (sp == std::string::npos)
      throw std::runtime_error(fmt::format("{}: record {} has no StorePath", kNarInfoIndexFile, n));
    std::size_t from = text.find(": ", sp) + 2;
    std::string path = text.substr(from, text.find('\n', from) - from);
    if (!out.emplace(path, std::move(text)).second)
      throw std::runtime_error(fmt::format("{}: {} is given twice", kNarInfoIndexFile, path));
  }
  return out;
}

}  // namespace sprout

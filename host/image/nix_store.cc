#include "image/nix_store.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "error.h"
#include "nar_hash.h"
#include "subprocess.h"

namespace sprout {

namespace {

constexpr auto kQueryTimeout = std::chrono::minutes(5);
/// Paths per nix-store call: keeps each command line far below ARG_MAX.
constexpr std::size_t kPathsPerCall = 500;

/// A memory file for a child's stderr, read back after it exits.
class StderrCapture {
 public:
  StderrCapture() : fd_(::memfd_create("sprout-nix-stderr", MFD_CLOEXEC)) {}
  ~StderrCapture() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  std::string text() const {
    std::string out;
    char buf[4096];
    off_t at = 0;
    ssize_t n;
    while ((n = ::pread(fd_, buf, sizeof buf, at)) > 0 && out.size() < (1 << 20)) {
      out.append(buf, static_cast<std::size_t>(n));
      at += n;
    }
    return out;
  }

 private:
  int fd_;
};

std::string last_lines(const std::string& text, std::size_t n) {
  ProcessResult r;
  r.output = text;
  std::string out;
  for (const auto& l : r.last_lines(n)) out += (out.empty() ? "" : "\n") + l;
  return out;
}

/// Runs a Nix command whose stdout is data. A path Nix calls "not valid" or that does
/// not exist is the caller's input error.
std::string run_nix(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  StderrCapture err;
  ProcessOptions o;
  o.argv = argv;
  o.timeout = timeout;
  o.stderr_fd = err.fd();
  o.max_capture_bytes = 256 << 20;
  ProcessResult r = run_process(o);
  if (r.ok()) return r.output;
  std::string why = last_lines(err.text(), 5);
  if (!r.started)
    throw std::runtime_error(fmt::format("cannot run {}: {} (is Nix installed and on PATH?)", argv[0], r.error));
  if (why.find("is not valid") != std::string::npos || why.find("does not exist") != std::string::npos ||
      why.find("is not in the Nix store") != std::string::npos)
    throw InputError(why);
  throw std::runtime_error(fmt::format("`{}` {}{}{}", format_command(argv), r.describe(), why.empty() ? "" : ":\n",
                                       why));
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

std::string base_name(const std::string& store_path) { return store_path.substr(store_path.rfind('/') + 1); }

}  // namespace

std::vector<PathRegistration> parse_dump_db(const std::string& text) {
  auto lines = split_lines(text);
  std::vector<PathRegistration> out;
  std::size_t i = 0;
  auto need = [&](std::size_t n) {
    if (i + n > lines.size()) throw std::runtime_error("nix-store --dump-db: output ends in the middle of a path");
  };
  auto number = [&](const std::string& s, const char* what) {
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty())
      throw std::runtime_error(fmt::format("nix-store --dump-db: expected {}, got '{}'", what, s));
    return v;
  };
  while (i < lines.size() && !lines[i].empty()) {
    need(5);
    PathRegistration r;
    r.path = lines[i];
    const std::string& hash = lines[i + 1];
    // Nix prints the NAR hash as bare base-16 SHA-256 (older) or "sha256:..." (newer).
    r.nar_hash = hash.rfind("sha256:", 0) == 0 ? hash : "sha256:" + hash;
    r.nar_size = number(lines[i + 2], "a NAR size");
    r.deriver = lines[i + 3];
    std::uint64_t n = number(lines[i + 4], "a reference count");
    i += 5;
    need(n);
    for (std::uint64_t k = 0; k < n; ++k) r.references.push_back(lines[i + k]);
    i += n;
    if (r.path.rfind("/nix/store/", 0) != 0)
      throw std::runtime_error(fmt::format("nix-store --dump-db: '{}' is not a store path", r.path));
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<std::string> nix_requisites(const std::string& path) {
  auto lines = split_lines(run_nix({"nix-store", "--query", "--requisites", path}, kQueryTimeout));
  std::vector<std::string> out;
  for (auto& l : lines)
    if (!l.empty()) out.push_back(std::move(l));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<PathRegistration> nix_registrations(const std::vector<std::string>& paths) {
  std::vector<PathRegistration> out;
  for (std::size_t at = 0; at < paths.size(); at += kPathsPerCall) {
    std::vector<std::string> argv{"nix-store", "--dump-db"};
    for (std::size_t k = at; k < std::min(paths.size(), at + kPathsPerCall); ++k) argv.push_back(paths[k]);
    auto part = parse_dump_db(run_nix(argv, kQueryTimeout));
    if (part.size() != argv.size() - 2)
      throw std::runtime_error(fmt::format("nix-store --dump-db: asked for {} paths, got {}", argv.size() - 2,
                                           part.size()));
    for (auto& r : part) out.push_back(std::move(r));
  }
  return out;
}

namespace {

std::string narinfo_text(const PathRegistration& r, const std::string& url, bool with_file) {
  std::string refs;
  for (const auto& ref : r.references) refs += (refs.empty() ? "" : " ") + base_name(ref);
  std::string text = fmt::format("StorePath: {}\nURL: {}\nCompression: none\n", r.path, url);
  if (with_file) text += fmt::format("FileHash: {}\nFileSize: {}\n", r.nar_hash, r.nar_size);
  text += fmt::format("NarHash: {}\nNarSize: {}\nReferences: {}\n", r.nar_hash, r.nar_size, refs);
  if (!r.deriver.empty()) text += fmt::format("Deriver: {}\n", base_name(r.deriver));
  return text;
}

}  // namespace

std::string narinfo_for(const PathRegistration& r, const std::string& url) { return narinfo_text(r, url, true); }

std::string narinfo_for_absent_path(const PathRegistration& r) { return narinfo_text(r, kAbsentNarUrl, false); }

}  // namespace sprout

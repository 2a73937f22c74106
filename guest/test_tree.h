// Test helper: a temporary fake guest tree (root prefix) removed at the end.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace sprout::agent::testing {

class TempTree {
 public:
  TempTree() {
    char tmpl[] = "/tmp/sprout-agent-test-XXXXXX";
    root_ = ::mkdtemp(tmpl);
  }
  ~TempTree() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path path(const std::string& guest) const { return root_ / guest.substr(guest[0] == '/' ? 1 : 0); }
  void write(const std::string& guest, const std::string& text, bool exec = false) const {
    auto p = path(guest);
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
    if (exec) std::filesystem::permissions(p, std::filesystem::perms::owner_all);
  }
  std::string read(const std::string& guest) const {
    std::ifstream in(path(guest), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void symlink(const std::string& target, const std::string& guest) const {
    auto p = path(guest);
    std::filesystem::create_directories(p.parent_path());
    std::filesystem::remove(p);
    std::filesystem::create_symlink(target, p);
  }

 private:
  std::filesystem::path root_;
};

}  // namespace sprout::agent::testing

// The NAR writer against Nix itself: for a tree with every kind of entry a store path
// holds (plain and executable files, an empty one, one larger than a buffer, a
// symlink, nested and empty directories, names whose byte order differs from their
// length order), the bytes are exactly what the machine's `nix-store --dump` writes,
// the hash is of those bytes, and what a NAR cannot hold is refused, naming it.
#include "image/nar_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>

#include <gtest/gtest.h>

#include "base/sha256.h"
#include "base/temp_dir.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& bytes, unsigned mode = 0644) {
  std::ofstream(p, std::ios::binary) << bytes;
  fs::permissions(p, static_cast<fs::perms>(mode));
}

std::string nar_of(const std::string& path, NarDump* dump = nullptr) {
  std::string out;
  NarDump d = write_nar(path, [&](const char* data, std::size_t n) { out.append(data, n); });
  if (dump) *dump = d;
  return out;
}

/// `nix-store --dump PATH`'s stdout; "" with *found = false when there is no nix-store.
std::string nix_dump(const std::string& path, bool* found) {
  *found = ::system("command -v nix-store >/dev/null 2>&1") == 0;
  if (!*found) return "";
  std::string out;
  FILE* p = ::popen(("nix-store --dump '" + path + "' 2>/dev/null").c_str(), "r");
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << "nix-store --dump " << path;
  return out;
}

}  // namespace

TEST(NarWriter, WritesWhatNixStoreDumpWrites) {
  TempDir t("nar");
  fs::path root = t.path() / "pkg";
  fs::create_directories(root / "bin");
  fs::create_directories(root / "share" / "empty");
  fs::create_directories(root / "lib" / "deep" / "er");
  write(root / "bin" / "tool", "#!/bin/sh\necho hi\n", 0755);
  write(root / "share" / "empty-file", "");
  write(root / "share" / "seven", "1234567");  // padded to 8
  write(root / "share" / "eight", "12345678");
  std::string big(600 * 1024 + 3, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  write(root / "lib" / "deep" / "er" / "big.so", big, 0555);
  for (const char* n : {"B", "a", "aa", "a-b", "Z9", "a.b"}) write(root / "lib" / n, n);
  fs::create_symlink("../bin/tool", root / "lib" / "link");
  fs::create_symlink("/nonexistent/dangling", root / "share" / "dangling");

  NarDump d;
  std::string mine = nar_of(root.string(), &d);
  Sha256 h;
  h.update(mine);
  EXPECT_EQ(d.sha256_hex, h.finish_hex());
  EXPECT_EQ(d.size, mine.size());
  EXPECT_EQ(mine.size() % 8, 0u);
  bool found = false;
  std::string nix = nix_dump(root.string(), &found);
  if (!found) GTEST_SKIP() << "no nix-store on PATH to compare with";
  EXPECT_EQ(mine.size(), nix.size());
  EXPECT_TRUE(mine == nix) << "the NAR differs from nix-store --dump's";
  // A single file and a symlink as the whole path, as store paths may be.
  for (const fs::path& p : {root / "share" / "seven", root / "lib" / "link", root / "bin" / "tool"})
    EXPECT_TRUE(nar_of(p.string()) == nix_dump(p.string(), &found)) << p;
}

TEST(NarWriter, RefusesWhatANarCannotHold) {
  TempDir t("nar");
  fs::path root = t.path() / "pkg";
  fs::create_directories(root);
  ASSERT_EQ(::mkfifo((root / "fifo").c_str(), 0644), 0);
  try {
    nar_of(root.string());
    FAIL() << "a fifo was serialised";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((root / "fifo").string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(nar_of((t.path() / "missing").string()), std::system_error);
}

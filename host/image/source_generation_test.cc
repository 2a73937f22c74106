// source_generation() must say what export_disks() makes: one case per kind of input
// that the export treats specially (a private key left out of ssh, a hard link, a
// symlink, rebuild settings), each checked against a real export.
#include "image/source_generation.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>

#include "base/temp_dir.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

struct Sources {
  TempDir dir{"source-generation"};
  ExportRequest req;
  Sources() {
    const fs::path cfg = dir.path() / "cfg";
    write(cfg / "configuration.nix", "{ }\n");
    write(cfg / "hosts" / "web" / "configuration.nix", "{ networking.hostName = \"web\"; }\n");
    fs::create_hard_link(cfg / "configuration.nix", cfg / "hard-link.nix");
    fs::create_symlink("configuration.nix", cfg / "link.nix");
    const fs::path ssh = dir.path() / "ssh";
    write(ssh / "authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ6oUDr6Q0dBUvNO2dgIv8XJQ/3+fv3Yw2Y7N1GLzEXe t\n");
    write(ssh / "id_ed25519",
          "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n");
    req.name = "web";
    req.config_source = cfg;
    req.self_source = cfg / "hosts" / "web";
    req.ssh_source = ssh;
    req.rebuild.max_attempts = 5;
    req.cache_dir = dir.path() / "cache";
    req.out_dir = dir.path() / "state";
    fs::create_directories(req.out_dir);
  }
};

}  // namespace

TEST(SourceGeneration, IsWhatTheExportMakes) {
  Sources s;
  const std::string before = source_generation(s.req);
  const ExportResult exported = export_disks(s.req);
  EXPECT_FALSE(exported.excluded.empty()) << "the private key was not left out: the case tests nothing";
  EXPECT_EQ(before, exported.manifest.generation);
  EXPECT_EQ(source_generation(s.req), exported.manifest.generation);  // and again, with the cache
}

TEST(SourceGeneration, SeesAChangeTheExportWouldSee) {
  Sources s;
  const std::string exported = export_disks(s.req).manifest.generation;
  write(s.req.self_source / "configuration.nix", "{ networking.hostName = \"web2\"; }\n");
  const std::string now = source_generation(s.req);
  EXPECT_NE(now, exported);
  EXPECT_EQ(now, export_disks(s.req).manifest.generation);
}

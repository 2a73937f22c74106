#include "image/secrets_image.h"

#include <sys/stat.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "image/ext4_writer.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLabel = "sprout-secrets";

/// Everything the image holds, as (path in the image, bytes, mode).
struct Entry {
  std::string path;
  std::string bytes;
  unsigned mode;
};

std::vector<Entry> contents(const VmIdentity& id, const std::vector<SecretFile>& secrets) {
  std::vector<Entry> out;
  for (const auto& k : id.host_keys) {
    out.push_back({"identity/" + k.file_name, read_identity_secret(id, k.file_name), 0400});
    out.push_back({"identity/" + k.file_name + ".pub", k.public_line + "\n", 0444});
  }
  out.push_back({"identity/machine-id", id.machine_id + "\n", 0444});
  for (const auto& s : secrets) out.push_back({"secrets/" + s.name, s.bytes, 0400});
  return out;
}

std::string read_text(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(fs::symlink_status(p, ec))) return "";
  FILE* f = std::fopen(p.c_str(), "re");
  if (!f) return "";
  char buf[256];
  std::size_t n = std::fread(buf, 1, sizeof buf, f);
  std::fclose(f);
  return std::string(buf, n);
}

}  // namespace

SecretsImage write_secrets_image(const StateDir& state, const VmIdentity& identity,
                                 const std::vector<SecretFile>& secrets) {
  IdentityLock lock(state);  // the image and secrets.key describe one another
  SecretsImage out;
  out.image = state.root / "secrets.img";
  const fs::path key_file = state.root / "secrets.key";
  // The identity as it is now, under the lock: a rotation since `identity` was read
  // would otherwise pair the new private key with the old public one.
  const std::optional<VmIdentity> now = read_identity(state);
  const VmIdentity& id = now ? *now : identity;
  const std::vector<Entry> entries = contents(id, secrets);
  // A keyed digest of everything the image holds (secrets_digest over the entries).
  std::vector<SecretFile> all;
  for (const auto& e : entries) all.push_back({fmt::format("{} {:o}", e.path, e.mode), e.bytes});
  const std::string key =
      secrets_digest(all, read_identity_secret(id, kSecretsDigestKeyFile)) + " sprout-secrets-image-v1\n";
  std::error_code ec;
  if (read_text(key_file) == key && fs::is_regular_file(fs::symlink_status(out.image, ec)) &&
      fs::file_size(out.image, ec) > 0) {
    out.bytes = fs::file_size(out.image, ec);
    return out;
  }
  TreeSize size;
  size.dirs = 2;
  for (const auto& e : entries) {
    size.files += 1;
    size.data_bytes += (e.bytes.size() + 4095) / 4096 * 4096;
  }
  PendingFile pending(out.image);
  {
    Ext4Writer w(pending.temp_path(), kLabel, key.substr(0, 64), size);
    w.set_root_mode(0700);
    w.add_directory("identity", 0700);
    w.add_directory("secrets", 0700);
    for (const auto& e : entries) w.add_file(e.path, e.bytes, e.mode);
    w.finish();
  }
  if (::chmod(pending.temp_path().c_str(), 0400) != 0)
    throw std::system_error(errno, std::generic_category(), "cannot chmod " + pending.temp_path().string());
  pending.commit();
  write_file_atomic(key_file, key, 0600);
  out.rebuilt = true;
  out.bytes = fs::file_size(out.image);
  spdlog::info("built the secrets disk {} (identity, {} secret{})", out.image.string(), secrets.size(),
               secrets.size() == 1 ? "" : "s");
  return out;
}

}  // namespace sprout

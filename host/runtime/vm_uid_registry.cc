#include "runtime/vm_uid_registry.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/file_lock.h"
#include "base/sha256.h"
#include "runtime/dynamic_uid.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr auto kLockTimeout = std::chrono::seconds(30);

/// The state directory as records compare it (absolute, lexically normal: it may not exist yet).
std::string state_key(const fs::path& state_dir) { return fs::absolute(state_dir).lexically_normal().string(); }

/// Whether `file` is the record of this VM.
bool is_record_of(const fs::path& file, const std::string& vm, const std::string& state) {
  std::ifstream in(file);
  json j = json::parse(in, nullptr, false);
  return j.is_object() && j.value("vm", "") == vm && j.value("stateDir", "") == state;
}

std::optional<uid_t> find(const fs::path& dir, const std::string& vm, const std::string& state) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto uid = uid_of_registry_file(e.path().filename().string());
    if (uid && is_record_of(e.path(), vm, state)) return uid;
  }
  return std::nullopt;
}

uid_t first_choice(const std::string& vm) {
  const std::string digest = sha256_hex("sprout libvirt uid\n" + vm);
  return kDynamicUidFirst + static_cast<uid_t>(std::stoul(digest.substr(0, 4), nullptr, 16) % kDynamicUidCount);
}

/// Creates the record; false when the file exists.
bool write_record(const fs::path& file, const std::string& vm, const std::string& state) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    throw std::system_error(errno, std::generic_category(), "cannot create " + file.string());
  }
  const std::string text = json{{"vm", vm}, {"stateDir", state}}.dump() + "\n";
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(file.c_str());
    throw std::runtime_error("cannot write " + file.string());
  }
  // The record's name is in its directory: synced too, so a crash cannot forget a uid
  // whose files a VM's disks already are (another VM would be given it).
  int dir_fd = ::open(file.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool synced = dir_fd >= 0 && ::fsync(dir_fd) == 0;
  if (dir_fd >= 0) ::close(dir_fd);
  if (!synced) {
    ::unlink(file.c_str());
    throw std::runtime_error("cannot sync the directory of " + file.string());
  }
  return true;
}

void make_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  ::chmod(dir.c_str(), 0700);  // which VMs exist is nobody else's business
}

FileLock lock_of(const fs::path& dir) {
  return FileLock(dir / ".lock", FileLock::exclusive, kLockTimeout,
                  fmt::format("{}: another sprout held the uid registry for {} s; try again", dir.string(),
                              std::chrono::seconds(kLockTimeout).count()));
}

}  // namespace

fs::path default_vm_uid_registry() { return "/var/lib/sprout/libvirt-uids"; }

VmUidRegistry host_vm_uid_registry() { return VmUidRegistry{default_vm_uid_registry(), default_uid_registry()}; }

std::optional<uid_t> VmUidRegistry::recorded(const std::string& vm, const fs::path& state_dir) const {
  return find(dir, vm, state_key(state_dir));
}

bool VmUidRegistry::taken(uid_t uid) const {
  std::error_code ec;
  return fs::exists(dir / std::to_string(uid), ec);
}

uid_t VmUidRegistry::assign(const std::string& vm, const fs::path& state_dir) const {
  const std::string state = state_key(state_dir);
  make_dir(dir);
  FileLock lock = lock_of(dir);
  if (auto uid = find(dir, vm, state)) return *uid;
  // The dynamic claims' lock too: a `sprout run` claiming a uid now must see this
  // record, or this assignment its claim.
  make_dir(dynamic_claims);
  FileLock dynamic_lock = lock_of(dynamic_claims);
  const uid_t first = first_choice(vm);
  std::error_code ec;
  for (uid_t i = 0; i < kDynamicUidCount; ++i) {
    const uid_t uid = kDynamicUidFirst + (first - kDynamicUidFirst + i) % kDynamicUidCount;
    if (::getpwuid(uid) || ::getgrgid(uid) || fs::exists(dynamic_claims / std::to_string(uid), ec) ||
        !processes_running_as(uid).empty())
      continue;
    if (write_record(dir / std::to_string(uid), vm, state)) {
      spdlog::info("VM {}: its qemu runs as uid {} (recorded in {})", vm, uid, dir.string());
      return uid;
    }
  }
  throw std::runtime_error(fmt::format("VM {}: all {} uids of sprout's range from {} are in use; destroy a VM "
                                       "(`sprout destroy`) to free one",
                                       vm, kDynamicUidCount, kDynamicUidFirst));
}

std::optional<uid_t> VmUidRegistry::release(const std::string& vm, const fs::path& state_dir) const {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  FileLock lock = lock_of(dir);
  auto uid = find(dir, vm, state_key(state_dir));
  if (uid) fs::remove(dir / std::to_string(*uid), ec);
  return uid;
}

}  // namespace sprout

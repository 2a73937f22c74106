#include "runtime/dynamic_uid.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/file_lock.h"
#include "base/process_identity.h"
#include "base/sha256.h"
#include "error.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr auto kLockTimeout = std::chrono::seconds(30);
constexpr auto kOrphanExitTimeout = std::chrono::seconds(10);

/// The Uid: line of /proc/PID/status holds the real, effective, saved and fs uids. A
/// zombie (State: Z) runs nothing any more, unless it is a thread-group leader that
/// ended alone while its other threads run on (Threads: more than 1).
bool runs_as(const fs::path& status_file, uid_t uid) {
  std::ifstream in(status_file);
  std::string line;
  bool zombie = false, as_uid = false;
  long threads = 1;
  while (std::getline(in, line)) {
    if (line.starts_with("State:")) zombie = line.find('Z') != std::string::npos;
    if (line.starts_with("Threads:")) threads = std::strtol(line.c_str() + 8, nullptr, 10);
    if (!line.starts_with("Uid:")) continue;
    std::istringstream ids(line.substr(4));
    unsigned long id = 0;
    for (int i = 0; i < 3 && (ids >> id); ++i) as_uid = as_uid || id == uid;
  }
  return as_uid && (!zombie || threads > 1);
}

/// Whether the claim in `file` belongs to a process that still runs.
bool claim_alive(const fs::path& file) {
  std::ifstream in(file);
  json j = json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("supervisor")) return false;
  return recorded_process_alive(j);
}

/// Kills whatever still runs as `uid` (an orphaned qemu) and waits for it to be gone.
/// False when something still runs as it at the deadline.
bool end_orphans(uid_t uid) {
  auto pids = processes_running_as(uid);
  if (pids.empty()) return true;
  for (pid_t pid : pids) {
    spdlog::warn("uid {}: its claim's sprout is gone but pid {} still runs as it (a qemu whose sprout was "
                 "killed); killing it",
                 uid, pid);
    ::kill(pid, SIGKILL);
  }
  const auto deadline = std::chrono::steady_clock::now() + kOrphanExitTimeout;
  while (!processes_running_as(uid).empty()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

/// The ids of the System V IPC objects in /proc/sysvipc/`kind` whose owner or creator
/// is `uid` (the columns are named by the file's header line).
std::vector<int> sysv_objects_of(const std::string& kind, uid_t uid) {
  std::vector<int> ids;
  std::ifstream in("/proc/sysvipc/" + kind);
  std::string header;
  if (!std::getline(in, header)) return ids;
  std::vector<std::string> names;
  std::istringstream h(header);
  for (std::string n; h >> n;) names.push_back(n);
  auto column = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  const auto id_at = static_cast<std::size_t>(column(kind == "shm" ? "shmid" : kind == "sem" ? "semid" : "msqid"));
  const auto uid_at = static_cast<std::size_t>(column("uid")), cuid_at = static_cast<std::size_t>(column("cuid"));
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string x; fields >> x;) f.push_back(x);
    if (std::max({id_at, uid_at, cuid_at}) >= f.size()) continue;
    if (f[uid_at] == std::to_string(uid) || f[cuid_at] == std::to_string(uid)) ids.push_back(std::stoi(f[id_at]));
  }
  return ids;
}

bool known_to_user_database(uid_t uid) { return ::getpwuid(uid) != nullptr || ::getgrgid(uid) != nullptr; }

/// Creates the claim file for `uid`; false when it exists.
bool write_claim(const fs::path& file, const std::string& vm) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    throw std::system_error(errno, std::generic_category(), "cannot create " + file.string());
  }
  json j = this_process_identity();
  j["vm"] = vm;
  const std::string text = j.dump() + "\n";
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok) {
    ::unlink(file.c_str());
    throw std::runtime_error("cannot write " + file.string());
  }
  return true;
}

}  // namespace

void remove_ipc_of(uid_t uid) {
  for (int id : sysv_objects_of("shm", uid)) ::shmctl(id, IPC_RMID, nullptr);
  for (int id : sysv_objects_of("sem", uid)) ::semctl(id, 0, IPC_RMID);
  for (int id : sysv_objects_of("msg", uid)) ::msgctl(id, IPC_RMID, nullptr);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/dev/shm", ec)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) == 0 && st.st_uid == uid && !S_ISDIR(st.st_mode)) ::unlink(e.path().c_str());
  }
}

std::optional<uid_t> uid_of_registry_file(const std::string& name) {
  if (name.empty() || name.size() > 10 || name.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const unsigned long long n = std::stoull(name);
  if (n < kDynamicUidFirst || n - kDynamicUidFirst >= kDynamicUidCount) return std::nullopt;
  return static_cast<uid_t>(n);
}

fs::path default_uid_registry() { return "/run/sprout/qemu-uids"; }

std::vector<pid_t> processes_running_as(uid_t uid) {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (runs_as(e.path() / "status", uid)) pids.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return pids;
}

uid_t DynamicUid::first_choice(const std::string& vm) {
  const std::string digest = sha256_hex(vm);
  return kDynamicUidFirst + static_cast<uid_t>(std::stoul(digest.substr(0, 4), nullptr, 16) % kDynamicUidCount);
}

DynamicUid DynamicUid::claim(const fs::path& registry, const std::string& vm, const fs::path& reserved) {
  std::error_code ec;
  fs::create_directories(registry, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot create {}: {}", registry.string(), ec.message()));
  ::chmod(registry.c_str(), 0700);  // which VMs run is nobody else's business
  FileLock lock(registry / ".lock", FileLock::exclusive, kLockTimeout,
                fmt::format("{}: another sprout held the uid registry for {} s; try again", registry.string(),
                            std::chrono::seconds(kLockTimeout).count()));
  // Stale claims first, wherever they are: what their sprout left running dies now,
  // as it would have with its parent.
  for (const auto& e : fs::directory_iterator(registry, ec)) {
    const auto uid = uid_of_registry_file(e.path().filename().string());
    if (!uid || claim_alive(e.path())) continue;
    if (end_orphans(*uid)) {
      remove_ipc_of(*uid);
      fs::remove(e.path(), ec);
    }
  }
  const uid_t first = first_choice(vm);
  for (uid_t i = 0; i < kDynamicUidCount; ++i) {
    const uid_t uid = kDynamicUidFirst + (first - kDynamicUidFirst + i) % kDynamicUidCount;
    if (known_to_user_database(uid) || fs::exists(reserved / std::to_string(uid), ec) ||
        !processes_running_as(uid).empty())
      continue;
    const fs::path file = registry / std::to_string(uid);
    if (write_claim(file, vm)) {
      remove_ipc_of(uid);  // whatever an earlier holder left, however it ended
      return DynamicUid(file, uid);
    }
  }
  throw std::runtime_error(fmt::format("VM {}: all {} uids of sprout's range from {} are in use; stop a VM or "
                                 "remove stale claims from {}",
                                 vm, kDynamicUidCount, kDynamicUidFirst, registry.string()));
}

DynamicUid::DynamicUid(DynamicUid&& other) noexcept : file_(std::move(other.file_)), uid_(other.uid_) {
  other.file_.clear();
}

DynamicUid::~DynamicUid() {
  if (file_.empty()) return;
  // Something still runs as the uid (a qemu that could not be reaped): the claim stays,
  // stale once this process is gone, so the next claim ends it before reusing the uid.
  if (!processes_running_as(uid_).empty()) {
    spdlog::warn("uid {}: still in use after the run; its claim {} is kept until the next run ends what runs "
                 "as it",
                 uid_, file_.string());
    return;
  }
  remove_ipc_of(uid_);
  std::error_code ec;
  fs::remove(file_, ec);
}

}  // namespace sprout

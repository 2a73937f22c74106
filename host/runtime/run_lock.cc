#include "runtime/run_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <fstream>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/process_identity.h"

namespace sprout {

namespace fs = std::filesystem;

int lock_run(const Spec& spec, Recorder recorder) {
  spec.state().make_private(spec.backend == Backend::libvirt);
  fs::path lock = spec.state().run_lock();
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, StateDir::kFileMode);
  if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot open: {}", lock.string(), std::strerror(errno)));
  struct flock l{};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;  // the whole file
  if (::fcntl(fd, F_OFD_SETLK, &l) != 0) {
    ::close(fd);
    throw std::runtime_error(fmt::format("VM {} is already running ({} is held by another `sprout run`)",
                                         spec.name, lock.string()));
  }
  // Who holds it, for `sprout stop`: "PID START" (process_identity.h), and for `sprout
  // watch` whether the run wants a watcher: "PID START external-recorder".
  auto me = this_process_identity();
  std::string who = fmt::format("{} {}{}\n", ::getpid(), me.value("supervisorStart", std::uint64_t{0}),
                                recorder == Recorder::watcher ? " external-recorder" : "");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, who.data(), who.size(), 0) != static_cast<ssize_t>(who.size()))
    spdlog::warn("{}: cannot write the holder's pid: {}", lock.string(), std::strerror(errno));
  return fd;
}

bool run_lock_held(const Spec& spec) {
  fs::path lock = spec.state().run_lock();
  int fd = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // never run (or no state directory)
  // Asks without taking anything: a probe that took a lock, however briefly, could
  // make a `sprout run` starting at that moment fail as "already running".
  struct flock l{};
  l.l_type = F_RDLCK;
  l.l_whence = SEEK_SET;
  bool held = ::fcntl(fd, F_OFD_GETLK, &l) == 0 && l.l_type != F_UNLCK;
  ::close(fd);
  return held;
}

namespace {

struct Holder {
  pid_t pid;
  Recorder recorder;
};

/// The live `sprout run` the lock file names while its lock is held.
std::optional<Holder> live_holder(const Spec& spec) {
  if (!run_lock_held(spec)) return std::nullopt;
  std::ifstream in(spec.state().run_lock());
  long long pid = 0;
  std::uint64_t start = 0;
  if (!(in >> pid >> start) || pid <= 0 || pid > INT_MAX) return std::nullopt;
  std::string note;
  in >> note;
  nlohmann::json who{{"supervisor", pid}};
  if (start) who["supervisorStart"] = start;
  if (!recorded_process_alive(who)) return std::nullopt;
  return Holder{static_cast<pid_t>(pid), note == "external-recorder" ? Recorder::watcher : Recorder::run};
}

}  // namespace

std::optional<pid_t> run_lock_holder(const Spec& spec) {
  auto h = live_holder(spec);
  if (!h) return std::nullopt;
  return h->pid;
}

std::optional<Recorder> run_lock_recorder(const Spec& spec) {
  auto h = live_holder(spec);
  if (!h) return std::nullopt;
  return h->recorder;
}

void unlock_run(int fd) {
  if (fd < 0) return;
  if (::ftruncate(fd, 0) != 0) {
    // Nothing to do about it: the next run rewrites the file, and a stale line
    // names a process that is gone within moments.
  }
  ::close(fd);
}

}  // namespace sprout

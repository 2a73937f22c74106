#include "runtime/kvm_probe.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "base/sha256.h"
#include "strict_json.h"
#include "subprocess.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The probe guest writes this to isa-debug-exit; qemu then exits with (value << 1) | 1.
constexpr std::uint8_t kProbeValue = 0x2a;
constexpr int kProbeExit = (kProbeValue << 1) | 1;
constexpr int kDebugExitPort = 0xf4;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Where verdicts are kept: root's in /run (a tmpfs, emptied at boot anyway), another
// user's in $XDG_RUNTIME_DIR; none when neither can be had. Only a directory this user
// owns and nobody else can write is trusted: a verdict says which accelerator to use.
std::optional<fs::path> cache_dir() {
  fs::path dir;
  if (::geteuid() == 0) {
    dir = "/run/sprout/kvm-probe";
  } else if (const char* x = ::getenv("XDG_RUNTIME_DIR"); x && *x == '/') {
    dir = fs::path(x) / "sprout" / "kvm-probe";
  } else {
    return std::nullopt;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  for (const fs::path& d : {dir.parent_path(), dir}) {
    struct stat st {};
    if (::lstat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022)) {
      spdlog::debug("KVM probe: {} is not a directory only this user can write; the verdict is not cached",
                    d.string());
      return std::nullopt;
    }
  }
  return dir;
}

// The identity of the qemu binary the probe ran: a different build, or the same path
// after an upgrade, is probed again.
json binary_identity(const fs::path& exe) {
  struct stat st {};
  if (::stat(exe.c_str(), &st) != 0) return nullptr;
  std::error_code ec;
  auto real = fs::canonical(exe, ec);
  return {{"path", ec ? exe.string() : real.string()},
          {"dev", static_cast<std::uint64_t>(st.st_dev)},
          {"ino", static_cast<std::uint64_t>(st.st_ino)},
          {"size", static_cast<std::int64_t>(st.st_size)},
          {"mtimeNs", static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec}};
}

// What /dev/kvm is now: a module loaded after boot, or a /dev/kvm hidden from this
// process (another mount namespace), is probed again.
json kvm_device_identity() {
  struct stat st {};
  if (::stat("/dev/kvm", &st) != 0) return std::string(std::strerror(errno));
  return {{"mode", static_cast<std::uint32_t>(st.st_mode)}, {"rdev", static_cast<std::uint64_t>(st.st_rdev)},
          {"ino", static_cast<std::uint64_t>(st.st_ino)},
          {"ctimeNs", static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec}};
}

std::optional<KvmProbe> read_cached(const fs::path& file, const json& key) {
  int fd = ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::string text;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() && !(st.st_mode & 022) &&
      st.st_size < 64 * 1024) {
    text.resize(static_cast<std::size_t>(st.st_size));
    if (::read(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) text.clear();
  }
  ::close(fd);
  try {
    auto j = parse_json_loosely(text, file.string());  // nested too deep: probe again too
    if (j.at("key") != key) return std::nullopt;
    KvmProbe p;
    p.runs = j.at("runs").get<bool>();
    p.why = j.at("why").get<std::string>();
    p.qemu_output = j.at("qemuOutput").get<std::vector<std::string>>();
    p.probe_ms = j.at("probeMs").get<std::int64_t>();
    p.cached = true;
    return p;
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable: probe again
  }
}

}  // namespace

std::string kvm_probe_firmware() {
  // Real mode at the reset vector F000:FFF0 (the firmware's last 16 bytes):
  //   mov al, 0x2a; out 0xf4, al; hlt; jmp $-1
  std::string fw(64 * 1024, '\xff');
  const std::uint8_t code[] = {0xb0, kProbeValue, 0xe6, kDebugExitPort, 0xf4, 0xeb, 0xfd};
  std::memcpy(fw.data() + fw.size() - 16, code, sizeof(code));
  return fw;
}

std::vector<std::string> kvm_probe_command(const std::string& qemu, const fs::path& firmware,
                                           const std::string& accel) {
  std::vector<std::string> a{qemu, "-accel", accel};
  // Exactly the CPU model `sprout run` gives a KVM guest (qemu_command.cc).
  if (accel == "kvm") a.insert(a.end(), {"-cpu", "host"});
  a.insert(a.end(), {"-nodefaults", "-no-user-config", "-display", "none", "-m", "16", "-bios", firmware.string(),
                     "-device", fmt::format("isa-debug-exit,iobase={:#x},iosize=1", kDebugExitPort)});
  return a;
}

KvmProbe run_kvm_probe(const std::string& qemu, const std::string& accel, std::chrono::milliseconds deadline) {
  KvmProbe p;
  const auto start = std::chrono::steady_clock::now();
  std::string dir_template = (fs::temp_directory_path() / "sprout-kvm-probe.XXXXXX").string();
  if (!::mkdtemp(dir_template.data())) {
    p.why = fmt::format("cannot make a directory for the probe in {}: {}", fs::temp_directory_path().string(),
                        std::strerror(errno));
    return p;
  }
  const fs::path dir = dir_template, firmware = dir / "probe.fw";
  try {
    write_file_atomic(firmware, kvm_probe_firmware(), 0644, Durability::cache);
    ProcessOptions o;
    o.argv = kvm_probe_command(qemu, firmware, accel);
    o.timeout = deadline;
    o.kill_grace = std::chrono::milliseconds(500);
    o.max_capture_bytes = 64 * 1024;
    auto r = run_process(o);
    p.qemu_output = r.last_lines(4);
    const std::string cmd = fmt::format("qemu -accel {}{}", accel, accel == "kvm" ? " -cpu host" : "");
    if (r.started && r.error.empty() && !r.timed_out && r.signal == 0 && r.exit_code == kProbeExit) {
      p.runs = true;
      p.why = fmt::format("a probe guest ran under `{}`", cmd);
    } else if (r.timed_out) {
      p.why = fmt::format("a probe guest under `{}` did not run within {} s (qemu started, the guest's code never "
                          "ran)", cmd, std::chrono::duration_cast<std::chrono::seconds>(deadline).count());
    } else if (r.started && r.error.empty() && r.signal == 0 && r.exit_code == 0) {
      p.why = fmt::format("a probe guest under `{}`: qemu exited with status 0 without running it", cmd);
    } else {
      p.why = fmt::format("a probe guest under `{}` could not run: qemu {}", cmd, r.describe());
    }
  } catch (const std::exception& e) {
    p.why = fmt::format("the probe could not be run: {}", e.what());
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  p.probe_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  return p;
}

KvmProbe kvm_verdict(const std::string& qemu, bool reprobe) {
  // No look at /dev/kvm first: qemu says best why it cannot use it, and a host without
  // one pays a probe of some 50 ms once per boot.
  const std::string exe = find_program(qemu);
  if (exe.empty()) {
    KvmProbe p;
    p.why = fmt::format("{} was not found (PATH)", qemu);
    return p;
  }
  const json key{{"bootId", host_boot_id()}, {"qemu", binary_identity(exe)}, {"kvm", kvm_device_identity()}};
  const auto dir = cache_dir();
  const fs::path file = dir ? *dir / (sha256_hex(key.dump()).substr(0, 32) + ".json") : fs::path();
  if (dir && !reprobe)
    if (auto cached = read_cached(file, key)) return *cached;
  KvmProbe p = run_kvm_probe(exe);
  spdlog::debug("KVM probe of {}: {} ({} ms)", exe, p.why, p.probe_ms);
  if (dir) {
    json j{{"key", key},   {"runs", p.runs},         {"why", p.why}, {"qemuOutput", p.qemu_output},
           {"probeMs", p.probe_ms}, {"probedAtMs", now_ms()}};
    try {
      write_file_atomic(file, j.dump(2) + "\n", 0644, Durability::cache);
    } catch (const std::exception& e) {
      spdlog::debug("KVM probe: the verdict is not cached: {}", e.what());
    }
  }
  return p;
}

AccelChoice choose_accel(Accel accel, const std::string& qemu) {
  AccelChoice c;
  switch (accel) {
    case Accel::kvm:
      c.kvm = true;
      break;
    case Accel::tcg:
      break;
    case Accel::automatic: {
      c.probe = kvm_verdict(qemu);
      c.kvm = c.probe->runs;
      if (!c.kvm) {
        c.fallback_why = c.probe->why;
        if (!c.probe->qemu_output.empty()) c.fallback_why += fmt::format(" (qemu: {})", c.probe->qemu_output.back());
      }
      break;
    }
  }
  return c;
}

}  // namespace sprout

#include "closure_import.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include "nar_checksum.h"
#include "nar_hash.h"
#include "nar_restore.h"
#include "narinfo_index.h"
#include "root_path.h"
#include "store_path.h"
#include "subprocess.h"

namespace sprout::agent {

namespace {

constexpr std::size_t kMaxNarInfo = 1 << 20;
constexpr std::size_t kMaxPaths = 1 << 20;
constexpr std::size_t kQueryBytes = 128 << 10;  // of arguments a nix-store call: far below ARG_MAX
constexpr std::size_t kMaxChecksumFile = 64 << 20;
constexpr std::size_t kMaxIndex = 256 << 20;
constexpr std::size_t kSpareFiles = 512;  // the NAR, one a directory level, Nix's pipes
constexpr auto kNixTimeout = std::chrono::minutes(30);
constexpr auto kGcLockWait = std::chrono::minutes(10);

std::string tool(const ClosureImport& run, const char* name) {
  return run.nix_bin_dir.empty() ? name : run.nix_bin_dir + "/" + name;
}

std::string base_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

/// A full store path from a narinfo's base name; runtime_error when it is not one.
std::string store_path_of(const std::string& name, const char* field, const std::string& in) {
  std::string p = std::string(kNixStoreDir) + "/" + name;
  if (auto why = store_path_problem(p); !why.empty())
    throw std::runtime_error(fmt::format("the narinfo of {}: {} {} {}", in, field, p, why));
  return p;
}

/// The NAR's file name on the disk: "nar/NAME" with NAME of [A-Za-z0-9._+-], not "." or "..".
bool plain_nar_url(const std::string& url) {
  if (url.rfind("nar/", 0) != 0 || url.size() == 4) return false;
  std::string name = url.substr(4);
  if (name == "." || name == "..") return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '+' && c != '-') return false;
  return true;
}

/// Runs a Nix command; its output lines, or runtime_error with its last lines.
std::vector<std::string> nix(const std::vector<std::string>& argv, int stdin_fd = -1) {
  ProcessOptions o;
  o.argv = argv;
  o.timeout = kNixTimeout;
  o.stdin_fd = stdin_fd;
  ProcessResult r = run_process(o);
  if (!r.ok()) {
    std::string tail;
    for (const auto& l : r.last_lines(10)) tail += "\n" + l;
    throw std::runtime_error(fmt::format("{} {}{}", format_command({argv[0], argv[1]}),
                                         r.started ? r.describe() : "could not start: " + r.error, tail));
  }
  std::vector<std::string> lines;
  std::size_t at = 0;
  while (at < r.output.size()) {
    std::size_t nl = r.output.find('\n', at);
    if (nl == std::string::npos) nl = r.output.size();
    lines.push_back(r.output.substr(at, nl - at));
    at = nl + 1;
  }
  return lines;
}

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// Nix's garbage-collector lock (/nix/var/nix/gc.lock), held shared for the whole import:
/// a collection holds it exclusively, so none runs meanwhile. (Nix itself takes it
/// shared only briefly, to register a temporary root; the import has no such roots,
/// so it keeps collections off instead, and waits for one that runs.)
class GcLock {
 public:
  GcLock(const std::string& path, const std::function<void(std::string_view)>& on_line) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) {
      if (errno == ENOENT) return;  // no Nix state directory: no collector either
      throw std::system_error(errno, std::generic_category(), "open " + path);
    }
    auto deadline = std::chrono::steady_clock::now() + kGcLockWait;
    bool said = false;
    while (::flock(fd_, LOCK_SH | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) throw std::system_error(errno, std::generic_category(), "flock " + path);
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error(fmt::format("Nix's garbage collector held {} for {} minutes", path,
                                             std::chrono::duration_cast<std::chrono::minutes>(kGcLockWait).count()));
      if (!said && on_line) on_line("waiting for the big garbage collector lock...");
      said = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ~GcLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  GcLock(const GcLock&) = delete;
  GcLock& operator=(const GcLock&) = delete;

 private:
  int fd_ = -1;
};

/// What Nix does before it writes to a store on a read-only mount (NixOS mounts
/// /nix/store read-only): in a mount namespace of this process alone, the store's
/// mount remounted writable (its other flags kept). Everyone else's stays read-only.
void make_store_writable(const std::string& store) {
  struct statvfs st;
  if (::statvfs(store.c_str(), &st) != 0) throw std::system_error(errno, std::generic_category(), "statvfs " + store);
  if (!(st.f_flag & ST_RDONLY)) return;
  if (::unshare(CLONE_NEWNS) != 0)
    throw std::system_error(errno, std::generic_category(),
                            store + " is mounted read-only, and a private mount namespace to write it failed");
  unsigned long flags = MS_REMOUNT | MS_BIND;
  if (st.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (st.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (st.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (st.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (st.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (st.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  if (::mount(nullptr, store.c_str(), nullptr, flags, nullptr) != 0)
    throw std::system_error(errno, std::generic_category(), "remount " + store + " writable (in this process alone)");
}

/// Room for `locks` more open descriptors besides what the import itself holds: the
/// soft limit raised as far as needed, up to the hard one (systemd gives services
/// 1024:524288; a program that needs more raises its own soft limit). Each path's lock
/// is held until the paths are registered, all together.
void ensure_open_files(std::size_t locks) {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) throw std::system_error(errno, std::generic_category(), "getrlimit");
  const rlim_t want = static_cast<rlim_t>(locks) + kSpareFiles;
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) return;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
    throw std::runtime_error(fmt::format("importing {} paths locks each as Nix does until all are registered, which "
                                         "needs {} open files, and the agent may open {} at most (RLIMIT_NOFILE's hard "
                                         "limit): raise it (LimitNOFILE= of the agent's unit)",
                                         locks, want, rl.rlim_max));
  rl.rlim_cur = want;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) throw std::system_error(errno, std::generic_category(), "setrlimit");
}

/// Nix's per-path locks (its PathLocks): PATH.lock, flock exclusive; a lock file that
/// its holder deleted while this waited (Nix writes a byte into it first) is stale and
/// taken again. Released as Nix releases them: the file deleted, then closed.
class PathLocks {
 public:
  PathLocks() = default;
  PathLocks(const PathLocks&) = delete;
  PathLocks& operator=(const PathLocks&) = delete;
  ~PathLocks() { release(); }
  void release() {
    for (auto& [path, fd] : held_) {
      ::unlink(path.c_str());
      (void)!::write(fd, "d", 1);
      ::close(fd);
    }
    held_.clear();
  }
  void lock(const std::string& path, const std::function<void(std::string_view)>& on_line) {
    auto deadline = std::chrono::steady_clock::now() + kGcLockWait;
    bool said = false;
    for (;;) {
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error(fmt::format("{} stayed stale or held for {} minutes", path,
                                             std::chrono::duration_cast<std::chrono::minutes>(kGcLockWait).count()));
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
      while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
          int e = errno;
          ::close(fd);
          throw std::system_error(e, std::generic_category(), "flock " + path);
        }
        if (std::chrono::steady_clock::now() > deadline) {
          ::close(fd);
          throw std::runtime_error(fmt::format("another Nix process held {} for {} minutes", path,
                                               std::chrono::duration_cast<std::chrono::minutes>(kGcLockWait).count()));
        }
        if (!said && on_line) on_line(fmt::format("waiting for the lock on {}...", path));
        said = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      struct stat st;
      if (::fstat(fd, &st) == 0 && st.st_size == 0) {
        held_.emplace_back(path, fd);
        return;
      }
      // Stale: its holder deleted it (then wrote a byte), or failed to delete it and
      // left it there non-empty, which would be found stale forever: removed, under
      // the lock. Either way, opened afresh.
      if (st.st_nlink > 0) ::unlink(path.c_str());
      ::close(fd);
    }
  }

 private:
  std::vector<std::pair<std::string, int>> held_;
};

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

NarInfo parse_narinfo(const std::string& text, const std::string& expected) {
  std::map<std::string, std::string> f;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(at, nl - at);
    at = nl + 1;
    if (line.empty()) continue;
    std::size_t colon = line.find(": ");
    if (colon == std::string::npos)
      throw std::runtime_error(fmt::format("the narinfo of {}: a line without \": \"", expected));
    f[line.substr(0, colon)] = line.substr(colon + 2);
  }
  auto need = [&](const char* key) -> const std::string& {
    auto it = f.find(key);
    if (it == f.end() || it->second.empty())
      throw std::runtime_error(fmt::format("the narinfo of {} has no {}", expected, key));
    return it->second;
  };
  NarInfo n;
  n.store_path = need("StorePath");
  if (n.store_path != expected)
    throw std::runtime_error(fmt::format("the narinfo of {} describes {}", expected, n.store_path));
  n.url = need("URL");
  auto comp = f.find("Compression");
  if (comp == f.end() || comp->second != "none")
    throw std::runtime_error(fmt::format("the narinfo of {}: its NAR is compressed ({}); the closure disk holds "
                                         "uncompressed NARs only",
                                         expected, comp == f.end() ? "bzip2, by default" : comp->second));
  n.nar_hash = need("NarHash");
  {
    std::string digits = n.nar_hash.rfind("sha256:", 0) == 0 ? n.nar_hash.substr(7) : "";
    bool hex = digits.size() == 64 && digits.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
    bool b32 = digits.size() == 52 && digits.find_first_not_of("0123456789abcdfghijklmnpqrsvwxyz") == std::string::npos;
    if (!hex && !b32)
      throw std::runtime_error(fmt::format("the narinfo of {}: NarHash {} is not sha256: and 64 hex or 52 base-32 "
                                           "digits",
                                           expected, n.nar_hash));
  }
  const std::string& size = need("NarSize");
  if (size.size() > 19 || size.find_first_not_of("0123456789") != std::string::npos)
    throw std::runtime_error(fmt::format("the narinfo of {}: NarSize {} is not a number", expected, size));
  n.nar_size = std::stoull(size);
  if (auto fh = f.find("FileHash"); fh != f.end() && fh->second != n.nar_hash)
    throw std::runtime_error(fmt::format("the narinfo of {}: FileHash is not NarHash (uncompressed)", expected));
  if (auto fs = f.find("FileSize"); fs != f.end() && fs->second != size)
    throw std::runtime_error(fmt::format("the narinfo of {}: FileSize is not NarSize (uncompressed)", expected));
  if (auto d = f.find("Deriver"); d != f.end() && !d->second.empty() && d->second != "unknown-deriver")
    n.deriver = store_path_of(d->second, "Deriver", expected);
  if (auto r = f.find("References"); r != f.end()) {
    std::size_t p = 0;
    const std::string& refs = r->second;
    while (p < refs.size()) {
      std::size_t sp = refs.find(' ', p);
      if (sp == std::string::npos) sp = refs.size();
      if (sp > p) n.references.push_back(store_path_of(refs.substr(p, sp - p), "reference", expected));
      p = sp + 1;
    }
  }
  return n;
}

ImportOutcome import_closure(const ClosureImport& run) {
  ImportOutcome out;
  auto say = [&](const std::string& line) {
    if (run.on_line) run.on_line(line);
  };
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> written;  // store paths this import created (host paths)
  try {
    if (auto why = store_path_problem(run.system); !why.empty())
      throw std::runtime_error(fmt::format("the system {} {}", run.system, why));

    // 1. The closure, through the narinfos: the disk's index of them where it has one.
    std::map<std::string, std::string> index;
    std::string index_file = under_root(run.root, run.closure_dir + "/" + kNarInfoIndexFile);
    const bool indexed = [&] {
      struct stat ist;
      return ::lstat(index_file.c_str(), &ist) == 0;
    }();
    if (indexed) index = split_narinfo_index(read_exact_file(index_file, kMaxIndex));
    std::map<std::string, NarInfo> infos;
    std::deque<std::string> queue{run.system};
    while (!queue.empty()) {
      std::string p = queue.front();
      queue.pop_front();
      if (infos.count(p)) continue;
      if (infos.size() >= kMaxPaths)
        throw std::runtime_error(fmt::format("the closure of {} has over {} paths", run.system, kMaxPaths));
      std::string text;
      if (indexed) {
        auto it = index.find(p);
        if (it == index.end())
          throw std::runtime_error(fmt::format("the closure disk's {} has no narinfo of {}: the disk is damaged; "
                                               "export the VM again",
                                               kNarInfoIndexFile, p));
        text = std::move(it->second);
      } else {
        text = read_exact_file(
            under_root(run.root, fmt::format("{}/{}.narinfo", run.closure_dir, store_path_hash(p))), kMaxNarInfo);
      }
      NarInfo n = parse_narinfo(text, p);
      for (const auto& r : n.references)
        if (!infos.count(r)) queue.push_back(r);
      infos.emplace(p, std::move(n));
    }
    out.walked = infos.size();
    auto t_walked = std::chrono::steady_clock::now();

    // 2. What the guest's store lacks, and whether the disk holds it. The collector is
    // held off from here on, so no path judged valid is collected before the
    // registration refers to it. A path with nothing at its place in the store cannot
    // be valid. One that is there while the disk holds no NAR of it (the base's) is
    // taken as valid without asking: a path of the closure refers to it, and that
    // referrer is either registered below, where Nix refuses, in the one transaction,
    // a reference to a path that is not valid, or already valid itself, and Nix keeps
    // the references of a valid path valid. Nix is asked about the others (a leftover of
    // an interrupted import, a path the guest has already): on a fresh import, nothing.
    GcLock gc(under_root(run.root, "/nix/var/nix/gc.lock"), run.on_line);
    // The host's XXH3 of each NAR (nar_checksum.h): checked instead of SHA-256 where
    // the disk has it (a disk of an older host has none). Its line also carries the
    // NarHash the host checked those bytes against, which must be the narinfo's: that
    // is what gets registered.
    std::map<std::string, NarChecksumLine> checksums;
    std::string checksum_file = under_root(run.root, run.closure_dir + "/" + kNarChecksumFile);
    if (struct stat cst; ::lstat(checksum_file.c_str(), &cst) == 0)
      checksums = parse_nar_checksums(read_exact_file(checksum_file, kMaxChecksumFile));
    auto disk_holds_nar = [&](const NarInfo& n) {
      struct stat st;
      return plain_nar_url(n.url) && ::stat(under_root(run.root, run.closure_dir + "/" + n.url).c_str(), &st) == 0 &&
             S_ISREG(st.st_mode);
    };
    std::vector<std::string> present;
    std::set<std::string> invalid;
    std::size_t taken_as_valid = 0;
    for (const auto& [p, n] : infos) {
      struct stat pst;
      if (::lstat(under_root(run.root, p).c_str(), &pst) != 0 && errno == ENOENT)
        invalid.insert(p);
      else if (p != run.system && !disk_holds_nar(n))
        ++taken_as_valid;
      else
        present.push_back(p);
    }
    auto ask = [&](const std::vector<std::string>& paths) {
      std::set<std::string> lacking;
      for (std::size_t at = 0; at < paths.size();) {
        std::vector<std::string> argv{tool(run, "nix-store"), "--check-validity", "--print-invalid"};
        for (std::size_t bytes = 0; at < paths.size() && bytes < kQueryBytes; ++at) {
          bytes += paths[at].size() + 1;
          argv.push_back(paths[at]);
        }
        for (auto& line : nix(argv)) {
          if (infos.count(line))
            lacking.insert(line);
          else if (!line.empty())
            say(line);  // Nix's warnings
        }
      }
      return lacking;
    };
    if (!present.empty()) invalid.merge(ask(present));
    auto t_asked = std::chrono::steady_clock::now();
    std::vector<std::string> missing;
    for (const auto& p : invalid) {
      const NarInfo& n = infos.at(p);
      if (!disk_holds_nar(n))
        missing.push_back(fmt::format("  {} (its NAR, {}, is not on the disk)", p, n.url));
      else if (auto c = checksums.find(n.url); c != checksums.end() && c->second.nar_hash != n.nar_hash)
        throw std::runtime_error(fmt::format("the narinfo of {} gives NarHash {}, the disk's {} {}: the closure disk "
                                             "is damaged; export the VM again",
                                             p, n.nar_hash, kNarChecksumFile, c->second.nar_hash));
    }
    if (!missing.empty()) {
      out.error.push_back(fmt::format("error: the guest's store lacks {} path(s) of {} whose NAR the closure disk "
                                      "does not hold:",
                                      missing.size(), run.system));
      for (std::size_t i = 0; i < missing.size() && i < 12; ++i) out.error.push_back(missing[i]);
      if (missing.size() > 12) out.error.push_back(fmt::format("  and {} more", missing.size() - 12));
      return out;
    }

    if (invalid.empty()) {
      say(fmt::format("nothing to import: the guest's store has the {} paths of {}", out.walked, run.system));
      out.ok = true;
      return out;
    }

    // 3. Each path locked as Nix locks a path it adds (PATH.lock, in the store: writable
    // first, on a read-only mount), then looked at again: another Nix may have added one
    // meanwhile (it held the lock; now it is valid).
    std::string store = under_root(run.root, std::string(kNixStoreDir));
    make_store_writable(store);
    ensure_open_files(invalid.size());
    PathLocks locks;
    // What this import wrote is removed, if it fails, while the paths are still locked:
    // once a lock goes, another Nix may add that path, and it must find it as it was.
    struct RemoveOnFailure {
      std::vector<std::string>& written;
      std::vector<std::string>& error;
      ~RemoveOnFailure() {
        if (written.empty()) return;
        for (auto it = written.rbegin(); it != written.rend(); ++it)
          if (auto err = remove_tree(*it); !err.empty()) error.push_back("error: cleaning up: " + err);
        error.push_back(
            fmt::format("removed the {} path(s) this import wrote; nothing was registered", written.size()));
        written.clear();
      }
    } remove_on_failure{written, out.error};
    for (const auto& p : invalid) locks.lock(store + "/" + base_name(p) + ".lock", run.on_line);
    std::vector<std::string> appeared;
    for (const auto& p : invalid)
      if (struct stat ast; ::lstat(under_root(run.root, p).c_str(), &ast) == 0) appeared.push_back(p);
    std::set<std::string> leftovers;  // invalid, with something at their place: replaced
    if (!appeared.empty()) {
      leftovers = ask(appeared);
      for (const auto& p : appeared)
        if (!leftovers.count(p)) invalid.erase(p);
    }
    if (invalid.empty()) {
      say(fmt::format("nothing to import: the guest's store has the {} paths of {}", out.walked, run.system));
      out.ok = true;
      return out;
    }

    // 4. Unpack and check each.
    Fd store_fd{::open(store.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (store_fd.fd < 0) throw std::system_error(errno, std::generic_category(), "open " + store);
    ::umask(022);
    std::vector<char> buffer;
    auto t_unpack = std::chrono::steady_clock::now();
    for (const auto& p : invalid) {
      const NarInfo& n = infos.at(p);
      say(fmt::format("copying path '{}' from 'file://{}'...", p, run.closure_dir));
      std::string name = base_name(p);
      if (leftovers.count(p))  // the others' places were empty with their locks held
        if (auto err = remove_tree(store + "/" + name); !err.empty())
          throw std::runtime_error(fmt::format("cannot remove the invalid leftover {}: {}", p, err));
      std::string nar = under_root(run.root, run.closure_dir + "/" + n.url);
      Fd nar_fd{::open(nar.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
      if (nar_fd.fd < 0) throw std::system_error(errno, std::generic_category(), "open " + nar);
      ::posix_fadvise(nar_fd.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
      written.push_back(store + "/" + name);
      auto sum = checksums.find(n.url);
      const bool xxh3 = sum != checksums.end();
      NarRestored r = restore_nar(nar_fd.fd, store_fd.fd, name, n.url, buffer,
                                  xxh3 ? NarDigest::xxh3_128 : NarDigest::sha256);
      if (r.size != n.nar_size ||
          (xxh3 ? r.digest_hex != sum->second.xxh3 : !same_nar_hash(n.nar_hash, r.digest_hex))) {
        out.error.push_back(fmt::format("error: hash mismatch importing path '{}';", p));
        if (xxh3)
          out.error.push_back(fmt::format("  specified: xxh3-128:{} ({} bytes; {})", sum->second.xxh3, n.nar_size,
                                          kNarChecksumFile));
        else
          out.error.push_back(fmt::format("  specified: {} ({} bytes)", n.nar_hash, n.nar_size));
        out.error.push_back(
            fmt::format("  got:       {}:{} ({} bytes)", xxh3 ? "xxh3-128" : "sha256", r.digest_hex, r.size));
        throw std::runtime_error("");
      }
      (xxh3 ? out.checked_xxh3 : out.checked_sha256)++;
      out.nar_bytes += r.size;
    }
    auto t_unpacked = std::chrono::steady_clock::now();

    // 5. Durable, then valid: one transaction.
    if (::syncfs(store_fd.fd) != 0) throw std::system_error(errno, std::generic_category(), "syncfs " + store);
    auto t_register = std::chrono::steady_clock::now();
    if (!invalid.empty()) {
      std::string records;
      for (const auto& p : invalid) {
        const NarInfo& n = infos.at(p);
        records += fmt::format("{}\n{}\n{}\n{}\n{}\n", p, n.nar_hash, n.nar_size, n.deriver, n.references.size());
        for (const auto& r : n.references) records += r + "\n";
      }
      Fd mem{::memfd_create("sprout-load-db", MFD_CLOEXEC)};
      if (mem.fd < 0) throw std::system_error(errno, std::generic_category(), "memfd_create");
      for (std::size_t done = 0; done < records.size();) {
        ssize_t w = ::write(mem.fd, records.data() + done, records.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw std::system_error(errno, std::generic_category(), "write the registrations");
        done += static_cast<std::size_t>(w);
      }
      ::lseek(mem.fd, 0, SEEK_SET);
      try {
        nix({tool(run, "nix-store"), "--load-db"}, mem.fd);
      } catch (const std::exception& e) {
        // One transaction: a refusal registered nothing. Still, only what Nix says is
        // not valid is removed (if it cannot say, nothing is).
        out.error.push_back(fmt::format("error: registering the {} unpacked path(s): {}", invalid.size(), e.what()));
        // Nix: "path '...' is not valid"; Lix: "... does not exist in the Lix database".
        if (std::string_view w = e.what();
            w.find("is not valid") != std::string_view::npos || w.find("does not exist in the") != std::string_view::npos)
          out.error.push_back(fmt::format("  a path of {}'s closure that the guest's store has and the closure disk "
                                          "does not (the base system's) is not valid there: this VM's base is not "
                                          "the one the disk was exported for, or its store is damaged "
                                          "(nix-store --verify)",
                                          run.system));
        std::vector<std::string> unpacked(invalid.begin(), invalid.end());
        std::set<std::string> still_invalid;
        try {
          still_invalid = ask(unpacked);
        } catch (const std::exception& ask_error) {
          out.error.push_back(fmt::format("error: {}", ask_error.what()));
          out.error.push_back("  so the unpacked paths are left in the store for Nix's collector");
          written.clear();
        }
        if (!written.empty())
          std::erase_if(written, [&](const std::string& host_path) {
            return !still_invalid.count(std::string(kNixStoreDir) + "/" + base_name(host_path));
          });
        throw std::runtime_error("");
      }
      written.clear();  // valid now: never removed by this import
    }
    auto t_registered = std::chrono::steady_clock::now();
    locks.release();
    out.imported = invalid.size();
    auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    say(fmt::format("imported {} of the closure's {} paths ({:.1f} MB of NAR, {} checked with XXH3-128, {} with "
                    "SHA-256; {} of the base taken as valid, {} asked about) in {:.1f} s: narinfos read in {:.2f} s, "
                    "Nix asked in {:.2f} s, locked in {:.2f} s, "
                    "unpacked and checked in {:.1f} s, synced in {:.2f} s, registered in {:.2f} s, unlocked in "
                    "{:.2f} s",
                    out.imported, out.walked, static_cast<double>(out.nar_bytes) / 1e6, out.checked_xxh3,
                    out.checked_sha256, taken_as_valid, present.size(), since(t0), secs(t0, t_walked), secs(t_walked, t_asked),
                    secs(t_asked, t_unpack), secs(t_unpack, t_unpacked), secs(t_unpacked, t_register),
                    secs(t_register, t_registered), since(t_registered)));
    out.ok = true;
    return out;
  } catch (const std::exception& e) {
    if (*e.what()) out.error.insert(out.error.begin(), fmt::format("error: {}", e.what()));
  }
  return out;
}

}  // namespace sprout::agent

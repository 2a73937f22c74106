#include "closure_import.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "nar_checksum.h"
#include "nar_restore.h"
#include "nar_test_builder.h"
#include "narinfo_index.h"
#include "test_tree.h"

// The import against a fake root: a closure disk's narinfos and NARs at
// /run/sprout/closure, a store at /nix/store, and a stand-in nix-store that answers
// --check-validity --print-invalid from a list of valid paths and records what
// --load-db is fed (real Nix: tests/agent/test_host_built_vm.py).
namespace sprout::agent {
namespace {

namespace fs = std::filesystem;
using testing::Nar;
using testing::TempTree;

const std::string kSys = "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-system";
const std::string kLib = "/nix/store/ny0x7p9361ghg01qmp02xjdzp00mns2l-lib";
const std::string kBase = "/nix/store/5vagmd93pif6ssn8hx7cplfn32jlhp21-base";
const std::string kDrv = "/nix/store/03vf80l18f38c71ajg54ll25c7fqj6na-system.drv";

std::string hash_part(const std::string& p) { return p.substr(11, 32); }

struct Import : ::testing::Test {
  TempTree t;
  std::vector<std::string> lines;
  void SetUp() override {
    fs::create_directories(t.path("/nix/store"));
    fs::create_directories(t.path("/nix/var/nix"));
    std::string r = t.root().string();
    t.write("/fake-nix/nix-store",
            "#!/bin/sh\n"
            "echo \"nix-store $*\" >>" + r + "/nix-calls\n"
            // As Nix, it acts only once its input has ended.
            "if [ \"$1\" = --load-db ]; then input=$(cat; echo x); printf %s \"${input%x}\" >>" + r +
                "/load-db.txt; exit 0; fi\n"
            "shift 2\n"
            "for p; do grep -qxF \"$p\" " + r + "/valid 2>/dev/null || echo \"$p\"; done\n",
            true);
    t.write("/valid", kBase + "\n");
    t.write(kBase + "/in-the-store", "");
    // system -> lib, base; lib -> base (in the guest already: no NAR on the disk)
    add(kSys, Nar().dir().entry("bin").dir().entry("switch").file("#!/bin/sh\n", true).end_entry().end_dir()
                  .end_entry().entry("lib").symlink(kLib).end_entry().end_dir(),
        {kBase, kLib}, "Deriver: " + kDrv.substr(11) + "\n");
    add(kLib, Nar().file("library"), {kBase});
    t.write("/run/sprout/closure/" + hash_part(kBase) + ".narinfo",
            "StorePath: " + kBase + "\nURL: nar/in-the-base-system-not-on-this-disk.nar\nCompression: none\n"
            "NarHash: sha256:" + std::string(64, '0') + "\nNarSize: 8\nReferences: \n");
  }
  void TearDown() override {
    for (const auto& p : {kSys, kLib}) remove_tree(t.path(p).string());
  }
  void add(const std::string& path, Nar nar, const std::vector<std::string>& refs, const std::string& extra = "") {
    std::string url = "nar/" + hash_part(path) + ".nar";
    t.write("/run/sprout/closure/" + url, nar.bytes());
    std::string r;
    for (const auto& ref : refs) r += (r.empty() ? "" : " ") + ref.substr(11);
    t.write("/run/sprout/closure/" + hash_part(path) + ".narinfo",
            "StorePath: " + path + "\nURL: " + url + "\nCompression: none\nFileHash: sha256:" +
                testing::sha256_hex(nar.bytes()) + "\nFileSize: " + std::to_string(nar.bytes().size()) +
                "\nNarHash: sha256:" + testing::sha256_hex(nar.bytes()) + "\nNarSize: " +
                std::to_string(nar.bytes().size()) + "\nReferences: " + r + "\n" + extra);
  }
  /// The disk's XXH3 list (as the host writes it) for both NARs.
  void add_checksums() {
    std::string text;
    for (const auto& p : {kLib, kSys}) {
      std::string url = "nar/" + hash_part(p) + ".nar";
      std::string bytes = t.read("/run/sprout/closure/" + url);
      NarChecksum c;
      c.update(bytes.data(), bytes.size());
      text += url + " " + c.hex() + " sha256:" + testing::sha256_hex(bytes) + "\n";
    }
    t.write("/run/sprout/closure/sprout-nar-xxh3", text);
  }
  /// The disk's index of narinfos (as the host writes it), without `leave_out`'s; the
  /// narinfo files themselves removed, so only the index can have been read.
  void index_narinfos(const std::string& leave_out = "") {
    std::string index;
    for (const auto& p : {kBase, kLib, kSys}) {
      std::string file = "/run/sprout/closure/" + hash_part(p) + ".narinfo";
      if (p != leave_out) index += narinfo_index_record(t.read(file));
      fs::remove(t.path(file));
    }
    t.write("/run/sprout/closure/sprout-narinfos", index);
  }
  void flip_lib_byte() {
    std::string nar_file = "/run/sprout/closure/nar/" + hash_part(kLib) + ".nar";
    std::string bytes = t.read(nar_file);
    bytes[bytes.find("library")] = 'L';  // still a valid NAR, another hash
    t.write(nar_file, bytes);
  }
  ImportOutcome run() {
    ClosureImport ci;
    ci.root = t.root().string();
    ci.closure_dir = "/run/sprout/closure";
    ci.system = kSys;
    ci.nix_bin_dir = t.path("/fake-nix").string();
    ci.on_line = [&](std::string_view l) { lines.emplace_back(l); };
    return import_closure(ci);
  }
  std::string errors(const ImportOutcome& o) {
    std::string s;
    for (const auto& l : o.error) s += l + "\n";
    return s;
  }
};

TEST_F(Import, UnpacksWhatTheStoreLacksThenRegistersItInOneLoad) {
  ImportOutcome o = run();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_EQ(o.walked, 3u);
  EXPECT_EQ(o.imported, 2u);
  EXPECT_EQ(o.checked_sha256, 2u) << "no sprout-nar-xxh3 on this disk: the narinfos' NarHash";
  EXPECT_EQ(t.read("/nix/store/" + kLib.substr(11)), "library");
  EXPECT_EQ(t.read(kSys + "/bin/switch"), "#!/bin/sh\n");
  EXPECT_EQ(fs::read_symlink(t.path(kSys + "/lib")), kLib);
  struct stat st;
  ASSERT_EQ(::stat(t.path(kSys).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0555u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1);
  // Nix is not asked: nothing is at the others' places in the store, and the base's,
  // there with no NAR on the disk, is taken as valid (the registration proves it).
  EXPECT_EQ(t.read("/nix-calls"), "nix-store --load-db\n");
  std::string lib_nar = t.read("/run/sprout/closure/nar/" + hash_part(kLib) + ".nar");
  std::string sys_nar = t.read("/run/sprout/closure/nar/" + hash_part(kSys) + ".nar");
  // --load-db's format: path, hash, size, deriver, count, references (sorted by path).
  EXPECT_EQ(t.read("/load-db.txt"),
            kSys + "\nsha256:" + testing::sha256_hex(sys_nar) + "\n" + std::to_string(sys_nar.size()) + "\n" + kDrv +
                "\n2\n" + kBase + "\n" + kLib + "\n" +
            kLib + "\nsha256:" + testing::sha256_hex(lib_nar) + "\n" + std::to_string(lib_nar.size()) + "\n\n1\n" +
                kBase + "\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "copying path '" + kSys + "' from 'file:///run/sprout/closure'...");
  EXPECT_EQ(lines[1], "copying path '" + kLib + "' from 'file:///run/sprout/closure'...");
  EXPECT_NE(lines[2].find("imported 2 of the closure's 3 paths"), std::string::npos) << lines[2];
}

TEST_F(Import, ReadsTheDisksIndexOfNarinfosWhereItHasOne) {
  index_narinfos();
  ImportOutcome o = run();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_EQ(o.walked, 3u);
  EXPECT_EQ(o.imported, 2u);
  EXPECT_EQ(t.read("/nix/store/" + kLib.substr(11)), "library");
  std::string lib_nar = t.read("/run/sprout/closure/nar/" + hash_part(kLib) + ".nar");
  EXPECT_NE(t.read("/load-db.txt").find(kLib + "\nsha256:" + testing::sha256_hex(lib_nar) + "\n"), std::string::npos);
}

TEST_F(Import, AnIndexLackingAPathOfTheClosureIsAnErrorNamingIt) {
  index_narinfos(kLib);
  ImportOutcome o = run();
  EXPECT_FALSE(o.ok);
  std::string e = errors(o);
  EXPECT_NE(e.find("sprout-narinfos has no narinfo of " + kLib), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(t.path(kSys)));
  EXPECT_FALSE(fs::exists(t.path("/load-db.txt")));
}

// Each path's lock is held until all are registered: a closure of more paths than
// the soft limit of open files (1024 under systemd) needs it raised. In a child, whose
// limits are its own.
TEST_F(Import, LocksMorePathsThanTheSoftLimitOfOpenFiles) {
  std::vector<std::string> refs{kBase, kLib};
  for (int i = 0; i < 100; ++i) {
    std::string p = fmt::format("/nix/store/{:0>32}-p{}", i, i);
    add(p, Nar().file(std::to_string(i)), {});
    refs.push_back(p);
  }
  add(kSys, Nar().file("system"), refs);
  auto in_child = [&](rlim_t soft, rlim_t hard) {
    pid_t pid = ::fork();
    if (pid == 0) {
      struct rlimit rl{soft, hard};
      if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::_exit(9);
      ImportOutcome o = run();
      ::_exit(o.ok ? 0 : errors(o).find("RLIMIT_NOFILE's hard limit") != std::string::npos ? 3 : 4);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  };
  struct rlimit now;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  if (now.rlim_max != RLIM_INFINITY && now.rlim_max < 1024) GTEST_SKIP() << "the hard limit is " << now.rlim_max;
  // Too few allowed at all: a clear error, nothing written.
  EXPECT_EQ(in_child(64, 64), 3);
  EXPECT_FALSE(fs::exists(t.path(refs.back())));
  // The soft limit below what is needed: raised, and every path imported.
  EXPECT_EQ(in_child(64, now.rlim_max), 0);
  EXPECT_EQ(t.read(refs.back()), "99");
  EXPECT_EQ(t.read(kSys), "system");
  for (const auto& p : refs)
    if (p != kBase) remove_tree(t.path(p).string());
}

TEST_F(Import, ChecksTheHostsXxh3WhereTheDiskListsIt) {
  add_checksums();
  ImportOutcome o = run();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_EQ(o.checked_xxh3, 2u);
  EXPECT_EQ(o.checked_sha256, 0u);
  EXPECT_EQ(t.read("/nix/store/" + kLib.substr(11)), "library");
}

TEST_F(Import, AFlippedByteFailsTheXxh3CheckToo) {
  add_checksums();
  flip_lib_byte();
  ImportOutcome o = run();
  EXPECT_FALSE(o.ok);
  std::string e = errors(o);
  EXPECT_NE(e.find("error: hash mismatch importing path '" + kLib + "';"), std::string::npos) << e;
  EXPECT_NE(e.find("specified: xxh3-128:"), std::string::npos) << e;
  EXPECT_NE(e.find("got:       xxh3-128:"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(fs::symlink_status(t.path(kSys))));
  EXPECT_FALSE(fs::exists(fs::symlink_status(t.path(kLib))));
  EXPECT_FALSE(fs::exists(t.path("/load-db.txt")));
}

TEST_F(Import, ANarinfoWhoseNarHashIsNotTheListsWritesNothing) {
  add_checksums();
  std::string f = "/run/sprout/closure/" + hash_part(kLib) + ".narinfo";
  std::string text = t.read(f);
  std::string hash = text.substr(text.find("NarHash: sha256:") + 16, 64), other = hash;
  other[0] = other[0] == 'a' ? 'b' : 'a';
  for (std::size_t at; (at = text.find(hash)) != std::string::npos;) text.replace(at, 64, other);
  t.write(f, text);  // FileHash and NarHash alike: what would be registered
  ImportOutcome o = run();
  EXPECT_FALSE(o.ok);
  EXPECT_NE(errors(o).find("the closure disk is damaged"), std::string::npos) << errors(o);
  EXPECT_FALSE(fs::exists(t.path(kSys)));
  EXPECT_FALSE(fs::exists(t.path("/load-db.txt")));
}

TEST_F(Import, ANarTheListLeavesOutIsCheckedWithSha256) {
  add_checksums();
  std::string list = t.read("/run/sprout/closure/sprout-nar-xxh3");
  list = list.substr(list.find('\n') + 1);  // the lib's line (written first) gone
  t.write("/run/sprout/closure/sprout-nar-xxh3", list);
  ImportOutcome o = run();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_EQ(o.checked_xxh3, 1u);
  EXPECT_EQ(o.checked_sha256, 1u);
}

// Nix's collector holds gc.lock exclusively while it runs: the import waits for it,
// and takes each path's lock as Nix does, leaving no lock file behind.
TEST_F(Import, WaitsForARunningCollectionAndLeavesNoLockFiles) {
  int gc = ::open(t.path("/nix/var/nix/gc.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(gc, 0);
  ASSERT_EQ(::flock(gc, LOCK_EX), 0);
  std::thread release([gc] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::close(gc);
  });
  ImportOutcome o = run();
  release.join();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_NE(std::find(lines.begin(), lines.end(), "waiting for the big garbage collector lock..."), lines.end());
  for (const auto& e : fs::directory_iterator(t.path("/nix/store")))
    EXPECT_EQ(e.path().extension(), "") << e.path();
}

// A lock file its holder could not delete (non-empty, still there) is stale forever:
// taken over, not waited on.
TEST_F(Import, TakesOverALockFileLeftStaleInTheStore) {
  std::string lock = "/nix/store/" + kLib.substr(11) + ".lock";
  t.write(lock, "d");
  ImportOutcome o = run();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_FALSE(fs::exists(t.path(lock)));
}

// A failed import removes what it wrote while it still holds the paths' locks: a Nix
// waiting for one (here, a thread started as the import reaches that path) must find
// the path's place empty when it gets the lock, never the import's partial copy.
TEST_F(Import, AFailedImportRemovesWhatItWroteBeforeItUnlocks) {
  flip_lib_byte();
  std::string lock = t.path("/nix/store/" + kLib.substr(11) + ".lock").string();
  std::string lib = t.path(kLib).string();
  std::thread waiter;
  std::atomic<int> seen{-1};  // 1: the partial copy was there when the lock came
  ClosureImport ci;
  ci.root = t.root().string();
  ci.closure_dir = "/run/sprout/closure";
  ci.system = kSys;
  ci.nix_bin_dir = t.path("/fake-nix").string();
  ci.on_line = [&](std::string_view l) {
    if (l.find("copying path '" + kLib + "'") == std::string_view::npos || waiter.joinable()) return;
    waiter = std::thread([&] {
      int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);  // held by the import by now
      if (fd < 0) return;
      ::flock(fd, LOCK_EX);
      struct stat st;
      seen = ::lstat(lib.c_str(), &st) == 0 ? 1 : 0;
      ::close(fd);
    });
  };
  ImportOutcome o = import_closure(ci);
  ASSERT_TRUE(waiter.joinable());
  waiter.join();
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(seen.load(), 0) << "the lock was released before the partial copy was removed";
}

TEST_F(Import, ABadChecksumListIsAnErrorNamingIt) {
  t.write("/run/sprout/closure/sprout-nar-xxh3", "nar/x.nar 123\n");
  ImportOutcome o = run();
  EXPECT_FALSE(o.ok);
  EXPECT_NE(errors(o).find("sprout-nar-xxh3 line 1"), std::string::npos) << errors(o);
  EXPECT_FALSE(fs::exists(t.path(kSys)));
}

TEST_F(Import, NothingToDoWhenTheStoreHasItAll) {
  t.write("/valid", kBase + "\n" + kLib + "\n" + kSys + "\n");
  t.write(kLib, "in the store");
  t.write(kSys + "/in-the-store", "");
  ImportOutcome o = run();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_EQ(o.imported, 0u);
  EXPECT_EQ(t.read("/nix-calls"), "nix-store --check-validity --print-invalid " + kSys + " " + kLib + "\n")
      << "the base is there with no NAR on the disk: not asked about";
}

TEST_F(Import, AHashMismatchRemovesWhatItWroteAndRegistersNothing) {
  flip_lib_byte();
  ImportOutcome o = run();
  EXPECT_FALSE(o.ok);
  std::string e = errors(o);
  EXPECT_NE(e.find("error: hash mismatch importing path '" + kLib + "';"), std::string::npos) << e;
  EXPECT_NE(e.find("specified: sha256:"), std::string::npos) << e;
  EXPECT_NE(e.find("nothing was registered"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(fs::symlink_status(t.path(kSys)))) << "the system, unpacked first, is removed";
  EXPECT_FALSE(fs::exists(fs::symlink_status(t.path(kLib))));
  EXPECT_FALSE(fs::exists(t.path("/nix-calls"))) << "no --load-db (nor a question)";
}

TEST_F(Import, ANixThatFailsToRegisterIsAnErrorWithItsWords) {
  std::string r = t.root().string();
  t.write("/fake-nix/nix-store",
          "#!/bin/sh\n"
          "if [ \"$1\" = --load-db ]; then echo 'error: database is locked' >&2; exit 1; fi\n"
          "shift 2\n"
          "for p; do grep -qxF \"$p\" " + r + "/valid 2>/dev/null || echo \"$p\"; done\n",
          true);
  ImportOutcome o = run();
  EXPECT_FALSE(o.ok);
  std::string e = errors(o);
  EXPECT_NE(e.find("nix-store --load-db exited with status 1"), std::string::npos) << e;
  EXPECT_NE(e.find("error: database is locked"), std::string::npos) << e;
}

TEST_F(Import, APathTheDiskDoesNotHoldWritesNothing) {
  t.write("/valid", "");
  fs::remove_all(t.path(kBase));  // the base is not in this guest's store
  ImportOutcome o = run();
  EXPECT_FALSE(o.ok);
  std::string e = errors(o);
  EXPECT_NE(e.find("lacks 1 path(s) of " + kSys + " whose NAR the closure disk does not hold"), std::string::npos)
      << e;
  EXPECT_NE(e.find(kBase + " (its NAR, nar/in-the-base-system-not-on-this-disk.nar, is not on the disk)"),
            std::string::npos)
      << e;
  EXPECT_FALSE(fs::exists(t.path(kSys)));
  EXPECT_FALSE(fs::exists(t.path(kLib)));
}

TEST_F(Import, AnInvalidLeftoverIsReplaced) {
  t.write(kSys + "/junk", "from an interrupted import");
  fs::permissions(t.path(kSys), fs::perms::owner_read | fs::perms::owner_exec);
  ImportOutcome o = run();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_FALSE(fs::exists(t.path(kSys + "/junk")));
  EXPECT_EQ(t.read(kSys + "/bin/switch"), "#!/bin/sh\n");
}

// NixOS mounts /nix/store read-only; the import writes it as Nix does (a private mount
// namespace of its own, the mount remounted writable there). Here: the fake root's
// store bind-mounted read-only on itself, in a child with a mount namespace of its own.
TEST_F(Import, WritesAStoreMountedReadOnly) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount namespaces)";
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  std::string store = t.path("/nix/store").string();
  EXPECT_EXIT(
      {
        bool ro = ::unshare(CLONE_NEWNS) == 0 && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
                  ::mount(store.c_str(), store.c_str(), nullptr, MS_BIND, nullptr) == 0 &&
                  ::mount(nullptr, store.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0 &&
                  ::mkdir((store + "/probe").c_str(), 0755) != 0 && errno == EROFS;
        if (!ro) std::_Exit(3);
        ImportOutcome o = run();
        std::_Exit(o.ok && t.read(kSys + "/bin/switch") == "#!/bin/sh\n" ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(Import, ABadNarinfoNamesTheFieldAndWritesNothing) {
  std::string f = "/run/sprout/closure/" + hash_part(kLib) + ".narinfo";
  std::string good = t.read(f);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    t.write(f, s);
    return errors(run());
  };
  EXPECT_NE(with("Compression: none", "Compression: xz").find("its NAR is compressed (xz)"), std::string::npos);
  EXPECT_NE(with("StorePath: " + kLib, "StorePath: " + kSys).find("describes " + kSys), std::string::npos);
  EXPECT_NE(with("References: " + kBase.substr(11), "References: ../etc").find("reference /nix/store/../etc"),
            std::string::npos);
  EXPECT_NE(with("URL: nar/", "URL: ../../nar/").find("is not on the disk"), std::string::npos);
  EXPECT_NE(with("NarSize: ", "NarSize: x").find("is not a number"), std::string::npos);
  EXPECT_NE(with("NarHash: sha256:", "NarHash: sha256:z").find("is not sha256: and 64 hex"), std::string::npos);
  t.write(f, good);
  std::remove(t.path(f).c_str());
  EXPECT_NE(errors(run()).find("cannot read"), std::string::npos);
  EXPECT_FALSE(fs::exists(t.path(kSys)));
  EXPECT_FALSE(fs::exists(t.path("/load-db.txt")));
}

// The same import against the real Nix of this machine, with a store of its own under
// the test's root (`--store local?root=...`): what it registers is valid and verifies;
// a base path that is in the store but not valid there makes Nix refuse the one
// transaction, and the import removes what it unpacked.
struct RealNixImport : Import {
  std::string nix_store;
  void SetUp() override {
    Import::SetUp();
    nix_store = shell("command -v nix-store", nullptr);
    if (!nix_store.empty() && nix_store.back() == '\n') nix_store.pop_back();
    if (nix_store.empty()) GTEST_SKIP() << "no nix-store on PATH (Debian: nix-bin)";
    t.write("/fake-nix/nix-store",
            "#!/bin/sh\nexec " + nix_store + " --store 'local?root=" + t.root().string() + "' \"$@\"\n", true);
  }
  /// Runs a shell command; its stdout, and its exit status in `status`.
  static std::string shell(const std::string& command, int* status) {
    std::string out;
    FILE* f = ::popen(command.c_str(), "r");
    if (!f) return out;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
    int st = ::pclose(f);
    if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
  }
  std::string nix(const std::string& args, int* status) {
    return shell(t.path("/fake-nix/nix-store").string() + " " + args + " 2>/dev/null", status);
  }
  void register_base() {
    Nar base = Nar().dir().entry("in-the-store").file("").end_entry().end_dir();
    t.write("/base-db", kBase + "\nsha256:" + testing::sha256_hex(base.bytes()) + "\n" +
                            std::to_string(base.bytes().size()) + "\n\n0\n");
    int st = -1;
    nix("--load-db < " + t.path("/base-db").string(), &st);
    ASSERT_EQ(st, 0) << "registering the base";
  }
};

TEST_F(RealNixImport, WhatItRegistersIsValidAndVerifies) {
  register_base();
  ImportOutcome o = run();
  ASSERT_TRUE(o.ok) << errors(o);
  EXPECT_EQ(o.imported, 2u);
  int st = -1;
  EXPECT_EQ(nix("--check-validity --print-invalid " + kSys + " " + kLib + " " + kBase, &st), "");
  EXPECT_EQ(st, 0);
  EXPECT_EQ(nix("--query --references " + kSys, &st), kBase + "\n" + kLib + "\n");
  nix("--verify --check-contents", &st);
  EXPECT_EQ(st, 0) << "nix-store --verify --check-contents";
}

TEST_F(RealNixImport, ABasePathThereButNotValidIsRefusedAndWhatWasUnpackedRemoved) {
  ImportOutcome o = run();  // the base is at its place, but this store never registered it
  EXPECT_FALSE(o.ok);
  std::string e = errors(o);
  EXPECT_NE(e.find("error: registering the 2 unpacked path(s): "), std::string::npos) << e;
  EXPECT_NE(e.find("nix-store --load-db exited with status 1"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("path '" + kBase + "' is not valid"), std::string::npos) << e;
  EXPECT_NE(e.find("(the base system's) is not valid there"), std::string::npos) << e;
  EXPECT_NE(e.find("removed the 2 path(s) this import wrote"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(fs::symlink_status(t.path(kSys))));
  EXPECT_FALSE(fs::exists(fs::symlink_status(t.path(kLib))));
  EXPECT_TRUE(fs::exists(t.path(kBase + "/in-the-store"))) << "the base's place is left as it was";
  int st = -1;
  EXPECT_EQ(nix("--check-validity --print-invalid " + kSys + " " + kLib, &st), kSys + "\n" + kLib + "\n");
  EXPECT_FALSE(fs::exists(t.path(kSys + ".lock"))) << "unlocked";
}

}  // namespace
}  // namespace sprout::agent

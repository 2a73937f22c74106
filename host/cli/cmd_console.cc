// sprout console NAME: attach the terminal to a VM's serial console. The qemu backend
// serves it on STATE/console.sock (and logs it to STATE/console.log whether anyone is
// attached or not); a libvirt domain's is reached through libvirt's API
// (virDomainOpenConsole: libvirtd opens the pty on the domain's host, this one or
// another), one session at a time as with virsh. Ctrl-] detaches, as in virsh and
// telnet. The guest's bytes go to the terminal as they are: that is what a console is
// (sprout's own output is escaped elsewhere).
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "backend/backend.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "spec/spec.h"
#include "base/unix_socket.h"
#include "cli/vm_locator.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

constexpr char kDetach = 0x1d;  // Ctrl-]

/// Raw mode on a terminal for the life of the object; nothing on other streams.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (::isatty(fd_) && ::tcgetattr(fd_, &saved_) == 0) {
      termios raw = saved_;
      ::cfmakeraw(&raw);
      active_ = ::tcsetattr(fd_, TCSANOW, &raw) == 0;
    }
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      pollfd pf{fd, POLLOUT, 0};
      if (::poll(&pf, 1, 5000) <= 0) return false;  // a peer that takes nothing for 5 s
      continue;
    }
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

/// The VM's console session lock (held until it is closed), or a runtime error naming
/// the session that holds it.
int take_console(const Spec& spec) {
  const fs::path lock = spec.state().console_lock();
  int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot open: {}", lock.string(), std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char who[32] = {};
    ssize_t n = ::pread(fd, who, sizeof(who) - 1, 0);
    ::close(fd);
    throw std::runtime_error(fmt::format("{}: an active console session exists ({}); detach it (Ctrl-]) first",
                                         spec.name, n > 0 ? fmt::format("sprout console, pid {}", who)
                                                          : std::string("another sprout console")));
  }
  // Our pid, for a second session's message (nothing depends on it).
  const std::string me = std::to_string(::getpid());
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] ssize_t written = ::pwrite(fd, me.data(), me.size(), 0);
  }
  return fd;
}

/// The qemu backend's console: STATE/console.sock, under the VM's console session lock.
class UnixConsole final : public ConsoleSession {
 public:
  UnixConsole(int session, int sock) : session_(session), sock_(sock) {}
  ~UnixConsole() override {
    ::close(sock_);
    ::close(session_);
  }
  int fd() const override { return sock_; }
  Read read(std::string& out) override {
    long n = read_some(sock_, out);
    if (n > 0) return Read::data;
    return n == -1 ? Read::again : Read::ended;
  }
  bool write(std::string_view bytes) override { return write_all(sock_, bytes.data(), bytes.size()); }
  std::string why() const override { return "the VM's console closed (the VM stopped)"; }

 private:
  int session_, sock_;
};

std::unique_ptr<ConsoleSession> attach_qemu_console(const Spec& spec) {
  // One session at a time, as virsh has it: qemu's socket would queue a second
  // client's keystrokes for nobody while telling it nothing.
  const int session = take_console(spec);
  int sock = connect_unix(spec.console_socket());
  if (sock < 0) {
    const int e = errno;
    ::close(session);
    throw std::runtime_error(fmt::format("{}: no console to attach to ({}: {}); is the VM running? (`sprout status {}`; "
                                         "its past output is in {})",
                                         spec.name, spec.console_socket().string(), std::strerror(e), spec.name,
                                         spec.console_log().string()));
  }
  return std::make_unique<UnixConsole>(session, sock);
}

}  // namespace

int cmd_console(const Invocation& inv) {
  Spec spec = *inv.vm;
  std::unique_ptr<ConsoleSession> console = backend_for(spec).attach_console(spec);
  if (!console) console = attach_qemu_console(spec);
  const bool tty = ::isatty(0) == 1;
  // (On stderr also when it is no terminal: a script can tell when it is attached.)
  fmt::print(stderr, "{}: attached to the console; Ctrl-] detaches{}\n", spec.name, tty ? "\r" : "");
  std::string end;
  {
    RawTerminal raw(0);
    bool stdin_open = true;
    char buf[16384];
    std::string out;
    while (end.empty()) {
      pollfd fds[2] = {{console->fd(), POLLIN, 0}, {0, static_cast<short>(stdin_open ? POLLIN : 0), 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        end = fmt::format("poll: {}", std::strerror(errno));
        break;
      }
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        out.clear();
        ConsoleSession::Read r = console->read(out);
        if (r == ConsoleSession::Read::ended)
          end = console->why();
        else if (!out.empty() && !write_all(1, out.data(), out.size()))
          end = "cannot write to the terminal";
      }
      if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP))) {
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n <= 0) {
          stdin_open = false;  // input ended (a pipe): keep showing the console
          if (!tty && end.empty()) end = "input ended";
        } else {
          auto* at = static_cast<char*>(std::memchr(buf, kDetach, static_cast<std::size_t>(n)));
          std::size_t send = at ? static_cast<std::size_t>(at - buf) : static_cast<std::size_t>(n);
          if (send && !console->write(std::string_view(buf, send)))
            end = console->why().empty() ? "the console took no input (the keys typed were not sent)" : console->why();
          if (at) end = "detached";
        }
      }
    }
  }
  console.reset();
  fmt::print(stderr, "{}{}: {}\n", tty ? "\n" : "", spec.name, end);
  return 0;
}

const Command kConsoleCommand = {"console", "attach to a VM's serial console (Ctrl-] detaches)",
    "Attach to a VM's serial console (Ctrl-] detaches). qemu backend: STATE/console.sock, while\n"
    "the VM runs (everything it prints is also in STATE/console.log). libvirt: the domain's\n"
    "console through libvirt's API (virDomainOpenConsole), on this host or another.",
    Needs::one_vm, nullptr, cmd_console};

}  // namespace sprout

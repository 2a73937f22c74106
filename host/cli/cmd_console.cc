// sprout console NAME: attach the terminal to a VM's serial console. The qemu backend
// serves it on STATE/console.sock (and logs it to STATE/console.log whether anyone is
// attached or not); libvirt's is a pty that `virsh console` attaches to, which this
// runs. Ctrl-] detaches, as in virsh and telnet. The guest's bytes go to the terminal
// as they are: that is what a console is (sprout's own output is escaped elsewhere).
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "backend/backend.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "spec/spec.h"
#include "subprocess.h"
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

}  // namespace

namespace {

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

}  // namespace

int cmd_console(const Invocation& inv) {
  Spec spec = *inv.vm;
  if (auto argv = backend_for(spec).console_command(spec); !argv.empty()) {
    fmt::print(stderr, "{}: the console is {}'s: {}\n", spec.name, argv[0], format_command(argv));
    try {
      exec_argv(argv);
    } catch (const std::system_error& e) {
      throw std::runtime_error(fmt::format("cannot run {} ({}): install it (virsh: libvirt-clients), or run `{}`",
                                           argv[0], e.code().message(), format_command(argv)));
    }
  }
  // One session at a time, as virsh has it: qemu's socket would queue a second
  // client's keystrokes for nobody while telling it nothing.
  const int session = take_console(spec);
  int sock = connect_unix(spec.console_socket());
  if (sock < 0) {
    throw std::runtime_error(fmt::format("{}: no console to attach to ({}: {}); is the VM running? (`sprout status {}`; "
                                         "its past output is in {})",
                                         spec.name, spec.console_socket().string(), std::strerror(errno), spec.name,
                                         spec.console_log().string()));
  }
  const bool tty = ::isatty(0) == 1;
  if (tty) fmt::print(stderr, "{}: attached to the console; Ctrl-] detaches\r\n", spec.name);
  std::string end;
  {
    RawTerminal raw(0);
    bool stdin_open = true;
    char buf[16384];
    while (end.empty()) {
      pollfd fds[2] = {{sock, POLLIN, 0}, {0, static_cast<short>(stdin_open ? POLLIN : 0), 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        end = fmt::format("poll: {}", std::strerror(errno));
        break;
      }
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = ::read(sock, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          end = "the VM's console closed (the VM stopped)";
        } else if (n > 0 && !write_all(1, buf, static_cast<std::size_t>(n))) {
          end = "cannot write to the terminal";
        }
      }
      if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP))) {
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n <= 0) {
          stdin_open = false;  // input ended (a pipe): keep showing the console
          if (!tty) end = "input ended";
        } else {
          auto* at = static_cast<char*>(std::memchr(buf, kDetach, static_cast<std::size_t>(n)));
          std::size_t send = at ? static_cast<std::size_t>(at - buf) : static_cast<std::size_t>(n);
          if (send && !write_all(sock, buf, send)) end = "the VM's console closed (the VM stopped)";
          if (at) end = "detached";
        }
      }
    }
  }
  ::close(sock);
  ::close(session);
  if (tty) fmt::print(stderr, "\n{}: {}\n", spec.name, end);
  return 0;
}

const Command kConsoleCommand = {"console", "attach to a VM's serial console (Ctrl-] detaches)",
    "Attach to a VM's serial console (Ctrl-] detaches). qemu backend: STATE/console.sock, while\n"
    "the VM runs (everything it prints is also in STATE/console.log). libvirt: runs\n"
    "`virsh -c URI console NAME`.",
    Needs::one_vm, nullptr, cmd_console};

}  // namespace sprout

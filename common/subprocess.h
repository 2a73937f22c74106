// Running other programs. spawn() is the one place where sprout starts a child: an
// argument vector (no shell), every signal handler reset and the signal mask set, its
// own process group, stdin from /dev/null, no descriptor of ours but 0-2, and it dies
// with the thread that started it (PR_SET_PDEATHSIG), so a killed sprout leaves no
// mkfs.ext4, qemu-img or qemu behind. A program that cannot be executed is an error of
// spawn(), not an exit status 127.
//
// run_process() spawns and stays with the child: output captured and/or streamed line
// by line, a timeout that stops the child's whole process group (SIGTERM, then SIGKILL
// after a grace period), optional cancellation through a file descriptor becoming
// readable, and the child always reaped before returning; a child reaped by somebody
// else (SIGCHLD ignored) ends the wait with `error` set instead of spinning.
// exec_argv() is for the commands that become another program (ssh, virsh console).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sprout {

struct SpawnOptions {
  /// argv[0] is looked up in $PATH (the child's, from `env`) unless it holds a '/'.
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  ///< set on top of the current environment
  bool stdin_null = true;                  ///< false: stdin is inherited
  int stdin_fd = -1;                       ///< >= 0: the child's stdin (wins over stdin_null)
  int stdout_fd = -1;                      ///< >= 0: the child's stdout; else inherited
  int stderr_fd = -1;                      ///< >= 0: the child's stderr (may be stdout_fd); else inherited
  /// The child's signal mask: nothing blocked unless given (a caller that blocks
  /// signals for a signalfd passes the mask it had before).
  std::optional<sigset_t> signal_mask;
  /// true: the child outlives this process: it leads a session of its own (setsid),
  /// and is not killed when the calling thread ends (no PR_SET_PDEATHSIG).
  bool detach = false;
  /// true: the child is the program the user talks to through the terminal (ssh): it
  /// stays in this process group, the terminal's foreground, instead of leading its own.
  bool interactive = false;
};

struct Child {
  pid_t pid = -1;     ///< > 0: started; the caller reaps it (waitpid)
  std::string error;  ///< why not: "PROGRAM: No such file or directory", "PROGRAM: fork: ..."
  explicit operator bool() const { return pid > 0; }
};

/// Starts options.argv and returns once the child runs the program (its exec
/// succeeded), or with Child::error when it could not: not found, not executable,
/// fork or pipe failed. The child, before its exec: dies when the thread that called
/// spawn() ends (PR_SET_PDEATHSIG SIGKILL), leads its own process group (kill(-pid)
/// reaches its descendants; the terminal's Ctrl-C does not), every signal handler at
/// its default, the mask of SpawnOptions::signal_mask, and every descriptor but 0-2
/// closed at exec (close_range CLOSE_RANGE_CLOEXEC), whether or not it was opened
/// with O_CLOEXEC. Only async-signal-safe calls run between fork and exec (this process
/// may have other threads).
Child spawn(const SpawnOptions& options);

/// Replaces this process with argv (looked up in $PATH as execvp does), for commands
/// that become another program. When the exec fails it throws std::system_error with
/// the exec's errno, whose what() is "cannot run PROGRAM: No such file or directory".
[[noreturn]] void exec_argv(const std::vector<std::string>& argv);

struct ProcessOptions {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  ///< set on top of the current environment
  std::chrono::milliseconds timeout{0};    ///< 0: no timeout
  std::chrono::milliseconds kill_grace{2000};
  /// Called for each line of output (stdout and stderr merged), without the '\n'.
  /// Lines longer than max_line_bytes are split (line_splitter.h).
  std::function<void(std::string_view)> on_line;
  bool capture = true;                  ///< keep the output in ProcessResult::output
  std::size_t max_capture_bytes = 16 << 20;  ///< older output is dropped beyond this
  std::size_t max_line_bytes = 2048;
  int cancel_fd = -1;                   ///< readable => stop the child like a timeout
  bool stdin_null = true;
  int stdin_fd = -1;                    ///< >= 0: the child's stdin, e.g. a file to feed it
  /// >= 0: the child's stderr goes to this descriptor, so the output (and on_line)
  /// is its stdout alone: for programs whose stdout is data and stderr chatter.
  int stderr_fd = -1;
};

struct ProcessResult {
  bool started = false;   ///< false: exec failed (error says why)
  int exit_code = -1;     ///< when it exited
  int signal = 0;         ///< when it was killed by a signal
  bool timed_out = false;
  bool cancelled = false;
  std::string output;     ///< merged stdout+stderr when capture was on
  std::string error;      ///< why it could not start, or why its status is unknown

  bool ok() const { return started && error.empty() && !timed_out && !cancelled && signal == 0 && exit_code == 0; }
  /// "exited with status 3", "killed by signal 9", "timed out after 5s", ...
  std::string describe() const;
  /// The last `n` non-empty lines of output.
  std::vector<std::string> last_lines(std::size_t n) const;
};

/// spawn(), then stays with the child until it is reaped (and its output drained).
ProcessResult run_process(const ProcessOptions& options);

/// Convenience: run and capture, throwing std::runtime_error naming the command and its
/// output when it does not exit 0.
std::string run_checked(const std::vector<std::string>& argv,
                        std::chrono::milliseconds timeout = std::chrono::minutes(10));

/// Where spawn() and run_process() find `program`: itself when it holds a '/', else the first
/// executable of that name in $PATH; "" when there is none.
std::string find_program(const std::string& program);

/// Joins an argument vector for messages (quoting arguments with spaces).
std::string format_command(const std::vector<std::string>& argv);

}  // namespace sprout

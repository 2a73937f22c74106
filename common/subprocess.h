// Running other programs: an argument vector (no shell), output captured and/or
// streamed line by line, a timeout that stops the child's whole process group
// (SIGTERM, then SIGKILL after a grace period), optional cancellation through a file
// descriptor becoming readable, and the child always reaped before returning. The
// child dies with the thread that runs it (PR_SET_PDEATHSIG), so a killed sprout
// leaves no mkfs.ext4 or qemu-img behind; a child reaped by somebody else (SIGCHLD
// ignored) ends the wait with `error` set instead of spinning.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sprout {

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

ProcessResult run_process(const ProcessOptions& options);

/// Convenience: run and capture, throwing std::runtime_error naming the command and its
/// output when it does not exit 0.
std::string run_checked(const std::vector<std::string>& argv,
                        std::chrono::milliseconds timeout = std::chrono::minutes(10));

/// Where run_process() finds `program`: itself when it holds a '/', else the first
/// executable of that name in $PATH; "" when there is none.
std::string find_program(const std::string& program);

/// Joins an argument vector for messages (quoting arguments with spaces).
std::string format_command(const std::vector<std::string>& argv);

}  // namespace sprout

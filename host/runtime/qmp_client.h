// A minimal QMP client for the supervisor's poll loop, which it never blocks: a
// connection is started (a unix socket connects or fails at once), then driven by
// handle() whenever poll reports its descriptor ready: the greeting, qmp_capabilities
// and its answer, then asynchronous events (SHUTDOWN, RESET, POWERDOWN, ...).
// Commands are queued and written as the socket takes them (POLLOUT while output is
// queued), never waiting for their answers. The handshake and every queued write have
// a deadline; expire() ends a connection that has passed one, so a qemu that accepts
// but never answers or never reads costs the loop nothing but that connection.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "line_splitter.h"

namespace sprout {

class QmpClient {
 public:
  using Clock = std::chrono::steady_clock;
  /// What one handle() takes at most; more waits for the next poll.
  static constexpr std::size_t kMaxBytesPerCall = 256 * 1024;
  static constexpr std::size_t kMaxMessagesPerCall = 1024;

  QmpClient() = default;
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  /// Starts a connection whose handshake (greeting, qmp_capabilities) must be done
  /// within `handshake_timeout`. Never blocks. False (with `error` set) when the socket
  /// cannot be connected (not there yet, nobody listening, its backlog full).
  bool start(const std::filesystem::path& socket, std::chrono::milliseconds handshake_timeout, std::string* error);
  /// A connection exists (handshake under way or done).
  bool active() const { return fd_ >= 0; }
  /// The handshake is done: commands can be sent.
  bool ready() const { return fd_ >= 0 && state_ == State::ready; }
  int fd() const { return fd_; }
  /// What to poll the descriptor for: POLLIN, and POLLOUT while output is queued.
  short poll_events() const;

  /// Queues {"execute": command}, to be written within `write_timeout`. False when
  /// not ready() (nothing is queued then).
  bool send(const std::string& command, std::chrono::milliseconds write_timeout = std::chrono::milliseconds(2000));
  /// Handles what poll reported for fd(): writes what is queued, reads what arrived and
  /// advances the handshake. Returns the messages received after it (events, replies).
  /// When the connection ends here (qemu closed it, an error, bad greeting), the client
  /// is closed and lost() says why.
  std::vector<nlohmann::json> handle(short revents);
  /// The earliest deadline of the connection (handshake, queued output), if any.
  std::optional<Clock::time_point> deadline() const;
  /// Closes the connection when `now` is past its deadline. True when it did.
  bool expire(Clock::time_point now = Clock::now());

  /// Why the last connection ended, "" while none has.
  const std::string& lost() const { return lost_; }
  /// The last connection that ended had finished its handshake.
  bool lost_after_ready() const { return lost_after_ready_; }
  /// The last connection that ended still had commands not (wholly) written.
  bool lost_unsent() const { return lost_unsent_; }

  void close();

 private:
  enum class State { greeting, negotiating, ready };
  void queue(const std::string& command, Clock::time_point deadline);
  void fail(std::string why);
  bool write_some();

  int fd_ = -1;
  State state_ = State::greeting;
  std::string socket_;
  LineSplitter in_{1u << 20, LineSplitter::Overlong::drop};
  std::string out_;
  std::optional<Clock::time_point> handshake_deadline_;
  std::optional<Clock::time_point> write_deadline_;
  std::string lost_;
  bool lost_after_ready_ = false;
  bool lost_unsent_ = false;
};

}  // namespace sprout

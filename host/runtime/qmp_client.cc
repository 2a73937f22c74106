#include "runtime/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "error.h"
#include "strict_json.h"
#include "base/unix_socket.h"

namespace sprout {

using nlohmann::json;

QmpClient::~QmpClient() { close(); }

void QmpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  state_ = State::greeting;
  in_.reset();
  out_.clear();
  handshake_deadline_.reset();
  write_deadline_.reset();
}

void QmpClient::fail(std::string why) {
  lost_ = std::move(why);
  lost_after_ready_ = state_ == State::ready;
  lost_unsent_ = !out_.empty();
  close();
}

bool QmpClient::start(const std::filesystem::path& socket, std::chrono::milliseconds handshake_timeout,
                      std::string* error) {
  close();
  socket_ = socket.string();
  fd_ = connect_unix(socket);  // a unix socket connects or fails at once (never EINPROGRESS)
  if (fd_ < 0) {
    *error = "cannot connect to " + socket_ + ": " + std::strerror(errno);
    return false;
  }
  handshake_deadline_ = Clock::now() + handshake_timeout;
  return true;
}

short QmpClient::poll_events() const { return static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)); }

void QmpClient::queue(const std::string& command, Clock::time_point deadline) {
  if (out_.empty()) write_deadline_ = deadline;  // the oldest unwritten byte's deadline
  out_ += json{{"execute", command}}.dump() + "\n";
  write_some();
}

bool QmpClient::send(const std::string& command, std::chrono::milliseconds write_timeout) {
  if (!ready()) return false;
  queue(command, Clock::now() + write_timeout);
  return fd_ >= 0;
}

bool QmpClient::write_some() {
  while (!out_.empty()) {
    ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;  // the rest at the next POLLOUT
    fail("cannot write to " + socket_ + ": " + std::strerror(errno));
    return false;
  }
  write_deadline_.reset();
  return true;
}

std::vector<json> QmpClient::handle(short revents) {
  std::vector<json> out;
  if (fd_ < 0) return out;
  if ((revents & POLLOUT) && !write_some()) return out;
  bool closed = false;
  std::vector<json> got;
  std::string data;
  // qemu runs as another user and may be a guest's by now: what it sends is bounded
  // per call (the rest waits for the next poll), so a stream of replies can neither
  // grow memory nor hold the supervisor's loop.
  std::size_t taken = 0;
  while (taken < kMaxBytesPerCall && got.size() < kMaxMessagesPerCall) {
    data.clear();
    long n = read_some(fd_, data, 16 * 1024);
    if (n > 0) {
      taken += static_cast<std::size_t>(n);
      in_.feed(data, [&](std::string_view line) {
        try {
          json j = parse_json_loosely(line, "QMP reply");
          if (j.is_object()) got.push_back(std::move(j));
        } catch (const InputError&) {  // not JSON, or nested too deep: skipped
        }
      });  // (a line over 1 MiB is dropped: qemu's are short)
      continue;
    }
    if (n == 0 || n == -2) closed = true;
    break;
  }
  for (auto& j : got) {
    if (fd_ < 0) break;
    switch (state_) {
      case State::greeting:
        if (!j.contains("QMP")) break;  // anything before the greeting is skipped
        state_ = State::negotiating;
        queue("qmp_capabilities", *handshake_deadline_);
        break;
      case State::negotiating:
        if (j.contains("error")) {
          fail("QMP capabilities negotiation refused on " + socket_);
        } else if (j.contains("return")) {
          state_ = State::ready;
          handshake_deadline_.reset();
        }
        break;
      case State::ready:
        out.push_back(std::move(j));
        break;
    }
  }
  if (closed && fd_ >= 0) fail(state_ == State::ready ? "qemu closed " + socket_ : "qemu closed " + socket_ + " during the QMP handshake");
  return out;
}

std::optional<QmpClient::Clock::time_point> QmpClient::deadline() const {
  if (fd_ < 0) return std::nullopt;
  std::optional<Clock::time_point> d = handshake_deadline_;
  if (write_deadline_ && (!d || *write_deadline_ < *d)) d = write_deadline_;
  return d;
}

bool QmpClient::expire(Clock::time_point now) {
  if (fd_ < 0) return false;
  if (handshake_deadline_ && now >= *handshake_deadline_) {
    fail(state_ == State::greeting ? "no QMP greeting on " + socket_ : "no answer to qmp_capabilities on " + socket_);
    return true;
  }
  if (write_deadline_ && now >= *write_deadline_) {
    fail("qemu does not read " + socket_);
    return true;
  }
  return false;
}

}  // namespace sprout

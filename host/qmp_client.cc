#include "qmp_client.h"

#include <poll.h>
#include <unistd.h>

#include <chrono>

#include "unix_socket.h"

namespace sprout {

using nlohmann::json;

QmpClient::~QmpClient() { close(); }

void QmpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

bool QmpClient::connect(const std::filesystem::path& socket, int timeout_ms, std::string* error) {
  close();
  fd_ = connect_unix(socket);
  if (fd_ < 0) {
    *error = "cannot connect to " + socket.string();
    return false;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // Waits for one message that satisfies pred (events in between are skipped).
  auto wait_for = [&](auto pred) -> bool {
    while (true) {
      bool closed = false;
      for (const auto& m : read_messages(&closed))
        if (pred(m)) return true;
      if (closed) return false;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    }
  };
  if (!wait_for([](const json& m) { return m.contains("QMP"); })) {
    *error = "no QMP greeting on " + socket.string();
    close();
    return false;
  }
  if (!send("qmp_capabilities") || !wait_for([](const json& m) { return m.contains("return") || m.contains("error"); })) {
    *error = "QMP capabilities negotiation failed on " + socket.string();
    close();
    return false;
  }
  return true;
}

bool QmpClient::send(const std::string& command) {
  if (fd_ < 0) return false;
  return write_all(fd_, json{{"execute", command}}.dump() + "\n", 2000);
}

std::vector<json> QmpClient::read_messages(bool* closed) {
  std::vector<json> out;
  *closed = false;
  if (fd_ < 0) {
    *closed = true;
    return out;
  }
  while (true) {
    long n = read_some(fd_, buffer_);
    if (n > 0) {
      if (buffer_.size() > (1u << 20)) buffer_.clear();  // never grow without bound
      continue;
    }
    if (n == 0 || n == -2) *closed = true;
    break;
  }
  std::size_t pos;
  while ((pos = buffer_.find('\n')) != std::string::npos) {
    json j = json::parse(buffer_.substr(0, pos), nullptr, false);
    buffer_.erase(0, pos + 1);
    if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
  }
  if (*closed) close();
  return out;
}

}  // namespace sprout

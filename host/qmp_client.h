// A minimal QMP client for the supervisor: connect, negotiate capabilities (bounded
// waits), send commands without waiting for their answers, and read asynchronous
// events (SHUTDOWN, RESET, POWERDOWN, ...) from the main poll loop.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sprout {

class QmpClient {
 public:
  QmpClient() = default;
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  /// Connects and negotiates (greeting, qmp_capabilities) within timeout_ms.
  /// False (with `error` set) when the socket is not there yet or qemu misbehaves.
  bool connect(const std::filesystem::path& socket, int timeout_ms, std::string* error);
  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  /// Sends {"execute": name}. False when the connection is gone.
  bool send(const std::string& command);
  /// Reads what is available; returns the complete messages (events and replies).
  /// Sets *closed when qemu closed the connection (the client is then disconnected).
  std::vector<nlohmann::json> read_messages(bool* closed);
  void close();

 private:
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace sprout

#include "runtime/channel_source.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/unix_socket.h"
#include "status/run_state.h"

namespace sprout {

namespace {

class UnixChannelSource final : public ChannelSource {
 public:
  explicit UnixChannelSource(std::filesystem::path p) : path_(std::move(p)) {}
  ~UnixChannelSource() override { close(); }

  Opened open() override {
    close();
    fd_ = connect_unix(path_);
    if (fd_ < 0) return {Opened::not_running, std::strerror(errno)};
    // (qemu made the socket before listening on it: it is there now.)
    identity_ = channel_identity(path_);
    return {};
  }
  std::string run_identity() const override { return fd_ >= 0 ? identity_ : ""; }
  int fd() const override { return fd_; }
  Read read(std::string& out, std::size_t max) override {
    if (fd_ < 0) return Read::ended;
    long n = read_some(fd_, out, max);
    if (n > 0) return Read::data;
    if (n == -1) return Read::again;
    why_ = n == 0 ? "the status socket closed (its qemu exited)"
                  : std::string("reading the status socket: ") + std::strerror(errno);
    close();
    return Read::ended;  // a unix socket's peer is qemu itself: either way its run is over
  }
  void close() override {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  std::string why() const override { return why_; }
  std::string describe() const override { return path_.string(); }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::string identity_, why_;
};

}  // namespace

std::unique_ptr<ChannelSource> unix_channel_source(std::filesystem::path socket) {
  return std::make_unique<UnixChannelSource>(std::move(socket));
}

}  // namespace sprout

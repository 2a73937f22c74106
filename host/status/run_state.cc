#include "status/run_state.h"

#include <sys/stat.h>

#include <fmt/format.h>

#include "base/terminal_text.h"

namespace sprout {

std::string channel_identity(const std::filesystem::path& socket) {
  struct stat s {};
  if (::stat(socket.c_str(), &s) != 0 || !S_ISSOCK(s.st_mode)) return "";
  return fmt::format("{}:{}:{}.{:09}", s.st_dev, s.st_ino, s.st_ctim.tv_sec, s.st_ctim.tv_nsec);
}

bool is_libvirt_channel(const std::string& identity) { return identity.rfind("libvirt:", 0) == 0; }

RunView view_run(const Spec& spec, const RecordFile& file) {
  RunView v;
  if (file.state == RecordFile::missing) return v;
  if (file.state == RecordFile::corrupt) {
    v.state = RunView::corrupt;
    return v;
  }
  const HostPart& host = file.record.host;
  v.started_ms = host.started_ms;
  v.connected = host.state == HostState::running;
  if (host.state == HostState::stopped) {
    v.state = RunView::ended;
    v.how = host.how.empty() ? "stopped" : for_terminal(host.how);
    v.ended_ms = host.stopped_ms;
    return v;
  }
  if (!host.supervisor || !host.supervisor->alive()) {
    v.state = RunView::ended;
    std::string who = host.watch ? "sprout watch" : "sprout run";
    v.how = host.supervisor
                ? fmt::format("its supervisor ({}, pid {}) is gone without saying how the run ended (killed?)", who,
                              host.supervisor->pid)
                : "the record names no supervisor";
    return v;
  }
  if (host.watch) {
    // A watcher outlives the runs it records: the run it describes is the one whose
    // status socket is still the one it connected to.
    if (host.state == HostState::waiting && host.channel.empty()) {
      // Started, and no VM has connected to it yet: no run to describe so far (a
      // `wait` begun just before the watcher must not take this for a run that ended).
      v.state = RunView::none;
      return v;
    }
    if (host.state == HostState::reconnecting) {
      // It lost its way to the channel (libvirt restarted or out of reach) and takes
      // the run to go on until it finds otherwise: live, not connected.
      v.state = RunView::live;
      return v;
    }
    if (host.state != HostState::running) {
      v.state = RunView::ended;
      v.how = host.how.empty() ? "no VM is connected to its recorder (sprout watch)" : for_terminal(host.how);
      return v;
    }
    // A run read through libvirt's API has no socket here to compare: its watcher
    // notices the end of the channel itself (it ends with qemu).
    if (!is_libvirt_channel(host.channel) && host.channel != channel_identity(spec.status_socket())) {
      v.state = RunView::ended;
      v.how = "the VM's status socket is not the one its recorder connected to (the VM was restarted)";
      return v;
    }
  }
  v.state = RunView::live;
  return v;
}

}  // namespace sprout

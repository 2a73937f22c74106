#include "agent_config.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "strict_json.h"

namespace sprout::agent {

namespace {
std::string guest_path(StrictObject& o, std::string_view key, std::string fallback) {
  auto s = o.string_or(key, std::move(fallback));
  if (s.empty() || s.front() != '/') o.fail(key, "an absolute path");
  return s;
}
std::vector<std::string> argv_or(StrictObject& o, std::string_view key, std::vector<std::string> fallback) {
  if (!o.has(key)) return fallback;
  auto v = o.strings_or_empty(key, 256);
  if (v.empty() || v.front().empty()) o.fail(key, "a non-empty list of strings (a command and its arguments)");
  return v;
}
}  // namespace

AgentConfig parse_agent_config(const std::string& text, const std::string& source) {
  if (text.size() > 256 * 1024) throw InputError(fmt::format("{}: larger than 256 KiB", source));
  auto doc = parse_json_text(text, source);
  StrictObject top(doc, source);
  AgentConfig c;
  auto version = top.integer("version", 0, 1000);
  if (version != 1) top.fail_value("version", fmt::format("this agent reads version 1, the file has {}", version));
  if (auto m = top.optional_object("mountPoints")) {
    c.config_mount = guest_path(*m, "config", c.config_mount);
    c.self_mount = guest_path(*m, "self", c.self_mount);
    // "ssh": null means: do not mount the ssh disk.
    auto it = doc["mountPoints"].find("ssh");
    if (it != doc["mountPoints"].end() && it->is_null()) {
      (void)m->get("ssh");
      c.ssh_mount.reset();
    } else {
      c.ssh_mount = guest_path(*m, "ssh", *c.ssh_mount);
    }
    c.closure_mount = guest_path(*m, "closure", c.closure_mount);
    m->finish();
  }
  if (auto r = top.optional_object("rebuild")) {
    c.rebuild_command = argv_or(*r, "command", c.rebuild_command);
    c.rebuild_timeout_seconds = r->integer_or("timeoutSeconds", c.rebuild_timeout_seconds, 1, 7 * 24 * 3600);
    c.max_attempts = r->integer_or("maxAttempts", c.max_attempts, 1, 100);
    c.respecialize_on_change = r->boolean_or("respecializeOnChange", c.respecialize_on_change);
    r->finish();
  }
  c.reboot_command = argv_or(top, "rebootCommand", c.reboot_command);
  c.state_dir = guest_path(top, "stateDir", c.state_dir);
  c.disk_wait_seconds = static_cast<double>(top.integer_or("diskWaitSeconds", 10, 0, 3600));
  c.flush_timeout_seconds = static_cast<double>(top.integer_or("flushTimeoutSeconds", 10, 0, 3600));
  c.status_port = top.string_or("statusPort", c.status_port);
  if (c.status_port.empty()) top.fail("statusPort", "a virtio-serial port name");
  if (top.has("logFile")) c.log_file = guest_path(top, "logFile", "");
  if (auto dir = top.optional_string("nixBinDir"); dir && !dir->empty()) c.nix_bin_dir = guest_path(top, "nixBinDir", "");
  top.finish();
  return c;
}

AgentConfig load_agent_config(const std::string& path, bool* missing) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) {
      if (missing) *missing = true;
      return AgentConfig{};
    }
    throw InputError(fmt::format("{}: cannot read the agent config: {}", path, std::strerror(errno)));
  }
  if (missing) *missing = false;
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_agent_config(ss.str(), path);
}

}  // namespace sprout::agent

// sprout ssh NAME [COMMAND...]: ssh to a VM through its forward of guest port 22, the
// guest's host key checked against the VM's identity (identity/vm_identity.h) from the
// very first connection: a known_hosts of the VM's own (STATE/ssh_known_hosts, the
// key under the alias sprout-NAME) and StrictHostKeyChecking=yes. When ssh fails
// (255), the key the guest shows is fetched (ssh-keyscan) and, when it is another,
// sprout says which key was expected and which was shown.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "atomic_file.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/vm_locator.h"
#include "error.h"
#include "identity/vm_identity.h"
#include "spec/spec.h"
#include "subprocess.h"

namespace sprout {

namespace {

void ssh_options(cxxopts::Options& o) {
  o.add_options()("user", "the user to log in as", cxxopts::value<std::string>()->default_value("root"), "USER")(
      "ssh", "the ssh program", cxxopts::value<std::string>()->default_value("ssh"), "PROGRAM")(
      "o,ssh-option", "an option for ssh itself (as ssh -o KEY=VALUE); repeatable",
      cxxopts::value<std::vector<std::string>>(), "KEY=VALUE")(
      "command", "remote command", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"vm", "command"});
  o.positional_help("NAME [COMMAND...]");
}

/// Runs argv with the terminal, as the shell would, and returns its exit status.
int run_in_terminal(const std::vector<std::string>& argv) {
  SpawnOptions so;
  so.argv = argv;
  so.stdin_null = false;
  so.interactive = true;
  // The terminal's Ctrl-C is ssh's to handle (it reaches us too: we wait it out).
  struct sigaction ign {}, old_int {}, old_quit {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ign, &old_int);
  ::sigaction(SIGQUIT, &ign, &old_quit);
  Child c = spawn(so);
  int status = 0;
  if (c) {
    while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  if (!c) throw std::runtime_error("cannot run " + c.error);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

/// The ed25519 key the guest at host:port shows, or "" when it cannot be had.
std::string key_shown(const std::string& host, int port) {
  ProcessOptions p;
  p.argv = {"ssh-keyscan", "-T", "10", "-t", "ed25519", "-p", std::to_string(port), host};
  p.timeout = std::chrono::seconds(30);
  p.stderr_fd = -1;
  ProcessResult r = run_process(p);
  if (!r.ok()) return "";
  for (const auto& line : r.last_lines(8)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.find(' ');  // "[host]:port ssh-ed25519 AAAA..."
    if (sp != std::string::npos) return line.substr(sp + 1);
  }
  return "";
}

}  // namespace

int cmd_ssh(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  const PortForward* fwd = nullptr;
  for (const auto& f : spec.network.forwards)
    if (f.protocol == "tcp" && f.guest_port == 22) fwd = &f;
  if (!fwd)
    throw InputError(fmt::format("{} forwards no host port to its port 22 (spec {}: network.forwards); add "
                                 "{{\"hostPort\": 2222, \"guestPort\": 22}}, or ssh to the VM's own address",
                                 spec.name, spec.file.string()));
  std::optional<VmIdentity> id = read_identity(spec.state());
  if (!id)
    throw std::runtime_error(fmt::format("{} has no identity yet, so its host key cannot be checked: its first "
                                         "`sprout prepare`, `run` or `define` mints one",
                                         spec.name));
  // A forward on every interface is reachable on loopback too.
  std::string host = fwd->host_address.empty() || fwd->host_address == "0.0.0.0" ? "127.0.0.1" : fwd->host_address;
  const std::string alias = "sprout-" + spec.name;
  const auto known_hosts = spec.state_dir / "ssh_known_hosts";
  std::string lines;
  for (const auto& k : id->host_keys) lines += alias + " " + k.public_line + "\n";
  write_file_atomic(known_hosts, lines, 0644);
  std::vector<std::string> argv = {a["ssh"].as<std::string>(), "-p", std::to_string(fwd->host_port),
                                   // Every VM answers on 127.0.0.1: its key is known under its own name.
                                   // (quoted: the option takes a list of files, split at spaces)
                                   "-o", "HostKeyAlias=" + alias, "-o", "UserKnownHostsFile=\"" + known_hosts.string() + "\"",
                                   "-o", "GlobalKnownHostsFile=/dev/null", "-o", "KnownHostsCommand=none",
                                   "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no",
                                   "-o", "HostKeyAlgorithms=ssh-ed25519"};
  if (a.count("ssh-option"))
    for (const auto& opt : a["ssh-option"].as<std::vector<std::string>>()) {
      argv.push_back("-o");
      argv.push_back(opt);
    }
  // The destination, then the remote command: after it, ssh itself reads no option.
  argv.push_back(a["user"].as<std::string>() + "@" + host);
  if (a.count("command"))
    for (const auto& w : a["command"].as<std::vector<std::string>>()) argv.push_back(w);
  int status = run_in_terminal(argv);
  if (status == 255) {
    const std::string shown = key_shown(host, fwd->host_port);
    const SshHostKey& want = id->host_keys.front();
    // TYPE and key, without the comment.
    auto key_of = [](const std::string& line) {
      auto sp = line.find(' ');
      return sp == std::string::npos ? line : line.substr(0, line.find(' ', sp + 1));
    };
    if (!shown.empty() && key_of(shown) != key_of(want.public_line)) {
      std::string shown_fp;
      try {
        shown_fp = ssh_fingerprint(shown);
      } catch (const std::invalid_argument&) {
        shown_fp = "(unreadable)";
      }
      fmt::print(stderr,
                 "sprout: {} showed another ssh host key than its own, so ssh refused it: expected {} {} (`sprout "
                 "identity {}`), shown {}. A guest started before `sprout identity --rotate` has the old key "
                 "until sprout starts it again (stop, then start); otherwise this is not {}'s guest\n",
                 spec.name, want.type, want.fingerprint, spec.name, shown_fp, spec.name);
    }
  }
  return status;
}

const Command kSshCommand = {"ssh", "ssh to a VM through its forward of guest port 22, its host key checked",
    "ssh to a VM through its forward of guest port 22 (network.forwards): `ssh -p HOSTPORT\n"
    "USER@HOSTADDRESS [COMMAND...]`, with the guest's host key checked against the VM's own\n"
    "(`sprout identity NAME`) from the first connection: a guest that shows another key is\n"
    "refused, and sprout says which key it expected. sprout's options come before NAME; every\n"
    "word after NAME is the remote command, as with ssh (`sprout ssh web uname -a`). Options\n"
    "for ssh itself: -o KEY=VALUE, repeatable (`sprout ssh -o ConnectTimeout=5 web`). The exit\n"
    "status is ssh's.",
    Needs::one_vm, ssh_options, cmd_ssh, true};

}  // namespace sprout

// sprout ssh NAME [COMMAND...]: ssh to a VM through its forward of guest port 22.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "subprocess.h"
#include "error.h"
#include "spec/spec.h"
#include "cli/vm_locator.h"

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
  // A forward on every interface is reachable on loopback too.
  std::string host = fwd->host_address.empty() || fwd->host_address == "0.0.0.0" ? "127.0.0.1" : fwd->host_address;
  std::vector<std::string> argv = {a["ssh"].as<std::string>(), "-p", std::to_string(fwd->host_port),
                                   // Every VM answers on 127.0.0.1: keep each one's host key apart.
                                   "-o", "HostKeyAlias=sprout-" + spec.name};
  if (a.count("ssh-option"))
    for (const auto& opt : a["ssh-option"].as<std::vector<std::string>>()) {
      argv.push_back("-o");
      argv.push_back(opt);
    }
  // The destination, then the remote command: after it, ssh itself reads no option.
  argv.push_back(a["user"].as<std::string>() + "@" + host);
  if (a.count("command"))
    for (const auto& w : a["command"].as<std::vector<std::string>>()) argv.push_back(w);
  exec_argv(argv);  // "cannot run ssh: ..." when it cannot
}

const Command kSshCommand = {"ssh", "ssh to a VM through its forward of guest port 22",
    "ssh to a VM through its forward of guest port 22 (network.forwards): `ssh -p HOSTPORT\n"
    "USER@HOSTADDRESS [COMMAND...]`. sprout's options come before NAME; every word after NAME\n"
    "is the remote command, as with ssh (`sprout ssh web uname -a`). Options for ssh itself:\n"
    "-o KEY=VALUE, repeatable (`sprout ssh -o ConnectTimeout=5 web`).",
    Needs::one_vm, ssh_options, cmd_ssh, true};

}  // namespace sprout

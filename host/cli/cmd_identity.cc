// sprout identity NAME [--rotate] [--json]: a VM's identity (its ssh host key and
// machine-id, identity/vm_identity.h), and its ssh host key replaced on request.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "identity/vm_identity.h"
#include "spec/spec.h"

namespace sprout {

namespace {

void identity_options(cxxopts::Options& o) {
  o.add_options()("rotate", "replace the VM's ssh host key with a new one (the old one is kept aside)")(
      "json", "print JSON");
}

}  // namespace

int cmd_identity(const Invocation& inv) {
  const auto& a = inv.args;
  const Spec& spec = *inv.vm;
  std::optional<VmIdentity> id;
  if (a.count("rotate")) {
    id = rotate_ssh_host_key(spec.state(), spec.name);
  } else {
    id = read_identity(spec.state());
    if (!id) {
      fmt::print(stderr, "sprout: {} has no identity yet: its first `sprout prepare`, `run` or `define` mints it\n",
                 spec.name);
      return 1;
    }
  }
  if (a.count("json")) {
    nlohmann::json keys = nlohmann::json::array();
    for (const auto& k : id->host_keys)
      keys.push_back({{"type", k.type}, {"fingerprint", k.fingerprint}, {"publicKey", k.public_line}});
    fmt::print("{}\n", nlohmann::json{{"name", spec.name}, {"machineId", id->machine_id}, {"sshHostKeys", keys}}.dump(2));
    return 0;
  }
  fmt::print("{}\n  machine-id {}\n", spec.name, id->machine_id);
  for (const auto& k : id->host_keys) fmt::print("  host key   {} {}\n", k.type, k.fingerprint);
  if (a.count("rotate"))
    fmt::print("A running guest keeps the old key, even across its own reboots (its disk is open): it gets the new "
               "one when sprout next starts it (`sprout stop`, then `start` or `run`; libvirt: `define`, then a "
               "restart). `sprout ssh` expects the new one from now on.\n");
  return 0;
}

const Command kIdentityCommand = {"identity", "a VM's ssh host key and machine-id; --rotate makes a new host key",
    "A VM's identity, which the host mints on its first prepare and keeps in STATE/identity\n"
    "(0700): its ssh host key (ed25519) and its machine-id. The guest gets them on its\n"
    "secrets disk at every boot, before sshd starts, so `sprout ssh` can check the key from\n"
    "the first connection. --rotate replaces the host key (the old key pair is kept in\n"
    "STATE/identity/old/TIME/); the machine-id stays. Exit 1 when the VM has no identity yet.",
    Needs::one_vm, identity_options, cmd_identity};

}  // namespace sprout

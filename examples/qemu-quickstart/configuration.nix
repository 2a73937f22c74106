# vms.nix's "first virtual machine", with sprout: one VM, "guest", running sshd,
# reachable as `ssh -p 10022 root@localhost` with the keys that may log in to the
# host's root. Import this from the host's /etc/nixos/configuration.nix.
{ config, ... }:
{
  # Or sprout.nixosModules.host from the flake.
  imports = [ ../../nixos/host.nix ];

  users.users.root.openssh.authorizedKeys.keys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample admin@laptop"
  ];

  virtualisation.sprout = {
    enable = true;

    vms.guest = {
      base.modules = [ ./vm/base.nix ];
      configDir = ./vm;
      # The disk the VM grows into (the base image has little room to spare).
      diskSize = { amount = 20; unit = "G"; };
      sshAuthorizedKeys = config.users.users.root.openssh.authorizedKeys.keys;
      network.forwards = [ { hostPort = 10022; guestPort = 22; } ];
    };
  };
}

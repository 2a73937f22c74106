# The physical host: two VMs from one base image. Both VMs' base.modules are the
# same, so they share one image in the store; each specializes on first boot into
# hosts/<vm>/configuration.nix of this tree.
{ ... }:
let
  # This whole tree, copied to the store: the VMs see it at /etc/nixos.
  tree = ../..;
  base = [ ../../common/vm_host_base.nix ];
  keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample admin@vmhost" ];
in
{
  imports = [
    ../../common/physical_host.nix
    ./hardware-configuration.nix
  ];

  networking.hostName = "vmhost";

  virtualisation.sprout.vms = {
    web = {
      base.modules = base;
      configDir = tree;
      # selfDir defaults to configDir + "/hosts/web".
      sshAuthorizedKeys = keys;
      memory = { amount = 2; unit = "GiB"; };
      vcpus = 2;
      diskSize = { amount = 20; unit = "G"; };
      network.forwards = [
        { hostPort = 10022; guestPort = 22; }
        { hostPort = 8080; guestPort = 80; }
      ];
    };

    db = {
      base.modules = base;
      configDir = tree;
      sshAuthorizedKeys = keys;
      memory = 4096;
      vcpus = 2;
      network.forwards = [ { hostPort = 10023; guestPort = 22; } ];
      # The database is started only by hand, and restarted when its spec changes.
      autostart = false;
      restartOnChange = true;
      shutdownTimeout = 120;
    };
  };
}

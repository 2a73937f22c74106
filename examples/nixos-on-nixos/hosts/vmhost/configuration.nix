# The physical host: three VMs from one base image. Their base.modules are the
# same, so they share one image in the store; each specializes on first boot into
# hosts/<vm>/configuration.nix of this tree: web and db build it in the guest,
# dns gets it built by this host (specialize = "host").
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
      diskSize = { amount = 40; unit = "G"; };
      network.forwards = [ { hostPort = 10023; guestPort = 22; } ];
      # The database is started only by hand, and restarted when its spec changes.
      autostart = false;
      restartOnChange = true;
      shutdownTimeout = 120;
    };

    # Built by this host: `nixos-rebuild switch` here evaluates and builds
    # hosts/dns/configuration.nix (the default `configuration`: what the guest would
    # build, selfDir + "/configuration.nix") with this host's nixpkgs, and the guest
    # only imports the finished system. No nixpkgs evaluation in the guest, so a
    # small VM will do, and it needs no network to specialize.
    dns = {
      base.modules = base;
      configDir = tree;
      specialize = "host";
      sshAuthorizedKeys = keys;
      memory = 512;
      diskSize = { amount = 10; unit = "G"; };
      network.forwards = [
        { hostPort = 10024; guestPort = 22; }
        { protocol = "udp"; hostAddress = "127.0.0.1"; hostPort = 5353; guestPort = 53; }
      ];
    };
  };
}

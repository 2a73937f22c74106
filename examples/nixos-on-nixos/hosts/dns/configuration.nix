# The specialized configuration of the VM "dns", which the HOST builds
# (specialize = "host" in hosts/vmhost/configuration.nix): the host evaluates this
# file with its own nixpkgs, adds sprout's guest module itself, and the guest only
# imports the finished system from a disk. So, unlike web and db, it imports the
# base directly and not vm_host.nix: /etc/sprout/nixos/guest.nix exists only
# inside a guest, not on the host that evaluates this file.
{ ... }:
{
  imports = [ ../../common/vm_host_base.nix ];

  networking.hostName = "dns";

  # A caching resolver for the host's network (qemu's user network: the host
  # reaches it through the forwarded port, as 10.0.2.2).
  services.unbound = {
    enable = true;
    settings.server = {
      interface = [ "0.0.0.0" ];
      access-control = [ "10.0.0.0/8 allow" ];
    };
  };
  networking.firewall.allowedUDPPorts = [ 53 ];
}

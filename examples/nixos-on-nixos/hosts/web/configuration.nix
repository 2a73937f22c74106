# The specialized configuration of the VM "web". The guest builds it from
# /etc/nixos/hosts/self/configuration.nix, where the host mounts this directory.
{ ... }:
{
  imports = [ ../../common/vm_host.nix ];

  networking.hostName = "web";

  services.nginx = {
    enable = true;
    virtualHosts.default.root = ./www;
  };
  networking.firewall.allowedTCPPorts = [ 80 ];
}

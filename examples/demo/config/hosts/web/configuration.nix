# The web VM: imported as /etc/nixos/hosts/self/configuration.nix in the guest.
{ ... }:
{
  imports = [ ../../common ];
  networking.hostName = "web";
  services.nginx.enable = true;
  networking.firewall.allowedTCPPorts = [ 80 ];
}

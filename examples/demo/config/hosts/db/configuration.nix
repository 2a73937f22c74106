# The db VM: imported as /etc/nixos/hosts/self/configuration.nix in the guest.
{ ... }:
{
  imports = [ ../../common ];
  networking.hostName = "db";
  services.postgresql.enable = true;
}

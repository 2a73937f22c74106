# The specialized configuration of the VM "db".
{ pkgs, ... }:
{
  imports = [ ../../common/vm_host.nix ];

  networking.hostName = "db";

  services.postgresql = {
    enable = true;
    package = pkgs.postgresql_16;
  };
}

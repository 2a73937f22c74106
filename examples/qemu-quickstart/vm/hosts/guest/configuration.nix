# The specialized configuration of "guest", built in the VM on first boot.
{ pkgs, ... }:
{
  imports = [
    ../../base.nix
    /etc/sprout/nixos/guest.nix
  ];

  networking.hostName = "guest";
  environment.systemPackages = [ pkgs.htop ];
}

# Shared by every machine (the seeds' common/default.nix).
{ pkgs, ... }:
{
  imports = [ ./virtual_machines ];
  time.timeZone = "UTC";
  services.openssh.enable = true;
  environment.systemPackages = with pkgs; [ vim git htop ];
}

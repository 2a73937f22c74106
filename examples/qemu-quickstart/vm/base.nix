# The VM's base system (and the common part of its specialized configuration).
{ ... }:
{
  services.openssh.enable = true;
  services.openssh.settings.PermitRootLogin = "prohibit-password";
  networking.useDHCP = true;
  system.stateVersion = "24.05";
}

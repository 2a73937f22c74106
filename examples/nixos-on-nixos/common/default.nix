# Common to every machine, host or VM. Machines do not import this directly:
# they import physical_host.nix or vm_host.nix.
{ ... }:
{
  time.timeZone = "UTC";
  i18n.defaultLocale = "en_US.UTF-8";

  nix.settings.experimental-features = [ "nix-command" "flakes" ];

  services.openssh = {
    enable = true;
    settings.PermitRootLogin = "prohibit-password";
    settings.PasswordAuthentication = false;
  };

  system.stateVersion = "24.05";
}

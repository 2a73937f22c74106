# Common to every VM, base and specialized alike.
{ ... }:
{
  networking.useDHCP = true;
  services.qemuGuest.enable = true;
  documentation.enable = false;
}

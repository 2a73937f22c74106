# Shared by every VM: the guest agent specializes the base on first boot.
{ ... }:
{
  virtualisation.sprout.guest.enable = true;
  boot.loader.grub.device = "/dev/vda";
}

# Placeholder: replace with the output of nixos-generate-config for your machine.
{ ... }:
{
  fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  boot.loader.grub.device = "/dev/sda";
}

# The quickstart VM through libvirt: sprout defines the domain "guest" and starts
# it from sprout-vm@guest.service; `virsh list` shows it. The domain is undefined
# (its disks kept) when the VM is removed from this configuration.
{ config, ... }:
{
  imports = [ ../../nixos/host.nix ];

  virtualisation.libvirtd.enable = true;

  users.users.root.openssh.authorizedKeys.keys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample admin@laptop"
  ];

  virtualisation.sprout = {
    enable = true;

    vms.guest = {
      backend = "libvirt";
      base.modules = [ ../qemu-quickstart/vm/base.nix ];
      configDir = ../qemu-quickstart/vm;
      sshAuthorizedKeys = config.users.users.root.openssh.authorizedKeys.keys;
      memory = { amount = 2; unit = "GiB"; };
      diskSize = { amount = 20; unit = "G"; };
      # libvirt's NAT network: the guest gets an address from libvirt's DHCP
      # (`virsh net-dhcp-leases default`).
      network.mode = "libvirt";
      vnc = true;
    };
  };
}

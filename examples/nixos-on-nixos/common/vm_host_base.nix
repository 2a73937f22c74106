# The base system of all VMs: built once into the shared base image
# (virtualisation.sprout.vms.<name>.base.modules). sprout adds its guest module,
# which specializes each VM on first boot from /etc/nixos/hosts/self.
{ ... }:
{
  imports = [
    ./default.nix
    ./virtual_machines
  ];
}

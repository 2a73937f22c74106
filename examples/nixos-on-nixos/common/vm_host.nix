# Common to every VM's specialized configuration (hosts/<vm>/configuration.nix):
# the base, plus sprout's guest module as installed in the VM, so that the VM
# keeps its disk layout and specializes again when its configuration changes.
{ ... }:
{
  imports = [
    ./vm_host_base.nix
    /etc/sprout/nixos/guest.nix
  ];
}

# Common to every physical machine that runs VMs.
{ ... }:
{
  imports = [
    ./default.nix
    ./physical_machines
  ];
}

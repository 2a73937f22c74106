# The VM host side: sprout's host module and its defaults.
{ ... }:
{
  # In your own tree, import the module from the sprout flake
  # (sprout.nixosModules.host) or from a checkout of sprout instead.
  imports = [ ../../../../nixos/host.nix ];

  virtualisation.sprout.enable = true;
}

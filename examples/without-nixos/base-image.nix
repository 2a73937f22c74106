# The shared NixOS base image for hosts without NixOS (docs/without-nixos.md), built
# the way nixos/host.nix builds `base.modules`: the base system (here
# ../qemu-quickstart/vm/base.nix) plus sprout's guest module with this checkout's
# sprout, made into a qcow2 disk by nixpkgs' make-disk-image.
#   nix-build examples/without-nixos/base-image.nix -I nixpkgs=PATH-TO-NIXPKGS
# gives result/nixos.qcow2, the spec's base.image.
{ pkgs ? import <nixpkgs> { }
, baseModules ? [ ../qemu-quickstart/vm/base.nix ]
, diskSize ? "auto"
}:

let
  sprout = pkgs.callPackage ../../nixos/package.nix { };
  system = import (pkgs.path + "/nixos/lib/eval-config.nix") {
    inherit (pkgs.stdenv.hostPlatform) system;
    inherit pkgs;
    modules = baseModules ++ [
      ../../nixos/guest.nix
      {
        virtualisation.sprout.guest.enable = true;
        virtualisation.sprout.guest.package = sprout;
      }
    ];
  };
in
import (pkgs.path + "/nixos/lib/make-disk-image.nix") {
  inherit (pkgs) lib;
  inherit pkgs diskSize;
  inherit (system) config;
  format = "qcow2";
  partitionTableType = "legacy";
}

{
  description = "sprout: many NixOS VMs from one shared base image, each specializing on first boot";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      # x86_64 only: sprout runs qemu-system-x86_64, writes arch='x86_64' into libvirt
      # domains, and the base image boots with BIOS from an MBR disk.
      systems = [ "x86_64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: prev: {
        sprout = final.callPackage ./nixos/package.nix { };
      };

      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nixos/package.nix { };
        sprout = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      });

      # Each module has a key, so importing one twice (host and default, say) is
      # importing it once.
      nixosModules = {
        host = {
          key = "sprout#nixosModules.host";
          _file = "sprout/flake.nix#nixosModules.host";
          imports = [
            ./nixos/host.nix
            ({ pkgs, ... }: {
              virtualisation.sprout.package =
                nixpkgs.lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
            })
          ];
        };
        guest = {
          key = "sprout#nixosModules.guest";
          _file = "sprout/flake.nix#nixosModules.guest";
          imports = [
            ./nixos/guest.nix
            ({ pkgs, ... }: {
              virtualisation.sprout.guest.package =
                nixpkgs.lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
            })
          ];
        };
        default = self.nixosModules.host;
      };

      # A host with one VM, built from a base in this flake, that must specialize.
      # Needs KVM: `nix build .#checks.x86_64-linux.vm`.
      checks = forAllSystems (pkgs: {
        vm = pkgs.testers.runNixOSTest {
          name = "sprout-vm";
          nodes.host = { pkgs, ... }: {
            imports = [ self.nixosModules.host ];
            virtualisation.memorySize = 4096;
            virtualisation.diskSize = 16384;
            virtualisation.cores = 2;
            virtualisation.sprout = {
              enable = true;
              vms.demo = {
                base.modules = [ ./examples/nixos-on-nixos/common/vm_host_base.nix ];
                configDir = ./examples/nixos-on-nixos;
                selfDir = ./examples/nixos-on-nixos/hosts/web;
                memory = { amount = 2; unit = "GiB"; };
                diskSize = { amount = 8; unit = "G"; };
                vcpus = 2;
                network.forwards = [ { hostPort = 10022; guestPort = 22; } ];
                ready = "started";
              };
            };
          };
          testScript = ''
            host.wait_for_unit("multi-user.target")
            host.wait_for_unit("sprout-vm@demo.service")
            host.succeed("sprout check-spec /etc/sprout/vms/demo.json")
            host.succeed("sprout wait demo --for specialized --timeout 900")
            host.succeed("sprout status")
          '';
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [ pkgs.gdb pkgs.clang-tools pkgs.nixpkgs-fmt pkgs.python3 ];
        };
      });
    };
}

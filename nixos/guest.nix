# sprout guest module: the agent that specializes a VM on first boot.
#
# With virtualisation.sprout.guest.enable, `sprout-agent` runs at boot, mounts the
# disks the host exports (found by their virtio serials), runs nixos-rebuild boot
# on the VM's own configuration and reboots into it. The module also gives the
# system the disk layout sprout's base images have (root on the ext4 file system
# labelled "nixos", grub on /dev/vda, grown to the disk's size on boot).
#
# /etc/sprout/agent.json, the agent's configuration, has exactly these keys:
#   {
#     "version": 1,
#     "mountPoints": { "config": "/etc/nixos", "self": "/etc/nixos/hosts/self", "ssh": "/root/.ssh" },
#     "rebuild": {
#       "command": [ "nixos-rebuild", "boot" ],
#       "timeoutSeconds": 3600,
#       "maxAttempts": 3,
#       "respecializeOnChange": true
#     },
#     "rebootCommand": [ "systemctl", "reboot" ],
#     "stateDir": "/var/lib/sprout"
#   }
# "ssh" is null when ssh.enable is false. Rebuild mode, target and extra arguments
# come from the host's spec; the values here are the guest's own defaults.
#
# A VM's specialized configuration keeps the agent and the layout by importing
# /etc/sprout/nixos/guest.nix, which this module installs (it pins this module and
# this sprout package).
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf mkDefault types literalExpression;

  cfg = config.virtualisation.sprout.guest;

  agentConfig = {
    version = 1;
    mountPoints = {
      inherit (cfg.mountPoints) config self;
      ssh = if cfg.ssh.enable then cfg.mountPoints.ssh else null;
    };
    rebuild = {
      inherit (cfg.rebuild) command timeoutSeconds maxAttempts respecializeOnChange;
    };
    inherit (cfg) rebootCommand stateDir;
  };

  # What a specialized configuration imports to stay a sprout guest.
  pinnedModule = pkgs.writeText "sprout-guest.nix" ''
    # Installed by sprout's guest module: import it from a VM's configuration.
    { lib, ... }:
    {
      imports = [ ${./guest.nix} ];
      virtualisation.sprout.guest.enable = lib.mkDefault true;
      virtualisation.sprout.guest.package = lib.mkDefault (builtins.storePath ${cfg.package.agent or cfg.package});
    }
  '';
in
{
  options.virtualisation.sprout.guest = {
    enable = mkEnableOption "the sprout guest agent, which specializes this VM on first boot";

    package = mkOption {
      type = types.package;
      default = pkgs.sprout or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.sprout or (pkgs.callPackage ./package.nix { })";
      description = "The sprout package (its `agent` output, if any, provides `sprout-agent`).";
    };

    mountPoints = {
      config = mkOption {
        type = types.str;
        default = "/etc/nixos";
        description = "Where the shared configuration tree is mounted.";
      };
      self = mkOption {
        type = types.str;
        default = "/etc/nixos/hosts/self";
        description = "Where the VM's own configuration is mounted (inside the tree).";
      };
      ssh = mkOption {
        type = types.str;
        default = "/root/.ssh";
        description = "Where the ssh directory is mounted, when the host exports one.";
      };
    };

    ssh.enable = mkOption {
      type = types.bool;
      default = true;
      description = "Mount the ssh directory the host exports.";
    };

    rebuild = {
      command = mkOption {
        type = types.listOf types.str;
        default = [ "nixos-rebuild" "boot" ];
        description = "The rebuild command; the host's mode, target and extra arguments are appended.";
      };
      timeoutSeconds = mkOption {
        type = types.ints.positive;
        default = 3600;
        description = "Give up on a rebuild after this many seconds.";
      };
      maxAttempts = mkOption {
        type = types.ints.positive;
        default = 3;
        description = "Rebuild attempts per configuration before giving up.";
      };
      respecializeOnChange = mkOption {
        type = types.bool;
        default = true;
        description = "Specialize again when the exported configuration changes.";
      };
    };

    rebootCommand = mkOption {
      type = types.listOf types.str;
      default = [ "systemctl" "reboot" ];
      description = "Run after a successful rebuild, to boot the new configuration.";
    };

    stateDir = mkOption {
      type = types.str;
      default = "/var/lib/sprout";
      description = "Where the agent remembers what it specialized.";
    };

    diskLayout = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Use the disk layout of sprout's base images: root on the ext4 file system
        labelled "nixos", grown to the disk's size, grub on /dev/vda, serial console.
      '';
    };
  };

  config = mkIf cfg.enable (lib.mkMerge [
    {
      boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_net" ];
      boot.kernelModules = [ "virtio_pci" "virtio_blk" "virtio_console" ];

      systemd.tmpfiles.rules = [ "d ${cfg.stateDir} 0700 root root -" ];

      environment.etc."sprout/agent.json".text = builtins.toJSON agentConfig;
      environment.etc."sprout/nixos/guest.nix".source = pinnedModule;

      systemd.services.sprout-agent = {
        description = "sprout guest agent: specialize this VM";
        wantedBy = [ "multi-user.target" ];
        after = [ "local-fs.target" ];
        path = [ config.system.build.nixos-rebuild config.nix.package pkgs.systemd pkgs.util-linux ];
        # A switch must not kill the agent in the middle of its rebuild.
        restartIfChanged = false;
        # Type=exec: the unit counts as started once the agent runs, so nothing
        # (multi-user.target, sshd) waits for the rebuild.
        serviceConfig = {
          Type = "exec";
          ExecStart = "${cfg.package.agent or cfg.package}/bin/sprout-agent --config /etc/sprout/agent.json";
        };
      };
    }

    (mkIf cfg.diskLayout {
      fileSystems."/" = {
        device = mkDefault "/dev/disk/by-label/nixos";
        fsType = mkDefault "ext4";
        autoResize = mkDefault true;
      };
      boot.growPartition = mkDefault true;
      boot.loader.grub.device = mkDefault "/dev/vda";
      boot.kernelParams = [ "console=ttyS0" ];
    })
  ]);
}

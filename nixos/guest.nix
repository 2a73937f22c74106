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
#     "mountPoints": { "config": "/etc/nixos", "self": "/etc/nixos/hosts/self", "ssh": "/root/.ssh",
#                      "closure": "/run/sprout/closure" },
#     "nixBinDir": "<nix.package>/bin",
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
# "nixBinDir" and "closure" serve host-built specialization (the host's
# specialize = "host"): the agent mounts the closure disk, imports it itself and
# registers it with nixBinDir's `nix-store --load-db`, sets the system profile with its
# `nix-env --set` and runs the new system's switch-to-configuration boot. The guest cannot know at build time which
# mode the host uses (the manifest on the disk says), so both are always written.
#
# The agent's unit has NIX_PATH (`nixPath`, by default the base's own nixpkgs), HOME
# and nix.envVars, as nixpkgs' auto-upgrade unit has. It does not wait for
# network-online.target; its rebuilds do (the `nixos-rebuild` on its PATH starts it
# first), so nothing waits for a network a VM does not use. The agent runs
# `nixos-rebuild boot -I nixos-config=TARGET --no-flake` (classic; the wrapper adds
# `--file` with a file that builds <nixos-config>, so nothing else is built) or
# `nixos-rebuild boot --flake TARGET --no-write-lock-file` (flake).
#
# A VM's specialized configuration keeps the agent and the layout by importing
# /etc/sprout/nixos/guest.nix, which this module installs: it imports guest.nix from
# a store copy of this whole directory and pins this agent (classic mode; a flake
# configuration imports sprout's flake's nixosModules.guest instead).
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption mkIf mkDefault types literalExpression;

  cfg = config.virtualisation.sprout.guest;

  agentConfig = {
    version = 1;
    mountPoints = {
      inherit (cfg.mountPoints) config self closure;
      ssh = if cfg.ssh.enable then cfg.mountPoints.ssh else null;
    };
    # nix, nix-store and nix-env, for importing a host-built system: the system's
    # own Nix (nixos/modules/services/system/nix-daemon.nix: nix.package).
    nixBinDir = "${config.nix.package}/bin";
    rebuild = {
      inherit (cfg.rebuild) command timeoutSeconds maxAttempts respecializeOnChange;
    };
    inherit (cfg) rebootCommand stateDir;
  };

  agent = cfg.package.agent or cfg.package;

  # This directory as one store path, so that guest.nix evaluated from the store
  # still finds its neighbours (./package.nix). Evaluating the copy again gives the
  # same path: the content and the name are the same.
  # Only what the guest needs, so an edit of the host's modules changes no base.
  sproutNixos = builtins.path {
    path = ./.;
    name = "sprout-nixos";
    filter = path: _: builtins.elem (baseNameOf path) [ "guest.nix" "package.nix" ];
  };

  # The nixpkgs this base is evaluated with, under a fixed name: interpolating a store
  # path copies it again under a longer name, generation after generation. Without a
  # checkout's .git (as make-disk-image's channel copy leaves it out): a flake input
  # has none, so its copy is the same store path with or without the filter.
  pinnedNixpkgs = builtins.path {
    path = pkgs.path;
    name = "nixpkgs";
    filter = path: _: baseNameOf path != ".git";
  };

  # What a specialized configuration imports to stay a sprout guest: this module and
  # this agent, from the store. The agent is given as a derivation-shaped value whose
  # path carries its store context (builtins.appendContext), so the specialized
  # system keeps it in its closure without builtins.storePath, which pure
  # evaluation refuses.
  #
  # It also carries `nixpkgsConfig` (the host's nixpkgs.config, as far as it is plain
  # data) into the guest's own evaluation: the default of nixpkgs.config, read from a
  # JSON file in the store (no quoting of values into Nix source), and passed on to
  # the next generation's pinned module.
  nixpkgsConfigFile = pkgs.writeText "sprout-nixpkgs-config.json" (builtins.toJSON cfg.nixpkgsConfig);
  pinnedModule = pkgs.writeText "sprout-guest.nix" (''
    # Installed by sprout's guest module: import it from a VM's configuration.
    { lib, ... }:
    {
      imports = [ ${sproutNixos}/guest.nix ];
      virtualisation.sprout.guest.enable = lib.mkDefault true;
      virtualisation.sprout.guest.package = lib.mkDefault {
        type = "derivation";
        name = ${builtins.toJSON (agent.name or "sprout-agent")};
        outputs = [ "out" ];
        outPath = builtins.appendContext "${agent}" { "${agent}" = { path = true; }; };
      };
  '' + lib.optionalString (cfg.nixpkgsConfig != { }) ''
      # The host's nixpkgs.config, which the base was built with. A default as a whole:
      # nixpkgs.config's merge (nixos/modules/misc/nixpkgs.nix, mergeConfig) knows no
      # priorities inside it, so a configuration that sets nixpkgs.config replaces it.
      nixpkgs.config = lib.mkDefault (builtins.fromJSON (builtins.readFile ${nixpkgsConfigFile}));
      virtualisation.sprout.guest.nixpkgsConfig = lib.mkDefault (builtins.fromJSON (builtins.readFile ${nixpkgsConfigFile}));
  '' + ''
    }
  '');

  # What the agent's classic rebuilds build (`--file`): the configuration that
  # -I nixos-config names (the agent's TARGET), evaluated by <nixpkgs>'s NixOS. Without
  # --file, nixos-rebuild-ng (nixpkgs 26.05, models.py BuildAttr.from_arg) builds
  # <nixos-system> when the search path has it, else /etc/nixos/system.nix when the
  # config tree has one, and only then <nixpkgs/nixos>, whose configuration is
  # $NIXOS_CONFIG before <nixos-config>. With --file it builds this file, and so does
  # the old bash nixos-rebuild; this file reads neither NIXOS_CONFIG nor those.
  rebuildEntry = pkgs.writeText "sprout-rebuild-entry.nix" ''
    # sprout: the VM's own configuration, the one -I nixos-config names.
    import <nixpkgs/nixos> { configuration = <nixos-config>; }
  '';

  # `nixos-rebuild` for the agent's rebuilds (rebuild.command's default names it): it
  # starts network-online.target and waits for it, as nixpkgs' system.autoUpgrade unit
  # waits (a rebuild downloads: substitutes, flake inputs), then runs the real one.
  # Reached or not, the rebuild runs (everything may be local). In classic mode (the
  # agent passes --no-flake) it adds `--file rebuildEntry`, unless the arguments name
  # an entry point already (--file, --attr, --flake). It runs in a directory of its
  # own: the bash nixos-rebuild (nixpkgs 25.05 and older) leaves a `result` link in the
  # working directory when given --file (nix-build without --no-out-link), and
  # nixos-rebuild-ng reads ./system.nix with --attr. Its own store name, so that it is
  # not mistaken for the real one (tests install it by that name).
  rebuildAfterNetwork = pkgs.writeTextFile {
    name = "sprout-nixos-rebuild";
    destination = "/bin/nixos-rebuild";
    executable = true;
    text = ''
      #!${pkgs.runtimeShell}
      if ! ${config.systemd.package}/bin/systemctl start network-online.target; then
        echo "sprout: network-online.target was not reached; rebuilding anyway" >&2
      fi
      classic= entry=
      for a in "$@"; do
        case $a in
          --no-flake) classic=1 ;;
          --file | --file=* | -f | --attr | --attr=* | -A | --flake | --flake=*) entry=1 ;;
        esac
      done
      if [ -n "$classic" ] && [ -z "$entry" ]; then
        set -- "$@" --file ${rebuildEntry}
      fi
      mkdir -p /run/sprout-nixos-rebuild && cd /run/sprout-nixos-rebuild || exit 1
      exec ${config.system.build.nixos-rebuild}/bin/nixos-rebuild "$@"
    '';
  };

  # As nixpkgs' system.autoUpgrade unit (nixos/modules/tasks/auto-upgrade.nix): the
  # rebuild's own nix fetches flake inputs, so it needs the proxy settings too.
  rebuildEnvironment = config.nix.envVars // {
    NIX_PATH = lib.concatStringsSep ":" cfg.nixPath;
    HOME = "/root";
  } // config.networking.proxy.envVars;
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
      closure = mkOption {
        type = types.str;
        default = "/run/sprout/closure";
        description = ''
          Where the closure disk is mounted, when the host built this VM's system
          (the host's `specialize = "host"`): the agent imports the system from it.
        '';
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

    nixPath = mkOption {
      type = types.listOf types.str;
      default = [ "nixpkgs=${pinnedNixpkgs}" ];
      defaultText = literalExpression ''[ "nixpkgs=''${builtins.path { path = pkgs.path; name = "nixpkgs"; filter = path: _: baseNameOf path != ".git"; }}" ]'';
      example = literalExpression ''config.nix.nixPath'';
      description = ''
        NIX_PATH of the agent and its rebuild. A system unit gets no NIX_PATH from
        NixOS (only login sessions do), and on a flake-built base `nix.nixPath`
        points at the flake registry or nothing, so by default `<nixpkgs>` is the
        nixpkgs this base was built from (a copy named "nixpkgs", without .git).
        Set it to `config.nix.nixPath` to follow a channel of the guest's instead,
        which `nix-channel --update` can move; a base built by sprout's host module
        has none (make-disk-image's `copyChannel = false`: one nixpkgs per base), so
        add one with `nix-channel --add` first.
      '';
    };

    nixpkgsConfig = mkOption {
      type = types.attrs;
      default = { };
      example = { allowUnfree = true; };
      description = ''
        `nixpkgs.config` for the VM's own rebuilds (the host's `specialize = "guest"`):
        /etc/sprout/nixos/guest.nix, which a specialized configuration imports, makes
        it the default of its `nixpkgs.config` (a configuration that sets
        `nixpkgs.config` itself replaces it as a whole: nixpkgs merges that option
        without priorities inside it). Plain data only (what JSON holds). sprout's
        host module sets it to the host's `nixpkgs.config` (its plain values), which
        the base was built with, so that a module that evaluates on the host (say,
        one that uses an unfree package) evaluates in the guest too. Classic mode
        only: a flake configuration imports sprout's nixosModules.guest, not the
        pinned module, and sets its own nixpkgs.
      '';
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

    identity.enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Take this VM's identity and secrets from the secrets disk its host makes
        (every sprout host does): `sprout-agent --early` runs before sshd (and before
        sysinit.target, so before any ordinary service), installs the host-minted ssh
        host key as /etc/ssh/ssh_host_ed25519_key (so `sprout ssh` verifies the very
        first connection, and the key survives re-specialization and a recreated
        disk), and offers the VM's secrets as /run/sprout/secrets/NAME, root's alone
        (`serviceConfig.LoadCredential = [ "NAME:/run/sprout/secrets/NAME" ];`).
        sshd then serves that ed25519 key alone (`services.openssh.hostKeys`, a
        default). The machine-id reaches systemd on its own, as the credential
        system.machine_id in an SMBIOS type 11 string (systemd 254 and later, on a
        boot that finds /etc/machine-id empty).
      '';
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
        # Not after network-online.target: only a rebuild needs the network, and the
        # `nixos-rebuild` first on PATH waits for it (rebuildAfterNetwork); a
        # host-built VM (no rebuild), a VM without a network, and every boot that
        # has nothing to do start at once. Nothing is ordered after the agent
        # (Type=exec, no `before`), so multi-user.target and sshd do not wait for it.
        after = [ "local-fs.target" ];
        # git and ssh: flakes in a git tree, git+ssh inputs. nix: nixos-rebuild's, and
        # what imports a host-built system (agent.json's nixBinDir is its bin).
        path = [ rebuildAfterNetwork config.system.build.nixos-rebuild config.nix.package pkgs.gitMinimal
          config.programs.ssh.package pkgs.systemd pkgs.util-linux ];
        environment = rebuildEnvironment;
        # A switch must not kill the agent in the middle of its rebuild.
        restartIfChanged = false;
        # Type=exec: the unit counts as started once the agent runs, so nothing
        # (multi-user.target, sshd) waits for the rebuild.
        serviceConfig = {
          Type = "exec";
          ExecStart = "${agent}/bin/sprout-agent --config /etc/sprout/agent.json";
        };
      };
    }

    (mkIf cfg.identity.enable {
      # The host-minted key alone: sshd's preStart (and sshd-keygen) make a key only
      # for a path that has none, which the early unit has filled before them.
      services.openssh.hostKeys = mkDefault [ { type = "ed25519"; path = "/etc/ssh/ssh_host_ed25519_key"; } ];

      systemd.services.sprout-agent-early = {
        description = "sprout: this VM's ssh host key and secrets, from its host";
        # Before sysinit.target, like systemd-machine-id-commit: every ordinary unit
        # (sshd, and anything that reads /run/sprout/secrets) starts after it. It needs
        # the root file system writable (/etc/ssh) and /run, nothing else; the disk is
        # found through /sys (no udev needed), the wait for it bounded (diskWaitSeconds).
        wantedBy = [ "sysinit.target" ];
        before = [ "sysinit.target" "shutdown.target" "sshd.service" "sshd-keygen.service" "sshd.socket" ];
        after = [ "local-fs.target" ];
        conflicts = [ "shutdown.target" ];
        unitConfig.DefaultDependencies = false;
        restartIfChanged = false;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${agent}/bin/sprout-agent --early --config /etc/sprout/agent.json";
        };
      };
    })

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

# Options of the sprout host module (virtualisation.sprout). Declarations only: the
# implementation is in ./host.nix. Each VM's options turn into one spec file in the
# format of docs/spec.md; see docs/nixos.md for how they map.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption types literalExpression;

  cfg = config.virtualisation.sprout;

  # libvirt's memory units, as in the libvirt module's `memory.unit` (docs/spec.md).
  memoryUnits = [ "b" "bytes" "KB" "k" "KiB" "MB" "M" "MiB" "GB" "G" "GiB" "TB" "T" "TiB" ];

  # With specialize = "host", the default `configuration`: the file the guest would
  # build in classic mode (docs/spec.md's rebuild.target, as the guest sees it),
  # mapped back to the host's directory mounted there. Only a Nix path can be
  # evaluated by the host at build time (a string directory is read at VM start).
  guestTargetFile = vm:
    let
      target = if vm.rebuild.target != null then vm.rebuild.target else "/etc/nixos/hosts/self/configuration.nix";
      under = mount: dir:
        if !builtins.isPath dir then null
        else if target == mount then dir
        else if lib.hasPrefix (mount + "/") target then dir + lib.removePrefix mount target
        else null;
      # The self disk is mounted inside the config tree: try it first.
      found = lib.findFirst (f: f != null) null [
        (under "/etc/nixos/hosts/self" vm.selfDir)
        (under "/etc/nixos" vm.configDir)
      ];
    in
    if vm.rebuild.mode == "classic" && found != null && builtins.pathExists found then found else null;

  forwardOptions = {
    options = {
      protocol = mkOption {
        type = types.enum [ "tcp" "udp" ];
        default = "tcp";
        description = "Protocol of the forwarded port.";
      };
      hostAddress = mkOption {
        type = types.str;
        default = "";
        example = "127.0.0.1";
        description = "Host address to listen on; the empty string means all addresses.";
      };
      hostPort = mkOption {
        type = types.port;
        example = 10022;
        description = "Port on the host.";
      };
      guestPort = mkOption {
        type = types.port;
        example = 22;
        description = "Port in the guest.";
      };
    };
  };

  vmOptions = { name, config, ... }: {
    options = {
      base = {
        modules = mkOption {
          type = types.listOf types.deferredModule;
          default = [ ];
          example = literalExpression "[ ./common/vm_host_base.nix ]";
          description = ''
            NixOS modules of the common base system. sprout adds its guest module
            (`virtualisation.sprout.guest.enable = true`) and builds the system with
            nixpkgs' `make-disk-image.nix` into a qcow2 image in the Nix store. VMs
            whose base modules are the same share one image (one store path).
            Exactly one of `base.modules` and `base.image` must be set.
          '';
        };
        diskSize = mkOption {
          type = types.either (types.enum [ "auto" ]) types.ints.positive;
          default = "auto";
          example = 8192;
          description = ''
            Size of the built base image in MiB, or `"auto"` for the system's size plus
            some headroom (make-disk-image's `diskSize`). Only used with `base.modules`;
            a VM's own disk can be larger, see `diskSize`.
          '';
        };
        image = mkOption {
          type = types.nullOr types.path;
          default = null;
          example = literalExpression ''"''${myImage}/nixos.qcow2"'';
          description = ''
            A prebuilt base image, used read-only as the backing file of the VM's
            overlay. It must run the sprout guest agent (nixos/guest.nix).
          '';
        };
        format = mkOption {
          type = types.enum [ "qcow2" "raw" ];
          default = "qcow2";
          description = "Format of `base.image`. Images built from `base.modules` are qcow2.";
        };
      };

      configDir = mkOption {
        type = types.path;
        example = literalExpression "./vms";
        description = ''
          The shared NixOS configuration tree, mounted read-only at /etc/nixos in the
          guest. A Nix path (`./vms`) is copied to the store, so the VM sees exactly
          what was deployed; a string (`"/etc/nixos-vms"`) is read at VM start.
        '';
      };

      selfDir = mkOption {
        type = types.path;
        default = config.configDir + "/hosts/${name}";
        defaultText = literalExpression ''configDir + "/hosts/<name>"'';
        description = ''
          This VM's own configuration, mounted read-only at /etc/nixos/hosts/self in
          the guest. In classic mode the guest builds `configuration.nix` in it.
        '';
      };

      specialize = mkOption {
        type = types.enum [ "guest" "host" ];
        default = "guest";
        description = ''
          Who builds the VM's specialized system.

          `guest`: at first boot the guest runs `nixos-rebuild boot` on its own
          configuration (`rebuild.*`): it evaluates nixpkgs and builds or downloads
          the system itself, so it needs the network (or every derivation), memory
          for the evaluation and time. Use it when the VM's configuration is to
          change without the host rebuilding (a string `configDir`, read at VM
          start), or the guest follows its own channel.

          `host`: the host evaluates `configuration` with its own nixpkgs and builds
          the VM's system as part of its own system (`nixos-rebuild switch` on the
          host). sprout exports that system's closure, without the base's, on a
          read-only disk; the guest only imports it, sets its system profile to it,
          runs its `switch-to-configuration boot` and reboots. No network, nixpkgs or
          evaluation in the guest: for small-memory or offline VMs, for many VMs
          sharing one system (evaluated and built once), and for the first boot
          least likely to fail. The guest runs no nixos-rebuild, so `rebuild.mode`,
          `rebuild.target` and `rebuild.extraArgs` only serve to find the default
          `configuration`.
        '';
      };

      configuration = mkOption {
        type = types.nullOr types.deferredModule;
        default = if config.specialize == "host" then guestTargetFile config else null;
        defaultText = literalExpression ''
          if specialize == "host" then
            # the file the guest would build in classic mode, as a file of selfDir or
            # configDir: rebuild.target, or /etc/nixos/hosts/self/configuration.nix,
            # that is selfDir + "/configuration.nix"; null unless that dir is a Nix
            # path and the file exists
            selfDir + "/configuration.nix"
          else null'';
        example = literalExpression "./vms/hosts/web/configuration.nix";
        description = ''
          The VM's NixOS configuration (a module: a file, an attribute set or a
          function), as the host evaluates it with `specialize = "host"`: what
          `configuration.nix` is to the guest. sprout adds its guest module
          (nixos/guest.nix, enabled, with this host's sprout package) and evaluates it
          with nixpkgs' eval-config.nix and the host's `pkgs` (as `nixpkgs.pkgs`: the
          host's nixpkgs.config and overlays apply, and the configuration may not set
          `nixpkgs.config`). It must not import /etc/sprout/nixos/guest.nix, which only
          exists inside a guest. VMs whose configurations are the same files and plain
          values share one evaluation and one system; a configuration that is, or
          holds, a function gets an evaluation of its own.

          The default is the file the guest would build in classic mode
          (`rebuild.target`, by default /etc/nixos/hosts/self/configuration.nix) in
          `selfDir` or `configDir`, when that directory is a Nix path and the file
          exists; otherwise `null`, which host mode refuses. Not used with
          `specialize = "guest"` (setting it then gives a warning).
        '';
      };

      sshAuthorizedKeys = mkOption {
        type = types.listOf types.singleLineStr;
        default = [ ];
        example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... admin@host" ];
        description = ''
          Public keys written to `authorized_keys` in an ssh directory in the store,
          which is mounted at /root/.ssh in the guest. The safe way to give root access.
          Mutually exclusive with `sshDir`.
        '';
      };

      sshDir = mkOption {
        type = types.nullOr types.path;
        default = null;
        apply = p: if p == null then null else toString p;
        example = "/root/.ssh";
        description = ''
          A host directory exported as /root/.ssh in the guest, read when the VM starts.
          The module does not copy it to the Nix store (a Nix path is turned into its
          string). But a Nix path inside a flake's source is in the world-readable store
          already, with the whole flake: give a directory outside the configuration as a
          string, e.g. `"/root/vm-ssh"`. Private keys in it are left out unless
          `allowPrivateKeys` is set.
        '';
      };

      secretsDir = mkOption {
        type = types.nullOr (types.either types.str types.path);
        default = null;
        example = "/var/lib/sprout/secrets/web";
        description = ''
          A host directory (root's alone) of secrets for this VM, one regular file
          each (at most 1 MiB, names of letters, digits and `. _ - @ +`). They go onto
          the VM's own secrets disk, built in its state directory (never in the Nix
          store or the shared image cache), and the guest offers each as
          `/run/sprout/secrets/NAME`, readable by root alone, before sshd and other
          services start: a unit uses one with
          `serviceConfig.LoadCredential = [ "NAME:/run/sprout/secrets/NAME" ];`.
          A changed secret is a new generation. Give it as a string: a Nix path
          would be copied into the world-readable store, so an assertion refuses it.
        '';
      };

      allowPrivateKeys = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Export private keys found in `sshDir` too. Off by default: the guest then
          holds credentials of the host.
        '';
      };

      memory = mkOption {
        type = types.either types.ints.positive (types.submodule {
          options = {
            amount = mkOption {
              type = types.ints.positive;
              description = "Amount of memory, in `unit`s.";
            };
            unit = mkOption {
              type = types.enum memoryUnits;
              default = "MiB";
              description = ''
                libvirt's memory unit: ${lib.concatStringsSep ", " memoryUnits}
                (KB, MB, GB, TB are powers of 1000, the others of 1024).
              '';
            };
          };
        });
        default = 1024;
        example = { amount = 2; unit = "GiB"; };
        description = "Memory of the VM: MiB, or `{ amount; unit; }` as in libvirt. At least 64 MiB.";
      };

      vcpus = mkOption {
        type = types.ints.between 1 256;
        default = 1;
        description = "Number of virtual CPUs.";
      };

      diskSize = mkOption {
        type = types.nullOr (types.submodule {
          options = {
            amount = mkOption {
              type = types.ints.positive;
              description = "Size, in `unit`s.";
            };
            unit = mkOption {
              type = types.enum [ "K" "M" "G" "T" ];
              default = "G";
              description = "qemu-img's unit: K, M, G or T (powers of 1024).";
            };
          };
        });
        default = null;
        example = { amount = 20; unit = "G"; };
        description = ''
          Virtual size of the VM's overlay when it is created; `null` keeps the base
          image's size. The guest grows its root partition and file system on boot.
        '';
      };

      backend = mkOption {
        type = types.enum [ "qemu" "libvirt" ];
        default = "qemu";
        description = ''
          Who runs the VM: `qemu` (sprout runs qemu itself, in the VM's systemd unit)
          or `libvirt` (sprout defines a libvirt domain and watches it; needs
          `virtualisation.libvirtd.enable`).
        '';
      };

      qemuUser = mkOption {
        type = types.str;
        default = "dynamic";
        example = "vmrunner";
        description = ''
          Whom qemu runs as once it has opened the VM's disks and sockets (qemu backend):
          `dynamic` gives it a uid of its own for as long as the VM runs, so that a
          guest that escapes qemu reaches neither the host's files nor another VM;
          `root` keeps root (sprout warns); any other value is an existing user whose
          uid and gid qemu switches to. For libvirt VMs libvirt's qemu.conf decides:
          only `dynamic` is accepted there.
        '';
      };

      libvirt.uri = mkOption {
        type = types.str;
        default = "qemu:///system";
        description = "libvirt connection URI (libvirt backend).";
      };

      network = {
        mode = mkOption {
          type = types.enum [ "user" "bridge" "libvirt" "none" ];
          default = "user";
          description = ''
            `user`: qemu's user-mode NAT, with `forwards`; `bridge`: a tap device on
            the host bridge `bridge`; `libvirt`: the libvirt network `libvirtNetwork`;
            `none`: no network card.
          '';
        };
        forwards = mkOption {
          type = types.listOf (types.submodule forwardOptions);
          default = [ ];
          example = [ { hostPort = 10022; guestPort = 22; } ];
          description = "Ports forwarded from the host to the guest (user mode only).";
        };
        bridge = mkOption {
          type = types.str;
          default = "br0";
          description = "Host bridge the VM is attached to (bridge mode).";
        };
        libvirtNetwork = mkOption {
          type = types.str;
          default = "default";
          description = "libvirt network the VM is attached to (libvirt mode).";
        };
        mac = mkOption {
          type = types.nullOr (types.strMatching "([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}");
          default = null;
          example = "52:54:00:12:34:56";
          description = "MAC address of the VM's network card; `null` derives a stable one from the name.";
        };
      };

      kernel = mkOption {
        type = types.nullOr (types.submodule {
          options = {
            path = mkOption {
              type = types.path;
              description = "Kernel image to boot directly.";
            };
            initrd = mkOption {
              type = types.nullOr types.path;
              default = null;
              description = "Initrd for direct kernel boot.";
            };
            cmdline = mkOption {
              type = types.str;
              default = "";
              description = "Kernel command line for direct kernel boot.";
            };
          };
        });
        default = null;
        description = "Direct kernel boot; `null` boots from the disk's boot loader.";
      };

      extraQemuArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "-device" "virtio-rng-pci" ];
        description = "Extra qemu arguments, appended last (vms.nix's `qemuSwitches`).";
      };

      accel = mkOption {
        type = types.enum [ "auto" "kvm" "tcg" ];
        default = "auto";
        description = ''
          How QEMU runs the guest's CPU. `auto` uses KVM only where a probe guest has
          been seen to run under it with the CPU model the VM gets (`-cpu host`; the
          verdict is cached per boot in /run/sprout), else software emulation (TCG)
          with a warning. `kvm` insists on KVM and fails at once where it cannot run
          the guest; `tcg` always emulates. For libvirt VMs this is the domain type
          (`kvm` or `qemu`). `sprout check-host` shows what the host can do.
        '';
      };

      vnc = mkOption {
        type = types.bool;
        default = false;
        description = "Give the VM a VNC display, listening on localhost only.";
      };

      autostart = mkOption {
        type = types.bool;
        default = true;
        description = "Start the VM with the host (its unit is wanted by `sprout-vms.target`).";
      };

      rebuild = {
        mode = mkOption {
          type = types.enum [ "classic" "flake" ];
          default = "classic";
          description = ''
            How the guest specializes: `classic` runs
            `nixos-rebuild boot -I nixos-config=TARGET`, `flake` runs
            `nixos-rebuild boot --flake TARGET`.
          '';
        };
        target = mkOption {
          type = types.nullOr types.nonEmptyStr;
          default = null;
          example = "/etc/nixos#web";
          description = ''
            What the guest builds, as the guest sees it. `null`:
            `/etc/nixos/hosts/self/configuration.nix` (classic) or `/etc/nixos#self` (flake).
          '';
        };
        extraArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "--option" "substituters" "" ];
          description = "Arguments appended to the guest's nixos-rebuild command.";
        };
        timeoutSeconds = mkOption {
          type = types.ints.positive;
          default = 3600;
          description = "The guest gives up on a rebuild after this many seconds.";
        };
        maxAttempts = mkOption {
          type = types.ints.between 1 100;
          default = 3;
          description = "Rebuild attempts per configuration before the guest gives up.";
        };
        respecializeOnChange = mkOption {
          type = types.bool;
          default = true;
          description = "Specialize again when the exported configuration changes.";
        };
      };

      baseChange = mkOption {
        type = types.enum [ "keep" "rebase" "recreate" ];
        default = "keep";
        description = ''
          What happens to an existing overlay when the base image changes: `keep` the
          old base (the overlay keeps working), `rebase` the overlay onto the new base,
          or `recreate` the overlay (the VM's own state is lost).
        '';
      };

      ready = mkOption {
        type = types.enum [ "specialized" "started" ];
        default = "specialized";
        description = ''
          When the VM's unit counts as started: once the guest reports it runs its
          specialized configuration, or as soon as the VM runs. With `specialized`,
          `systemctl start` (and a host switch adding the VM) waits for that.
        '';
      };

      shutdownTimeout = mkOption {
        type = types.ints.between 1 86400;
        default = 60;
        description = "Seconds a graceful shutdown may take before the VM is powered off.";
      };

      restartOnChange = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Restart the running VM on a host switch that changes its spec. Off: a switch
          never restarts the VM; the new spec is used at its next start.
        '';
      };

      stateDir = mkOption {
        type = types.path;
        default = "/var/lib/sprout/vms/${name}";
        defaultText = literalExpression ''"/var/lib/sprout/vms/<name>"'';
        apply = toString;
        description = ''
          The VM's own directory: its overlay `root.qcow2`, exported disks, sockets,
          logs and status. Never deleted by the module.
        '';
      };
    };
  };
in
{
  options.virtualisation.sprout = {
    enable = mkEnableOption ''
      sprout VMs. Turning it off stops every VM and removes their units; their
      state directories (disks) stay'';

    package = mkOption {
      type = types.package;
      default = pkgs.sprout or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.sprout or (pkgs.callPackage ./package.nix { })";
      description = "The sprout package.";
    };

    cacheDir = mkOption {
      type = types.path;
      default = "/var/lib/sprout/cache";
      apply = toString;
      description = "Shared cache of exported disk images.";
    };

    gc = {
      automatic = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Run `sprout gc` from a timer (`sprout-gc.timer`), as `nix.gc` runs the Nix
          garbage collector: it removes the GC roots under /nix/var/nix/gcroots/sprout
          that no VM uses any more (removed VMs, and bases an overlay no longer uses, so
          that the Nix garbage collector can delete old base images) and the cached
          exported images no VM links to (configuration disks and the closure disks of
          host-built systems). It never touches a VM's overlay or state directory.
        '';
      };
      dates = mkOption {
        type = types.singleLineStr;
        default = "daily";
        example = "weekly";
        description = "When `sprout gc` runs: a calendar event of systemd.time(7) (the timer's OnCalendar).";
      };
      randomizedDelaySec = mkOption {
        type = types.singleLineStr;
        default = "1h";
        example = "0";
        description = "A random delay before each run, up to this time span of systemd.time(7).";
      };
      persistent = mkOption {
        type = types.bool;
        default = true;
        description = "Run at once (after the random delay) when a run was missed while the host was down.";
      };
    };

    checkSpecs = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Validate every generated spec with `sprout check-spec` while building the
        system, so a bad spec fails the build instead of the VM's start. Turn off when
        cross-compiling (the check runs the target's sprout).
      '';
    };

    vms = mkOption {
      type = types.attrsOf (types.submodule vmOptions);
      default = { };
      description = ''
        The VMs. Each runs as the systemd unit `sprout-vm@<name>` from the spec file
        /etc/sprout/vms/<name>.json.
      '';
    };

    specs = mkOption {
      type = types.attrsOf types.attrs;
      readOnly = true;
      internal = true;
      description = "The generated spec of each VM, as a Nix value (docs/spec.md).";
    };
  };
}

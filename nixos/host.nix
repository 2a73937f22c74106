# sprout host module: runs the VMs declared in virtualisation.sprout.vms.
#
# The options are declared in ./options.nix. This file only turns them into
#  - one spec per VM, /etc/sprout/vms/<name>.json, in the format of docs/spec.md;
#  - one unit per VM, sprout-vm@<name>.service, wanted by sprout-vms.target when the
#    VM autostarts;
#  - for libvirt VMs, sprout-libvirt-gc.service, which undefines the domains of VMs
#    that were removed from the configuration (see below);
#  - sprout-gc.service and its timer (gc.*), which run `sprout gc`.
# Everything else (disks, overlays, qemu command lines, libvirt XML, waiting for the
# guest) is the `sprout` tool's business.
#
# specialize = "host": the module also evaluates the VM's `configuration` (plus the
# guest module) with the host's pkgs, once per distinct configuration, and writes its
# toplevel and the base's toplevel into the spec (`system`, `baseSystem`). The spec
# file references both, so the host's own system build builds them and keeps them in
# its closure; sprout exports the closure, the guest imports it.
#
# Restarts: a unit's ExecStart names the spec by its fixed /etc path, so a changed
# spec does not change the unit. With restartOnChange the spec's store path is a
# restart trigger; without it the unit is never restarted by a switch
# (restartIfChanged = false), also not when only the sprout package changed.
#
# Removal: switch-to-configuration stops the unit of a VM that disappeared (with
# its old definition, before /etc changes). A qemu VM is then simply gone; its state
# directory stays. A libvirt domain is defined while its unit runs and stays defined
# when the unit stops (a host reboot must not undefine it), so the stop cannot tell
# "removed" from "stopped". Instead /etc/sprout/libvirt-domains lists the libvirt VMs
# of the current configuration; sprout-libvirt-gc runs at every switch that changes
# this list (and at boot) and undefines, keeping disks, each VM that was listed last
# time (/var/lib/sprout/libvirt-domains) but is not any more.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkIf mapAttrs mapAttrs' nameValuePair filterAttrs attrNames attrValues
    optional optionals optionalAttrs concatMap concatStringsSep;

  cfg = config.virtualisation.sprout;
  sprout = "${cfg.package}/bin/sprout";

  specPath = name: "/etc/sprout/vms/${name}.json";

  # A sprout guest's system: the modules plus sprout's guest module (with this host's
  # sprout), evaluated with the host's own pkgs (its nixpkgs.config and overlays).
  # Used for the bases (base.modules) and, with specialize = "host", for the VMs'
  # specialized systems (configuration).
  evalGuestSystem = modules:
    import (pkgs.path + "/nixos/lib/eval-config.nix") {
      inherit (pkgs.stdenv.hostPlatform) system;
      inherit pkgs;
      modules = modules ++ [
        ./guest.nix
        {
          virtualisation.sprout.guest.enable = true;
          virtualisation.sprout.guest.package = lib.mkDefault cfg.package;
          # The base is built with the host's pkgs, so with its nixpkgs.config; the
          # guest's own rebuilds get what of it can be written down (guest.nix).
          virtualisation.sprout.guest.nixpkgsConfig = lib.mkDefault carriedConfig.data;
        }
      ];
    };

  # The host's nixpkgs.config, split into what can be carried into a guest's own
  # evaluation (plain data) and what cannot (functions such as allowUnfreePredicate
  # or packageOverrides, derivations). Overlays are functions: never carried.
  isData = v:
    if builtins.isFunction v then false
    else if builtins.isList v then builtins.all isData v
    else if builtins.isAttrs v then !(v ? outPath) && builtins.all isData (attrValues v)
    else true;
  carriedConfig = {
    data = filterAttrs (_: isData) config.nixpkgs.config;
    left = attrNames (filterAttrs (_: v: !isData v) config.nixpkgs.config);
  };

  # The base image for VMs with `base.modules`, built with make-disk-image.
  buildBase = vm:
    let system = evalGuestSystem vm.base.modules; in
    {
      inherit system;
      image = import (pkgs.path + "/nixos/lib/make-disk-image.nix") {
        inherit lib pkgs;
        inherit (system) config;
        format = "qcow2";
        diskSize = vm.base.diskSize;
        partitionTableType = "legacy";
        # One nixpkgs per base: the guest module's `nixPath` already pins the
        # nixpkgs the base was built from (a copy without .git); make-disk-image's
        # channel would be a second copy of it.
        copyChannel = false;
      };
    };

  # Each distinct base is evaluated once. Two VMs share a base when their
  # base.modules are the same files and plain values (where each was written down
  # does not count) and diskSize is the same; a module that is a function, or holds
  # one, is never assumed equal to another, so such a VM gets an evaluation of its own.
  # The same holds for the systems of host-specialized VMs and their `configuration`.
  shareable = depth: m:
    if builtins.isFunction m then false
    else if builtins.isList m then depth > 0 && builtins.all (shareable (depth - 1)) m
    else if builtins.isAttrs m then
      depth > 0 && builtins.all (shareable (depth - 1)) (attrValues (removeAttrs m [ "_file" "key" ]))
    else true;
  # Leaves keep their type: true, 1 and "1" are different modules.
  describe = m:
    if builtins.isList m then map describe m
    else if builtins.isAttrs m then mapAttrs (_: describe) (removeAttrs m [ "_file" "key" ])
    else { t = builtins.typeOf m; v = toString m; };
  baseKey = name: vm:
    if shareable 8 vm.base.modules
    then builtins.hashString "sha256" (builtins.toJSON [ (describe vm.base.modules) vm.base.diskSize ])
    else "vm-${name}";
  builtBases = lib.listToAttrs (map (name: nameValuePair (baseKey name cfg.vms.${name}) (buildBase cfg.vms.${name}))
    (attrNames (filterAttrs (_: vm: vm.base.modules != [ ]) cfg.vms)));

  hostBuilt = filterAttrs (_: vm: vm.specialize == "host" && vm.configuration != null) cfg.vms;
  systemKey = name: vm:
    if shareable 8 vm.configuration
    then builtins.hashString "sha256" (builtins.toJSON (describe vm.configuration))
    else "vm-${name}";
  builtSystems = lib.listToAttrs (map (name: nameValuePair (systemKey name hostBuilt.${name}) (evalGuestSystem [ hostBuilt.${name}.configuration ]))
    (attrNames hostBuilt));

  # specialize = "host": the VM's system and its base's, as store paths (with their
  # string context, so the spec file keeps both in the host's closure).
  vmSystem = name: vm:
    if hostBuilt ? ${name}
    then "${builtSystems.${systemKey name vm}.config.system.build.toplevel}"
    else throw "virtualisation.sprout.vms.${name}.configuration is null: host mode has nothing to build.";
  baseSystem = name: vm:
    if vm.base.modules != [ ]
    then "${builtBases.${baseKey name vm}.system.config.system.build.toplevel}"
    else null;

  baseImage = name: vm:
    if vm.base.image != null then vm.base.image
    else "${builtBases.${baseKey name vm}.image}/nixos.qcow2";

  sshSource = vm:
    if vm.sshAuthorizedKeys != [ ] then
      pkgs.writeTextDir "authorized_keys" (concatStringsSep "\n" vm.sshAuthorizedKeys + "\n")
    else vm.sshDir;

  # docs/spec.md, version 1. Keys at their default are left out.
  mkSpec = name: vm:
    let
      ssh = sshSource vm;
      net = vm.network;
      forward = f:
        { inherit (f) hostPort guestPort; }
        // optionalAttrs (f.protocol != "tcp") { inherit (f) protocol; }
        // optionalAttrs (f.hostAddress != "") { inherit (f) hostAddress; };
      network =
        optionalAttrs (net.mode != "user") { inherit (net) mode; }
        // optionalAttrs (net.forwards != [ ]) { forwards = map forward net.forwards; }
        // optionalAttrs (net.mode == "bridge") { inherit (net) bridge; }
        // optionalAttrs (net.mode == "libvirt") { inherit (net) libvirtNetwork; }
        // optionalAttrs (net.mac != null) { inherit (net) mac; };
      rebuild =
        optionalAttrs (vm.rebuild.mode != "classic") { inherit (vm.rebuild) mode; }
        // optionalAttrs (vm.rebuild.target != null) { inherit (vm.rebuild) target; }
        // optionalAttrs (vm.rebuild.extraArgs != [ ]) { inherit (vm.rebuild) extraArgs; }
        // optionalAttrs (vm.rebuild.timeoutSeconds != 3600) { inherit (vm.rebuild) timeoutSeconds; }
        // optionalAttrs (vm.rebuild.maxAttempts != 3) { inherit (vm.rebuild) maxAttempts; }
        // optionalAttrs (!vm.rebuild.respecializeOnChange) { respecializeOnChange = false; };
    in
    {
      version = 1;
      inherit name;
      base = { image = baseImage name vm; }
        // optionalAttrs (vm.base.image != null && vm.base.format != "qcow2") { inherit (vm.base) format; };
      inherit (vm) stateDir;
      sources = {
        config = vm.configDir;
        self = vm.selfDir;
      }
      // optionalAttrs (ssh != null) { inherit ssh; }
      // optionalAttrs (vm.secretsDir != null) { secrets = vm.secretsDir; }
      // optionalAttrs vm.allowPrivateKeys { allowPrivateKeys = true; };
      inherit (vm) memory vcpus;
    }
    // optionalAttrs (cfg.cacheDir != "/var/lib/sprout/cache") { inherit (cfg) cacheDir; }
    // optionalAttrs (vm.diskSize != null) { inherit (vm) diskSize; }
    # Only in host mode: a guest-mode spec is what it was before host mode existed.
    // optionalAttrs (vm.specialize == "host") {
      specialize = "host";
      system = vmSystem name vm;
      baseSystem = baseSystem name vm;
    }
    // optionalAttrs (rebuild != { }) { inherit rebuild; }
    // optionalAttrs (vm.backend != "qemu") { inherit (vm) backend; }
    // optionalAttrs (vm.qemuUser != "dynamic") { inherit (vm) qemuUser; }
    // optionalAttrs (vm.backend == "libvirt" && vm.libvirt.uri != "qemu:///system") { libvirt.uri = vm.libvirt.uri; }
    // optionalAttrs (network != { }) { inherit network; }
    // optionalAttrs (vm.kernel != null) {
      kernel = { inherit (vm.kernel) path cmdline; }
        // optionalAttrs (vm.kernel.initrd != null) { inherit (vm.kernel) initrd; };
    }
    // optionalAttrs (vm.extraQemuArgs != [ ]) { qemuArgs = vm.extraQemuArgs; }
    // optionalAttrs (vm.accel != "auto") { inherit (vm) accel; }
    // optionalAttrs vm.vnc { vnc = true; }
    // optionalAttrs (vm.baseChange != "keep") { inherit (vm) baseChange; }
    // optionalAttrs (vm.ready != "specialized") { inherit (vm) ready; }
    // optionalAttrs (vm.shutdownTimeout != 60) { shutdownTimeoutSeconds = vm.shutdownTimeout; }
    // optionalAttrs vm.restartOnChange { restartOnChange = true; }
    # A libvirt domain's life is tied to its unit (sprout-vms.target starts it), so
    # libvirt must not autostart it by itself, e.g. after the master switch is off.
    // optionalAttrs (!vm.autostart || vm.backend == "libvirt") { autostart = false; };

  specFile = name:
    let json = pkgs.writeText "sprout-vm-${name}.json" (builtins.toJSON cfg.specs.${name});
    in
    if cfg.checkSpecs then
      pkgs.runCommand "sprout-vm-${name}-checked.json" { } ''
        ${sprout} check-spec --no-files ${json}
        cp ${json} $out
      ''
    else json;

  # qemu's bridge helper refuses a bridge that /etc/qemu/bridge.conf does not allow
  # (nixpkgs' qemu reads its configuration from /etc). libvirtd's module writes the
  # same file from allowedBridges; `lines` definitions merge.
  qemuBridges = lib.unique (map (vm: vm.network.bridge)
    (attrValues (filterAttrs (_: vm: vm.backend == "qemu" && vm.network.mode == "bridge") cfg.vms)));

  # The gc unit exists whenever libvirtd does, so that removing the last libvirt VM
  # also undefines it.
  libvirtd = config.virtualisation.libvirtd.enable;
  domainList = concatStringsSep ""
    (map (name: name + "\n") (attrNames (filterAttrs (_: vm: vm.backend == "libvirt") cfg.vms)));

  # The VM units' confinement: what `sprout run` (qemu backend) or `sprout define` +
  # `sprout watch` (libvirt backend) needs and nothing more. data/systemd/sprout-vm@.service.in
  # is the qemu unit at the defaults with the same settings; docs/nixos.md has the
  # measured `systemd-analyze security` scores. Settings left out, and why:
  #  - User=/DynamicUser=: sprout supervises as root: qemu opens /dev/kvm, the disks and
  #    sockets as root and then drops to a uid of its own (-runas), and
  #    qemu-bridge-helper needs CAP_NET_ADMIN. PrivateUsers= likewise: in a user
  #    namespace root could not switch qemu to a real host uid, and the nix daemon
  #    would see another uid.
  #  - MemoryDenyWriteExecute=: qemu's software emulation (TCG) writes and runs the
  #    code it translates (a JIT); qemu would fail to start without KVM. The libvirt
  #    unit runs qemu too: the KVM probe of `sprout define`.
  #  - PrivateDevices=: it hides /dev/kvm and /dev/net/tun (DeviceAllow= cannot add
  #    nodes back to the private /dev); DevicePolicy=closed + DeviceAllow= instead.
  #  - PrivateNetwork=, IPAddressDeny=: qemu's user networking connects wherever the
  #    guest does and listens for port forwards, bridge mode attaches a host tap. The
  #    libvirt unit with a local URI only talks over unix sockets and has both.
  #  - ProtectProc=invisible: sprout checks its qemu through /proc/PID/stat (process
  #    identity), and after -runas that process belongs to another uid, which hidepid
  #    hides from a root without CAP_SYS_PTRACE. ProcSubset=pid: the KVM probe's
  #    verdict is keyed on /proc/sys/kernel/random/boot_id.
  #  - RootDirectory=/RootImage=: qemu, nix and the exported trees are the host's.
  #  - SystemCallFilter= narrower than @system-service (which holds @resources and
  #    @setuid, both needed: qemu raises its file limit, -runas switches user): the 63
  #    calls qemu 7.2 makes under TCG and 65 under KVM (strace, with sprout's arguments)
  #    are all in it; a narrower list would break with the next qemu.
  hardening = {
    UMask = "0077";
    ProtectSystem = "strict";
    PrivateTmp = true;
    # Config trees and ssh keys may live under /home or /root: readable, not writable.
    ProtectHome = "read-only";
    PrivateMounts = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictNamespaces = true;
    LockPersonality = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    NoNewPrivileges = true;
    SystemCallArchitectures = "native";
    # seccomp: qemu's own sandbox (-sandbox on) installs its filter with seccomp(2),
    # which @system-service leaves out. An unexpected call fails with EPERM rather than
    # killing the VM with SIGSYS.
    SystemCallFilter = "@system-service seccomp";
    SystemCallErrorNumber = "EPERM";
    DevicePolicy = "closed";
  };

  # The gc units: files only (sprout gc), and libvirtd's socket (undefine). Nothing to
  # emulate, no devices, no network, no capabilities: what they remove is root's own.
  gcHardening = writable: hardening // {
    ReadWritePaths = writable;
    CapabilityBoundingSet = "";
    PrivateDevices = true;
    PrivateNetwork = true;
    IPAddressDeny = "any";
    RestrictAddressFamilies = "AF_UNIX";
    MemoryDenyWriteExecute = true;
  };

  # A qemu VM's unit at the defaults (user networking, no port below 1024): what
  # data/systemd/sprout-vm@.service.in sets too. CAP_SETUID, CAP_SETGID: qemu's -runas
  # switch to its own uid; CAP_KILL: sprout (root) signals that qemu. AF_INET,
  # AF_INET6: user networking and its port forwards; AF_NETLINK: glibc's address
  # lookups (getaddrinfo with AI_ADDRCONFIG) and the bridge helper. The console is a
  # unix socket, not a pty: qemu needs no char-pts.
  qemuHardening = {
    CapabilityBoundingSet = "CAP_SETUID CAP_SETGID CAP_KILL CAP_DAC_READ_SEARCH";
    RestrictAddressFamilies = "AF_UNIX AF_INET AF_INET6 AF_NETLINK";
    DeviceAllow = "/dev/kvm rw";
  };

  # Per backend and VM. CAP_DAC_READ_SEARCH: the config trees and ssh keys sprout
  # exports may belong to another user behind a 0700 directory (a home); read and
  # search only, nothing sprout writes is anybody else's (no CAP_DAC_OVERRIDE, CAP_CHOWN,
  # CAP_FOWNER for qemu).
  # A VM's state directory is its private data (sprout run keeps it so): closed to
  # others, but traversable for libvirt's unprivileged qemu, which must reach the
  # files it is handed.
  stateDirMode = vm: if vm.backend == "libvirt" then "0711" else "0700";

  # ReadWritePaths= fails the unit (226/NAMESPACE) for a path that does not exist,
  # and tmpfiles made these at boot, possibly on the file system beneath a mount
  # that RequiresMountsFor= brings up later: made again, unsandboxed ("+"), before
  # the sandbox of ExecStart= is set up.
  makeDirs = vm: [
    "+${pkgs.coreutils}/bin/install -d -m ${stateDirMode vm} ${lib.escapeShellArg vm.stateDir}"
    "+${pkgs.coreutils}/bin/install -d -m 0711 ${lib.escapeShellArg cfg.cacheDir}"
  ] ++ optionals (vm.backend == "libvirt") [
    "+${pkgs.coreutils}/bin/install -d -m 0700 /var/lib/sprout/libvirt-uids"
  ];

  vmHardening = vm:
    let
      net = vm.network;
      bridge = vm.backend == "qemu" && net.mode == "bridge";
      lowPort = builtins.any (f: f.hostPort < 1024) net.forwards;
      localLibvirt = builtins.match "qemu(\\+unix)?:///.*" vm.libvirt.uri != null;
    in
    hardening // {
      # The VM's state directory, the exported images and the GC roots that keep its
      # base (and host-built system) alive; the nix daemon's socket and libvirtd's
      # need no write access to their file systems.
      ReadWritePaths = [ vm.stateDir cfg.cacheDir "/nix/var/nix/gcroots/sprout" ];
      # /run/sprout (the KVM probe's verdicts, qemu's uid claims) is shared by every VM:
      # kept when one unit stops.
      RuntimeDirectory = "sprout";
      RuntimeDirectoryPreserve = true;
    }
    // (if vm.backend == "qemu" then qemuHardening
      // optionalAttrs bridge {
        # qemu-bridge-helper makes the tap device: /dev/net/tun and CAP_NET_ADMIN.
        DeviceAllow = [ qemuHardening.DeviceAllow "/dev/net/tun rw" ];
      }
      // optionalAttrs (bridge || lowPort) {
        # CAP_NET_BIND_SERVICE: a port forward below 1024, bound by qemu before it
        # drops root.
        CapabilityBoundingSet = concatStringsSep " " ([ qemuHardening.CapabilityBoundingSet ]
          ++ optional bridge "CAP_NET_ADMIN" ++ optional lowPort "CAP_NET_BIND_SERVICE");
      }
    else {
      # libvirtd runs qemu; sprout only exports, defines and watches. CAP_DAC_OVERRIDE:
      # the status channel's socket and the console log are made for the VM's qemu
      # uid (dynamic_ownership), and connecting to a socket takes write permission.
      # CAP_CHOWN: `sprout define` gives the VM's own disks to its qemu's uid and takes
      # back what libvirt gave its qemu user under an earlier sprout; CAP_FOWNER: it
      # lets that uid read a base outside the store that is not root's (an ACL entry).
      CapabilityBoundingSet = "CAP_DAC_READ_SEARCH CAP_DAC_OVERRIDE CAP_CHOWN CAP_FOWNER";
      # The uids of libvirt VMs' qemus, recorded by `sprout define`; and a base image
      # outside the store, on which `sprout define` sets the ACL entry that lets this
      # VM's qemu uid read it (an xattr: a read-only mount refuses it). "-": a missing
      # base is sprout's error to report, not the namespace's.
      ReadWritePaths = [ vm.stateDir cfg.cacheDir "/nix/var/nix/gcroots/sprout" "/var/lib/sprout/libvirt-uids" ]
        ++ optional (vm.base.image != null && !lib.hasPrefix "${builtins.storeDir}/" (toString vm.base.image))
          "-${toString vm.base.image}";
      # AF_INET, AF_INET6 only for a remote URI (qemu+ssh://, qemu+tcp://).
      RestrictAddressFamilies = if localLibvirt then "AF_UNIX AF_NETLINK" else "AF_UNIX AF_INET AF_INET6 AF_NETLINK";
      # `sprout define` with accel "auto" runs a probe guest under qemu itself, with
      # /dev/kvm (libvirt offers KVM wherever /dev/kvm opens): so no PrivateDevices=, and
      # no MemoryDenyWriteExecute= either (the probe's qemu).
      DeviceAllow = [ "/dev/kvm rw" ];
    } // optionalAttrs localLibvirt {
      # libvirtd, the nix daemon and the status channel are unix sockets with paths,
      # which a private network namespace still reaches.
      PrivateNetwork = true;
      IPAddressDeny = "any";
    });

  mkUnit = name: vm:
    let
      spec = specPath name;
      libvirt = vm.backend == "libvirt";
      # Long enough for a first boot that builds the specialized system.
      startTimeout =
        if vm.ready == "specialized"
        then vm.rebuild.timeoutSeconds * vm.rebuild.maxAttempts + 600
        else 600;
    in
    {
      description = "sprout VM ${name}";
      wantedBy = optional vm.autostart "sprout-vms.target";
      after = [ "network.target" ] ++ optional libvirt "libvirtd.service";
      requires = optional libvirt "libvirtd.service";

      # NixOS gives a unit's PATH only coreutils, findutils, grep, sed and systemd
      # (nixos/lib/systemd-lib.nix). sprout runs nix-store and nix by name to export a
      # host-built system's closure (host/image/nix_store.cc): the system's own Nix, which
      # owns the store's database. qemu, qemu-img and mkfs.ext4 are on PATH through the
      # package's wrapper (package.nix).
      path = [ config.nix.package ];

      unitConfig = {
        # The overlay, sockets and records, and the exported images: mounted first
        # (and kept mounted while the VM runs), wherever they are.
        RequiresMountsFor = [ vm.stateDir cfg.cacheDir ];
        # A VM that cannot even start (say prepare fails) is restarted a few times,
        # not forever: more than 5 starts in 10 minutes and the unit stays failed
        # until `systemctl reset-failed`, a host switch or a manual start after the
        # interval. (systemd's default, 5 in 10 s, never trips with RestartSec=10.)
        StartLimitIntervalSec = lib.mkDefault 600;
        StartLimitBurst = lib.mkDefault 5;
      };

      restartIfChanged = vm.restartOnChange;
      restartTriggers = optional vm.restartOnChange (specFile name);

      serviceConfig = {
        # `sprout run` and `sprout watch` send READY=1 as `ready` says.
        Type = "notify";
        NotifyAccess = "main";
        ExecStart =
          if libvirt then "${sprout} watch --spec ${spec}"
          else "${sprout} run --spec ${spec}";
        # SIGTERM goes to sprout alone, which shuts the guest down gracefully (QMP
        # powerdown, or libvirt shutdown); qemu is killed only after TimeoutStopSec.
        KillMode = "mixed";
        TimeoutStartSec = startTimeout;
        TimeoutStopSec = vm.shutdownTimeout + 30;
        Restart = "on-failure";
        RestartSec = 10;
        # Exit status 2 is bad input (the spec, its files): starting again cannot help.
        RestartPreventExitStatus = lib.mkDefault 2;
      } // vmHardening vm // {
        ExecStartPre = makeDirs vm ++ optional libvirt "${sprout} define --spec ${spec} --start";
      };
    };

  gcScript = pkgs.writeShellScript "sprout-libvirt-gc" ''
    set -u
    current=/etc/sprout/libvirt-domains
    previous=/var/lib/sprout/libvirt-domains
    if [ -e "$previous" ]; then
      while IFS= read -r name; do
        [ -n "$name" ] || continue
        if ! grep -qxF -- "$name" "$current"; then
          echo "VM $name was removed from the configuration: undefining its libvirt domain (disks stay)"
          ${sprout} undefine "$name" || echo "could not undefine $name" >&2
        fi
      done < "$previous"
    fi
    mkdir -p /var/lib/sprout
    cp "$current" "$previous"
  '';
in
{
  imports = [ ./options.nix ];

  config = mkIf cfg.enable {
    assertions = concatMap
      (name:
        let
          vm = cfg.vms.${name};
          opt = "virtualisation.sprout.vms.${name}";
        in
        [
          {
            assertion = builtins.match "[A-Za-z0-9_][A-Za-z0-9._-]{0,63}" name != null;
            message = "${opt}: a VM name is 1-64 characters of A-Z a-z 0-9 . _ - and does not start with . or -.";
          }
          {
            assertion = (vm.base.modules != [ ]) != (vm.base.image != null);
            message = "${opt}: set exactly one of base.modules (build the base image) and base.image (a prebuilt image).";
          }
          {
            assertion = vm.base.modules != [ ] -> vm.base.format == "qcow2";
            message = "${opt}.base.format: images built from base.modules are qcow2.";
          }
          {
            assertion = builtins.isPath vm.configDir -> builtins.pathExists vm.configDir;
            message = "${opt}.configDir: ${toString vm.configDir} does not exist.";
          }
          {
            assertion = builtins.isPath vm.configDir && builtins.isPath vm.selfDir && builtins.pathExists vm.configDir
              -> builtins.pathExists vm.selfDir;
            message = "${opt}.selfDir: ${toString vm.selfDir} does not exist"
              + lib.optionalString (toString vm.selfDir == toString vm.configDir + "/hosts/${name}")
                " (selfDir defaults to configDir + \"/hosts/${name}\"; add that directory or set selfDir)"
              + ".";
          }
          {
            assertion = !(vm.sshAuthorizedKeys != [ ] && vm.sshDir != null);
            message = "${opt}: set sshAuthorizedKeys or sshDir, not both.";
          }
          {
            assertion = vm.secretsDir != null
              -> !(builtins.isPath vm.secretsDir || lib.hasPrefix "${builtins.storeDir}/" (toString vm.secretsDir));
            message = "${opt}.secretsDir is a Nix path or in the Nix store, which every user of the host can read: "
              + "give a directory only root reads, as a string (say \"/var/lib/sprout/secrets/${name}\").";
          }
          {
            # One inside the other would put the secrets on a cached, shared disk
            # (sprout refuses it too, judging the paths links lead to).
            assertion = vm.secretsDir != null -> !(lib.any
              (tree: tree != null && (lib.hasPrefix "${toString tree}/" "${toString vm.secretsDir}/"
                || lib.hasPrefix "${toString vm.secretsDir}/" "${toString tree}/"))
              [ vm.configDir vm.selfDir vm.sshDir ]);
            message = "${opt}.secretsDir overlaps configDir, selfDir or sshDir, whose disks are cached and may be "
              + "shared: keep the secrets directory apart.";
          }
          {
            assertion = vm.allowPrivateKeys -> vm.sshDir != null;
            message = "${opt}.allowPrivateKeys only applies to sshDir, which is not set.";
          }
          {
            assertion = vm.network.forwards != [ ] -> vm.network.mode == "user";
            message = "${opt}.network.forwards: port forwards need network.mode = \"user\" (it is \"${vm.network.mode}\").";
          }
          {
            assertion = vm.network.mode == "libvirt" -> vm.backend == "libvirt";
            message = "${opt}.network.mode = \"libvirt\" needs backend = \"libvirt\".";
          }
          {
            assertion = vm.backend == "libvirt" -> config.virtualisation.libvirtd.enable;
            message = "${opt}.backend = \"libvirt\" needs virtualisation.libvirtd.enable = true.";
          }
          {
            assertion = vm.backend == "libvirt" -> vm.qemuUser == "dynamic";
            message = "${opt}.qemuUser = \"${vm.qemuUser}\": a libvirt VM's qemu runs as libvirt's qemu.conf says (user, group);"
              + " qemuUser applies to backend = \"qemu\" only. Remove it, or set it in virtualisation.libvirtd.qemu.verbatimConfig.";
          }
          {
            assertion = vm.specialize == "host" -> vm.configuration != null;
            message = "${opt}.configuration: specialize = \"host\" needs the configuration the host builds for the VM, and there is no default"
              + " (the file the guest would build in classic mode, selfDir + \"/configuration.nix\" unless rebuild.target says otherwise,"
              + " is used only when selfDir or configDir is a Nix path holding it); set ${opt}.configuration.";
          }
          {
            assertion = vm.rebuild.mode == "flake" && vm.rebuild.target == null && builtins.isPath vm.configDir
              -> builtins.pathExists (vm.configDir + "/flake.nix");
            message = "${opt}.rebuild: flake mode builds /etc/nixos#self by default, but configDir has no flake.nix; set rebuild.target.";
          }
        ])
      (attrNames cfg.vms);

    warnings = concatMap
      (name:
        let vm = cfg.vms.${name}; in
        optional
          (vm.specialize == "guest" && vm.rebuild.mode == "classic" && vm.rebuild.target == null && builtins.isPath vm.selfDir
            && !builtins.pathExists (vm.selfDir + "/configuration.nix"))
          "virtualisation.sprout.vms.${name}: selfDir has no configuration.nix, which classic mode builds by default; the VM will not specialize."
        ++ optional (vm.specialize == "guest" && vm.configuration != null)
          "virtualisation.sprout.vms.${name}.configuration is only used with specialize = \"host\"; this VM specializes in the guest (rebuild.*)."
        # A guest's nixos-rebuild evaluates with the guest's nixpkgs, not the host's
        # pkgs the base was built with.
        ++ optional (vm.specialize == "guest" && vm.base.modules != [ ]
            && (config.nixpkgs.overlays != [ ] || carriedConfig.left != [ ]))
          ("virtualisation.sprout.vms.${name} specializes in the guest, whose nixos-rebuild evaluates with the guest's own nixpkgs:"
            + lib.optionalString (config.nixpkgs.overlays != [ ])
              " the host's nixpkgs.overlays (${toString (builtins.length config.nixpkgs.overlays)}), which the base was built with, are not carried there"
            + lib.optionalString (config.nixpkgs.overlays != [ ] && carriedConfig.left != [ ]) ", nor"
            + lib.optionalString (carriedConfig.left != [ ])
              " nixpkgs.config.${concatStringsSep ", nixpkgs.config." carriedConfig.left} (not plain data; the rest of nixpkgs.config is carried)"
            + ". A module that needs them builds on the host and fails in the guest: set them in the VM's configuration too,"
            + " or use specialize = \"host\".")
        # make-disk-image's diskSize = "auto" is the system's size plus additionalSpace
        # (512M), and a null diskSize keeps the base's size for the overlay.
        ++ optional (vm.base.modules != [ ] && vm.base.diskSize == "auto" && vm.diskSize == null)
          ("virtualisation.sprout.vms.${name}.diskSize is null and base.diskSize is \"auto\": the VM's disk is the base image's size,"
            + " the base system plus about 512 MiB, and a specialized system (or a host-built closure) that needs more fails"
            + " with \"No space left on device\". Set diskSize, e.g. { amount = 20; unit = \"G\"; }: the guest grows its root"
            + " file system to the disk (guest module, diskLayout) and the overlay takes only what is written."))
      (attrNames cfg.vms);

    virtualisation.sprout.specs = mapAttrs mkSpec cfg.vms;

    environment.systemPackages = [ cfg.package ];

    environment.etc = mapAttrs'
      (name: _: nameValuePair "sprout/vms/${name}.json" { source = specFile name; })
      cfg.vms
    // optionalAttrs libvirtd {
      "sprout/libvirt-domains".text = domainList;
    }
    // optionalAttrs (qemuBridges != [ ]) {
      "qemu/bridge.conf".text = lib.concatMapStrings (b: "allow ${b}\n") qemuBridges;
    };

    systemd.tmpfiles.rules = [
      "d /var/lib/sprout 0755 root root -"
      # Nobody lists the VMs; 0711 when libvirt runs one: its unprivileged qemu must
      # pass through to the overlay and disks in /var/lib/sprout/vms/NAME.
      "d /var/lib/sprout/vms ${if builtins.any (vm: vm.backend == "libvirt") (attrValues cfg.vms) then "0711" else "0750"} root root -"
      # 0711: a VM's qemu reaches an image it may read (its ACL), nobody lists the cache.
      "d ${cfg.cacheDir} 0711 root root -"
      # The uids `sprout define` gives libvirt VMs' qemus (and `sprout run` never takes).
      "d /var/lib/sprout/libvirt-uids 0700 root root -"
      "d /nix/var/nix/gcroots/sprout 0755 root root -"
    ] ++ map (vm: "d ${vm.stateDir} ${stateDirMode vm} root root -") (attrValues cfg.vms);

    # The VMs start with the host but hold up nothing: with default dependencies a
    # target is ordered after every unit it wants (systemd.target(5)), and
    # multi-user.target after this target, so the boot would wait for every VM to be
    # ready, up to TimeoutStartSec (hours with ready = "specialized"), and so would a
    # host switch that starts a VM (switch-to-configuration starts the active targets
    # again and waits for their jobs), failing when the VM fails. Without them neither
    # waits; the shutdown ordering they would have added is put back. `systemctl start
    # sprout-vm@NAME` still waits as `ready` says, and `sprout wait` waits for a phase.
    systemd.targets.sprout-vms = {
      description = "sprout VMs";
      wantedBy = [ "multi-user.target" ];
      unitConfig.DefaultDependencies = false;
      conflicts = [ "shutdown.target" ];
      before = [ "shutdown.target" ];
    };

    # As nixpkgs' nix.gc (nixos/modules/services/misc/nix-gc.nix).
    systemd.timers = optionalAttrs cfg.gc.automatic {
      sprout-gc = {
        description = "Run sprout gc";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = cfg.gc.dates;
          RandomizedDelaySec = cfg.gc.randomizedDelaySec;
          Persistent = cfg.gc.persistent;
        };
      };
    };

    systemd.services = mapAttrs' (name: vm: nameValuePair "sprout-vm@${name}" (mkUnit name vm)) cfg.vms
    // {
      # What nothing else removes: GC roots of removed VMs and of bases no overlay
      # uses, cached images no VM links to. `sprout gc` never touches overlays or
      # state directories (host/disk/gc_roots.cc: only the cache and GC root directories).
      sprout-gc = {
        description = "Remove sprout's GC roots and cached images that no VM uses";
        # The cache, and the state directories whose links say which images are used.
        unitConfig.RequiresMountsFor = [ cfg.cacheDir ] ++ map (vm: vm.stateDir) (attrValues cfg.vms);
        serviceConfig = {
          Type = "oneshot";
          ExecStart = "${sprout} gc";
        } // gcHardening [ cfg.cacheDir "/nix/var/nix/gcroots/sprout" ];
      };
    }
    // optionalAttrs libvirtd {
      sprout-libvirt-gc = {
        description = "Undefine libvirt domains of removed sprout VMs";
        wantedBy = [ "multi-user.target" ];
        after = [ "libvirtd.service" ];
        requires = [ "libvirtd.service" ];
        before = [ "sprout-vms.target" ];
        restartTriggers = [ (builtins.hashString "sha256" domainList) ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = gcScript;
        } // gcHardening [ "/var/lib/sprout" cfg.cacheDir "/nix/var/nix/gcroots/sprout" ];
      };
    };
  };
}

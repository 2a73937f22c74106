# Evaluation cases for sprout's NixOS modules, run by eval-test.py:
#   nix-instantiate --eval --strict --json --readonly-mode tests/nix/cases.nix \
#     --argstr libPath "$NIXPKGS_LIB" -A <case>
{ libPath, gitNixpkgs ? null }:
let
  lib = import libPath;
  pkgs = import ./fixtures/pkgs.nix { inherit lib; };

  eval = modules: lib.evalModules {
    modules = [ ./fixtures/nixos.nix { _module.args.pkgs = pkgs; } ] ++ modules;
  };

  toOption = x: if x == true then "true" else if x == false then "false" else toString x;

  # Unit files as NixOS writes them (our transcription of nixpkgs' systemd-lib.nix).
  render = import ./systemd-unit.nix { inherit lib pkgs; };
  sproutOnly = lib.filterAttrs (n: _: lib.hasPrefix "sprout" n);
  unitFiles = config:
    lib.mapAttrs' (n: u: lib.nameValuePair "${n}.service" (render.serviceToUnit n u)) (sproutOnly config.systemd.services)
    // lib.mapAttrs' (n: t: lib.nameValuePair "${n}.target" (render.targetToUnit n t)) (sproutOnly config.systemd.targets)
    // lib.mapAttrs' (n: t: lib.nameValuePair "${n}.timer" (render.timerToUnit n t)) (sproutOnly config.systemd.timers);
  # The .wants links NixOS makes for those units' wantedBy: { "TARGET.wants/UNIT" = "../UNIT"; }.
  unitLinks = config: render.wantsLinks (
    lib.mapAttrs' (n: u: lib.nameValuePair "${n}.service" u) (sproutOnly config.systemd.services)
    // lib.mapAttrs' (n: t: lib.nameValuePair "${n}.target" t) (sproutOnly config.systemd.targets)
    // lib.mapAttrs' (n: t: lib.nameValuePair "${n}.timer" t) (sproutOnly config.systemd.timers));

  # nixos/package.nix called with fake inputs (stdenv.mkDerivation returns its
  # arguments): what the derivation would be built from, e.g. its postFixup. The
  # packages sprout's wrapper names are the fixture's stubs.
  packageArgs =
    let
      fn = import ../../nixos/package.nix;
      given = { inherit lib; stdenv.mkDerivation = args: args; inherit (pkgs) qemu_kvm e2fsprogs libvirt openssh; };
    in
    fn (builtins.mapAttrs (n: _: given.${n} or (pkgs.realPackage n)) (builtins.functionArgs fn));

  # What a host configuration produces, as plain data.
  hostResult = modules:
    let
      config = (eval modules).config;
      sprout = lib.filterAttrs (n: _: lib.hasPrefix "sprout" n) config.systemd.services;
    in
    {
      # Exactly what /etc/sprout/vms/NAME.json holds: builtins.toJSON, parsed back.
      specs = builtins.fromJSON (builtins.unsafeDiscardStringContext (builtins.toJSON config.virtualisation.sprout.specs));
      etc = lib.mapAttrs (_: f: { inherit (f) text; source = if f.source == null then null else toString f.source; })
        (lib.filterAttrs (n: _: lib.hasPrefix "sprout/" n || lib.hasPrefix "qemu/" n) config.environment.etc);
      units = lib.mapAttrs
        (_: u: {
          inherit (u) wantedBy after requires restartIfChanged;
          restartTriggers = map toString u.restartTriggers;
          serviceConfig = lib.mapAttrs (_: toString) u.serviceConfig;
          path = map toString u.path;
        })
        sprout;
      targets = lib.mapAttrs (_: t: { inherit (t) wantedBy; }) config.systemd.targets;
      timers = lib.mapAttrs (_: t: { inherit (t) wantedBy; timerConfig = lib.mapAttrs (_: toOption) t.timerConfig; })
        config.systemd.timers;
      # Every sprout unit file, as NixOS would write it, and its .wants links.
      files = unitFiles config;
      links = unitLinks config;
      tmpfiles = config.systemd.tmpfiles.rules;
      systemPackages = map toString config.environment.systemPackages;
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      inherit (config) warnings;
    };

  # A minimal valid VM, to break in one way per case.
  vm = extra: {
    imports = [ ../../nixos/host.nix ];
    virtualisation.sprout.enable = true;
    virtualisation.sprout.vms.t = lib.recursiveUpdate
      {
        base.image = "/nix/store/00000000000000000000000000000000-base/nixos.qcow2";
        configDir = "/etc/nixos-vms";
      }
      extra;
  };
in
{
  examples = {
    nixos-on-nixos = hostResult [ ../../examples/nixos-on-nixos/hosts/vmhost/configuration.nix ];
    qemu-quickstart = hostResult [ ../../examples/qemu-quickstart/configuration.nix ];
    libvirt = hostResult [ ../../examples/libvirt/configuration.nix ];
  };

  minimal = hostResult [ (vm { }) ];

  # Everything non-default, to check every spec key the module can write.
  everything = hostResult [
    (vm {
      base.image = "/images/base.img";
      base.format = "raw";
      selfDir = "/etc/nixos-vms/hosts/other";
      sshDir = "/root/.ssh";
      allowPrivateKeys = true;
      memory = { amount = 1536; unit = "MB"; };
      vcpus = 4;
      diskSize = { amount = 40; unit = "G"; };
      network = {
        mode = "user";
        forwards = [ { protocol = "udp"; hostAddress = "127.0.0.1"; hostPort = 5353; guestPort = 53; } ];
        mac = "52:54:00:12:34:56";
      };
      kernel = { path = "/boot/bzImage"; initrd = "/boot/initrd"; cmdline = "console=ttyS0"; };
      extraQemuArgs = [ "-device" "virtio-rng-pci" ];
      accel = "tcg";
      vnc = true;
      autostart = false;
      rebuild = {
        mode = "flake";
        target = "/etc/nixos#t";
        extraArgs = [ "--show-trace" ];
        timeoutSeconds = 600;
        maxAttempts = 5;
        respecializeOnChange = false;
      };
      baseChange = "rebase";
      ready = "started";
      shutdownTimeout = 30;
      restartOnChange = true;
      stateDir = "/srv/vms/t";
    })
    { virtualisation.sprout.cacheDir = "/srv/sprout-cache"; }
  ];

  disabled = hostResult [ (vm { }) { virtualisation.sprout.enable = lib.mkForce false; } ];

  gcOff = hostResult [ (vm { }) { virtualisation.sprout.gc.automatic = false; } ];
  gcSettings = hostResult [ (vm { }) {
    virtualisation.sprout.gc = { dates = "weekly"; randomizedDelaySec = "0"; persistent = false; };
  } ];

  secrets = hostResult [ (vm { secretsDir = "/var/lib/sprout/secrets/t"; }) ];

  bad = lib.mapAttrs (_: modules: (hostResult modules).failedAssertions) {
    forwardsWithBridge = [ (vm { network = { mode = "bridge"; forwards = [ { hostPort = 1; guestPort = 2; } ]; }; }) ];
    sshBoth = [ (vm { sshDir = "/root/.ssh"; sshAuthorizedKeys = [ "ssh-ed25519 AAAA x" ]; }) ];
    secretsNixPath = [ (vm { secretsDir = ../../examples; }) ];
    secretsInStore = [ (vm { secretsDir = "/nix/store/00000000000000000000000000000000-secrets"; }) ];
    secretsInConfig = [ (vm { secretsDir = "/etc/nixos-vms/secrets"; }) ];
    noBase = [ (vm { base.image = null; }) ];
    bothBases = [ (vm { base.modules = [ { } ]; }) ];
    flakeWithoutTarget = [ (vm {
      configDir = ../../examples/qemu-quickstart/vm;
      selfDir = ../../examples/qemu-quickstart/vm/hosts/guest;
      rebuild.mode = "flake";
    }) ];
    # configDir has no hosts/t, the default selfDir.
    noSelfDir = [ (vm { configDir = ../../examples/qemu-quickstart/vm; }) ];
    noConfigDir = [ (vm { configDir = ../../examples/qemu-quickstart/no-such-dir; }) ];
    libvirtWithoutLibvirtd = [ (vm { backend = "libvirt"; }) ];
    libvirtNetworkOnQemu = [ (vm { network.mode = "libvirt"; }) ];
    # libvirt's qemu.conf decides whom its qemu runs as.
    qemuUserOnLibvirt = [ (vm { backend = "libvirt"; qemuUser = "root"; }) { virtualisation.libvirtd.enable = true; } ];
    privateKeysWithoutSshDir = [ (vm { allowPrivateKeys = true; }) ];
    badName = [ { imports = [ (vm { }) ]; virtualisation.sprout.vms."-x" = { base.image = "/i"; configDir = "/c"; }; } ];
    # A string configDir is read at VM start: nothing the host could evaluate.
    hostWithoutConfiguration = [ (vm { specialize = "host"; }) ];
    # Flake mode: the host evaluates no flake, so there is no default either.
    hostFlake = [ (vm {
      configDir = ./fixtures/host-built;
      selfDir = ./fixtures/host-built/hosts/one;
      specialize = "host";
      rebuild = { mode = "flake"; target = "/etc/nixos#one"; };
    }) ];
  };

  # qemuUser: written into the spec only when it is not "dynamic" (the default); a
  # libvirt VM at the default has none either.
  qemuUser = hostResult [
    (vm { qemuUser = "vmrunner"; })
    { virtualisation.sprout.vms.u = { base.image = "/i"; configDir = "/c"; qemuUser = "root"; }; }
    { virtualisation.sprout.vms.v = { base.image = "/i"; configDir = "/c"; backend = "libvirt"; }; }
    { virtualisation.libvirtd.enable = true; }
  ];

  # Must fail to evaluate, with nixpkgs' type error naming the option.
  memoryLots = (hostResult [ (vm { memory = "lots"; }) ]).specs;

  # qemu's bridge helper needs /etc/qemu/bridge.conf to allow each bridge qemu VMs use.
  bridge = hostResult [
    (vm { network = { mode = "bridge"; bridge = "br7"; }; })
    { virtualisation.sprout.vms.u = { base.image = "/i"; configDir = "/c"; network = { mode = "bridge"; bridge = "br7"; }; }; }
    { virtualisation.sprout.vms.v = { base.image = "/i"; configDir = "/c"; network = { mode = "bridge"; bridge = "br8"; }; }; }
  ];

  # The flake's outputs, with a nixpkgs input made of nixpkgs' lib and the fixture pkgs.
  flake =
    let
      nixpkgs = { inherit lib; legacyPackages.x86_64-linux = pkgs; };
      outputs = (import ../../flake.nix).outputs { self = outputs // { outPath = toString ../..; }; inherit nixpkgs; };
    in
    {
      systems = builtins.attrNames outputs.packages;
      # host and default are one module: importing both must not define anything twice.
      hostAndDefault = hostResult [ outputs.nixosModules.host outputs.nixosModules.default (vm { }) ];
      # A host that is a sprout guest itself: both modules in one configuration.
      hostAndGuest =
        let config = (eval [ outputs.nixosModules.host outputs.nixosModules.guest (vm { })
          { virtualisation.sprout.guest.enable = true; } ]).config;
        in {
          specs = builtins.attrNames config.virtualisation.sprout.specs;
          agent = config.systemd.services.sprout-agent.serviceConfig.ExecStart;
        };
    };

  # What a VM's specialized configuration sees: it imports /etc/sprout/nixos/guest.nix,
  # the file the base installs, which points into the store. Evaluated without
  # --readonly-mode, so that builtins.path and writeText really write the store.
  specialized =
    let
      base = (eval [ ../../nixos/guest.nix { virtualisation.sprout.guest.enable = true; } ]).config;
      pinned = base.environment.etc."sprout/nixos/guest.nix".source;
      # A classic configuration.nix: imports = [ /etc/sprout/nixos/guest.nix ];
      # In the guest, <nixpkgs> is the base's NIX_PATH entry: the specialized
      # configuration's pkgs.path is that store path.
      nixPathOf = c: c.systemd.services.sprout-agent.environment.NIX_PATH;
      specPkgs = pkgs // { path = /. + builtins.unsafeDiscardStringContext (lib.removePrefix "nixpkgs=" (nixPathOf base)); };
      spec = (eval [ pinned { _module.args.pkgs = lib.mkForce specPkgs; } ]).config;
      agentOf = c: c.systemd.services.sprout-agent.serviceConfig.ExecStart;
    in
    {
      pinned = toString pinned;
      pinnedText = builtins.readFile pinned;
      baseAgent = agentOf base;
      specAgent = agentOf spec;
      specEnabled = spec.virtualisation.sprout.guest.enable;
      # The specialized system installs the same pinned module again: a fixed point.
      specPinned = toString spec.environment.etc."sprout/nixos/guest.nix".source;
      # The agent's path keeps its store context, so it stays in the system's closure.
      specAgentContext = builtins.attrNames (builtins.getContext (agentOf spec));
      agentPath = toString pkgs.sprout.agent;
      # ... and installs the same NIX_PATH again, not a copy of a copy.
      baseNixPath = nixPathOf base;
      specNixPath = nixPathOf spec;
    };

  # The host's nixpkgs.config reaches the guest's own rebuilds, as far as it is plain
  # data: the base's pinned module sets it as defaults, a specialized configuration
  # importing that module gets it (and may override a key), and installs the same
  # pinned module again. Evaluated with the real store, as `specialized`.
  carriedConfig =
    let
      carried = { allowUnfree = true; permittedInsecurePackages = [ "olddb-1.0" ]; };
      base = (eval [ ../../nixos/guest.nix { virtualisation.sprout.guest = { enable = true; nixpkgsConfig = carried; }; } ]).config;
      pinned = base.environment.etc."sprout/nixos/guest.nix".source;
      spec = (eval [ pinned ]).config;
      overridden = (eval [ pinned { nixpkgs.config.cudaSupport = true; } ]).config;
      plain = (eval [ ../../nixos/guest.nix { virtualisation.sprout.guest.enable = true; } ]).config;
    in
    {
      baseConfig = base.nixpkgs.config;
      specConfig = spec.nixpkgs.config;
      overriddenConfig = overridden.nixpkgs.config;
      samePinned = toString spec.environment.etc."sprout/nixos/guest.nix".source == toString pinned;
      # Without anything to carry the pinned module is what it always was.
      plainPinnedText = builtins.readFile plain.environment.etc."sprout/nixos/guest.nix".source;
    };

  # The host side: plain values of nixpkgs.config go to every guest evaluation; a
  # function, a derivation and overlays cannot, and guest-specialized VMs get a warning.
  hostNixpkgs = hostResult [
    (vm { base = { image = null; modules = [ { } ]; }; diskSize = { amount = 20; unit = "G"; }; })
    { virtualisation.sprout.vms.h = {
        base.modules = [ { } ]; configDir = "/c"; specialize = "host"; configuration = { };
        diskSize = { amount = 20; unit = "G"; }; }; }
    {
      nixpkgs.config = {
        allowUnfree = true;
        permittedInsecurePackages = [ "olddb-1.0" ];
        packageOverrides = p: { };
        someDrv = pkgs.systemd;
      };
      nixpkgs.overlays = [ (final: prev: { }) ];
    }
  ];

  # specialize = "host": t and u have the same configuration (one evaluation, one
  # system), v another one; w specializes in the guest. All four share one base.
  hostShared =
    let
      base = [ ../../examples/nixos-on-nixos/common/vm_host_base.nix ];
      vmsDir = ./fixtures/host-built;
    in
    hostResult [
      (vm { base = { image = null; modules = base; }; specialize = "host"; configuration = vmsDir + "/hosts/one/configuration.nix"; })
      { virtualisation.sprout.vms.u = { base.modules = base; configDir = "/c"; specialize = "host"; configuration = vmsDir + "/hosts/one/configuration.nix"; }; }
      { virtualisation.sprout.vms.v = { base.modules = base; configDir = "/c"; specialize = "host"; configuration = vmsDir + "/hosts/two/configuration.nix"; }; }
      { virtualisation.sprout.vms.w = { base.modules = base; configDir = vmsDir; selfDir = vmsDir + "/hosts/two"; }; }
      # (A disk to grow into: no disk-space warning.)
      { virtualisation.sprout.vms = lib.genAttrs [ "t" "u" "v" "w" ] (_: { diskSize = { amount = 20; unit = "G"; }; }); }
    ];

  # The default configuration is the file the guest would build: rebuild.target (as
  # the guest sees it) in selfDir or configDir. A prebuilt base.image has no system.
  hostDefaults =
    let vmsDir = ./fixtures/host-built; in
    hostResult [
      (vm { specialize = "host"; configDir = vmsDir; selfDir = vmsDir + "/hosts/one"; })
      { virtualisation.sprout.vms.u = {
          base.image = "/i"; configDir = vmsDir; selfDir = vmsDir + "/hosts/one";
          specialize = "host"; rebuild.target = "/etc/nixos/hosts/two/configuration.nix"; }; }
      { virtualisation.sprout.vms.v = {
          base.image = "/i"; configDir = vmsDir; selfDir = vmsDir + "/hosts/two";
          specialize = "host"; rebuild.target = "/etc/nixos/hosts/self/configuration.nix"; }; }
    ];

  # A base built with diskSize "auto" and no diskSize for the VM: little room, a warning.
  smallDisk = hostResult [ (vm { base = { image = null; modules = [ { } ]; }; }) ];
  sizedDisk = hostResult [ (vm { base = { image = null; modules = [ { } ]; }; diskSize = { amount = 20; unit = "G"; }; }) ];
  sizedBase = hostResult [ (vm { base = { image = null; modules = [ { } ]; diskSize = 20480; }; }) ];

  # A config tree with a system.nix, a nixos-system entry in nixPath: nixos-rebuild 26.05
  # builds them without --file, and the agent's wrapper passes --file (no warning, no
  # assertion: neither is what the guest builds).
  systemNix = hostResult [ (vm { configDir = ./fixtures/system-nix; }) ];
  systemNixFlake = hostResult [ (vm { configDir = ./fixtures/system-nix; rebuild = { mode = "flake"; target = "/etc/nixos#t"; }; }) ];
  nixosSystemInNixPath = map (a: a.message) (lib.filter (a: !a.assertion) (eval [
    ../../nixos/guest.nix
    { virtualisation.sprout.guest = { enable = true; nixPath = [ "nixpkgs=/n" "nixos-system=/etc/nixos/system.nix" ]; }; }
  ]).config.assertions);

  # A configuration set for a guest-specialized VM is not used: a warning says so.
  guestWithConfiguration = hostResult [ (vm { configuration = { }; }) ];

  # Base modules that differ only in a value's type are different bases.
  typedBases = hostResult [
    (vm { base = { image = null; modules = [ { x = true; } ]; }; })
    { virtualisation.sprout.vms.u = { base.modules = [ { x = "1"; } ]; configDir = "/c"; }; }
    { virtualisation.sprout.vms.v = { base.modules = [ { x = true; } ]; configDir = "/c"; }; }
  ];

  # The nixpkgs a base pins (nixPath), when pkgs.path is a checkout with .git
  # (eval-test.py makes one: gitNixpkgs). Evaluated with the real store.
  pinnedFromCheckout =
    let
      config = (eval [
        ../../nixos/guest.nix
        { virtualisation.sprout.guest.enable = true; _module.args.pkgs = lib.mkForce (pkgs // { path = /. + gitNixpkgs; }); }
      ]).config;
    in
    config.systemd.services.sprout-agent.environment.NIX_PATH;

  # nixBinDir follows nix.package.
  guestNix =
    let
      nix = pkgs.realPackage "nix-2.99";
      config = (eval [ ../../nixos/guest.nix { virtualisation.sprout.guest.enable = true; nix.package = nix; } ]).config;
    in
    {
      nix = toString nix;
      agentConfig = builtins.fromJSON (builtins.unsafeDiscardStringContext config.environment.etc."sprout/agent.json".text);
      path = map toString config.systemd.services.sprout-agent.path;
    };

  guest =
    let
      config = (eval [ ../../nixos/guest.nix { virtualisation.sprout.guest.enable = true; } ]).config;
      agent = config.systemd.services.sprout-agent;
    in
    {
      agentConfig = builtins.fromJSON config.environment.etc."sprout/agent.json".text;
      pinnedModule = toString config.environment.etc."sprout/nixos/guest.nix".source;
      # The `nixos-rebuild` first on the agent's PATH, and the packages its text names.
      rebuildWrapper = rec {
        path = toString (builtins.head agent.path);
        text = (builtins.head agent.path).text or null;
        destination = (builtins.head agent.path).destination or null;
        systemd = toString config.systemd.package;
        nixosRebuild = toString config.system.build.nixos-rebuild;
        # The file it adds as --file in classic mode (evaluated with the real store,
        # written there).
        entry = builtins.head (builtins.match ".* --file (/nix/store/[^ \n]*).*" text);
      };
      service = {
        inherit (agent) wantedBy wants after before restartIfChanged environment;
        path = map toString agent.path;
        serviceConfig = lib.mapAttrs (_: toString) agent.serviceConfig;
      };
      inherit (config.boot) kernelModules kernelParams;
      initrdModules = config.boot.initrd.availableKernelModules;
      fileSystems = config.fileSystems;
    };

  # The agent's unit file as NixOS would write it (tests/nix/systemd-unit.nix).
  guestUnit =
    let
      config = (eval [ ../../nixos/guest.nix { virtualisation.sprout.guest.enable = true; } ]).config;
    in
    render.serviceToUnit "sprout-agent" config.systemd.services.sprout-agent;

  # The early unit (identity and secrets, before sshd) as NixOS would write it, and
  # what the module sets for sshd: tests/vm's systemd guest installs the unit.
  guestEarly =
    let
      config = (eval [ ../../nixos/guest.nix { virtualisation.sprout.guest.enable = true; } ]).config;
      off = (eval [ ../../nixos/guest.nix {
        virtualisation.sprout.guest.enable = true;
        virtualisation.sprout.guest.identity.enable = false;
      } ]).config;
    in
    {
      unit = render.serviceToUnit "sprout-agent-early" config.systemd.services.sprout-agent-early;
      hostKeys = config.services.openssh.hostKeys;
      offHasUnit = off.systemd.services ? sprout-agent-early;
      offHostKeys = off.services.openssh.hostKeys or null;
    };

  # The host's units the vm suite's systemd guest runs under a real systemd
  # (tests/vm/build-systemd-guest.sh installs golden/systemd-guest-units/, which
  # eval-test.py keeps equal to this): three VMs for its stand-in `sprout`, which never
  # gets `slow` ready, fails `bad` (exit 1) and `badspec` (exit 2, bad input).
  systemdGuest = hostResult [ {
    imports = [ ../../nixos/host.nix ];
    virtualisation.sprout.enable = true;
    virtualisation.sprout.vms = lib.genAttrs [ "slow" "bad" "badspec" ] (_: {
      base.image = "/nix/store/00000000000000000000000000000000-base/nixos.qcow2";
      configDir = "/etc/nixos-vms";
    });
  } ];

  # Render and run (eval-test.py runs them): a host-built VM's unit with the host's
  # Nix a real store path of stand-ins, and the wrapper package.nix puts around
  # sprout. Evaluated with the real store (the stubs are copied there).
  unitRun =
    let
      config = (eval [
        (vm { specialize = "host"; configuration = { }; })
        { nix.package = pkgs.nixStub; }
      ]).config;
    in
    {
      files = unitFiles config;
      inherit (packageArgs) postFixup;
      sprout = toString pkgs.sprout;
    };
}

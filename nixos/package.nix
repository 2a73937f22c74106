# sprout, built with meson from this repository.
{ lib
, stdenv
, meson
, ninja
, pkg-config
, makeWrapper
, spdlog
, cxxopts
, gtest
, nlohmann_json
, openssl
, xxHash
, systemd
, util-linux
, e2fsprogs
, libvirt
, qemu_kvm
, openssh
}:

stdenv.mkDerivation {
  pname = "sprout";
  # The one version, project()'s in meson.build (which the binaries print too).
  version = builtins.head
    (builtins.match "project[(][^)]*[[:space:]]version : '([^']+)'.*" (builtins.readFile ../meson.build));

  src = lib.cleanSourceWith {
    # cleanSource leaves out .git, result links and editor files.
    src = lib.cleanSource ../.;
    # Only what the build reads: not nixos/, examples/ or docs/, so editing those
    # does not rebuild sprout.
    filter = path: type:
      let rel = lib.removePrefix (toString ../. + "/") (toString path); in
      !(lib.hasPrefix "nixos" rel || lib.hasPrefix "examples" rel || lib.hasPrefix "docs" rel
        || lib.hasPrefix "result" rel || lib.hasPrefix "build/" rel || rel == "flake.nix" || rel == "flake.lock");
  };

  nativeBuildInputs = [ meson ninja pkg-config makeWrapper ];
  buildInputs = [
    spdlog
    cxxopts
    gtest
    nlohmann_json
    openssl
    xxHash # XXH3, header-only: the closure disk's NAR checksums
    systemd # libsystemd: sd_notify
    util-linux # libmount
    e2fsprogs # libext2fs
    libvirt
  ];

  # The guest agent goes into its own output, so guests do not pull in qemu.
  outputs = [ "out" "agent" ];
  postInstall = ''
    moveToOutput bin/sprout-agent "$agent"
  '';

  doCheck = true;
  checkPhase = ''
    runHook preCheck
    meson test --suite unit --print-errorlogs
    runHook postCheck
  '';

  # Every program `sprout` runs by name has its place (docs/nixos.md, "Where sprout
  # finds the programs it runs"):
  #  - first on PATH, always these: qemu-system-x86_64 and qemu-img (qemu_kvm), and
  #    mkfs.ext4 (e2fsprogs), which run, prepare and export need;
  #  - last on PATH, so the caller's own come first: virsh (`sprout console` of a
  #    libvirt VM; libvirt is in the closure anyway, sprout loads its library), ssh and
  #    ssh-keyscan (`sprout ssh`), and ssh-keygen, which mints each VM's ssh host key
  #    on its first prepare: in a unit, too (the unit's PATH has no openssh).
  #  - not here: nix-store and nix (host-built export). They must be the system's Nix,
  #    the one that owns /nix/store's database: the host module puts `nix.package` on
  #    its units' PATH, and a NixOS shell has it on PATH already.
  # The agent's output is not wrapped: the guest's unit gives it its PATH.
  postFixup = ''
    wrapProgram $out/bin/sprout --prefix PATH : ${lib.makeBinPath [ qemu_kvm e2fsprogs ]} \
      --suffix PATH : ${lib.makeBinPath [ libvirt openssh ]}
  '';

  meta = {
    description = "Run many NixOS VMs from one shared base image, each specializing on first boot";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "sprout";
  };
}

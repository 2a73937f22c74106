"""NixOS-shaped systems built by the machine's real Nix (Debian's nix-bin), without
nixpkgs: derivations whose builder is busybox (a store path holding /bin/busybox).

  env = nix_env()                      # NIX_CONFIG for building as root, no daemon
  base, system = build_systems(workdir, tag, extra_bytes=0)
  new_base = build_attr(workdir, tag, "newBase")

`base` is a toplevel with a few small dependencies; `system` is a toplevel that shares
one of them with the base and adds dependencies of a realistic spread of sizes (1 KiB
to 4 MiB, random bytes, an executable, a symlink, a directory of small files), plus
`extra_bytes` spread over 200-KiB files when asked; `newBase` is a later base that has
the system's largest dependency but not its smallest. All have bin/switch-to-configuration:
a sh script that, for `boot`, writes its toplevel to /boot/sprout-test-default (the test
guest's "boot loader", read by its /init) and prints what NixOS's prints. `tag` goes
into every derivation, so different tags give different store paths.
"""
import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"


def nix_env():
    env = dict(os.environ)
    # As root without a daemon or nixbld users (these machines); harmless otherwise.
    env["NIX_CONFIG"] = "build-users-group =\nsandbox = false\n" + env.get("NIX_CONFIG", "")
    return env


def missing_tools():
    return [t for t in ("nix-build", "nix-store", "nix") if not shutil.which(t)] + \
        ([] if os.path.exists(BUSYBOX) else [BUSYBOX])


SWITCH = r'''#!/bin/sh
# switch-to-configuration (sprout test stand-in for NixOS's)
out=$(cd "$(dirname "$0")/.." && pwd)
case ${1:-} in
  boot)
    echo "updating the boot loader: $out is the default for the next boot"
    mkdir -p /boot && echo "$out" >/boot/sprout-test-default.tmp && mv /boot/sprout-test-default.tmp /boot/sprout-test-default && sync
    ;;
  *) echo "switch-to-configuration (sprout-test): only boot is emulated, not '${1:-}'" >&2; exit 2 ;;
esac
'''

NIX = r'''
{ tag, extraFiles }:
let
  bb = builtins.path { path = ./bb; name = "busybox-${tag}"; };
  sh = "${bb}/busybox";
  mk = name: script: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = sh;
    args = [ "sh" "-e" "-c" script ];
    PATH = "${bb}";
    TAG = tag;
  };
  blob = name: kib: mk name "mkdir -p $out/share; head -c ${toString (kib * 1024)} /dev/urandom >$out/share/${name}.bin";
  glibc = blob "glibc-${tag}" 64;
  coreutils = mk "coreutils-${tag}" "mkdir -p $out/bin; printf '#!/bin/sh\\necho coreutils\\n' >$out/bin/true; chmod +x $out/bin/true; echo ${glibc} >$out/needs";
  etc = mk "etc-${tag}" "mkdir -p $out/etc; for i in $(seq 1 40); do echo \"file $i ${coreutils}\" >$out/etc/f$i.conf; done; ln -s f1.conf $out/etc/link";
  app = blob "app-${tag}" 1024;
  big = blob "big-${tag}" 4096;
  small = blob "small-${tag}" 1;
  extra = builtins.genList (i: blob "extra-${toString i}-${tag}" 200) extraFiles;
  switch = ./switch-to-configuration;
  toplevel = name: deps: mk name ''
    mkdir -p $out/bin
    cp ${switch} $out/bin/switch-to-configuration
    chmod 555 $out/bin/switch-to-configuration
    echo ${name} >$out/name
    echo sprout-${tag} >$out/nixos-version
    echo "${builtins.concatStringsSep " " (map toString deps)}" >$out/dependencies
    ln -s ${etc} $out/etc
  '';
in {
  base = toplevel "nixos-system-base-${tag}" [ glibc coreutils ];
  system = toplevel "nixos-system-web-${tag}" ([ glibc coreutils app big small ] ++ extra);
  # A later base: it has the system's big dependency, and not small.
  newBase = toplevel "nixos-system-newbase-${tag}" [ glibc big ];
}
'''


def build_systems(workdir, tag, extra_bytes=0, timeout=600):
    """Builds base and system into the real store; returns their toplevel paths."""
    return build_attr(workdir, tag, "base", extra_bytes, timeout), \
        build_attr(workdir, tag, "system", extra_bytes, timeout)


def build_attr(workdir, tag, attr, extra_bytes=0, timeout=600):
    """Builds one toplevel (base, system, or newBase) into the real store; returns its path."""
    d = os.path.join(workdir, f"nixsys-{tag}")
    os.makedirs(os.path.join(d, "bb"), exist_ok=True)
    shutil.copy(BUSYBOX, os.path.join(d, "bb", "busybox"))
    with open(os.path.join(d, "switch-to-configuration"), "w") as f:
        f.write(SWITCH)
    with open(os.path.join(d, "systems.nix"), "w") as f:
        f.write(NIX)
    extra = (extra_bytes + 200 * 1024 - 1) // (200 * 1024)
    r = subprocess.run(["nix-build", os.path.join(d, "systems.nix"), "-A", attr, "--no-out-link",
                        "--argstr", "tag", tag, "--arg", "extraFiles", str(extra)],
                       capture_output=True, text=True, env=nix_env(), timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"nix-build {attr} failed:\n{r.stderr[-3000:]}")
    return r.stdout.strip().splitlines()[-1]


def requisites(path, store=None):
    cmd = ["nix-store", "--query", "--requisites", path]
    if store:
        cmd[1:1] = ["--store", store]
    r = subprocess.run(cmd, capture_output=True, text=True, env=nix_env(), check=True, timeout=300)
    return sorted(r.stdout.split())


def nix3(*args, check=True, timeout=600):
    """`nix --extra-experimental-features nix-command ARGS`; returns the CompletedProcess."""
    r = subprocess.run(["nix", "--extra-experimental-features", "nix-command", *args],
                       capture_output=True, text=True, env=nix_env(), timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"nix {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r


def flip_byte_in_largest_nar(cache_dir):
    """Corrupts a binary cache: one byte flipped in the middle of its largest NAR."""
    nar_dir = os.path.join(cache_dir, "nar")
    biggest = max(os.listdir(nar_dir), key=lambda n: os.path.getsize(os.path.join(nar_dir, n)))
    p = os.path.join(nar_dir, biggest)
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.seek(os.path.getsize(p) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    return p

#!/usr/bin/env bash
# build-systemd-guest.sh --agent PATH --out DIR [--cache DIR]
#
# Builds the test guest with a real systemd (the busybox guest's sibling):
#   DIR/vmlinuz     Debian's cloud kernel (fetch-kernel.sh)
#   DIR/initrd.img  stage 1 only (build-guest.sh --init systemd/stage1-init): the
#                   virtio modules, then switch_root to the root's systemd
#   DIR/root.img    raw ext4, label "nixos" (the guest module's root label): the
#                   cached debootstrap root (debootstrap-root.sh) plus
#     /usr/bin/sprout-agent and the libraries the root lacks (copy-prog.sh)
#     /etc/systemd/system/sprout-agent.service: tests/nix/golden/sprout-agent.service
#         byte for byte (the unit the NixOS guest module generates), enabled as
#         NixOS enables it (multi-user.target.wants/ link to ../sprout-agent.service)
#     /etc/systemd/system/sprout-agent-early.service: golden/sprout-agent-early.service,
#         enabled by a sysinit.target.wants/ link; Debian's openssh-server (ssh.service)
#         serves the key it installs
#     /etc/sprout/agent.json: tests/nix/expected-agent.json (the module's agent.json)
#     /usr/bin/nixos-rebuild: the busybox guest's stand-in (guest/nixos-rebuild)
#     the host module's units: tests/nix/golden/systemd-guest-units/ copied into
#         /etc/systemd/system as it is (the files and .wants links NixOS makes for
#         three VMs: sprout-vm@slow/bad/badspec.service wanted by sprout-vms.target,
#         wanted by multi-user.target; the gc units), and /usr/bin/sprout: the
#         stand-in systemd/sprout their ExecStart runs (store-path rule); the
#         directories their ReadWritePaths= name, as the module's tmpfiles rules make them
#     the store-path rule: every /nix/store/<32 zeros>-NAME the units or agent.json
#         name is a directory whose bin and sbin link to /usr/bin and /usr/sbin, so
#         the unit's ExecStart, PATH and nixBinDir resolve to the root's programs
#         (ExecStart .../bin/sprout-agent is /usr/bin/sprout-agent) without editing
#         the unit; /nix/store/<zeros>-nixos-system-base is the base generation
#     systemd/: sprout-test-generation.service (/run/current-system from the system
#         profile, each boot), answer.socket + answer@.service (port 8080),
#         10-sprout-test.network (systemd-networkd, enabled with its wait-online)
#     a fixed /etc/machine-id (no first-boot units), hostname sprout-test; no timers,
#         no getty on tty1, no e2scrub_reap
# Root needed only for the first debootstrap (cached); the rest runs as any user
# (mkfs.ext4 -d, no loop device). Prints kernel=, initrd=, root= lines.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
agent="" out="" cache=""
usage() { sed -n '2p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --agent) agent=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "build-systemd-guest: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n $agent && -n $out ]] || usage
[[ -f $agent ]] || { echo "build-systemd-guest: agent $agent not found" >&2; exit 1; }
agent=$(cd "$(dirname "$agent")" && echo "$(pwd)/$(basename "$agent")")
cache=${cache:-${SPROUT_TEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/sprout-test}}
unit=$here/../nix/golden/sprout-agent.service
host_units=$here/../nix/golden/systemd-guest-units
agent_json=$here/../nix/expected-agent.json
mkdir -p "$out"
out=$(cd "$out" && pwd)

# --- kernel and stage 1 ----------------------------------------------------
"$here/build-guest.sh" --init "$here/systemd/stage1-init" --out "$out/stage1" --cache "$cache" >/dev/null
cp "$out/stage1/vmlinuz" "$out/vmlinuz"
cp "$out/stage1/initrd.img" "$out/initrd.img"

# --- the root ----------------------------------------------------------------
set +e
base=$("$here/debootstrap-root.sh" "$cache")
rc=$?
set -e
[[ $rc == 0 ]] || exit "$rc"
base=${base#root=}
root=$out/.root
rm -rf "$root"
mkdir -p "$root"
cp -a "$base/." "$root/"
rm -f "$root/.complete"
cd "$root"

# shellcheck source=copy-prog.sh
. "$here/copy-prog.sh"
copy_prog "$agent" /usr/bin/sprout-agent
install -m 0755 "$here/guest/nixos-rebuild" usr/bin/nixos-rebuild
install -D -m 0644 "$agent_json" etc/sprout/agent.json

sys=etc/systemd/system
install -D -m 0644 "$unit" "$sys/sprout-agent.service"
mkdir -p "$sys/multi-user.target.wants" "$sys/sysinit.target.wants" "$sys/sockets.target.wants" \
  "$sys/network-online.target.wants" var/lib/sprout
ln -sfn ../sprout-agent.service "$sys/multi-user.target.wants/sprout-agent.service"
# The early unit (identity and secrets, before sshd), enabled as NixOS enables it.
install -D -m 0644 "$here/../nix/golden/sprout-agent-early.service" "$sys/sprout-agent-early.service"
ln -sfn ../sprout-agent-early.service "$sys/sysinit.target.wants/sprout-agent-early.service"
# The host module's units with their .wants links, as they are; the stand-in sprout.
cp -a "$host_units/." "$sys/"
install -m 0755 "$here/systemd/sprout" usr/bin/sprout
# The directories the module's tmpfiles rules make (nixos/host.nix): the units'
# ReadWritePaths= must exist, or systemd cannot set up their mount namespace.
install -d -m 0755 var/lib/sprout nix/var/nix/gcroots/sprout
install -d -m 0750 var/lib/sprout/vms
install -d -m 0711 var/lib/sprout/cache
for vm in slow bad badspec; do install -d -m 0700 "var/lib/sprout/vms/$vm"; done

# The store-path rule (see the header).
for p in $(grep -rho '/nix/store/0\{32\}-[^/ :"]*' "$unit" "$agent_json" "$host_units" | sort -u); do
  mkdir -p "${p#/}"
  ln -sfn /usr/bin "${p#/}/bin"
  ln -sfn /usr/sbin "${p#/}/sbin"
done
# The guest module's `nixos-rebuild` wrapper (it waits for network-online.target, then
# runs the real one), as the module renders it, at its store path; what it names
# follows the store-path rule too.
wrapper=$here/../nix/golden/sprout-nixos-rebuild
for p in $(grep -ho '/nix/store/0\{32\}-[^/ :"]*' "$wrapper" | sort -u); do
  mkdir -p "${p#/}"
  ln -sfn /usr/bin "${p#/}/bin"
  ln -sfn /usr/sbin "${p#/}/sbin"
done
w=nix/store/00000000000000000000000000000000-sprout-nixos-rebuild
rm -f "$w/bin" "$w/sbin"
install -D -m 0755 "$wrapper" "$w/bin/nixos-rebuild"
basegen=nix/store/00000000000000000000000000000000-nixos-system-base
mkdir -p "$basegen" nix/var/nix/profiles nix/store-built
echo base >"$basegen/name"

install -m 0755 -D "$here/systemd/generation" usr/lib/sprout-test/generation
install -m 0755 "$here/systemd/answer" usr/lib/sprout-test/answer
for u in sprout-test-generation.service answer.socket answer@.service; do
  install -m 0644 "$here/systemd/$u" "$sys/$u"
done
ln -sfn ../sprout-test-generation.service "$sys/sysinit.target.wants/sprout-test-generation.service"
ln -sfn ../answer.socket "$sys/sockets.target.wants/answer.socket"
install -D -m 0644 "$here/systemd/10-sprout-test.network" etc/systemd/network/10-sprout-test.network
# systemctl enable systemd-networkd, by hand (its [Install] section; no chroot needed).
ln -sfn /lib/systemd/system/systemd-networkd.service "$sys/multi-user.target.wants/systemd-networkd.service"
ln -sfn /lib/systemd/system/systemd-networkd.service "$sys/dbus-org.freedesktop.network1.service"
ln -sfn /lib/systemd/system/systemd-networkd.socket "$sys/sockets.target.wants/systemd-networkd.socket"
ln -sfn /lib/systemd/system/systemd-networkd-wait-online.service \
  "$sys/network-online.target.wants/systemd-networkd-wait-online.service"

# No timers (apt-daily and friends would start apt under TCG at boot; sprout-gc), no getty on
# the absent VGA console, no e2scrub: less to run on one emulated CPU.
rm -f "$sys"/timers.target.wants/* "$sys/getty.target.wants/getty@tty1.service" \
  "$sys/multi-user.target.wants/e2scrub_reap.service"
echo 5370726f7574546573744775657374ff >etc/machine-id
echo sprout-test >etc/hostname
printf '127.0.0.1 localhost sprout-test\n::1 localhost\n' >etc/hosts
touch etc/NIXOS

# --- pack ----------------------------------------------------------------------
cd "$out"
kib=$(du -sk "$root" | cut -f1)
mkfs.ext4 -q -F -L nixos -d "$root" "$out/root.img.tmp" "$((kib * 3 / 2 + 131072))K" >/dev/null
mv "$out/root.img.tmp" "$out/root.img"
rm -rf "$root"
echo "kernel=$out/vmlinuz"
echo "initrd=$out/initrd.img"
echo "root=$out/root.img"

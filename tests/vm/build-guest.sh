#!/usr/bin/env bash
# build-guest.sh [--agent PATH] --out DIR [--cache DIR] [--agent-config PATH]
#                [--init PATH] [--add SRC=DEST]...
#
# Builds the small real Linux guest that stands in for NixOS in sprout's VM
# tests, without root:
#   DIR/vmlinuz     Debian's cloud kernel (fetched by fetch-kernel.sh into the cache)
#   DIR/initrd.img  gzip'd newc cpio: busybox-static + applet links, the agent at
#                   /usr/bin/sprout-agent with every library ldd lists and the ELF
#                   loader (with --agent), the virtio/ACPI-button/evdev modules (uncompressed, with
#                   a load order), /init, stand-ins for nixos-rebuild, systemctl,
#                   reboot/poweroff/halt/shutdown, and /etc/sprout/agent.json
#                   (a copy of --agent-config, when given).
# --add SRC=DEST puts one more file into the image (ELF programs get their libraries).
# --init PATH is /init instead of guest/init (the systemd guest's stage 1 uses this,
# without --agent: that guest has the agent on its root disk, not in the initramfs).
# Idempotent and fast (a few seconds); the image is reproducible for the same inputs
# (sorted entries, fixed mtimes, gzip -n, cpio --reproducible).
# Cache: --cache DIR, else $SPROUT_TEST_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/sprout-test.
#
# Build-time packages (Debian 12): busybox-static cpio kmod (modinfo) xz-utils zstd
# gzip libc-bin (ldd) coreutils findutils python3, plus what fetch-kernel.sh needs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
agent="" out="" cache="" agent_config="" init=$here/guest/init
adds=()
usage() { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --agent) agent=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --agent-config) agent_config=$2; shift 2 ;;
    --add) adds+=("$2"); shift 2 ;;
    --init) init=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "build-guest: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n $out ]] || usage
[[ -z $agent || -f $agent ]] || { echo "build-guest: agent $agent not found" >&2; exit 1; }
[[ -f $init ]] || { echo "build-guest: init $init not found" >&2; exit 1; }
[[ -z $agent_config || -f $agent_config ]] || { echo "build-guest: agent config $agent_config not found" >&2; exit 1; }
abspath() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
[[ -z $agent ]] || agent=$(abspath "$agent")
init=$(abspath "$init")
[[ -z $agent_config ]] || agent_config=$(abspath "$agent_config")
for i in "${!adds[@]}"; do
  adds[i]="$(abspath "${adds[i]%%=*}")=${adds[i]#*=}"
done
cache=${cache:-${SPROUT_TEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/sprout-test}}

busybox=$(command -v busybox || true)
if [[ -z $busybox ]] || ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  busybox=/bin/busybox
fi
[[ -x $busybox ]] || { echo "build-guest: busybox-static is not installed" >&2; exit 1; }

# --- kernel ---------------------------------------------------------------
kinfo=$("$here/fetch-kernel.sh" "$cache")
vmlinuz=$(sed -n 's/^vmlinuz=//p' <<<"$kinfo")
moddir=$(sed -n 's/^modules=//p' <<<"$kinfo")

mkdir -p "$out"
out=$(cd "$out" && pwd)
root=$out/.root
rm -rf "$root"
mkdir -p "$root"
cd "$root"
mkdir -p bin sbin usr/bin usr/sbin usr/lib/sprout-test lib/modules/sprout-test \
  etc/sprout etc/nixos etc/acpi/PWRF proc sys dev run tmp mnt persist \
  var/lib/sprout var/log nix/store nix/store-built nix/var/nix/profiles root

# --- busybox and its applets ---------------------------------------------
cp "$busybox" bin/busybox
# (one python3 call: ~400 ln processes would take seconds here)
"$busybox" --list-full | python3 -c '
import os, sys
for applet in sorted(sys.stdin.read().split()):
    if os.path.lexists(applet):
        continue
    os.makedirs(os.path.dirname(applet) or ".", exist_ok=True)
    os.symlink("/bin/busybox", applet)
'

# --- programs with their shared libraries --------------------------------
# shellcheck source=copy-prog.sh
. "$here/copy-prog.sh"
[[ -z $agent ]] || copy_prog "$agent" /usr/bin/sprout-agent
for a in "${adds[@]}"; do
  copy_prog "${a%%=*}" "${a#*=}"
done
if [[ -n $agent_config ]]; then
  cp "$agent_config" etc/sprout/agent.json
fi

# --- kernel modules, uncompressed, in dependency order --------------------
# Wanted: virtio transport + block + console (status port) + net (user-mode NIC),
# and the ACPI power button (button.ko) with evdev so busybox acpid sees it.
wanted=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
        virtio_blk virtio_console failover net_failover virtio_net button evdev)
declare -A done_mod=()
order=()
add_module() {
  local m=$1 f dep
  [[ -n ${done_mod[$m]:-} ]] && return 0
  done_mod[$m]=1
  f=$(find "$moddir/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) | head -n1)
  if [[ -z $f ]]; then
    # Not a module: built into the kernel?
    if grep -q "/$m.ko\$" "$moddir/modules.builtin" 2>/dev/null; then return 0; fi
    echo "build-guest: module $m not found under $moddir" >&2; exit 1
  fi
  local dest=lib/modules/sprout-test/$m.ko
  case $f in
    *.ko) cp "$f" "$dest" ;;
    *.ko.xz) xz -dc "$f" >"$dest" ;;
    *.ko.zst) zstd -qdc "$f" >"$dest" ;;
    *.ko.gz) gzip -dc "$f" >"$dest" ;;
  esac
  for dep in $(modinfo -F depends "$dest" | tr ',' ' '); do
    add_module "${dep//-/_}"
  done
  order+=("$m")
}
for m in "${wanted[@]}"; do add_module "$m"; done
printf '%s\n' "${order[@]}" >lib/modules/sprout-test/order

# --- guest scripts --------------------------------------------------------
install -m 0755 "$init" init
install -m 0755 "$here/guest/nixos-rebuild" usr/bin/nixos-rebuild
install -m 0755 "$here/guest/systemctl" usr/bin/systemctl
install -m 0755 "$here/guest/halt" usr/lib/sprout-test/halt
install -m 0755 "$here/guest/power-button" etc/acpi/PWRF/00000080
install -m 0755 "$here/guest/answer" usr/lib/sprout-test/answer
# reboot/poweroff/halt/shutdown behave like on a systemd system (a clean
# shutdown), not like busybox's (signal PID 1, which our shell /init ignores).
for cmd in reboot poweroff halt shutdown; do
  rm -f "sbin/$cmd"
  ln -s /usr/lib/sprout-test/halt "sbin/$cmd"
done
ln -sf /usr/bin/systemctl bin/systemctl

# NixOS look-alikes: the base system that boots when no generation exists yet.
base=nix/store/00000000000000000000000000000000-nixos-system-base
mkdir -p "$base"
echo base >"$base/name"
touch etc/NIXOS
cat >etc/os-release <<'OS'
NAME=NixOS
ID=nixos
PRETTY_NAME="NixOS (sprout test stand-in: busybox guest)"
VARIANT_ID=sprout-test
OS
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' >etc/group
echo sprout-test >etc/hostname
printf 'hosts: files\n' >etc/nsswitch.conf
printf '127.0.0.1 localhost\n::1 localhost\n' >etc/hosts

# --- pack -----------------------------------------------------------------
find . -exec touch -h -d @1 {} +
find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
  cpio --quiet -o -H newc -R 0:0 --reproducible | gzip -n -6 >"$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
if ! cmp -s "$vmlinuz" "$out/vmlinuz" 2>/dev/null; then
  cp "$vmlinuz" "$out/vmlinuz.tmp"
  mv "$out/vmlinuz.tmp" "$out/vmlinuz"
fi
echo "kernel=$out/vmlinuz"
echo "initrd=$out/initrd.img"
echo "modules=${order[*]}"

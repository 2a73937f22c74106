#!/usr/bin/env bash
# debootstrap-root.sh CACHE_DIR
#
# Promises: CACHE_DIR/debian-root-<codename>-<key>/ holds a small Debian root with a
# real systemd, made with `debootstrap --variant=minbase` from Debian's packages only:
# minbase plus systemd, systemd-sysv (init), udev (device units, the power button's
# input device), dbus (systemd-logind, which turns the ACPI power button into a
# poweroff) and openssh-server (the sshd that serves the host-minted key).
# Documentation, man pages, locales and apt's caches are removed.
# <key> hashes the recipe (codename, packages, RECIPE): bump RECIPE when the way the
# root is made changes. dpkg runs with force-unsafe-io (no fsync per file: the root
# is copied into an image afterwards), via debootstrap --foreign + --second-stage.
#
# The mirror is the one apt on this machine uses for its own release: the
# REPO_URI `apt-get indextargets` lists for the Packages index of VERSION_CODENAME
# (from /etc/os-release); when apt has no lists yet (a fresh machine), one
# `apt-get update` first. Nothing about the mirror is hard-coded.
#
# Idempotent: a finished root (marker .complete) is reused; a concurrent run waits
# for the first (flock) and reuses its tree. Prints one line: root=/abs/path. Needs root (debootstrap
# makes device nodes and chroots); exits 77 when not root.
#
# Build-time packages (Debian 12): debootstrap, apt, debian-archive-keyring.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 CACHE_DIR" >&2
  exit 2
fi
if [[ $(id -u) != 0 ]]; then
  echo "debootstrap-root: needs root (debootstrap chroots and makes device nodes)" >&2
  exit 77
fi
command -v debootstrap >/dev/null || { echo "debootstrap-root: debootstrap is not installed (scripts/install-deps)" >&2; exit 1; }
mkdir -p "$1"
cache=$(cd "$1" && pwd)

# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n $codename ]] || { echo "debootstrap-root: no VERSION_CODENAME in /etc/os-release" >&2; exit 1; }

mirror_of_apt() {
  # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders, not the shell's
  apt-get indextargets --format '$(IDENTIFIER) $(RELEASE) $(REPO_URI)' 2>/dev/null |
    awk -v rel="$codename" '$1 == "Packages" && $2 == rel { print $3; exit }'
}

packages=systemd,systemd-sysv,udev,dbus,openssh-server
RECIPE=3
key=$(echo "$codename $packages $RECIPE" | sha256sum | cut -c1-12)
dest=$cache/debian-root-$codename-$key

# One debootstrap at a time per root: a second run waits, then finds it complete.
exec 9>"$cache/.debootstrap-$codename-$key.lock"
flock 9
if [[ ! -f $dest/.complete ]]; then
  mirror=$(mirror_of_apt)
  if [[ -z $mirror ]]; then
    echo "debootstrap-root: apt has no package lists for $codename; running apt-get update" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -q >&2 || true
    mirror=$(mirror_of_apt)
  fi
  [[ -n $mirror ]] || { echo "debootstrap-root: apt lists no mirror for $codename" >&2; exit 1; }
  tmp=$(mktemp -d "$cache/.debootstrap.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "debootstrap-root: debootstrap $codename from $mirror (apt's mirror), with $packages" >&2
  start=$(date +%s)
  failed() { tail -n 30 "$tmp/log" >&2; echo "debootstrap-root: debootstrap $1 failed (log above)" >&2; exit 1; }
  debootstrap --foreign --variant=minbase --include="$packages" "$codename" "$tmp/root" "$mirror" \
    >"$tmp/log" 2>&1 || failed "(download, unpack)"
  mkdir -p "$tmp/root/etc/dpkg/dpkg.cfg.d"
  echo force-unsafe-io >"$tmp/root/etc/dpkg/dpkg.cfg.d/sprout-test-unsafe-io"
  chroot "$tmp/root" /debootstrap/debootstrap --second-stage >>"$tmp/log" 2>&1 || failed "--second-stage"
  # Smaller image, same behaviour: nothing here is read at run time.
  rm -rf "$tmp/root"/usr/share/{doc,man,info,locale,lintian} "$tmp/root"/var/cache/apt/* \
    "$tmp/root"/var/lib/apt/lists/* "$tmp/root"/var/log/*.log "$tmp/root"/var/cache/debconf/*-old
  echo "mirror=$mirror codename=$codename packages=$packages seconds=$(($(date +%s) - start))" \
    >"$tmp/root/.sprout-test-debootstrap"
  touch "$tmp/root/.complete"
  if [[ ! -f $dest/.complete ]]; then
    rm -rf "$dest"
    mv -T "$tmp/root" "$dest" 2>/dev/null || [[ -f $dest/.complete ]]
  fi
  echo "debootstrap-root: done in $(($(date +%s) - start)) s; $(du -sh "$dest" | cut -f1)" >&2
fi
echo "root=$dest"

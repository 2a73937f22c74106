#!/usr/bin/env bash
# fetch-kernel.sh CACHE_DIR
#
# Promises: CACHE_DIR/<pkg>/ holds Debian's cloud kernel package unpacked with
# `dpkg-deb -x` (no root, nothing installed into /boot). The versioned package
# is found through `apt-cache depends linux-image-cloud-amd64` (the ABI number
# is never hard-coded). Idempotent: a second run with the same package version
# only prints the paths. Prints two lines on stdout:
#   vmlinuz=/abs/path/to/vmlinuz-...
#   modules=/abs/path/to/lib/modules/<version>
#
# Build-time packages (Debian 12): apt (apt-get download, apt-cache), dpkg
# (dpkg-deb). Downloading needs Debian's package registry configured in apt.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 CACHE_DIR" >&2
  exit 2
fi
mkdir -p "$1"
cache=$(cd "$1" && pwd)

# Find the versioned image package the meta package depends on.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
  sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1)
if [[ -z $pkg ]]; then
  # apt lists may be missing (fresh container): refresh once and retry.
  echo "fetch-kernel: no candidate for linux-image-cloud-amd64; running apt-get update" >&2
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2 || true
  pkg=$(apt-cache depends linux-image-cloud-amd64 |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1)
fi
if [[ -z $pkg ]]; then
  echo "fetch-kernel: cannot find the versioned package behind linux-image-cloud-amd64" >&2
  exit 1
fi
kver=${pkg#linux-image-}           # e.g. 6.1.0-56-cloud-amd64
dest=$cache/$pkg

if [[ ! -f $dest/.complete ]]; then
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX"); chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch-kernel: downloading $pkg" >&2
  sandbox=()
  # As root, apt drops to user _apt, which cannot write into our temp dir.
  [[ $(id -u) == 0 ]] && sandbox=(-o APT::Sandbox::User=root)
  if ! (cd "$tmp" && apt-get "${sandbox[@]}" download -q "$pkg" >&2); then
    # Stale package lists can name a kernel the archive no longer has: refresh, re-resolve
    # and try once more.
    echo "fetch-kernel: download of $pkg failed; running apt-get update and retrying" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -q >&2 || true
    pkg=$(apt-cache depends linux-image-cloud-amd64 |
      sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1)
    kver=${pkg#linux-image-}
    dest=$cache/$pkg
    (cd "$tmp" && apt-get "${sandbox[@]}" download -q "$pkg" >&2)
  fi
  deb=$(ls "$tmp"/*.deb)
  mkdir "$tmp/root"
  dpkg-deb -x "$deb" "$tmp/root"
  dpkg-deb -f "$deb" Version >"$tmp/root/.version"
  touch "$tmp/root/.complete"
  # Another run may have finished meanwhile: keep its tree (readers may use it).
  if [[ ! -f $dest/.complete ]]; then
    rm -rf "$dest"
    mv -T "$tmp/root" "$dest" 2>/dev/null || [[ -f $dest/.complete ]]
  fi
fi

vmlinuz=$dest/boot/vmlinuz-$kver
modules=$dest/lib/modules/$kver
[[ -f $vmlinuz ]] || { echo "fetch-kernel: $vmlinuz missing" >&2; exit 1; }
[[ -d $modules ]] || { echo "fetch-kernel: $modules missing" >&2; exit 1; }
echo "vmlinuz=$vmlinuz"
echo "modules=$modules"

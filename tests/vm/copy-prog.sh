# shellcheck shell=bash
# copy-prog.sh: sourced by the guest builders (build-guest.sh, build-systemd-guest.sh).
# Promises one function, run with the image's root directory as the working directory:
# copy_prog SRC DEST: copies SRC to DEST (path inside the image) and, for a
# dynamically linked ELF file, every library ldd lists plus the ELF loader, at
# the paths ldd prints (so the loader finds them without any ld.so.cache). A library
# the image already has at that path is kept (a Debian root has its own libc).
# Exits 1 when ldd reports a library as not found.
copy_prog() {
  local src=$1 dest=${2#/}
  mkdir -p "$(dirname "$dest")"
  rm -f "$dest"
  cp -L "$src" "$dest"
  chmod 0755 "$dest"
  if [[ $(head -c4 "$src" | od -An -c | tr -d ' ') == '177ELF' ]]; then
    local lib
    # ldd prints "name => /path (0x..)", "/path (0x..)" or "linux-vdso.so.1 (0x..)".
    while read -r lib; do
      [[ -n $lib && -e $lib ]] || continue
      [[ -e ${lib#/} ]] && continue
      mkdir -p "$(dirname "${lib#/}")"
      cp -L "$lib" "${lib#/}"
    done < <(ldd "$src" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p')
    if ldd "$src" 2>&1 | grep -q 'not found'; then
      echo "copy_prog: $src has missing libraries:" >&2
      ldd "$src" | grep 'not found' >&2
      exit 1
    fi
  fi
}

#!/usr/bin/env bash
# Fetches, once per machine, an arm64 QEMU for the nested arm64 host-device
# scenario: qemu-system-aarch64 runs inside the arm64 guest, under its KVM,
# as nvgrace's vfio-user client. The e2e root is amd64 (its QEMU runs the
# outer guest), so the arm64 build comes from the same release the root
# holds (qemu-system-arm, trixie-backports), with the :arm64 libraries its
# Depends name, by `apt-get download` inside the root (its sources, the
# mirror apt already uses; nothing installed). Only the program, the
# libraries its ELF NEEDED entries reach and the dynamic loader are kept: a
# small tree laid out as a root to chroot into (usr/bin, usr/lib/<triplet>,
# lib -> usr/lib), cached outside the clone in
# ${NVGRACE_CACHE:-/var/cache/nvgrace}/arm64-qemu-<key>/root, keyed by the
# package names and versions and this script, under a lock (parallel CTest
# runs fetch once; a superseded entry is removed). Every NEEDED entry must
# resolve inside the tree, or the fetch fails naming the library.
# $1/arm64-qemu (in the build tree) links to the entry.
#   arm64-qemu.sh OUT
# Prints what it holds, then exit 0; 77 (CTest: skipped) with the reason when
# there is no e2e root or the packages cannot be had; 1 when the tree is
# incomplete.
set -uo pipefail
out=$(realpath -m "$1")
root=$out/root
here=$(dirname "$(realpath "$0")")
. "$here/cache.sh"
. "$here/lib.sh"
need_root "$out"
in_root() { chroot "$root" "$@"; }

# The version the root's own (amd64) QEMU has: the outer and the nested QEMU
# are then one release.
ver=$(in_root dpkg-query -W -f='${Version}' qemu-system-arm 2>/dev/null) || skip "the root has no qemu-system-arm"
# The library closure: every lib*/zlib1g :arm64 package the recursive
# Depends reach (debconf, passwd and the like are for installing, not running).
closure() {
  in_root apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances "qemu-system-arm:arm64=$ver" 2>/dev/null \
    | grep -v '^ ' | grep -E '^(lib[^<>]*|zlib1g):arm64$' | sort -u
}
pkgs=$(closure)
if [ -z "$pkgs" ]; then
  in_root apt-get update -qq > "$out/arm64-qemu-apt.log" 2>&1 || skip "apt-get update in the root failed: $(tail -1 "$out/arm64-qemu-apt.log")"
  pkgs=$(closure)
  [ -n "$pkgs" ] || skip "the root's apt knows no qemu-system-arm:arm64=$ver"
fi
# Each library at the version apt would install (its candidate), from one
# apt-cache call: "name:arch:" starts each package's block.
# shellcheck disable=SC2086 # one argument per package
versions=$(in_root apt-cache policy $pkgs | awk '/^[^ ].*:$/ {name = substr($0, 1, length($0) - 1)}
                                                  /^ *Candidate:/ {print name "=" $2}')
[ "$(echo "$versions" | wc -l)" = "$(echo "$pkgs" | wc -l)" ] || skip "apt-cache policy did not give every library's candidate"
key=$(printf 'qemu-system-arm:arm64=%s\n%s\n' "$ver" "$versions" | cat - "$0" | cache_key)
cache_lock arm64-qemu "$key" || skip "cannot lock the cache entry $cache/arm64-qemu-$key"
if [ ! -f "$dir/stamp" ]; then
  start=$(date +%s)
  rm -rf "$dir"; mkdir -p "$dir/debs" "$dir/all" "$dir/root"
  work=$(in_root mktemp -d /tmp/arm64-qemu.XXXXXX)
  trap 'rm -rf "$root$work"' EXIT
  # shellcheck disable=SC2086 # one argument per package
  in_root sh -c "cd '$work' && apt-get download -qq 'qemu-system-arm:arm64=$ver' $(echo "$versions" | tr '\n' ' ')" \
    > "$out/arm64-qemu-apt.log" 2>&1 || skip "apt-get download of QEMU $ver for arm64 failed: $(tail -1 "$out/arm64-qemu-apt.log")"
  for deb in "$root$work"/*.deb; do dpkg-deb -x "$deb" "$dir/all" || { echo "FAIL extracting $deb"; exit 1; }; done
  # Keep what runs: the program, the loader and the libraries reached by
  # walking NEEDED (the same walk initramfs.sh makes), symlinks resolved.
  libdirs=(usr/lib/aarch64-linux-gnu lib/aarch64-linux-gnu usr/lib lib)
  declare -A kept
  keep() {  # keep RELPATH: copy it from all/ to root/ as a file
    mkdir -p "$dir/root/$(dirname "$1")"
    cp -L "$dir/all/$1" "$dir/root/$1"
  }
  walk() {
    local elf=$1 lib d found
    for lib in $(readelf -d "$dir/all/$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      [ -n "${kept[$lib]:-}" ] && continue
      found=""
      for d in "${libdirs[@]}"; do [ -e "$dir/all/$d/$lib" ] && { found=$d/$lib; break; }; done
      [ -n "$found" ] || { echo "FAIL the arm64 QEMU needs $lib, which no downloaded package holds ($elf)"; exit 1; }
      kept[$lib]=1
      keep "$found"
      walk "$found"
    done
  }
  keep usr/bin/qemu-system-aarch64
  walk usr/bin/qemu-system-aarch64
  interp=$(readelf -l "$dir/all/usr/bin/qemu-system-aarch64" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  [ -n "$interp" ] || { echo "FAIL no program interpreter in qemu-system-aarch64"; exit 1; }
  # merged /usr: the interpreter's /lib path is usr/lib in the packages.
  ln -s usr/lib "$dir/root/lib"
  multiarch=usr/lib/aarch64-linux-gnu/$(basename "$interp")
  if [ ! -e "$dir/root$interp" ] && [ -e "$dir/root/$multiarch" ]; then
    ln -s "aarch64-linux-gnu/$(basename "$interp")" "$dir/root/usr${interp}"
  fi
  [ -e "$dir/root$interp" ] || keep "usr${interp}"
  [ -e "$dir/root$interp" ] || { echo "FAIL the interpreter $interp is not in the tree"; exit 1; }
  rm -rf "$dir/all" "$dir/debs"
  printf 'qemu-system-arm:arm64 %s\n%s\n' "$ver" "$versions" > "$dir/versions"
  touch "$dir/stamp"
  echo "e2e: arm64 QEMU $ver fetched in $(( $(date +%s) - start )) s into $dir" \
       "($(find "$dir/root" -type f | wc -l) files, $(du -sh "$dir/root" | cut -f1))"
  cache_prune arm64-qemu "$key"
fi
flock -u 9
ln -sfn "$dir" "$out/arm64-qemu"
echo "e2e: arm64 QEMU: $(head -1 "$dir/versions") in $dir/root ($(find "$dir/root" -type f | wc -l) files)"

#!/usr/bin/env bash
# Fetches the extra arm64 kernels the nested-KVM tests boot, beside the trixie
# cloud kernel 6.12 the e2e root already holds (vmlinuz-arm64):
#   backports  trixie-backports' newest arm64 cloud kernel (7.x)
#   16k        trixie's linux-image-6.12.*-arm64-16k-unsigned: 16 KiB pages
# With `apt-get download` inside the e2e root (its trixie and
# trixie-backports sources, the mirror apt already uses), nothing installed:
# only each package's vmlinuz is kept, cached outside the clone in
# ${NVGRACE_CACHE:-/var/cache/nvgrace}/arm64-kernels-<key>/, keyed by the
# package names and versions, under a lock so parallel CTest runs fetch once
# (a superseded entry is removed when a new one is fetched).
# $1/arm64-kernels (in the build tree) links to it.
#   arm64-kernels.sh OUT
# Prints the kernels, then exit 0; 77 (CTest: skipped) with the reason when
# there is no e2e root or the packages cannot be had.
set -uo pipefail
out=$(realpath -m "$1")
root=$out/root
here=$(dirname "$(realpath "$0")")
. "$here/cache.sh"
. "$here/lib.sh"
need_root "$out"
in_root() { chroot "$root" "$@"; }

# Which packages: names and versions from the root's package lists (refreshed
# once when they no longer resolve, e.g. after the mirror moved on).
resolve() {
  local meta
  meta=$(in_root apt-cache madison linux-image-cloud-arm64 2>/dev/null \
         | awk -F' *[|] *' '$3 ~ /trixie-backports\/main arm64/ {print $2; exit}')
  [ -n "$meta" ] || return 1
  bpo=$(in_root apt-cache depends "linux-image-cloud-arm64:arm64=$meta" 2>/dev/null \
        | sed -n 's/.*Depends: \(linux-image-[0-9][^ :]*\).*/\1/p' | head -1)
  k16=$(in_root apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb13-arm64-16k-unsigned$' 2>/dev/null \
        | cut -d' ' -f1 | sort -V | tail -1)
  [ -n "$bpo" ] && [ -n "$k16" ] || return 1
  bpo_v=$(in_root apt-cache madison "$bpo" | awk -F' *[|] *' '$3 ~ /arm64 Packages/ {print $2; exit}')
  k16_v=$(in_root apt-cache madison "$k16" | awk -F' *[|] *' '$3 ~ /arm64 Packages/ {print $2; exit}')
  [ -n "$bpo_v" ] && [ -n "$k16_v" ]
}
if ! resolve; then
  in_root apt-get update -qq > "$out/arm64-kernels-apt.log" 2>&1 || skip "apt-get update in the root failed: $(tail -1 "$out/arm64-kernels-apt.log")"
  resolve || skip "the root's apt knows no trixie-backports arm64 cloud kernel or trixie 6.12 arm64-16k kernel"
fi
key=$(printf '%s=%s\n' "$bpo" "$bpo_v" "$k16" "$k16_v" | cat - "$0" | cache_key)
cache_lock arm64-kernels "$key" || skip "cannot lock the cache entry $cache/arm64-kernels-$key"
if [ ! -f "$dir/stamp" ]; then
  start=$(date +%s)
  rm -rf "$dir"; mkdir -p "$dir"
  work=$(in_root mktemp -d /tmp/arm64-kernels.XXXXXX)
  trap 'rm -rf "$root$work"' EXIT
  for flavour in backports 16k; do
    case $flavour in backports) name=$bpo ver=$bpo_v ;; 16k) name=$k16 ver=$k16_v ;; esac
    # From 7.x the image package holds no kernel: linux-binary-<version>
    # does, in /usr/lib/modules/<version>/vmlinuz (6.12: /boot/vmlinuz-*).
    binary=$(in_root apt-cache depends "$name:arm64=$ver" | sed -n 's/.*Depends: \(linux-binary-[^ :]*\).*/\1/p' | head -1)
    [ -n "$binary" ] && name=$binary
    in_root sh -c "cd '$work' && apt-get download -qq '$name:arm64=$ver'" > "$out/arm64-kernels-apt.log" 2>&1 \
      || skip "apt-get download $name:arm64=$ver failed: $(tail -1 "$out/arm64-kernels-apt.log")"
    deb=$(ls "$root$work/${name}"_*_arm64.deb)
    path=$(dpkg-deb -c "$deb" | awk '{print $NF}' | grep -E '^\./(boot/vmlinuz-|usr/lib/modules/[^/]+/vmlinuz$)' | head -1)
    [ -n "$path" ] || skip "no vmlinuz in $(basename "$deb")"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "$path" > "$dir/vmlinuz-$flavour" || skip "extracting $path failed"
    rm -f "$deb"
  done
  printf 'backports %s %s\n16k %s %s\n' "$bpo" "$bpo_v" "$k16" "$k16_v" > "$dir/versions"
  touch "$dir/stamp"
  echo "e2e: arm64 kernels fetched in $(( $(date +%s) - start )) s into $dir"
  cache_prune arm64-kernels "$key"
fi
flock -u 9
ln -sfn "$dir" "$out/arm64-kernels"
echo "e2e: arm64 kernels: cloud $(basename "$(ls "$out"/arm64/kernel/boot/vmlinuz-* 2>/dev/null || echo "?")" | sed 's/^vmlinuz-//') (the root's);" \
     "$(sed 's/^\([^ ]*\) \([^ ]*\) \(.*\)/\1 \2 (\3)/' "$dir/versions" | paste -sd';' | sed 's/;/; /')"

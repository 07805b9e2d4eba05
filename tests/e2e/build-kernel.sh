#!/usr/bin/env bash
# Builds, once per machine, the e2e tests' own Linux kernel for one
# architecture and version: allnoconfig plus the fragment
# tests/e2e/kernel-<arch>.config, which carries every option any test that
# boots this kernel needs (one build per architecture and version; a test
# that needs more adds options there, not a build). Debian's own kernels have
# IOMMUFD off, do not build the nvgrace-gpu VFIO driver and keep 16 NUMA
# nodes on arm64; these have all three. Built in the e2e trixie root (its gcc
# and cross gcc) from Debian's linux-source package of that version:
#   x86_64 6.12   trixie's linux-source-6.12      -> bzImage
#   arm64  7.3    trixie-backports' linux-source-7.3 -> Image
# Every option of the fragment is checked to be in the final .config, so a
# dependency Kconfig dropped fails the build instead of a test later; an
# option this version's Kconfig does not define at all (VFIO_PCI_MMAP is gone
# by 7.x) is named in build-info instead.
#
# The kernel is cached outside the clone in
# ${NVGRACE_CACHE:-/var/cache/nvgrace}/kernel-<arch>-<version>-<key>/ (the
# image, its .config, the build log and build-info), <key> hashing the
# recipe below, the fragment and the exact source package version; a kernel of an
# older key is removed when a new one is built (tests/e2e/cache.sh). One
# build per key at a time (parallel CTest runs wait on a lock).
# OUT/kernel-<arch>-<version> links to the entry. Prints the image's path.
#   build-kernel.sh OUT ARCH VERSION
# Exit 77 (CTest: skipped), with the reason, when there is no e2e root or no
# source; 1 when the build itself fails.
set -uo pipefail
[ $# -eq 3 ] || { echo "usage: build-kernel.sh OUT x86_64|arm64 6.12|7.3" >&2; exit 2; }
out=$(realpath -m "$1"); arch=$2; series=$3
here=$(dirname "$(realpath "$0")")
root=$out/root
. "$here/cache.sh"
skip() { echo "build-kernel: skipped: $*"; exit 77; }
fail() { echo "build-kernel: FAILED: $*"; exit 1; }
case $arch in
  x86_64) kmake=(ARCH=x86_64) target=bzImage image=arch/x86/boot/bzImage ;;
  arm64) kmake=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-) target=Image image=arch/arm64/boot/Image ;;
  *) echo "build-kernel: ARCH must be x86_64 or arm64" >&2; exit 2 ;;
esac
fragment=$here/kernel-$arch.config
[ -f "$fragment" ] || { echo "build-kernel: no $fragment" >&2; exit 2; }
[ -f "$out/root.stamp" ] && [ -d "$root/usr" ] || skip "the trixie root was not built (see the e2e setup test)"
[ "$(id -u)" -eq 0 ] || skip "building in the root needs root (chroot)"
pkg=linux-source-$series
src=$root/usr/src/$pkg.tar.xz
[ -f "$src" ] || skip "the root has no $pkg (build-root.sh installs linux-source-6.12 and -7.3)"
version=$(chroot "$root" dpkg-query -W -f='${Version}' "$pkg") || skip "the root does not know $pkg's version"
# How the kernel is made from the source and the fragment; change it (and
# the version at its end) whenever the commands below change what is built.
recipe="allnoconfig + KCONFIG_ALLCONFIG fragment; make $target; KBUILD_BUILD_USER/HOST nvgrace, timestamp 0; r1"
key=$( { echo "$recipe"; cat "$fragment"; echo "$pkg=$version"; } | cache_key)
kind=kernel-$arch-$series
cache_lock "$kind" "$key" || skip "cannot lock the cache entry $cache/$kind-$key"
mkdir -p "$out"
ln -sfn "$dir" "$out/$kind"
if [ -f "$dir/$target" ]; then echo "$dir/$target"; exit 0; fi

start=$(date +%s)
work=$root/tmp/$kind-build
rm -rf "$work" "$dir" "$dir.new"; mkdir -p "$work"
tar -xJf "$src" -C "$work" --strip-components=1 || fail "unpacking $src"
cp "$fragment" "$work/nvgrace.config"
unpacked=$(date +%s)
log=$out/$kind-build.log
# KBUILD_BUILD_*: the same inputs give the same kernel banner on any machine.
if ! chroot "$root" sh -c "cd /tmp/$kind-build && export ${kmake[*]} KBUILD_BUILD_USER=nvgrace KBUILD_BUILD_HOST=nvgrace \
      KBUILD_BUILD_TIMESTAMP='$(date -u -d @0)' &&
      make -s allnoconfig KCONFIG_ALLCONFIG=nvgrace.config && make -s -j$(nproc) $target" > "$log" 2>&1; then
  fail "make $target for $arch $series: $(grep -m1 -E 'error|Error' "$log") (see $log)"
fi
# Every line of the fragment must have survived Kconfig's dependencies:
# CONFIG_X=v as it is, "# CONFIG_X is not set" as unset.
lost=() undefined=()
defined() { grep -rqE "^[[:space:]]*(menu)?config ${1#CONFIG_}\b" --include='Kconfig*' "$work"; }
while IFS= read -r line; do
  case $line in
    CONFIG_*)
      grep -qxF "$line" "$work/.config" && continue
      if defined "${line%%=*}"; then lost+=("$line (have: $(grep -E "^(# )?${line%%=*}[= ]" "$work/.config" || echo absent))")
      else undefined+=("${line%%=*}"); fi ;;
    "# CONFIG_"*" is not set") o=${line#\# }; o=${o%% *}; grep -q "^$o=" "$work/.config" && lost+=("$o must be off") ;;
  esac
done < "$fragment"
((${#lost[@]} == 0)) || fail "the $arch $series config lost: ${lost[*]}"
end=$(date +%s)
mkdir -p "$dir.new"
cp "$work/$image" "$dir.new/$target" && cp "$work/.config" "$dir.new/config" && cp "$log" "$dir.new/build.log" \
  || fail "copying the result"
{ echo "$pkg=$version arch=$arch unpack=$((unpacked - start))s build=$((end - unpacked))s cpus=$(nproc)"
  ((${#undefined[@]} == 0)) || echo "not in $pkg's Kconfig (left out): ${undefined[*]}"; } > "$dir.new/build-info"
mv "$dir.new" "$dir" && rm -rf "$work"
echo "build-kernel: $arch $series built in $((end - start)) s: $(cat "$dir/build-info")" >&2
cache_prune "$kind" "$key"
cache_retire kernel-iommufd  # the x86 kernel's entries before it carried every option
echo "$dir/$target"

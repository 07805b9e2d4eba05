#!/usr/bin/env bash
# Builds, once per machine, the arm64 guest kernel of the generic-initiator
# tests from Debian's linux-source in the e2e root (see
# guest-kernel-arm64.config for why Debian's own arm64 kernels cannot show
# two Grace GPUs' 16 GI nodes). The Image is cached in the root, keyed by
# this script, the config and the source package's version; a rebuild takes
# about 9 minutes on two cores. Exit 77 (CTest: skipped), with the reason,
# when the root is missing or lacks the toolchain.
#   build-guest-kernel-arm64.sh OUT     (OUT/root is the e2e root build-root.sh made)
set -uo pipefail
out=$(realpath -m "$1")
here=$(dirname "$(realpath "$0")")
root=$out/root
skip() { echo "e2e: skipped: $*"; exit 77; }
[ -f "$out/root.stamp" ] && [ -d "$root/usr" ] || skip "the trixie root was not built (see the e2e setup test)"
[ "$(id -u)" -eq 0 ] || skip "building in the root needs root (chroot)"
src=$(ls "$root"/usr/src/linux-source-*.tar.xz 2>/dev/null | head -1)
[ -n "$src" ] || skip "the root has no linux-source package"
chroot "$root" sh -c 'command -v aarch64-linux-gnu-gcc && command -v make && command -v flex && command -v bison' \
  >/dev/null || skip "the root lacks the arm64 cross toolchain"
version=$(chroot "$root" dpkg-query -W -f='${Version}' "$(basename "$src" .tar.xz)")
key=$( (cat "$0" "$here/guest-kernel-arm64.config"; echo "$version") | sha256sum | cut -c1-16)
image=$root/vmlinuz-arm64-numa
if [ "$(cat "$image.key" 2>/dev/null)" != "$key" ]; then
  start=$(date +%s)
  work=$root/tmp/kernel-build
  rm -rf "$work" && mkdir -p "$work"
  cp "$here/guest-kernel-arm64.config" "$work/fragment.config"
  tar -xJf "$src" -C "$work" || skip "cannot unpack $src"
  tree=/tmp/kernel-build/$(basename "$src" .tar.xz)
  if ! chroot "$root" sh -c "cd $tree && export ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- &&
        make -s allnoconfig KCONFIG_ALLCONFIG=/tmp/kernel-build/fragment.config &&
        make -s -j$(nproc) Image" > "$out/kernel-build.log" 2>&1; then
    echo "e2e: the arm64 guest kernel did not build: $(tail -3 "$out/kernel-build.log")"
    exit 1
  fi
  # Every option of the fragment must have survived Kconfig's dependencies.
  while IFS= read -r opt; do
    grep -qx "$opt" "$root$tree/.config" || { echo "e2e: the kernel config lost $opt"; exit 1; }
  done < <(grep '^CONFIG_' "$here/guest-kernel-arm64.config")
  cp "$root$tree/arch/arm64/boot/Image" "$image"
  cp "$root$tree/.config" "$image.config"
  echo "$key" > "$image.key"
  rm -rf "$work"
  echo "e2e: arm64 guest kernel (linux-source $version, CONFIG_NODES_SHIFT=6) built in $(( $(date +%s) - start )) s"
fi
echo "e2e: arm64 guest kernel ready: $image ($(grep '^CONFIG_NODES_SHIFT' "$image.config"))"

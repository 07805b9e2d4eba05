#!/usr/bin/env bash
# Builds, once, the end-to-end test root under $1 (in the build tree): a
# Debian trixie minbase with QEMU from trixie-backports (11.x has the
# vfio-user-pci device), plus Debian's cloud kernels and busybox-static for
# amd64 and arm64 and an initramfs for each. Idempotent: a stamp marks a
# finished root. Exit 77 (CTest: skipped) when the root cannot be built here,
# with the reason.
set -uo pipefail
out=$(realpath -m "$1")
here=$(dirname "$(realpath "$0")")
root=$out/root
stamp=$out/root.stamp
skip() { echo "e2e: skipped: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "building the root needs root (debootstrap, chroot)"
if [ ! -f "$stamp" ]; then
  command -v debootstrap >/dev/null || skip "debootstrap is not installed (scripts/setup installs it)"
  rm -rf "$root"; mkdir -p "$out"
  start=$(date +%s)
  debootstrap --variant=minbase trixie "$root" http://deb.debian.org/debian > "$out/debootstrap.log" 2>&1 \
    || skip "debootstrap of trixie failed (no mirror reachable?): $(tail -1 "$out/debootstrap.log")"
  echo "deb http://deb.debian.org/debian trixie-backports main" > "$root/etc/apt/sources.list.d/backports.list"
  chroot "$root" dpkg --add-architecture arm64
  chroot "$root" apt-get update -qq > "$out/apt.log" 2>&1 || skip "apt-get update in the root failed"
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends -t trixie-backports \
    qemu-system-x86 qemu-system-arm >> "$out/apt.log" 2>&1 || skip "installing QEMU from trixie-backports failed"
  mkdir -p "$root/debs"
  for arch in amd64 arm64; do
    img=$(chroot "$root" apt-cache depends "linux-image-cloud-$arch:$arch" | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\)/\1/p' | head -1)
    (cd "$root/debs" && chroot "$root" sh -c "cd /debs && apt-get download -qq '$img' 'busybox-static:$arch'") >> "$out/apt.log" 2>&1 \
      || skip "downloading the $arch kernel or busybox failed"
  done
  chroot "$root" qemu-system-x86_64 -device help 2>/dev/null | grep -q vfio-user-pci || skip "this QEMU has no vfio-user-pci device"
  touch "$stamp"
  echo "e2e: root built in $(( $(date +%s) - start )) s ($(du -sh "$root" | cut -f1))"
fi
# Kernels and initramfs (cheap; rebuilt when init.sh changes).
for arch in amd64 arm64; do
  work=$out/$arch
  if [ ! -f "$root/vmlinuz-$arch" ] || [ "$here/init.sh" -nt "$root/initrd-$arch.gz" ]; then
    rm -rf "$work"; mkdir -p "$work/initrd/bin" "$work/initrd/proc" "$work/initrd/sys" "$work/initrd/dev"
    dpkg-deb -x "$(ls "$root"/debs/linux-image-[0-9]*_"$arch".deb)" "$work/kernel"
    dpkg-deb -x "$(ls "$root"/debs/busybox-static_*_"$arch".deb)" "$work/busybox"
    cp "$work"/kernel/boot/vmlinuz-* "$root/vmlinuz-$arch"
    cp "$work/busybox/usr/bin/busybox" "$work/initrd/bin/busybox"
    cp "$here/init.sh" "$work/initrd/init" && chmod +x "$work/initrd/init"
    (cd "$work/initrd" && find . | cpio -o -H newc 2>/dev/null | gzip > "$root/initrd-$arch.gz")
  fi
done
echo "e2e: root ready at $root"

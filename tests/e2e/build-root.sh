#!/usr/bin/env bash
# Builds, once per machine, the end-to-end test root: a Debian trixie minbase
# with QEMU from trixie-backports (11.x has the vfio-user-pci device; libelf-dev
# comes from there too, to match the libelf QEMU pulls in), UEFI
# for arm64 guests (qemu-efi-aarch64: the guest gets ACPI tables), libvirt's
# schemas, virsh and its QEMU driver (virt-xml-validate, domxml-to-native),
# the toolchains and kernel sources build-kernel.sh builds the test kernels
# from (gcc for amd64 and arm64, trixie's linux-source-6.12 and
# trixie-backports' linux-source-7.3), dtc for device trees, plus Debian's
# cloud kernels and busybox-static for amd64 and arm64 and an initramfs for
# each. The root is cached outside the clone, in
# ${NVGRACE_CACHE:-/var/cache/nvgrace}/e2e-root-<key>, keyed by this script's
# contents, so a later CI run on the same machine reuses it, and a root of an
# older key is removed when a new one is built (tests/e2e/cache.sh); $1/root
# (in the build tree) links to it. Packages come from the mirror apt
# already uses (scripts/apt-mirror). Exit 77 (CTest: skipped) when the root
# cannot be built here, with the reason.
set -uo pipefail
out=$(realpath -m "$1")
here=$(dirname "$(realpath "$0")")
. "$here/cache.sh"
# The key covers what goes into the root: this script up to the marker below
# (what follows it only links the root into the build tree and unpacks
# kernels and busybox there).
key=$(sed '/^# -- the root is built: link and unpack --$/,$d' "$0" | cache_key)
root=$cache/e2e-root-$key
stamp=$root.stamp
skip() { echo "e2e: skipped: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "building the root needs root (debootstrap, chroot)"
mkdir -p "$out" "$cache"
if [ ! -f "$stamp" ]; then
  command -v debootstrap >/dev/null || skip "debootstrap is not installed (scripts/setup installs it)"
  mirror=$("$here/../../scripts/apt-mirror" 2>&1) || skip "$mirror"
  rm -rf "$root"
  start=$(date +%s)
  debootstrap --variant=minbase trixie "$root" "$mirror" > "$out/debootstrap.log" 2>&1 \
    || skip "debootstrap of trixie from $mirror failed: $(tail -1 "$out/debootstrap.log")"
  echo "deb $mirror trixie-backports main" > "$root/etc/apt/sources.list.d/backports.list"
  chroot "$root" dpkg --add-architecture arm64
  chroot "$root" apt-get update -qq > "$out/apt.log" 2>&1 || skip "apt-get update in the root failed"
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends -t trixie-backports \
    qemu-system-x86 qemu-system-arm linux-source-7.3 libelf-dev >> "$out/apt.log" 2>&1 \
    || skip "installing QEMU, linux-source-7.3 and libelf-dev from trixie-backports failed"
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
    qemu-efi-aarch64 libvirt-clients libvirt-daemon-driver-qemu device-tree-compiler \
    gcc libc6-dev gcc-aarch64-linux-gnu make bc flex bison xz-utils linux-source-6.12 \
    >> "$out/apt.log" 2>&1 || skip "installing UEFI, libvirt, dtc or the kernel toolchain in the root failed"
  mkdir -p "$root/debs"
  for arch in amd64 arm64; do
    img=$(chroot "$root" apt-cache depends "linux-image-cloud-$arch:$arch" | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\)/\1/p' | head -1)
    (cd "$root/debs" && chroot "$root" sh -c "cd /debs && apt-get download -qq '$img' 'busybox-static:$arch'") >> "$out/apt.log" 2>&1 \
      || skip "downloading the $arch kernel or busybox failed"
  done
  chroot "$root" qemu-system-x86_64 -device help 2>/dev/null | grep -q vfio-user-pci || skip "this QEMU has no vfio-user-pci device"
  touch "$stamp"
  echo "e2e: root built in $(( $(date +%s) - start )) s ($(du -sh "$root" | cut -f1)) at $root"
  cache_prune e2e-root "$key"
fi
# -- the root is built: link and unpack --
[ -L "$out/root" ] || rm -rf "$out/root"  # a root built in the tree by an older harness
ln -sfn "$root" "$out/root"
touch "$out/root.stamp"
# Kernels and initramfs (cheap; rebuilt when init.sh changes).
for arch in amd64 arm64; do
  work=$out/$arch
  # (Also where this build tree has no unpacked kernel and busybox yet: the
  # harness takes modules and busybox from OUT/<arch>.)
  if [ ! -f "$root/vmlinuz-$arch" ] || [ "$here/init.sh" -nt "$root/initrd-$arch.gz" ] || [ ! -d "$work/busybox" ]; then
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

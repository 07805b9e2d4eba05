#!/usr/bin/env bash
# Builds, once per machine, an x86_64 Linux kernel for the end-to-end tests in
# which the IOMMUFD VFIO device cdev API (/dev/iommu, /dev/vfio/devices/vfioN)
# works next to the legacy group/container API (/dev/vfio/vfio): Debian's own
# kernels ship with CONFIG_IOMMUFD off. Source: Debian's linux-source-6.12
# (bookworm-security or bookworm-backports; scripts/setup adds backports).
# The config is x86_64 defconfig, trimmed, with everything the tests need
# built in (the initramfs has no modules) and no debug info; every required
# option is checked to be =y after olddefconfig.
#
# The kernel is cached outside the clone in
# ${NVGRACE_CACHE:-/var/cache/nvgrace}/kernel-iommufd-<key>/, <key> hashing
# this script and the exact linux-source-6.12 version, so a re-run on the
# same machine is instant. OUTDIR gets the build log and a bzImage link.
# Prints the bzImage's path. Exit 77 (CTest: skipped), with one line on
# stderr, when it cannot be built here; 1 when the build itself fails.
#   build-kernel.sh OUTDIR
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: build-kernel.sh OUTDIR" >&2; exit 2; }
out=$(realpath -m "$1")
cache=${NVGRACE_CACHE:-/var/cache/nvgrace}
pkg=linux-source-6.12
skip() { echo "build-kernel: skipped: $*" >&2; exit 77; }
fail() { echo "build-kernel: FAILED: $*" >&2; exit 1; }

# Built in (=y) and checked after olddefconfig.
required=(
  IOMMU_SUPPORT IOMMU_API IOMMUFD
  VFIO VFIO_GROUP VFIO_CONTAINER VFIO_IOMMU_TYPE1 VFIO_DEVICE_CDEV VFIO_VIRQFD
  VFIO_PCI_CORE VFIO_PCI VFIO_PCI_MMAP VFIO_PCI_INTX
  INTEL_IOMMU INTEL_IOMMU_DEFAULT_ON DMAR_TABLE IRQ_REMAP X86_X2APIC PCI PCI_MSI
  BLK_DEV_NVME NVME_CORE EXT4_FS
  DEVTMPFS DEVTMPFS_MOUNT TMPFS PROC_FS SYSFS BLK_DEV_INITRD RD_GZIP
  BINFMT_ELF BINFMT_SCRIPT SERIAL_8250 SERIAL_8250_CONSOLE ACPI DEVMEM
  VIRTUALIZATION KVM KVM_X86 KVM_AMD KVM_VFIO EVENTFD
  DEBUG_INFO_NONE
)
# Must stay off: the legacy container has to be VFIO's own, not the iommufd
# emulation; no modules (nothing could load them); no debug info.
# INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF is defconfig's pick in the same choice as
# INTEL_IOMMU_DEFAULT_ON.
forbidden=(IOMMUFD_VFIO_CONTAINER MODULES DEBUG_INFO INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF)
# Off only to keep the build short on two cores (nothing in the tests uses them).
trim=(
  MODULES WERROR KVM_WERROR KVM_AMD_SEV KVM_INTEL KVM_XEN
  DRM AGP SOUND WIRELESS CFG80211 MAC80211 WLAN RFKILL
  USB_SUPPORT ETHERNET NETFILTER IPV6 XFRM_USER NET_KEY
  NETWORK_FILESYSTEMS NFS_FS ROOT_NFS SECURITY_SELINUX AUDIT
  HIBERNATION FTRACE KPROBES XEN VIRTIO_MENU
  SYSTEM_TRUSTED_KEYRING  # (certs/extract-cert would need libssl-dev)
  DEBUG_INFO DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT DEBUG_INFO_DWARF4 DEBUG_INFO_DWARF5
)
# Debian packages the build needs (build-essential: gcc, make, libc6-dev).
deps=(build-essential bc bison flex libelf-dev xz-utils)

[ "$(id -u)" -eq 0 ] || skip "needs root (apt-get for $pkg and the build dependencies)"
command -v apt-cache >/dev/null && command -v dpkg-deb >/dev/null || skip "not a Debian system (no apt-cache/dpkg-deb)"
mkdir -p "$out" "$cache" || skip "cannot create $out or $cache"

# The exact source version: the installed package, else apt's candidate.
installed=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null | sed -n 's/^install ok installed //p')
if [ -n "$installed" ] && [ -f /usr/src/$pkg.tar.xz ]; then
  version=$installed
else
  candidate() { apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
  version=$(candidate)
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    apt-get update -qq >/dev/null 2>&1
    version=$(candidate)
  fi
  [ -n "$version" ] && [ "$version" != "(none)" ] \
    || skip "apt has no $pkg (enable bookworm-backports, as scripts/setup does)"
fi
key=$( { cat "$0"; echo "$pkg=$version"; } | sha256sum | cut -c1-16)
dir=$cache/kernel-iommufd-$key
ln -sfn "$dir/bzImage" "$out/bzImage"
if [ -f "$dir/bzImage" ]; then echo "$dir/bzImage"; exit 0; fi

# One build per key at a time (parallel CTest runs wait for the first).
exec 9> "$dir.lock" || skip "cannot write $dir.lock"
flock 9
if [ -f "$dir/bzImage" ]; then echo "$dir/bzImage"; exit 0; fi

missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$out/apt.log" 2>&1 \
    || { apt-get update -qq >> "$out/apt.log" 2>&1 \
         && apt-get install -y -qq --no-install-recommends "${missing[@]}" >> "$out/apt.log" 2>&1; } \
    || skip "cannot install the build dependencies ${missing[*]} (see $out/apt.log)"
fi

work=$dir.build
rm -rf "$work" "$dir"; mkdir -p "$work/src"
start=$(date +%s)
if [ "$version" = "$installed" ]; then
  tar -xJf /usr/src/$pkg.tar.xz -C "$work/src" --strip-components=1 || fail "unpacking /usr/src/$pkg.tar.xz"
else
  # Fetch the .deb without installing it (no 150 MB in /usr/src, no Recommends).
  mkdir -p "$work/deb"; chown _apt "$work/deb" 2>/dev/null
  (cd "$work/deb" && apt-get download -qq "$pkg=$version") > "$out/apt-download.log" 2>&1 \
    || skip "cannot download $pkg=$version (see $out/apt-download.log)"
  dpkg-deb --fsys-tarfile "$work"/deb/"$pkg"_*.deb | tar -xO ./usr/src/$pkg.tar.xz \
    | tar -xJ -C "$work/src" --strip-components=1 || fail "unpacking $pkg=$version"
  rm -rf "$work/deb"
fi
unpacked=$(date +%s)

cd "$work/src" || fail "no source tree"
log=$out/kernel-build.log
export KBUILD_BUILD_USER=nvgrace KBUILD_BUILD_HOST=nvgrace
make defconfig > "$log" 2>&1 || fail "make defconfig (see $log)"
args=(--set-str LOCALVERSION "-nvgrace-iommufd" --disable LOCALVERSION_AUTO)
for o in "${trim[@]}"; do args+=(--disable "$o"); done
for o in "${required[@]}"; do args+=(--enable "$o"); done
for o in "${forbidden[@]}"; do args+=(--disable "$o"); done
scripts/config "${args[@]}" || fail "scripts/config"
make olddefconfig >> "$log" 2>&1 || fail "make olddefconfig (see $log)"
bad=()
for o in "${required[@]}"; do grep -qx "CONFIG_$o=y" .config || bad+=("$o=$(sed -n "s/^CONFIG_$o=//p" .config)"); done
for o in "${forbidden[@]}"; do grep -q "^CONFIG_$o=" .config && bad+=("$o(must be off)"); done
((${#bad[@]} == 0)) || fail "config options not as required: ${bad[*]}"

make -j"$(nproc)" bzImage >> "$log" 2>&1 || fail "make bzImage: $(grep -m1 -E 'error|Error' "$log") (see $log)"
end=$(date +%s)
mkdir -p "$dir.new"
cp arch/x86/boot/bzImage "$dir.new/bzImage" && cp .config "$dir.new/config" && cp "$log" "$dir.new/build.log" \
  || fail "copying the result"
echo "$pkg=$version unpack=$((unpacked - start))s build=$((end - unpacked))s cpus=$(nproc)" > "$dir.new/build-info"
cd / && mv "$dir.new" "$dir" && rm -rf "$work"
echo "build-kernel: built in $((end - start)) s: $(cat "$dir/build-info")" >&2
echo "$dir/bzImage"

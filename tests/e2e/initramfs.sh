#!/usr/bin/env bash
# Assembles a busybox initramfs for an e2e guest, for x86_64 or aarch64
# alike: busybox, an /init script, programs with every shared library they
# need (found by walking ELF NEEDED entries with readelf, so it works for a
# cross-built binary too), extra files, and kernel modules to load in order.
#
#   initramfs.sh OUT.cpio.gz ARCH BUSYBOX INIT [options]
#     --bin SRC[:DEST]      a program (default DEST /bin/NAME) and its libraries
#     --file SRC:DEST       a file as it is
#     --module FILE         a kernel module (.ko or .ko.xz), loaded by /init in
#                           the order given (listed in /lib/modules/order)
#     --root-bin ROOT PREFIX PATH
#                           a program of another root (the trixie root's QEMU)
#                           and its libraries as that root's ldd resolves them,
#                           under PREFIX, to run chrooted there
#     --root-file ROOT PREFIX PATH
#                           a file of that root (firmware), under PREFIX
#     --tree SRC:DEST       a directory as it is (a program's own root, as
#                           arm64-qemu.sh makes one)
# ARCH: x86_64 | aarch64 (decides where libraries are looked for).
set -euo pipefail
out=$1 arch=$2 busybox=$3 init=$4
shift 4
case $arch in
  x86_64) libdirs=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64) ;;
  aarch64) libdirs=(/usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu /usr/aarch64-linux-gnu/lib) ;;
  *) echo "initramfs.sh: unknown arch $arch" >&2; exit 2 ;;
esac
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,sbin,proc,sys,dev,tmp,run,mnt,etc,lib/modules}
cp "$busybox" "$tmp/bin/busybox"
cp "$init" "$tmp/init"
chmod +x "$tmp/init" "$tmp/bin/busybox"
: > "$tmp/lib/modules/order"

declare -A copied
find_lib() {
  local name=$1 d
  for d in "${libdirs[@]}"; do [ -e "$d/$name" ] && { echo "$d/$name"; return 0; }; done
  return 1
}
# Copies an ELF file's libraries and its interpreter, recursively, to the
# same absolute paths in the image.
copy_deps() {
  local elf=$1 interp lib path
  interp=$(readelf -l "$elf" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  if [ -n "$interp" ] && [ -z "${copied[$interp]:-}" ]; then
    copied[$interp]=1
    local real=$interp
    [ -e "$real" ] || real=$(find_lib "$(basename "$interp")") || { echo "initramfs.sh: no interpreter $interp" >&2; exit 1; }
    mkdir -p "$tmp$(dirname "$interp")"
    cp -L "$real" "$tmp$interp"
  fi
  for lib in $(readelf -d "$elf" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -n "${copied[$lib]:-}" ] && continue
    copied[$lib]=1
    path=$(find_lib "$lib") || { echo "initramfs.sh: $elf needs $lib, not found in ${libdirs[*]}" >&2; exit 1; }
    mkdir -p "$tmp$(dirname "$path")"
    cp -L "$path" "$tmp$path"
    copy_deps "$path"
  done
}

while (($#)); do
  case $1 in
    --bin)
      src=${2%%:*}; dest=${2#*:}; [ "$dest" = "$2" ] && dest=/bin/$(basename "$src")
      mkdir -p "$tmp$(dirname "$dest")"; cp -L "$src" "$tmp$dest"; chmod +x "$tmp$dest"
      copy_deps "$src"; shift 2 ;;
    --file)
      src=${2%%:*}; dest=${2#*:}
      mkdir -p "$tmp$(dirname "$dest")"; cp -L "$src" "$tmp$dest"; shift 2 ;;
    --root-bin|--root-file)
      r=$2 prefix=$3 path=$4
      files=("$path")
      if [ "$1" = --root-bin ]; then
        # chroot ldd: "name => /path (addr)" and the interpreter "/path (addr)".
        while read -r f; do files+=("$f"); done < <(chroot "$r" ldd "$path" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^\t*\(\/[^ ]*\) (.*/\1/p')
      fi
      for f in "${files[@]}"; do
        real=$(chroot "$r" readlink -f "$f")  # symlinks resolved inside that root
        mkdir -p "$tmp$prefix$(dirname "$f")"
        cp "$r$real" "$tmp$prefix$f"
      done
      shift 4 ;;
    --tree)
      src=${2%%:*}; dest=${2#*:}
      mkdir -p "$tmp$dest"; cp -a "$src/." "$tmp$dest/"; shift 2 ;;
    --module)
      name=$(basename "$2"); name=${name%.xz}
      case $2 in *.xz) xz -dc "$2" > "$tmp/lib/modules/$name" ;; *) cp "$2" "$tmp/lib/modules/$name" ;; esac
      echo "$name" >> "$tmp/lib/modules/order"; shift 2 ;;
    *) echo "initramfs.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
(cd "$tmp" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$out")

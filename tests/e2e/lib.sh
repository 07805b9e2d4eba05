# Helpers the host-side e2e scripts share; sourced, not run.
#   skip REASON...        exit 77 (CTest "skipped") saying why
#   need_root OUT         skip unless build-root.sh finished the trixie root in OUT
#   check NAME RC DETAIL  "ok   LABEL: NAME" when RC is 0, else "FAIL LABEL: NAME (DETAIL)"
#                         and count it in $fails; LABEL is $check_label
#   put_u64 FILE OFFSET VALUE   write a little-endian u64 in place
#   get_u64 FILE OFFSET         print the u64 there as 16 hex digits
#   boot_guest TAG QEMU-ARGS... run QEMU chrooted in $root (120 s at most), its
#                         console in $out/console-TAG.log, the guest's "E2E "
#                         lines in $out/report-TAG.log; sets qrc (QEMU's exit
#                         status) and boot (seconds)
#   nested_guest ARCH BUSYBOX INIT [PROGRAM...]   the nested guest's initramfs
#                         and the array `nested` that carries QEMU into the
#                         outer guest (below)
skip() { echo "e2e: skipped: $*"; exit 77; }
need_root() { [ -f "$1/root.stamp" ] || skip "the trixie root was not built (see the e2e setup test)"; }
fails=0
check_label=e2e
check() {
  if [ "$2" = 0 ]; then echo "ok   $check_label: $1"; else echo "FAIL $check_label: $1 ($3)"; fails=$((fails + 1)); fi
}
# checks_done [REPORT [EXCLUDE]]: the count of failed checks, then the
# guest's report lines (less those matching EXCLUDE). The report comes after
# the checks so that a log cut after its first lines (CI's) still shows what
# failed. The status is the verdict.
checks_done() {
  echo "$fails failed"
  if [ -n "${1:-}" ]; then grep -v -- "${2:-^\$}" "$1" | sed 's/^/  guest: /'; fi
  [ "$fails" = 0 ]
}
put_u64() {
  local s="" i
  for i in 0 1 2 3 4 5 6 7; do s+=$(printf '\\x%02x' $(( ($3 >> (8 * i)) & 0xff ))); done
  printf "$s" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none
}
get_u64() { od -An -t x8 -j $(($2)) -N 8 "$1" | tr -d ' \n'; }
boot_guest() {
  local tag=$1 start
  shift
  start=$(date +%s.%N)
  timeout 120 chroot "$root" "$@" > "$out/console-$tag.log" 2>&1
  qrc=$?
  boot=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")
  # The serial console ends lines with \r and may put the kernel's last words
  # before ours on one line: split at every \r.
  tr '\r' '\n' < "$out/console-$tag.log" | grep -ao 'E2E .*' > "$out/report-$tag.log"
}

# nested_guest: the initramfs (busybox, INIT as /init, and the PROGRAMs with
# their libraries) at $work/nested-initrd.gz; `nested` holds initramfs.sh's
# arguments that carry QEMU (chrooted in /qroot), the nested kernel and that
# initramfs into the outer guest. x86_64: QEMU and its firmware from the
# trixie root $root, Debian's kernel. aarch64: the arm64 QEMU arm64-qemu.sh
# fetches (a tree of its own: the root is amd64) and the outer guest's own
# kernel, $work/vmlinuz (it has KVM, NVMe and PCI for the nested guest too).
#   nested_guest ARCH BUSYBOX INIT [PROGRAM...]
nested_guest() {
  local arch=$1 busybox=$2 init=$3 p bins=()
  shift 3
  for p in "$@"; do bins+=(--bin "$p"); done
  "$here/initramfs.sh" "$work/nested-initrd.gz" "$arch" "$busybox" "$init" "${bins[@]}" || return 1
  if [ "$arch" = aarch64 ]; then
    "$here/arm64-qemu.sh" "$out" > "$work/arm64-qemu.log" 2>&1 || { cat "$work/arm64-qemu.log"; return 1; }
    nested=(--tree "$out/arm64-qemu/root:/qroot"
            --file "$work/vmlinuz:/qroot/nested/vmlinuz" --file "$work/nested-initrd.gz:/qroot/nested/initrd.gz")
    return 0
  fi
  nested=(--root-bin "$root" /qroot /usr/bin/qemu-system-x86_64
          --root-file "$root" /qroot /usr/share/seabios/bios-256k.bin
          --root-file "$root" /qroot /usr/share/qemu/linuxboot_dma.bin
          --root-file "$root" /qroot /usr/share/qemu/kvmvapic.bin
          --file "$root/vmlinuz-amd64:/qroot/nested/vmlinuz" --file "$work/nested-initrd.gz:/qroot/nested/initrd.gz")
}

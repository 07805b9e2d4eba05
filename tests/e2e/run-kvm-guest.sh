#!/usr/bin/env bash
# Boots a Linux with KVM inside (nested virtualization under TCG, QEMU from
# the e2e trixie root) and runs the caller's commands in it: arm64 as
# qemu-system-aarch64 -M virt,virtualization=on,highmem=on -cpu max, x86_64
# as qemu-system-x86_64 -M q35 -cpu qemu64,+svm,+npt (AMD SVM with nested
# paging, which TCG emulates). An initramfs with busybox, the programs given
# (and their libraries), the kernel's KVM modules where it has them as
# modules, and an /init (kvm-guest-init.sh) that runs the commands in order
# and prints their output and exit codes on the serial console, then powers
# off. The harness parses the console, prints what the guest said, one
# ok/FAIL line per command and how long the boot took.
#
#   run-kvm-guest.sh OUT KERNEL [options] [--] COMMAND...
#   OUT      the e2e directory of a build tree (build/e2e: the root link and
#            root.stamp made by build-root.sh, arm64/busybox)
#   KERNEL   cloud     trixie's arm64 cloud kernel 6.12 (the root's vmlinuz-arm64)
#            backports trixie-backports' newest arm64 cloud kernel (7.x)
#            16k       trixie's 6.12 arm64-16k kernel: 16 KiB pages
#            (backports and 16k: fetched once and cached by arm64-kernels.sh)
#            x86       trixie's amd64 cloud kernel 6.12 (the root's
#                      vmlinuz-amd64) with its kvm and kvm-amd modules
#   --bin FILE[:DEST]  a program for the initramfs, of the kernel's
#                      architecture (default DEST /bin/NAME), stripped, with
#                      every library it needs
#   --file SRC:DEST    a file as it is
#                      (a missing program or file: skipped, 77 - the arm64
#                      tree is a separate build this harness cannot make)
#   --cpu PROPS        more -cpu properties (arm64: max,PROPS, e.g. sve-max-vq=1)
#   --append ARGS      more kernel command line
#   --mem MIB          guest RAM (default 2048)
#   --timeout S        for the whole QEMU run (default 300)
#   --tag NAME         names the logs, OUT/kvm-guest-NAME.* (default KERNEL)
#   COMMAND  one shell command line each, run by the guest's /init in its
#            own subshell; the helpers `pagesize [EXPECTED]` (the kernel's page
#            size, failing when not EXPECTED), `kvm` (/dev/kvm and the
#            kernel's KVM lines, failing without /dev/kvm) and `refused
#            PATTERN CMD...` (CMD must exit 1 and print PATTERN) are there.
# Exit 0 when the guest ran every command and each exited 0; 1 otherwise; 77
# (CTest: skipped, with the reason) when there is no e2e root or the kernel
# cannot be had.
set -uo pipefail
here=$(dirname "$(realpath "$0")")
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
(($# >= 2)) || usage
out=$(realpath -m "$1"); kernel=$2; shift 2
root=$out/root
. "$(dirname "$(realpath "$0")")/lib.sh"
bins=() files=() cpu="" append="" mem=2048 limit=300 tag=$kernel cmds=()
while (($#)); do
  case $1 in
    --bin) bins+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --cpu) cpu=",$2"; shift 2 ;;
    --append) append="$2"; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --) shift; cmds+=("$@"); break ;;
    -*) echo "run-kvm-guest.sh: unknown option $1" >&2; usage ;;
    *) cmds+=("$1"); shift ;;
  esac
done
((${#cmds[@]})) || { echo "run-kvm-guest.sh: no commands" >&2; usage; }
for c in "${cmds[@]}"; do
  case $c in *$'\n'*) echo "run-kvm-guest.sh: a command may not span lines: $c" >&2; exit 2 ;; esac
done

need_root "$out"
arch=aarch64 debarch=arm64
[ "$kernel" = x86 ] && arch=x86_64 debarch=amd64
busybox=$out/$debarch/busybox/usr/bin/busybox
[ -f "$busybox" ] || skip "no $debarch busybox at $busybox (build-root.sh extracts it)"
modules=()
case $kernel in
  cloud) vmlinuz=$root/vmlinuz-arm64 ;;
  backports|16k)
    "$here/arm64-kernels.sh" "$out" || { rc=$?; [ $rc = 77 ] && exit 77; echo "FAIL fetching the arm64 kernels"; exit 1; }
    vmlinuz=$out/arm64-kernels/vmlinuz-$kernel ;;
  x86)
    vmlinuz=$root/vmlinuz-amd64
    kdir=$(ls -d "$out"/amd64/kernel/usr/lib/modules/*/kernel 2>/dev/null | head -1)
    [ -n "$kdir" ] || skip "no amd64 kernel modules under $out/amd64/kernel (build-root.sh extracts them)"
    for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do modules+=(--module "$kdir/$m.ko.xz"); done ;;
  *) echo "run-kvm-guest.sh: KERNEL must be cloud, backports, 16k or x86" >&2; exit 2 ;;
esac
[ -f "$vmlinuz" ] || skip "no $kernel kernel at $vmlinuz"

# The work directory lies inside the root, where the chrooted QEMU reads it;
# unique, as other build trees share the root.
mkdir -p "$root/nvg"
work=$(mktemp -d "$root/nvg/kvm-guest-$tag.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
ln "$vmlinuz" "$work/vmlinuz" 2>/dev/null || cp "$vmlinuz" "$work/vmlinuz"
printf '%s\n' "${cmds[@]}" > "$work/commands"
args=(--file "$work/commands:/commands")
strip=$(command -v strip || true)
[ "$arch" = aarch64 ] && strip=$(command -v aarch64-linux-gnu-strip || true)
for b in "${bins[@]}"; do
  src=${b%%:*}; dest=${b#*:}; [ "$dest" = "$b" ] && dest=/bin/$(basename "$src")
  [ -f "$src" ] || skip "no program $src (the build trees are built by scripts/setup)"
  copy=$work/bin/$(basename "$dest")
  # Debug info would make the initramfs ten times larger.
  if [ -n "$strip" ]; then "$strip" -o "$copy" "$src"; else cp "$src" "$copy"; fi
  args+=(--bin "$copy:$dest")
done
for f in "${files[@]}"; do
  [ -f "${f%%:*}" ] || skip "no file ${f%%:*} (the build trees are built by scripts/setup)"
  args+=(--file "$f")
done
"$here/initramfs.sh" "$work/initrd.gz" "$arch" "$busybox" "$here/kvm-guest-init.sh" "${args[@]}" "${modules[@]}" \
  || { echo "FAIL building the initramfs"; exit 1; }

console=$out/kvm-guest-$tag.console.log
in_root() { echo "${1#"$root"}"; }
if [ "$arch" = aarch64 ]; then
  qemu=(qemu-system-aarch64 -M virt,virtualization=on,highmem=on -cpu "max$cpu" -m "$mem" -smp 1
        -nographic -no-reboot -nic none
        -kernel "$(in_root "$work/vmlinuz")" -initrd "$(in_root "$work/initrd.gz")"
        -append "console=ttyAMA0 panic=-1 loglevel=4 $append")
else
  # phys-bits=48: qemu64 has 40, a 1 TiB guest physical space, and the
  # runner puts the 64-bit BAR window at 1 TiB (as big GPUs need).
  qemu=(qemu-system-x86_64 -M q35 -cpu "qemu64,+svm,+npt,phys-bits=48$cpu" -m "$mem" -smp 1
        -nographic -no-reboot -nic none
        -kernel "$(in_root "$work/vmlinuz")" -initrd "$(in_root "$work/initrd.gz")"
        -append "console=ttyS0 panic=-1 loglevel=4 $append")
fi
echo "  QEMU: ${qemu[*]}"
start=$(date +%s.%N)
timeout "$limit" chroot "$root" "${qemu[@]}" > "$console" 2>&1
qrc=$?
secs=$(echo "$(date +%s.%N) $start" | awk '{printf "%.1f", $1 - $2}')

# The serial console ends lines with \r and may put the kernel's last words
# before ours on one line: split at every \r, take from "E2E " on.
report=$out/kvm-guest-$tag.report.log
tr '\r' '\n' < "$console" | grep -ao 'E2E .*' > "$report"
e2e() { grep "^E2E $1" "$report"; }
e2e 'INFO \|DMESG ' | sed 's/^E2E /  guest: /'
fails=0
for i in $(seq 1 ${#cmds[@]}); do
  cmd=${cmds[$((i - 1))]}
  rc_line=$(e2e "RC $i " | head -1)
  if [ -z "$rc_line" ]; then
    echo "FAIL $kernel: [$i] $cmd: did not finish"
    e2e "OUT $i " | sed "s/^E2E OUT $i /  | /" | tail -40
    fails=$((fails + 1)); continue
  fi
  read -r _ _ _ rc t <<<"$rc_line"
  if [ "$rc" = 0 ]; then
    echo "ok   $kernel: [$i] $cmd (${t} s)"
    e2e "OUT $i " | sed "s/^E2E OUT $i /  | /" | tail -5
  else
    echo "FAIL $kernel: [$i] $cmd: exit $rc (${t} s)"
    e2e "OUT $i " | sed "s/^E2E OUT $i /  | /" | tail -60
    fails=$((fails + 1))
  fi
done
done_n=$(e2e DONE | head -1 | cut -d' ' -f3)
[ "$done_n" = "${#cmds[@]}" ] || { echo "FAIL $kernel: the guest did not finish (QEMU exit $qrc; see $console)"; fails=$((fails + 1)); }
# Boot time: the whole QEMU run less the time the commands took (the guest's
# clock only starts with the kernel, after QEMU loaded and unpacked it).
cmd_s=$(e2e RC | awk '{s += $5} END {printf "%.1f", s}')
boot=$(awk -v a="$secs" -v b="$cmd_s" 'BEGIN {printf "%.1f", a - b}')
echo "  $kernel ($(e2e 'INFO kernel' | head -1 | cut -d' ' -f4), $(e2e 'INFO pagesize' | head -1 | cut -d' ' -f4)-byte pages):" \
     "QEMU ran ${secs} s: boot and power-off ${boot} s, the commands ${cmd_s} s; exit $qrc"
echo "$fails failed"
[ "$fails" = 0 ]

#!/bin/busybox sh
# /init of the nested KVM guest (tests/e2e/run-kvm-guest.sh, arm64 or x86):
# loads the modules it was given, says what the kernel offers KVM, then runs the caller's commands from /commands, one
# shell command line each, in order, each in its own subshell with the
# helpers below, and prints every output line and the exit code. Then powers
# off. Every line for the harness starts with "E2E ":
#   E2E INFO <what> <value>      E2E DMESG <a kernel line about KVM/SVE>
#   E2E CMD <n> <command>        E2E OUT <n> <output line>
#   E2E RC <n> <exit code> <seconds>
#   E2E DONE <number of commands run>
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run
mount -t tmpfs tmp /tmp
while read -r m; do
  [ -n "$m" ] && { insmod "/lib/modules/$m" || echo "E2E INFO insmod_failed $m"; }
done < /lib/modules/order
say() { echo "E2E $*"; }
now() { cut -d' ' -f1 /proc/uptime; }

# Helpers for the commands.
# pagesize [EXPECTED]: the kernel's base page size in bytes (busybox has no
# getconf: the KernelPageSize of this process's first mapping); with EXPECTED,
# fails when it differs.
pagesize() {
  local kb
  kb=$(sed -n 's/^KernelPageSize: *\([0-9]*\) kB$/\1/p' /proc/self/smaps | head -1)
  echo "$((kb * 1024))"
  [ -z "${1:-}" ] || [ "$((kb * 1024))" = "$1" ]
}
# kvm: /dev/kvm and what the kernel said when it set KVM up; fails without
# /dev/kvm.
kvm() {
  dmesg | grep -E 'kvm \[[0-9]+\]:' | sed 's/^\[[ 0-9.]*\] //'
  if [ -c /dev/kvm ]; then echo "/dev/kvm present"; else echo "/dev/kvm absent"; return 1; fi
}

# refused PATTERN COMMAND...: COMMAND must exit 1 (refused) and say PATTERN.
refused() {
  local pattern=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  echo "$out"
  [ "$rc" = 1 ] || { echo "refused: exit $rc, not 1"; return 1; }
  echo "$out" | grep -qF -- "$pattern" || { echo "refused: no '$pattern' in the output"; return 1; }
}

say "INFO boot_s $(now)"
say "INFO kernel $(uname -r)"
say "INFO pagesize $(pagesize)"
say "INFO kvm $([ -c /dev/kvm ] && echo present || echo absent)"
dmesg | grep -E 'kvm \[[0-9]+\]:|SVE|CPU: All CPU\(s\) started' | sed 's/^\[[ 0-9.]*\] //; s/^/E2E DMESG /'
# From here on only our lines on the console.
dmesg -n 1

n=0
while IFS= read -r cmd; do
  [ -n "$cmd" ] || continue
  n=$((n + 1))
  say "CMD $n $cmd"
  t0=$(now)
  { ( eval "$cmd" ) 2>&1 < /dev/null; echo $? > /tmp/.rc; } | sed "s/^/E2E OUT $n /"
  say "RC $n $(cat /tmp/.rc) $(echo "$(now) $t0" | awk '{printf "%.2f", $1 - $2}')"
done < /commands
say "DONE $n"
poweroff -f

#!/usr/bin/env bash
# Upgrade in place and crash survival with a real VMM (R41): `nvgrace serve`
# + QEMU's vfio-user-pci (x86 q35, TCG) + a Linux guest that loops over the
# device with checks (tests/e2e/upgrade-init.sh) while this script, at
# random points, upgrades the server UPGRADES times (default 20) and, in
# the keeper mode (serve --keeper), also SIGKILLs the serving process as
# many times. The guest must see no error and no wrong value, QEMU must log
# no vfio-user error, the server (the keeper) must stay one process; prints
# the longest stall the guest saw and the longest pause the server logged.
#   run-upgrade.sh OUT NVGRACE [UPGRADES] [upgrade|keeper]
# Exit 0 pass, 1 fail, 77 skipped (no root), with the reason.
set -uo pipefail
out=$(realpath -m "$1"); nvgrace=$(realpath "$2"); upgrades=${3:-20}; mode=${4:-upgrade}
here=$(dirname "$(realpath "$0")")
root=$out/root
. "$here/lib.sh"
need_root "$out"
check_label=$mode
work=$root/nvg/$mode
case $mode in
  upgrade) keeper=() ;;
  keeper) keeper=(--keeper) ;;
  *) echo "run-upgrade.sh: MODE is upgrade or keeper"; exit 2 ;;
esac
rm -rf "$work"; mkdir -p "$work"
busybox=$out/amd64/busybox/usr/bin/busybox
"$here/initramfs.sh" "$work/initrd.gz" x86_64 "$busybox" "$here/upgrade-init.sh" \
  || { echo "FAIL building the initramfs"; exit 1; }
sock=/run/nvgrace-$mode.sock
memfile=$out/mem-$mode
log=$out/serve-$mode.log
rm -f "$memfile" "$root$sock"
# 1.5 GiB: 1 GiB resmem and 512 MiB usemem, sparse.
"$nvgrace" serve "${keeper[@]}" --socket "$root$sock" --profile gh200 --mem-size 0x60000000 \
  --memory-file "$memfile" > "$log" 2>&1 &
server=$!
for _ in $(seq 50); do [ -S "$root$sock" ] && break; sleep 0.1; done
in_root() { echo "${1#$root}"; }
console=$out/console-$mode.log
start=$(date +%s)
timeout 600 chroot "$root" qemu-system-x86_64 -M q35 -m 512 -nographic -no-reboot \
  -kernel /vmlinuz-amd64 -initrd "$(in_root "$work/initrd.gz")" -append "console=ttyS0 panic=-1 loglevel=4" \
  -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem \
  -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"$sock\"}}" > "$console" 2>&1 &
qemu=$!
report() { tr '\r' '\n' < "$console" | grep -ao 'E2E .*'; }
for _ in $(seq 300); do report | grep -q "LOOP START" && break; kill -0 $qemu 2>/dev/null || break; sleep 0.5; done
looping=$(report | grep -c "LOOP START")
check "the guest found the GPU and started its loop" "$([ "$looping" = 1 ]; echo $?)" "see $console"
# The guest loop at a random point: 0.2 to 2 s from now.
random_pause() { sleep "$(( (RANDOM % 19) / 10 )).$(( RANDOM % 10 ))"; }
# Waits until the log has N lines matching PATTERN (10 s at most).
wait_log() { for _ in $(seq 100); do [ "$(grep -c "$2" "$log")" -ge "$1" ] && return 0; sleep 0.1; done; return 1; }
done_upgrades=0; done_kills=0
if [ "$looping" = 1 ]; then
  for k in $(seq "$upgrades"); do
    random_pause
    kill -USR2 $server 2>/dev/null || break
    wait_log "$k" "upgraded in place" || break
    done_upgrades=$k
    [ "$mode" = keeper ] || continue
    random_pause
    # The serving process is the keeper's child; it takes the keeper's state
    # on once at the start and once after each death.
    kill -KILL "$(pgrep -P $server)" 2>/dev/null || break
    wait_log $((k + 1)) "took the state on from the keeper" || break
    done_kills=$k
  done
  sleep 2
fi
put_u64 "$memfile" 0x8000 0x53544F50  # "STOP", read by the guest through BAR4
wait $qemu; qrc=$?
took=$(( $(date +%s) - start ))
alive=$(kill -0 $server 2>/dev/null; echo $?)
kill -TERM $server 2>/dev/null; wait $server
report | sed 's/^/  guest: /'
grep -E "upgrade refused|upgraded in place|took the keeper|killed|warn|error" "$log" | sed 's/^/  serve: /' | tail -6
pause=$(sed -n 's/.*, \([0-9]*\) ms after the pause began.*/\1/p' "$log" | sort -n | tail -1)
loop=$(report | grep "LOOP iterations")
stall=$(sed -n 's/.*longest_ms=\([0-9]*\).*/\1/p' <<<"$loop")
echo "  $done_upgrades upgrade(s) and $done_kills SIGKILL(s) of the serving process in $took s; the longest guest iteration (stall) ${stall:-?} ms; the longest server pause ${pause:-?} ms; QEMU exit $qrc"
check "the server was upgraded $upgrades times" "$([ "$done_upgrades" = "$upgrades" ]; echo $?)" "$done_upgrades done"
if [ "$mode" = keeper ]; then
  check "the serving process was SIGKILLed $upgrades times and replaced each time" \
    "$([ "$done_kills" = "$upgrades" ]; echo $?)" "$done_kills done"
fi
check "the server$([ "$mode" = keeper ] && echo "'s keeper") stayed one process (pid $server) throughout" "$alive" "it exited"
check "no upgrade was refused" "$(! grep -q "upgrade refused" "$log"; echo $?)" "$(grep -m1 "upgrade refused" "$log")"
check "the guest finished its loop" "$(report | grep -q "^E2E DONE"; echo $?)" "see $console"
check "the guest saw no error and no wrong value" "$(grep -q " errors=0 " <<<"$loop" && ! report | grep -q "BAD"; echo $?)" \
  "$(report | grep -m3 BAD | tr '\n' ' ')"
iters=$(sed -n 's/.*iterations=\([0-9]*\).*/\1/p' <<<"$loop")
check "the guest kept looping through the upgrades (more iterations than upgrades)" \
  "$([ "${iters:-0}" -gt "$upgrades" ]; echo $?)" "${iters:-no} iterations"
check "QEMU logged no vfio-user error" "$(! grep -aiE "vfio-user|vfio_user|qemu-system-x86_64: " "$console" >/dev/null; echo $?)" \
  "$(grep -aiE -m2 "vfio-user|vfio_user|qemu-system-x86_64: " "$console" | tr '\n' ' ')"
check "every guest iteration came within QEMU's 5 s x-msg-timeout" "$([ "${stall:-99999}" -lt 5000 ]; echo $?)" "${stall:-?} ms"
rm -f "$memfile"
echo "$fails failed"
[ "$fails" = 0 ]

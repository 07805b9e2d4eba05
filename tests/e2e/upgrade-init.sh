#!/bin/busybox sh
# The upgrade e2e guest's /init (R41): finds the emulated GH200 and, until
# the host plants "STOP" in usemem, loops over the device the way a driver
# touches it - config space read (ids, BAR4) and written (COMMAND's bus
# master bit, read back), BAR0's R20 status register read and a BAR0
# register written and read back, BAR4 data written and read back - checking
# every value. While it runs, the host upgrades nvgrace serve again and
# again. Reports the iterations, every wrong value or failed access, and the
# longest iteration (the longest stall it saw), as "E2E " lines.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "E2E $*"; }
now_cs() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }  # centiseconds since boot
d=""
for x in /sys/bus/pci/devices/*; do
  [ "$(cat "$x/vendor")" = 0x10de ] && d=$x && break
done
[ -n "$d" ] || { say "NO DEVICE"; say DONE; poweroff -f; }
echo 1 > "$d/enable"
b0=$(sed -n 1p "$d/resource" | cut -d' ' -f1)
b4=$(sed -n 5p "$d/resource" | cut -d' ' -f1)
cfg32() { od -An -tx4 -j "$1" -N 4 "$d/config" | tr -d ' '; }
cfg16() { od -An -tx2 -j "$1" -N 2 "$d/config" | tr -d ' '; }
put16() {  # put16 OFFSET VALUE: a 2-byte config write through sysfs
  printf "$(printf '\\x%02x\\x%02x' $(($2 & 0xff)) $((($2 >> 8) & 0xff)))" \
    | dd of="$d/config" bs=2 count=1 seek=$(($1 / 2)) conv=notrunc status=none
}
ids=$(cfg32 0)
bar4=$(cfg32 32)
cmd=$((0x$(cfg16 4)))
say "DEVICE ${d##*/} ids=$ids bar4=$bar4 cmd=$cmd"
errors=0
bad() { errors=$((errors + 1)); say "BAD iteration $i: $*"; }
i=0
longest=0
last=$(now_cs)
say "LOOP START"
while :; do
  i=$((i + 1))
  [ "$(devmem $((b4 + 0x8000)) 32)" = 0x53544F50 ] && break
  v=$(cfg32 0); [ "$v" = "$ids" ] || bad "ids $v, expected $ids"
  v=$(cfg32 32); [ "$v" = "$bar4" ] || bad "BAR4 $v, expected $bar4"
  want=$(( (cmd & ~4) | (i & 1) * 4 ))
  put16 4 $want
  v=$((0x$(cfg16 4))); [ "$v" = "$want" ] || bad "COMMAND $v after writing $want"
  v=$(devmem $((b0 + 0x1498)) 32); [ "$v" = 0x000000FF ] || bad "BAR0 C2C status $v, expected 0x000000FF"
  devmem $((b0 + 0x100)) 32 $i
  v=$(devmem $((b0 + 0x100)) 32); [ $((v)) = $i ] || bad "BAR0 scratch $v after writing $i"
  off=$((0x10000 + (i % 512) * 8))
  devmem $((b4 + off)) 64 $((i * 65537))
  v=$(devmem $((b4 + off)) 64); [ $((v)) = $((i * 65537)) ] || bad "BAR4+$off $v after writing $((i * 65537))"
  if [ $i -gt 1 ]; then  # the previous iteration's value is still there
    p=$((0x10000 + ((i - 1) % 512) * 8))
    v=$(devmem $((b4 + p)) 64); [ $((v)) = $(((i - 1) * 65537)) ] || bad "BAR4+$p $v, expected $(((i - 1) * 65537))"
  fi
  t=$(now_cs); [ $((t - last)) -gt $longest ] && longest=$((t - last)); last=$t
  [ $i -ge 100000 ] && break
done
say "LOOP iterations=$i errors=$errors longest_ms=$((longest * 10))"
say DONE
poweroff -f

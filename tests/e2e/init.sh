#!/bin/busybox sh
# The e2e guest's /init: reports what Linux sees of every NVIDIA device and,
# in check mode, exercises BAR4 and BAR2 through /dev/mem. Lines start with
# "E2E " so the harness can find them in the console output. Parameters come
# from the kernel command line: nvg.mode=check|window nvg.use=<usemem length>
# nvg.res=<resmem length>.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
say() { echo "E2E $*"; }
mode=$(arg nvg.mode)
use=$(arg nvg.use)
res=$(arg nvg.res)
restail=$(arg nvg.restail)
n=0
for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor")" = 0x10de ] || continue
  n=$((n + 1))
  dev=$(basename "$d")
  say "DEVICE $dev $(cat "$d/vendor"):$(cat "$d/device")"
  # With a directly booted kernel nothing enabled the device: turn memory
  # decode on before touching a BAR.
  echo 1 > "$d/enable"
  i=0
  while read -r start end flags; do
    if [ $((end)) -ne 0 ]; then
      say "BAR $dev $i start=$start size=$((end - start + 1)) flags=$flags"
    fi
    i=$((i + 1))
  done < "$d/resource"
  if [ "$mode" = check ]; then
    b2=$(sed -n 3p "$d/resource" | cut -d' ' -f1)
    b4=$(sed -n 5p "$d/resource" | cut -d' ' -f1)
    say "HOST4 $(devmem $((b4 + 0x3000)) 64)"
    devmem $((b4 + 0x2000)) 64 0x4E56475245553404
    say "BACK4 $(devmem $((b4 + 0x2000)) 64)"
    say "TAIL4 $(devmem $((b4 + use)) 64)"
    if [ -n "$res" ] && [ "$res" != 0 ]; then
      say "HOST2 $(devmem $((b2 + 0x3000)) 64)"
      devmem $((b2 + 0x2000)) 64 0x4E56475245553202
      [ "$restail" = 1 ] && say "TAIL2 $(devmem $((b2 + res)) 64)"
    fi
  fi
done
say "COUNT $n"
dmesg | grep -iE "no space|can't assign|failed to assign" | sed 's/^/E2E DMESG /'
say "DONE"
poweroff -f

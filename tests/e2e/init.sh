#!/bin/busybox sh
# The e2e guest's /init: reports what Linux sees of every NVIDIA device and,
# in check mode, exercises BAR4 and BAR2 through /dev/mem; in gi mode it reads
# a marker the host planted in each GPU's usemem (which GPU is which) and
# reports the NUMA nodes, the SRAT's generic-initiator entries and the PCI
# windows. Lines start with "E2E " so the harness can find them in the console
# output. Parameters come from the kernel command line:
# nvg.mode=check|window|gi nvg.use=<usemem length> nvg.res=<resmem length>.
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
  if [ "$mode" = gi ]; then
    b4=$(sed -n 5p "$d/resource" | cut -d' ' -f1)
    say "MARK $dev $(devmem $((b4 + 0x3000)) 64)"
  fi
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
if [ "$mode" = gi ]; then
  for f in possible online has_memory has_cpu has_generic_initiator; do
    say "NODES $f $(cat /sys/devices/system/node/$f 2>/dev/null || echo none)"
  done
  for nd in /sys/devices/system/node/node*; do
    say "NODEMEM ${nd##*/node} $(sed -n 's/.*MemTotal: *\([0-9]*\) kB/\1/p' "$nd/meminfo")"
  done
  # SRAT (ACPI 6.5, 5.2.16): a 48-byte header, then structures of type and
  # length; type 5 is a Generic Initiator Affinity: device handle type at +3,
  # proximity domain at +4, PCI segment at +8, bus at +10, devfn at +11,
  # flags at +24 (bit 0: enabled).
  i=0
  for b in $(od -An -v -tu1 /sys/firmware/acpi/tables/SRAT); do eval "s$i=$b"; i=$((i + 1)); done
  byte() { eval "echo \$s$1"; }
  u32() { echo $(( $(byte $1) | $(byte $(($1 + 1))) << 8 | $(byte $(($1 + 2))) << 16 | $(byte $(($1 + 3))) << 24 )); }
  off=48
  while [ $off -lt $i ]; do
    len=$(byte $((off + 1)))
    if [ "$(byte $off)" = 5 ]; then
      devfn=$(byte $((off + 11)))
      seg=$(( $(byte $((off + 8))) | $(byte $((off + 9))) << 8 ))
      bdf=$(printf '%04x:%02x:%02x.%x' $seg "$(byte $((off + 10)))" $((devfn >> 3)) $((devfn & 7)))
      say "SRATGI pxm=$(u32 $((off + 4))) handle=$(byte $((off + 3))) $bdf flags=$(u32 $((off + 24)))"
    fi
    [ "$len" -gt 0 ] || break
    off=$((off + len))
  done
  # The host bridge's and the bridges' windows above 4 GiB, and the BARs in them.
  grep -E '^ *[0-9a-f]{9,}-' /proc/iomem | sed 's/^/E2E IOMEM /'
  dmesg | grep -E 'Too many proximity domains' | sed 's/^/E2E DMESG /'
fi
dmesg | grep -iE "no space|can't assign|failed to assign" | sed 's/^/E2E DMESG /'
say "DONE"
poweroff -f

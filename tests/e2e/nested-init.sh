#!/bin/busybox sh
# /init of the nested guest in the host-device e2e: QEMU runs inside the
# outer guest (q35, or arm64 virt) as nvgrace's vfio-user client
# (vfio-user-pci, under KVM) and boots this Linux, whose own nvme driver takes
# the NVMe that `nvgrace serve --host` passes through, while nvgrace's fake
# BAR2/BAR4 sit on the same device. Then the memory-type probe (R40) through
# this guest's mappings of the fake BARs; on arm64 also through the BAR4 of
# a second device (edu standing in for a GB200) served from device-DAX.
# Result lines start with "E2E N ".
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "E2E N $*"; }
dev=
for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor"):$(cat "$d/device")" = 0x1b36:0x0010 ] && dev=$d
done
[ -n "$dev" ] || { say "FAIL no NVMe device"; poweroff -f; }
say "CLOCK nested $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)" \
    "$(dmesg | grep -oE '(tsc|clocksource|lapic|APIC)[^]]*(unstable|Refined|Detected|deadline|timer)[^]]*' | head -4 | tr '\n' ';')"
say "DEVICE $(basename "$dev") driver $(basename "$(readlink "$dev/driver")")"
i=0
while read -r start end flags; do
  [ $((end)) -ne 0 ] && say "BAR $i start=$start size=$((end - start + 1)) flags=$flags"
  i=$((i + 1))
done < "$dev/resource"
for _ in $(seq 100); do [ -b /dev/nvme0n1 ] && break; sleep 0.1; done
say "DISK $(cat /sys/block/nvme0n1/device/serial 2>/dev/null) $(cat /sys/block/nvme0n1/size) sectors"
# A block written and read back through the nvme driver: the controller DMAs
# from and to this guest's memory through nvgrace's mappings (R28).
pattern="nvgrace nested block $(cat /proc/sys/kernel/random/uuid)"
printf '%s' "$pattern" | dd of=/dev/nvme0n1 bs=4096 count=1 conv=sync seek=8 2>/dev/null
sync
echo 3 > /proc/sys/vm/drop_caches
back=$(dd if=/dev/nvme0n1 bs=4096 count=1 skip=8 2>/dev/null | tr -d '\0')
[ "$back" = "$pattern" ] && say "BLOCK ok" || say "BLOCK FAIL wrote '$pattern' read '$back'"
# The fake BARs, usable in this guest: BAR4 (usemem) written, BAR2 (resmem)
# read where the outer guest planted a value. The nvme driver claims every
# memory BAR of its device, and /dev/mem stays out of claimed ranges: let go
# of the device first.
echo "$(basename "$dev")" > "$dev/driver/unbind"
echo 1 > "$dev/enable"
b2=$(sed -n 3p "$dev/resource" | cut -d' ' -f1)
b4=$(sed -n 5p "$dev/resource" | cut -d' ' -f1)
devmem $((b4 + 0x3000)) 64 0x0123456789abcdef 2>&1
say "BAR4_BACK $(devmem $((b4 + 0x3000)) 64 2>&1)"
say "BAR2_READ $(devmem $((b2 + 0x3000)) 64 2>&1)"
# R40: this kernel maps resourceN_wc Normal non-cacheable (write-combined)
# at stage 1, so an unaligned access that faults there meets Device memory
# at stage 2: the type the outer guest's KVM gave QEMU's mapping of the
# memory serve --host handed it.
memtype() {  # memtype NAME FILE@OFFSET
  nvgrace probe --memory-type --map "$2" > /tmp/mt.log 2>&1
  say "MEMTYPE $1 exit $? $(tr '\n' ' ' < /tmp/mt.log)"
}
memtype nvme-bar4 "$dev/resource4_wc@0x4000"
memtype nvme-bar2 "$dev/resource2_wc@0x4000"
edu=
for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor"):$(cat "$d/device")" = 0x1234:0x11e8 ] && edu=$d
done
if [ -n "$edu" ]; then
  echo 1 > "$edu/enable"
  memtype dax-bar4 "$edu/resource4_wc@0x4000"
  e4=$(sed -n 5p "$edu/resource" | cut -d' ' -f1)
  devmem $((e4 + 0x3000)) 64 0x0fedcba987654321 2>&1
  say "DAX_BACK $(devmem $((e4 + 0x3000)) 64 2>&1)"
fi
say DONE
poweroff -f

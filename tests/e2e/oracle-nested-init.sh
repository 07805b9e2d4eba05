#!/bin/busybox sh
# /init of the nested guest of the kernel-oracle scenario: QEMU in the oracle
# guest gives it the emulated Grace GPU - through vfio-pci on the function
# the kernel's nvgrace-gpu holds, or through vfio-user-pci on `nvgrace serve
# --host` - and this Linux reports the BARs it sees and reads BAR4 and BAR2
# where the outer guest planted values in the GPU memory. Lines "E2E N ".
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "E2E N $*"; }
dev=
for d in /sys/bus/pci/devices/*; do [ "$(cat "$d/vendor")" = 0x10de ] && dev=$d; done
[ -n "$dev" ] || { say "FAIL no NVIDIA function"; poweroff -f; }
say "DEVICE $(basename "$dev") $(cat "$dev/vendor"):$(cat "$dev/device")"
i=0
while read -r start end flags; do
  [ $((end)) -ne 0 ] && say "BAR $i size=$((end - start + 1)) flags=$flags"
  i=$((i + 1))
done < "$dev/resource"
echo 1 > "$dev/enable"
b2=$(sed -n 3p "$dev/resource" | cut -d' ' -f1)
b4=$(sed -n 5p "$dev/resource" | cut -d' ' -f1)
say "BAR4_READ $(devmem $((b4 + 0x3000)) 64 2>&1)"
say "BAR2_READ $(devmem $((b2 + 0x3000)) 64 2>&1)"
devmem $((b4 + 0x4000)) 64 0x0badc0ffee0dd00d 2>&1
say "BAR4_BACK $(devmem $((b4 + 0x4000)) 64 2>&1)"
say DONE
poweroff -f

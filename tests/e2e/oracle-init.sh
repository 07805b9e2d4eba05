#!/bin/busybox sh
# /init of the kernel-oracle guest (R37-R39): the function at slot 3 is
# nvgrace's emulated Grace GPU as a Grace host sees it (`serve --view host`,
# over vfio-user), its _DSD (or device-tree node) from `nvgrace firmware`, its
# memory kept from this kernel. The kernel's own nvgrace-gpu driver binds to
# it; the oracle probe then drives (a) the kernel driver, (b) `nvgrace serve
# --host` on the same function bound to vfio-pci, (c) nvgrace's emulated
# guest view of the same profile, and the transcripts go out on the console.
# Kernel command line: nvg.profile=P nvg.memsize=S nvg.noiommu=0|1
#   nvg.scenario=probe (the transcripts) | nested (QEMU in this guest gives
#   the GPU to a nested Linux: vfio-pci on the kernel driver, then
#   vfio-user-pci on serve --host; nvg.usemem/nvg.resmem: where the memory is)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run /tmp
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
say() { echo "E2E $*"; }
profile=$(arg nvg.profile)
memsize=$(arg nvg.memsize)
noiommu=$(arg nvg.noiommu)
# The GPU is the one NVIDIA function (behind the root port at slot 3).
fn=
for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x10de ] && fn=$(basename $d); done
[ -n "$fn" ] || { say "FAIL no NVIDIA function"; say DONE; poweroff -f; }
dev=/sys/bus/pci/devices/$fn
nio=
[ "$noiommu" = 1 ] && nio=--vfio-noiommu
say "FUNCTION $fn $(cat $dev/vendor):$(cat $dev/device) subsystem $(cat $dev/subsystem_vendor):$(cat $dev/subsystem_device)"
say "FWNODE $(cat $dev/firmware_node/path 2>/dev/null) of_node $(readlink $dev/of_node 2>/dev/null)"
say "GROUP $(basename "$(readlink $dev/iommu_group 2>/dev/null)" 2>/dev/null) $(cat /sys/kernel/iommu_groups/*/name 2>/dev/null | sort -u | tr '\n' ' ')"
# What inspect reads back from this guest's firmware (R38 round trip).
acpi=/sys/firmware/acpi/tables
[ -d $acpi ] || acpi=none
nvgrace inspect --acpi $acpi --sysfs /sys --json > /tmp/inspect.json 2>/tmp/inspect.err
say "INSPECT $(tr -d ' \n' < /tmp/inspect.json | grep -o '"mem_base":[0-9]*,"mem_size":[0-9]*' | head -1) $(grep -o '"dt_node":"[^"]*"' /tmp/inspect.json)$(grep -o '"acpi_path":"[^"]*"' /tmp/inspect.json | head -1) $(head -1 /tmp/inspect.err)"

bind() {  # bind DRIVER
  echo "$1" > $dev/driver_override
  [ -e $dev/driver ] && echo $fn > $dev/driver/unbind
  echo $fn > /sys/bus/pci/drivers_probe
  say "BOUND $1: $(basename "$(readlink $dev/driver 2>/dev/null)" 2>/dev/null)"
}
put_file() {  # put_file NAME PATH: the file, gzipped and base64-encoded, on the console
  say "FILE $1 $(wc -c < "$2") bytes"
  gzip -c "$2" | base64 | sed "s/^/E2E F $1 /"
}
probe() {  # probe NAME ARGS...: a transcript, with the time it took
  name=$1; shift
  t0=$(date +%s)
  if nvgrace probe "$@" -o /tmp/$name.txt 2> /tmp/$name.err; then
    say "PROBE $name ok in $(( $(date +%s) - t0 )) s"
    put_file "$name" /tmp/$name.txt
  else
    say "PROBE $name FAIL $(head -2 /tmp/$name.err | tr '\n' ' ')"
  fi
}
serve() {  # serve LOG ARGS...: nvgrace serve in the background, up when it listens
  log=$1; shift
  nvgrace serve "$@" > "$log" 2>&1 &
  server=$!
  for _ in $(seq 300); do grep -q "listening on" "$log" && return 0; kill -0 $server 2>/dev/null || break; sleep 0.1; done
  say "SERVE FAIL $(tail -2 "$log" | tr '\n' ' ')"
  return 1
}

if [ "$(arg nvg.scenario)" = nested ]; then
  usemem=$(arg nvg.usemem) resmem=$(arg nvg.resmem)
  mkdir -p /qroot/dev /qroot/run /qroot/tmp && mount -t devtmpfs dev /qroot/dev
  say "KVM $([ -e /dev/kvm ] && echo yes || echo no)"
  nested() {  # nested TAG DEVICE-JSON SECONDS: the nested Linux with that device, bounded
    devmem $((usemem + 0x3000)) 64 0x1111222233334444
    devmem $((resmem + 0x3000)) 64 0x5555666677778888
    devmem $((usemem + 0x4000)) 64 0
    t0=$(date +%s)
    timeout $3 chroot /qroot qemu-system-x86_64 -accel kvm -cpu host,-tsc-deadline -M q35 -m 256 -nodefaults \
      -display none -monitor none -serial stdio -no-reboot \
      -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem -device "$2" \
      -kernel /nested/vmlinuz -initrd /nested/initrd.gz -append "console=ttyS0 panic=-1 no_timer_check loglevel=4" \
      > /tmp/nested-$1.log 2>&1
    say "NESTED $1 QEMU exit $? in $(( $(date +%s) - t0 )) s"
    tr -d '\r' < /tmp/nested-$1.log | grep -a "E2E N" | sed "s/^E2E N /E2E N $1 /"
    grep -q "E2E N DONE" /tmp/nested-$1.log || tr -d '\r' < /tmp/nested-$1.log | grep -v "^$" | tail -24 | sed "s/^/E2E NESTED_LOG $1 /"
  }
  # Read back once nothing else maps the memory: x86's PAT refuses devmem's
  # uncached mapping of a page the server still maps write-back.
  usemem_back() { say "N $1 USEMEM_BACK $(devmem $((usemem + 0x4000)) 64 2>&1)"; }
  # QEMU's vfio-pci finds the device through sysfs and /dev/vfio.
  mkdir -p /qroot/sys && mount -t sysfs sys /qroot/sys
  bind nvgrace_gpu_vfio_pci
  # 150 s: the nested boot takes 30-50 s; a guest KVM stopped with an
  # internal error would otherwise sit until the bound.
  nested kernel '{"driver":"vfio-pci","host":"'$fn'"}' 150
  usemem_back kernel
  bind vfio-pci
  if serve /tmp/b.log --host $fn --acpi $acpi --socket /qroot/run/b.sock; then
    nested serve '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/b.sock"}}' 300
    kill -TERM $server; wait $server
  fi
  usemem_back serve
  say DONE
  poweroff -f
fi

# (a) The kernel's nvgrace-gpu driver.
bind nvgrace_gpu_vfio_pci
dmesg | grep -iE "nvgrace|vfio" | tail -5 | sed 's/^/E2E KERNEL /'
probe a --vfio $fn $nio
dmesg | grep -iE "nvgrace|vfio" | tail -3 | sed 's/^/E2E KERNEL_AFTER /'

dmesg > /tmp/dmesg-a.txt; put_file dmesg-a /tmp/dmesg-a.txt

# R40: what a client's mapping of the memory behaves as. The kernel's driver
# maps usemem cacheable and resmem write-combined - Normal memory both -
# through its device fd, and so through serve --host serving the driver's
# own regions (the kernel-variant path): every access of the memory-type
# probe must work on both.
memtype() {  # memtype NAME ARGS...: nvgrace probe --memory-type, its exit code and lines
  name=$1; shift
  nvgrace probe --memory-type "$@" > /tmp/mt-$name.txt 2>&1
  say "MEMTYPE $name exit $?"
  sed "s/^/E2E MEMTYPE $name /" /tmp/mt-$name.txt
}
memtype kernel --vfio $fn $nio
if serve /tmp/kv.log --host $fn --acpi $acpi --socket /run/kv.sock $nio; then
  say "SERVING_KERNEL_VARIANT $(grep -m1 'the kernel nvgrace-gpu driver' /tmp/kv.log)"
  memtype served-kernel --socket /run/kv.sock
  kill -TERM $server; wait $server
fi

# (b) nvgrace serve --host on the same function, bound to plain vfio-pci.
bind vfio-pci
devmem_ok=
if [ "$(uname -m)" = aarch64 ]; then
  # R40: the memory is kept from this kernel (no-map), so /dev/mem maps it
  # as Device-nGnRnE here: serve --host must refuse, in one line, unless
  # told otherwise; the transcript is then taken with the override.
  nvgrace serve --host $fn --acpi $acpi --socket /run/r40.sock $nio > /tmp/r40.log 2>&1
  say "R40 exit $? lines $(wc -l < /tmp/r40.log): $(head -1 /tmp/r40.log)"
  devmem_ok=--allow-device-memory
fi
if serve /tmp/b.log --host $fn --acpi $acpi --socket /run/b.sock $nio $devmem_ok; then
  say "SERVING $(grep '^serving' /tmp/b.log)"
  probe b --socket /run/b.sock
  # The /dev/mem path: Device memory on arm64 (R40), write-back on x86.
  memtype served-devmem --socket /run/b.sock
  kill -TERM $server; wait $server
fi

# (c) nvgrace's emulated guest view of the same profile.
if serve /tmp/c.log --profile "$profile" --mem-size "$memsize" --socket /run/c.sock; then
  probe c --socket /run/c.sock
  kill -TERM $server; wait $server
fi
say DONE
poweroff -f

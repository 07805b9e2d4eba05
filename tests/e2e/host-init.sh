#!/bin/busybox sh
# /init of the host-device e2e guest (q35, intel-iommu, QEMU's emulated NVMe
# and edu): the real kernel vfio-pci and IOMMU serve devices that do DMA and
# MSI-X, and `nvgrace serve --host` passes one through over vfio-user
# (R26-R31). Every result line starts with "E2E " for the harness.
# Kernel command line: nvg.api=cdev|group  nvg.scenario=main|bench|nested|upgrade
#   nvg.usemem, nvg.resmem: where the firmware description puts the memory
#   (x86: the _DSD of host-ssdt.asl; arm64: the device tree's node, no ACPI)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run /tmp
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
say() { echo "E2E $*"; }
api=$(arg nvg.api)
scenario=$(arg nvg.scenario)
usemem=$(arg nvg.usemem)
resmem=$(arg nvg.resmem)
acpi=/sys/firmware/acpi/tables
[ -d $acpi ] || acpi=none  # arm64 virt booted with a device tree
# R40: on arm64 /dev/mem maps the memory (kept from this kernel) as Device
# memory: serve --host refuses it unless told; the checks below need a
# server, so they tell it (and the memory-type probe shows what it costs).
devmem_ok=
[ "$(uname -m)" = aarch64 ] && devmem_ok=--allow-device-memory
while read -r m; do
  [ -n "$m" ] && { insmod "/lib/modules/$m" || say "FAIL insmod $m"; }
done < /lib/modules/order

# Bind the NVMe controllers and edu to vfio-pci, as docs/host.md says to.
bind() {
  echo vfio-pci > "/sys/bus/pci/devices/$1/driver_override"
  [ -e "/sys/bus/pci/devices/$1/driver" ] && echo "$1" > "/sys/bus/pci/devices/$1/driver/unbind"
  echo "$1" > /sys/bus/pci/drivers_probe
  say "BOUND $1 $(basename "$(readlink "/sys/bus/pci/devices/$1/driver")") group $(basename "$(readlink "/sys/bus/pci/devices/$1/iommu_group")")"
}
nvme=0000:00:03.0
nvme_msix_bar=0000:00:04.0
edu=0000:00:02.0
bind $nvme
bind $nvme_msix_bar
bind $edu
say "NODES $(ls /dev/vfio/ | tr '\n' ' ') cdevs: $(ls /dev/vfio/devices 2>/dev/null | tr '\n' ' ') iommu: $([ -e /dev/iommu ] && echo yes || echo no)"

sock=/run/nvgrace.sock
# The NVMe stands in for a GH200 over the description's memory (/dev/mem);
# the arm64 upgrade scenario makes it a GB200 over device-DAX instead.
nvme_id=0x2342
nvme_memory=
start_server() {  # start_server LOG: nvgrace serve --host for the NVMe
  # shellcheck disable=SC2086 # nvme_memory: words
  nvgrace serve --host $nvme --assume-device-id $nvme_id $nvme_memory --vfio-api "$api" --acpi $acpi --socket $sock $devmem_ok -v \
    > "$1" 2>&1 &
  server=$!
  for _ in $(seq 100); do [ -S $sock ] && grep -q "listening on" "$1" && return 0; sleep 0.1; done
  say "FAIL the server did not start: $(tail -3 "$1" | tr '\n' ' ')"
  dmesg | tail -5 | sed 's/^/E2E KERNEL /'
  return 1
}
stop_server() { kill -TERM $server; wait $server; say "SERVER_EXIT $?"; }

# make_dax: R40's device-DAX route (arm64): the device tree's pmem region
# (above mem=, outside memblock) as an nd region with one raw namespace;
# the sysfs steps of `ndctl create-namespace -m devdax` make it a device-DAX
# instance, whose info block the kernel writes at the start (offset 0 of
# /dev/daxN.0 is the region's start plus that block's reservation). Sets
# daxdev; fails when there is no region.
make_dax() {
  daxdev=
  region=$(basename "$(ls -d /sys/bus/nd/devices/region* 2>/dev/null | head -1)")
  [ -n "$region" ] || return 1
  nd=/sys/bus/nd/devices
  ns=$(basename "$(ls -d $nd/namespace${region#region}.* | head -1)")
  [ -e $nd/$ns/driver ] && echo "$ns" > $nd/$ns/driver/unbind
  dax=$(cat $nd/$region/dax_seed)
  cat /proc/sys/kernel/random/uuid > $nd/$dax/uuid
  echo 2097152 > $nd/$dax/align
  echo ram > $nd/$dax/mode
  echo "$ns" > $nd/$dax/namespace
  echo "$dax" > /sys/bus/nd/drivers_probe
  daxdev=$(ls /dev | grep -m1 '^dax')
  say "ROUTE dax-setup region $region $(cat $nd/$region/resource 2>/dev/null) namespace $ns dax $dax" \
      "-> /dev/$daxdev $(cat /sys/bus/dax/devices/$daxdev/resource 2>/dev/null) align $(cat /sys/bus/dax/devices/$daxdev/align 2>/dev/null)"
  [ -n "$daxdev" ]
}
# start_dax_server SOCKET LOG: serve --host --host-memory for edu standing
# in for a GB200 (usemem only) whose memory the device tree puts in the
# device-DAX instance. Where the kernel's KVM would map that memory Device
# at stage 2 (arm64 before 6.17, R40) serve --host refuses: DAX_REFUSED says
# how, and the server is started again with --allow-device-memory, so the
# tests can show what a guest then gets.
start_dax_server() {
  bind $edu > /dev/null
  force=
  for _ in 1 2; do
    nvgrace serve --host $edu --assume-device-id 0x2941 --vfio-api "$api" --acpi $acpi --host-memory /dev/$daxdev \
      --socket "$1" $force -v > "$2" 2>&1 &
    daxserver=$!
    for _ in $(seq 100); do
      grep -q "listening on" "$2" && break
      kill -0 $daxserver 2> /dev/null || break
      sleep 0.1
    done
    grep -q "listening on" "$2" && break
    wait $daxserver
    say "DAX_REFUSED exit $? lines $(wc -l < "$2"): $(head -1 "$2")"
    force=--allow-device-memory
  done
  say "DAX_SERVING $(grep '^serving' "$2") $(grep -m1 'error' "$2")"
}

if [ "$scenario" = bench ]; then
  # TCG makes the first round slow and every figure noisy: one warm-up round,
  # then five rounds of each, alternating; the harness takes medians.
  e2e_host_client bench-direct $nvme "$api" > /dev/null
  for round in 1 2 3 4 5; do
    start_server /tmp/serve.log && e2e_host_client bench $sock | sed 's/^/E2E /'
    stop_server
    e2e_host_client bench-direct $nvme "$api" | sed 's/^/E2E /'
  done
  say DONE
  poweroff -f
fi

if [ "$scenario" = upgrade ]; then
  # R41: the NVMe keeps doing DMA (Identify in a loop, with a fresh mapping
  # every other time) while the server is upgraded in place and, under
  # --keeper and --fdstore (under a stand-in systemd), SIGKILLed, at random
  # points 0.2-2 s apart. nvg.rounds: how many of each (default 5); the plain
  # server is upgraded 3 times first.
  rounds=$(arg nvg.rounds); rounds=${rounds:-5}
  # arm64: the NVMe as a GB200 whose memory (the device tree's, slot 3) is
  # the device-DAX instance, the route serve --host takes there (R40); on
  # 6.12 forced by --allow-device-memory, which the upgrade does not care for.
  # --no-mig-bug: the NVMe has no NVIDIA DVSEC, which would mean the bug (R2).
  if [ -n "$devmem_ok" ]; then
    make_dax || say "FAIL no device-DAX instance: $(dmesg | grep -iE 'pmem|nvdimm|nd_|dax' | tail -2 | tr '\n' ' ')"
    nvme_id=0x2941
    nvme_memory="--no-mig-bug --host-memory /dev/$daxdev"
  fi
  pause() { sleep "$(( (RANDOM % 19) / 10 )).$(( RANDOM % 10 ))"; }
  count() { grep -c "$1" /tmp/serve.log; }
  wait_count() {  # wait_count N PATTERN: 15 s at most
    for _ in $(seq 150); do [ "$(count "$2")" -ge "$1" ] && return 0; sleep 0.1; done; return 1
  }
  child_of() { for st in /proc/[0-9]*/stat; do read -r p _ _ pp _ < "$st" 2>/dev/null && [ "$pp" = "$1" ] && echo "$p"; done; }
  loop() {  # loop NAME: the client until /tmp/stop-NAME exists
    rm -f "/tmp/stop-$1"
    e2e_host_client loop $sock NVGSERIAL01 "/tmp/stop-$1" > "/tmp/loop-$1.log" 2>&1 &
    looper=$!
    for _ in $(seq 100); do grep -q "LOOP START" "/tmp/loop-$1.log" && return 0; sleep 0.1; done
    say "FAIL the $1 loop did not start: $(tail -2 "/tmp/loop-$1.log" | tr '\n' ' ')"
  }
  finish() {  # finish NAME: stop the client, report its lines
    sleep 1; kend "$1"; touch "/tmp/stop-$1"; wait $looper; say "LOOP_EXIT $1 $?"
    sed "s/^/E2E LOOP $1 /" "/tmp/loop-$1.log" | tail -4
  }
  # The kernel's word on each loop: IOMMU faults and VFIO resets logged
  # while it ran, into /tmp/kernel.log. The window is bounded by lines
  # written to /dev/kmsg once the loop is under way and before it is told
  # to stop: the server's open comes before it, and the reset that follows
  # a client's exit (R30) after it, as vfio-pci does; an upgrade or a kill
  # must not reset.
  kmark() { echo "nvgrace-e2e: the $1 loop starts" > /dev/kmsg; }
  kend() { echo "nvgrace-e2e: the $1 loop ended" > /dev/kmsg; }
  kcheck() {  # kcheck NAME
    [ "$(dmesg | grep -c "nvgrace-e2e: the $1 loop \(starts\|ended\)")" = 2 ] \
      || echo "$1: the kernel log does not hold the loop's two bounds" >> /tmp/kernel.log
    dmesg | sed -n "/nvgrace-e2e: the $1 loop starts/,/nvgrace-e2e: the $1 loop ended/p" \
      | grep -iE "DMAR:.*(fault|PTE)|arm-smmu-v3.*event|vfio.*(reset|error)" | sed "s/^/$1: /" >> /tmp/kernel.log
  }
  : > /tmp/kernel.log
  start_server /tmp/serve.log && loop plain
  say "UPGRADE_SERVING $(grep '^serving' /tmp/serve.log)"
  kmark plain
  ups=0
  for k in 1 2 3; do
    pause; kill -USR2 $server; wait_count $k "upgraded in place" || break; ups=$k
  done
  finish plain
  kcheck plain
  say "PLAIN upgrades=$ups refused=$(count 'upgrade refused') $(grep -o 'upgraded in place.*after the pause began' /tmp/serve.log | tail -1)"
  stop_server
  # shellcheck disable=SC2086 # nvme_memory: words
  nvgrace serve --keeper --host $nvme --assume-device-id $nvme_id $nvme_memory --vfio-api "$api" --acpi $acpi --socket $sock $devmem_ok -v \
    > /tmp/serve.log 2>&1 &
  server=$!
  wait_count 1 "took the state on from the keeper" || say "FAIL the keeper's serving process did not start: $(tail -3 /tmp/serve.log | tr '\n' ' ')"
  loop keeper
  kmark keeper
  ups=0; kills=0
  for k in $(seq "$rounds"); do
    pause; kill -USR2 $server; wait_count $k "upgraded in place" || break; ups=$k
    pause; kill -KILL "$(child_of $server)"; wait_count $((k + 1)) "took the state on from the keeper" || break; kills=$k
  done
  finish keeper
  kcheck keeper
  say "KEEPER upgrades=$ups kills=$kills refused=$(count 'upgrade refused') alive=$(kill -0 $server 2>/dev/null && echo yes || echo no)"
  grep -E "warn|error|nvgrace: " /tmp/serve.log | grep -v "SIGUSR2 will not\|--assume-device-id" | tail -6 | sed 's/^/E2E SERVER_LOG /'
  stop_server
  # --fdstore under a stand-in systemd (e2e_host_client systemd): the unit's
  # file-descriptor store keeps the device, its IOMMU and the DMA memory.
  : > /tmp/serve.log
  e2e_host_client systemd /run/notify.sock /tmp/service.pid /tmp/serve.log -- "$(command -v nvgrace)" serve --fdstore \
    --host $nvme --assume-device-id $nvme_id $nvme_memory --vfio-api "$api" --acpi $acpi --socket $sock $devmem_ok -v > /tmp/systemd.log 2>&1 &
  sup=$!
  wait_count 1 "listening on" || say "FAIL the --fdstore server did not start: $(tail -3 /tmp/serve.log | tr '\n' ' ')"
  loop fdstore
  kmark fdstore
  ups=0; kills=0
  # The stand-in writes the pid file after it forks the service, which may
  # log before that: a restart is done once both the log line and the new
  # pid are there.
  restarted() {  # restarted K OLD_PID
    wait_count "$1" "took the state on from systemd's file-descriptor store" || return 1
    for _ in $(seq 150); do [ "$(cat /tmp/service.pid)" != "$2" ] && return 0; sleep 0.1; done; return 1
  }
  for k in $(seq "$rounds"); do
    pause; kill -USR2 "$(cat /tmp/service.pid)"; wait_count $k "upgraded in place" || break; ups=$k
    pause; old=$(cat /tmp/service.pid); kill -KILL "$old"
    restarted $k "$old" || break; kills=$k
  done
  finish fdstore
  kcheck fdstore
  say "FDSTORE upgrades=$ups kills=$kills refused=$(count 'upgrade refused') alive=$(kill -0 $sup 2>/dev/null && echo yes || echo no)"
  grep -E "warn|error|nvgrace: " /tmp/serve.log | grep -v "SIGUSR2 will not\|--assume-device-id" | tail -6 | sed 's/^/E2E SERVER_LOG /'
  grep -E "^info start" /tmp/systemd.log | tail -2 | sed 's/^/E2E SYSTEMD_LOG /'
  kill -TERM $sup; wait $sup; say "SYSTEMD_EXIT $? $(tail -1 /tmp/systemd.log)"
  grep FAIL /tmp/systemd.log | sed 's/^/E2E SYSTEMD /'
  tail -3 /tmp/kernel.log | sed 's/^/E2E KERNEL /'
  say DONE
  poweroff -f
fi

if [ "$scenario" = nested ]; then
  # d. QEMU inside this guest as the client, under KVM (x86: this guest's CPU
  #    has SVM with nested paging; arm64: it runs at EL2), booting a Linux
  #    whose nvme driver uses the device; QEMU runs chrooted in /qroot, so
  #    the sockets live there. On arm64 the NVMe's fake BARs come from
  #    /dev/mem (forced: Device memory, R40) and a second device, edu as a
  #    GB200, from device-DAX (Normal memory): the nested guest's probe tells
  #    them apart.
  mkdir -p /qroot/dev && mount -t devtmpfs dev /qroot/dev
  mkdir -p /qroot/run /qroot/tmp
  sock=/qroot/run/nvgrace.sock
  say "KVM $([ -e /dev/kvm ] && echo yes || echo no) $(dmesg | grep -m1 -oE 'kvm \[[0-9]+\]: .*(Hyp|VHE|nVHE|mode)[^]]*|kvm: Nested Paging enabled')"
  e2e_host_client devmem $((resmem + 0x3000)) 0x7777666655554444 > /dev/null  # resmem, for BAR2 in the nested guest
  start_server /tmp/serve.log
  # (busybox sh has no arrays: the second device is a word list, its JSON
  # without spaces.)
  dax_device=
  if [ -n "$devmem_ok" ]; then
    if make_dax; then
      start_dax_server /qroot/run/dax.sock /tmp/dax.log
      dax_device='-device {"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/dax.sock"}}'
    else
      say "FAIL no device-DAX instance: $(dmesg | grep -iE 'pmem|nvdimm|nd_|dax' | tail -2 | tr '\n' ' ')"
    fi
  fi
  start=$(date +%s)
  # Bounded, so a nested guest that hangs leaves its console for the report
  # instead of the whole test running into CTest's limit.
  say "CLOCK outer $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)" \
      "$(dmesg | grep -oE 'tsc: (Marking TSC unstable|Refined TSC|Detected)[^]]*' | tr '\n' ';')"
  l2append=$(arg nvg.l2append | tr , ' ')
  if [ "$(uname -m)" = aarch64 ]; then
    # shellcheck disable=SC2086 # dax_device: words
    timeout "$(arg nvg.nested_timeout)" chroot /qroot qemu-system-aarch64 -M virt,gic-version=3 -accel kvm \
      -cpu "$(arg nvg.l2cpu)" -m 256 -nodefaults -display none -monitor none -serial stdio -no-reboot \
      -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem \
      -device '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/nvgrace.sock"}}' $dax_device \
      -kernel /nested/vmlinuz -initrd /nested/initrd.gz -append "console=ttyAMA0 panic=-1 loglevel=4 $l2append" \
      > /tmp/nested.log 2>&1
  else
    # -tsc-deadline: the nested Linux then times with the LAPIC's one-shot
    # timer. With the TSC-deadline timer (KVM offers it with -cpu host) it lost
    # timer interrupts at random under this guest's TCG-emulated SVM - a stall
    # of minutes ("rcu_preempt kthread timer wakeup didn't happen") in about
    # half the runs; without it none in 20 (docs/host.md, nested guests and timers).
    timeout "$(arg nvg.nested_timeout)" chroot /qroot qemu-system-x86_64 -accel kvm -cpu "$(arg nvg.l2cpu)" -M q35 \
      -m 256 -nodefaults -display none -monitor none -serial stdio -no-reboot \
      -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem \
      -device '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/nvgrace.sock"}}' \
      -kernel /nested/vmlinuz -initrd /nested/initrd.gz -append "console=ttyS0 panic=-1 no_timer_check loglevel=4 $l2append" \
      > /tmp/nested.log 2>&1
  fi
  qrc=$?
  say "NESTED_SECONDS $(( $(date +%s) - start )) QEMU exit $qrc"
  tr -d '\r' < /tmp/nested.log | grep -a "E2E N"
  grep -q "E2E N DONE" /tmp/nested.log || tr -d '\r' < /tmp/nested.log | tail -8 | sed 's/^/E2E NESTED_LOG /'
  say "NESTED_USEMEM $(e2e_host_client devmem $((usemem + 0x3000)))"
  if [ -n "$dax_device" ]; then
    # The GB200 stand-in's BAR4 + 0x3000 is the instance's offset 0x3000
    # (DAX_SERVING: usemem at offset 0x0).
    say "NESTED_DAX $(e2e_host_client mapmem /dev/$daxdev 0x200000 0x3000)"
    kill -TERM $daxserver; wait $daxserver
  fi
  say "SERVER_LOG $(grep -c 'DMA_MAP' /tmp/serve.log) DMA_MAP lines; $(grep 'closing' /tmp/serve.log | tail -1)"
  stop_server
  say DONE
  poweroff -f
fi

# What inspect says about serving the stand-in (R26).
nvgrace inspect --acpi $acpi --sysfs /sys --dev /dev --device $nvme --assume-device-id 0x2342 \
  | grep -E "serve|status|BAR|usemem|resmem" | sed 's/^/E2E INSPECT /'

# Refusals, one line each (R26, R27).
out=$(nvgrace serve --host $nvme --acpi $acpi --socket /run/refused.sock 2>&1); say "REFUSE_NOT_GRACE $? $out"
out=$(nvgrace serve --host $nvme_msix_bar --assume-device-id 0x2342 --acpi $acpi --socket /run/refused.sock $devmem_ok 2>&1)
say "REFUSE_MSIX_BAR $? $out"
echo "$edu" > /sys/bus/pci/devices/$edu/driver/unbind
out=$(nvgrace serve --host $edu --assume-device-id 0x2342 --acpi $acpi --socket /run/refused.sock 2>&1)
say "REFUSE_UNBOUND $? $out"

# R40: without --allow-device-memory, on arm64, one line saying why.
if [ -n "$devmem_ok" ]; then
  nvgrace serve --host $nvme --assume-device-id 0x2342 --vfio-api "$api" --acpi $acpi --socket /run/r40.sock \
    > /tmp/r40.log 2>&1
  say "R40 exit $? lines $(wc -l < /tmp/r40.log): $(head -1 /tmp/r40.log)"
fi

# a. Identify through nvgrace: BAR0 mmap'd through the device fd, DMA into a
#    memfd, MSI-X on an eventfd; then a command at an unmapped IOVA.
start_server /tmp/serve.log
say "SERVING $(grep '^serving' /tmp/serve.log)"
e2e_host_client nvme $sock NVGSERIAL01 | sed 's/^/E2E A /'
# The IOMMU's fault report: intel-iommu's DMAR lines, the SMMUv3's events.
dmesg | grep -iE "DMAR:.*(fault|PTE)|arm-smmu-v3.*event" | tail -2 | sed 's/^/E2E DMAR /'

# b. The fake BARs are the reserved RAM at the description's base (R16-R18):
#    usemem there, resmem right after its 512 MiB.
e2e_host_client devmem $((resmem + 0x2000)) 0x5555666677778888 > /dev/null
e2e_host_client fakebar $sock 0x1111222233334444 | sed 's/^/E2E B /'
say "DEVMEM_USEMEM $(e2e_host_client devmem $((usemem + 0x1000)))"

# c. A client killed mid-run loses its mappings and interrupts, the device
#    is reset, and the next client passes again (R30).
e2e_host_client hold $sock > /tmp/hold.log 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q HOLDING /tmp/hold.log && break; sleep 0.1; done
say "HOLD $(cat /tmp/hold.log)"
kill -9 $holder
wait $holder 2>/dev/null
for _ in $(seq 100); do grep -q "client 3: .*closing" /tmp/serve.log && break; sleep 0.1; done
say "TEARDOWN $(grep "client 3: .*closing" /tmp/serve.log)"
e2e_host_client nvme $sock NVGSERIAL01 | sed 's/^/E2E C /'

# What a client's mapping of the fake BARs behaves as (R40): write-back RAM
# on x86; on arm64 the /dev/mem path's Device memory, whose unaligned
# accesses fault.
nvgrace probe --memory-type --socket $sock > /tmp/memtype.log 2>&1
say "MEMTYPE exit $?"
sed 's/^/E2E MEMTYPE /' /tmp/memtype.log

stop_server
say "SOCKET_LEFT $([ -e $sock ] && echo yes || echo no)"

if [ -n "$devmem_ok" ]; then
  # R40 on arm64: which user-space route gives Normal memory for a range the
  # kernel does not map (docs/host.md has the table). Each is one mapping
  # tried with the memory-type probe's accesses.
  route() {  # route NAME PATH@OFFSET
    nvgrace probe --memory-type --map "$2" > /tmp/route.log 2>&1
    say "ROUTE $1 exit $? $(tr '\n' ' ' < /tmp/route.log)"
  }
  route devmem-nomap /dev/mem@$((usemem + 0x4000))
  route devmem-linear /dev/mem@$(arg nvg.linear)
  # Device-DAX (make_dax), then the route built on it: serve --host
  # --host-memory for the GB200 stand-in; the NVMe (GH200: resmem too) is
  # refused.
  if make_dax; then
    # What inspect says of the GB200 stand-in whose usemem the instance
    # holds: --host-memory, usable on this kernel or not, and why.
    bind $edu > /dev/null
    nvgrace inspect --acpi $acpi --sysfs /sys --dev /dev --device $edu --assume-device-id 0x2941 \
      | sed -n '/^  serve /,/^  status /p' | sed 's/^/E2E DAX_INSPECT /'
    route dax /dev/$daxdev@0
    dmesg | grep -E "dax|nd_pmem|pfn" | tail -3 | sed 's/^/E2E ROUTE dax-kernel /'
    start_dax_server /run/dax.sock /tmp/dax.log
    nvgrace probe --memory-type --socket /run/dax.sock > /tmp/daxmt.log 2>&1
    say "DAX_MEMTYPE exit $? $(tr '\n' ' ' < /tmp/daxmt.log)"
    kill -TERM $daxserver; wait $daxserver
    out=$(nvgrace serve --host $nvme --assume-device-id 0x2342 --acpi $acpi --host-memory /dev/$daxdev \
      --socket /run/refused.sock 2>&1)
    say "DAX_REFUSE_RESMEM exit $? $out"
  else
    say "ROUTE dax no device-DAX instance: $(dmesg | grep -iE 'pmem|nvdimm|nd_|dax' | tail -2 | tr '\n' ' ')"
  fi
  # The kernel's nvgrace-gpu on the stand-in (driver_override binds it to
  # any function): its 7.x probe first waits for the R20 readiness
  # registers at BAR0 + 0x1498 and + 0x200bc. In a child shell: a fault
  # there ends that shell, not this one.
  if [ ! -d /sys/bus/pci/drivers/nvgrace_gpu_vfio_pci ]; then
    say "KERNEL_VARIANT_STANDIN absent: Linux $(uname -r) has no nvgrace_gpu_vfio_pci driver"
  else
  timeout 90 sh -c "echo nvgrace_gpu_vfio_pci > /sys/bus/pci/devices/$nvme/driver_override;
    echo $nvme > /sys/bus/pci/devices/$nvme/driver/unbind; echo $nvme > /sys/bus/pci/drivers_probe" 2> /tmp/kv.err
  say "KERNEL_VARIANT_STANDIN exit $? driver $(basename "$(readlink /sys/bus/pci/devices/$nvme/driver)" 2>/dev/null)" \
      "$(tr '\n' ' ' < /tmp/kv.err) $(dmesg | grep -iE 'nvgrace|Unable to handle|Internal error' | tail -3 | tr '\n' ' ')"
  fi
fi
say DONE
poweroff -f

#!/usr/bin/env bash
# Host-device end-to-end scenarios (R26-R31): a q35 guest under TCG with an
# emulated Intel IOMMU, where the guest kernel's real vfio-pci serves QEMU's
# emulated NVMe (DMA, MSI-X) and `nvgrace serve --host` passes it through to
# the project's own vfio-user client (tests/e2e/host_client.cpp).
#   run-host.sh OUT NVGRACE CLIENT API [SCENARIO]
#   API: group (type1, Debian's stock kernel and its modules) | cdev (iommufd,
#        the x86_64 6.12 kernel tests/e2e/build-kernel.sh builds, cached)
#   SCENARIO: main (default: the checks) | bench (prints the benchmark figures)
#             | nested (QEMU inside the guest as the client, under KVM)
#             | upgrade (R41: the NVMe in a DMA loop across upgrades and
#               SIGKILLs of the server, plain, --keeper and --fdstore under a
#               stand-in systemd; NVG_ROUNDS of each, default 5)
# For experiments on the nested scenario: NVG_L1_APPEND adds to the outer
# guest's kernel command line, NVG_L2_APPEND (comma-separated) to the nested
# guest's, NVG_L2_CPU is the nested guest's -cpu (default host,-tsc-deadline),
# NVG_NESTED_TIMEOUT bounds the nested QEMU (seconds, default 300).
# Exit 0 pass, 1 fail, 77 skipped (no root, no kernel), with the reason.
set -uo pipefail
out=$(realpath -m "$1"); nvgrace=$(realpath "$2"); client=$(realpath "$3"); api=$4; scenario=${5:-main}
here=$(dirname "$(realpath "$0")")
root=$out/root
. "$here/lib.sh"
need_root "$out"
check_label="host $api"
work=$root/nvg/host-$api-$scenario
rm -rf "$work"; mkdir -p "$work"

busybox=$out/amd64/busybox/usr/bin/busybox
modules=()
case $api in
  group)
    kernel=$root/vmlinuz-amd64
    kdir=$(ls -d "$out"/amd64/kernel/usr/lib/modules/*/kernel)
    for m in virt/lib/irqbypass drivers/vfio/vfio drivers/vfio/vfio_iommu_type1 drivers/vfio/pci/vfio-pci-core \
             drivers/vfio/pci/vfio-pci arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do
      modules+=(--module "$kdir/$m.ko.xz")
    done ;;
  cdev)
    # Built once per machine by build-kernel.sh (the e2e kernel test), which
    # links its cache entry here.
    kernel=$out/kernel-x86_64-6.12/bzImage
    [ -f "$kernel" ] || { echo "e2e: skipped: no iommufd kernel (see the e2e kernel test)"; exit 77; } ;;
  *) echo "run-host.sh: API must be group or cdev"; exit 2 ;;
esac
cp "$kernel" "$work/vmlinuz"
nested=()
if [ "$scenario" = nested ]; then
  # QEMU and its libraries from the trixie root, chrooted in /qroot, and the
  # nested guest's kernel (Debian's) and initramfs.
  nested_guest "$busybox" "$here/nested-init.sh" || { echo "FAIL building the nested initramfs"; exit 1; }
fi
"$here/initramfs.sh" "$work/initrd.gz" x86_64 "$busybox" "$here/host-init.sh" \
  --bin "$nvgrace" --bin "$client:/bin/e2e_host_client" "${modules[@]}" "${nested[@]}" \
  || { echo "FAIL building the initramfs"; exit 1; }
iasl -p "$work/ssdt" "$here/host-ssdt.asl" > "$work/iasl.log" 2>&1 || { echo "FAIL iasl: $(tail -2 "$work/iasl.log")"; exit 1; }
truncate -s 64M "$work/nvme.img" "$work/nvme-msix.img"
in_root() { echo "${1#$root}"; }

start=$(date +%s.%N)
# no_timer_check: under TCG the IO-APIC timer check through interrupt
# remapping sometimes fails and panics the boot. memmap= keeps 1.5 GiB of
# guest RAM from the kernel: the "device memory"
# the SSDT's _DSD describes. -cpu qemu64,+svm,+npt gives the guest KVM.
timeout 600 chroot "$root" qemu-system-x86_64 -M q35 -m 4G -smp 1 -cpu qemu64,+svm,+npt -nic none -nographic -no-reboot \
  -device intel-iommu,intremap=on \
  -device edu,addr=0x2 \
  -drive if=none,id=d0,file="$(in_root "$work/nvme.img")",format=raw -device nvme,serial=NVGSERIAL01,drive=d0,addr=0x3 \
  -drive if=none,id=d1,file="$(in_root "$work/nvme-msix.img")",format=raw \
  -device nvme,serial=NVGSERIAL02,drive=d1,addr=0x4,msix-exclusive-bar=on \
  -acpitable file="$(in_root "$work/ssdt.aml")" \
  -kernel "$(in_root "$work/vmlinuz")" -initrd "$(in_root "$work/initrd.gz")" \
  -append "console=ttyS0 panic=-1 loglevel=4 no_timer_check intel_iommu=on iommu=pt memmap=1536M\$0x20000000 nvg.api=$api nvg.scenario=$scenario nvg.l2append=${NVG_L2_APPEND:-} nvg.nested_timeout=${NVG_NESTED_TIMEOUT:-300} nvg.rounds=${NVG_ROUNDS:-5} nvg.l2cpu=${NVG_L2_CPU:-host,-tsc-deadline} ${NVG_L1_APPEND:-}" \
  > "$work/console.log" 2>&1
qrc=$?
secs=$(echo "$(date +%s.%N) - $start" | bc)
tr '\r' '\n' < "$work/console.log" | grep -ao 'E2E .*' > "$work/report.log"
sed 's/^/  guest: /' "$work/report.log"
echo "  QEMU exit $qrc; boot and checks took ${secs} s"
e2e() { grep "^E2E $1" "$work/report.log"; }
has() { e2e "$1" | grep -q -- "$2"; echo $?; }

check "the guest finished" "$(e2e DONE > /dev/null; echo $?)" "see $work/console.log"
if [ "$scenario" = bench ]; then
  figure() { e2e "bench $1 $2" | awk '{print $5}' | sort -g | sed -n 3p; }  # the median of five rounds
  for m in dma_map_1GiB_ms irq_roundtrips_per_s bar0_reads_per_s; do
    echo "  $m: nvgrace $(figure nvgrace $m), direct VFIO $(figure direct $m)"
  done
  map_ratio=$(echo "scale=3; $(figure nvgrace dma_map_1GiB_ms) / $(figure direct dma_map_1GiB_ms)" | bc)
  irq_ratio=$(echo "scale=3; $(figure nvgrace irq_roundtrips_per_s) / $(figure direct irq_roundtrips_per_s)" | bc)
  bar_ratio=$(echo "scale=3; $(figure nvgrace bar0_reads_per_s) / $(figure direct bar0_reads_per_s)" | bc)
  echo "  ratios ($api): DMA_MAP 1 GiB nvgrace/direct time $map_ratio (goal <= 1.1); interrupts nvgrace/direct" \
       "$irq_ratio (goal >= 0.95); BAR0 reads nvgrace/direct $bar_ratio (goal 1.0)"
  echo "$fails failed"
  [ "$fails" = 0 ]
  exit
fi
want_api=$([ "$api" = cdev ] && echo iommufd || echo type1)
if [ "$scenario" = upgrade ]; then
  rounds=${NVG_ROUNDS:-5}
  for m in plain keeper fdstore; do
    check "upgrade: the $m loop ran to the end with no error or wrong value (R41)" \
      "$(e2e "LOOP_EXIT $m 0" > /dev/null && e2e "LOOP $m ok .*LOOP iterations=[0-9]* fresh_maps=[0-9]* bad=0" > /dev/null; echo $?)" \
      "$(e2e "LOOP $m" | tr '\n' ' ') $(e2e "LOOP_EXIT $m")"
  done
  check "upgrade: the plain server was upgraded in place 3 times, none refused" \
    "$(has PLAIN "upgrades=3 refused=0")" "$(e2e PLAIN) $(e2e SERVER_LOG | tr '\n' ' ')"
  check "upgrade: under --keeper, $rounds upgrades and $rounds SIGKILLs of the serving process, none refused" \
    "$(has KEEPER "upgrades=$rounds kills=$rounds refused=0 alive=yes")" "$(e2e KEEPER) $(e2e SERVER_LOG | tr '\n' ' ')"
  check "upgrade: under --fdstore and a stand-in systemd, $rounds upgrades and $rounds SIGKILLs, none refused" \
    "$(has FDSTORE "upgrades=$rounds kills=$rounds refused=0 alive=yes")" "$(e2e FDSTORE) $(e2e SERVER_LOG | tr '\n' ' ')"
  check "upgrade: the stand-in systemd stopped the --fdstore server cleanly, every notification well formed" \
    "$(e2e "SYSTEMD_EXIT 0" > /dev/null && [ -z "$(e2e "SYSTEMD FAIL")" ]; echo $?)" "$(e2e SYSTEMD_EXIT) $(e2e "SYSTEMD FAIL")"
  check "upgrade: the guest kernel logged no DMAR fault and no VFIO reset" "$([ -z "$(e2e KERNEL)" ]; echo $?)" \
    "$(e2e KERNEL | tr '\n' ' ')"
  for m in plain keeper fdstore; do
    echo "  $m: $(e2e "LOOP $m ok" | grep -o 'LOOP iterations.*')"
  done
  echo "  $(e2e PLAIN)"; echo "  $(e2e KEEPER)"; echo "  $(e2e FDSTORE)"
  echo "$fails failed"
  [ "$fails" = 0 ]
  exit
fi
if [ "$scenario" = nested ]; then
  check "d: the outer guest has /dev/kvm (SVM with nested paging under TCG)" "$(has KVM yes)" "$(e2e KVM)"
  check "d: QEMU's vfio-user-pci gave the nested guest the NVMe, bound to its nvme driver" \
    "$(has "N DEVICE" "driver nvme")" "$(e2e "N DEVICE")"
  check "d: the nested guest sees fake BAR2 (1 GiB) and BAR4 (512 MiB), 64-bit prefetchable" \
    "$(e2e "N BAR 2 .*size=1073741824 flags=0x0*14220c" > /dev/null && e2e "N BAR 4 .*size=536870912 flags=0x0*14220c" > /dev/null; echo $?)" \
    "$(e2e "N BAR" | tr '\n' ' ')"
  check "d: a block written and read back by the nested guest's nvme driver" "$(has "N BLOCK" "BLOCK ok")" "$(e2e "N BLOCK")"
  check "d: a value written through BAR4 in the nested guest is in the reserved RAM" \
    "$(has NESTED_USEMEM 0x0123456789abcdef)" "$(e2e NESTED_USEMEM) $(e2e "N BAR4_BACK")"
  check "d: the value the outer guest put in resmem reads through BAR2 in the nested guest" \
    "$(has "N BAR2_READ" 0x7777666655554444)" "$(e2e "N BAR2_READ")"
  echo "  nested QEMU ran for $(e2e NESTED_SECONDS | awk '{print $3}') s; $(e2e SERVER_LOG)"
  echo "$fails failed"
  [ "$fails" = 0 ]
  exit
fi
check "the NVMe and edu are bound to vfio-pci" "$([ "$(e2e BOUND | grep -c vfio-pci)" = 3 ]; echo $?)" "$(e2e BOUND | tr '\n' ' ')"
check "inspect says serve --host can open it through VFIO $api" "$(has INSPECT "serve  ready: vfio-pci")" "$(e2e INSPECT | head -3 | tr '\n' ' ')"
check "a non-Grace device without --assume-device-id is refused, exit 2, one line" \
  "$(has REFUSE_NOT_GRACE "^E2E REFUSE_NOT_GRACE 2 nvgrace: error: --host 0000:00:03.0: 1b36:0010 is not a Grace GPU")" "$(e2e REFUSE_NOT_GRACE)"
check "MSI-X table in a BAR a fake BAR replaces is refused (R27)" \
  "$(has REFUSE_MSIX_BAR "^E2E REFUSE_MSIX_BAR 2 .*MSI-X table is in BAR4, which the fake usemem BAR replaces (R27)")" "$(e2e REFUSE_MSIX_BAR)"
check "a device bound to no driver is refused with the sysfs commands that bind it" \
  "$(has REFUSE_UNBOUND "^E2E REFUSE_UNBOUND 2 .*bound to no driver, not vfio-pci: bind it with 'echo vfio-pci >")" "$(e2e REFUSE_UNBOUND)"
check "the server opened the NVMe through VFIO $api ($want_api)" "$(has SERVING "through VFIO $api ($want_api)")" "$(e2e SERVING)"
check "a: NVMe enabled through the device fd nvgrace sent" "$(has "A ok" "NVMe enabled")" "$(e2e A | tr '\n' ' ')"
check "a: Identify completed, its MSI-X arrived on the client's eventfd (R29)" "$(has "A ok" "Identify Controller completed")" "$(e2e A | tr '\n' ' ')"
check "a: the serial from QEMU's command line is in the client's DMA memory (R28)" "$(has "A ok" "serial number 'NVGSERIAL01")" "$(e2e A | tr '\n' ' ')"
check "a: after DMA_UNMAP a command at that IOVA does not land (R28)" "$(has "A ok" "did not land")" "$(e2e A | tr '\n' ' ')"
check "a: the guest kernel logged the DMAR fault" "$([ -n "$(e2e DMAR)" ]; echo $?)" "no DMAR line in dmesg"
check "b: a value written through BAR4's mmap is in the reserved RAM at the _DSD base" \
  "$(has DEVMEM_USEMEM 0x1111222233334444)" "$(e2e DEVMEM_USEMEM)"
check "b: ...and reads back through REGION_READ" "$(has "B ok" "reads 0x1111222233334444 through REGION_READ")" "$(e2e B | tr '\n' ' ')"
check "b: a value planted in resmem's RAM reads through BAR2's mmap" "$(has "B BAR2+0x2000" 0x5555666677778888)" "$(e2e B | tr '\n' ' ')"
check "c: the client was killed while holding a DMA mapping and an IRQ" "$(has HOLD HOLDING)" "$(e2e HOLD)"
check "c: the server removed them and reset the device (R30)" \
  "$(has TEARDOWN "1 DMA mapping(s) removed, 1 IRQ index(es) disabled, device reset")" "$(e2e TEARDOWN)"
check "c: the next client passes scenario a again" "$([ "$(e2e "C ok" | wc -l)" = 4 ]; echo $?)" "$(e2e C | tr '\n' ' ')"
check "SIGTERM: the server exits 0 and removes its socket" \
  "$(e2e SERVER_EXIT | grep -q 'SERVER_EXIT 0' && has SOCKET_LEFT no)" "$(e2e SERVER_EXIT) $(e2e SOCKET_LEFT)"
echo "$fails failed"
[ "$fails" = 0 ]

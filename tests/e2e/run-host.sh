#!/usr/bin/env bash
# Host-device end-to-end scenarios (R26-R31): a guest under TCG with an
# emulated IOMMU - q35 with intel-iommu, or arm64 virt with an SMMUv3, as
# Grace has - where the guest kernel's real vfio-pci serves QEMU's emulated
# NVMe (DMA, MSI-X) and `nvgrace serve --host` passes it through to the
# project's own vfio-user client (tests/e2e/host_client.cpp).
#   run-host.sh OUT NVGRACE CLIENT API [SCENARIO [ARCH]]
#   API: group (type1) | cdev (iommufd): group on Debian's stock kernel
#        (6.12) and its modules, cdev on the kernel build-kernel.sh builds
#        (x86_64 6.12, aarch64 7.3)
#   ARCH: x86_64 (default) | aarch64 (main, nested and upgrade: NVGRACE and CLIENT
#        from the arm64 tree; the description in the device tree, no ACPI;
#        R40: the /dev/mem path is refused, then forced to show it is Device
#        memory; device-DAX serves a GB200 stand-in as Normal memory on 7.3
#        and is refused on 6.12, whose KVM maps it Device, then forced)
#   SCENARIO: main (default: the checks) | bench (prints the benchmark figures)
#             | nested (QEMU inside the guest as the client, under KVM:
#               x86 SVM with nested paging, arm64 virtualization=on; the
#               nested Linux runs the memory-type probe through its own
#               mappings of the fake BARs, so stage 2's type shows)
#             | upgrade (R41: the NVMe in a DMA loop across upgrades and
#               SIGKILLs of the server, plain, --keeper and --fdstore under a
#               stand-in systemd; NVG_ROUNDS of each, default 5)
# For experiments on the nested scenario: NVG_L1_APPEND adds to the outer
# guest's kernel command line, NVG_L2_APPEND (comma-separated) to the nested
# guest's, NVG_L2_CPU is the nested guest's -cpu (default x86
# host,-tsc-deadline, arm64 host),
# NVG_NESTED_TIMEOUT bounds the nested QEMU (seconds, default 300).
# Exit 0 pass, 1 fail, 77 skipped (no root, no kernel), with the reason.
set -uo pipefail
out=$(realpath -m "$1"); nvgrace=$(realpath "$2"); client=$(realpath "$3"); api=$4; scenario=${5:-main}
arch=${6:-x86_64}
here=$(dirname "$(realpath "$0")")
root=$out/root
. "$here/lib.sh"
need_root "$out"
check_label="host $api"
work=$root/nvg/host-$api-$scenario
if [ "$arch" = aarch64 ]; then
  case $scenario in main|nested|upgrade) ;; *) echo "run-host.sh: the $scenario scenario is x86_64's"; exit 2 ;; esac
  check_label="host aarch64 $api"
  work=$root/nvg/host-aarch64-$api-$scenario
fi
rm -rf "$work"; mkdir -p "$work"

busybox=$out/amd64/busybox/usr/bin/busybox
modules=()
case $arch-$api in
  aarch64-group)
    # Debian's arm64 cloud kernel 6.12, as a Grace host running Debian has
    # it (no nvgrace-gpu, no iommufd), with its VFIO and NVDIMM/device-DAX
    # modules (KVM, the SMMUv3 driver and irqbypass are built in).
    busybox=$out/arm64/busybox/usr/bin/busybox
    kernel=$root/vmlinuz-arm64
    kdir=$(ls -d "$out"/arm64/kernel/usr/lib/modules/*/kernel)
    for m in vfio/vfio vfio/vfio_iommu_type1 vfio/pci/vfio-pci-core vfio/pci/vfio-pci nvdimm/libnvdimm nvdimm/of_pmem \
             nvdimm/nd_btt nvdimm/nd_pmem dax/device_dax dax/dax_pmem; do
      modules+=(--module "$kdir/drivers/$m.ko.xz")
    done ;;
  aarch64-cdev)
    busybox=$out/arm64/busybox/usr/bin/busybox
    kernel=$out/kernel-arm64-7.3/Image
    [ -f "$kernel" ] || { echo "e2e: skipped: no arm64 7.3 kernel (see the e2e kernel test)"; exit 77; } ;;
  x86_64-group)
    kernel=$root/vmlinuz-amd64
    kdir=$(ls -d "$out"/amd64/kernel/usr/lib/modules/*/kernel)
    for m in virt/lib/irqbypass drivers/vfio/vfio drivers/vfio/vfio_iommu_type1 drivers/vfio/pci/vfio-pci-core \
             drivers/vfio/pci/vfio-pci arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do
      modules+=(--module "$kdir/$m.ko.xz")
    done ;;
  x86_64-cdev)
    # Built once per machine by build-kernel.sh (the e2e kernel test), which
    # links its cache entry here.
    kernel=$out/kernel-x86_64-6.12/bzImage
    [ -f "$kernel" ] || { echo "e2e: skipped: no iommufd kernel (see the e2e kernel test)"; exit 77; } ;;
  *) echo "run-host.sh: API must be group or cdev"; exit 2 ;;
esac
cp "$kernel" "$work/vmlinuz"
# The programs stripped: debug info would make the initramfs ten times larger.
strip=strip; [ "$arch" = aarch64 ] && strip=aarch64-linux-gnu-strip
"$strip" -o "$work/nvgrace" "$nvgrace" && "$strip" -o "$work/e2e_host_client" "$client" \
  || { echo "FAIL stripping $nvgrace and $client"; exit 1; }
nested=()
if [ "$scenario" = nested ]; then
  # QEMU and its libraries, chrooted in /qroot, and the nested guest's
  # kernel and initramfs, with nvgrace for the memory-type probe.
  nested_guest "$arch" "$busybox" "$here/nested-init.sh" "$work/nvgrace" || { echo "FAIL building the nested initramfs"; exit 1; }
fi
"$here/initramfs.sh" "$work/initrd.gz" "$arch" "$busybox" "$here/host-init.sh" \
  --bin "$work/nvgrace" --bin "$work/e2e_host_client" "${modules[@]}" "${nested[@]}" \
  || { echo "FAIL building the initramfs"; exit 1; }
truncate -s 64M "$work/nvme.img" "$work/nvme-msix.img"
in_root() { echo "${1#$root}"; }
# The devices, the same on both machines: edu at slot 2, the NVMe stand-in
# at slot 3, an NVMe whose MSI-X table has a BAR of its own at slot 4.
devices=(-device edu,addr=0x2
         -drive if=none,id=d0,file="$(in_root "$work/nvme.img")",format=raw
         -device nvme,serial=NVGSERIAL01,drive=d0,addr=0x3
         -drive if=none,id=d1,file="$(in_root "$work/nvme-msix.img")",format=raw
         -device nvme,serial=NVGSERIAL02,drive=d1,addr=0x4,msix-exclusive-bar=on)
append="panic=-1 loglevel=4 nvg.api=$api nvg.scenario=$scenario nvg.nested_timeout=${NVG_NESTED_TIMEOUT:-300}"
append+=" nvg.l2append=${NVG_L2_APPEND:-} ${NVG_L1_APPEND:-}"

start=$(date +%s.%N)
if [ "$arch" = aarch64 ]; then
  # virt with an SMMUv3 in front of its PCIe root complex, as Grace has. The
  # description goes into the device tree QEMU generates, dumped, amended
  # by `nvgrace firmware` for slots 3 and 4 (the same memory for both, as
  # host-ssdt.asl does) and given back; the memory is a no-map
  # /reserved-memory range, outside the kernel's linear map as on Grace.
  membase=0xa0000000
  # virtualization=on (EL2, so the guest has KVM) only where the nested
  # scenario needs it.
  machine=virt,gic-version=3,iommu=smmuv3
  [ "$scenario" = nested ] && machine+=,virtualization=on
  qemu=(qemu-system-aarch64 -M "$machine" -cpu max -m 4G -smp 1 -nic none -nographic -no-reboot
        "${devices[@]}")
  chroot "$root" "${qemu[@]}" -machine dumpdtb="$(in_root "$work/virt.dtb")" > "$work/dumpdtb.log" 2>&1 \
    || { echo "FAIL dumping virt's device tree: $(tail -2 "$work/dumpdtb.log")"; exit 1; }
  chroot "$root" dtc -q -I dtb -O dts -o "$(in_root "$work/virt.dts")" "$(in_root "$work/virt.dtb")"
  for slot in 3 4; do
    desc=(--profile gh200 --mem-base $membase --mem-size 0x60000000)
    # The upgrade scenario serves slot 3 as a GB200 whose memory is the
    # device-DAX instance below (as edu at slot 2 is).
    [ "$scenario" = upgrade ] && [ $slot = 3 ] && desc=(--profile gb200 --mem-base 0x100200000 --mem-size 0x20000000)
    "$nvgrace" firmware "${desc[@]}" --slot $slot --format dts \
      >> "$work/virt.dts" || { echo "FAIL nvgrace firmware"; exit 1; }
  done
  # The user-space routes to Normal memory that R40 weighs (docs/host.md):
  # RAM in the linear map the kernel keeps to itself (reserved, without
  # no-map) for /dev/mem, and a pmem region above mem=3G - outside memblock,
  # as Grace's GPU memory is - for device-DAX.
  cat >> "$work/virt.dts" <<'DTS'
/ {
	reserved-memory {
		nvgrace-linear@90000000 {
			reg = <0x0 0x90000000 0x0 0x1000000>;
		};
	};
	pmem@100000000 {
		compatible = "pmem-region";
		reg = <0x1 0x0 0x0 0x40000000>;
		volatile;
	};
};
/* serve --host --host-memory: edu at slot 2 stands in for a GPU without
   resmem (GB200) whose 512 MiB of memory is in that device-DAX instance,
   which starts 2 MiB into the region (its info block). */
&{/pcie@10000000} {
	gpu@2 {
		reg = <0x1000 0x0 0x0 0x0 0x0>;
		nvidia,gpu-mem-base-pa = /bits/ 64 <0x100200000>;
		nvidia,gpu-mem-size = /bits/ 64 <0x20000000>;
	};
};
DTS
  chroot "$root" dtc -q -I dts -O dtb -o "$(in_root "$work/grace.dtb")" "$(in_root "$work/virt.dts")" \
    || { echo "FAIL dtc on the amended tree"; exit 1; }
  timeout 600 chroot "$root" "${qemu[@]}" -dtb "$(in_root "$work/grace.dtb")" \
    -kernel "$(in_root "$work/vmlinuz")" -initrd "$(in_root "$work/initrd.gz")" \
    -append "console=ttyAMA0 $append mem=3G nvg.usemem=$membase nvg.resmem=$((membase + 0x20000000)) nvg.linear=0x90000000 nvg.l2cpu=${NVG_L2_CPU:-host}" \
    > "$work/console.log" 2>&1
  qrc=$?
else
  iasl -p "$work/ssdt" "$here/host-ssdt.asl" > "$work/iasl.log" 2>&1 || { echo "FAIL iasl: $(tail -2 "$work/iasl.log")"; exit 1; }
  # no_timer_check: under TCG the IO-APIC timer check through interrupt
  # remapping sometimes fails and panics the boot. memmap= keeps 1.5 GiB of
  # guest RAM from the kernel: the "device memory"
  # the SSDT's _DSD describes. -cpu qemu64,+svm,+npt gives the guest KVM.
  timeout 600 chroot "$root" qemu-system-x86_64 -M q35 -m 4G -smp 1 -cpu qemu64,+svm,+npt -nic none -nographic -no-reboot \
    -device intel-iommu,intremap=on "${devices[@]}" -acpitable file="$(in_root "$work/ssdt.aml")" \
    -kernel "$(in_root "$work/vmlinuz")" -initrd "$(in_root "$work/initrd.gz")" \
    -append "console=ttyS0 $append no_timer_check intel_iommu=on iommu=pt memmap=1536M\$0x20000000 nvg.usemem=0x20000000 nvg.resmem=0x40000000 nvg.rounds=${NVG_ROUNDS:-5} nvg.l2cpu=${NVG_L2_CPU:-host,-tsc-deadline}" \
    > "$work/console.log" 2>&1
  qrc=$?
fi
secs=$(echo "$(date +%s.%N) - $start" | bc)
tr '\r' '\n' < "$work/console.log" | grep -ao 'E2E .*' > "$work/report.log"
echo "  QEMU exit $qrc; boot and checks took ${secs} s"
e2e() { grep "^E2E $1" "$work/report.log"; }
has() { e2e "$1" | grep -q -- "$2"; echo $?; }
# R40, device-DAX: Debian's 6.12 (group) - KVM before 6.17 - is refused in
# one line; 7.3 (cdev) is served as asked.
dax_checks() {
  if [ "$api" = group ]; then
    check "R40: on Linux 6.12 serve --host refuses --host-memory, exit 2, one line: its KVM maps the memory Device at stage 2" \
      "$(has DAX_REFUSED "exit 2 lines 1: nvgrace: error: --host 0000:00:02.0: --host-memory: refusing device-DAX here: KVM in Linux 6.12.* (before 6.17) maps memory outside the kernel's linear map as Device memory at stage 2")" \
      "$(e2e DAX_REFUSED)"
  else
    check "R40: on Linux 7.3 serve --host takes --host-memory as asked" "$([ -z "$(e2e DAX_REFUSED)" ]; echo $?)" \
      "$(e2e DAX_REFUSED)"
  fi
}

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
  checks_done "$work/report.log"
  exit
fi
want_api=$([ "$api" = cdev ] && echo iommufd || echo type1)
if [ "$scenario" = upgrade ]; then
  rounds=${NVG_ROUNDS:-5}
  for m in plain keeper fdstore; do
    check "upgrade: the $m loop ran to the end with no error or wrong value, BAR4's bytes kept (R41)" \
      "$(e2e "LOOP_EXIT $m 0" > /dev/null && e2e "LOOP $m ok .*LOOP iterations=[0-9]* fresh_maps=[0-9]* bad=0 .*bar4_maps=[1-9]" > /dev/null; echo $?)" \
      "$(e2e "LOOP $m" | tr '\n' ' ') $(e2e "LOOP_EXIT $m")"
  done
  if [ "$arch" = aarch64 ]; then
    check "upgrade: the NVMe's fake BAR4 is the device-DAX instance (--host-memory, R40)" \
      "$(has UPGRADE_SERVING "fake BAR4 usemem 512 MiB over /dev/dax0.0 (0x100200000+0x3fe00000, write-back) at offset 0x0")" \
      "$(e2e UPGRADE_SERVING)"
  else
    check "upgrade: the NVMe's fake BARs are the reserved RAM through /dev/mem" \
      "$(has UPGRADE_SERVING "over /dev/mem")" "$(e2e UPGRADE_SERVING)"
  fi
  check "upgrade: the plain server was upgraded in place 3 times, none refused" \
    "$(has PLAIN "upgrades=3 refused=0")" "$(e2e PLAIN) $(e2e SERVER_LOG | tr '\n' ' ')"
  check "upgrade: under --keeper, $rounds upgrades and $rounds SIGKILLs of the serving process, none refused" \
    "$(has KEEPER "upgrades=$rounds kills=$rounds refused=0 alive=yes")" "$(e2e KEEPER) $(e2e SERVER_LOG | tr '\n' ' ')"
  check "upgrade: under --fdstore and a stand-in systemd, $rounds upgrades and $rounds SIGKILLs, none refused" \
    "$(has FDSTORE "upgrades=$rounds kills=$rounds refused=0 alive=yes")" "$(e2e FDSTORE) $(e2e SERVER_LOG | tr '\n' ' ')"
  check "upgrade: the stand-in systemd stopped the --fdstore server cleanly, every notification well formed" \
    "$(e2e "SYSTEMD_EXIT 0" > /dev/null && [ -z "$(e2e "SYSTEMD FAIL")" ]; echo $?)" "$(e2e SYSTEMD_EXIT) $(e2e "SYSTEMD FAIL")"
  check "upgrade: the guest kernel logged no IOMMU fault and no VFIO reset while the loops ran" "$([ -z "$(e2e KERNEL)" ]; echo $?)" \
    "$(e2e KERNEL | tr '\n' ' ')"
  for m in plain keeper fdstore; do
    echo "  $m: $(e2e "LOOP $m ok" | grep -o 'LOOP iterations.*')"
  done
  echo "  $(e2e PLAIN)"; echo "  $(e2e KEEPER)"; echo "  $(e2e FDSTORE)"
  checks_done "$work/report.log"
  exit
fi
if [ "$scenario" = nested ]; then
  if [ "$arch" = aarch64 ]; then
    check "d: the outer guest has /dev/kvm (EL2 under TCG: virtualization=on)" "$(has KVM yes)" "$(e2e KVM)"
  else
    check "d: the outer guest has /dev/kvm (SVM with nested paging under TCG)" "$(has KVM yes)" "$(e2e KVM)"
  fi
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
  # R40 in the nested guest: the probe maps resourceN_wc, which its kernel
  # maps Normal non-cacheable at stage 1, so what it meets is stage 2's
  # type - what the outer guest's KVM made of the mapping QEMU got from
  # serve --host.
  if [ "$arch" = aarch64 ]; then
    for b in 4 2; do
      check "d: R40: /dev/mem forced (--allow-device-memory): the nested guest's BAR$b (resource${b}_wc) is Device memory at stage 2: unaligned accesses fault" \
        "$(has "N MEMTYPE nvme-bar$b" "exit 1 .*unaligned LDR FAULTED.*behaves as Device memory")" "$(e2e "N MEMTYPE nvme-bar$b")"
    done
    dax_checks
    if [ "$api" = cdev ]; then
      check "d: R40: device-DAX (--host-memory), 7.3's KVM: the GB200 stand-in's BAR4 (resource4_wc) is Normal memory in the nested guest" \
        "$(has "N MEMTYPE dax-bar4" "exit 0 .*unaligned LDR ok; unaligned STR ok.*behaves as Normal memory")" \
        "$(e2e "N MEMTYPE dax-bar4") $(e2e DAX_SERVING)"
    else
      check "d: R40: device-DAX (--host-memory) forced, 6.12's KVM: the GB200 stand-in's BAR4 (resource4_wc) is Device memory at stage 2, as serve --host said" \
        "$(has "N MEMTYPE dax-bar4" "exit 1 .*unaligned LDR FAULTED.*behaves as Device memory")" \
        "$(e2e "N MEMTYPE dax-bar4") $(e2e DAX_SERVING)"
    fi
    check "d: the value written through the GB200 stand-in's BAR4 in the nested guest is in the device-DAX instance" \
      "$(has NESTED_DAX 0x0fedcba987654321)" "$(e2e NESTED_DAX) $(e2e "N DAX_BACK")"
  else
    for b in 4 2; do
      check "d: R40: the nested guest's BAR$b (resource${b}_wc) is Normal memory (x86 maps this RAM write-back)" \
        "$(has "N MEMTYPE nvme-bar$b" "exit 0 .*behaves as Normal memory")" "$(e2e "N MEMTYPE nvme-bar$b")"
    done
  fi
  e2e "N MEMTYPE" | sed 's/^E2E N MEMTYPE /  nested memory type: /'
  echo "  nested QEMU ran for $(e2e NESTED_SECONDS | awk '{print $3}') s; $(e2e SERVER_LOG)"
  checks_done "$work/report.log"
  exit
fi
check "the NVMe and edu are bound to vfio-pci" "$([ "$(e2e BOUND | grep -c vfio-pci)" = 3 ]; echo $?)" "$(e2e BOUND | tr '\n' ' ')"
if [ "$arch" = aarch64 ]; then
  check "inspect says what /dev/mem would give here: Device-nGnRnE for both (R40), and what to do instead" \
    "$(e2e INSPECT | grep -q "serve  memory: /dev/mem: usemem Device-nGnRnE, resmem Device-nGnRnE (R40)" &&
       e2e INSPECT | grep -q "serve  missing: the fake BARs need Normal memory"; echo $?)" "$(e2e INSPECT | head -6 | tr '\n' ' ')"
else
  check "inspect says serve --host can open it through VFIO $api" "$(has INSPECT "serve  ready: vfio-pci")" \
    "$(e2e INSPECT | head -3 | tr '\n' ' ')"
fi
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
# R40: what a client's mapping of the fake BARs behaves as (nvgrace probe
# --memory-type after the scenarios above).
if [ "$arch" = aarch64 ]; then
  check "R40: without --allow-device-memory, serve --host refuses /dev/mem, exit 2, one line: Device-nGnRnE" \
    "$(has R40 "exit 2 lines 1: nvgrace: error: --host 0000:00:03.0: device memory: refusing to back the fake BARs with /dev/mem: arm64 /dev/mem maps memory outside the kernel's linear map as Device-nGnRnE")" \
    "$(e2e R40)"
  check "R40: forced (--allow-device-memory), BAR2 and BAR4 are Device memory to the client: unaligned accesses fault" \
    "$(e2e "MEMTYPE exit 1" > /dev/null &&
       [ "$(e2e "MEMTYPE memory-type region [24]: .*unaligned LDR FAULTED.*behaves as Device memory" | wc -l)" = 2 ]
       echo $?)" "$(e2e MEMTYPE | tr '\n' ' ')"
  # The routes (probe --memory-type --map on each).
  check "R40 route: /dev/mem of the no-map range (the GPU memory) maps as Device memory: unaligned accesses fault" \
    "$(has "ROUTE devmem-nomap" "exit 1 .*unaligned LDR FAULTED.*behaves as Device memory")" "$(e2e "ROUTE devmem-nomap")"
  check "R40 route: /dev/mem of RAM in the linear map is refused (STRICT_DEVMEM, y in Debian's arm64 kernels)" \
    "$(has "ROUTE devmem-linear" "exit 1 .*failed: EPERM")" "$(e2e "ROUTE devmem-linear")"
  check "R40 route: device-DAX over a pmem range outside memblock maps as Normal memory (this mapping; stage 2 is scenario d's)" \
    "$(has "ROUTE dax " "exit 0 .*behaves as Normal memory")" "$(e2e "ROUTE dax")"
  dax_checks
  check "R40: serve --host --host-memory /dev/dax0.0 serves usemem from the instance, at its offset" \
    "$(has DAX_SERVING "fake BAR4 usemem 512 MiB over /dev/dax0.0 (0x100200000+0x3fe00000, write-back) at offset 0x0")" \
    "$(e2e DAX_SERVING)"
  check "R40: ...and the client's BAR4 behaves as Normal memory (the only region: no resmem)" \
    "$(has "DAX_MEMTYPE" "exit 0 memory-type region 4: .*behaves as Normal memory")" "$(e2e DAX_MEMTYPE)"
  # inspect's word on the same instance for the GB200 stand-in (its lines
  # wrapped at 80 columns: joined here).
  dax_inspect=$(e2e DAX_INSPECT | sed 's/^E2E DAX_INSPECT //' | tr '\n' ' ' | tr -s ' ')
  if [ "$api" = cdev ]; then
    check "R40: inspect: serve --host is ready for the GB200 stand-in with --host-memory /dev/dax0.0, usemem write-back on 7.3" \
      "$(echo "$dax_inspect" | grep -q "serve ready: vfio-pci, IOMMU group [0-9]*, VFIO cdev, with --host-memory /dev/dax0.0 .*serve memory: --host-memory /dev/dax0.0: usemem write-back (R40)"; echo $?)" \
      "$dax_inspect"
  else
    check "R40: inspect: --host-memory /dev/dax0.0 is refused on Linux 6.12, and why" \
      "$(echo "$dax_inspect" | grep -q "serve missing: the fake BARs need Normal memory .*serve memory: --host-memory /dev/dax0.0: refused: KVM in Linux 6.12[^ ]* (before 6.17) maps memory outside"; echo $?)" \
      "$dax_inspect"
  fi
  check "R40: --host-memory refuses a GPU with resmem: device-DAX maps write-back only" \
    "$(has DAX_REFUSE_RESMEM "exit 2 .*device-DAX maps write-back only, and resmem (BAR2, 1 GiB) must be Normal non-cacheable")" \
    "$(e2e DAX_REFUSE_RESMEM)"
  e2e ROUTE | sed 's/^E2E ROUTE /  route: /'
  # Why the served (kernel-variant) path is shown in the oracle guest and
  # not here: the 7.x driver's probe waits for R20's readiness registers,
  # which the NVMe stand-in does not have.
  if [ "$api" = cdev ]; then
    check "the kernel's nvgrace-gpu does not take the stand-in: its probe times out on R20's registers (ETIME)" \
      "$(has KERNEL_VARIANT_STANDIN "probe with driver nvgrace_gpu_vfio_pci failed with error -62")" \
      "$(e2e KERNEL_VARIANT_STANDIN)"
  else
    check "Debian's arm64 kernel has no nvgrace-gpu to try" \
      "$(has KERNEL_VARIANT_STANDIN "absent: Linux 6.12.* has no nvgrace_gpu_vfio_pci driver")" "$(e2e KERNEL_VARIANT_STANDIN)"
  fi

else
  check "R40: BAR2 and BAR4 behave as Normal memory to the client (x86 maps /dev/mem of this RAM write-back)" \
    "$(e2e "MEMTYPE exit 0" > /dev/null &&
       [ "$(e2e "MEMTYPE memory-type region [24]: .*behaves as Normal memory$" | wc -l)" = 2 ]; echo $?)" \
    "$(e2e MEMTYPE | tr '\n' ' ')"
fi
e2e MEMTYPE | grep -v "exit" | sed 's/^E2E MEMTYPE /  memory type: /'
checks_done "$work/report.log"

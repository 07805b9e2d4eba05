#!/usr/bin/env bash
# The libvirt fragment of `nvgrace inspect --target libvirt`, checked by
# libvirt itself (Debian trixie's 11.3, in the e2e root): wrapped in a minimal
# domain (name, memory, one vCPU, the guest's memory cell), each form must
# pass virt-xml-validate; the 11.8 form (<acpi nodeset>) must be refused by
# 11.3's schema at exactly that element; and libvirt's QEMU driver must turn
# the vfio-user forms into QEMU arguments carrying the plan (virsh
# domxml-to-native): pref64-reserve on both root ports, the 64-bit window,
# 16 memory-less NUMA nodes and 16 generic initiators on the GPUs' ids. And
# the emulated Grace host's domain of docs/emulated-host.md: validated and
# converted (memfd shared, intel-iommu caching mode, the GPU and its SSDT).
#   libvirt-check.sh OUT NVGRACE FIXTURE_DIR
set -uo pipefail
out=$(realpath -m "$1"); nvgrace=$(realpath "$2"); fixtures=$(realpath "$3")
root=$out/root
. "$(dirname "$(realpath "$0")")/lib.sh"
need_root "$out"
check_label=libvirt
chroot "$root" sh -c 'command -v virt-xml-validate && command -v virsh' > /dev/null \
  || skip "the root has no libvirt-clients (virt-xml-validate, virsh)"
echo "  libvirt in the root: $(chroot "$root" virsh --version)"
work=$root/tmp/nvgrace-libvirt
rm -rf "$work"; mkdir -p "$work"

# A host with one GH200 at 0009:01:00.0 whose ACPI node is in the fixture
# tables: the <hostdev> form.
sysfs=$out/libvirt-sysfs
rm -rf "$sysfs"; mkdir -p "$sysfs/bus/pci/devices/0009:01:00.0/firmware_node"
dev=$sysfs/bus/pci/devices/0009:01:00.0
echo 0x10de > "$dev/vendor"; echo 0x2342 > "$dev/device"
echo '\_SB_.PCI9.RP00.GPU0' > "$dev/firmware_node/path"
head -c 256 /dev/zero > "$dev/config"

wrap() {  # wrap JSON MACHINE > domain.xml
  local j=$1 machine=$2 arch=aarch64 os="<os firmware='efi'>"
  [ "$machine" = q35 ] && { arch=x86_64; os="<os>"; }
  cat <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>nvgrace-$machine</name>
  <memory unit='KiB'>524288</memory>
  <vcpu>1</vcpu>
  $os<type arch='$arch' machine='$machine'>hvm</type></os>
  <features>
$(jq -r '.guest.libvirt.features' <<<"$j")
  </features>
  <cpu>
    <numa>
      <cell id='0' cpus='0' memory='524288' unit='KiB'/>
$(jq -r '.guest.libvirt.numa_cells' <<<"$j")
    </numa>
  </cpu>
$(jq -r '.guest.libvirt.memory_backing' <<<"$j")
  <devices>
    <emulator>/usr/bin/qemu-system-$arch</emulator>
$(jq -r '.guest.libvirt.devices' <<<"$j")
  </devices>
$(jq -r '.guest.libvirt.qemu_commandline + .guest.libvirt.qemu_override' <<<"$j")
</domain>
XML
}

declare -A plans
for machine in virt q35; do
  plans[user-$machine]=$("$nvgrace" inspect --json --profile gh200 --count 2 --target libvirt \
    --libvirt-machine $machine --socket /run/nvgrace/gpu.sock)
  plans[hostdev-$machine]=$("$nvgrace" inspect --json --acpi "$fixtures/host-tables" --sysfs "$sysfs" \
    --device 0009:01:00.0 --target libvirt --libvirt-machine $machine)
done
for form in user-virt user-q35 hostdev-virt hostdev-q35; do
  wrap "${plans[$form]}" "${form#*-}" > "$work/$form.xml"
  v=$(chroot "$root" virt-xml-validate "/tmp/nvgrace-libvirt/$form.xml" 2>&1)
  check "virt-xml-validate (libvirt 11.3's schema) accepts the $form fragment in a minimal domain" "$?" "$v"
done
check "the hostdev form has the GPU as one <hostdev> at 0009:01:00.0" \
  "$([ "$(grep -c '<hostdev' "$work/hostdev-virt.xml")" = 1 ] &&
     grep -q "<address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/>" "$work/hostdev-virt.xml"; echo $?)" ""

# The form for libvirt 11.8+, which ties GI nodes natively: 11.3's schema
# does not know <acpi nodeset>, the reason 11.3 is the default.
new=$("$nvgrace" inspect --json --acpi "$fixtures/host-tables" --sysfs "$sysfs" --device 0009:01:00.0 \
  --target libvirt --libvirt-version 11.8)
wrap "$new" virt > "$work/native.xml"
grep -v "<acpi nodeset=" "$work/native.xml" > "$work/native-without.xml"
v=$(chroot "$root" virt-xml-validate /tmp/nvgrace-libvirt/native.xml 2>&1)
rc=$?
w=$(chroot "$root" virt-xml-validate /tmp/nvgrace-libvirt/native-without.xml 2>&1)
check "libvirt 11.3's schema refuses the 11.8 form, and accepts it without <acpi nodeset>" \
  "$([ $rc != 0 ] && grep -q "acpi nodeset='1-8'" "$work/native.xml" && grep -q validates <<<"$w"; echo $?)" \
  "rc $rc: $v / without: $w"
echo "$v" | sed 's/^/  11.3 on the 11.8 form: /' | head -2

# libvirt's QEMU driver turns the vfio-user forms into QEMU arguments.
mounted=""
if ! mountpoint -q "$root/proc"; then mount --bind /proc "$root/proc" && mounted=1; fi
for machine in virt q35; do
  argv=$(chroot "$root" virsh -q -c "qemu:///embed?root=/tmp/nvgrace-libvirt/embed-$machine" \
    domxml-to-native qemu-argv "/tmp/nvgrace-libvirt/user-$machine.xml" 2> "$work/virsh-$machine.err")
  rc=$?
  check "virsh domxml-to-native ($machine) converts the domain" "$rc" "$(tail -2 "$work/virsh-$machine.err")"
  [ $rc = 0 ] || continue
  tr ' ' '\n' <<<"$argv" > "$work/argv-$machine"
  reserve=$(jq -r '.guest.root_port_windows[0].size' <<<"${plans[user-$machine]}")
  n=$(grep -c "\"id\":\"ua-rp[01]\".*\"pref64-reserve\":$reserve" "$work/argv-$machine")
  check "$machine: both root ports get pref64-reserve=$reserve through <qemu:override>" "$([ "$n" = 2 ]; echo $?)" "$n"
  window=$(jq -r '.guest.window' <<<"${plans[user-$machine]}")
  if [ $machine = q35 ]; then
    want="q35-pcihost.pci-hole64-size=$((window / 1024))K"
  else
    want="highmem-mmio-size=$((window >> 30))G"
  fi
  check "$machine: the 64-bit window reaches QEMU as $want" "$(grep -qx "$want" "$work/argv-$machine"; echo $?)" ""
  n=$(grep -cE '^node,nodeid=([1-9]|1[0-6])$' "$work/argv-$machine")
  g=$(grep -cE '^acpi-generic-initiator,id=gi[0-9]+,pci-dev=ua-dev[01],node=([1-9]|1[0-6])$' "$work/argv-$machine")
  check "$machine: 16 memory-less NUMA nodes and 16 generic initiators on ua-dev0/ua-dev1" \
    "$([ "$n" = 16 ] && [ "$g" = 16 ]; echo $?)" "$n nodes, $g initiators"
  n=$(grep -c '"driver":"vfio-user-pci".*"id":"ua-dev[01]","bus":"ua-rp[01]"' "$work/argv-$machine")
  check "$machine: both GPUs are vfio-user-pci on their root ports" "$([ "$n" = 2 ]; echo $?)" "$n"
done

# The emulated Grace host (docs/emulated-host.md, "libvirt"): libvirt has no
# element for a vfio-user device, so the GPU behind its root port and the
# SSDT go through <qemu:commandline>; the guest memory is a shared memfd.
"$nvgrace" firmware --profile gh200 --mem-base 0x10000000 --mem-size 0x68000000 --slot 3 --root-port --format aml \
  -o "$work/grace-ssdt.aml" || check "nvgrace firmware writes the emulated host's SSDT" 1 ""
cat > "$work/emulated-host.xml" <<'XML'
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>nvgrace-emulated-host</name>
  <memory unit='GiB'>4</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/><ioapic driver='qemu'/></features>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <iommu model='intel'><driver intremap='on' caching_mode='on'/></iommu>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-device'/>
    <qemu:arg value='pcie-root-port,id=rp3,bus=pcie.0,addr=0x3,chassis=30'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/gpu.sock"},"bus":"rp3"}'/>
    <qemu:arg value='-acpitable'/>
    <qemu:arg value='file=/tmp/nvgrace-libvirt/grace-ssdt.aml'/>
  </qemu:commandline>
</domain>
XML
v=$(chroot "$root" virt-xml-validate /tmp/nvgrace-libvirt/emulated-host.xml 2>&1)
check "virt-xml-validate accepts the emulated host's domain (docs/emulated-host.md)" "$?" "$v"
argv=$(chroot "$root" virsh -q -c "qemu:///embed?root=/tmp/nvgrace-libvirt/embed-emulated" \
  domxml-to-native qemu-argv /tmp/nvgrace-libvirt/emulated-host.xml 2> "$work/virsh-emulated.err")
rc=$?
check "virsh domxml-to-native converts the emulated host's domain" "$rc" "$(tail -2 "$work/virsh-emulated.err")"
if [ $rc = 0 ]; then
  tr ' ' '\n' <<<"$argv" > "$work/argv-emulated"
  has_arg() { grep -q -- "$1" "$work/argv-emulated"; echo $?; }
  check "emulated host: the guest memory is a shared memfd (vfio-user-pci needs it)" \
    "$(has_arg '"qom-type":"memory-backend-memfd".*"share":true')" "$(grep memfd "$work/argv-emulated")"
  check "emulated host: intel-iommu in caching mode (vfio-user-pci's MAP notifiers)" \
    "$(has_arg 'intel-iommu.*"caching-mode":true')" "$(grep -i iommu "$work/argv-emulated")"
  check "emulated host: the vfio-user-pci GPU behind its root port, and the SSDT, reach QEMU" \
    "$(has_arg '"driver":"vfio-user-pci".*"bus":"rp3"' | grep -q 0 && has_arg '^file=/tmp/nvgrace-libvirt/grace-ssdt.aml$')" \
    "$(grep -E 'vfio-user|acpitable|ssdt' "$work/argv-emulated" | tr '\n' ' ')"
fi
[ -n "$mounted" ] && umount "$root/proc"
rm -rf "$work" "$sysfs"
echo "$fails failed"
[ "$fails" = 0 ]

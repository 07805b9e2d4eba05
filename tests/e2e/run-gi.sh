#!/usr/bin/env bash
# The guest plan proven by a guest that reads its ACPI tables (R25): two
# emulated GH200 from `nvgrace serve` over vfio-user, QEMU 11.1 (TCG) given
# the arguments of `nvgrace inspect --json --profile gh200 --count 2`
# verbatim, and a Linux guest that reports its NUMA nodes, the SRAT's
# generic-initiator entries and its PCI windows. The harness adds only the
# machine options, firmware, memory, kernel, console and the two -device
# vfio-user-pci lines with the ids and root ports the plan names.
#   run-gi.sh OUT NVGRACE SCENARIO
#   SCENARIO: aarch64 (virt, UEFI, the arm64 7.3 test kernel build-kernel.sh makes)
#             x86_64 (q35, SeaBIOS, Debian's cloud kernel)
#             aarch64-debian-kernel (Debian's arm64 kernel: at most 16 NUMA
#             nodes, so one GI node is dropped - the reason for the first)
# Exits 0 (pass), 1 (fail) or 77 (skipped: no root or kernel, with why).
set -uo pipefail
out=$(realpath -m "$1"); nvgrace=$(realpath "$2"); scenario=$3
root=$out/root
. "$(dirname "$(realpath "$0")")/lib.sh"
need_root "$out"
check_label=$scenario

count=2
case $scenario in
  aarch64) target=qemu-virt; kernel=/nvg/gi-Image-arm64
    [ -f "$out/kernel-arm64-7.3/Image" ] || skip "the arm64 test kernel was not built (see the e2e kernel test)"
    # QEMU runs chrooted in the root: the kernel goes there.
    mkdir -p "$root/nvg" && cp "$out/kernel-arm64-7.3/Image" "$root$kernel" ;;
  aarch64-debian-kernel) target=qemu-virt; kernel=/vmlinuz-arm64 ;;
  x86_64) target=qemu-q35; kernel=/vmlinuz-amd64 ;;
  *) echo "unknown scenario $scenario"; exit 2 ;;
esac
plan=$("$nvgrace" inspect --json --profile gh200 --count $count --target $target) || { echo "FAIL: inspect"; exit 1; }
mapfile -t plan_args < <(jq -r '.guest.args[]' <<<"$plan")
window=$(jq -r '.guest.window' <<<"$plan")
echo "  plan ($target): ${plan_args[*]}"

tag=gi-$scenario
sock=/run/nvgrace-$tag.sock
mem=$out/mem-$tag
rm -f "$root$sock".* "$mem".*
"$nvgrace" serve --socket "$root$sock" --profile gh200 --count $count --memory-file "$mem" -v > "$out/serve-$tag.log" 2>&1 &
server=$!
for _ in $(seq 50); do [ -S "$root$sock.$((count - 1))" ] && break; sleep 0.1; done
# A marker in each GPU's usemem says which GPU the guest is looking at:
# "NVGRACE0", "NVGRACE1" as big-endian ASCII.
marker=$((0x4E56475241434530))
for i in $(seq 0 $((count - 1))); do put_u64 "$mem.$i" 0x3000 $((marker + i)); done

devices=()
for i in $(seq 0 $((count - 1))); do
  id=$(jq -r ".guest.gpus[$i].id" <<<"$plan"); port=$(jq -r ".guest.gpus[$i].port" <<<"$plan")
  devices+=(-device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"$sock.$i\"},\"id\":\"$id\",\"bus\":\"$port\"}")
done
append="panic=-1 loglevel=4 nvg.mode=gi"
case $scenario in
  aarch64*)
    qemu=(qemu-system-aarch64 "${plan_args[@]}" -machine highmem=on -cpu max
          -bios /usr/share/qemu-efi-aarch64/QEMU_EFI.fd
          -kernel "$kernel" -initrd /initrd-arm64.gz -append "console=ttyAMA0 $append") ;;
  x86_64)
    qemu=(qemu-system-x86_64 "${plan_args[@]}"
          -kernel "$kernel" -initrd /initrd-amd64.gz -append "console=ttyS0 $append") ;;
esac
boot_guest "$tag" "${qemu[@]}" -m 512 -nographic -no-reboot \
  -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,nodeid=0,memdev=mem "${devices[@]}"
kill -TERM $server 2>/dev/null; wait $server
echo "  QEMU exit $qrc, boot and report took ${boot} s"
e2e() { grep "^E2E $1" "$out/report-$tag.log"; }
nodes_in() {  # expand a sysfs node list such as 0,2-4
  local part
  for part in ${1//,/ }; do
    case $part in *-*) seq "${part%-*}" "${part#*-}" ;; *) echo "$part" ;; esac
  done
}

check "the guest finished" "$(e2e DONE >/dev/null; echo $?)" "see $out/console-$tag.log"
check "nvgrace serve removed its sockets on SIGTERM" "$([ ! -e "$root$sock.0" ]; echo $?)" ""
ndev=$(e2e "DEVICE .* 0x10de:0x2342" | wc -l)
check "the guest sees $count x 10de:2342" "$([ "$ndev" = $count ]; echo $?)" "saw $ndev"

numa_nodes=$(jq -r '.guest.numa_nodes' <<<"$plan")
planned_gi=$(jq -r '[.guest.gpus[].gi_nodes[]] | map(tostring) | join(" ")' <<<"$plan")
gi=$(e2e "NODES has_generic_initiator" | cut -d' ' -f4)
seen_gi=$(nodes_in "$gi" | tr '\n' ' ' | sed 's/ $//')
n_gi=$(nodes_in "$gi" | grep -c .)
if [ "$scenario" = aarch64-debian-kernel ]; then
  # Debian's arm64 kernels: CONFIG_NODES_SHIFT=4, 16 node ids for 17 domains.
  check "Debian's arm64 kernel numbers only 16 NUMA nodes: 15 of the 16 GI nodes, one dropped" \
    "$([ "$n_gi" = 15 ] && e2e "DMESG .*Too many proximity domains" >/dev/null; echo $?)" "has_generic_initiator=$gi"
  rm -f "$mem".*
  checks_done "$out/report-$tag.log"; exit
fi
check "the guest has the plan's $numa_nodes NUMA nodes 0..$((numa_nodes - 1)) online" \
  "$([ "$(e2e 'NODES online' | cut -d' ' -f4)" = "0-$((numa_nodes - 1))" ]; echo $?)" "$(e2e 'NODES online')"
check "has_generic_initiator lists the plan's 16 GI nodes ($gi)" \
  "$([ "$seen_gi" = "$planned_gi" ]; echo $?)" "planned $planned_gi"
memless=0
for n in $planned_gi; do [ "$(e2e "NODEMEM $n " | cut -d' ' -f4)" = 0 ] && memless=$((memless + 1)); done
check "the 16 GI nodes are memory-less and only node 0 has memory" \
  "$([ "$memless" = 16 ] && [ "$(e2e 'NODES has_memory' | cut -d' ' -f4)" = 0 ]; echo $?)" \
  "$memless memory-less, $(e2e 'NODES has_memory')"
check "no proximity domain was dropped" "$(! e2e 'DMESG .*Too many proximity domains' >/dev/null; echo $?)" ""
n_srat=$(e2e "SRATGI " | grep -c "handle=1 .* flags=1$")
check "the SRAT has 16 enabled PCI generic-initiator entries" "$([ "$n_srat" = 16 ]; echo $?)" "found $n_srat"

# The 64-bit MMIO aperture of the host bridge: the top-level iomem entry.
iomem() { e2e IOMEM | sed 's/^E2E IOMEM //'; }
range_of() { sed -n "s/^ *\([0-9a-f]*\)-\([0-9a-f]*\) : $1\$/\1 \2/p" | head -1; }
read -r ap_lo ap_hi < <(iomem | grep -v '^ ' | range_of "PCI Bus 0000:00")
ap_size=$(( 0x${ap_hi:-0} - 0x${ap_lo:-1} + 1 ))
echo "  64-bit window: 0x$ap_lo-0x$ap_hi ($((ap_size >> 30)) GiB; planned $((window >> 30)) GiB)"
if [ "$target" = qemu-virt ]; then
  check "the 64-bit MMIO window is highmem-mmio-size=$((window >> 30))G" "$([ "$ap_size" = "$window" ]; echo $?)" \
    "0x$ap_lo-0x$ap_hi"
else
  check "the 64-bit MMIO window holds pci-hole64-size=$((window >> 30))G" "$([ "$ap_size" -ge "$window" ]; echo $?)" \
    "0x$ap_lo-0x$ap_hi"
fi

for i in $(seq 0 $((count - 1))); do
  want=$(printf '0x%016x' $((marker + i)))
  bdf=$(e2e "MARK " | awk -v m="$want" 'tolower($4) == m { print $3 }')
  id=$(jq -r ".guest.gpus[$i].id" <<<"$plan")
  check "gpu$i (marker $want) is found in the guest" "$([ -n "$bdf" ]; echo $?)" "$(e2e MARK | tr '\n' ' ')"
  [ -n "$bdf" ] || continue
  planned=$(jq -r ".guest.gpus[$i].gi_nodes | map(tostring) | join(\" \")" <<<"$plan")
  got=$(e2e "SRATGI " | awk -v b="$bdf" '$5 == b { sub("pxm=", "", $3); print $3 }' | sort -n | tr '\n' ' ' | sed 's/ $//')
  echo "  gpu$i = $id at $bdf: SRAT proximity domains $got"
  check "gpu$i ($id, $bdf) has the plan's GI nodes $planned in the SRAT" "$([ "$got" = "$planned" ]; echo $?)" "got $got"
  # Its root port's window, inside the aperture, at least pref64-reserve,
  # and every BAR of the GPU inside it.
  bus=$(cut -d: -f2 <<<"$bdf")
  read -r w_lo w_hi < <(iomem | range_of "PCI Bus 0000:$bus")
  w_size=$(( 0x${w_hi:-0} - 0x${w_lo:-1} + 1 ))
  reserve=$(jq -r ".guest.root_port_windows[$i].size" <<<"$plan")
  check "gpu$i's root port window 0x$w_lo-0x$w_hi holds pref64-reserve ($((reserve >> 20)) MiB) inside the 64-bit window" \
    "$([ "$w_size" -ge "$reserve" ] && [ $((0x$w_lo)) -ge $((0x$ap_lo)) ] && [ $((0x$w_hi)) -le $((0x$ap_hi)) ]; echo $?)" \
    "window $w_size bytes"
  inside=0; bars=""
  while read -r _ _ _ idx start size _; do
    s=$((${start#start=})); z=${size#size=}
    bars+="BAR$idx $(printf '%#x' $s) "
    [ "$s" -ge $((0x$w_lo)) ] && [ $((s + z - 1)) -le $((0x$w_hi)) ] && inside=$((inside + 1))
  done < <(e2e "BAR $bdf ")
  echo "  gpu$i BARs: $bars"
  check "gpu$i's three BARs lie in its root port's window" "$([ "$inside" = 3 ]; echo $?)" "$bars"
done
rm -f "$mem".*
checks_done "$out/report-$tag.log"

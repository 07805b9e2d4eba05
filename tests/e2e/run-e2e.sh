#!/usr/bin/env bash
# One end-to-end scenario: `nvgrace serve` + QEMU (vfio-user-pci, TCG) + a
# Linux guest from the cached trixie root. Prints what the guest saw and
# every check; exits 0 (pass), 1 (fail) or 77 (skipped: no root, with why).
#   run-e2e.sh OUT NVGRACE ARCH SCENARIO
#   ARCH: x86_64 (q35) | aarch64 (virt,highmem=on)
#   SCENARIO: check (one gh200), odd (gh200 with 0x17E4F00000 bytes: tails in
#             BAR4 and BAR2), window-default / window-planned (four gh200)
set -uo pipefail
out=$(realpath -m "$1"); nvgrace=$(realpath "$2"); arch=$3; scenario=$4
root=$out/root
. "$(dirname "$(realpath "$0")")/lib.sh"
need_root "$out"
check_label="$arch $scenario"
lc() { tr 'A-F' 'a-f'; }

profile=gh200; count=1; memsize=""
case $scenario in
  check) ;;
  odd) memsize=0x17E4F00000 ;;
  window-default|window-planned) count=4 ;;
  *) echo "unknown scenario $scenario"; exit 2 ;;
esac
if [ -n "$memsize" ]; then
  inspect=$("$nvgrace" inspect --json --device-id 0x2342 --mem-base 0x400000000000 --mem-size $memsize)
else
  inspect=$("$nvgrace" inspect --json --profile $profile --count $count)
fi
use=$(jq '.devices[0].bars[] | select(.role=="usemem") | .length' <<<"$inspect")
use_bar=$(jq '.devices[0].bars[] | select(.role=="usemem") | .size' <<<"$inspect")
res=$(jq '.devices[0].bars[] | select(.role=="resmem") | .length' <<<"$inspect")
res_bar=$(jq '.devices[0].bars[] | select(.role=="resmem") | .size' <<<"$inspect")
window=$(jq -r '.guest.highmem_mmio_size' <<<"$inspect")
window_g=$((window >> 30))G

tag=$arch-$scenario
sock=/run/nvgrace-$tag.sock
memfile=$out/mem-$tag
rm -f "$memfile" "$root$sock"*
args=(serve --socket "$root$sock" --profile $profile --count $count -v)
[ "$count" = 1 ] && args+=(--memory-file "$memfile")
[ -n "$memsize" ] && args+=(--mem-size "$memsize")
"$nvgrace" "${args[@]}" > "$out/serve-$tag.log" 2>&1 &
server=$!
for _ in $(seq 50); do [ -S "$root$sock" ] || [ -S "$root$sock.0" ] && break; sleep 0.1; done

# Values the host plants for the guest to read (the reverse direction).
if [ "$count" = 1 ]; then
  put_u64 "$memfile" 0x3000 0x1111222233334444
  put_u64 "$memfile" $((use + 0x3000)) 0x5555666677778888
fi

devices=()
for i in $(seq 0 $((count - 1))); do
  s=$sock; [ "$count" -gt 1 ] && s=$sock.$i
  devices+=(-device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"$s\"}}")
done
restail=0
[ -n "$res" ] && [ "$res" -lt "$res_bar" ] && restail=1
append="panic=-1 loglevel=4 nvg.mode=$([ "$count" = 1 ] && echo check || echo window) nvg.use=$use nvg.res=${res:-0} nvg.restail=$restail"
case $arch in
  x86_64)
    qemu=(qemu-system-x86_64 -M q35 -global q35-pcihost.pci-hole64-size=$window_g
          -kernel /vmlinuz-amd64 -initrd /initrd-amd64.gz -append "console=ttyS0 $append") ;;
  aarch64)
    machine=virt,highmem=on
    [ "$scenario" = window-planned ] && machine+=",highmem-mmio-size=$window_g"
    qemu=(qemu-system-aarch64 -M "$machine" -cpu max
          -kernel /vmlinuz-arm64 -initrd /initrd-arm64.gz -append "console=ttyAMA0 $append") ;;
esac
boot_guest "$tag" "${qemu[@]}" -m 512 -nographic -no-reboot \
  -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem "${devices[@]}"
kill -TERM $server 2>/dev/null; wait $server
echo "  QEMU exit $qrc, boot and checks took ${boot} s"
e2e() { grep "^E2E $1" "$out/report-$tag.log"; }

check "the guest finished" "$(e2e DONE >/dev/null; echo $?)" "see $out/console-$tag.log"
check "nvgrace serve removed its socket(s) on SIGTERM" "$([ ! -e "$root$sock" ] && [ ! -e "$root$sock.0" ]; echo $?)" ""
ndev=$(e2e "DEVICE .* 0x10de:0x2342" | wc -l)
check "the guest sees $count x 10de:2342" "$([ "$ndev" = "$count" ]; echo $?)" "saw $ndev"
bar() { e2e "BAR [^ ]* $1 " | head -1; }
mem64pref() { local f=$(sed 's/.*flags=//' <<<"$1"); [ $(( f & 0x102000 )) = $((0x102000)) ]; }
if [ "$count" = 1 ]; then
  b4=$(bar 4); b2=$(bar 2)
  check "BAR4 is 64-bit prefetchable, $((use_bar >> 30)) GiB" "$(grep -q "size=$use_bar " <<<"$b4" && mem64pref "$b4"; echo $?)" "$b4"
  check "BAR2 is 64-bit prefetchable, $((res_bar >> 20)) MiB" "$(grep -q "size=$res_bar " <<<"$b2" && mem64pref "$b2"; echo $?)" "$b2"
  check "a value the host planted in usemem is read by the guest through BAR4" \
    "$(e2e HOST4 | lc | grep -q 0x1111222233334444; echo $?)" "$(e2e HOST4)"
  check "a value the guest wrote through BAR4 is in the backing file at usemem +0x2000" \
    "$([ "$(get_u64 "$memfile" 0x2000)" = 4e56475245553404 ]; echo $?)" "file has $(get_u64 "$memfile" 0x2000)"
  check "BAR4 past usemem's length reads all-ones" "$(e2e TAIL4 | lc | grep -q 0xffffffffffffffff; echo $?)" "$(e2e TAIL4)"
  check "a value the host planted in resmem is read by the guest through BAR2" \
    "$(e2e HOST2 | lc | grep -q 0x5555666677778888; echo $?)" "$(e2e HOST2)"
  check "a value the guest wrote through BAR2 is in the backing file at resmem +0x2000" \
    "$([ "$(get_u64 "$memfile" $((use + 0x2000)))" = 4e56475245553202 ]; echo $?)" "file has $(get_u64 "$memfile" $((use + 0x2000)))"
  if [ "$res" -lt "$res_bar" ]; then
    check "BAR2 past resmem's length reads all-ones" "$(e2e TAIL2 | lc | grep -q 0xffffffffffffffff; echo $?)" "$(e2e TAIL2)"
  fi
else
  placed=$(e2e "BAR .* 4 start=" | grep -vc "start=0x0000000000000000")
  unplaced=$(e2e DMESG | wc -l)
  echo "  $placed of $count BAR4 placed; the 64-bit window is $([ "$scenario" = window-planned ] && echo "$window_g (nvgrace inspect's plan)" || echo "QEMU's default 512G"); $unplaced assignment failures in dmesg"
  if [ "$scenario" = window-default ]; then
    check "four GH200 do not fit QEMU's default 512 GiB window" "$([ "$placed" -lt "$count" ] || [ "$unplaced" -gt 0 ]; echo $?)" "all placed"
  else
    all=$(e2e "BAR " | grep -vc "start=0x0000000000000000")
    check "with highmem-mmio-size=$window_g every BAR of the four GPUs is placed" \
      "$([ "$placed" = "$count" ] && [ "$unplaced" = 0 ] && [ "$all" = $((3 * count)) ]; echo $?)" "$placed BAR4, $all BARs, $unplaced failures"
  fi
fi
rm -f "$memfile"
checks_done "$out/report-$tag.log"

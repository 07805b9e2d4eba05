#!/usr/bin/env bash
# Runs an arm64 tree's tests again as a kernel with PAGESIZE-byte pages (64
# KiB: Grace hosts) would show them to the program: AT_PAGESZ,
# sysconf(_SC_PAGESIZE), getpagesize() and the granularity of mmap, munmap and
# mprotect. QEMU user mode can present a page size other than the host's only
# up to 8.x (-p, QEMU_PAGESIZE): 9.0 deprecated the option and the 10.0 that
# runs the arm64 suite here ignores it ("cannot change host page size"). So
# this takes bookworm's qemu-user-static 7.2, with `apt-get download` (never
# installed: it would replace qemu-user 10), keeps only its qemu-aarch64-static
# in ${NVGRACE_CACHE:-/var/cache/nvgrace}/qemu-user-<version>/ under a lock,
# and runs every test case CTest knows in BUILD_DIR whose name matches REGEX
# in its own `qemu-aarch64-static -p PAGESIZE`, as CTest would run it (one
# 7.2 process running all of vfio_tests, which maps 96 GiB BARs again and
# again, grew past 22 GB here: 7.2's bookkeeping of guest mappings).
#   arm64_pagesize_test.sh BUILD_DIR PAGESIZE [REGEX]
# Exit 0: all passed; 1: a test failed; 77 (skipped, with why): no QEMU 7.2.
set -uo pipefail
build=$(realpath "$1"); pagesize=$2; regex=${3:-.}
cache=${NVGRACE_CACHE:-/var/cache/nvgrace}
skip() { echo "arm64 pagesize: skipped: $*"; exit 77; }

# Test cases QEMU 7.2 cannot run for reasons of its own, with the reason.
declare -A unrunnable=(
  ["vfio_tests:memfd backend: one sparse memfd with usemem then resmem in a 1 GiB-aligned mapping (R24)"]="it checks VmRSS, which under QEMU 7.2 counts ~580 MiB of the emulator's own bookkeeping for the 97 GiB reservation, with 4 KiB pages as with 64 KiB; QEMU 10 in the regular arm64 run passes it"
)

# QEMU 7.2: the newest qemu-user-static below 9.0 that apt offers (bookworm's).
version=$(apt-cache madison qemu-user-static 2>/dev/null | awk -F' *[|] *' '{print $2}' \
          | while read -r v; do dpkg --compare-versions "$v" lt 1:9 && echo "$v"; done | sort -V -r | head -1)
[ -n "$version" ] || skip "apt offers no qemu-user-static older than 9.0 (bookworm's 7.2)"
dir=$cache/qemu-user-${version//[:+~]/_}
qemu=$dir/qemu-aarch64-static
mkdir -p "$cache"
exec 9> "$dir.lock"
flock 9
if [ ! -x "$qemu" ]; then
  tmp=$(mktemp -d); chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq "qemu-user-static=$version") > "$tmp/apt.log" 2>&1 \
    || { rm -rf "$tmp"; skip "apt-get download qemu-user-static=$version failed"; }
  mkdir -p "$dir"
  dpkg-deb --fsys-tarfile "$tmp"/qemu-user-static_*.deb | tar -xO ./usr/bin/qemu-aarch64-static > "$qemu.part" \
    && chmod +x "$qemu.part" && mv "$qemu.part" "$qemu"
  rm -rf "$tmp"
  [ -x "$qemu" ] || skip "no qemu-aarch64-static in qemu-user-static $version"
fi
flock -u 9
echo "arm64 pagesize: $("$qemu" --version | head -1), -p $pagesize"

# The tests, as CTest would run them: command and working directory.
list=$(mktemp); results=$(mktemp -d); trap 'rm -rf "$list" "$results"' EXIT
ctest --test-dir "$build" -N -R "$regex" --show-only=json-v1 2>/dev/null | jq -c '
  .tests[] | {name, wd: ((.properties // []) | map(select(.name == "WORKING_DIRECTORY") | .value) | first // ""),
              command}' > "$list"
[ -s "$list" ] || { echo "arm64 pagesize: no test matches '$regex' in $build"; exit 1; }
is_arm64() { [ -f "$1" ] && readelf -h "$1" 2>/dev/null | grep -q 'Machine:.*AArch64'; }
run_one() {  # run_one INDEX TEST-JSON
  local i=$1 name wd cmd=() r
  name=$(jq -r .name <<<"$2"); wd=$(jq -r .wd <<<"$2")
  mapfile -t cmd < <(jq -r '.command[]' <<<"$2")
  # A tree configured with CMAKE_CROSSCOMPILING_EMULATOR puts QEMU first.
  is_arm64 "${cmd[0]}" || { is_arm64 "${cmd[1]:-}" && cmd=("${cmd[@]:1}"); }
  if ! is_arm64 "${cmd[0]}"; then echo "skip $name (not an arm64 program)" > "$results/$i"; return; fi
  (cd "${wd:-$build}" && timeout 300 "$qemu" -p "$pagesize" "${cmd[@]}") > "$results/$i.log" 2>&1
  r=$?
  if [ $r = 0 ]; then echo "ok   $name" > "$results/$i"; else echo "FAIL $name (exit $r)" > "$results/$i"; fi
}
export -f run_one is_arm64; export qemu pagesize build results
start=$(date +%s)
i=0
while IFS= read -r t; do
  i=$((i + 1))
  name=$(jq -r .name <<<"$t")
  if [ -n "${unrunnable[$name]:-}" ]; then echo "skip $name: ${unrunnable[$name]}" > "$results/$i"; continue; fi
  printf '%s\0%s\0' "$i" "$t"
done < "$list" | xargs -0 -n2 -P "$(nproc)" bash -c 'run_one "$@"' _
fails=0
for n in $(seq 1 "$(wc -l < "$list")"); do
  cat "$results/$n"
  if grep -q '^FAIL' "$results/$n"; then fails=$((fails + 1)); sed 's/^/  | /' "$results/$n.log" | tail -30; fi
done
echo "arm64 pagesize: $(grep -l '^ok' "$results"/[0-9]* 2>/dev/null | wc -l) passed, $fails failed," \
     "$(grep -l '^skip' "$results"/[0-9]* 2>/dev/null | wc -l) skipped, with $pagesize-byte pages in $(( $(date +%s) - start )) s"
[ "$fails" = 0 ]

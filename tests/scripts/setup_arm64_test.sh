#!/usr/bin/env bash
# scripts/setup-arm64 (the arm64 part of scripts/setup) on a clean Debian 12
# whose image holds an amd64 library at a version the archive does not have -
# what a machine image built some time ago looks like. The library is zlib1g
# (Multi-Arch: same; libpci-dev:arm64 pulls zlib1g:arm64 in), rebuilt as a
# local .deb with its version changed, installed with dpkg:
#   behind  VERSION~nvgtest1: older than anything in the archive
#   ahead   VERSION+nvgtest1: newer than anything in the archive
#   held    behind, and held with apt-mark: set-up must stop before apt
#           changes anything, with one line naming the package and the hold
# For behind and ahead, set-up must succeed, leave zlib1g:amd64 and
# zlib1g:arm64 at one version the archive has, say in one line that it moved
# zlib1g:amd64 and why, and leave nothing half-installed or held.
# Each case runs in an overlay on the cached clean root
# (tests/scripts/bookworm-root.sh); downloaded packages are kept in
# ${NVGRACE_CACHE:-/var/cache/nvgrace}/apt-archives-bookworm between runs.
#   setup_arm64_test.sh SOURCE_DIR [CASE...]     (default: all three)
# Exit 0 all passed, 1 a case failed, 77 (skipped, with why) where it cannot run.
set -uo pipefail
src=$(realpath "$1"); shift
cases=("$@"); ((${#cases[@]})) || cases=(behind ahead held)
here=$(dirname "$(realpath "$0")")
skip() { echo "setup-arm64 test: skipped: $*"; exit 77; }
base=$("$here/bookworm-root.sh") || { echo "$base"; exit 77; }
cache=${NVGRACE_CACHE:-/var/cache/nvgrace}
archives=$cache/apt-archives-bookworm
mkdir -p "$archives/partial"

current=""  # the case's work directory while its mounts exist
cleanup() {
  [ -n "$current" ] || return 0
  umount "$current/root/var/cache/apt/archives" "$current/root/dev" "$current/root/proc" "$current/root" 2>/dev/null
  rm -rf "$current"
  current=""
}
trap cleanup EXIT

fails=0
check() {  # check NAME RESULT(0 = ok) DETAIL
  if [ "$2" = 0 ]; then echo "ok   $case: $1"; else echo "FAIL $case: $1 ($3)"; fails=$((fails + 1)); fi
}

run_case() {
  case=$1
  local work root
  work=$(mktemp -d /tmp/nvgrace-setup-arm64-XXXXXX)
  root=$work/root
  mkdir -p "$work/upper" "$work/work" "$root"
  mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/upper,workdir=$work/work" "$root" \
    || { rm -rf "$work"; skip "cannot mount an overlay on $base"; }
  current=$work
  mount --bind /proc "$root/proc" && mount --bind /dev "$root/dev" && mount --bind "$archives" "$root/var/cache/apt/archives" \
    || skip "cannot bind /proc, /dev or the package cache into the root"
  in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root "$@"; }

  # The local rebuild: the archive's zlib1g with another version, as a
  # machine image may carry after the archive moved on.
  in_root apt-get update -qq > "$work/update.log" 2>&1 || { echo "FAIL $case: apt-get update: $(tail -1 "$work/update.log")"; fails=$((fails + 1)); }
  local v new
  v=$(in_root dpkg-query -W -f='${Version}' zlib1g:amd64)
  case $case in ahead) new="$v+nvgtest1" ;; *) new="$v~nvgtest1" ;; esac
  mkdir -p "$root/tmp/deb"
  in_root sh -c "cd /tmp/deb && apt-get download -qq zlib1g=$v" > "$work/download.log" 2>&1
  dpkg-deb -R "$root"/tmp/deb/zlib1g_*.deb "$work/pkg"
  sed -i "s/^Version: .*/Version: $new/" "$work/pkg/DEBIAN/control"
  dpkg-deb -b "$work/pkg" "$root/tmp/deb/zlib1g-local.deb" > /dev/null
  in_root dpkg -i /tmp/deb/zlib1g-local.deb > "$work/dpkg.log" 2>&1
  check "zlib1g:amd64 $new installed from a local rebuild (the archive has $v)" \
    "$([ "$(in_root dpkg-query -W -f='${Version}' zlib1g:amd64)" = "$new" ]; echo $?)" "$(tail -1 "$work/dpkg.log")"
  [ "$case" = held ] && in_root apt-mark hold zlib1g > /dev/null

  mkdir -p "$root/src"
  cp -a "$src/scripts" "$root/src/"
  local start rc secs
  start=$(date +%s)
  in_root sh -c 'cd /src && scripts/setup-arm64' > "$work/setup.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  local a b
  a=$(in_root dpkg-query -W -f='${db:Status-Abbrev}${Version}' zlib1g:amd64 2>/dev/null)
  b=$(in_root dpkg-query -W -f='${db:Status-Abbrev}${Version}' zlib1g:arm64 2>/dev/null)
  if [ "$case" = held ]; then
    check "set-up refuses, exit 1 ($secs s)" "$([ "$rc" = 1 ]; echo $?)" "exit $rc: $(tail -2 "$work/setup.log" | tr '\n' ' ')"
    check "one line names zlib1g, the hold and the way out" \
      "$(grep -c '^nvgrace: zlib1g:amd64 .* is held (apt-mark showhold)' "$work/setup.log" | grep -qx 1; echo $?)" \
      "$(cat "$work/setup.log" | tr '\n' ' ')"
    check "apt changed nothing: zlib1g:amd64 still $new, no zlib1g:arm64, no libpci-dev:arm64" \
      "$([ "$a" = "hi $new" ] && [ -z "$b" ] && ! in_root dpkg-query -W libpci-dev:arm64 > /dev/null 2>&1; echo $?)" \
      "amd64 '$a' arm64 '$b'"
  else
    check "scripts/setup-arm64 succeeds ($secs s)" "$rc" "exit $rc: $(tail -3 "$work/setup.log" | tr '\n' ' ')"
    local archive
    archive=$(in_root apt-cache madison zlib1g | awk -F' *[|] *' '{print $2}' | sort -u | tr '\n' ' ')
    check "zlib1g:amd64 and zlib1g:arm64 are one version the archive has (${a#ii })" \
      "$([ -n "$a" ] && [ "$a" = "$b" ] && [[ $a == ii* ]] && grep -qw -- "${a#ii }" <<<"$archive"; echo $?)" \
      "amd64 '$a' arm64 '$b', archive: $archive"
    check "one line says zlib1g:amd64 moved from $new and why" \
      "$(grep -c "^nvgrace: amd64 packages moved .* have no arm64 build in the archive.*zlib1g $new -> " "$work/setup.log" | grep -qx 1; echo $?)" \
      "$(grep '^nvgrace:' "$work/setup.log" | tr '\n' ' ')"
    sed -n 's/^\(nvgrace: .*\)/  | \1/p' "$work/setup.log"
    check "the arm64 dev packages and the cross compiler are installed" \
      "$(in_root dpkg-query -W libpci-dev:arm64 libspdlog-dev:arm64 crossbuild-essential-arm64 > /dev/null 2>&1; echo $?)" \
      "$(in_root dpkg-query -W libpci-dev:arm64 libspdlog-dev:arm64 crossbuild-essential-arm64 2>&1 | tr '\n' ' ')"
    check "nothing half-installed (dpkg --audit) and nothing held" \
      "$([ -z "$(in_root dpkg --audit 2>&1)" ] && [ -z "$(in_root apt-mark showhold)" ]; echo $?)" \
      "$(in_root dpkg --audit 2>&1 | head -2) $(in_root apt-mark showhold)"
  fi
  cleanup
}

for c in "${cases[@]}"; do run_case "$c"; done
echo "$fails failed"
[ "$fails" = 0 ]

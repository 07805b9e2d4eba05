#!/usr/bin/env bash
# The Debian package on a clean Debian 12: apt installs it with the
# dependencies dpkg-shlibdeps gave it (and procps, for the unit's ExecReload=), then `nvgrace --version`, `inspect`,
# `serve` (socket made and removed), the man page, bash completion and
# `systemd-analyze verify` of nvgrace-serve@.service run there, and the
# package is purged without leftovers. The clean system is the cached bookworm
# minbase with systemd (for systemd-analyze) of tests/scripts/bookworm-root.sh,
# used through an overlay so every run starts clean.
#   package_test.sh SOURCE_DIR       (the .deb is SOURCE_DIR/build-pkg/nvgrace_*.deb)
# Exit 77 (CTest: skipped), with the reason, where this cannot run.
set -uo pipefail
src=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
skip() { echo "package: skipped: $*"; exit 77; }
deb=$(ls "$src"/build-pkg/nvgrace_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || skip "no package in build-pkg/: run scripts/package (scripts/setup and scripts/test do)"
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot, overlay mount)"
base=$("$src/tests/scripts/bookworm-root.sh") || { echo "$base"; exit 77; }

work=$(mktemp -d /tmp/nvgrace-pkg-XXXXXX)
root=$work/root
mkdir -p "$work/upper" "$work/work" "$root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/upper,workdir=$work/work" "$root" \
  || { rm -rf "$work"; skip "cannot mount an overlay on $base"; }
mount --bind /proc "$root/proc"
cleanup() { umount "$root/proc" 2>/dev/null; umount "$root" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

fails=0
check() {  # check NAME CONDITION-RESULT(0/1) DETAIL
  if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1 ($3)"; fails=$((fails + 1)); fi
}
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

cp "$deb" "$root/tmp/"
name=$(basename "$deb")
echo "package: $name ($(dpkg-deb -f "$deb" Version)), Depends: $(dpkg-deb -f "$deb" Depends)"
in_root apt-get update -qq > "$work/apt.log" 2>&1
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y --no-install-recommends "/tmp/$name" >> "$work/apt.log" 2>&1
rc=$?
check "apt installs $name and its dependencies on Debian 12" "$rc" "$(tail -3 "$work/apt.log")"
[ "$rc" = 0 ] || { echo "$fails failed"; exit 1; }
sed -n 's/^Setting up \(.*\) \.\.\.$/  set up: \1/p' "$work/apt.log"

version=$(in_root nvgrace --version)
check "nvgrace --version prints the package's version ($version)" \
  "$([ "$version" = "nvgrace $(dpkg-deb -f "$deb" Version)" ]; echo $?)" "$version"
plan=$(in_root nvgrace inspect --profile gh200 --count 2 --target qemu-q35)
check "nvgrace inspect plans two GH200 for q35" \
  "$(grep -q 'q35-pcihost.pci-hole64-size=512G' <<<"$plan" && grep -q 'pci-dev=dev1,node=16' <<<"$plan"; echo $?)" \
  "$(tail -3 <<<"$plan")"
in_root sh -c 'nvgrace serve --socket /tmp/gpu.sock & pid=$!; i=0
  while [ ! -S /tmp/gpu.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  [ -S /tmp/gpu.sock ] || exit 1; kill -TERM $pid; wait $pid; [ ! -e /tmp/gpu.sock ]' > "$work/serve.log" 2>&1
check "nvgrace serve makes its socket and removes it on SIGTERM" "$?" "$(tail -2 "$work/serve.log")"
check "the man page has every command's help" \
  "$(zcat "$root/usr/share/man/man1/nvgrace.1.gz" | grep -c '^\.SS \(inspect\|config\|region\|run\|serve\)$' | grep -qx 5; echo $?)" \
  "$(ls -l "$root/usr/share/man/man1/nvgrace.1.gz" 2>&1)"
comp=$(in_root bash -c 'source /usr/share/bash-completion/completions/nvgrace
  COMP_WORDS=(nvgrace inspect --target ""); COMP_CWORD=3; _nvgrace; echo "${COMPREPLY[*]}"')
check "bash completion offers the targets after --target ($comp)" \
  "$([ "$comp" = "qemu-virt qemu-q35 libvirt cloud-hypervisor" ]; echo $?)" "$comp"
unit=/lib/systemd/system/nvgrace-serve@.service
verify=$(in_root systemd-analyze verify --man=no "$unit" nvgrace-serve@gpu0.service 2>&1)
check "systemd-analyze verify accepts $unit and an instance of it" "$?" "$verify"
[ -n "$verify" ] && sed 's/^/  verify: /' <<<"$verify"
exposure=$(in_root systemd-analyze security --offline=yes nvgrace-serve@gpu0.service 2>&1 | tail -1)
echo "  systemd-analyze security: ${exposure#→ }"
check "systemd rates the unit's sandbox exposure below 2" \
  "$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+$/) { exit !($i < 2) } exit 1 }' <<<"$exposure"; echo $?)" \
  "$exposure"

DEBIAN_FRONTEND=noninteractive in_root apt-get purge -y nvgrace > "$work/purge.log" 2>&1
check "apt purges the package" "$?" "$(tail -2 "$work/purge.log")"
left=$(cd "$root" && ls -d usr/bin/nvgrace usr/share/doc/nvgrace usr/share/man/man1/nvgrace.1.gz \
  usr/share/bash-completion/completions/nvgrace lib/systemd/system/nvgrace-serve@.service 2>/dev/null)
check "nothing of it is left" "$([ -z "$left" ]; echo $?)" "$left"
echo "$fails failed"
[ "$fails" = 0 ]

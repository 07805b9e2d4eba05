#!/usr/bin/env bash
# A clean Debian 12 (bookworm minbase with systemd) for the tests that need
# one: the package test installs the .deb there, the set-up test runs
# scripts/setup-arm64 there. Built once per machine with debootstrap from the
# mirror apt already uses (scripts/apt-mirror), cached in
# ${NVGRACE_CACHE:-/var/cache/nvgrace}/bookworm-root-<key>, keyed by this
# script, under a lock; tests use it through an overlay so every run starts
# clean. Prints the root's path.
#   bookworm-root.sh
# Exit 77 (CTest: skipped), with the reason on stdout, where it cannot be built.
set -uo pipefail
here=$(dirname "$(realpath "$0")")
skip() { echo "bookworm root: skipped: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot, overlay mount)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed (scripts/setup installs it)"
. "$here/../e2e/cache.sh"
key=$(sha256sum "$0" | cut -c1-16)
base=$cache/bookworm-root-$key
mkdir -p "$cache"
exec 9> "$base.lock"
flock 9
if [ ! -f "$base.stamp" ]; then
  mirror=$("$here/../../scripts/apt-mirror" 2>&1) || skip "$mirror"
  rm -rf "$base"
  start=$(date +%s)
  debootstrap --variant=minbase --include=systemd bookworm "$base" "$mirror" > "$base.log" 2>&1 \
    || skip "debootstrap of bookworm from $mirror failed: $(tail -1 "$base.log")"
  touch "$base.stamp"
  echo "bookworm root: built in $(( $(date +%s) - start )) s at $base" >&2
  cache_prune bookworm-root "$key"
  cache_retire pkg-root  # the package test's own root, before the two tests shared one
fi
echo "$base"

#!/usr/bin/env bash
# `nvgrace run` where there is no /dev/kvm: exit 1 and one line on stderr that
# names what is missing and what to do - never the test harness's 77. Where
# this machine has /dev/kvm, it is hidden for the run by an empty /dev in a
# private mount namespace (needs root: unshare -m).
#   no_kvm_test.sh NVGRACE
# Exit 77 (skipped, with why) where /dev/kvm exists and cannot be hidden.
set -uo pipefail
nvgrace=$(realpath "$1")
err=$(mktemp); trap 'rm -f "$err"' EXIT
if [ -e /dev/kvm ]; then
  unshare -m --propagation private true 2>/dev/null \
    || { echo "no-kvm test: skipped: /dev/kvm exists and unshare -m (root) cannot hide it"; exit 77; }
  unshare -m --propagation private sh -c 'mount -t tmpfs none /dev && exec "$0" run' "$nvgrace" > /dev/null 2> "$err"
else
  "$nvgrace" run > /dev/null 2> "$err"
fi
rc=$?
echo "exit $rc; stderr:"; sed 's/^/  /' "$err"
[ "$rc" = 1 ] && [ "$(wc -l < "$err")" = 1 ] \
  && grep -q '^nvgrace: run: /dev/kvm: No such file or directory: nvgrace run needs KVM: .*access to /dev/kvm$' "$err"

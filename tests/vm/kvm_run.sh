#!/usr/bin/env bash
# Runs one KVM runner command (`nvgrace run ...`, or a POSIX sh test script
# that runs it) where KVM is: on this machine when /dev/kvm works here, else in an x86
# Linux guest with nested KVM under TCG (q35, -cpu qemu64,+svm,+npt), which
# every machine that can boot the e2e guests has. So the x86 runner is proven
# on a machine without /dev/kvm too, instead of being skipped. Prints where it
# ran; the command's exit code is the test's.
#   kvm_run.sh E2E_DIR NVGRACE COMMAND [ARGS...]
#     COMMAND is `nvgrace` (then ARGS are its arguments) or a script that
#     takes the nvgrace binary as its first argument (then ARGS follow it).
# Exit 77 (skipped, with the reason) only where neither can run.
set -uo pipefail
here=$(dirname "$(realpath "$0")")
e2e=$1 nvgrace=$(realpath "$2"); shift 2
kvm_here() { [ -c /dev/kvm ] && { : <> /dev/kvm; } 2>/dev/null; }
if [ "$1" = nvgrace ]; then shift; cmd=("$nvgrace" "$@"); guest_cmd="nvgrace $*"
else script=$(realpath "$1"); shift; cmd=("$script" "$nvgrace" "$@"); guest_cmd="sh /bin/$(basename "$script") /bin/nvgrace $*"; fi
if kvm_here; then
  echo "kvm_run: /dev/kvm works here: running on this machine"
  exec "${cmd[@]}"
fi
why=$( [ -e /dev/kvm ] && echo "/dev/kvm does not open for reading and writing here" || echo "no /dev/kvm here")
echo "kvm_run: $why: running in an x86 guest with nested KVM under TCG"
bins=(--bin "$nvgrace")
[ -n "${script:-}" ] && bins+=(--file "$script:/bin/$(basename "$script")")
exec "$here/../e2e/run-kvm-guest.sh" "$e2e" x86 --tag "runner-$$" "${bins[@]}" -- kvm "$guest_cmd"

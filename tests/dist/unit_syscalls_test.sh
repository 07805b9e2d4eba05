#!/usr/bin/env bash
# nvgrace-serve@.service's SystemCallFilter= allows every system call
# `nvgrace serve` makes: the serve tests (socket, mode and group, a second
# client, SIGHUP, a protocol violation) run under strace, and each call they
# make must be in the set the unit's SystemCallFilter= lines give, merged as
# systemd.exec(5) says (the first line sets the kind, later ones add or
# remove), with groups expanded by `systemd-analyze syscall-filter`.
#   unit_syscalls_test.sh UNIT CLI_TESTS
set -uo pipefail
unit=$1; cli_tests=$2
skip() { echo "unit syscalls: skipped: $*"; exit 77; }
command -v strace >/dev/null || skip "strace is not installed (scripts/setup installs it)"
command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed (scripts/setup installs systemd)"
work=$(mktemp -d /tmp/nvgrace-syscalls-XXXXXX)
trap 'rm -rf "$work"' EXIT

expand() {  # expand NAME...: system call names, groups resolved
  local x
  for x in "$@"; do
    case $x in
      @*) systemd-analyze syscall-filter "$x" | sed -n '/^@/,$p' | tail -n +2 | sed 's/#.*//' | tr -d ' ' | grep -v '^$' \
            | while read -r y; do expand "$y"; done ;;
      *) echo "$x" ;;
    esac
  done
}
: > "$work/allowed"
first=""
while read -r value; do
  if [ "${value:0:1}" = "~" ]; then
    [ -n "$first" ] || { echo "FAIL: the first SystemCallFilter= is a deny list"; exit 1; }
    expand ${value:1} | sort -u > "$work/deny"
    sort -u "$work/allowed" | comm -23 - "$work/deny" > "$work/next"; mv "$work/next" "$work/allowed"
  else
    first=allow
    expand $value >> "$work/allowed"
  fi
done < <(sed -n 's/^SystemCallFilter=//p' "$unit")
sort -u -o "$work/allowed" "$work/allowed"
echo "unit allows $(wc -l < "$work/allowed") system calls"

strace -f -qq -o "$work/trace" "$cli_tests" "serve*" > "$work/tests.log" 2>&1 \
  || { echo "FAIL: the serve tests failed under strace"; tail -5 "$work/tests.log"; exit 1; }
awk '{ sub(/^[0-9]+ +/, ""); if (match($0, /^[a-z_0-9]+\(/)) print substr($0, 1, RLENGTH - 1) }' "$work/trace" \
  | sort -u > "$work/used"
echo "the serve tests made $(wc -l < "$work/used") distinct system calls"
missing=$(comm -23 "$work/used" "$work/allowed" | tr '\n' ' ')
if [ -n "$missing" ]; then echo "FAIL the unit's filter denies: $missing"; exit 1; fi
echo "ok   every system call of the serve tests passes the unit's filter"

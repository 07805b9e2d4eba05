#!/bin/sh
# The vfio-user conformance suite against nvgrace serve: the emulated guest
# view, the host view (the function alone, R37), and the guest view under
# --keeper (journaled connections, R41; the serving process is the keeper's
# child, and descriptor leaks are counted in both). Every case must pass.
#   conformance_test.sh NVGRACE CONFORMANCE
set -u
nvgrace=$1 suite=$2
dir=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
status=0
for run in guest host keeper; do
  case $run in
    keeper) args="--keeper --view guest" ;;
    *) args="--view $run" ;;
  esac
  "$nvgrace" serve $args --socket "$dir/$run.sock" > "$dir/$run.log" 2>&1 &
  pid=$!
  i=0; until grep -q "listening on" "$dir/$run.log" || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
  served=$pid
  [ $run = keeper ] && served=$(cat /proc/$pid/task/$pid/children)
  keeper_fds=$(ls /proc/$pid/fd | wc -l)
  echo "=== $args"
  "$suite" --socket "$dir/$run.sock" --server-pid "$served" || status=1
  if [ $run = keeper ]; then
    left=$(ls /proc/$pid/fd | wc -l)
    [ "$left" = "$keeper_fds" ] || { echo "FAIL the keeper holds $left descriptors after the suite, $keeper_fds before"; status=1; }
  fi
  kill -TERM $pid; wait $pid || { echo "FAIL the server exited $? on SIGTERM"; status=1; }
done
exit $status

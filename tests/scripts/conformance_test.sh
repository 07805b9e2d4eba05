#!/bin/sh
# The vfio-user conformance suite against nvgrace serve: the emulated guest
# view, then the host view (the function alone, R37). Every case must pass.
#   conformance_test.sh NVGRACE CONFORMANCE
set -u
nvgrace=$1 suite=$2
dir=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
status=0
for view in guest host; do
  "$nvgrace" serve --view $view --socket "$dir/$view.sock" > "$dir/$view.log" 2>&1 &
  pid=$!
  i=0; until grep -q "listening on" "$dir/$view.log" || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
  echo "=== --view $view"
  "$suite" --socket "$dir/$view.sock" --server-pid $pid || status=1
  kill -TERM $pid; wait $pid || { echo "FAIL the server exited $? on SIGTERM"; status=1; }
done
exit $status

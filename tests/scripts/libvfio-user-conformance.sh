#!/bin/sh
# The conformance suite against libvfio-user's sample server (samples/server
# of a libvfio-user build; not part of CI: Debian packages no libvfio-user).
# The sample serves one client and exits, so it is restarted for each case;
# a run that ends by a signal is reported as a crash.
#   libvfio-user-conformance.sh SAMPLE-SERVER CONFORMANCE
set -u
server=$1 suite=$2
dir=$(mktemp -d)
( while [ ! -e "$dir/stop" ]; do
    rm -f "$dir/s.sock"
    "$server" "$dir/s.sock" >> "$dir/server.log" 2>&1
    rc=$?; [ $rc -gt 128 ] && [ ! -e "$dir/stop" ] && echo "the sample server died by signal $((rc - 128))" >> "$dir/crashes"
  done ) &
loop=$!
"$suite" --socket "$dir/s.sock" --single-client
status=$?
touch "$dir/stop"; pkill -f "$server $dir/s.sock"; wait $loop
[ -s "$dir/crashes" ] && { sort "$dir/crashes" | uniq -c; status=1; }
rm -rf "$dir"
exit $status

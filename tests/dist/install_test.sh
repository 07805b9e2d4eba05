#!/usr/bin/env bash
# `cmake --install` of a build tree into a staging directory: the binary, the
# man page help2man made from the real --help (with every command), the
# documentation, bash completion that works with the installed binary, and
# nvgrace-serve@.service starting that binary.
#   install_test.sh BUILD_DIR
set -uo pipefail
build=$(realpath "$1")
stage=$(mktemp -d /tmp/nvgrace-install-XXXXXX)
trap 'rm -rf "$stage"' EXIT
fails=0
check() {
  if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1 ($3)"; fails=$((fails + 1)); fi
}
DESTDIR=$stage cmake --install "$build" > "$stage.log" 2>&1
check "cmake --install succeeds" "$?" "$(tail -3 "$stage.log")"
sed 's/^-- Installing: /  installed: /;/Install configuration/d' "$stage.log"; rm -f "$stage.log"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
root=$stage$prefix
bin=$root/bin/nvgrace
check "the binary runs: $("$bin" --version)" "$("$bin" --version | grep -qx "nvgrace [0-9.]*"; echo $?)" ""
man=$root/share/man/man1/nvgrace.1.gz
sections=$(zcat "$man" | grep -c '^\.SS \(inspect\|config\|region\|run\|serve\)$')
check "the man page holds --help and each of the 5 commands' help" \
  "$([ "$sections" = 5 ] && zcat "$man" | grep -q -- '--target'; echo $?)" "$sections command sections"
check "the documentation is installed" "$([ -s "$root/share/doc/nvgrace/guest-targets.md" ]; echo $?)" ""
comp=$(PATH=$root/bin:$PATH bash -c "source '$root/share/bash-completion/completions/nvgrace'
  COMP_WORDS=(nvgrace inspect --profile ''); COMP_CWORD=3; _nvgrace; echo \"\${COMPREPLY[*]}\"")
check "bash completion lists the profiles after --profile ($comp)" "$(grep -q 'gh200 .*gb200' <<<"$comp"; echo $?)" "$comp"
unit=$root/lib/systemd/system/nvgrace-serve@.service
check "nvgrace-serve@.service starts $prefix/bin/nvgrace serve --fdstore with its socket under /run/nvgrace/, and keeps a store" \
  "$(grep -qx "ExecStart=$prefix/bin/nvgrace serve --fdstore --socket /run/nvgrace/%i/gpu.sock \$NVGRACE_SERVE_ARGS" "$unit" &&
     grep -qx "Type=notify" "$unit" && grep -qx "NotifyAccess=main" "$unit" && grep -q "^FileDescriptorStoreMax=[1-9]" "$unit"; echo $?)" \
  "$(grep ExecStart "$unit")"
echo "$fails failed"
[ "$fails" = 0 ]

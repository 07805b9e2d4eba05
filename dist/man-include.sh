#!/usr/bin/env bash
# Writes the help2man include file for nvgrace(1): a COMMANDS section with
# each command's own help, as `nvgrace help COMMAND` prints it, and the
# sections help2man cannot find in --help.
#   man-include.sh NVGRACE OUT.h2m DOCDIR
set -euo pipefail
exe=$1; out=$2; docdir=$3
roff() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
{
  echo "[COMMANDS]"
  for cmd in $("$exe" --help | sed -n '/^Subcommands:/,$p' | grep -oE '^  [a-z]+' | tr -d ' '); do
    [ "$cmd" = help ] && continue
    echo ".SS $cmd"
    echo ".nf"
    "$exe" help "$cmd" | roff
    echo ".fi"
  done
  echo "[EXIT STATUS]"
  echo "0: success. 1: the report was printed but shows a problem (a GPU is unusable, a"
  echo "check failed), or the operation was refused. 2: bad command line (one line on"
  echo "stderr naming the flag)."
  echo "[FILES]"
  echo ".TP"
  echo ".I /etc/nvgrace/serve-NAME.env"
  echo "Options of the nvgrace-serve@NAME.service instance (NVGRACE_SERVE_ARGS)."
  echo ".TP"
  echo ".I /run/nvgrace/NAME/gpu.sock"
  echo "Its vfio-user socket."
  echo "[SEE ALSO]"
  echo "The documentation in"
  echo ".IR $docdir :"
  echo "README.md, guest-targets.md (libvirt, QEMU, cloud-hypervisor), vfio-user.md,"
  echo "layout-model.md, json.md."
} > "$out"

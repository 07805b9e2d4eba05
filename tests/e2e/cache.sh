# What the e2e harness builds once per machine lives outside the clone in
# ${NVGRACE_CACHE:-/var/cache/nvgrace}, one entry per kind and key: KIND-KEY
# (a directory, with KIND-KEY.stamp, .lock and .log beside it where the
# builder keeps them). The key hashes the builder's inputs (script, config,
# source package version), so a changed input makes a new entry; sourced by
# the builders, which call cache_prune right after making one.
#   cache_key              prints the key of the inputs on stdin (16 hex digits)
#   cache_lock KIND KEY    sets dir=$cache/KIND-KEY and holds its lock on fd 9,
#                          so one builder at a time makes an entry (parallel
#                          CTest runs wait); fails when the lock cannot be made
#   cache_prune KIND KEY   removes every other KIND-* entry (a superseded
#                          root, kernel or download), saying what and how big
cache=${NVGRACE_CACHE:-/var/cache/nvgrace}
cache_key() { sha256sum | cut -c1-16; }
cache_lock() {
  dir=$cache/$1-$2
  mkdir -p "$cache" && exec 9> "$dir.lock" && flock 9
}
cache_prune() {
  local kind=$1 key=$2 e name size
  for e in "$cache/$kind"-*; do
    [ -e "$e" ] || continue
    name=$(basename "$e")
    case $name in "$kind-$key"|"$kind-$key".*) continue ;; esac
    # Only this kind's entries: KIND-<16 hex digits>[.stamp|.lock|.log|...].
    [[ $name =~ ^$kind-[0-9a-f]{16}(\..*)?$ ]] || continue
    size=$(du -sh "$e" 2>/dev/null | cut -f1)
    rm -rf "$e" && echo "cache: pruned $name ($size): superseded by $kind-$key" >&2
  done
}
#   cache_retire KIND      removes every KIND-* entry of a kind no builder
#                          makes any more (renamed or replaced), saying so
cache_retire() {
  local kind=$1 e name size
  for e in "$cache/$kind"-*; do
    [ -e "$e" ] || continue
    name=$(basename "$e")
    [[ $name =~ ^$kind-[0-9a-f]{16}(\..*)?$ ]] || continue
    size=$(du -sh "$e" 2>/dev/null | cut -f1)
    rm -rf "$e" && echo "cache: pruned $name ($size): nothing builds $kind any more" >&2
  done
}

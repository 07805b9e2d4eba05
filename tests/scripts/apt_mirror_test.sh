#!/usr/bin/env bash
# scripts/apt-mirror against apt configurations in both formats: one-line
# sources.list with options, deb822 .sources with disabled and security
# stanzas, both at once, and none. Prints one line per case; exit 1 on any
# failure.
set -uo pipefail
here=$(dirname "$(realpath "$0")")
mirror=$here/../../scripts/apt-mirror
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
fails=0
expect() {  # expect NAME WANT (stdin-less: reads $t/$1)
  local got; got=$("$mirror" "$t/$1" 2>&1); local rc=$?
  if [ "$got" = "$2" ]; then echo "ok   $1: $got"; else echo "FAIL $1: got '$got' (rc $rc), want '$2'"; fails=$((fails + 1)); fi
}
mkdir -p "$t"/{oneline,deb822,both,none,security-only}/sources.list.d
printf '# a comment\ndeb http://security.mirror.test:80/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.test:3142/debian/ bookworm main contrib\n' > "$t/oneline/sources.list"
printf 'Types: deb\nURIs: http://sec.mirror.test:80/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\nEnabled: no\nURIs: http://off.mirror.test:80/debian\nSuites: bookworm\nComponents: main\n\nTypes: deb deb-src\n# a comment inside the stanza\nURIs: http://apt.mirror.test:9999/debian\nSuites: bookworm bookworm-updates\nComponents: main\n' > "$t/deb822/sources.list.d/debian.sources"
printf 'deb http://first.mirror.test:80/debian trixie main\n' > "$t/both/sources.list"
cp "$t/deb822/sources.list.d/debian.sources" "$t/both/sources.list.d/"
printf 'deb http://security.mirror.test:80/debian-security bookworm-security main\n' > "$t/security-only/sources.list"
expect oneline http://mirror.test:3142/debian
expect deb822 http://apt.mirror.test:9999/debian
expect both http://first.mirror.test:80/debian
expect none "apt-mirror: no apt sources under $t/none"
expect security-only "apt-mirror: apt names no Debian archive mirror (a deb entry for a release suite with main) under $t/security-only"
echo "$fails failed"
[ "$fails" = 0 ]

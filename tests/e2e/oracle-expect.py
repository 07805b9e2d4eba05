#!/usr/bin/env python3
"""Carries the reasons of an oracle expected-difference file over to a new diff.

When the probe's operation list changes, every transcript's line numbers
move and the expected files (tests/e2e/oracle/<arch>-<kver>[-profile]-<pair>.diff,
diff(1) output with '#' lines saying why before each hunk) no longer match.
This rebuilds one from the new diff: each new hunk takes the reasons of the
old hunk with the same changed lines (matched in order); lines no old hunk
had - a new hunk, or new lines in a grown one - take the reasons given with
--reason REGEX=FILE (every REGEX found in them), else the script fails
naming them: a new difference is never recorded without a reason.

  oracle-expect.py OLD_EXPECTED NEW_DIFF [--reason REGEX=FILE]... > NEW_EXPECTED
"""
import argparse
import re
import sys


def hunks(lines):
    """(comment lines, header, body lines) for each hunk; the file's leading
    comment block goes with the first hunk."""
    out, comments, header, body = [], [], None, []
    for line in lines:
        if re.match(r"^\d", line):
            if header is not None:
                out.append((pending, header, body))
            pending, header, body = comments, line, []
            comments = []
        elif line.startswith("#"):
            comments.append(line)
        else:
            body.append(line)
    if header is not None:
        out.append((pending, header, body))
    return out


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old_expected")
    parser.add_argument("new_diff")
    parser.add_argument("--reason", action="append", default=[], metavar="REGEX=FILE")
    a = parser.parse_args(argv[1:])
    old = hunks(open(a.old_expected).read().splitlines(keepends=True))
    new = hunks(open(a.new_diff).read().splitlines(keepends=True))
    reasons = []
    for spec in a.reason:
        regex, path = spec.rsplit("=", 1)
        reasons.append((re.compile(regex), open(path).read()))
    out = []
    at = 0  # old hunks are matched in order
    for _, header, body in new:
        match = next((j for j in range(at, len(old)) if old[j][2] == body), None)
        if match is None:
            # A hunk that grew: an old one's lines are all in it.
            match = next((j for j in range(at, len(old)) if old[j][2] and set(old[j][2]) <= set(body)), None)
        comments = old[match][0] if match is not None else []
        if match is not None:
            at = match + 1
        added = [line for line in body if match is None or line not in old[match][2]]
        if added:
            text = "".join(added)
            found = [reason for rx, reason in reasons if rx.search(text)]
            if not found:
                sys.exit(f"no reason for the new lines of hunk {header.strip()}: {added[0].strip()}")
            comments = comments + [r if r.endswith("\n") else r + "\n" for r in found]
        out.extend(comments)
        out.append(header)
        out.extend(body)
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main(sys.argv)

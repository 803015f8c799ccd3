#!/usr/bin/env python3
"""CHANGELOG.md (Keep a Changelog) to a Debian changelog, for the package.

    debian-changelog.py CHANGELOG.md PACKAGE VERSION "NAME <EMAIL>" > changelog

One Debian entry per `## [...]` section, newest first. `[Unreleased]` is
the version being packaged (VERSION, from Cargo.toml); `## [X.Y.Z] - DATE`
sections keep their version and date. Each entry's revision is `-1`, as
cargo-deb numbers the package. `### Heading` becomes `[ Heading ]`, a
top-level bullet `  * `, a nested one `    - `; markdown emphasis and link
targets are dropped; lines are wrapped at 79 columns (Debian policy,
lintian's debian-changelog-line-too-long). The date of the unreleased entry
is SOURCE_DATE_EPOCH, else the last commit's, so the package is
reproducible.
"""
import email.utils
import os
import re
import subprocess
import sys
import textwrap
import time


def sections(text):
    """[(version or None for Unreleased, date or None, [lines])]."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^## \[([^\]]+)\](?:\s*-\s*(\d{4}-\d{2}-\d{2}))?", line)
        if m:
            name = m.group(1)
            out.append((None if name.lower() == "unreleased" else name, m.group(2), []))
        elif out:
            out[-1][2].append(line)
    return out


def plain(s):
    s = re.sub(r"\*\*(.+?)\*\*", r"\1", s)
    s = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", s)
    return s


def items(lines):
    """(indent level, kind, text): kind is 'head' or 'item'; continuation
    lines are joined to their item."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        h = re.match(r"^###\s+(.*)", line)
        b = re.match(r"^(\s*)[-*]\s+(.*)", line)
        if h:
            out.append((0, "head", h.group(1).strip()))
        elif b:
            out.append((1 if len(b.group(1)) >= 2 else 0, "item", b.group(2).strip()))
        elif out and out[-1][1] == "item":
            lvl, kind, t = out[-1]
            out[-1] = (lvl, kind, t + " " + line.strip())
        else:
            out.append((0, "item", line.strip()))
    return out


def body(lines):
    out = []
    for lvl, kind, t in items(lines):
        t = plain(t)
        if kind == "head":
            if out:
                out.append("")
            out.append(f"  [ {t} ]")
            continue
        first, rest = ("  * ", "    ") if lvl == 0 else ("    - ", "      ")
        out.extend(textwrap.wrap(t, width=79, initial_indent=first, subsequent_indent=rest,
                                 break_long_words=False, break_on_hyphens=False))
    return out or ["  * No changes listed."]


def unreleased_date():
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        try:
            epoch = subprocess.run(["git", "log", "-1", "--format=%ct"], capture_output=True,
                                   text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            epoch = ""
    return int(epoch) if epoch.isdigit() else int(time.time())


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    path, package, version, maintainer = sys.argv[1:]
    with open(path, encoding="utf-8") as f:
        secs = sections(f.read())
    if not secs:
        sys.exit(f"{path}: no '## [...]' section")
    entries = []
    for ver, date, lines in secs:
        if ver is None:
            ver, when = version, unreleased_date()
        else:
            when = int(time.mktime(time.strptime(date, "%Y-%m-%d"))) - time.timezone if date else unreleased_date()
        if not re.fullmatch(r"[0-9][A-Za-z0-9.+~]*", ver):
            sys.exit(f"{path}: section [{ver}] is not a version")
        stamp = email.utils.formatdate(when, usegmt=False).replace("-0000", "+0000")
        entries.append("\n".join([f"{package} ({ver}-1) unstable; urgency=medium", ""] + body(lines) +
                                 ["", f" -- {maintainer}  {stamp}"]))
    # An unreleased section on top of a released one of the same version
    # would repeat that version: Debian versions must strictly decrease.
    seen = set()
    for e in entries:
        v = e.split("(", 1)[1].split(")", 1)[0]
        if v in seen:
            sys.exit(f"{path}: version {v} appears twice; bump the version in Cargo.toml")
        seen.add(v)
    sys.stdout.write("\n\n".join(entries) + "\n")


if __name__ == "__main__":
    main()

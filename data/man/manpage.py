#!/usr/bin/env python3
"""Writes a program's man page from its own `--help` and `--version`, so the page
cannot drift from the program: NAME from the help's first line (`PROG VERSION: what
it does`), SYNOPSIS from its `Usage:` lines (`Usage: X` with `  or:  Y` lines, or
cxxopts' `Usage:` above indented lines), DESCRIPTION the rest of the help verbatim;
for sprout also COMMANDS, what `sprout help CMD` prints for every command `sprout
help` lists (data/cli_help.py). Then EXTRA (hand-written roff: FILES, SEE ALSO), which
must not repeat the help.

usage: manpage.py PROGRAM EXTRA OUTPUT
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from cli_help import read_cli  # noqa: E402


def roff(text: str) -> str:
    """Lines for a .nf block: backslashes and hyphens escaped, no line read as a request."""
    out = []
    for line in text.rstrip("\n").splitlines():
        line = line.replace("\\", "\\e").replace("-", "\\-")
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def verbatim(text: str) -> str:
    return f".nf\n{roff(text)}\n.fi\n"


def split_help(text: str) -> tuple[str, list[str], str]:
    """(what it does, the usage lines, the rest)."""
    lines = text.rstrip("\n").splitlines()
    first = lines.pop(0)
    what = first.split(": ", 1)[1] if ": " in first else first
    usage, rest, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Usage:") and not usage:
            if line[len("Usage:"):].strip():
                usage.append(line[len("Usage:"):].strip())
                while i + 1 < len(lines) and lines[i + 1].lstrip().startswith("or:"):
                    i += 1
                    usage.append(lines[i].lstrip()[len("or:"):].strip())
            else:
                while i + 1 < len(lines) and lines[i + 1].startswith(" ") and lines[i + 1].strip():
                    i += 1
                    usage.append(lines[i].strip())
        else:
            rest.append(line)
        i += 1
    while rest and not rest[0].strip():
        rest.pop(0)
    if not usage:
        raise SystemExit(f"manpage.py: no Usage: line in the help:\n{text}")
    return what, usage, "\n".join(rest)


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    program, extra, output = sys.argv[1:]
    name = os.path.basename(program)
    version = subprocess.run([program, "--version"], check=True, capture_output=True, text=True).stdout.strip()
    help_text = subprocess.run([program, "--help"], check=True, capture_output=True, text=True).stdout
    what, usage, rest = split_help(help_text)
    page = [f'.TH {name.upper()} 1 "" "{version}" "User Commands"\n',
            f".SH NAME\n{roff(name)} \\- {roff(what)}\n",
            ".SH SYNOPSIS\n", verbatim("\n".join(usage)),
            ".SH DESCRIPTION\n", verbatim(rest)]
    if name == "sprout":
        page.append(".SH COMMANDS\n")
        for c in read_cli(program):
            page.append(f".SS {c.name}\n{roff(c.summary)}\n.PP\n{verbatim(c.help_text)}")
    page.append(open(extra).read())
    with open(output, "w") as f:
        f.write("".join(page))


if __name__ == "__main__":
    main()

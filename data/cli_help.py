"""What `sprout` says about itself, read from its own help: the commands listed by
`sprout help` and, for each, the options and positional arguments `sprout help CMD`
shows. The completions and the man page are generated from this at build time, so
they list exactly the commands and options the binary has.

Parsing promises: a command is a line `  NAME  summary` in the block after
`Commands:`; an option is a cxxopts help line `  -x, --long ARG  description` (short
name and ARG optional; ARG, a placeholder such as DIR or cxxopts' own `arg`, means it
takes a value), its description going on in
deeper-indented lines; positional arguments are the words after `[OPTION...]` on the
line following `Usage:`. Anything else is ignored.
"""
import re
import subprocess
from dataclasses import dataclass, field

OPTION = re.compile(r"^\s+(?:-(\w), )?--([A-Za-z0-9][\w-]*)(\s+(?:arg|[A-Z][A-Z0-9_]*)|\[=arg[^\]]*\])?(?:\s{2,}(.*))?$")
LEVELS = ["trace", "debug", "info", "warn", "error", "critical", "off"]


@dataclass
class Option:
    long: str
    short: str | None
    takes_value: bool
    description: str


@dataclass
class Command:
    name: str
    summary: str
    options: list[Option] = field(default_factory=list)
    positionals: list[str] = field(default_factory=list)  # e.g. ["NAME"], ["FILE..."]
    help_text: str = ""


def run_help(sprout: str, *args: str) -> str:
    return subprocess.run([sprout, "help", *args], check=True, capture_output=True, text=True).stdout


def parse_commands(top_help: str) -> list[tuple[str, str]]:
    out, inside = [], False
    for line in top_help.splitlines():
        if line.strip() == "Commands:":
            inside = True
        elif inside and not line.strip():
            break
        elif inside:
            m = re.match(r"^\s+(\S+)\s+(.*)$", line)
            if m:
                out.append((m.group(1), m.group(2).strip()))
    if not out:
        raise SystemExit("cli_help: `sprout help` lists no commands (no 'Commands:' block)")
    return out


def parse_command_help(name: str, summary: str, text: str) -> Command:
    cmd = Command(name, summary, help_text=text)
    lines = text.splitlines()
    last = None
    for i, line in enumerate(lines):
        if line.strip() == "Usage:" and i + 1 < len(lines):
            usage = lines[i + 1]
            if "[OPTION...]" in usage:
                cmd.positionals = usage.split("[OPTION...]", 1)[1].split()
        m = OPTION.match(line)
        if m:
            short, long, arg, desc = m.groups()
            last = Option(long, short, arg is not None, (desc or "").strip())
            if long != "help":
                cmd.options.append(last)
        elif last and line.startswith("      ") and line.strip():
            last.description += " " + line.strip()  # a wrapped description goes on
        else:
            last = None
    return cmd


def read_cli(sprout: str) -> list[Command]:
    top = run_help(sprout)
    return [parse_command_help(n, s, run_help(sprout, n)) for n, s in parse_commands(top)]

#!/usr/bin/env python3
"""Writes sprout's completion script for one shell (bash, zsh or fish), generated at
build time from the binary's own help (data/cli_help.py): every command `sprout help`
lists, each command's options, VM names (the *.json in --spec-dir, else
$SPROUT_SPEC_DIR, else /etc/sprout/vms) where the command takes NAME, files where it
takes FILE or an option takes a value, directories for options named *-dir, and the
levels of the global --log-level, before or after the command.

usage: generate.py SPROUT SHELL OUTPUT
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from cli_help import LEVELS, Command, read_cli  # noqa: E402

HEADER = "# {} completion for sprout, generated from `sprout help` at build time (data/completions/generate.py).\n"


def takes_names(c: Command) -> bool:
    return any(p.rstrip(".").rstrip("]").lstrip("[").startswith("NAME") for p in c.positionals)


def takes_files(c: Command) -> bool:
    return any("FILE" in p for p in c.positionals)


def sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def bash(cmds: list[Command]) -> str:
    out = [HEADER.format("bash")]
    out.append("""_sprout_vms() {
  local dir=${SPROUT_SPEC_DIR:-/etc/sprout/vms} i f
  for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
    [[ ${COMP_WORDS[i]} == --spec-dir ]] && dir=${COMP_WORDS[i + 1]}
  done
  for f in "$dir"/*.json; do [[ -e $f ]] && f=${f##*/} && printf '%s\\n' "${f%.json}"; done
}

_sprout() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} cmd="" i
""")
    out.append(f"  local commands={sh_quote(' '.join(['help'] + [c.name for c in cmds]))}\n")
    out.append("""  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --log-level) ((i++)) ;;
      -*) ;;
      *) cmd=${COMP_WORDS[i]}; break ;;
    esac
  done
  if [[ $prev == --log-level ]]; then
""")
    out.append(f"    COMPREPLY=($(compgen -W {sh_quote(' '.join(LEVELS))} -- \"$cur\")); return\n  fi\n")
    out.append("""  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W "$commands --log-level --version --help" -- "$cur")); return
  fi
  local opts="" value_opts="" dir_opts="" args=""
  case $cmd in
    help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return ;;
""")
    for c in cmds:
        opts = " ".join(["--help", "--log-level"] + [f"--{o.long}" for o in c.options]
                        + [f"-{o.short}" for o in c.options if o.short])
        value = " ".join(f"--{o.long}" for o in c.options if o.takes_value and not o.long.endswith("-dir"))
        dirs = " ".join(f"--{o.long}" for o in c.options if o.takes_value and o.long.endswith("-dir"))
        args = "names" if takes_names(c) else "files" if takes_files(c) else ""
        out.append(f"    {c.name}) opts={sh_quote(opts)} value_opts={sh_quote(value)} "
                   f"dir_opts={sh_quote(dirs)} args={args} ;;\n")
    out.append("""  esac
  if [[ " $dir_opts " == *" $prev "* ]]; then COMPREPLY=($(compgen -d -- "$cur")); return; fi
  if [[ " $value_opts " == *" $prev "* ]]; then COMPREPLY=($(compgen -f -- "$cur")); return; fi
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); return; fi
  case $args in
    names) COMPREPLY=($(compgen -W "$(_sprout_vms)" -- "$cur")) ;;
    files) COMPREPLY=($(compgen -f -- "$cur")) ;;
  esac
}
complete -o filenames -F _sprout sprout
""")
    return "".join(out)


def zsh_escape(s: str) -> str:
    # Inside a single-quoted _arguments spec: no ', and [ ] : are special.
    return s.replace("'", "'\\''").replace("[", "(").replace("]", ")").replace(":", "-")


def zsh(cmds: list[Command]) -> str:
    out = ["#compdef sprout\n", HEADER.format("zsh")]
    out.append("""
_sprout_vms() {
  local dir=${SPROUT_SPEC_DIR:-/etc/sprout/vms} i
  for ((i = 1; i < ${#words}; i++)); do [[ ${words[i]} == --spec-dir ]] && dir=${words[i+1]}; done
  local -a vms=(${dir}/*.json(N:t:r))
  _describe -t vms 'VM' vms
}

_sprout() {
  local -a commands
  commands=(
""")
    out.append("    'help:describe a command'\n")
    for c in cmds:
        out.append(f"    '{c.name}:{zsh_escape(c.summary)}'\n")
    levels = " ".join(LEVELS)
    out.append(f"""  )
  local log_level='--log-level[how much to log]:level:({levels})'
  local curcontext=$curcontext state line
  _arguments -C $log_level '--version[print the version]' '--help[list the commands]' \\
    '1:command:->command' '*::arg:->args'
  case $state in
    command) _describe -t commands 'sprout command' commands ;;
    args)
      case ${{words[1]}} in
        help) _describe -t commands 'sprout command' commands ;;
""")
    for c in cmds:
        specs = ["$log_level", "'(-h --help)'{-h,--help}'[show this help]'"]
        for o in c.options:
            action = ""
            if o.takes_value:
                action = ":dir:_files -/" if o.long.endswith("-dir") else ":value:_files"
            names = f"'(-{o.short} --{o.long})'{{-{o.short},--{o.long}}}'" if o.short else f"'--{o.long}"
            specs.append(f"{names}[{zsh_escape(o.description)}]{action}'")
        if takes_names(c):
            specs.append("'*:VM:_sprout_vms'")
        elif takes_files(c):
            specs.append("'*:file:_files'")
        out.append(f"        {c.name}) _arguments {' '.join(specs)} ;;\n")
    out.append("""      esac ;;
  esac
}

_sprout "$@"
""")
    return "".join(out)


def fish(cmds: list[Command]) -> str:
    out = [HEADER.format("fish")]
    names = " ".join(["help"] + [c.name for c in cmds])
    out.append(f"""
function __sprout_vms
    set -l dir /etc/sprout/vms
    set -q SPROUT_SPEC_DIR; and set dir $SPROUT_SPEC_DIR
    set -l words (commandline -opc)
    for i in (seq (count $words))
        if test "$words[$i]" = --spec-dir; and test $i -lt (count $words)
            set dir $words[(math $i + 1)]
        end
    end
    for f in $dir/*.json
        string replace -r '\\.json$' '' -- (basename $f)
    end
end

complete -c sprout -f
complete -c sprout -l log-level -x -a {sh_quote(' '.join(LEVELS))} -d 'how much to log'
complete -c sprout -n __fish_use_subcommand -l version -d 'print the version'
complete -c sprout -n __fish_use_subcommand -a help -d 'describe a command'
complete -c sprout -n '__fish_seen_subcommand_from help' -a {sh_quote(names)}
""")
    for c in cmds:
        cond = sh_quote(f"__fish_seen_subcommand_from {c.name}")
        out.append(f"complete -c sprout -n __fish_use_subcommand -a {c.name} -d {sh_quote(c.summary)}\n")
        for o in c.options:
            flags = f"-l {o.long}" + (f" -s {o.short}" if o.short else "")
            if o.takes_value:
                flags += " -x -a '(__fish_complete_directories)'" if o.long.endswith("-dir") else " -r -F"
            out.append(f"complete -c sprout -n {cond} {flags} -d {sh_quote(o.description)}\n")
        if takes_names(c):
            out.append(f"complete -c sprout -n {cond} -a '(__sprout_vms)'\n")
        elif takes_files(c):
            out.append(f"complete -c sprout -n {cond} -F\n")
    return "".join(out)


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[2] not in ("bash", "zsh", "fish"):
        raise SystemExit(__doc__.strip().splitlines()[-1])
    sprout, shell, output = sys.argv[1:]
    text = {"bash": bash, "zsh": zsh, "fish": fish}[shell](read_cli(sprout))
    with open(output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

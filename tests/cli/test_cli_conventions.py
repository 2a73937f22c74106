#!/usr/bin/env python3
"""The command-line conventions of both binaries: `--version` prints the project's
version (the one in meson.build, passed in by the test), and `--help` shows it too;
`sprout help` lists the commands on stdout (exit 0), `sprout help CMD` prints what
`sprout CMD --help` prints, `sprout NOPE` and `sprout help NOPE` are an unknown command
in one line (exit 2); `sprout export --help` tells of a host-built VM's closure disk; the
global `--log-level` works before and after the command name, and a bad level is
refused in either place (exit 2), but not after `--`.
Usage: test_cli_conventions.py SPROUT SPROUT_AGENT VERSION
"""
import subprocess
import sys
import unittest

from terminal import on_a_terminal

SPROUT, AGENT, VERSION = sys.argv[1:4]


def run(*args, binary=SPROUT):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


class Version(unittest.TestCase):
    def test_sprout_version(self):
        r = run("--version")
        self.assertEqual((r.returncode, r.stdout), (0, f"sprout {VERSION}\n"), r.stderr)

    def test_agent_version(self):
        r = run("--version", binary=AGENT)
        self.assertEqual((r.returncode, r.stdout), (0, f"sprout-agent {VERSION}\n"), r.stderr)

    def test_help_names_the_version(self):
        self.assertIn(f"sprout {VERSION}", run("--help").stdout)
        self.assertIn(f"sprout-agent {VERSION}", run("--help", binary=AGENT).stdout)
        self.assertIn("--version", run("--help", binary=AGENT).stdout)




class Errors(unittest.TestCase):
    """An error at a terminal is one plain line, `sprout: error: ...`: no log timestamp,
    and no colour with NO_COLOR set."""

    def test_one_plain_line_at_a_terminal(self):
        import os
        import re
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, NO_COLOR="1")
            status, shown = on_a_terminal([SPROUT, "wait", "nosuch", "--spec-dir", d], env)
            self.assertEqual(status, 2, shown)
            self.assertEqual(shown.strip().splitlines(),
                             [f"sprout: error: no VM 'nosuch' in {d} (nosuch.json not found; there are none)"])
            self.assertIsNone(re.search(r"\d\d:\d\d:\d\d", shown), shown)
            self.assertNotIn("\x1b", shown)


class Help(unittest.TestCase):
    def commands(self):
        out = run("help").stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
        return [line.split()[0] for line in out.splitlines()]

    def test_help_lists_commands_on_stdout(self):
        r = run("help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("status", self.commands())
        self.assertIn("sprout help COMMAND", r.stdout)

    def test_help_cmd_is_cmd_help(self):
        for cmd in self.commands():
            with self.subTest(cmd=cmd):
                a, b = run("help", cmd), run(cmd, "--help")
                self.assertEqual((a.returncode, a.stdout), (0, b.stdout), a.stderr)
                self.assertIn(f"sprout {cmd}", a.stdout)
                self.assertIn("--log-level", a.stdout)  # the global options are shown too

    def test_help_unknown_command(self):
        r = run("help", "frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, "sprout: 'frobnicate' is not a sprout command (see `sprout help`)\n")

    def test_unknown_command_is_one_line(self):
        # Not the whole usage (31 lines) burying the word that was wrong: one line, as git.
        r = run("frobnicate", "--spec", "x.json")
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertEqual(r.stderr, "sprout: 'frobnicate' is not a sprout command (see `sprout help`)\n")
        r = run("--frobnicate")
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertEqual(r.stderr, "sprout: unknown option '--frobnicate' before the command (see `sprout help`)\n")

    def test_export_help_tells_of_the_closure_disk(self):
        # A host-built VM's export also writes its closure disk: the help says so.
        out = " ".join(run("export", "--help").stdout.split())
        for words in ('host-built VM ("specialize": "host") also gets its closure disk', "baseSystem",
                      "CACHE/closure-KEY.ext4", "STATE/closure.img"):
            self.assertIn(words, out)

    def test_help_extra_argument(self):
        r = run("help", "status", "wait")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unexpected argument 'wait'", r.stderr)


class GlobalOptions(unittest.TestCase):
    def test_log_level_before_and_after_the_command(self):
        for args in (["--log-level", "debug", "check-spec", "/nonexistent.json"],
                     ["check-spec", "--log-level", "debug", "/nonexistent.json"],
                     ["check-spec", "/nonexistent.json", "--log-level=debug"]):
            with self.subTest(args=args):
                r = run(*args)
                # The option is taken, not reported as unknown; the missing file is.
                self.assertNotIn("log-level", r.stdout + r.stderr)
                self.assertIn("/nonexistent.json: spec file not found", r.stdout + r.stderr)
                self.assertEqual(r.returncode, 2)

    def test_bad_level_refused_anywhere(self):
        for args in (["--log-level", "loud", "status"], ["status", "--log-level", "loud"],
                     ["status", "--log-level=loud"], ["status", "--log-level"]):
            with self.subTest(args=args):
                r = run(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("--log-level", r.stderr)

    def test_double_dash_ends_the_global_options(self):
        # After `--` the words are a positional argument of the command, not our option.
        r = run("check-spec", "--", "--log-level")
        self.assertIn("--log-level: spec file not found", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)

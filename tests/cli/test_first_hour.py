#!/usr/bin/env python3
"""What a newcomer's first hour with `sprout` trips over (issue 26), each point checked
against the real binary with specs and records written here: no VM is started.
Usage: test_first_hour.py SPROUT
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SPROUT = sys.argv[1] if len(sys.argv) > 1 else "sprout"


class World(unittest.TestCase):
    """A spec directory with one VM, web, that has never run."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sprout-first-hour-")
        self.specs = os.path.join(self.tmp, "specs")
        self.state = os.path.join(self.tmp, "web")
        os.makedirs(self.specs)
        os.makedirs(self.state)
        base = os.path.join(self.tmp, "base.img")
        open(base, "wb").close()
        self.write_spec("web", {"version": 1, "name": "web", "base": {"image": base, "format": "raw"},
                                "stateDir": self.state, "sources": {"config": self.tmp, "self": self.tmp}})

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_spec(self, name, spec):
        with open(os.path.join(self.specs, name + ".json"), "w") as f:
            json.dump(spec, f)

    def sprout(self, *args, timeout=60):
        env = dict(os.environ, NO_COLOR="1", SPROUT_SPEC_DIR=self.specs)
        return subprocess.run([SPROUT, *args], capture_output=True, text=True, timeout=timeout, env=env)


class TimeSpans(World):
    """5: `--timeout 1m` was read as 1 second; spans are systemd's, anything else refused."""

    def test_a_malformed_span_is_refused_naming_the_option(self):
        for option in ("--timeout", "--start-timeout"):
            for bad in ("1x", "1m5", "five", "-3"):
                r = self.sprout("wait", "web", option, bad)
                self.assertEqual(r.returncode, 2, (option, bad, r.stdout, r.stderr))
                self.assertIn(option + " " + bad, r.stderr)
                self.assertIn("5min", r.stderr)  # shows the form

    def test_spans_with_units_are_accepted(self):
        # --timeout 0 looks once; a span that sums to 0 is accepted the same way.
        for span in ("0", "0s", "0min", "0h 0s"):
            r = self.sprout("wait", "web", "--timeout", span, "--json")
            self.assertEqual(r.returncode, 3, (span, r.stdout, r.stderr))  # timed out at once: never ran
            self.assertEqual(json.loads(r.stdout)["outcome"], "timeout")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)

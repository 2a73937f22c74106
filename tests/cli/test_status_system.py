#!/usr/bin/env python3
"""The SYSTEM column of `sprout status`: the name of the store path the guest last
reported running, without its hash, as Nix's tools show it (in any store directory:
the test guest's builds are in /nix/store-built), cut to the column; `--long` and
`--json` give the whole path. From a status record written here, as the recorder
writes it (tests/runtime/test_fake_guest.py drives a real recorder).
Usage: test_status_system.py SPROUT
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

SPROUT = sys.argv[1] if len(sys.argv) > 1 else "sprout"


class StatusSystem(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sprout-status-")
        self.state = os.path.join(self.tmp, "web")
        self.specs = os.path.join(self.tmp, "specs")
        os.makedirs(self.state)
        os.makedirs(self.specs)
        base = os.path.join(self.tmp, "base.img")
        open(base, "wb").close()
        with open(os.path.join(self.specs, "web.json"), "w") as f:
            json.dump({"version": 1, "name": "web", "base": {"image": base, "format": "raw"},
                       "stateDir": self.state, "sources": {"config": self.tmp, "self": self.tmp}}, f)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def record(self, system_path):
        now = int(time.time() * 1000)  # "0s ago": every column keeps its width
        with open(os.path.join(self.state, "status.json"), "w") as f:
            json.dump({"vm": "web", "phase": "specialized", "message": "done", "generation": "g1", "bootId": "b",
                       "seq": 2, "sinceMs": now, "updatedMs": now, "detail": None, "lastLog": [],
                       "host": {"state": "stopped", "how": "guest powered off", "stoppedMs": 1},
                       "system": {"path": system_path, "by": "host"}}, f)

    def status(self, *args):
        p = subprocess.run([SPROUT, "status", "--spec-dir", self.specs, *args], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, NO_COLOR="1"))
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def system_column(self):
        header, row = self.status().splitlines()[:2]
        return row[header.index("SYSTEM"):header.index("MESSAGE")].strip()

    def test_the_name_without_the_hash(self):
        for path, shown in (
                ("/nix/store/8n3vhg33jahifvjg9qj859f31763mhdi-nixos-system-web", "nixos-system-web"),
                # what the test guest's nixos-rebuild makes: a hex hash, another store directory
                ("/nix/store-built/7556640cd41b7b35835956b88a61e9a6-nixos-system-db-1", "nixos-system-db-1"),
                ("/run/current-system", "current-system")):
            with self.subTest(path=path):
                self.record(path)
                self.assertEqual(self.system_column(), shown)
                self.assertIn(f"  system     {path} (built by host)\n", self.status("--long"))
                self.assertEqual(json.loads(self.status("--json"))[0]["status"]["system"]["path"], path)

    def test_a_long_name_is_cut_to_the_column_and_whole_in_long(self):
        name = "nixos-system-" + "a-very-long-host-name-" * 3
        path = "/nix/store/8n3vhg33jahifvjg9qj859f31763mhdi-" + name
        self.record(path)
        self.assertEqual(self.system_column(), name[:40])
        self.assertIn(f"  system     {path} (built by host)\n", self.status("--long"))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)

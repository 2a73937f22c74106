#!/usr/bin/env python3
"""A VM's state directory is its private data (issue 28): its disk, its logs and its
record are closed to other users of the host, and a directory an older sprout left
open is tightened on the next prepare. Read back as `nobody`, with the real qemu-img.
Usage: test_state_privacy.py SPROUT
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

SPROUT = sys.argv[1] if len(sys.argv) > 1 else "sprout"


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


class StatePrivacy(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("reads back as another user: needs root")
        # Somewhere `nobody` can reach, so that only the state directory's own modes
        # keep it out.
        self.tmp = tempfile.mkdtemp(prefix="sprout-privacy-")
        os.chmod(self.tmp, 0o755)
        self.state = os.path.join(self.tmp, "vms", "web")
        config = os.path.join(self.tmp, "config")
        os.makedirs(os.path.join(config, "hosts", "web"))
        for f in ("configuration.nix", os.path.join("hosts", "web", "configuration.nix")):
            with open(os.path.join(config, f), "w") as out:
                out.write("{ }\n")
        base = os.path.join(self.tmp, "base.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "64M"], check=True)
        self.spec = os.path.join(self.tmp, "web.json")
        with open(self.spec, "w") as f:
            json.dump({"version": 1, "name": "web", "base": {"image": base}, "stateDir": self.state,
                       "cacheDir": os.path.join(self.tmp, "cache"), "gcRootDir": os.path.join(self.tmp, "roots"),
                       "sources": {"config": config, "self": os.path.join(config, "hosts", "web")}}, f)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def prepare(self):
        r = subprocess.run([SPROUT, "prepare", "--spec", self.spec], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)

    def as_nobody(self, *argv):
        return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
                              capture_output=True, timeout=60)

    def check_closed(self):
        self.assertEqual(mode(self.state), 0o700)
        files = [n for n in os.listdir(self.state) if stat.S_ISREG(os.lstat(os.path.join(self.state, n)).st_mode)]
        self.assertIn("root.qcow2", files)
        for n in files:
            self.assertEqual(mode(os.path.join(self.state, n)) & 0o077, 0, n)
        self.assertNotEqual(self.as_nobody("cat", os.path.join(self.state, "root.qcow2")).returncode, 0)
        self.assertNotEqual(self.as_nobody("ls", self.state).returncode, 0)

    def test_a_new_vm_is_closed_to_other_users(self):
        self.prepare()
        self.assertEqual(mode(os.path.join(self.state, "root.qcow2")), 0o600)
        self.check_closed()

    def test_an_open_directory_left_by_an_older_sprout_is_tightened(self):
        self.prepare()
        os.chmod(self.state, 0o755)
        for n in os.listdir(self.state):
            p = os.path.join(self.state, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                os.chmod(p, 0o644)
        self.assertEqual(self.as_nobody("cat", os.path.join(self.state, "root.qcow2")).returncode, 0,
                         "the test's open directory is readable by nobody")
        self.prepare()
        self.check_closed()
        # Root still reads what it wrote: the overlay, with the real qemu-img.
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", os.path.join(self.state, "root.qcow2")],
                                         capture_output=True, text=True, check=True).stdout)
        self.assertEqual(info["format"], "qcow2")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)

#!/usr/bin/env python3
"""Issue 29: who qemu runs as, and its sandbox, as `sprout run` decides them with this
machine's real qemu-system-x86_64 (its -help) and user database. No VM is started here:
tests/runtime/test_run.py (cases lifecycle and two-vms) checks the running qemu's
/proc/PID/status.
Usage: test_qemu_user.py SPROUT
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SPROUT = sys.argv[1] if len(sys.argv) > 1 else "sprout"
DYNAMIC_FIRST, DYNAMIC_COUNT = 0x73700000, 0x10000


class QemuUser(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sprout-qemu-user-")
        self.specs = os.path.join(self.tmp, "specs")
        self.state = os.path.join(self.tmp, "web")
        os.makedirs(self.specs)
        os.makedirs(self.state)
        self.base = os.path.join(self.tmp, "base.img")
        open(self.base, "wb").close()
        self.write_spec()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_spec(self, **extra):
        spec = {"version": 1, "name": "web", "base": {"image": self.base, "format": "raw"}, "stateDir": self.state,
                "sources": {"config": self.tmp, "self": self.tmp}, "accel": "tcg", **extra}
        with open(os.path.join(self.specs, "web.json"), "w") as f:
            json.dump(spec, f)

    def sprout(self, *args, qemu=None):
        env = dict(os.environ, NO_COLOR="1", SPROUT_SPEC_DIR=self.specs)
        return subprocess.run([SPROUT, *args, *(["--qemu", qemu] if qemu else [])], capture_output=True, text=True,
                              timeout=120, env=env)

    def printed_command(self):
        r = self.sprout("run", "web", "--print-command")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split(), r.stderr

    def test_by_default_qemu_switches_to_a_uid_of_its_own_in_its_sandbox(self):
        if os.geteuid() != 0:
            self.skipTest("only root switches qemu's user")
        argv, _ = self.printed_command()
        self.assertIn("-runas", argv)
        uid, gid = (int(x) for x in argv[argv.index("-runas") + 1].split(":"))
        self.assertEqual(uid, gid)
        self.assertTrue(DYNAMIC_FIRST <= uid < DYNAMIC_FIRST + DYNAMIC_COUNT, uid)
        self.assertEqual(argv[argv.index("-sandbox") + 1],
                         "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny")
        self.assertEqual(os.listdir(self.state), [], "a dry run claims and writes nothing")

    def test_a_named_user_is_switched_to_by_number(self):
        if os.geteuid() != 0:
            self.skipTest("only root switches qemu's user")
        self.write_spec(qemuUser="nobody")
        argv, _ = self.printed_command()
        self.assertEqual(argv[argv.index("-runas") + 1], "65534:65534")

    def test_root_only_by_name_and_with_a_warning(self):
        self.write_spec(qemuUser="root")
        argv, err = self.printed_command()
        self.assertNotIn("-runas", argv)
        self.assertEqual(argv[argv.index("-sandbox") + 1],
                         "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
        if os.geteuid() == 0:
            self.assertIn("qemu runs as root", err)

    def test_a_bridge_lets_qemu_start_its_helper(self):
        self.write_spec(network={"mode": "bridge", "bridge": "br0"})
        argv, _ = self.printed_command()
        self.assertIn("spawn=allow", argv[argv.index("-sandbox") + 1])

    def test_a_user_that_does_not_exist_fails_at_once_and_nothing_starts(self):
        if os.geteuid() != 0:
            self.skipTest("only root switches qemu's user")
        self.write_spec(qemuUser="no-such-sprout-user")
        # A qemu that leaves a mark when it is started for anything but its -help.
        marker = os.path.join(self.tmp, "qemu-started")
        qemu = os.path.join(self.tmp, "qemu")
        with open(qemu, "w") as f:
            f.write(f"#!/bin/sh\nif [ \"$1\" = -help ]; then exec qemu-system-x86_64 -help; fi\ntouch {marker}\n")
        os.chmod(qemu, 0o755)
        r = self.sprout("run", "web", qemu=qemu)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("\"qemuUser\": \"no-such-sprout-user\": no such user", r.stderr)
        self.assertIn("useradd", r.stderr)  # what to do
        self.assertFalse(os.path.exists(marker), "qemu was started")
        self.assertEqual(os.listdir(self.state), [], "nothing exported, created or recorded")

    def test_a_qemu_that_cannot_switch_users_is_refused_unless_root_is_asked_for(self):
        if os.geteuid() != 0:
            self.skipTest("only root switches qemu's user")
        qemu = os.path.join(self.tmp, "qemu")
        with open(qemu, "w") as f:  # no -runas, no -run-with in its -help
            f.write("#!/bin/sh\necho '-name string'\n")
        os.chmod(qemu, 0o755)
        r = self.sprout("run", "web", "--print-command", qemu=qemu)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("cannot switch to an unprivileged user", r.stderr)

    def test_check_host_says_how_qemu_is_confined_and_what_cannot_be_had(self):
        if os.geteuid() != 0:
            self.skipTest("only root switches qemu's user")
        r = self.sprout("check-host", "--json")
        checks = {c["check"]: c for c in json.loads(r.stdout)}
        self.assertEqual(checks["qemu user"]["result"], "PASS", checks["qemu user"])
        self.assertIn("-runas", checks["qemu user"]["message"])  # QEMU 7.2 here
        self.assertEqual(checks["qemu sandbox"]["result"], "PASS", checks["qemu sandbox"])
        self.write_spec(qemuUser="no-such-sprout-user")
        r = self.sprout("check-host", "--json")
        self.assertEqual(r.returncode, 1, r.stderr)
        checks = {c["check"]: c for c in json.loads(r.stdout)}
        self.assertEqual(checks["qemu user web"]["result"], "FAIL", checks)
        self.assertIn("no such user", checks["qemu user web"]["message"])

    def test_a_libvirt_vm_takes_no_qemu_user(self):
        self.write_spec(backend="libvirt", qemuUser="root")
        r = self.sprout("check-spec", os.path.join(self.specs, "web.json"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("qemu.conf", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)

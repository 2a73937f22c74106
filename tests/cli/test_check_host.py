#!/usr/bin/env python3
"""`sprout check-host` against the real qemu, qemu-img and Nix of this machine, for
spec directories made here: one line per check with PASS/WARN/FAIL and what to do,
`--json`, exit 1 on any FAIL (0 with warnings only), 2 for bad input. The KVM line is
whatever this machine's probe says (tests/runtime's accel case drives it with a qemu
that aborts); here it must be there and not FAIL while no spec insists on KVM.
Usage: test_check_host.py SPROUT
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SPROUT = sys.argv[1] if len(sys.argv) > 1 else "sprout"


class CheckHost(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sprout-check-host-")
        self.specs = os.path.join(self.tmp, "specs")
        os.makedirs(self.specs)
        self.base = os.path.join(self.tmp, "base.qcow2")
        open(self.base, "wb").close()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def spec(self, name, **extra):
        spec = {"version": 1, "name": name, "base": {"image": self.base},
                "stateDir": os.path.join(self.tmp, "vms", name), "cacheDir": os.path.join(self.tmp, "cache"),
                "sources": {"config": self.tmp, "self": self.tmp}}
        spec.update(extra)
        with open(os.path.join(self.specs, name + ".json"), "w") as f:
            json.dump(spec, f)

    def check_host(self, *args):
        return subprocess.run([SPROUT, "check-host", "--spec-dir", self.specs, *args], capture_output=True,
                              text=True, timeout=120)

    def checks(self):
        r = self.check_host("--json")
        self.assertIn(r.returncode, (0, 1), r.stderr)
        return r.returncode, {c["check"]: c for c in json.loads(r.stdout)}

    def test_a_plain_host_passes_its_tools_and_directories(self):
        self.spec("web")
        rc, c = self.checks()
        self.assertEqual(rc, 0, json.dumps(c, indent=1))
        for name in ("specs", "qemu", "qemu-img", "ssh-keygen", "state web", "cache"):
            self.assertEqual(c[name]["result"], "PASS", c[name])
        self.assertIn("QEMU emulator version", c["qemu"]["message"])
        self.assertIn(c["kvm"]["result"], ("PASS", "WARN"))
        self.assertTrue(any(k.startswith("space ") for k in c), c.keys())
        r = self.check_host()
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"(?m)^PASS  qemu-img ")

    def test_a_directory_others_can_write_fails_and_says_what_to_do(self):
        state = os.path.join(self.tmp, "vms", "web")
        os.makedirs(state)
        os.chmod(state, 0o777)
        self.spec("web")
        rc, c = self.checks()
        self.assertEqual(rc, 1)
        self.assertEqual(c["state web"]["result"], "FAIL", c["state web"])
        self.assertIn("chmod 0750 " + state, c["state web"]["fix"])
        r = self.check_host()
        self.assertEqual(r.returncode, 1)
        self.assertIn("FAIL  state web", r.stdout)
        self.assertIn("-> chmod 0750", r.stdout)

    def test_a_bridge_the_helper_does_not_allow_fails(self):
        self.spec("br", network={"mode": "bridge", "bridge": "sproutnobr0"})
        rc, c = self.checks()
        self.assertEqual(rc, 1)
        line = c["bridge sproutnobr0"]
        self.assertEqual(line["result"], "FAIL", line)
        self.assertIn("allow sproutnobr0", line["fix"])

    def test_a_host_built_vm_brings_the_nix_check(self):
        self.spec("hb", specialize="host", system="/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-hb")
        rc, c = self.checks()
        self.assertIn("nix", c)
        self.assertIn(c["nix"]["result"], ("PASS", "FAIL"))
        if shutil.which("nix-store"):
            self.assertEqual(c["nix"]["result"], "PASS", c["nix"])
        self.spec("plain")
        os.unlink(os.path.join(self.specs, "hb.json"))
        _, c = self.checks()
        self.assertNotIn("nix", c)

    def test_a_broken_spec_is_a_failed_check_naming_it(self):
        with open(os.path.join(self.specs, "bad.json"), "w") as f:
            f.write("{")
        rc, c = self.checks()
        self.assertEqual(rc, 1)
        self.assertEqual(c["spec bad.json"]["result"], "FAIL")

    def test_bad_input_is_exit_2(self):
        r = subprocess.run([SPROUT, "check-host", "--frobnicate"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)


if __name__ == "__main__":
    SPROUT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

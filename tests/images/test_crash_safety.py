#!/usr/bin/env python3
"""A VM's disk is never lost and nothing leaks when sprout is killed or misled.
Real qemu-img, with wrapper scripts first on PATH to place a kill -9 of sprout at
each step, or to hold a step until the test lets it go; images are built in sprout,
so for them the same is done from $SPROUT_TEST_HOOK (host/image/test_hook.h).

- recreate onto a new base that is not an image: refused, the overlay untouched;
- recreate with sprout killed at each step: the VM is on its old overlay or wholly on
  the new one, the old one always kept, and the next prepare finishes the job;
- kill -9 of export/prepare: the next export/prepare and gc remove what it left;
- the programs sprout runs die with a killed sprout;
- an inherited SIGCHLD=SIG_IGN does not hang sprout;
- gc waits for a running export instead of racing it.
Usage: test_crash_safety.py SPROUT_BINARY
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_export  # noqa: E402
from test_export import Scratch, run, sha256  # noqa: E402


def wait_for(cond, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Wrapped(Scratch):
    def wrapper(self, tool, script):
        """A `tool` first on PATH: `script` (sh) runs first, then the real tool, unless
        the script exits."""
        bindir = self.path("bin")
        os.makedirs(bindir, exist_ok=True)
        real = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        with open(os.path.join(bindir, tool), "w") as f:
            f.write(f"#!/bin/sh\n{script}\nexec {real} \"$@\"\n")
        os.chmod(os.path.join(bindir, tool), 0o755)
        return dict(os.environ, PATH=bindir + ":" + os.environ["PATH"])

    def hook(self, script):
        """$SPROUT_TEST_HOOK as `script` (sh): run as `HOOK build ROLE` before an image
        is read and `HOOK built ROLE TEMP` before it is committed."""
        path = self.path("hook")
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\n{script}\nexit 0\n")
        os.chmod(path, 0o755)
        return dict(os.environ, SPROUT_TEST_HOOK=path)

    def vm_with_data(self):
        self.make_base("base.qcow2")
        self.make_base("base2.qcow2")
        spec = self.make_vm()
        out = json.loads(run("prepare", "--spec", self.write_spec(spec), "--json").stdout)
        overlay = out["overlay"]["path"]
        subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 64k", overlay], check=True, capture_output=True)
        return spec, overlay, sha256(overlay)

    def backing(self, overlay):
        info = subprocess.run(["qemu-img", "info", "--output=json", "-U", overlay],
                              capture_output=True, text=True, check=True).stdout
        return json.loads(info).get("full-backing-filename")


class RecreateTest(Wrapped):
    def test_a_new_base_that_is_not_an_image_leaves_the_overlay_alone(self):
        spec, overlay, before = self.vm_with_data()
        with open(self.path("broken.qcow2"), "w") as f:
            f.write("not an image\n")
        spec["base"]["image"] = self.path("broken.qcow2")
        spec["baseChange"] = "recreate"
        p = run("prepare", "--spec", self.write_spec(spec), check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("base.image", p.stderr)
        self.assertEqual(sha256(overlay), before)
        self.assertEqual(glob.glob(overlay + ".old-*"), [])
        # Fixed spec: a real recreate, the data kept aside.
        spec["base"]["image"] = self.path("base2.qcow2")
        out = json.loads(run("prepare", "--spec", self.write_spec(spec), "--json").stdout)
        self.assertEqual(out["overlay"]["action"], "recreated")
        self.assertEqual(sha256(out["overlay"]["movedAside"]), before)

    def test_kill_at_every_step_of_a_recreate(self):
        steps = {
            "reading the new base": 'case "$1 $*" in info*base2*) kill -9 $PPID; sleep 5; exit 1;; esac',
            "before qemu-img create": 'case "$1" in create) kill -9 $PPID; sleep 5; exit 1;; esac',
            "after qemu-img create": 'case "$1" in create) "$REAL_QEMU_IMG" "$@"; kill -9 $PPID; sleep 5; exit 0;; esac',
        }
        for step, script in steps.items():
            with self.subTest(step=step):
                self.tearDown()
                self.setUp()
                spec, overlay, before = self.vm_with_data()
                spec["base"]["image"] = self.path("base2.qcow2")
                spec["baseChange"] = "recreate"
                specfile = self.write_spec(spec)
                env = self.wrapper("qemu-img", script)
                env["REAL_QEMU_IMG"] = subprocess.run(["sh", "-c", "command -v qemu-img"], capture_output=True,
                                                      text=True).stdout.strip()
                p = run("prepare", "--spec", specfile, check=False, env=env)
                self.assertEqual(p.returncode, -9, f"{step}: sprout was not killed ({p.stderr})")
                asides = glob.glob(overlay + ".old-*")
                if sha256(overlay) == before:
                    self.assertEqual(self.backing(overlay), self.path("base.qcow2"))
                else:  # wholly on the new base, the old one kept
                    self.assertEqual(self.backing(overlay), self.path("base2.qcow2"))
                    self.assertTrue(any(sha256(a) == before for a in asides), f"{step}: old overlay lost")
                out = json.loads(run("prepare", "--spec", specfile, "--json").stdout)
                self.assertIn(out["overlay"]["action"], ("recreated", "reused"))
                self.assertEqual(self.backing(overlay), self.path("base2.qcow2"))
                asides = glob.glob(overlay + ".old-*")
                self.assertEqual([sha256(a) for a in asides], [before], f"{step}: exactly one copy of the old overlay")
                self.assertEqual(glob.glob(os.path.join(spec["stateDir"], ".root.qcow2.tmp-*")), [],
                                 f"{step}: a half-made overlay was left behind")


# The hook: kill -9 of sprout once the self image is in its temporary file.
KILL_AT_SELF_IMAGE = 'case "$1 $2" in "built self") kill -9 $PPID; sleep 5; exit 1;; esac'


class LeftoverTest(Wrapped):
    def test_killed_exports_leave_nothing_behind(self):
        spec = self.make_vm()
        specfile = self.write_spec(spec)
        # Killed once the self image is written to its temporary file (small images are
        # built in memory, memory_image.h, and then written out).
        env = self.hook(KILL_AT_SELF_IMAGE)
        for _ in range(3):
            p = run("export", "--spec", specfile, check=False, env=env)
            self.assertEqual(p.returncode, -9)
        left = [n for n in os.listdir(self.path("cache")) if n.startswith(".") and n != ".lock"
                and not n.startswith(".digest-cache")]
        self.assertNotEqual(left, [], "the kill left nothing to clean up: the test placed it wrong")
        p = run("export", "--spec", specfile)
        still = [n for n in os.listdir(self.path("cache")) if n in left]
        self.assertEqual(still, [], f"the next export did not remove what killed exports left ({p.stderr})")

    def test_gc_removes_what_a_killed_export_left(self):
        spec = self.make_vm()
        specfile = self.write_spec(spec)
        env = self.hook(KILL_AT_SELF_IMAGE)
        run("export", "--spec", specfile, check=False, env=env)
        self.assertNotEqual([n for n in os.listdir(self.path("cache")) if ".tmp-" in n or n.startswith(".staging-")],
                            [])
        specdir = self.path("specs")
        os.makedirs(specdir)
        self.write_spec(spec, os.path.join("specs", "web.json"))
        run("gc", "--spec-dir", specdir)
        left = [n for n in os.listdir(self.path("cache")) if ".tmp-" in n or n.startswith(".staging-")]
        self.assertEqual(left, [])

    def test_killed_prepare_leaves_no_half_made_overlay(self):
        self.make_base()
        spec = self.make_vm()
        specfile = self.write_spec(spec)
        env = self.wrapper("qemu-img", 'case "$1" in create) "$REAL" "$@"; kill -9 $PPID; sleep 5;; esac')
        env["REAL"] = subprocess.run(["sh", "-c", "command -v qemu-img"], capture_output=True, text=True).stdout.strip()
        p = run("prepare", "--spec", specfile, check=False, env=env)
        self.assertEqual(p.returncode, -9)
        self.assertNotEqual(glob.glob(os.path.join(spec["stateDir"], ".root.qcow2.tmp-*")), [])
        self.assertEqual(json.loads(run("prepare", "--spec", specfile, "--json").stdout)["overlay"]["action"], "created")
        self.assertEqual(glob.glob(os.path.join(spec["stateDir"], ".root.qcow2.tmp-*")), [])


class ChildTest(Wrapped):
    def test_a_child_dies_with_a_killed_sprout(self):
        spec = self.make_vm()
        marker = self.path("child.pid")
        env = self.hook(f'echo $$ > {marker}; exec sleep 600')
        p = subprocess.Popen([test_export.SPROUT, "export", "--spec", self.write_spec(spec)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def read_marker():
                with open(marker) as f:
                    return f.read().strip()
            wait_for(lambda: os.path.exists(marker) and read_marker(), what="the hook to start")
            child = int(read_marker())
            p.kill()
            p.wait(30)
            wait_for(lambda: not pid_alive(child), timeout=30, what=f"the hook (pid {child}) to die with sprout")
        finally:
            if p.poll() is None:
                p.kill()

    def test_an_ignored_sigchld_does_not_hang_sprout(self):
        spec = self.make_vm()
        p = subprocess.run([test_export.SPROUT, "export", "--spec", self.write_spec(spec)], capture_output=True,
                           text=True, timeout=120, preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(os.path.exists(os.path.join(spec["stateDir"], "config.img")))


class LockTest(Wrapped):
    def test_gc_waits_for_a_running_export(self):
        spec = self.make_vm()
        specfile = self.write_spec(spec)
        fifo, started = self.path("go"), self.path("started")
        os.mkfifo(fifo)
        env = self.hook(f'if [ "$1" = build ] && mkdir {started} 2>/dev/null; then read x < {fifo}; fi')
        export = subprocess.Popen([test_export.SPROUT, "export", "--spec", specfile], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        specdir = self.path("specs")
        os.makedirs(specdir)
        self.write_spec(spec, os.path.join("specs", "web.json"))
        gc = None
        try:
            wait_for(lambda: os.path.exists(started), what="the export's first image build to start")
            gc = subprocess.Popen([test_export.SPROUT, "gc", "--spec-dir", specdir], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
            err = ""
            # gc must say it waits; it must not finish while the export runs.
            os.set_blocking(gc.stderr.fileno(), False)

            def waiting():
                nonlocal err
                chunk = gc.stderr.read()
                err += chunk.decode(errors="replace") if chunk else ""
                self.assertIsNone(gc.poll(), f"gc finished while an export was running: {err}")
                return "waiting for another sprout export or gc" in err
            wait_for(waiting, what="gc to wait for the export")
            with open(fifo, "w") as f:
                f.write("go\n")
            self.assertEqual(export.wait(120), 0, export.stderr.read())
            self.assertEqual(gc.wait(120), 0)
            for role in ("config", "self"):
                self.assertTrue(os.path.exists(os.path.realpath(os.path.join(spec["stateDir"], f"{role}.img"))))
        finally:
            for proc in (export, gc):
                if proc and proc.poll() is None:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    test_export.SPROUT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""`sprout export` against trees that change while it reads them, and what the
exported images let other users see. Images read back with debugfs.

- A private key that appears in the ssh directory right after it was listed (an
  inotify watcher writes it the moment sprout opens the directory) never reaches
  ssh.img, and a later export after the key is gone is clean too.
- A config tree changed after it was listed, as its image is built ($SPROUT_TEST_HOOK
  changes it) fails the export and caches nothing.
- Extended attributes never reach an image; hard links are part of the digest.
- Images are 0400 in a 0711 cache: another user can neither list nor read them.
Usage: test_export_safety.py SPROUT_BINARY
"""
import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_export  # noqa: E402
from test_export import Scratch, read_back, run  # noqa: E402

PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
               "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
               "-----END OPENSSH PRIVATE KEY-----\n")

IN_OPEN = 0x20
IN_ISDIR = 0x40000000


class KeyPlanter(threading.Thread):
    """Writes `name` into `directory` as soon as someone opens the directory (the
    listing), so it exists for anyone who walks the directory a second time."""

    def __init__(self, directory, name):
        super().__init__(daemon=True)
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or self.libc.inotify_add_watch(self.fd, directory.encode(), IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), "inotify")
        self.path = os.path.join(directory, name)
        self.stop_r, self.stop_w = os.pipe()
        self.planted = 0

    def run(self):
        import select
        while True:
            r, _, _ = select.select([self.fd, self.stop_r], [], [], 30)
            if self.stop_r in r or not r:
                return
            os.read(self.fd, 4096)
            if not os.path.exists(self.path):
                with open(self.path, "w") as f:
                    f.write(PRIVATE_KEY)
                self.planted += 1

    def stop(self):
        os.write(self.stop_w, b"x")
        self.join(10)
        os.close(self.fd)


class RacingTreeTest(Scratch):
    def test_key_planted_after_listing_never_reaches_the_ssh_image(self):
        spec = self.make_vm(ssh=True)
        ssh = spec["sources"]["ssh"]
        for f in ("id_ed25519", "backup-of-key"):
            os.remove(os.path.join(ssh, f))
        specfile = self.write_spec(spec)
        planter = KeyPlanter(ssh, "id_rsa")
        planter.start()
        try:
            for i in range(8):
                if os.path.exists(os.path.join(ssh, "id_rsa")):
                    os.remove(os.path.join(ssh, "id_rsa"))
                p = run("export", "--spec", specfile, "--json", check=False)
                self.assertIn(p.returncode, (0, 2), p.stderr)
                if p.returncode == 0:
                    img = next(x for x in json.loads(p.stdout)["images"] if x["role"] == "ssh")["path"]
                    back = read_back(img, self.path(f"rd-{i}"))
                    self.assertNotIn("id_rsa", back, f"run {i}: a private key planted after the listing is in ssh.img")
        finally:
            planter.stop()
        self.assertGreater(planter.planted, 0, "the planter never saw the directory opened")
        # The key is gone: an export now is clean, whatever the cache holds.
        os.remove(os.path.join(ssh, "id_rsa"))
        out = json.loads(run("export", "--spec", specfile, "--json").stdout)
        img = next(x for x in out["images"] if x["role"] == "ssh")["path"]
        self.assertEqual(sorted(read_back(img, self.path("rd-final"))), ["authorized_keys", "id_ed25519.pub"])

    def test_config_changed_during_the_build_is_not_cached(self):
        spec = self.make_vm()
        specfile = self.write_spec(spec)
        victim = os.path.join(spec["sources"]["config"], "with space.nix")
        # The hook runs after the tree was listed, as the config image starts to be read.
        hook = self.path("hook")
        with open(hook, "w") as f:
            f.write(f"#!/bin/sh\n[ \"$1 $2\" = 'build config' ] && echo '# changed under the build' >> '{victim}'\n"
                    "exit 0\n")
        os.chmod(hook, 0o755)
        env = dict(os.environ, SPROUT_TEST_HOOK=hook)
        p = run("export", "--spec", specfile, check=False, env=env)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertRegex(p.stderr, r"with space\.nix: changed since it was listed; nothing was exported")
        cached = [n for n in os.listdir(self.path("cache")) if n.startswith("config-")]
        self.assertEqual(cached, [], "an image of a tree that changed during its build was cached")
        # Unchanged now: the export works and the image holds the change.
        out = json.loads(run("export", "--spec", specfile, "--json").stdout)
        img = next(x for x in out["images"] if x["role"] == "config")["path"]
        back = read_back(img, self.path("rd"))
        self.assertEqual(back["with space.nix"][2], test_export.sha256(victim))


class ContentTest(Scratch):
    def test_extended_attributes_never_reach_an_image(self):
        spec = self.make_vm()
        f = os.path.join(spec["sources"]["config"], "with space.nix")
        os.setxattr(f, "user.sprout-test", b"must not be exported")
        slf = os.path.join(spec["sources"]["self"], "configuration.nix")
        os.setxattr(slf, "user.sprout-test", b"must not be exported")
        run("export", "--spec", self.write_spec(spec))
        for role, path in (("config", "/with space.nix"), ("self", "/configuration.nix")):
            img = os.path.join(spec["stateDir"], f"{role}.img")
            p = subprocess.run(["debugfs", "-R", f'ea_list "{path}"', img], capture_output=True, text=True)
            self.assertNotIn("sprout-test", p.stdout + p.stderr, f"{role}: an xattr was exported")

    def test_hard_links_are_part_of_the_digest(self):
        spec = self.make_vm()
        cfg = spec["sources"]["config"]
        a, b = os.path.join(cfg, "a.nix"), os.path.join(cfg, "b.nix")
        with open(a, "w") as f:
            f.write("{ }\n")
        os.link(a, b)
        specfile = self.write_spec(spec)
        linked = json.loads(run("export", "--spec", specfile, "--json").stdout)
        os.remove(b)
        shutil.copy(a, b)  # same names, same contents, no longer one file
        copied = json.loads(run("export", "--spec", specfile, "--json").stdout)
        digest = lambda out: next(x for x in out["images"] if x["role"] == "config")["treeDigest"]  # noqa: E731
        self.assertNotEqual(digest(linked), digest(copied))


class PermissionTest(Scratch):
    def test_another_user_cannot_read_or_list_exported_images(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run as another user")
        spec = self.make_vm(ssh=True)
        run("export", "--spec", self.write_spec(spec))
        os.chmod(self.tmp, 0o755)
        img = os.path.realpath(os.path.join(spec["stateDir"], "ssh.img"))
        self.assertEqual(stat.S_IMODE(os.stat(img).st_mode), 0o400)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        p = subprocess.run(as_nobody + ["cat", img], capture_output=True)
        self.assertNotEqual(p.returncode, 0, "nobody read the ssh image")
        p = subprocess.run(as_nobody + ["ls", self.path("cache")], capture_output=True)
        self.assertNotEqual(p.returncode, 0, "nobody listed the cache")


if __name__ == "__main__":
    test_export.SPROUT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

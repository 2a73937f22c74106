#!/usr/bin/env python3
"""`sprout gc` and the user records of cached images (host/image/image_users.h).

Two spec directories share one cache. Export records every link to an image as
CACHE/users/IMAGE/HASH -> STATE/ROLE.img; gc of either directory keeps what any
recorded link still points at and drops the records that no longer count. Real
mkfs.ext4. An export that fails to link leaves CACHE/users as it was.
Usage: test_gc_users.py SPROUT_BINARY
"""
import hashlib
import os
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_export  # noqa: E402
from test_export import Scratch, run  # noqa: E402


def tree_state(root):
    """{relpath: (kind, mode, target-or-size)} of everything under root, links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            what = os.readlink(p) if stat.S_ISLNK(st.st_mode) else st.st_size
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), what)
    return out


class GcUsersTest(Scratch):
    def setUp(self):
        super().setUp()
        self.cache = self.path("cache")
        self.users = os.path.join(self.cache, "users")

    def vm(self, name, specdir, config=None):
        """A VM of spec dir `specdir` with its own small config tree (or `config`)."""
        if config is None:
            config = self.path("cfg-" + name)
            os.makedirs(config)
            self.set_config(name, "1")
        selfdir = self.path("self-" + name)
        os.makedirs(selfdir)
        with open(os.path.join(selfdir, "configuration.nix"), "w") as f:
            f.write("{ ... }: { networking.hostName = \"%s\"; }\n" % name)
        spec = {
            "version": 1, "name": name,
            "base": {"image": self.path("base.qcow2")},
            "stateDir": self.path("state", name),
            "cacheDir": self.cache,
            "gcRootDir": self.path("gcroots"),
            "sources": {"config": config, "self": selfdir},
        }
        os.makedirs(self.path(specdir), exist_ok=True)
        specfile = self.write_spec(spec, os.path.join(specdir, f"{name}.json"))
        run("export", "--spec", specfile)
        return spec, specfile

    def set_config(self, name, value):
        with open(self.path("cfg-" + name, "default.nix"), "w") as f:
            f.write("{ vm = \"%s\"; x = %s; }\n" % (name, value))  # no two VMs' trees alike

    def image(self, spec, role):
        """The cached image STATE/ROLE.img links to."""
        link = os.path.join(spec["stateDir"], f"{role}.img")
        target = os.readlink(link)
        self.assertEqual(os.path.dirname(target), self.cache)
        return target

    def records(self, image):
        """{record name: link} of an image's users."""
        d = os.path.join(self.users, os.path.basename(image))
        if not os.path.isdir(d):
            return {}
        return {n: os.readlink(os.path.join(d, n)) for n in os.listdir(d)}

    def gc(self, specdir, *extra):
        return run("gc", "--spec-dir", self.path(specdir), *extra)

    def stale_image(self):
        p = os.path.join(self.cache, "config-" + "0" * 32 + ".ext4")
        with open(p, "w") as f:
            f.write("old")
        os.chmod(p, 0o400)
        return p

    def test_export_records_each_link_as_a_user(self):
        spec, _ = self.vm("b", "B")
        self.assertEqual(stat.S_IMODE(os.stat(self.users).st_mode), 0o700)
        for role in ("config", "self"):
            link = os.path.join(spec["stateDir"], f"{role}.img")
            image = self.image(spec, role)
            name = hashlib.sha256(link.encode()).hexdigest()[:32]
            self.assertEqual(self.records(image), {name: link})
            self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(os.path.join(
                self.users, os.path.basename(image), name))).st_mode), 0o700)
            self.assertEqual(stat.S_IMODE(os.stat(image).st_mode), 0o400)
        self.assertEqual(stat.S_IMODE(os.stat(self.cache).st_mode), 0o711)

    def test_gc_of_one_dir_keeps_the_images_of_another_dirs_vms(self):
        a, _ = self.vm("a", "A")
        b, _ = self.vm("b", "B")
        stale = self.stale_image()
        images = [self.image(s, r) for s in (a, b) for r in ("config", "self")]
        p = self.gc("A")
        for img in images:
            self.assertTrue(os.path.exists(img), f"gc of A removed {img}, which a VM links to:\n{p.stdout}")
        self.assertFalse(os.path.exists(stale), "gc kept an image no link uses")
        self.assertIn("removed 1 image(s)", p.stdout)
        self.gc("B")
        for img in images:
            self.assertTrue(os.path.exists(img), f"gc of B removed {img}")

    def test_gc_finds_the_spec_directory_as_every_command_does(self):
        # $SPROUT_SPEC_DIR, when --spec-dir is not given (it was ignored: gc read
        # /etc/sprout/vms, a directory that is not there).
        a, _ = self.vm("a", "A")
        stale = self.stale_image()
        images = [self.image(a, r) for r in ("config", "self")]
        p = run("gc", env=dict(os.environ, SPROUT_SPEC_DIR=self.path("A")))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(stale), f"gc kept an image no link uses:\n{p.stdout}{p.stderr}")
        for img in images:
            self.assertTrue(os.path.exists(img), f"gc removed {img}, which a VM of $SPROUT_SPEC_DIR links to")

    def test_a_changed_tree_frees_the_old_image_for_a_gc_of_either_dir(self):
        self.vm("a", "A")
        b, bfile = self.vm("b", "B")
        link = os.path.join(b["stateDir"], "config.img")
        for n, gc_dir in enumerate(("A", "B")):
            old = self.image(b, "config")
            self.set_config("b", str(n + 2))
            run("export", "--spec", bfile)
            new = self.image(b, "config")
            self.assertNotEqual(old, new)
            # The old image's record stays until gc sees that its link points elsewhere.
            self.assertEqual(list(self.records(old).values()), [link])
            self.gc(gc_dir)
            self.assertFalse(os.path.exists(old), f"gc of {gc_dir} kept an image that lost its only user")
            self.assertFalse(os.path.exists(os.path.join(self.users, os.path.basename(old))))
            self.assertTrue(os.path.exists(new), f"gc of {gc_dir} removed the image b links to now")
            self.assertTrue(os.path.exists(self.image(b, "self")))
            self.assertEqual(list(self.records(new).values()), [link])

    def test_a_state_directory_deleted_by_hand_frees_its_images(self):
        a, _ = self.vm("a", "A")
        b, _ = self.vm("b", "B", config=a["sources"]["config"])
        c, _ = self.vm("c", "B", config=a["sources"]["config"])
        shared = self.image(a, "config")
        self.assertEqual({self.image(b, "config"), self.image(c, "config")}, {shared})
        self.assertEqual(len(self.records(shared)), 3)
        c_self, b_self = self.image(c, "self"), self.image(b, "self")
        subprocess.run(["rm", "-rf", c["stateDir"]], check=True)  # c's spec stays: only its links are gone
        self.gc("A")
        self.assertFalse(os.path.exists(c_self), "gc kept an image whose only link was deleted")
        self.assertEqual(self.records(c_self), {})
        self.assertTrue(os.path.exists(b_self), "gc of A removed an image b (of B) links to")
        self.assertTrue(os.path.exists(shared))
        self.assertEqual(sorted(self.records(shared).values()),
                         sorted(os.path.join(s["stateDir"], "config.img") for s in (a, b)))

    def test_the_users_directory_survives_gc_and_dry_run_removes_nothing(self):
        self.vm("a", "A")
        b, _ = self.vm("b", "B")
        stale = self.stale_image()
        b_images = [self.image(b, r) for r in ("config", "self")]
        before = tree_state(self.cache)
        p = self.gc("A", "--dry-run")
        self.assertIn(f"would remove image {stale}", p.stdout)
        for img in b_images:
            self.assertNotIn(img, p.stdout, "dry run: gc of A would remove an image b (of B) links to")
        self.assertEqual(tree_state(self.cache), before)
        subprocess.run(["rm", "-rf", b["stateDir"]], check=True)
        p = self.gc("A", "--dry-run")
        for img in b_images:
            self.assertIn(f"would remove image {img}", p.stdout)
        self.assertIn("would drop 2 stale user record(s)", p.stdout)
        self.assertEqual(tree_state(self.cache), before, "--dry-run changed the cache")
        self.gc("A")
        st = os.lstat(self.users)
        self.assertTrue(stat.S_ISDIR(st.st_mode), "gc removed the users directory (or took it for an image)")
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        for img in b_images + [stale]:
            self.assertFalse(os.path.exists(img))
        self.assertEqual(run("gc", "--spec-dir", self.path("A")).returncode, 0)
        self.assertTrue(os.path.isdir(self.users))

    def test_gc_records_links_made_before_user_records(self):
        # Images linked by an older sprout have no records: a gc keeps them only for the
        # specs it is given (and records those links); an unrecorded image none of them
        # uses is removed, as before user records existed.
        a, _ = self.vm("a", "A")
        b, _ = self.vm("b", "B")
        subprocess.run(["rm", "-rf", self.users], check=True)
        a_images = [self.image(a, r) for r in ("config", "self")]
        b_images = [self.image(b, r) for r in ("config", "self")]
        self.gc("A")
        for role in ("config", "self"):
            link = os.path.join(a["stateDir"], f"{role}.img")
            self.assertEqual(list(self.records(os.readlink(link)).values()), [link])
        for img in b_images:
            self.assertFalse(os.path.exists(img), "an unrecorded image the given specs do not use is removed")
        self.gc("B")
        for img in a_images:
            self.assertTrue(os.path.exists(img), "gc of B removed an image a's links (recorded by gc of A) use")

    def spec_sharing_config(self, a, state, tag):
        """The spec file of VM x in `state`: a's config tree (its image is cached) and a
        self tree of its own (an image to build)."""
        selfdir = self.path("self-" + tag)
        os.makedirs(selfdir)
        with open(os.path.join(selfdir, "configuration.nix"), "w") as f:
            f.write(f"# {tag}\n")
        spec = {"version": 1, "name": "x", "base": {"image": self.path("base.qcow2")}, "stateDir": state,
                "cacheDir": self.cache, "sources": {"config": a["sources"]["config"], "self": selfdir}}
        return self.write_spec(spec, tag + ".json")

    def test_an_export_that_cannot_link_records_nothing(self):
        # A state directory that takes no links (made immutable, or in sysfs): the export
        # fails (1) naming it before it builds or records anything, so the cache,
        # CACHE/users included, is as it was.
        a, _ = self.vm("a", "A")
        immutable = self.path("state", "immutable")
        os.makedirs(immutable)
        states = ["/sys/kernel"]  # sysfs makes no symlinks, not even root's
        if subprocess.run(["chattr", "+i", immutable], capture_output=True).returncode == 0:
            states.append(immutable)
        else:
            print("chattr +i not supported here: the immutable directory is not tried", file=sys.stderr)
        try:
            for n, state in enumerate(states):
                with self.subTest(state=state):
                    specfile = self.spec_sharing_config(a, state, f"x{n}")
                    before = tree_state(self.cache)
                    p = run("export", "--spec", specfile, check=False)
                    self.assertEqual(tree_state(self.cache), before)
                    self.assertEqual(p.returncode, 1, p.stderr)
                    self.assertIn(f"{state}: cannot make the disk links in this state directory", p.stderr)
        finally:
            subprocess.run(["chattr", "-i", immutable], capture_output=True)

    def test_a_record_is_undone_when_its_link_cannot_be_made(self):
        # The state directory stops taking links after the export checked it (made
        # immutable as an image is built, from the test hook): each record is made
        # before its link, and removed again when the link cannot be made.
        a, _ = self.vm("a", "A")
        state = self.path("state", "x")
        os.makedirs(state)
        if subprocess.run(["chattr", "+i", state], capture_output=True).returncode != 0:
            self.skipTest("chattr +i is not supported here")
        subprocess.run(["chattr", "-i", state], check=True)
        specfile = self.spec_sharing_config(a, state, "x")
        hook = self.path("hook")
        with open(hook, "w") as f:
            f.write(f'#!/bin/sh\n[ "$1" = build ] && chattr +i {state}\nexit 0\n')
        os.chmod(hook, 0o755)
        before = tree_state(self.users)
        try:
            p = run("export", "--spec", specfile, check=False, env=dict(os.environ, SPROUT_TEST_HOOK=hook))
        finally:
            subprocess.run(["chattr", "-i", state], capture_output=True)
        self.assertEqual(tree_state(self.users), before)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(state, p.stderr)
        # No link is left; the identity, minted before any image is built, is the VM's
        # own and stays (minted once, whatever becomes of this export).
        self.assertEqual(sorted(os.listdir(state)), ["identity", "identity.lock"])

    def test_gc_removes_leftover_and_orphaned_records(self):
        a, _ = self.vm("a", "A")
        img = self.image(a, "config")
        gone = subprocess.Popen(["true"])
        gone.wait()
        leftover = os.path.join(self.users, os.path.basename(img), f".deadbeef.tmp-{gone.pid}-1")
        os.symlink("/nowhere", leftover)
        orphan = os.path.join(self.users, "config-" + "1" * 32 + ".ext4")  # its image is gone
        os.mkdir(orphan, 0o700)
        os.symlink(os.path.join(a["stateDir"], "config.img"), os.path.join(orphan, "x" * 32))
        self.gc("A")
        self.assertFalse(os.path.lexists(leftover))
        self.assertFalse(os.path.lexists(orphan))
        self.assertTrue(os.path.exists(img))
        self.assertEqual(len(self.records(img)), 1)


if __name__ == "__main__":
    test_export.SPROUT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

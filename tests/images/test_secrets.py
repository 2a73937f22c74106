#!/usr/bin/env python3
"""A VM's identity and secrets (issue 28), with the real `sprout`, the real ssh-keygen,
and every disk read back with debugfs.

- The first export mints the VM's identity in STATE/identity (0700, files 0600): an
  ed25519 host key that `ssh-keygen -l` fingerprints as `sprout identity` and
  `sprout list --json` (sshHostKeys) say, and a machine-id. Later exports keep it.
- The secrets disk STATE/secrets.img (0400, a regular file, never in the cache): root
  directory, identity/ and secrets/ 0700, the private key and the secrets 0400, all
  root's; it holds exactly the key pair, the machine-id and the secrets' bytes. It is
  rebuilt only when what it holds changes.
- A secret's bytes appear nowhere else: not in the cache (images, digest records), not
  in the self disk's manifest, not in the export's output, not on qemu's command line
  (which carries the machine-id in an SMBIOS type 11 string and the disk's path).
- A changed secret is a new generation (the manifest's keyed disks.secrets.digest); a
  rotated host key is not, but the disk carries the new key and the old one is kept.
- Bad input: a symlink out of the directory, a FIFO, a subdirectory, a file over the
  limit, a directory in the Nix store: exit 2, named, and nothing written. An identity
  that cannot be read (incomplete) is a runtime error (exit 1), never a new key.
- The identity survives `baseChange: recreate` (a new overlay); `destroy` keeps it
  unless --delete-disks.
Usage: test_secrets.py SPROUT_BINARY
"""
import json
import os
import stat
import subprocess
import sys
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_export  # noqa: E402
from test_export import Scratch, run  # noqa: E402


def debugfs(image, request):
    return subprocess.run(["debugfs", "-R", request, image], capture_output=True, check=True).stdout


def image_mode(image, path):
    out = debugfs(image, f"stat {path}").decode()
    mode = int(out.split("Mode:")[1].split()[0], 8)
    user = int(out.split("User:")[1].split()[0])
    return mode, user


def text(path):
    with open(path) as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def files_under(root):
    for d, _, files in os.walk(root):
        for f in files:
            yield os.path.join(d, f)


class SecretsTest(Scratch):
    def setUp(self):
        super().setUp()
        self.make_base()
        self.marker = ("S3CRET-" + uuid.uuid4().hex).encode()
        self.secrets = self.path("secrets")
        os.makedirs(self.secrets, mode=0o700)
        self.put("db-password", self.marker)
        self.put("api.token", b"token-" + self.marker[::-1])
        self.spec = self.make_vm()
        self.spec["sources"]["secrets"] = self.secrets
        self.specfile = self.write_spec(self.spec)
        self.state = self.spec["stateDir"]

    def put(self, name, data):
        with open(os.path.join(self.secrets, name), "wb") as f:
            f.write(data)

    def export(self):
        p = run("export", "--spec", self.specfile, "--json")
        self.assertNotIn(self.marker.decode(), p.stdout + p.stderr)
        out = json.loads(p.stdout)
        return out, {i["role"]: i for i in out["images"]}

    def manifest(self, imgs):
        return json.loads(debugfs(imgs["self"]["image"], "cat /sprout-manifest.json"))

    def test_identity_and_secrets_disk(self):
        out, imgs = self.export()
        ident = os.path.join(self.state, "identity")
        self.assertEqual(stat.S_IMODE(os.stat(ident).st_mode), 0o700)
        for f in os.listdir(ident):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(ident, f)).st_mode), 0o600, f)
        listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f",
                                 os.path.join(ident, "ssh_host_ed25519_key.pub")],
                                capture_output=True, text=True, check=True).stdout.split()[1]
        shown = json.loads(run("identity", "--spec", self.specfile, "--json").stdout)
        self.assertEqual(shown["sshHostKeys"][0]["fingerprint"], listed)
        self.assertEqual(shown["sshHostKeys"][0]["type"], "ssh-ed25519")
        row = json.loads(run("list", "--spec", self.specfile, "--json").stdout)[0]
        self.assertEqual(row["sshHostKeys"][0]["fingerprint"], listed)
        machine_id = text(os.path.join(ident, "machine-id")).strip()
        self.assertEqual(shown["machineId"], machine_id)

        # The secrets disk: the VM's own file, 0400, not a link into the cache.
        disk = imgs["secrets"]["path"]
        self.assertEqual(disk, os.path.join(self.state, "secrets.img"))
        st = os.lstat(disk)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o400)
        for path, mode in (("/", 0o700), ("/identity", 0o700), ("/secrets", 0o700),
                           ("/secrets/db-password", 0o400), ("/secrets/api.token", 0o400),
                           ("/identity/ssh_host_ed25519_key", 0o400),
                           ("/identity/ssh_host_ed25519_key.pub", 0o444), ("/identity/machine-id", 0o444)):
            self.assertEqual(image_mode(disk, path), (mode, 0), path)
        self.assertEqual(debugfs(disk, "cat /secrets/db-password"), self.marker)
        with open(os.path.join(ident, "ssh_host_ed25519_key"), "rb") as f:
            self.assertEqual(debugfs(disk, "cat /identity/ssh_host_ed25519_key"), f.read())
        self.assertEqual(debugfs(disk, "cat /identity/machine-id").decode().strip(), machine_id)
        names = debugfs(disk, "ls -p /secrets").decode()
        self.assertIn("/db-password/", names)
        self.assertIn("/api.token/", names)

        # The bytes are nowhere else: cache, manifest, qemu's command line.
        for f in files_under(self.spec["cacheDir"]):
            with open(f, "rb") as fh:
                self.assertNotIn(self.marker, fh.read(), f)
        if os.path.isdir("/nix/store"):  # the store is world-readable: nothing of a secret may go there
            g = subprocess.run(["grep", "-rlF", "--", self.marker.decode(), "/nix/store"], capture_output=True,
                               text=True, timeout=600)
            self.assertEqual(g.stdout, "", "the secret is in the Nix store")
        m = self.manifest(imgs)
        self.assertRegex(m["disks"]["secrets"]["digest"], "^[0-9a-f]{64}$")
        self.assertNotIn(self.marker.decode(), json.dumps(m))
        cmd = run("run", "--spec", self.specfile, "--print-command").stdout
        self.assertNotIn(self.marker.decode(), cmd)
        self.assertIn(f"type=11,value=io.systemd.credential:system.machine_id={machine_id}", cmd)
        self.assertIn(f"file={disk},if=none,readonly=on,format=raw,id=sprout-secrets", cmd)

        # Unchanged: the same identity, disk and generation, nothing rebuilt.
        out2, imgs2 = self.export()
        self.assertEqual(out2["generation"], out["generation"])
        self.assertTrue(imgs2["secrets"]["cacheHit"])
        self.assertEqual(os.stat(disk).st_ino, st.st_ino)

        # A changed secret: a new disk and a new generation.
        self.put("db-password", self.marker + b"-2")
        out3, imgs3 = self.export()
        self.assertNotEqual(out3["generation"], out["generation"])
        self.assertFalse(imgs3["secrets"]["cacheHit"])
        self.assertEqual(debugfs(disk, "cat /secrets/db-password"), self.marker + b"-2")

        # A rotated host key: the disk gets the new key, the generation stays.
        rotated = json.loads(run("identity", "--spec", self.specfile, "--rotate", "--json").stdout)
        self.assertNotEqual(rotated["sshHostKeys"][0]["fingerprint"], listed)
        self.assertEqual(rotated["machineId"], machine_id)
        out4, _ = self.export()
        self.assertEqual(out4["generation"], out3["generation"])
        self.assertEqual(debugfs(disk, "cat /identity/ssh_host_ed25519_key.pub").decode().strip(),
                         rotated["sshHostKeys"][0]["publicKey"])
        old = os.listdir(os.path.join(ident, "old"))
        self.assertEqual(len(old), 1)
        self.assertEqual(subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f",
                                         os.path.join(ident, "old", old[0], "ssh_host_ed25519_key.pub")],
                                        capture_output=True, text=True, check=True).stdout.split()[1], listed)

    def test_the_identity_survives_a_recreated_overlay(self):
        run("prepare", "--spec", self.specfile)
        before = json.loads(run("identity", "--spec", self.specfile, "--json").stdout)
        disk = os.path.join(self.state, "secrets.img")
        key = debugfs(disk, "cat /identity/ssh_host_ed25519_key")
        self.make_base("base2.qcow2")
        spec = dict(self.spec, base={"image": self.path("base2.qcow2")}, baseChange="recreate")
        r = json.loads(run("prepare", "--spec", self.write_spec(spec), "--json").stdout)
        self.assertTrue(r["overlay"]["movedAside"], r["overlay"])  # a new overlay: a first boot again
        self.assertEqual(json.loads(run("identity", "--spec", self.specfile, "--json").stdout), before)
        self.assertEqual(debugfs(disk, "cat /identity/ssh_host_ed25519_key"), key)

    def test_bad_secrets_are_refused_and_nothing_is_written(self):
        outside = self.path("outside")
        with open(outside, "wb") as f:
            f.write(b"not yours")
        cases = [
            ("symlink", lambda p: os.symlink(outside, p), "is a symlink"),
            ("fifo", lambda p: os.mkfifo(p), "is a FIFO"),
            ("subdir", lambda p: os.mkdir(p), "is a directory"),
            ("big", lambda p: write(p, b"x" * (1024 * 1024 + 1)), "larger than 1024 KiB"),
        ]
        for name, make, why in cases:
            path = os.path.join(self.secrets, name)
            make(path)
            p = run("export", "--spec", self.specfile, check=False)
            self.assertEqual(p.returncode, 2, (name, p.stderr))
            self.assertIn(f"{path}: {why}", p.stderr)
            self.assertFalse(os.path.exists(self.state), f"{name}: the state directory was made")
            os.rmdir(path) if name == "subdir" else os.unlink(path)
        # A secrets directory inside an exported tree (or holding one) would put the
        # secrets on a cached, shared disk.
        for key, inside in (("config", os.path.join(self.spec["sources"]["config"], "secrets")),
                            ("self", os.path.join(self.spec["sources"]["self"], "secrets"))):
            os.makedirs(inside)
            write(os.path.join(inside, "pw"), self.marker)
            overlapping = dict(self.spec, sources=dict(self.spec["sources"], secrets=inside))
            p = run("export", "--spec", self.write_spec(overlapping, "overlap.json"), check=False)
            self.assertEqual(p.returncode, 2, p.stderr)
            # (self lies inside config here: config is the first tree it overlaps)
            self.assertIn(f"{inside} (sources.secrets) and {self.spec['sources']['config']} (sources.config) overlap",
                          p.stderr)
            self.assertFalse(os.path.exists(self.state), f"{key}: the state directory was made")
            self.assertFalse(os.path.exists(self.spec["cacheDir"]) and any(
                self.marker in open(f, "rb").read() for f in files_under(self.spec["cacheDir"])))
            os.unlink(os.path.join(inside, "pw"))
            os.rmdir(inside)
        store = dict(self.spec)
        store["sources"] = dict(self.spec["sources"], secrets="/nix/store/0000-secrets")
        p = run("export", "--spec", self.write_spec(store, "store.json"), check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("sources.secrets", p.stderr)
        self.assertIn("Nix store", p.stderr)

    def test_an_unreadable_identity_is_an_error_never_a_new_key(self):
        self.export()
        ident = os.path.join(self.state, "identity")
        pub = text(os.path.join(ident, "ssh_host_ed25519_key.pub"))
        os.unlink(os.path.join(ident, "machine-id"))
        p = run("export", "--spec", self.specfile, check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(os.path.join(ident, "machine-id"), p.stderr)
        self.assertIn("never mints a new identity", p.stderr)
        self.assertEqual(text(os.path.join(ident, "ssh_host_ed25519_key.pub")), pub)

    def test_destroy_keeps_an_identity_unless_asked(self):
        self.export()
        p = run("destroy", "--spec", self.specfile, check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("identity", p.stderr)
        self.assertTrue(os.path.isdir(os.path.join(self.state, "identity")))
        run("destroy", "--spec", self.specfile, "--delete-disks")
        self.assertFalse(os.path.exists(self.state))


if __name__ == "__main__":
    test_export.SPROUT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

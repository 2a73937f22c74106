#!/usr/bin/env python3
"""Image tests for `sprout export` / `prepare` / `gc` with the real tools.

Every exported image is read back with `debugfs -R "rdump / DIR"` and compared with
its source exactly (names, types, modes, contents, symlink targets); overlays are
real `qemu-img` files. Usage: test_export.py SPROUT_BINARY
"""
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

SPROUT = None


def run(*args, check=True, **kw):
    p = subprocess.run([SPROUT, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"sprout {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def snapshot(root):
    """{relpath: (kind, mode, content-digest-or-target)} of a tree, symlinks not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), None)
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), sha256(p))
    return out


def read_back(image, dest):
    os.makedirs(dest)
    subprocess.run(["debugfs", "-R", f"rdump / {dest}", image], check=True, capture_output=True, timeout=300)
    root = dest
    shutil.rmtree(os.path.join(root, "lost+found"), ignore_errors=True)
    return snapshot(root)


def without_added_mount_points(back, source):
    """The config image gains an empty hosts/self (the self disk's mount point) when the
    tree lacks it: check those and drop them, so the rest compares exactly."""
    for rel in ("hosts/self", "hosts"):
        if rel not in source and rel in back:
            assert back[rel] == ("d", 0o755, None), (rel, back[rel])
            del back[rel]
    return back


def debugfs_stat(image, path):
    return subprocess.run(["debugfs", "-R", f"stat {path}", image], capture_output=True, text=True,
                          check=True).stdout


class Scratch(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sprout-images-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def make_tree(self, root, files=50):
        os.makedirs(os.path.join(root, "nested", "deeper", "deepest"))
        os.makedirs(os.path.join(root, "empty dir"))
        for i in range(files):
            with open(os.path.join(root, "nested", f"f{i:04d}.nix"), "w") as f:
                f.write(f"{{ x = {i}; }}\n")
        with open(os.path.join(root, "with space.nix"), "w") as f:
            f.write("spaces\n")
        with open(os.path.join(root, "caf\u00e9-\U0001F331.nix"), "w") as f:
            f.write("utf-8 name\n")
        secret = os.path.join(root, "nested", "secret")
        with open(secret, "w") as f:
            f.write("0600\n")
        os.chmod(secret, 0o600)
        script = os.path.join(root, "nested", "deeper", "run.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(script, 0o755)
        os.symlink("../with space.nix", os.path.join(root, "nested", "link"))
        os.symlink("/etc/passwd", os.path.join(root, "abs-link"))  # kept as a link, never followed
        os.symlink("x" * 100, os.path.join(root, "long-link"))  # not a fast symlink
        return root

    def make_vm(self, name="web", ssh=False):
        cfg = self.make_tree(self.path("cfg"))
        os.makedirs(self.path("cfg", "hosts", name))
        with open(self.path("cfg", "hosts", name, "configuration.nix"), "w") as f:
            f.write("{ ... }: { networking.hostName = \"%s\"; }\n" % name)
        spec = {
            "version": 1, "name": name,
            "base": {"image": self.path("base.qcow2")},
            "stateDir": self.path("state", name),
            "cacheDir": self.path("cache"),
            "gcRootDir": self.path("gcroots"),
            "sources": {"config": cfg, "self": self.path("cfg", "hosts", name)},
        }
        if ssh:
            spec["sources"]["ssh"] = self.make_ssh()
        return spec

    def make_ssh(self):
        d = self.path("ssh")
        os.makedirs(d)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, "id_ed25519")],
                       check=True)
        shutil.copy(os.path.join(d, "id_ed25519.pub"), os.path.join(d, "authorized_keys"))
        shutil.copy(os.path.join(d, "id_ed25519"), os.path.join(d, "backup-of-key"))  # private by content only
        return d

    def write_spec(self, spec, name=None):
        p = self.path(name or f"{spec['name']}.json")
        with open(p, "w") as f:
            json.dump(spec, f)
        return p

    def make_base(self, name="base.qcow2", size="64M"):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", self.path(name), size], check=True)
        return self.path(name)


class ExportTest(Scratch):
    def test_round_trip_is_exact(self):
        spec = self.make_vm()
        out = json.loads(run("export", "--spec", self.write_spec(spec), "--json").stdout)
        roles = {i["role"]: i for i in out["images"]}
        self.assertEqual(set(roles), {"config", "self", "secrets"})  # secrets: the VM's own (test_secrets.py)
        source = snapshot(spec["sources"]["config"])
        back = read_back(roles["config"]["path"], self.path("rd-config"))
        self.assertIn("hosts/self", back)  # the self disk's mount point, added
        self.assertEqual(without_added_mount_points(back, source), source)
        self_back = read_back(roles["self"]["path"], self.path("rd-self"))
        manifest = self_back.pop("sprout-manifest.json")
        self.assertEqual(manifest[1], 0o444)
        self.assertEqual(self_back, snapshot(spec["sources"]["self"]))
        text = subprocess.run(["debugfs", "-R", "cat /sprout-manifest.json", roles["self"]["path"]],
                              capture_output=True, text=True, check=True).stdout
        m = json.loads(text)
        self.assertEqual(m["name"], "web")
        self.assertEqual(m["generation"], out["generation"])
        self.assertEqual(m["disks"]["config"]["digest"], roles["config"]["treeDigest"])

    def test_image_properties(self):
        spec = self.make_vm()
        run("export", "--spec", self.write_spec(spec))
        img = os.path.join(spec["stateDir"], "config.img")
        info = subprocess.run(["dumpe2fs", "-h", img], capture_output=True, text=True, check=True).stdout
        self.assertIn("Filesystem volume name:   sprout-config", info)
        self.assertNotIn("has_journal", info)
        st = debugfs_stat(img, "/nested/secret")
        self.assertIn("User:     0   Group:     0", st)
        self.assertIn("mtime: 0x00000001", st)
        self.assertFalse(os.access(os.path.realpath(img), os.W_OK) and os.geteuid() != 0)
        self.assertEqual(stat.S_IMODE(os.stat(img).st_mode), 0o400)
        self.assertEqual(stat.S_IMODE(os.stat(self.path("cache")).st_mode), 0o711)

    def test_deterministic_and_cached(self):
        spec = self.make_vm()
        specfile = self.write_spec(spec)
        first = json.loads(run("export", "--spec", specfile, "--json").stdout)
        digests = {i["role"]: sha256(i["image"]) for i in first["images"]}
        self.assertFalse(any(i["cacheHit"] for i in first["images"]))
        second = json.loads(run("export", "--spec", specfile, "--json").stdout)
        self.assertTrue(all(i["cacheHit"] for i in second["images"]))
        # Rebuild from scratch after touching every timestamp: byte-identical.
        shutil.rmtree(spec["cacheDir"])
        for dirpath, _, files in os.walk(spec["sources"]["config"]):
            for f in files:
                os.utime(os.path.join(dirpath, f), (12345, 12345), follow_symlinks=False)
        third = json.loads(run("export", "--spec", specfile, "--json").stdout)
        self.assertEqual({i["role"]: sha256(i["image"]) for i in third["images"]}, digests)

    def test_shared_config_image_between_vms(self):
        spec = self.make_vm("web")
        other = dict(spec, name="db", stateDir=self.path("state", "db"))
        os.makedirs(self.path("cfg", "hosts", "db"))
        open(self.path("cfg", "hosts", "db", "configuration.nix"), "w").write("# db\n")
        other["sources"] = dict(spec["sources"], self=self.path("cfg", "hosts", "db"))
        a = json.loads(run("export", "--spec", self.write_spec(spec), "--json").stdout)
        b = json.loads(run("export", "--spec", self.write_spec(other), "--json").stdout)
        ca = next(i for i in a["images"] if i["role"] == "config")
        cb = next(i for i in b["images"] if i["role"] == "config")
        self.assertEqual(ca["image"], cb["image"])
        self.assertTrue(cb["cacheHit"])
        self.assertNotEqual(a["generation"], b["generation"])

    def test_change_gives_new_image_and_generation(self):
        spec = self.make_vm()
        specfile = self.write_spec(spec)
        a = json.loads(run("export", "--spec", specfile, "--json").stdout)
        os.chmod(os.path.join(spec["sources"]["config"], "nested", "secret"), 0o640)
        b = json.loads(run("export", "--spec", specfile, "--json").stdout)
        self.assertNotEqual(a["generation"], b["generation"])
        self.assertFalse(next(i for i in b["images"] if i["role"] == "config")["cacheHit"])

    def test_thousands_of_files_and_a_large_one(self):
        root = self.make_tree(self.path("big"), files=3000)
        with open(os.path.join(root, "large.bin"), "wb") as f:
            f.write(os.urandom(1 << 20) * 24)  # 24 MiB
        out = json.loads(run("export", "--name", "big", "--config", root, "--self", root,
                             "--out", self.path("out"), "--json").stdout)
        img = next(i for i in out["images"] if i["role"] == "config")["path"]
        source = snapshot(root)
        self.assertEqual(without_added_mount_points(read_back(img, self.path("rd")), source), source)

    def test_sparse_one_gib_tree_fits(self):
        root = self.path("gib")
        os.makedirs(root)
        with open(os.path.join(root, "huge"), "wb") as f:
            f.truncate(1 << 30)
        out = json.loads(run("export", "--name", "gib", "--config", root, "--self", root,
                             "--out", self.path("out"), "--json").stdout)
        img = next(i for i in out["images"] if i["role"] == "config")["path"]
        st = debugfs_stat(img, "/huge")
        self.assertIn("Size: 1073741824", st)

    def test_ssh_filter_with_real_private_key(self):
        spec = self.make_vm(ssh=True)
        specfile = self.write_spec(spec)
        p = run("export", "--spec", specfile, "--json")
        out = json.loads(p.stdout)
        self.assertEqual(sorted(x["path"] for x in out["excluded"]), ["backup-of-key", "id_ed25519"])
        self.assertIn("private key", p.stderr)
        img = next(i for i in out["images"] if i["role"] == "ssh")["path"]
        back = read_back(img, self.path("rd-ssh"))
        self.assertEqual(sorted(back), ["authorized_keys", "id_ed25519.pub"])
        # Only by explicit request do private keys reach the image.
        spec["sources"]["allowPrivateKeys"] = True
        out = json.loads(run("export", "--spec", self.write_spec(spec), "--json").stdout)
        img = next(i for i in out["images"] if i["role"] == "ssh")["path"]
        self.assertIn("id_ed25519", read_back(img, self.path("rd-ssh2")))


class ByNameTest(Scratch):
    """Every command that takes a VM takes its NAME, found as NAME.json in --spec-dir,
    else $SPROUT_SPEC_DIR, else /etc/sprout/vms; --spec FILE still works."""

    def test_names_in_the_spec_directory(self):
        self.make_base()
        spec = self.make_vm()
        os.makedirs(self.path("specs"))
        self.write_spec(spec, os.path.join("specs", "web.json"))
        env = dict(os.environ, SPROUT_SPEC_DIR=self.path("specs"))
        p = run("prepare", "web", "--json", env=env)
        prepared = json.loads(p.stdout)
        self.assertEqual(prepared["name"], "web")
        self.assertTrue(os.path.exists(os.path.join(spec["stateDir"], "root.qcow2")))
        # What the disks hold now is recorded for `sprout list` (pending re-specialization).
        with open(os.path.join(spec["stateDir"], "export.json")) as f:
            self.assertEqual(json.load(f)["generation"], prepared["generation"])
        xml = run("domain-xml", "web", "--spec-dir", self.path("specs")).stdout
        self.assertIn("<name>web</name>", xml)
        self.assertEqual(run("export", "web", "--json", env=env).returncode, 0)
        # --spec-dir wins over the environment.
        p = run("prepare", "web", "--spec-dir", self.path("nowhere"), env=env, check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn(self.path("nowhere"), p.stderr)
        listed = json.loads(run("list", "--json", env=env).stdout)
        self.assertEqual([v["name"] for v in listed], ["web"])
        self.assertEqual(listed[0]["exportedGeneration"], prepared["generation"])
        self.assertTrue(listed[0]["overlay"]["exists"])
        self.assertEqual(sorted(listed[0]["disks"]), ["config", "secrets", "self"])
        self.assertFalse(listed[0]["pendingRespecialization"])
        text = run("list", env=env).stdout
        self.assertIn("web (qemu backend, never started)", text)
        self.assertIn("overlay", text)


class SshTest(Scratch):
    """`sprout ssh NAME`: ssh to the VM's forward of guest port 22 (loopback for a
    forward on every interface), each VM's host key kept apart; refused, naming the
    spec key, for a VM with no such forward. (The ssh program is a recorder here: no
    guest runs an sshd in this suite.)"""

    def test_the_command_it_runs_and_the_refusal(self):
        spec = self.make_vm()
        os.makedirs(self.path("specs"))
        spec["network"] = {"mode": "user", "forwards": [{"hostPort": 2201, "guestPort": 80},
                                                        {"hostAddress": "0.0.0.0", "hostPort": 2222, "guestPort": 22}]}
        self.write_spec(spec, os.path.join("specs", "web.json"))
        rec = self.path("ssh-args")
        fake = self.path("fake-ssh")
        with open(fake, "w") as f:
            f.write(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {rec}\n")
        os.chmod(fake, 0o755)
        # No identity yet: no key to check the guest by, so no ssh at all.
        p = run("ssh", "--spec-dir", self.path("specs"), "--ssh", fake, "web", check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("web has no identity yet", p.stderr)
        self.assertFalse(os.path.exists(rec))
        run("export", "--spec-dir", self.path("specs"), "web")
        p = run("ssh", "--spec-dir", self.path("specs"), "--ssh", fake, "--user", "admin", "web", "--", "uptime", "-p")
        self.assertEqual(p.returncode, 0, p.stderr)
        known = os.path.join(spec["stateDir"], "ssh_known_hosts")
        with open(rec) as f:
            self.assertEqual(f.read().split("\n")[:-1],
                             ["-p", "2222", "-o", "HostKeyAlias=sprout-web", "-o", f'UserKnownHostsFile="{known}"',
                              "-o", "GlobalKnownHostsFile=/dev/null", "-o", "KnownHostsCommand=none",
                              "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no",
                              "-o", "HostKeyAlgorithms=ssh-ed25519",
                              "admin@127.0.0.1", "uptime", "-p"])
        # The known_hosts holds the VM's own key, under its alias, and nothing else.
        with open(os.path.join(spec["stateDir"], "identity", "ssh_host_ed25519_key.pub")) as f:
            pub = f.read().strip()
        with open(known) as f:
            self.assertEqual(f.read(), f"sprout-web {pub}\n")
        spec["network"] = {"mode": "none"}
        self.write_spec(spec, os.path.join("specs", "web.json"))
        p = run("ssh", "--spec-dir", self.path("specs"), "--ssh", fake, "web", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("forwards no host port to its port 22", p.stderr)
        self.assertIn("network.forwards", p.stderr)


class CheckSpecTest(Scratch):
    def test_every_problem_of_every_file_in_one_run(self):
        self.make_base()
        import copy
        vm = self.make_vm()
        good = self.write_spec(vm, "good.json")
        spec = copy.deepcopy(vm)
        spec["base"]["image"] = self.path("no-base.qcow2")
        spec["sources"]["self"] = self.path("no-self")
        spec["kernel"] = {"path": self.path("no-vmlinuz")}
        missing = self.write_spec(spec, "missing.json")
        typo = self.write_spec(dict(vm, vcpu=2), "typo.json")
        p = run("check-spec", good, missing, typo, "--json", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        report = {os.path.basename(e["file"]): e for e in json.loads(p.stdout)}
        self.assertTrue(report["good.json"]["ok"])
        problems = report["missing.json"]["problems"]
        self.assertEqual(len(problems), 3, problems)
        for key in ("base.image", "sources.self", "kernel.path"):
            self.assertTrue(any(key in x for x in problems), (key, problems))
        self.assertIn('vcpu: unknown key (did you mean "vcpus"?)', report["typo.json"]["problems"][0])
        # --no-files (what the NixOS module runs in its build sandbox): the spec alone.
        self.assertEqual(run("check-spec", "--no-files", missing, check=False).returncode, 0)
        text = run("check-spec", good, missing, check=False).stdout
        self.assertIn("good.json: ok", text)
        self.assertIn("no-vmlinuz", text)


class BadInputTest(Scratch):
    """Each bad input: exit status, a message naming the problem, and nothing on disk changed."""

    def test_table(self):
        base = self.make_base()
        spec = self.make_vm()
        good = self.write_spec(spec, "good.json")
        run("prepare", "--spec", good)
        overlay = os.path.join(spec["stateDir"], "root.qcow2")
        before = sha256(overlay)
        fifo_tree = self.path("fifo-tree")
        os.makedirs(fifo_tree)
        os.mkfifo(os.path.join(fifo_tree, "pipe"))
        unreadable = self.path("unreadable")
        os.makedirs(unreadable)
        open(os.path.join(unreadable, "f"), "w").write("x")
        os.chmod(os.path.join(unreadable, "f"), 0)
        reserved = self.path("reserved")
        os.makedirs(reserved)
        open(os.path.join(reserved, "sprout-manifest.json"), "w").write("{}")

        def variant(**changes):
            s = json.loads(json.dumps(spec))
            for k, v in changes.items():
                cur = s
                keys = k.split(".")
                for key in keys[:-1]:
                    cur = cur[key]
                cur[keys[-1]] = v
            variant.count += 1
            return self.write_spec(s, f"bad{variant.count}.json")

        variant.count = 0

        def raw(text):
            variant.count += 1
            p = self.path(f"bad{variant.count}.json")
            with open(p, "w") as f:
                f.write(text)
            return p

        cases = [
            (["prepare"], 2, "which VM? give its NAME"),
            (["prepare", "--spec", self.path("nope.json")], 2, "spec file not found"),
            (["prepare", "--spec", variant(memory="lots")], 2, "memory: expected a number of MiB"),
            (["prepare", "--spec", variant(**{"memory": {"amount": 1, "unit": "parsecs"}})], 2, "memory.unit"),
            (["prepare", "--spec", variant(name="../evil")], 2, "must not contain '/'"),
            (["prepare", "--spec", variant(extra=1)], 2, "extra: unknown key"),
            (["prepare", "--spec", variant(**{"base.image": self.path("missing.qcow2")})], 2, "base image not found"),
            (["prepare", "--spec", variant(**{"sources.config": self.path("missing")})], 2, "does not exist"),
            (["prepare", "--spec", variant(**{"sources.config": base})], 2, "is not a directory"),
            (["prepare", "--spec", variant(**{"sources.config": fifo_tree})], 2, "is a fifo"),
            (["prepare", "--spec", variant(**{"sources.self": reserved})], 2, "reserves for its manifest"),
            (["export", "--name", "x"], 2, "missing --config"),
            (["export", "--spec", good, "--name", "x"], 2, "cannot be combined"),
            (["export", "--bogus"], 2, "bogus"),
            (["frobnicate"], 2, "is not a sprout command"),
            (["--log-level", "loud", "status"], 2, "unknown --log-level 'loud'"),
            (["wait", "web", "--timeout", "1e300"], 2, "--timeout 1e300: longer than"),
            (["check-spec", variant(vcpus=0)], 2, "vcpus: expected an integer from 1 to 256"),
            (["prepare", "--spec", raw('{"version": 1, "memory": 1e400}')], 2, "number overflow parsing '1e400'"),
            (["prepare", "--spec", raw('{"version": 1, "vcpus": 2, "vcpus": 1}')], 2,
             'the key "vcpus" appears twice in one object'),
            (["prepare", "--spec", raw('{"version": 1,\n "name": w}')], 2, "not valid JSON at line 2, column"),
            (["prepare", "--spec", variant(name="a\u0000b")], 2, "name: contains a NUL character"),
            (["prepare", "--spec", variant(**{"sources.config": spec["sources"]["config"] + "\u0000x"})], 2,
             "sources.config: contains a NUL character"),
        ]
        if os.geteuid() != 0:
            cases.append((["prepare", "--spec", variant(**{"sources.config": unreadable})], 2, "not readable"))
        # A file of the user's where an image link would go is never replaced.
        foreign = self.path("foreign")
        os.makedirs(foreign)
        with open(os.path.join(foreign, "config.img"), "w") as f:
            f.write("precious")
        cases.append((["export", "--name", "x", "--config", spec["sources"]["config"], "--self",
                       spec["sources"]["self"], "--out", foreign], 2, "is not a link sprout made"))
        # A state directory that cannot be made: a plain error naming it, exit 1.
        plain = self.path("plain-file")
        with open(plain, "w") as f:
            f.write("x")
        cases.append((["prepare", "--spec", variant(stateDir=os.path.join(plain, "web"))], 1, plain))
        # (watch: a libvirt VM's; a qemu VM's is refused before its state directory is looked at)
        cases.append((["watch", "--spec", variant(stateDir=os.path.join(plain, "web"), backend="libvirt")], 1, plain))
        clash = self.path("clash")
        os.makedirs(os.path.join(clash, "hosts"))
        open(os.path.join(clash, "hosts", "self"), "w").write("not a directory")
        cases.append((["prepare", "--spec", variant(**{"sources.config": clash})], 2,
                      "hosts/self as something other than a directory"))
        for argv, status, needle in cases:
            with self.subTest(argv=argv):
                p = run(*argv, check=False)
                self.assertEqual(p.returncode, status, p.stderr)
                self.assertIn(needle, p.stderr + p.stdout)
                for library_text in ("filesystem error:", "[json.exception", "basic_string"):
                    self.assertNotIn(library_text, p.stderr, "a library's exception text reached the user")
                self.assertEqual(sha256(overlay), before)
                self.assertEqual(open(os.path.join(foreign, "config.img")).read(), "precious")
                self.assertFalse([f for f in os.listdir(spec["cacheDir"])
                                  if f.startswith(".") and f not in (".lock", ".digest-cache")],
                                 "temporary files left in the cache")


    def test_one_bad_spec_in_a_directory_spoils_no_other(self):
        spec = self.make_vm()
        specdir = self.path("specs")
        os.makedirs(specdir)
        self.write_spec(spec, os.path.join("specs", "web.json"))
        with open(os.path.join(specdir, "big.json"), "w") as f:
            f.write('{"version": 1, "name": "big", "memory": 1e400}')
        p = run("status", "--spec-dir", specdir, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("web", p.stdout)
        self.assertIn("invalid spec: ", p.stdout)
        self.assertIn("number overflow", p.stdout)
        p = run("wait", "web", "--spec-dir", specdir, "--timeout", "1", check=False)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("timed out", p.stderr)

    def test_a_garbled_status_file_is_called_corrupt(self):
        spec = self.make_vm()
        specdir = self.path("specs")
        os.makedirs(specdir)
        self.write_spec(spec, os.path.join("specs", "web.json"))
        os.makedirs(spec["stateDir"])
        with open(os.path.join(spec["stateDir"], "status.json"), "w") as f:
            f.write('{"vm": "web", "phase": "spec')
        p = run("status", "--spec-dir", specdir)
        self.assertIn("corrupt record", p.stdout)
        self.assertNotIn("no record yet", p.stdout)


class OverlayTest(Scratch):
    def info(self, overlay):
        return json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U", overlay],
                                         capture_output=True, text=True, check=True).stdout)

    def prepare(self, spec):
        return json.loads(run("prepare", "--spec", self.write_spec(spec), "--json").stdout)

    def test_created_then_reused(self):
        self.make_base()
        spec = self.make_vm()
        a = self.prepare(spec)
        self.assertEqual(a["overlay"]["action"], "created")
        overlay = a["overlay"]["path"]
        info = self.info(overlay)
        self.assertEqual(info["format"], "qcow2")
        self.assertEqual(info["full-backing-filename"], self.path("base.qcow2"))
        self.assertEqual(info["backing-filename-format"], "qcow2")
        with open(overlay, "r+b") as f:  # the VM's state: must survive
            f.seek(0, 2)
            f.write(b"state")
        before = sha256(overlay)
        b = self.prepare(spec)
        self.assertEqual(b["overlay"]["action"], "reused")
        self.assertEqual(sha256(overlay), before)

    def test_disk_size(self):
        self.make_base()
        spec = self.make_vm()
        spec["diskSize"] = {"amount": 2, "unit": "G"}
        a = self.prepare(spec)
        self.assertEqual(self.info(a["overlay"]["path"])["virtual-size"], 2 << 30)

    def policy_setup(self, policy):
        self.make_base("base.qcow2")
        self.make_base("base2.qcow2")
        spec = self.make_vm()
        overlay = self.prepare(spec)["overlay"]["path"]
        subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 64k", overlay], check=True, capture_output=True)
        spec["base"]["image"] = self.path("base2.qcow2")
        spec["baseChange"] = policy
        return spec, overlay

    def test_keep_policy(self):
        spec, overlay = self.policy_setup("keep")
        before = sha256(overlay)
        r = self.prepare(spec)
        self.assertEqual(r["overlay"]["action"], "kept-old-base")
        self.assertEqual(self.info(overlay)["full-backing-filename"], self.path("base.qcow2"))
        self.assertEqual(sha256(overlay), before)

    def test_rebase_policy(self):
        spec, overlay = self.policy_setup("rebase")
        r = self.prepare(spec)
        self.assertEqual(r["overlay"]["action"], "rebased")
        self.assertEqual(self.info(overlay)["full-backing-filename"], self.path("base2.qcow2"))
        data = subprocess.run(["qemu-io", "-c", "read -P 0x5a 0 64k", overlay], capture_output=True, text=True)
        self.assertNotIn("Pattern verification failed", data.stdout)

    def test_rebase_refused_without_old_base(self):
        spec, overlay = self.policy_setup("rebase")
        before = sha256(overlay)
        os.remove(self.path("base.qcow2"))
        p = run("prepare", "--spec", self.write_spec(spec), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot rebase safely", p.stderr)
        self.assertEqual(sha256(overlay), before)

    def test_recreate_policy_keeps_old_overlay(self):
        spec, overlay = self.policy_setup("recreate")
        before = sha256(overlay)
        r = self.prepare(spec)
        self.assertEqual(r["overlay"]["action"], "recreated")
        aside = r["overlay"]["movedAside"]
        self.assertTrue(os.path.basename(aside).startswith("root.qcow2.old-"))
        self.assertEqual(sha256(aside), before)
        self.assertEqual(self.info(overlay)["full-backing-filename"], self.path("base2.qcow2"))

    def test_a_refused_base_changes_nothing(self):
        # A base that is not an image of its format is refused (2) before the export
        # writes anything: no state directory, link, export.json or overlay appears or
        # changes, for a new VM and for a prepared one whose spec now names that base.
        self.make_base()
        garbage = self.path("garbage.qcow2")
        with open(garbage, "wb") as f:
            f.write(b"not a disk image\n" * 1000)
        spec = self.make_vm()
        for case in ("new VM", "prepared VM"):
            with self.subTest(case=case):
                if case == "prepared VM":
                    self.prepare(spec)
                    with open(os.path.join(spec["sources"]["config"], "changed.nix"), "w") as f:
                        f.write("{ }\n")  # its export would now give a new generation
                specfile = self.write_spec(dict(spec, base={"image": garbage}, baseChange="recreate"), "bad.json")
                before = snapshot(self.tmp)
                p = run("prepare", "--spec", specfile, check=False)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(f"{garbage}: the base image is not a qcow2 image", p.stderr)
                self.assertEqual(snapshot(self.tmp), before)

    def test_recreated_overlay_keeps_a_gc_root_for_its_old_base(self):
        store = self.path("store")
        bases = []
        for n in ("aaaa-base1", "bbbb-base2"):
            os.makedirs(os.path.join(store, n))
            bases.append(os.path.join(store, n, "nixos.qcow2"))
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", bases[-1], "64M"], check=True)
        env = dict(os.environ, NIX_STORE_DIR=store)
        spec = self.make_vm()
        spec["base"]["image"] = bases[0]
        specdir = self.path("specs")
        os.makedirs(specdir)
        specfile = os.path.join(specdir, "web.json")
        json.dump(spec, open(specfile, "w"))
        run("prepare", "--spec", specfile, env=env)
        spec["base"]["image"] = bases[1]
        spec["baseChange"] = "recreate"
        json.dump(spec, open(specfile, "w"))
        r = json.loads(run("prepare", "--spec", specfile, "--json", env=env).stdout)
        aside = os.path.basename(r["overlay"]["movedAside"])
        self.assertEqual(os.readlink(self.path("gcroots", "web")), bases[1])
        self.assertEqual(os.readlink(self.path("gcroots", "web@" + aside)), bases[0])
        run("gc", "--spec-dir", specdir, env=env)
        self.assertTrue(os.path.lexists(self.path("gcroots", "web@" + aside)), "gc dropped the old overlay's root")
        os.rename(r["overlay"]["movedAside"], self.path("elsewhere.qcow2"))  # the user moved it away
        run("gc", "--spec-dir", specdir, env=env)
        self.assertFalse(os.path.lexists(self.path("gcroots", "web@" + aside)))

    def test_gc_root_for_store_base_and_gc(self):
        store = self.path("store")
        os.makedirs(os.path.join(store, "aaaa-nixos-base"))
        base = os.path.join(store, "aaaa-nixos-base", "nixos.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "64M"], check=True)
        spec = self.make_vm()
        spec["base"]["image"] = base
        env = dict(os.environ, NIX_STORE_DIR=store)
        specdir = self.path("specs")
        os.makedirs(specdir)
        specfile = os.path.join(specdir, "web.json")
        json.dump(spec, open(specfile, "w"))
        r = json.loads(run("prepare", "--spec", specfile, "--json", env=env).stdout)
        root = self.path("gcroots", "web")
        self.assertEqual(r["gcRoot"], root)
        self.assertEqual(os.readlink(root), base)
        # A root and an image nobody uses any more go; what web uses stays; overlays are never touched.
        os.symlink(base, self.path("gcroots", "gone-vm"))
        stale = os.path.join(spec["cacheDir"], "config-" + "0" * 32 + ".ext4")
        open(stale, "w").write("old")
        # Leftovers of a killed export: removed once an hour old, kept while young.
        old_staging = os.path.join(spec["cacheDir"], ".staging-dead01")
        os.makedirs(os.path.join(old_staging, "sub"))
        os.utime(old_staging, (time.time() - 7200, time.time() - 7200))
        young_tmp = os.path.join(spec["cacheDir"], ".config-x.ext4.tmp-1-1")
        open(young_tmp, "w").write("in progress")
        overlay = os.path.join(spec["stateDir"], "root.qcow2")
        before = sha256(overlay)
        p = run("gc", "--spec-dir", specdir, env=env)
        self.assertIn("removed 2 image(s) and 1 GC root(s)", p.stdout)
        self.assertFalse(os.path.exists(stale))
        self.assertFalse(os.path.exists(old_staging))
        self.assertTrue(os.path.exists(young_tmp))
        self.assertFalse(os.path.lexists(self.path("gcroots", "gone-vm")))
        self.assertTrue(os.path.lexists(root))
        self.assertTrue(os.path.exists(os.path.realpath(os.path.join(spec["stateDir"], "config.img"))))
        self.assertEqual(sha256(overlay), before)


if __name__ == "__main__":
    SPROUT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

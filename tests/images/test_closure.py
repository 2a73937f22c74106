#!/usr/bin/env python3
"""The closure disk of a host-built VM (`"specialize": "host"`), with the machine's real
Nix: NixOS-shaped systems built by nix-build (tests/nixsys), exported by the real
`sprout export`, the image read back with debugfs, and imported into second, empty
Nix stores the way a guest's Nix would (`nix copy --from file://...`).

- The image is an uncompressed binary cache: a NAR for exactly the system's closure
  less the base's, a NAR-less narinfo for each base path the system refers to.
- A store that has the base's closure imports it; every path then verifies
  (`nix store verify --no-trust`), and the toplevel is valid.
- A store without the base refuses it, naming the missing part; a flipped byte in a
  NAR is a hash mismatch and leaves the path invalid.
- Deterministic (byte-identical from two caches), cached by system (a second VM with
  the same system shares the image; an unchanged system runs no Nix command), and a
  changed system is a new image and a new generation. Without baseSystem the whole
  closure travels.
- Input errors (exit 2, naming the key): a system not in the store, not built, not a
  toplevel (no bin/switch-to-configuration), system without specialize = host.
Usage: test_closure.py SPROUT_BINARY
"""
import json
import os
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "nixsys"))
import test_export  # noqa: E402
from test_export import Scratch, run  # noqa: E402
import nix_system  # noqa: E402

SYSTEMS = {}


def systems(tag="images"):
    if tag not in SYSTEMS:
        SYSTEMS[tag] = nix_system.build_systems(os.environ.get("TMPDIR", "/tmp"), f"sprout-{tag}")
    return SYSTEMS[tag]


def extract(image, dest):
    os.makedirs(dest)
    subprocess.run(["debugfs", "-R", f"rdump / {dest}", image], check=True, capture_output=True, timeout=300)
    shutil.rmtree(os.path.join(dest, "lost+found"), ignore_errors=True)
    return dest


def hash_part(p):
    return os.path.basename(p).split("-", 1)[0]


class ClosureTest(Scratch):
    def host_spec(self, name="web", base=True, tag="images"):
        b, s = systems(tag)
        spec = self.make_vm(name) if not os.path.exists(self.path("cfg")) else self._more_vm(name)
        spec.update({"specialize": "host", "system": s})
        if base:
            spec["baseSystem"] = b
        return spec

    def _more_vm(self, name):
        os.makedirs(self.path("cfg", "hosts", name), exist_ok=True)
        return {"version": 1, "name": name, "base": {"image": self.path("base.qcow2")},
                "stateDir": self.path("state", name), "cacheDir": self.path("cache"),
                "gcRootDir": self.path("gcroots"),
                "sources": {"config": self.path("cfg"), "self": self.path("cfg", "hosts", name)}}

    def export(self, spec):
        out = json.loads(run("export", "--spec", self.write_spec(spec), "--json").stdout)
        return out, {i["role"]: i for i in out["images"]}

    def guest_store(self, name, with_base=True):
        """An empty chroot store, with the base's closure when asked (what the base image has)."""
        store = self.path(name)
        os.makedirs(store)
        if with_base:
            nix_system.nix3("copy", "--no-check-sigs", "--to", store, systems()[0])
        return store

    def test_round_trip_into_a_second_store(self):
        base, system = systems()
        out, imgs = self.export(self.host_spec())
        self.assertEqual(out["specialize"], "host")
        self.assertEqual(out["system"], system)
        self.assertEqual(set(imgs), {"config", "self", "closure"})
        cache = extract(imgs["closure"]["image"], self.path("back"))

        closure, base_closure = nix_system.requisites(system), nix_system.requisites(base)
        handed = sorted(set(closure) - set(base_closure))
        shared = sorted(set(closure) & set(base_closure))
        self.assertTrue(handed and shared, (handed, shared))
        narinfos = {f[:-len(".narinfo")] for f in os.listdir(cache) if f.endswith(".narinfo")}
        self.assertEqual(narinfos, {hash_part(p) for p in closure})  # no base path beyond what is referenced
        nars = os.listdir(os.path.join(cache, "nar"))
        self.assertEqual(len(nars), len(handed), nars)
        for p in shared:
            with open(os.path.join(cache, hash_part(p) + ".narinfo")) as f:
                self.assertIn("URL: nar/in-the-base-system-not-on-this-disk.nar", f.read())
        for p in handed:
            with open(os.path.join(cache, hash_part(p) + ".narinfo")) as f:
                text = f.read()
            self.assertIn("Compression: none", text)
            self.assertIn(f"StorePath: {p}\n", text)
        with open(os.path.join(cache, "sprout-closure.json")) as f:
            info = json.load(f)
        self.assertEqual((info["system"], info["baseSystem"], info["paths"]), (system, base, len(handed)))
        self.assertEqual(info["narBytes"], sum(os.path.getsize(os.path.join(cache, "nar", n)) for n in nars))
        # The manifest names the system; the generation covers it.
        manifest = json.loads(subprocess.run(["debugfs", "-R", "cat /sprout-manifest.json", imgs["self"]["image"]],
                                             capture_output=True, text=True, check=True).stdout)
        self.assertEqual(manifest["system"], system)
        self.assertEqual(manifest["disks"]["closure"]["digest"], imgs["closure"]["treeDigest"])

        store = self.guest_store("guest")
        nix_system.nix3("copy", "--no-check-sigs", "--from", f"file://{cache}", "--to", store, system)
        v = nix_system.nix3("store", "verify", "--store", store, "--no-trust", "-r", system, check=False)
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertEqual(nix_system.requisites(system, store=store), closure)
        valid = subprocess.run(["nix-store", "--store", store, "--check-validity", system],
                               env=nix_system.nix_env(), capture_output=True, text=True)
        self.assertEqual(valid.returncode, 0, valid.stderr)

    def test_a_store_without_the_base_or_a_corrupt_nar_is_refused(self):
        base, system = systems()
        _, imgs = self.export(self.host_spec())
        cache = extract(imgs["closure"]["image"], self.path("back"))
        bare = self.guest_store("bare", with_base=False)
        r = nix_system.nix3("copy", "--no-check-sigs", "--from", f"file://{cache}", "--to", bare, system, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("in-the-base-system-not-on-this-disk", r.stderr)

        # Flip one byte inside the largest NAR: Nix checks it against the narinfo.
        nix_system.flip_byte_in_largest_nar(cache)
        store = self.guest_store("guest")
        r = nix_system.nix3("copy", "--no-check-sigs", "--from", f"file://{cache}", "--to", store, system, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("hash mismatch importing path", r.stderr)
        valid = subprocess.run(["nix-store", "--store", store, "--check-validity", system],
                               env=nix_system.nix_env(), capture_output=True, text=True)
        self.assertNotEqual(valid.returncode, 0)

    def test_deterministic_shared_and_cached(self):
        spec = self.host_spec()
        _, imgs = self.export(spec)
        first = imgs["closure"]
        self.assertFalse(first["cacheHit"])
        other = dict(spec, cacheDir=self.path("cache2"), stateDir=self.path("state", "web2"))
        _, imgs2 = self.export(other)
        self.assertEqual(test_export.sha256(first["image"]), test_export.sha256(imgs2["closure"]["image"]))
        # A second VM with the same system shares the image; an unchanged system is a
        # cache hit that runs no Nix command (no nix on PATH for it).
        db = self.host_spec("db")
        tools = self.path("no-nix-bin")
        os.makedirs(tools)
        for t in ("mkfs.ext4", "mke2fs"):
            os.symlink(shutil.which(t), os.path.join(tools, t))
        env = dict(os.environ, PATH=tools)
        out = json.loads(run("export", "--spec", self.write_spec(db), "--json", env=env).stdout)
        closure = next(i for i in out["images"] if i["role"] == "closure")
        self.assertTrue(closure["cacheHit"])
        self.assertEqual(closure["image"], first["image"])
        self.assertEqual(os.path.realpath(self.path("state", "db", "closure.img")), first["image"])

    def test_changed_system_new_image_and_generation_and_no_base(self):
        out1, imgs1 = self.export(self.host_spec())
        out2, imgs2 = self.export(self.host_spec(tag="images-changed"))
        self.assertNotEqual(imgs1["closure"]["image"], imgs2["closure"]["image"])
        self.assertNotEqual(out1["generation"], out2["generation"])
        self.assertEqual(imgs1["config"]["image"], imgs2["config"]["image"])  # the trees did not change
        out3, imgs3 = self.export(self.host_spec(base=False))
        cache = extract(imgs3["closure"]["image"], self.path("back-full"))
        self.assertEqual(len(os.listdir(os.path.join(cache, "nar"))), len(nix_system.requisites(systems()[1])))
        bare = self.guest_store("bare", with_base=False)
        nix_system.nix3("copy", "--no-check-sigs", "--from", f"file://{cache}", "--to", bare, systems()[1])
        # Back to guest-built: the closure link goes, the generation is the guest-built one.
        guest = self.host_spec()
        for k in ("specialize", "system", "baseSystem"):
            guest.pop(k)
        out4, imgs4 = self.export(guest)
        self.assertNotIn("closure", imgs4)
        self.assertFalse(os.path.lexists(self.path("state", "web", "closure.img")))

    def test_run_attaches_the_closure_disk_read_only(self):
        self.make_base()
        spec = self.host_spec()
        p = run("run", "--spec", self.write_spec(spec), "--print-command")
        closure = os.path.join(spec["stateDir"], "closure.img")
        self.assertIn(f"file={closure},if=none,readonly=on,format=raw,id=sprout-closure", p.stdout)
        self.assertIn("virtio-blk-pci,drive=sprout-closure,serial=sprout-closure", p.stdout)

    def test_bad_systems_are_input_errors(self):
        base, system = systems()
        spec = self.host_spec()
        fake = "/nix/store/" + "0" * 32 + "-nixos-system-never-built"
        for value, expect in [
            (fake, f"system: {fake} does not exist in this host's Nix store"),
            ("/etc", "system: /etc is not in /nix/store"),
            (system + "/bin", "inside a store object"),
        ]:
            p = run("export", "--spec", self.write_spec(dict(spec, system=value)), check=False)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(expect, p.stderr)
        no_switch = next(p for p in nix_system.requisites(system) if "-glibc-" in p)
        p = run("export", "--spec", self.write_spec(dict(spec, system=no_switch)), check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("is not a NixOS system: it has no bin/switch-to-configuration", p.stderr)
        guest = dict(spec)
        guest.pop("specialize")
        p = run("check-spec", self.write_spec(guest), check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn('system: is only used with "specialize": "host"', p.stdout + p.stderr)


if __name__ == "__main__":
    test_export.SPROUT = sys.argv.pop(1)
    missing = nix_system.missing_tools()
    if missing:
        print(f"skipping: {', '.join(missing)} not installed (Debian: nix-bin, busybox-static)")
        sys.exit(77)
    unittest.main(verbosity=2)

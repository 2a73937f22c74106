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
- A path changed on the host since Nix registered it (one flipped byte) fails the
  export (exit 1, naming the path) and commits no image.
- Deterministic (byte-identical from two caches), cached by system (a second VM with
  the same system shares the image; an unchanged system runs no Nix command), and a
  changed system is a new image and a new generation. Without baseSystem the whole
  closure travels.
- After a base change (baseChange keep, rebase, recreate) the disk leaves out the
  closure of the base the guest really has: the one its overlay was made on
  (STATE/overlay-origin.json, written by prepare), or the spec's for a new overlay;
  with no record of it, or one about another file, the whole closure. Each disk is
  read back, and imported into a store holding just that base.
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


ABSENT_NAR = "nar/in-the-base-system-not-on-this-disk.nar"


def handed_paths(cache):
    """The store paths whose NAR is on the disk (a narinfo that points at a NAR)."""
    out = set()
    for f in os.listdir(cache):
        if f.endswith(".narinfo"):
            with open(os.path.join(cache, f)) as fh:
                fields = dict(line.split(": ", 1) for line in fh.read().splitlines() if ": " in line)
            if fields["URL"] != ABSENT_NAR:
                out.add(fields["StorePath"])
    return out


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

    def guest_store(self, name, with_base=True, base=None):
        """An empty chroot store, with the base's closure when asked (what the base image has)."""
        store = self.path(name)
        os.makedirs(store)
        if with_base:
            nix_system.nix3("copy", "--no-check-sigs", "--to", store, base or systems()[0])
        return store

    def test_round_trip_into_a_second_store(self):
        base, system = systems()
        out, imgs = self.export(self.host_spec())
        self.assertEqual(out["specialize"], "host")
        self.assertEqual(out["system"], system)
        self.assertEqual(set(imgs), {"config", "self", "closure", "secrets"})
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
        # Each NAR's XXH3-128, which the guest's import checks (xxhsum's, for every NAR),
        # and the NarHash of its narinfo, which the guest registers.
        with open(os.path.join(cache, "sprout-nar-xxh3")) as f:
            listed = {url: (x, h) for url, x, h in (line.split(" ") for line in f.read().splitlines())}
        sums = subprocess.run(["xxhsum", "-H2"] + sorted(nars), cwd=os.path.join(cache, "nar"), capture_output=True,
                              text=True, check=True).stdout.split()
        self.assertEqual({u: x for u, (x, _) in listed.items()}, {f"nar/{n}": h for h, n in zip(sums[0::2], sums[1::2])})
        for p in handed:
            with open(os.path.join(cache, hash_part(p) + ".narinfo")) as f:
                info_lines = dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)
            self.assertEqual(listed[info_lines["URL"]][1], info_lines["NarHash"], p)
        # Every narinfo again, in one file the guest reads instead: each one's text as in
        # its file, then an empty line (common/narinfo_index.h).
        with open(os.path.join(cache, "sprout-narinfos")) as f:
            index = f.read()
        records = index.split("\n\n")
        self.assertEqual(records[-1], "", index[-200:])
        expected = {}
        for p in closure:
            with open(os.path.join(cache, hash_part(p) + ".narinfo")) as f:
                expected[p] = f.read()
        self.assertEqual({r.split("\n", 1)[0].removeprefix("StorePath: "): r + "\n" for r in records[:-1]}, expected)
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

    def test_a_path_changed_on_the_host_fails_the_export(self):
        # sprout reads each path from the store once and checks what it wrote against
        # Nix's database: a path changed since Nix registered it is named, no image is
        # committed, and the same export passes once the path is back.
        base, system = systems("images-changed-on-host")
        handed = sorted(set(nix_system.requisites(system)) - set(nix_system.requisites(base)))
        app = next(p for p in handed if "-app-" in p)
        blob = os.path.join(app, "share", os.listdir(os.path.join(app, "share"))[0])
        spec = self.host_spec(tag="images-changed-on-host")
        mode = os.stat(blob).st_mode
        with open(blob, "rb") as f:
            first = f.read(1)
        try:
            os.chmod(blob, 0o644)
            with open(blob, "r+b") as f:
                f.write(bytes([first[0] ^ 0xFF]))
            r = run("export", "--spec", self.write_spec(spec), check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(app, r.stderr)
            self.assertIn("does not match Nix's database", r.stderr)
            self.assertFalse([f for f in os.listdir(self.path("cache")) if f.startswith("closure-")])
        finally:
            with open(blob, "r+b") as f:
                f.write(first)
            os.chmod(blob, mode & 0o7777)
        _, imgs = self.export(spec)
        self.assertFalse(imgs["closure"]["cacheHit"])

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
        for t in ("mkfs.ext4", "mke2fs", "ssh-keygen"):  # ssh-keygen: db's identity is minted
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

    # After a base change: which base the guest really has.

    def base_change_vm(self, name):
        """A host-built VM prepared on base a.qcow2 (with the old baseSystem); its spec,
        moved to base b.qcow2 with the new baseSystem, is returned with the closure the
        guest needs on each base."""
        old, system = systems()
        new = nix_system.build_attr(os.environ.get("TMPDIR", "/tmp"), "sprout-images", "newBase")
        for b in ("a.qcow2", "b.qcow2"):
            if not os.path.exists(self.path(b)):
                self.make_base(b)
        spec = dict(self.host_spec(name), base={"image": self.path("a.qcow2")}, baseSystem=old)
        out = self.prepare(spec)
        self.assertEqual(out["overlay"]["action"], "created")
        closure = set(nix_system.requisites(system))
        needs = {old: closure - set(nix_system.requisites(old)), new: closure - set(nix_system.requisites(new))}
        self.assertTrue(needs[old] != needs[new] and closure not in needs.values(), needs)  # tells them apart
        self.assertEqual(self.closure_on_disk(out, f"back-{name}-made"), needs[old])
        moved = dict(spec, base={"image": self.path("b.qcow2")}, baseSystem=new)
        return moved, needs, old, new

    def prepare(self, spec, **kw):
        p = run("prepare", "--spec", self.write_spec(spec), "--json", **kw)
        out = json.loads(p.stdout)
        out["stderr"] = p.stderr
        return out

    def closure_on_disk(self, out, name):
        image = next(i["image"] for i in out["images"] if i["role"] == "closure")
        return handed_paths(extract(image, self.path(name)))

    def origin(self, name):
        with open(self.path("state", name, "overlay-origin.json")) as f:
            return json.load(f)

    def test_base_change_closure_for_the_base_the_guest_has(self):
        for change, actions in [("keep", ["kept-old-base"]), ("rebase", ["rebased", "reused"]),
                                ("recreate", ["recreated", "reused"])]:
            moved, needs, old, new = self.base_change_vm(change)
            a, b = os.path.realpath(self.path("a.qcow2")), os.path.realpath(self.path("b.qcow2"))
            made = self.origin(change)
            overlay = self.path("state", change, "root.qcow2")
            self.assertEqual(made["overlayInode"], os.stat(overlay).st_ino)
            self.assertEqual((made["baseImage"], made["backingFiles"], made["baseSystem"]), (a, [a], old))
            moved["baseChange"] = change
            guest_has = new if change == "recreate" else old
            for i, action in enumerate(actions):  # a second prepare reuses what the first made
                out = self.prepare(moved)
                self.assertEqual(out["overlay"]["action"], action)
                self.assertEqual(self.closure_on_disk(out, f"back-{change}-{i + 1}"), needs[guest_has], change)
            rec = self.origin(change)
            self.assertEqual(rec["overlayInode"], os.stat(overlay).st_ino)
            self.assertEqual((rec["baseImage"], rec["backingFiles"], rec["baseSystem"]),
                             {"keep": (a, [a], old), "rebase": (a, [b], old), "recreate": (b, [b], new)}[change])
            # The base system the guest has is safe from the host's GC while the record is.
            self.assertEqual(os.readlink(self.path("gcroots", f"{change}@overlay-origin.json")), rec["baseSystem"])
            # `sprout export` alone goes by the overlay as it is, too.
            out = json.loads(run("export", "--spec", self.write_spec(moved), "--json").stdout)
            self.assertEqual(self.closure_on_disk(out, f"back-{change}-export"), needs[guest_has])
            # What the guest has imports it: a store with that base's closure alone.
            cache = extract(os.path.realpath(self.path("state", change, "closure.img")), self.path(f"imp-{change}"))
            store = self.guest_store(f"guest-{change}", base=guest_has)
            nix_system.nix3("copy", "--no-check-sigs", "--from", f"file://{cache}", "--to", store, systems()[1])
            v = nix_system.nix3("store", "verify", "--store", store, "--no-trust", "-r", systems()[1], check=False)
            self.assertEqual(v.returncode, 0, v.stderr)
        # A VM with no overlay yet gets the spec's baseSystem (export alone, as before).
        fresh = dict(moved, name="fresh", stateDir=self.path("state", "fresh"))
        os.makedirs(self.path("cfg", "hosts", "fresh"))
        fresh["sources"] = dict(moved["sources"], self=self.path("cfg", "hosts", "fresh"))
        out = json.loads(run("export", "--spec", self.write_spec(fresh), "--json").stdout)
        self.assertEqual(self.closure_on_disk(out, "back-fresh"), needs[new])

    def test_base_change_without_a_true_record_is_the_whole_closure(self):
        moved, needs, old, new = self.base_change_vm("legacy")
        whole = set(nix_system.requisites(systems()[1]))
        record = self.path("state", "legacy", "overlay-origin.json")
        with open(record) as f:
            kept = f.read()
        os.remove(record)  # an overlay an older sprout made
        for i, spec in enumerate([dict(moved, baseChange="keep"), dict(moved, base={"image": self.path("a.qcow2")}, baseSystem=old)]):
            out = self.prepare(spec)
            self.assertEqual(self.closure_on_disk(out, f"back-legacy-{i}"), whole)
            self.assertIn("no overlay-origin.json", out["stderr"])
            self.assertIn(f"whole closure of {systems()[1]}", out["stderr"])
        # A record about another file: the overlay replaced by hand with a copy.
        with open(record, "w") as f:
            f.write(kept)
        overlay = self.path("state", "legacy", "root.qcow2")
        shutil.copy(overlay, overlay + ".copy")
        os.rename(overlay + ".copy", overlay)
        out = self.prepare(dict(moved, baseChange="keep"))
        self.assertEqual(self.closure_on_disk(out, "back-legacy-other"), whole)
        self.assertIn("overlay-origin.json is about another file", out["stderr"])

    def test_recreate_killed_midway_leaves_a_true_record(self):
        """qemu-img create of the new overlay kills sprout: root.qcow2 is still the old
        overlay (also kept aside); its record still names it and base a."""
        moved, needs, old, new = self.base_change_vm("killed")
        tools = self.path("killer-bin")
        os.makedirs(tools)
        with open(os.path.join(tools, "qemu-img"), "w") as f:
            f.write(f"#!/bin/sh\n{shutil.which('qemu-img')} \"$@\" || exit $?\n"
                    "[ \"$1\" = create ] && kill -KILL $PPID\nexit 0\n")
        os.chmod(os.path.join(tools, "qemu-img"), 0o755)
        env = dict(os.environ, PATH=tools + os.pathsep + os.environ["PATH"])
        p = run("prepare", "--spec", self.write_spec(dict(moved, baseChange="recreate")), check=False, env=env)
        self.assertEqual(p.returncode, -9, p.stderr)
        state = self.path("state", "killed")
        self.assertTrue(any(n.startswith("root.qcow2.old-") for n in os.listdir(state)))
        overlay = os.path.join(state, "root.qcow2")
        self.assertEqual(self.origin("killed")["overlayInode"], os.stat(overlay).st_ino)
        self.assertEqual(self.origin("killed")["baseSystem"], old)
        out = self.prepare(dict(moved, baseChange="keep"))
        self.assertEqual(out["overlay"]["action"], "kept-old-base")
        self.assertEqual(self.closure_on_disk(out, "back-killed"), needs[old])
        # Recreated after all: the record names the new overlay and base.
        out = self.prepare(dict(moved, baseChange="recreate"))
        self.assertEqual(out["overlay"]["action"], "recreated")
        self.assertEqual(self.closure_on_disk(out, "back-killed-new"), needs[new])
        self.assertEqual(self.origin("killed")["overlayInode"], os.stat(overlay).st_ino)
        self.assertEqual(self.origin("killed")["baseSystem"], new)

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

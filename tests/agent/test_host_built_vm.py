#!/usr/bin/env python3
"""Host-built specialization in the real test guest (tests/vm), under qemu TCG, with
real Nix on both sides.

usage: test_host_built_vm.py SPROUT_AGENT SPROUT [--keep] [--workdir DIR] [--cache DIR]
                             [--only 12345] [--base-changes keep,rebase,recreate]

The host (this machine's Nix) builds a NixOS-shaped base and system (tests/nixsys);
`sprout export` makes config, self and closure disks from a spec with
"specialize": "host" and baseSystem. The guest's persistent state disk holds a real
Nix store + database with the base's closure (copied there by the host's Nix, as a
base image would have it) and Debian's nix with its libraries. Scenarios:
  H1 boot 1: the agent imports the closure (`sprout-agent --import-closure`: it unpacks
     and checks the NARs itself, asks and registers through the guest's real Nix), sets the real
     system profile, runs the system's own switch-to-configuration boot (which sets
     the test guest's boot loader default) and reboots; events in order, import and
     switch output streamed as log events; no nixos-rebuild.
  H2 boot 2: the guest runs the host-built system and reports specialized, by host;
     the closure disk is not mounted. The state disk's store, opened by the host's
     Nix afterwards, has every path of the system valid and verifying, read-only with
     mtime 1 as Nix leaves a store path.
  H3 a closure disk with one flipped NAR byte: failed with the hash mismatch (the
     host's XXH3-128 of the NAR), nothing registered, no reboot.
  H4 no closure disk: failed, naming the closure disk, no reboot.
  H5 a base change, with each baseChange of --base-changes (default keep,rebase;
     recreate passes too and is left out of CI for time: a recreated overlay is H1-H2
     on base B). The real `sprout prepare` makes the VM's overlay on base image A (a
     raw ext4 like the state disk above: /nix holds base's closure; spec base.format
     raw) and writes STATE/overlay-origin.json; the spec then moves to image B
     (newBase's closure) and baseSystem newBase, and prepare runs again. The test guest
     boots that very STATE/root.qcow2 as its state disk (a qcow2 overlay on the base,
     as a real VM's root disk is), so its store is the one the overlay really shows:
     A's after keep and rebase, B's after recreate. No record is written by the test.
     The record and the closure disk name that base; boot 1 imports exactly the paths
     it lacks and switches, boot 2 reports specialized by host with the system. keep
     also boots the same guest (a throwaway overlay on root.qcow2) with the closure
     disk a VM new on B gets, which is what keep exported before the record existed:
     the import fails on the path B has and A lacks (no NAR on the disk), no reboot.
"""

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
sys.path.insert(0, os.path.join(HERE, "..", "nixsys"))
import guestlib  # noqa: E402
import nix_system  # noqa: E402
from guestlib import Guest  # noqa: E402
from test_agent_vm import boot, check, failures, phases  # noqa: E402

NIX_TOOLS = "/persist/nix-tools/bin"


def nix_tools(dest):
    """Debian's nix (nix-store and nix-env are links to it) and every library ldd lists."""
    nix = os.path.realpath(shutil.which("nix"))
    os.makedirs(os.path.join(dest, "bin"))
    os.makedirs(os.path.join(dest, "lib"))
    shutil.copy(nix, os.path.join(dest, "bin", "nix"))
    for link in ("nix-store", "nix-env"):
        os.symlink("nix", os.path.join(dest, "bin", link))
    out = subprocess.run(["ldd", nix], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split("=>")
        lib = parts[1].split()[0] if len(parts) == 2 else ""
        if lib.startswith("/"):
            shutil.copy(lib, os.path.join(dest, "lib", os.path.basename(lib)))


def state_disk(work, name, base):
    """A state disk whose /nix holds a real store and database with `base`'s closure."""
    root = os.path.join(work, f"state-{name}")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    nix_system.nix3("copy", "--no-check-sigs", "--to", root, base)
    nix_tools(os.path.join(root, "nix-tools"))
    return guestlib.make_ext4_from_dir(root, "sprout-state", os.path.join(work, f"state-{name}.img"))


def write_spec(work, file, system, base_system, **fields):
    """The config and self trees (the same contents every time, so their images are
    cache hits) and a host-built spec FILE.json beside them; returns its path."""
    trees = os.path.join(work, "trees")
    cfg, slf = os.path.join(trees, "config"), os.path.join(trees, "self")
    os.makedirs(os.path.join(cfg, "hosts", "self"), exist_ok=True)
    os.makedirs(slf, exist_ok=True)
    with open(os.path.join(cfg, "configuration.nix"), "w") as f:
        f.write("{ ... }: { imports = [ ./hosts/self/configuration.nix ]; }\n")
    with open(os.path.join(slf, "configuration.nix"), "w") as f:
        # Never built in the guest: a host-built VM runs no nixos-rebuild.
        f.write('# sprout-test: fail\n{ ... }: { networking.hostName = "web"; }\n')
    spec = dict({"version": 1, "name": "web", "base": {"image": "/nonexistent/base.qcow2"},
                 "stateDir": os.path.join(work, "out"), "cacheDir": os.path.join(work, "cache"),
                 "sources": {"config": cfg, "self": slf},
                 "specialize": "host", "system": system, "baseSystem": base_system}, **fields)
    path = os.path.join(trees, f"{file}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def sprout_json(sprout, command, spec):
    """`sprout COMMAND --spec SPEC --json`: (its JSON, its stderr)."""
    r = subprocess.run([sprout, command, "--spec", spec, "--json"], capture_output=True, text=True,
                       timeout=600, env=nix_system.nix_env())
    if r.returncode != 0:
        raise RuntimeError(f"sprout {command} failed: {r.stderr}")
    return json.loads(r.stdout), r.stderr


def disks_of(out):
    paths = {i["role"]: i["path"] for i in out["images"]}
    return [(paths["config"], "sprout-config", True), (paths["self"], "sprout-self", True),
            (paths["closure"], "sprout-closure", True)]


def export(sprout, work, base, system):
    out, _ = sprout_json(sprout, "export", write_spec(work, "web", system, base))
    return disks_of(out), out["generation"]


def corrupt_closure(work, closure_image):
    """The same closure disk with one byte flipped in the middle of its largest NAR."""
    d = os.path.join(work, "corrupt")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    subprocess.run(["debugfs", "-R", f"rdump / {d}", closure_image], check=True, capture_output=True, timeout=300)
    shutil.rmtree(os.path.join(d, "lost+found"), ignore_errors=True)
    nix_system.flip_byte_in_largest_nar(d)
    return guestlib.make_ext4_from_dir(d, "sprout-closure", os.path.join(work, "closure-corrupt.img"))


class OverlayGuest(Guest):
    """A guest whose state disk is a VM's qcow2 overlay (STATE/root.qcow2, on a raw base)."""

    def command_line(self):
        cmd = super().command_line()
        raw = f"file={self.state_disk},if=none,id=d0,format=raw"
        cmd[cmd.index(raw)] = raw[:-len("raw")] + "qcow2"
        return cmd


def overlay_nix(work, overlay, name):
    """/nix of the ext4 a guest sees through `overlay`, read back (qemu-img convert, debugfs)."""
    raw, back = os.path.join(work, f"{name}.raw"), os.path.join(work, name)
    shutil.rmtree(back, ignore_errors=True)
    os.makedirs(back)
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", overlay, raw], check=True, capture_output=True,
                   timeout=300)
    subprocess.run(["debugfs", "-R", f"rdump /nix {back}", raw], check=True, capture_output=True, timeout=300)
    os.remove(raw)
    return back


def closure_info(disks):
    return json.loads(guestlib.read_file_from_ext4(disks[2][0], "/sprout-closure.json"))


H5_ACTIONS = {"keep": "kept-old-base", "rebase": "rebased", "recreate": "recreated"}


def base_change(args, work, kernel, initrd, base, system, changes):
    """H5: a VM's overlay made by `sprout prepare` on base image A (a raw ext4 whose /nix
    holds base's closure, as state_disk makes it), its spec then moved to image B
    (newBase's closure) and baseSystem newBase with each baseChange in `changes`.
    The real prepare makes root.qcow2 and STATE/overlay-origin.json and exports the
    closure disk; the test guest boots root.qcow2 as its state disk, so it has the
    store the overlay really shows it: A's after keep and rebase, B's after recreate."""
    new_base = nix_system.build_attr(work, "sprout-vm", "newBase")
    images = {base: state_disk(work, "base-a", base), new_base: state_disk(work, "base-b", new_base)}
    closure = set(nix_system.requisites(system))
    needs = {b: sorted(closure - set(nix_system.requisites(b))) for b in (base, new_base)}
    big = sorted(set(needs[base]) - set(needs[new_base]))  # what B has and A lacks
    gcroots = os.path.join(work, "gcroots")
    for change in changes:
        tag, t0 = f"H5 {change}", time.monotonic()
        fields = {"name": f"h5{change}", "stateDir": os.path.join(work, f"h5-{change}"), "gcRootDir": gcroots}
        made, _ = sprout_json(args.sprout, "prepare", write_spec(
            work, f"h5-{change}-a", system, base, base={"image": images[base], "format": "raw"}, **fields))
        moved, err = sprout_json(args.sprout, "prepare", write_spec(
            work, f"h5-{change}-b", system, new_base, base={"image": images[new_base], "format": "raw"},
            baseChange=change, **fields))
        overlay, disks = moved["overlay"]["path"], disks_of(moved)
        has = new_base if change == "recreate" else base
        with open(os.path.join(fields["stateDir"], "overlay-origin.json")) as f:
            origin = json.load(f)
        info = closure_info(disks)
        check(made["overlay"]["action"] == "created" and moved["overlay"]["action"] == H5_ACTIONS[change],
              f"{tag}: prepare {made['overlay']['action']} the overlay on A, then {moved['overlay']['action']} it"
              + ("" if moved["overlay"]["action"] == H5_ACTIONS[change] else f"\n{err}"))
        check(origin["baseSystem"] == has and info["baseSystem"] == has and info["paths"] == len(needs[has]),
              f"{tag}: overlay-origin.json and the closure disk name the base the guest has, {has}; "
              f"the disk holds the {info['paths']} paths it lacks")
        if change == "keep":
            # Before the fix: the disk left out the spec's baseSystem (B), as a new VM on B
            # still gets it. The same guest (a throwaway overlay on root.qcow2) fails on it.
            fresh, _ = sprout_json(args.sprout, "export", write_spec(
                work, "h5-fresh", system, new_base, base={"image": images[new_base], "format": "raw"},
                name="h5fresh", stateDir=os.path.join(work, "h5-fresh"), gcRootDir=gcroots))
            check(closure_info(disks_of(fresh))["baseSystem"] == new_base, f"{tag}: a new VM on B: a disk without B")
            scratch = os.path.join(work, "h5-keep-scratch.qcow2")
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", overlay, "-F", "qcow2", scratch],
                           check=True, capture_output=True, timeout=60)
            g, lines, rc = boot(kernel, initrd, scratch, disks_of(fresh), work, "h5-keep-b", cls=OverlayGuest,
                                memory=512)
            last = lines[-1] if lines else {}
            tail = json.dumps(last.get("detail", {}).get("lastLines", []))
            check(last.get("phase") == "failed" and "importing the closure" in last.get("message", "")
                  and "(its NAR, nar/in-the-base-system-not-on-this-disk.nar, is not on the disk)" in tail
                  and all(p in tail for p in big),
                  f"{tag}: a disk exported against B fails in the guest: no NAR for {big} ({tail[-300:]})", g)
            check("sprout-test: reboot" not in g.console(), f"{tag}: no reboot after the failed import", g)
            os.remove(scratch)

        g, lines, rc = boot(kernel, initrd, overlay, disks, work, f"h5-{change}-1", cls=OverlayGuest, memory=512)
        p = [x for x in phases(lines) if x != "log"]
        copied = [m for m in (l["message"] for l in lines if l.get("phase") == "log") if m.startswith("copying path ")]
        check(p == ["starting", "mounting", "rebuilding", "rebuilt", "rebooting"] and rc == 0
              and "sprout-test: reboot" in g.console(),
              f"{tag}: boot 1 imports, switches and reboots (got {p})", g)
        check(len(copied) == len(needs[has]) and all(any(h in m for m in copied) for h in needs[has]),
              f"{tag}: the guest copied exactly the {len(needs[has])} paths its base lacks ({len(copied)} lines)", g)
        g, lines, rc = boot(kernel, initrd, overlay, disks, work, f"h5-{change}-2", cls=OverlayGuest, memory=512)
        sd = lines[-1].get("detail", {}) if lines else {}
        check([x for x in phases(lines) if x != "log"] == ["starting", "mounting", "specialized"]
              and sd.get("specializedBy") == "host" and sd.get("currentSystem") == system
              and g.boot_markers() and g.boot_markers()[0][1] == system,
              f"{tag}: boot 2 specialized by host, running {system} ({phases(lines)})", g)
        if change == "keep":
            back = overlay_nix(work, overlay, "h5-keep-back")
            v = nix_system.nix3("store", "verify", "--store", back, "--no-trust", "-r", system, check=False)
            check(v.returncode == 0, f"{tag}: the overlay's store, read back, has the system, valid and verifying"
                  + ("" if v.returncode == 0 else f"\n{v.stderr.strip()[-600:]}"))
        print(f"{tag}: {time.monotonic() - t0:.0f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("agent")
    ap.add_argument("sprout")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--workdir")
    ap.add_argument("--cache")
    ap.add_argument("--only", default="12345")
    ap.add_argument("--base-changes", default="keep,rebase", help="H5's baseChange values, comma-separated")
    args = ap.parse_args()
    missing = [t for t in ("qemu-system-x86_64", "mkfs.ext4", "busybox", "cpio", "debugfs", "ldd")
               if not shutil.which(t)] + nix_system.missing_tools()
    if missing:
        print(f"skipping: {', '.join(missing)} not installed")
        return 77
    work = args.workdir or tempfile.mkdtemp(prefix="sprout-host-built-vm-")
    os.makedirs(work, exist_ok=True)
    t_all = time.monotonic()
    try:
        conf = os.path.join(work, "agent.json")
        with open(conf, "w") as f:
            json.dump({"version": 1, "rebootCommand": ["systemctl", "reboot"], "stateDir": "/var/lib/sprout",
                       "diskWaitSeconds": 4, "flushTimeoutSeconds": 3, "nixBinDir": NIX_TOOLS,
                       "rebuild": {"timeoutSeconds": 600}}, f)
        kernel, initrd = guestlib.build_guest(args.agent, conf, os.path.join(work, "guest"), cache_dir=args.cache)
        base, system = nix_system.build_systems(work, "sprout-vm")
        disks, gen = export(args.sprout, work, base, system)
        closure = nix_system.requisites(system)
        handed = sorted(set(closure) - set(nix_system.requisites(base)))

        if "1" in args.only or "2" in args.only:
            state = state_disk(work, "h", base)
            g, lines, rc = boot(kernel, initrd, state, disks, work, "h1", memory=512)
            p = [x for x in phases(lines) if x != "log"]
            check(p == ["starting", "mounting", "rebuilding", "rebuilt", "rebooting"],
                  f"H1: starting, mounting, rebuilding, rebuilt, rebooting in order (got {p})", g)
            rebuilding = next((l for l in lines if l.get("phase") == "rebuilding"), {})
            d = rebuilding.get("detail", {})
            check(d.get("specializedBy") == "host" and d.get("system") == system
                  and [c[:2] for c in d.get("commands", [])] == [["/usr/bin/sprout-agent", "--import-closure"],
                                                                  [f"{NIX_TOOLS}/nix-store", "--check-validity"],
                                                                  [f"{NIX_TOOLS}/nix-env", "-p"],
                                                                  [f"{system}/bin/switch-to-configuration", "boot"]],
                  f"H1: rebuilding names the host-built system and the four commands ({d.get('commands')})", g)
            logs = [l["message"] for l in lines if l.get("phase") == "log"]
            copied = [m for m in logs if m.startswith("copying path ")]
            check(len(copied) == len(handed) and all(any(h in m for m in copied) for h in handed),
                  f"H1: the guest's nix copied exactly the {len(handed)} paths not in the base ({len(copied)} lines)", g)
            check(any("updating the boot loader: " + system in m for m in logs),
                  "H1: the system's own switch-to-configuration boot ran (its output is a log event)", g)
            check("evaluated" not in g.console() and not any("building the system" in m for m in logs),
                  "H1: no nixos-rebuild ran in the guest", g)
            check(rc == 0 and "sprout-test: reboot" in g.console(), "H1: the guest rebooted", g)

            g, lines, rc = boot(kernel, initrd, state, disks, work, "h2", memory=512)
            p = [x for x in phases(lines) if x != "log"]
            check(p == ["starting", "mounting", "specialized"], f"H2: specialized (got {p})", g)
            check(g.boot_markers() and g.boot_markers()[0][1] == system,
                  f"H2: the boot loader default is the host-built system {system}", g)
            check(f"sprout-test: system profile -> {system}" in g.console(),
                  "H2: /nix/var/nix/profiles/system points at the host-built system", g)
            sp = lines[-1] if lines else {}
            sd = sp.get("detail", {})
            check(sd.get("specializedBy") == "host" and sd.get("currentSystem") == system
                  and sd.get("action") == "record-applied",
                  f"H2: specialized by host, running {system} ({sd.get('action')})", g)
            check(set(sd.get("mounts", {})) == {"/etc/nixos", "/etc/nixos/hosts/self"},
                  f"H2: the closure disk is not mounted on the fast path ({sorted(sd.get('mounts', {}))})", g)
            # The guest's store, read back and opened by the host's Nix.
            back = os.path.join(work, "state-back")
            shutil.rmtree(back, ignore_errors=True)
            os.makedirs(back)
            subprocess.run(["debugfs", "-R", f"rdump /nix {back}", state], check=True, capture_output=True,
                           timeout=300)
            v = nix_system.nix3("store", "verify", "--store", back, "--no-trust", "-r", system, check=False)
            check(v.returncode == 0, f"H2: every path of the system is valid and verifies in the guest's store "
                                     f"({v.stderr.strip()[-300:]})")
            # Nix's canonical metadata, as `nix copy` left it: files 0444 or 0555,
            # directories 0555, every mtime 1 (the path itself too, whatever it is;
            # symlinks aside).
            odd, seen = [], 0
            for h in handed:
                top = os.path.join(back, h[1:])
                entries = [top] + [os.path.join(d, f) for d, dirs, files in os.walk(top) for f in dirs + files]
                for e in entries:
                    st = os.lstat(e)
                    if stat.S_ISLNK(st.st_mode):
                        continue  # a symlink has no mode of its own
                    seen += 1
                    if not (stat.S_IMODE(st.st_mode) in (0o444, 0o555) and int(st.st_mtime) == 1
                            and (not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) == 0o555)):
                        odd.append(f"{e[len(back):]} {oct(st.st_mode)} mtime {int(st.st_mtime)}")
            check(seen >= len(handed) and not odd,
                  f"H2: the {seen} files and directories of the {len(handed)} imported paths are 0444/0555 with "
                  f"mtime 1, as Nix leaves them ({odd[:5]})")
            if sd.get("timingsMs"):
                print(f"H2 fast path: {json.dumps(sd.get('timingsMs'))}")

        if "3" in args.only:
            state = state_disk(work, "h3", base)
            bad = [disks[0], disks[1], (corrupt_closure(work, disks[2][0]), "sprout-closure", True)]
            g, lines, rc = boot(kernel, initrd, state, bad, work, "h3", memory=512)
            last = lines[-1] if lines else {}
            check(last.get("phase") == "failed" and "importing the closure" in last.get("message", ""),
                  f"H3: a corrupt closure fails while importing ({last.get('message')})", g)
            tail = json.dumps(last.get("detail", {}).get("lastLines", []))
            check("hash mismatch importing path" in tail and "specified: xxh3-128:" in tail
                  and "nothing was registered" in tail,
                  f"H3: the failure names the hash mismatch; nothing was registered ({tail[-300:]})", g)
            check("rebooting" not in phases(lines) and "sprout-test: reboot" not in g.console()
                  and "agent exited 1" in g.console(), "H3: no reboot; agent exited 1", g)

        if "4" in args.only:
            state = state_disk(work, "h4", base)
            g, lines, rc = boot(kernel, initrd, state, disks[:2], work, "h4", memory=512)
            last = lines[-1] if lines else {}
            check(last.get("phase") == "failed" and "closure disk (virtio serial sprout-closure" in last.get("message", "")
                  and system in last.get("message", ""),
                  f"H4: a missing closure disk is a failure that names it ({last.get('message')})", g)
            check("sprout-test: reboot" not in g.console(), "H4: no reboot", g)

        if "5" in args.only:
            t5 = time.monotonic()
            base_change(args, work, kernel, initrd, base, system, args.base_changes.split(","))
            print(f"H5: {time.monotonic() - t5:.0f} s")
    finally:
        print(f"host-built VM test: {time.monotonic() - t_all:.0f} s")
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

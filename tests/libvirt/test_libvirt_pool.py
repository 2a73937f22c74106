#!/usr/bin/env python3
"""Pool mode against a real libvirt daemon (suite 'libvirt'): a VM's disks as volumes of
a storage pool, uploaded with sparse streams (docs/libvirt.md, "Disks as storage volumes").

Usage: test_libvirt_pool.py SPROUT [--keep]

With a private libvirtd (lvenv.LibvirtDaemon) and specs with "libvirt": {"storage":
"pool"} (a local URI; a remote one defaults to it):
- define makes the pool (a directory pool at poolPath), uploads the base (a 64 MiB raw
  file with 1 MiB of data: the stream carries about 1 MiB, not 64), the exported
  images and the VM's secrets disk, each byte-identical to its local file, creates the
  overlay volume backed by the base volume, and the domain names volumes;
- an unchanged re-define uploads nothing; a second VM with the same config tree
  uploads only what is its own (its secrets disk; no base, no shared image);
- a guest boots from the volumes (the placeholder agent's status line lists its
  disks by serial, read-only);
- an upload killed midway (sprout SIGKILLed while its stream is open) leaves a volume
  without completion marker, no domain; gc removes it, and define never attaches it;
- destroy without --delete-disks is refused, naming the overlay volume; with it, that
  VM's volumes go and the shared ones stay; undefine keeps every volume; gc keeps
  every overlay and what specs use (an undefined VM's too), removes what no spec or
  domain uses (the base of a destroyed VM). gc cleans only pools a spec names.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "vm"))
import guestlib  # noqa: E402
import lvenv  # noqa: E402
from test_libvirt import PLACEHOLDER_AGENT  # noqa: E402

SKIP = 77
MiB = 1 << 20


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def run(cmd, timeout=300, env=None):
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, env=env)


def write_spec(path, spec):
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
    return path


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(MiB), fb.read(MiB)
            if x != y:
                return False
            if not x:
                return True


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    sprout = os.path.abspath(sys.argv[1])
    keep = "--keep" in sys.argv
    work = lvenv.host_directory(tempfile.mkdtemp(prefix="sprout-libvirt-pool-test-"))
    lv = None
    t0 = time.monotonic()
    try:
        try:
            lv = lvenv.LibvirtDaemon(workdir=os.path.join(work, "libvirtd"), keep=keep).start()
        except lvenv.LibvirtUnavailable as e:
            print(f"test_libvirt_pool: SKIP: {e}")
            return SKIP
        pool, pool_dir = "sprout-test", os.path.join(work, "pool")
        specs = os.path.join(work, "specs")
        os.makedirs(specs)
        # A sparse raw base: 64 MiB, 1 MiB of data at 8 MiB.
        basef = os.path.join(work, "base.raw")
        with open(basef, "wb") as f:
            f.truncate(64 * MiB)
            f.seek(8 * MiB)
            f.write(os.urandom(MiB))
        cfg = os.path.join(work, "cfg")
        os.makedirs(os.path.join(cfg, "hosts", "a"))
        with open(os.path.join(cfg, "hosts", "a", "configuration.nix"), "w") as f:
            f.write("{ ... }: { }\n")
        pid = os.getpid()
        # Only one VM here starts (its own kernel); the others need a kernel file at most,
        # and the first has none: it boots from its disk, which libvirt must accept.
        kernel = os.path.join(work, "vmlinuz")
        with open(kernel, "wb") as f:
            f.write(b"not started\n")

        def spec_for(vm, base=basef, boot=None, qemu_args=()):
            return {"version": 1, "name": vm, "backend": "libvirt",
                    "libvirt": {"uri": lv.uri, "storage": "pool", "pool": pool, "poolPath": pool_dir},
                    "base": {"image": base, "format": "raw"}, "stateDir": os.path.join(work, "vms", vm),
                    "cacheDir": os.path.join(work, "cache"), "gcRootDir": os.path.join(work, "gcroots"),
                    "sources": {"config": cfg, "self": os.path.join(cfg, "hosts", "a")},
                    "memory": {"amount": 128, "unit": "MiB"}, "network": {"mode": "none"},
                    **({} if boot is False else {"kernel": boot or {"path": kernel, "cmdline": "console=ttyS0"}}),
                    "accel": "tcg", "shutdownTimeoutSeconds": 5, "qemuArgs": list(qemu_args)}

        def define(vm, env=None, boot=None, start=False, qemu_args=()):
            path = write_spec(os.path.join(specs, f"{vm}.json"), spec_for(vm, boot=boot, qemu_args=qemu_args))
            r = run([sprout, "define", "--spec", path] + (["--start"] if start else []), env=env)
            check(r.returncode == 0, f"define {vm}: exit {r.returncode}: {r.stderr}{r.stdout}")
            with open(os.path.join(work, "vms", vm, "volumes.json")) as f:
                return r, json.load(f), path

        def define_until_paused(spec, pause):
            """`sprout define` with its upload paused (SPROUT_TEST_UPLOAD_PAUSE=pause), once it says so."""
            p = subprocess.Popen([sprout, "define", "--spec", spec], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=dict(os.environ, SPROUT_TEST_UPLOAD_PAUSE=pause))
            seen = ""
            deadline = time.monotonic() + 60
            while "upload paused" not in seen and time.monotonic() < deadline:
                line = p.stderr.readline()
                if not line:
                    break
                seen += line
            check("upload paused" in seen, f"the upload never paused: {seen}")
            return p, seen

        def base_variant(name, at):
            """The base with another MiB of data at `at`: another content, another volume."""
            path = os.path.join(work, name)
            shutil.copyfile(basef, path)
            with open(path, "r+b") as f:
                f.seek(at)
                f.write(os.urandom(MiB))
            return path

        def volumes():
            out = lv.virsh("vol-list", "--pool", pool).stdout.splitlines()[2:]  # after the header and its rule
            return {line.split()[0] for line in out if line.strip()}

        # 1. the first VM: pool made, everything uploaded, sparse
        a = f"pa{pid}"
        r, rec, spec_a = define(a)
        check(lv.virsh("pool-info", pool).returncode == 0 and os.path.isdir(pool_dir), "the pool was not made")
        ups = {u["volume"]: u for u in rec["lastDefine"]["uploads"]}
        base_vol = [n for n in ups if n.startswith("base-")]
        check(len(base_vol) == 1, f"base not uploaded once: {sorted(ups)}")
        b = ups[base_vol[0]]
        check(b["fileBytes"] == 64 * MiB and MiB <= b["streamDataBytes"] <= MiB + 64 * 1024,
              f"the sparse base's stream carried {b['streamDataBytes']} bytes (file {b['fileBytes']})")
        check(any(n.startswith("config-") for n in ups) and any(n.startswith("self-") for n in ups)
              and any(n.startswith(f"{a}@secrets-") for n in ups), f"uploads: {sorted(ups)}")
        vols = volumes()
        for n in ups:
            check(n in vols and f"{n}@complete" in vols, f"{n} or its marker is not in the pool: {sorted(vols)}")
        check(f"{a}@root.qcow2" in vols and rec["overlayAction"] == "created", f"no overlay volume: {sorted(vols)}")
        # Content: the pool's files are the local ones, byte for byte.
        local = {"config": os.path.realpath(os.path.join(work, "vms", a, "config.img")),
                 "self": os.path.realpath(os.path.join(work, "vms", a, "self.img")),
                 f"{a}@secrets": os.path.join(work, "vms", a, "secrets.img")}
        for n in ups:
            src = basef if n.startswith("base-") else next(v for k, v in local.items() if n.startswith(k))
            check(same_bytes(src, os.path.join(pool_dir, n)), f"volume {n} differs from {src}")
        st = os.stat(os.path.join(pool_dir, base_vol[0]))
        check(st.st_blocks * 512 < 4 * MiB, f"the base volume is not sparse: {st.st_blocks * 512} bytes allocated")
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "--force-share",
                                          os.path.join(pool_dir, f"{a}@root.qcow2")],
                                         capture_output=True, text=True, check=True).stdout)
        check(info.get("backing-filename") == os.path.join(pool_dir, base_vol[0]), f"overlay's backing: {info}")
        xml = lv.virsh("dumpxml", "--inactive", a).stdout
        check(f"<source pool='{pool}' volume='{a}@root.qcow2'" in xml and "type='file' device='disk'" not in xml,
              f"the domain does not name volumes:\n{xml}")
        check("stream" in r.stdout and "carried" in r.stdout, f"define says nothing of bytes: {r.stdout}")
        print(f"test_libvirt_pool: first VM: pool made, {len(ups)} volumes uploaded byte-identical; the 64 MiB base "
              f"carried {b['streamDataBytes']} bytes; domain names volumes ({time.monotonic() - t0:.1f} s)")

        # 1b. a VM without a kernel boots from its disk: libvirt accepts its definition
        # (the boot disk's own boot order, no <os><boot dev=.../> beside it), and defining
        # it again changes nothing
        k = f"pk{pid}"
        rk, _, _ = define(k, boot=False)
        rk2, reck, _ = define(k, boot=False)
        check("unchanged" in rk2.stdout and not reck["lastDefine"]["uploads"],
              f"a kernel-less VM's re-define: {rk.stdout} / {rk2.stdout}")
        print("test_libvirt_pool: a VM without a kernel was defined, and defining it again changed nothing")

        # 2. unchanged re-define: nothing travels, nothing redefined
        r, rec, _ = define(a)
        check(rec["lastDefine"]["uploads"] == [] and rec["lastDefine"]["streamDataBytes"] == 0
              and "unchanged" in r.stdout and rec["overlayAction"] == "kept", f"re-define: {r.stdout} {rec}")
        # 3. a second VM, same config tree: only its own disks travel
        bvm = f"pb{pid}"
        r, rec_b, spec_b = define(bvm)
        ups_b = [u["volume"] for u in rec_b["lastDefine"]["uploads"]]
        check(all(n.startswith(f"{bvm}@") or n.startswith("self-") for n in ups_b)
              and any(n.startswith(f"{bvm}@secrets-") for n in ups_b), f"second VM uploaded {ups_b}")
        carried_b = rec_b["lastDefine"]["streamDataBytes"]
        print(f"test_libvirt_pool: unchanged re-define uploaded nothing; second VM uploaded only {ups_b} "
              f"({carried_b} bytes carried)")

        # 3b. a guest boots from volumes: libvirt's qemu user reads the root's 0400
        # volumes (dynamic_ownership), the disks arrive read-only by their serials.
        agent = os.path.join(work, "agent.sh")
        with open(agent, "w") as f:
            f.write(PLACEHOLDER_AGENT)
        os.chmod(agent, 0o755)
        gk, gi = guestlib.build_guest(agent, None, os.path.join(work, "guest"))
        d = f"pd{pid}"
        # The guest's own state disk (else it waits 5 s for it), handed to qemu directly:
        # libvirt labels nothing of qemuArgs, so it is given to libvirt's qemu user.
        statedisk = lv.give_to_qemu(guestlib.make_state_disk(os.path.join(work, "test-state.img")))
        tb = time.monotonic()
        r, rec_d, spec_d = define(d, start=True, boot={"path": gk, "initrd": gi,
                                                         "cmdline": "console=ttyS0 quiet panic=-1 sprout_test.after=stay"},
                                  qemu_args=["-drive", f"file={statedisk},format=raw,if=none,id=teststate", "-device",
                                             "virtio-blk-pci,drive=teststate,serial=sprout-test-state,bus=pci.0,addr=0x1d"])
        check("started" in r.stdout, f"define --start: {r.stdout}")
        # (libvirt places the channel's socket in its own directory, inside the daemon's
        # namespace: reached through /proc/PID/root; no watcher runs here.)
        reader = guestlib.StatusReader(lv.daemon_path(lv.channel_socket(d)), connect_timeout=30)
        try:
            line = reader.wait_for(lambda l: l.get("bootId") == "placeholder", 120)
        finally:
            reader.close()
        for want in ["sprout-config:1", "sprout-self:1", "sprout-secrets:1"]:
            check(want in line["message"], f"the guest's disks {line['message']!r} lack {want}")
        r = run([sprout, "stop", "--spec", spec_d, "--force"], timeout=120)
        check(r.returncode == 0, f"stop --force: {r.stdout}{r.stderr}")
        print(f"test_libvirt_pool: a guest booted from the pool's volumes ({line['message']}) in "
              f"{time.monotonic() - tb:.1f} s")

        # 3b. a base changed while it is uploaded: not the bytes hashed, never a volume
        base3 = base_variant("base3.raw", 30 * MiB)
        e = f"pe{pid}"
        spec_e = write_spec(os.path.join(specs, f"{e}.json"), spec_for(e, base3))
        before = volumes()
        p, seen = define_until_paused(spec_e, "1:3")
        with open(base3, "r+b") as f:  # beyond what was read: data where the hash saw a hole
            f.seek(40 * MiB)
            f.write(b"changed under the upload")
        out, err = p.communicate(timeout=120)
        seen += err
        vols = volumes()
        check(p.returncode == 1 and "changed while sprout read it" in seen,
              f"define of a base changed during its upload: exit {p.returncode}: {seen[-600:]}")
        check(vols == before and e not in lv.virsh("list", "--all", "--name").stdout.split(),
              f"a base changed during its upload left volumes or a domain: {sorted(vols - before)}")
        print("test_libvirt_pool: a base changed while it was uploaded was refused: no volume, no domain")

        # 4. an upload killed midway: never attached, removed by gc
        base2 = base_variant("base2.raw", 20 * MiB)
        c = f"pc{pid}"
        spec_c = write_spec(os.path.join(specs, f"{c}.json"), spec_for(c, base2))
        p, seen = define_until_paused(spec_c, "1")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        lv.virsh("pool-refresh", pool)
        vols = volumes()
        partial = [n for n in vols if n.startswith("base-") and n.endswith(".raw") and n not in ups]
        check(len(partial) == 1 and f"{partial[0]}@complete" not in vols, f"after the kill: {partial} {sorted(vols)}")
        check(c not in lv.virsh("list", "--all", "--name").stdout.split(), "a killed define defined its domain")
        r = run([sprout, "gc", "--spec-dir", specs])
        check(r.returncode == 0 and f"removed volume {partial[0]}" in r.stdout, f"gc: {r.returncode} {r.stdout}{r.stderr}")
        vols = volumes()
        check(partial[0] not in vols and f"{a}@root.qcow2" in vols and base_vol[0] in vols,
              f"gc after the kill: {sorted(vols)}")
        print(f"test_libvirt_pool: a killed upload left {partial[0]} without marker, no domain; gc removed it, "
              "kept overlays and used volumes")
        # define C again: the (new) base goes whole this time.
        r = run([sprout, "define", "--spec", spec_c])
        check(r.returncode == 0, f"define after the kill: {r.stderr}")
        vols = volumes()
        check(f"{partial[0]}@complete" in vols and same_bytes(base2, os.path.join(pool_dir, partial[0])),
              "the re-uploaded base is not whole")

        # 5. destroy: refused without --delete-disks; with it, only that VM's volumes go
        r = run([sprout, "destroy", "--spec", spec_b])
        check(r.returncode == 2 and f"{bvm}@root.qcow2" in r.stderr, f"destroy without --delete-disks: {r.returncode} {r.stderr}")
        r = run([sprout, "destroy", "--spec", spec_b, "--delete-disks"], timeout=120)
        check(r.returncode == 0, f"destroy: {r.returncode} {r.stderr}{r.stdout}")
        vols = volumes()
        check(not any(n.startswith(f"{bvm}@") for n in vols), f"destroy left {bvm}'s volumes: {sorted(vols)}")
        check(all(n in vols for n in ups), f"destroy removed a shared volume: {sorted(vols)}")
        os.unlink(spec_b)
        # 6. undefine keeps every volume; gc keeps the overlay of an undefined VM whose
        # spec is gone, and removes what no spec or domain uses (C's base, once C is gone).
        r = run([sprout, "undefine", a, "--spec", spec_a], timeout=120)
        check(r.returncode == 0 and all(n in volumes() for n in ups) and f"{a}@root.qcow2" in volumes(),
              f"undefine: {r.stdout}{r.stderr}")
        r = run([sprout, "destroy", "--spec", spec_c, "--delete-disks"], timeout=120)
        check(r.returncode == 0, f"destroy C: {r.stderr}")
        os.unlink(spec_c)
        # C's base volume is whole, and only C used it; A is undefined, its spec stays.
        r = run([sprout, "gc", "--spec-dir", specs])
        vols = volumes()
        check(r.returncode == 0 and all(n in vols for n in ups) and f"{a}@root.qcow2" in vols
              and partial[0] not in vols and f"{partial[0]}@complete" not in vols,
              f"gc with A undefined, C gone: {r.stdout}{r.stderr} {sorted(vols)}")
        print(f"test_libvirt_pool: destroy/undefine/gc rules hold ({time.monotonic() - t0:.1f} s)")
        print("test_libvirt_pool: PASS")
        return 0
    except Fail as e:
        print(f"test_libvirt_pool: FAIL: {e}", file=sys.stderr)
        if lv:
            print(lv.log_tail(), file=sys.stderr)
        return 1
    finally:
        if lv:
            lv.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test_libvirt_pool: kept {work}")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Host runtime benchmarks.

usage: bench_runtime.py SPROUT
1. Status latency, host side alone: a fake guest writes phase events to the status
   socket that `sprout watch` records; time from the write to status.json showing
   the event (status.json polled every 0.2 ms).
2. Disk: ten VMs prepared on one base (`sprout prepare`): overlay sizes right after
   creation, against a full copy of the base per VM.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "runtime"))
import runtime_lib as rl  # noqa: E402
from test_fake_guest import FakeGuest, event, make_spec  # noqa: E402

SPROUT = sys.argv[1]
rl.SPROUT = SPROUT


def latency(root, n=200):
    spec, state, _ = make_spec(root)
    fake = FakeGuest(os.path.join(state, "status.sock"))
    path = os.path.join(state, "status.json")
    out = []
    with rl.Proc(["watch", "--spec", spec], os.path.join(root, "watch.log")):
        fake.accept()
        phases = ["starting", "mounting", "rebuilding", "rebuilt"]
        for i in range(n):
            ph = phases[i % len(phases)]
            t0 = time.perf_counter()
            fake.send(event(ph, i + 1))
            while True:
                st = rl.read_status(state)
                if st and st.get("seq") == i + 1:
                    break
                time.sleep(0.0002)
            out.append((time.perf_counter() - t0) * 1000)
    fake.close()
    out.sort()
    return {"n": n, "median_ms": statistics.median(out), "p95_ms": out[int(0.95 * n)], "max_ms": out[-1]}


def disk(root):
    base_raw = os.path.join(root, "base.raw")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "sprout-state", base_raw, "1400M"], check=True)
    # fill it like a real base would be: 1.4 GB image, ~600 MB of data
    base = os.path.join(root, "base.qcow2")
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", base_raw, base], check=True)
    os.unlink(base_raw)
    cfg = os.path.join(root, "cfg")
    os.makedirs(os.path.join(cfg, "hosts", "self"), exist_ok=True)
    sizes = []
    for i in range(10):
        name = f"vm{i}"
        selfd = os.path.join(root, "self-" + name)
        os.makedirs(selfd, exist_ok=True)
        open(os.path.join(selfd, "configuration.nix"), "w").write(f'{{ networking.hostName = "{name}"; }}\n')
        spec = rl.write_spec(os.path.join(root, name + ".json"), version=1, name=name,
                             base={"image": base, "format": "qcow2"}, stateDir=os.path.join(root, name),
                             cacheDir=os.path.join(root, "cache"), gcRootDir=os.path.join(root, "gc"),
                             sources={"config": cfg, "self": selfd})
        r = rl.sprout(["prepare", "--spec", spec])
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        sizes.append(os.path.getsize(os.path.join(root, name, "root.qcow2")))
    virt = json.loads(subprocess.run(["qemu-img", "info", "--output=json", base], capture_output=True,
                                     text=True).stdout)["virtual-size"]
    return {"base_file_bytes": os.path.getsize(base), "base_virtual_bytes": virt,
            "overlay_bytes_each_after_creation": sizes[0], "ten_overlays_bytes": sum(sizes),
            "full_copy_per_vm_bytes": 10 * virt}


if __name__ == "__main__":
    root = tempfile.mkdtemp(prefix="sprb-", dir="/tmp")
    print(json.dumps({"host_latency": latency(os.path.join(root, "lat")) if os.makedirs(os.path.join(root, "lat")) is None else None,
                      "disk": disk(root)}, indent=2))
    subprocess.run(["rm", "-rf", root])

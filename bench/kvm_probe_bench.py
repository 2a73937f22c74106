#!/usr/bin/env python3
"""The cost of `accel: "auto"`'s KVM probe (issue 22), against its yardsticks in one run.

  Q  `qemu-system-x86_64 --version`: the least a qemu start costs here
  P  the probe's own qemu, under TCG (what a host whose KVM runs the probe pays, about:
     under KVM the 7 bytes of guest code run at once; qemu's start-up is the cost)
  K  the probe's qemu under `-accel kvm -cpu host`, as sprout runs it on this host
  R  `sprout check-host --reprobe`: the checks with a fresh probe
  C  `sprout check-host`: the same checks with this boot's cached verdict
R - C is what the first `sprout run` of a boot pays for the probe; every later run
reads one small file instead.

Commands run in rounds (Q P K R C, Q P K R C, ...), each a whole process timed from
outside; medians are printed with min and max.

Usage: kvm_probe_bench.py [SPROUT] [--runs N]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def firmware(path):
    # What host/runtime/kvm_probe.cc boots: 64 KiB, at the reset vector
    # mov al, 0x2a; out 0xf4, al; hlt; jmp $-1
    fw = bytearray(b"\xff" * 65536)
    fw[-16:-16 + 7] = bytes([0xB0, 0x2A, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD])
    with open(path, "wb") as f:
        f.write(fw)


def timed(cmd):
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return time.monotonic() - t0, r.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sprout", nargs="?", default=os.path.join(HERE, "..", "build", "host", "sprout"))
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sprout-probe-bench.")
    fw = os.path.join(work, "probe.fw")
    firmware(fw)
    probe = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-m", "16", "-bios", fw,
             "-device", "isa-debug-exit,iobase=0xf4,iosize=1"]
    nodir = os.path.join(work, "no-specs")
    cmds = {
        "Q qemu --version": ["qemu-system-x86_64", "--version"],
        "P probe under TCG": probe[:1] + ["-accel", "tcg"] + probe[1:],
        "K probe under KVM": probe[:1] + ["-accel", "kvm", "-cpu", "host"] + probe[1:],
        "R check-host --reprobe": [a.sprout, "check-host", "--reprobe", "--spec-dir", nodir],
        "C check-host (cached)": [a.sprout, "check-host", "--spec-dir", nodir],
    }
    times = {k: [] for k in cmds}
    codes = {k: set() for k in cmds}
    for name, cmd in cmds.items():  # warm-up
        timed(cmd)
    for _ in range(a.runs):
        for name, cmd in cmds.items():
            t, rc = timed(cmd)
            times[name].append(t)
            codes[name].add(rc)
    print(f"{a.runs} rounds; milliseconds: median (min-max); exit statuses")
    for name, ts in times.items():
        print(f"  {name:<24} {statistics.median(ts) * 1000:7.1f} ({min(ts) * 1000:.1f}-{max(ts) * 1000:.1f})"
              f"  exit {sorted(codes[name])}")
    r, c = statistics.median(times["R check-host --reprobe"]), statistics.median(times["C check-host (cached)"])
    print(f"the probe inside sprout (R - C): {(r - c) * 1000:.1f} ms")
    print("P exits 85 when the guest code ran; K: 85 where KVM runs it, else qemu's failure")


if __name__ == "__main__":
    sys.exit(main())

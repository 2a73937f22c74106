#!/usr/bin/env python3
"""Fleet bring-up (issue 16): N test-guest VMs (tests/vm: busybox, the real agent,
stand-in nixos-rebuild; TCG) from one shared base, started at the same moment the way
systemd's sprout-vms.target starts them, next to the same VM brought up alone.

In one run:
 1. solo: --solo VMs, one after the other, each `sprout run` alone; its time to
    `specialized` (from the start of `sprout run` to the host's receive time of the
    `specialized` event). ideal = N x median(solo) / cores.
 2. fleet: N `sprout run` started back to back (within milliseconds); each VM's time
    to `specialized`, the time until all N are specialized, and fleet / ideal
    (target <= 1.3). Failures: a `sprout wait` that does not end 0, a VM not
    specialized, a boot count other than the expected two (boot, reboot after the
    rebuild), a `sprout run` that ended before it was told to stop.
 3. host memory: MemTotal - MemAvailable sampled every 0.2 s, peak minus the figure
    before the fleet started; and the peak of the summed RSS of the fleet's qemu and
    sprout processes.
 4. disk (allocated bytes): the base, the N overlays right after `sprout prepare` and
    after specialization, the shared image cache, against one full copy of the base
    per VM.

The VMs stay up (sprout_test.after=stay) until all are specialized or the budget
runs out, then get SIGTERM. Usage:
  fleet_bench.py SPROUT AGENT [--vms 10] [--solo 2] [--budget 900] [--workdir DIR]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "runtime"))


def allocated(path):
    st = os.lstat(path)
    return st.st_blocks * 512


def tree_allocated(root):
    seen, total = set(), 0
    for d, _, files in os.walk(root):
        for f in files:
            st = os.lstat(os.path.join(d, f))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def mem_used_kib():
    m = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            m[k] = int(v.split()[0])
    return m["MemTotal"] - m["MemAvailable"]


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def fleet_pids(root):
    """qemu and sprout processes whose command line mentions the work directory."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if root.encode() in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return [p for p in pids if p != os.getpid()]


class Sampler(threading.Thread):
    def __init__(self, root):
        super().__init__(daemon=True)
        self.root, self.stop, self.peak_used, self.peak_rss = root, threading.Event(), 0, 0
        self.load_peak = 0.0

    def run(self):
        while not self.stop.is_set():
            self.peak_used = max(self.peak_used, mem_used_kib())
            self.peak_rss = max(self.peak_rss, rss_kib(fleet_pids(self.root)))
            with open("/proc/loadavg") as f:
                self.load_peak = max(self.load_peak, float(f.read().split()[0]))
            time.sleep(0.2)


def phase_times(rl, state, t0):
    """Seconds of the boot-rebuild-reboot cycle from the host's receive times:
    boot (run start to the agent's first `starting`), rebuild (`rebuilding` to
    `rebuilt`), reboot (`rebooting` to the next `starting`), last (that `starting`
    to `specialized`)."""
    ev = [(e["phase"], e["hostTimeMs"] / 1000) for e in rl.read_events(state)
          if e.get("phase") not in (None, "log") and "hostTimeMs" in e]
    first = {}
    starts = [t for p, t in ev if p == "starting"]
    for p, t in ev:
        first.setdefault(p, t)
    out = {}
    if starts:
        out["boot"] = starts[0] - t0
    if "rebuilding" in first and "rebuilt" in first:
        out["rebuild"] = first["rebuilt"] - first["rebuilding"]
    if "rebooting" in first and len(starts) > 1:
        out["reboot"] = starts[1] - first["rebooting"]
    if len(starts) > 1 and "specialized" in first:
        out["last"] = first["specialized"] - starts[1]
    return out


def print_phases(title, results):
    keys = ("boot", "rebuild", "reboot", "last")
    med = {k: statistics.median([r["phases"][k] for r in results if k in r["phases"]] or [float("nan")])
           for k in keys}
    print(f"  {title}: " + ", ".join(f"{k} {med[k]:.1f} s" for k in keys))


def specialized_at(rl, state):
    """hostTimeMs / 1000 of the first `specialized` event, or None."""
    for e in rl.read_events(state):
        if e.get("phase") == "specialized" and "hostTimeMs" in e:
            return e["hostTimeMs"] / 1000
    return None


def bring_up(rl, w, names, budget):
    """Starts `sprout run` for every name at once; returns per-VM results."""
    logs = {n: open(os.path.join(w.root, f"{n}-run.log"), "ab") for n in names}
    t0 = {}
    procs = {}
    for n in names:
        t0[n] = time.time()
        procs[n] = subprocess.Popen([rl.SPROUT, "run", "--spec", os.path.join(w.spec_dir, n + ".json")],
                                    stdin=subprocess.DEVNULL, stdout=logs[n], stderr=subprocess.STDOUT,
                                    start_new_session=True)
    start = min(t0.values())
    waits = {n: subprocess.Popen([rl.SPROUT, "wait", n, "--for", "specialized", "--spec-dir", w.spec_dir,
                                  "--timeout", str(budget), "--quiet"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for n in names}
    results = {}
    try:
        for n in names:
            try:
                rc = waits[n].wait(budget + 30)
            except subprocess.TimeoutExpired:
                waits[n].kill()
                rc = "timeout"
            results[n] = {"wait": rc, "runEndedEarly": procs[n].poll()}
        all_done = time.time()
    finally:
        for n in names:
            if procs[n].poll() is None:
                procs[n].send_signal(signal.SIGTERM)
        for n in names:
            try:
                procs[n].wait(120)
            except subprocess.TimeoutExpired:
                procs[n].kill()
                procs[n].wait()
            logs[n].close()
    for n in names:
        at = specialized_at(rl, w.state(n))
        st = rl.read_status(w.state(n)) or {}
        r = results[n]
        r.update({"toSpecialized": None if at is None else at - t0[n], "boots": w.boots(n),
                  "phases": phase_times(rl, w.state(n), t0[n]),
                  "phase": st.get("phase"), "runExit": procs[n].returncode})
        r["ok"] = (r["wait"] == 0 and r["runEndedEarly"] is None and r["toSpecialized"] is not None
                   and r["boots"] == [1, 2])
    last = max((r["toSpecialized"] + t0[n] for n, r in results.items() if r["toSpecialized"] is not None),
               default=all_done)
    return results, last - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sprout")
    ap.add_argument("agent")
    ap.add_argument("--vms", type=int, default=10)
    ap.add_argument("--solo", type=int, default=2)
    ap.add_argument("--budget", type=int, default=900, help="seconds for the whole fleet to specialize")
    ap.add_argument("--workdir")
    a = ap.parse_args()
    os.environ["SPROUT"] = os.path.abspath(a.sprout)
    os.environ["SPROUT_AGENT"] = os.path.abspath(a.agent)
    import runtime_lib as rl  # reads SPROUT and SPROUT_AGENT
    rl.SPROUT = os.environ["SPROUT"]
    root = a.workdir or tempfile.mkdtemp(prefix="sprout-fleet.", dir="/var/tmp")
    os.makedirs(root, exist_ok=True)
    cores = os.cpu_count()
    with open("/proc/loadavg") as f:
        print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cores} cores, load average at start "
              f"{' '.join(f.read().split()[:3])}", flush=True)
    try:
        w = rl.GuestWorld(root, os.environ["SPROUT_AGENT"])
        solo_names = [f"solo{i}" for i in range(a.solo)]
        fleet = [f"vm{i:02d}" for i in range(a.vms)]
        for n in solo_names + fleet:
            w.spec(n, after="stay")
        # 1. alone, one after the other
        solo = []
        for n in solo_names:
            rl.sprout(["prepare", "--spec", os.path.join(w.spec_dir, n + ".json")])
            res, _ = bring_up(rl, w, [n], a.budget)
            solo.append(res[n])
            print(f"solo {n}: {res[n]['toSpecialized']:.1f} s to specialized, ok={res[n]['ok']}", flush=True)
        solo_t = statistics.median(r["toSpecialized"] for r in solo if r["toSpecialized"] is not None)
        # 2. the fleet: overlays made first (their size right after creation), then all at once
        for n in fleet:
            p = rl.sprout(["prepare", "--spec", os.path.join(w.spec_dir, n + ".json")])
            if p.returncode != 0:
                raise SystemExit(f"prepare {n}: {p.stderr}")
        overlays_new = sum(allocated(os.path.join(w.state(n), "root.qcow2")) for n in fleet)
        sampler = Sampler(root)
        mem_before = mem_used_kib()
        sampler.start()
        results, fleet_t = bring_up(rl, w, fleet, a.budget)
        sampler.stop.set()
        sampler.join()
        overlays_after = sum(allocated(os.path.join(w.state(n), "root.qcow2")) for n in fleet)
        base_alloc = allocated(w.base)
        base_virtual = json.loads(subprocess.run(["qemu-img", "info", "--output=json", w.base], capture_output=True,
                                                 text=True, check=True).stdout)["virtual-size"]
        cache = tree_allocated(os.path.join(root, "cache"))

        ideal = a.vms * solo_t / cores
        failures = [n for n, r in results.items() if not r["ok"]]
        times = sorted(r["toSpecialized"] for r in results.values() if r["toSpecialized"] is not None)
        print(f"\nsolo: time to specialized {solo_t:.1f} s (median of {len(solo)}: "
              f"{', '.join('%.1f' % r['toSpecialized'] for r in solo if r['toSpecialized'] is not None)})")
        print(f"fleet of {a.vms}: all specialized after {fleet_t:.1f} s; ideal {a.vms} x {solo_t:.1f} / {cores} = "
              f"{ideal:.1f} s; fleet/ideal = {fleet_t / ideal:.2f} (target <= 1.3)")
        print(f"  each VM's time to specialized, s: {', '.join(f'{t:.1f}' for t in times)} "
              f"(median {statistics.median(times):.1f})" if times else "  no VM specialized")
        print("  medians of the cycle's parts (host receive times of the phases):")
        print_phases("solo ", solo)
        print_phases("fleet", list(results.values()))
        print(f"  failures: {len(failures)} {failures}")
        for n in failures:
            print(f"    {n}: {results[n]}")
        print(f"  host memory: +{(sampler.peak_used - mem_before) / 1024:.0f} MiB at the peak (MemTotal - "
              f"MemAvailable); the fleet's processes' RSS peaked at {sampler.peak_rss / 1024:.0f} MiB; "
              f"load average peaked at {sampler.load_peak:.1f}")
        print(f"  disk, allocated: base {base_alloc / 2**20:.1f} MiB (virtual {base_virtual / 2**20:.0f} MiB); "
              f"{a.vms} overlays {overlays_new / 2**20:.2f} MiB after creation, {overlays_after / 2**20:.2f} MiB after "
              f"specialization; shared image cache {cache / 2**20:.1f} MiB; total "
              f"{(base_alloc + overlays_after + cache) / 2**20:.1f} MiB against {a.vms} full copies of the base: "
              f"{a.vms * base_alloc / 2**20:.1f} MiB allocated ({a.vms * base_virtual / 2**20:.0f} MiB virtual)")
        with open(os.path.join(root, "fleet-results.json"), "w") as f:
            json.dump({"solo": solo, "fleet": results, "fleetSeconds": fleet_t, "ideal": ideal}, f, indent=1)
    finally:
        if not a.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

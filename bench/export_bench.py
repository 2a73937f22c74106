#!/usr/bin/env python3
"""The export benchmark of issue 16, with its baselines, in one run.

Two generated trees (bench/gen_tree.py, old timestamps as in a checkout or the Nix
store), each measured side by side with its yardstick:

  small: 200 files / 1 MB, config + self
    G  genisoimage -volid cidata -joliet -rock of the tree, then sync -f of the ISO
    F  a fresh `sprout export` (empty image and digest caches)       target F/G <= 1.0
    U  an unchanged re-export                                        target U/G <= 0.5
  big: 10,000 files / 100 MB (--no-big skips it)
    A  mkfs.ext4 -d alone, with sprout's exact options, then sync -f
    B  a fresh `sprout export`                                       target B/A <= 1.1
    C  an unchanged re-export                                        target C/B <= 0.10

Commands are run in rounds, one of each per round in turn (A B C A B C ...), so a
change in the machine's load during the run moves all of them alike. Each run is the
whole process, timed from outside (monotonic clock around fork/exec/wait); what must
be fresh is reset before the run, untimed (`rm`, then `sync` so no earlier run's dirty
data is flushed inside the next one). Medians are printed, with min and max, and the
ratios of the medians. --vs OTHER_SPROUT adds the same export commands for a second
binary (e.g. the code before a change) in the same rounds.

Usage: export_bench.py [SPROUT] [--runs N] [--vs OTHER_SPROUT] [--no-big] [--workdir DIR]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_tree(work, name, files, mb):
    tree, self_dir = os.path.join(work, name), os.path.join(work, name + "-self")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_tree.py"), tree, str(files), str(mb)], check=True)
    os.makedirs(self_dir)
    with open(os.path.join(self_dir, "configuration.nix"), "w") as f:
        f.write("{ ... }: { }\n")
    # Old timestamps, as in a checkout or the Nix store: the digest cache never trusts
    # a file changed in the last two seconds. touch sets mtime, but ctime becomes
    # now, so let two seconds pass too (or the first rounds would all rehash).
    sh(f"find {tree} {self_dir} -exec touch -h -d '2 hours ago' {{}} +")
    time.sleep(2.5)
    return tree, self_dir


class Case:
    def __init__(self, label, argv, prepare=None):
        self.label, self.argv, self.prepare, self.times = label, argv, prepare, []

    def run_once(self):
        if self.prepare:
            self.prepare()
        t0 = time.monotonic()
        p = subprocess.run(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t = time.monotonic() - t0
        if p.returncode != 0:
            raise SystemExit(f"{self.label}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
        self.times.append(t)

    def median(self):
        return statistics.median(self.times)


def rounds(cases, runs, warmup=1):
    for i in range(warmup + runs):
        for c in cases:
            c.run_once()
        if i < warmup:
            for c in cases:
                c.times.clear()


def export_cases(tag, sprout, tree, self_dir, work):
    out, cache = os.path.join(work, f"out-{tag}"), os.path.join(work, f"cache-{tag}")
    argv = [sprout, "--log-level", "warn", "export", "--name", "bench", "--config", tree, "--self", self_dir,
            "--out", out, "--cache", cache]

    def fresh():
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        sh("sync")

    # The unchanged re-export runs right after the fresh one of the same round, on
    # what it left: every run of it is a re-export.
    return Case(f"fresh export ({tag})", argv, fresh), Case(f"unchanged re-export ({tag})", argv)


def report(title, cases, ratios):
    print(f"\n{title}: medians of {len(cases[0].times)} runs, s (min-max)")
    for c in cases:
        print(f"  {c.label:<40} {c.median():7.3f}  ({min(c.times):.3f}-{max(c.times):.3f})")
    for text, a, b, target in ratios:
        r = a.median() / b.median()
        verdict = "" if target is None else ("  met" if r <= target else "  NOT met")
        print(f"  {text:<40} {r:7.3f}" + (f"  (target <= {target}){verdict}" if target is not None else ""))


def measure_tree(title, yardstick, sprouts, tree, self_dir, work, names, targets, runs):
    """Runs the yardstick and, for each sprout, a fresh and an unchanged export, in
    rounds; `names` ("F", "U") and `targets` (fresh vs yardstick, unchanged vs the
    yardstick or, for "C/B", vs the fresh export) label the ratios."""
    cases, ratios = [yardstick], []
    y = yardstick.label.split()[0]
    for tag, sp in sprouts:
        fresh, unchanged = export_cases(f"{title.split(':')[0]}, {tag}", sp, tree, self_dir, work)
        cases += [fresh, unchanged]
        ratios += [(f"{names[0]}/{y} ({tag})", fresh, yardstick, targets[0]),
                   (f"{names[1]}/{names[0] if names[1] == 'C' else y} ({tag})", unchanged,
                    fresh if names[1] == "C" else yardstick, targets[1])]
    rounds(cases, runs)
    report(title, cases, ratios)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sprout", nargs="?", default=os.path.join(HERE, "..", "build", "host", "sprout"))
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--vs", help="a second sprout binary, measured in the same rounds")
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--workdir")
    a = ap.parse_args()
    for tool in ("genisoimage", "mkfs.ext4"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt install genisoimage e2fsprogs)")
    sprouts = [("new", os.path.abspath(a.sprout))] + ([("vs", os.path.abspath(a.vs))] if a.vs else [])
    work = a.workdir or tempfile.mkdtemp(prefix="sprout-export-bench.", dir="/var/tmp")
    os.makedirs(work, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average at start {loadavg()}")
    try:
        tree, self_dir = make_tree(work, "small", 200, 1)
        iso = os.path.join(work, "seed.iso")
        g = Case("G genisoimage + sync -f",
                 ["sh", "-c", f"genisoimage -quiet -volid cidata -joliet -rock -o {iso} {tree} && sync -f {iso}"],
                 lambda: (os.path.exists(iso) and os.remove(iso), sh("sync")))
        measure_tree("small tree: 200 files, 1 MB, config + self", g, sprouts, tree, self_dir, work, ("F", "U"),
                     (1.0, 0.5), a.runs)

        if not a.no_big:
            tree, self_dir = make_tree(work, "big", 10000, 100)
            probe_out = os.path.join(work, "probe")
            subprocess.run([sprouts[0][1], "--log-level", "warn", "export", "--name", "bench", "--config", tree,
                            "--self", self_dir, "--out", probe_out, "--cache", probe_out + "-cache"],
                           check=True, stdout=subprocess.DEVNULL)
            size_k = os.stat(os.path.realpath(os.path.join(probe_out, "config.img"))).st_size // 1024
            inodes = 1 + sum(len(d) + len(f) for _, d, f in os.walk(tree)) + 64  # as sprout counts
            img = os.path.join(work, "mkfs.img")
            uuid = "01234567-89ab-4def-8123-456789abcdef"
            mkfs = (f"E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -T default -O ^has_journal -b 4096 -I 256 -N {inodes} "
                    f"-m 0 -L sprout-config -U {uuid} -E root_owner=0:0,hash_seed={uuid},nodiscard -d {tree} {img} "
                    f"{size_k}k >/dev/null 2>&1 && sync -f {img}")
            ma = Case("A mkfs.ext4 -d + sync -f", ["sh", "-c", mkfs],
                      lambda: (os.path.exists(img) and os.remove(img), sh("sync")))
            measure_tree("big tree: 10,000 files, 100 MB, config + self", ma, sprouts, tree, self_dir, work,
                         ("B", "C"), (1.1, 0.10), max(3, a.runs // 2))
        print(f"\nload average at the end {loadavg()}")
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Where the agent's already-specialized boot spends TCG's time: translated code.

usage: agent_tcg_profile.py SPROUT AGENT [AGENT ...] [--top N]

Under software emulation, each block of guest code is translated by QEMU the first
time it runs, and the agent's boot path is almost all first-time code (about 0.8 us
per guest instruction translated, measured in the test guest). This tool counts
that cost deterministically, where wall-clock figures on a shared machine are noisy:
it specializes a state disk as bench/agent_tcg_bench.py does, then boots it once per
AGENT with `qemu -d in_asm` (every translation logged) and `norandmaps` on the guest
kernel command line (so the agent and its libraries load at fixed addresses), and
counts the guest instructions translated from the agent's first `Run::go` block to
its last block, by region (the agent binary, each shared library, the kernel) and,
for the agent, by function. Library load addresses come from the same binary run on
this host under `setarch -R` (LD_DEBUG=files), which lays them out as the guest does.
The log slows the boot, so the `total` printed is not a timing figure.
"""

import argparse
import bisect
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from agent_tcg_bench import guestlib, prepare, specialized_detail, t  # noqa: E402

PIE_BASE = 0x555555554000  # where the kernel loads a PIE without randomization
START_SYMBOL = "Run::go"


class LoggingGuest(guestlib.Guest):
    log_path = None

    def command_line(self):
        return super().command_line() + ["-d", "in_asm", "-D", self.log_path]


def translated_blocks(log_path):
    """[(first guest address, instruction count)] in translation order."""
    blocks, cur = [], None
    with open(log_path, errors="replace") as f:
        for line in f:
            if line.startswith("IN:"):
                cur = [None, 0]
                blocks.append(cur)
                continue
            m = re.match(r"0x([0-9a-f]+):", line)
            if m and cur is not None:
                if cur[0] is None:
                    cur[0] = int(m.group(1), 16)
                cur[1] += 1
    return [(a, n) for a, n in blocks if a is not None]


def symbols(path):
    out = subprocess.run(["nm", "-C", "--defined-only", path],
                         capture_output=True, text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1].lower() in "tiw":
            syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    return [a for a, _ in syms], [s for _, s in syms]


def library_bases(agent):
    """[(base, size, soname)] of the agent's libraries without address randomization."""
    r = subprocess.run(["setarch", "x86_64", "-R", "env", "LD_DEBUG=files", agent, "--help"],
                       capture_output=True, text=True)
    lines, libs = r.stderr.splitlines(), []
    for i, line in enumerate(lines[:-1]):
        m = re.search(r"file=(\S+) \[0\];\s+generating link map", line)
        b = re.search(r"base: (0x[0-9a-f]+)\s+size: (0x[0-9a-f]+)", lines[i + 1])
        if m and b:
            libs.append((int(b.group(1), 16), int(b.group(2), 16), m.group(1)))
    return libs


def profile(agent, log_path, top):
    blocks = translated_blocks(log_path)
    agent_syms = symbols(agent)
    libs = library_bases(agent)

    def name_in(syms, off):
        i = bisect.bisect_right(syms[0], off) - 1
        return syms[1][i] if i >= 0 else "?"

    def where(addr):
        if addr >= 0xffff800000000000:
            return "kernel", ""
        if PIE_BASE <= addr < PIE_BASE + 0x10000000:
            return "agent", re.sub(r"\((?!anonymous).*", "", name_in(agent_syms, addr - PIE_BASE))
        for base, size, soname in libs:
            if base <= addr < base + size:
                return soname, ""
        return "ld.so and others", ""

    regions = [where(a) for a, _ in blocks]
    starts = [i for i, (r, f) in enumerate(regions) if r == "agent" and START_SYMBOL in f]
    if not starts:
        raise SystemExit(f"{agent}: no translated block in a function named like {START_SYMBOL}")
    last = max(i for i, (r, _) in enumerate(regions) if r == "agent")
    by_region, by_function = collections.Counter(), collections.Counter()
    for i in range(starts[0], last + 1):
        region, function = regions[i]
        by_region[region] += blocks[i][1]
        if region == "agent":
            by_function[function] += blocks[i][1]
    total = sum(by_region.values())
    print(f"{agent}: {total} guest instructions translated during the run "
          f"({last - starts[0] + 1} blocks)")
    for region, n in by_region.most_common():
        print(f"  {region:<20} {n:6d}")
    print(f"  agent's top {top} functions:")
    for function, n in by_function.most_common(top):
        print(f"    {n:6d} {function[:110]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sprout")
    ap.add_argument("agents", nargs="+")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sprout-agent-profile-")
    try:
        guests, disks, state = prepare(args.sprout, args.agents, work, append="norandmaps")
        for i, (agent, kernel, initrd) in enumerate(guests):
            LoggingGuest.log_path = os.path.join(work, f"in_asm{i}.log")
            g, lines, _ = t.boot(kernel, initrd, state, disks, work, f"p{i}", cls=LoggingGuest,
                                 append="norandmaps")
            d = specialized_detail(lines)
            if not d or d.get("action") != "already-specialized":
                print(g.console_tail(60))
                raise SystemExit(f"{agent}: no already-specialized report")
            profile(agent, LoggingGuest.log_path, args.top)
            os.remove(LoggingGuest.log_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

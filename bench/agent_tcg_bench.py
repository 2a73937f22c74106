#!/usr/bin/env python3
"""The agent's already-specialized boot path, measured inside the TCG test guest.

usage: agent_tcg_bench.py SPROUT AGENT [AGENT ...] [--boots N] [--no-listener N]

What every boot of every VM pays: find the disks, mount them, decide, report
`specialized`. One state disk is specialized once (a rebuild, a reboot, a boot that
records it as applied) with the real `sprout export` disks (config, self and ssh:
three mounts); then each AGENT boots it N times, the agents taking turns boot by
boot so that load on this shared machine falls on all of them alike. Each boot's
figures are the agent's own, from its `specialized` event (timingsMs: monotonic
time from the start of its run until the event is handed to the status channel;
cpuMs: see docs/performance.md; stepsMs, where the agent reports it: the time at
each step). Prints per-agent medians, min and max.
Target (issue 3): total under 50 ms in the TCG guest.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "agent"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "vm"))
import guestlib  # noqa: E402
import test_agent_vm as t  # noqa: E402  (its export and boot helpers)

AGENT_CONFIG = {"version": 1,
                "mountPoints": {"config": "/etc/nixos", "self": "/etc/nixos/hosts/self", "ssh": "/root/.ssh"},
                "rebuild": {"command": ["nixos-rebuild", "boot"], "timeoutSeconds": 600, "maxAttempts": 3,
                            "respecializeOnChange": True},
                "rebootCommand": ["systemctl", "reboot"], "stateDir": "/var/lib/sprout",
                "diskWaitSeconds": 4, "flushTimeoutSeconds": 3}


def specialized_detail(lines):
    sp = [l for l in lines if l.get("phase") == "specialized"]
    return sp[-1]["detail"] if sp else None


def summary(values):
    return f"{statistics.median(values):7.1f} ({min(values):.1f}-{max(values):.1f})"


def prepare(sprout, agents, work, cache=None, **boot_args):
    """A test guest per agent, the exported disks and a state disk the first agent has
    specialized (a rebuild, a reboot, a boot that records it as applied): every later
    boot takes the already-specialized path. Returns (guests, disks, state disk)."""
    conf = os.path.join(work, "agent.json")
    with open(conf, "w") as f:
        json.dump(AGENT_CONFIG, f)
    guests = [(agent, *guestlib.build_guest(agent, conf, os.path.join(work, f"guest{i}"), cache_dir=cache))
              for i, agent in enumerate(agents)]
    disks, _ = t.export(sprout, work, "bench")
    state = guestlib.make_state_disk(os.path.join(work, "state.img"))
    _, kernel, initrd = guests[0]
    for name, want in (("specialize", "rebooting"), ("apply", "specialized")):
        g, lines, _ = t.boot(kernel, initrd, state, disks, work, name, **boot_args)
        if not any(l.get("phase") == want for l in lines):
            print(g.console_tail(60))
            raise SystemExit(f"setup boot '{name}' did not report {want}")
    return guests, disks, state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sprout")
    ap.add_argument("agents", nargs="+")
    ap.add_argument("--boots", type=int, default=7)
    ap.add_argument("--cache")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sprout-agent-bench-")
    try:
        guests, disks, state = prepare(args.sprout, args.agents, work, args.cache)
        results = {agent: [] for agent, _, _ in guests}
        for n in range(args.boots):
            for i, (agent, kernel, initrd) in enumerate(guests):
                g, lines, _ = t.boot(kernel, initrd, state, disks, work, f"b{n}-{i}")
                d = specialized_detail(lines)
                if not d or d.get("action") != "already-specialized":
                    print(g.console_tail(60))
                    raise SystemExit(f"boot {n} of {agent}: no already-specialized report")
                results[agent].append(d)
        print(f"already-specialized boots in the TCG test guest, {args.boots} per agent, ms: median (min-max)")
        for agent, ds in results.items():
            print(f"{agent}:")
            for k in ("find", "mount", "decide", "report", "total"):
                print(f"  {k:<8} {summary([d['timingsMs'][k] for d in ds])}")
            for k in ("total", "run", "runWithoutMounts"):
                print(f"  cpu.{k:<16} {summary([d['cpuMs'][k] for d in ds])}")
            steps = ds[0].get("stepsMs") or {}
            if steps:
                print("  steps (cumulative ms from the start of the run):")
                for k in sorted(steps, key=steps.get):
                    print(f"    {k:<18} {summary([d['stepsMs'][k] for d in ds if k in d.get('stepsMs', {})])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

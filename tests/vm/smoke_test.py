#!/usr/bin/env python3
"""Smoke test of the test guest itself (not of the real agent).

Builds the guest with a placeholder agent (a busybox sh script; the real
sprout-agent is written in parallel) and boots it four times on one state disk:

  boot 1  after=poweroff: status port works, disks by serial, config disk ro=1,
          `nixos-rebuild boot` makes generation 1; current-system is the base.
  boot 2  after=poweroff: current-system is generation 1 (survived the reboot);
          rebuild makes generation 2; the state disk is checked on the host.
  boot 3  after=stay with a NIC and QMP, config says "# sprout-test: fail":
          rebuild fails with the promised last line; port 8080 answers through
          hostfwd; QMP system_powerdown powers the guest off cleanly.
  boot 4  no -no-reboot, after=stay, ignore_powerdown=1, the agent runs
          `systemctl reboot` once: the guest reboots in place (boot 5 follows,
          status port stays connected, current-system is generation 3); the
          power button is ignored; QMP quit ends it.

Exits 0 on success, 1 with a clear message (and the console tail) otherwise.
Usage: smoke_test.py [--keep] [--cache DIR] [--workdir DIR]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestlib  # noqa: E402
from guestlib import Guest, GuestError  # noqa: E402

BASE = "/nix/store/00000000000000000000000000000000-nixos-system-base"

PLACEHOLDER_AGENT = "#!/bin/sh\n# Placeholder sprout-agent for smoke_test.py.\n" + guestlib.FIND_STATUS_PORT_SH + r"""
# A blocking write hangs while no host listens: bound it.
status() { [ -n "$port" ] && timeout 5 sh -c 'printf "%s\n" "$1" >"$2"' _ "$1" "$port"; }

cur=$(readlink /run/current-system)
disks=
cfgdev=
for d in /sys/block/*; do
  s=$(cat "$d/serial" 2>/dev/null); ro=$(cat "$d/ro")
  echo "smoke-agent: disk ${d##*/} serial=$s ro=$ro"
  disks="$disks ${d##*/}:$s:$ro"
  [ "$s" = sprout-cfg ] && cfgdev=/dev/${d##*/}
done
labels=$(ls /dev/disk/by-label | tr '\n' ' ')
status "{\"event\":\"agent-started\",\"current_system\":\"$cur\",\"disks\":\"${disks# }\",\"labels\":\"$labels\"}"

mkdir -p /mnt/cfg
mount -t ext4 -o ro,noload "$cfgdev" /mnt/cfg || { status '{"event":"error","what":"mount"}'; exit 3; }
nixos-rebuild boot -I nixos-config=/mnt/cfg/configuration.nix >/tmp/rebuild.log 2>&1
rc=$?
cat /tmp/rebuild.log
last=$(tail -n1 /tmp/rebuild.log | sed 's/["\\]/_/g')
status "{\"event\":\"rebuilt\",\"rc\":$rc,\"last\":\"$last\"}"
reboot_after=
# Reboot once (remembered on the state disk), like an agent after its rebuild.
if grep -q '^# smoke: agent-reboots' /mnt/cfg/configuration.nix && [ ! -e /var/lib/sprout/smoke-rebooted ]; then
  touch /var/lib/sprout/smoke-rebooted
  reboot_after=1
fi
umount /mnt/cfg
if [ -n "$reboot_after" ]; then
  status '{"event":"rebooting"}'
  systemctl reboot
fi
exit 0
"""


def fail(msg: str, guest: Guest = None) -> None:
    print(f"smoke_test: FAIL: {msg}", file=sys.stderr)
    if guest is not None:
        print(guest.console_tail(), file=sys.stderr)
    sys.exit(1)


def check(cond: bool, msg: str, guest: Guest = None) -> None:
    if not cond:
        fail(msg, guest)


def make_cfg(work: str, extra: str = "") -> str:
    d = os.path.join(work, "cfg")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "configuration.nix"), "w") as f:
        f.write(extra + '{ ... }: { networking.hostName = "alpha"; }\n')
    return guestlib.make_ext4_from_dir(d, "sprout-cfg", os.path.join(work, "cfg.img"))


def first_status_time(g: Guest) -> float:
    st = g.status
    return st.times[0] - g.started_at if st and st.times else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--cache", default=None, help="kernel cache directory")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    work = args.workdir or tempfile.mkdtemp(prefix="sprout-smoke-")
    os.makedirs(work, exist_ok=True)
    ok = False
    try:
        agent = os.path.join(work, "placeholder-agent")
        with open(agent, "w") as f:
            f.write(PLACEHOLDER_AGENT)
        os.chmod(agent, 0o755)
        t = time.monotonic()
        kernel, initrd = guestlib.build_guest(agent, None, os.path.join(work, "guest"),
                                              cache_dir=args.cache)
        print(f"smoke_test: guest built in {time.monotonic() - t:.1f} s")
        state = guestlib.make_state_disk(os.path.join(work, "state.img"))
        timings = []

        def run_poweroff_boot(n: int) -> dict:
            cfg = make_cfg(work)
            with Guest(kernel, initrd, state_disk=state, disks=[(cfg, "sprout-cfg", True)],
                       after="poweroff", timeout=120, workdir=work, name=f"boot{n}") as g:
                started = g.status.wait_for(lambda l: l.get("event") == "agent-started", 90)
                rebuilt = g.status.wait_for(lambda l: l.get("event") == "rebuilt", 60)
                rc = g.wait(60)
                timings.append((n, first_status_time(g), time.monotonic() - g.started_at))
                check(rc == 0, f"boot {n}: qemu exit code {rc}", g)
                check("sprout-test: agent exited 0" in g.console(),
                      f"boot {n}: no 'agent exited 0' line", g)
                check("sprout-test: poweroff" in g.console(), f"boot {n}: no clean poweroff", g)
                check("sprout-cfg:1" in started["disks"],
                      f"boot {n}: config disk not ro=1: {started['disks']}", g)
                check(set(started["labels"].split()) == {"sprout-state", "sprout-cfg"},
                      f"boot {n}: /dev/disk/by-label has {started['labels']!r}", g)
                check("sprout-test-state:0" in started["disks"],
                      f"boot {n}: state disk not rw: {started['disks']}", g)
                markers = g.boot_markers()
                check(len(markers) == 1 and markers[0][0] == n,
                      f"boot {n}: boot markers {markers}", g)
                check(markers[0][1] == started["current_system"],
                      f"boot {n}: console and agent disagree on current-system", g)
                check(rebuilt["rc"] == 0, f"boot {n}: rebuild failed: {rebuilt}", g)
                return {"current": started["current_system"], "result": rebuilt["last"]}

        b1 = run_poweroff_boot(1)
        check(b1["current"] == BASE, f"boot 1: current-system {b1['current']} is not the base")
        check(b1["result"].startswith("/nix/store-built/")
              and b1["result"].endswith("-nixos-system-alpha-1"),
              f"boot 1: unexpected rebuild result {b1['result']}")

        b2 = run_poweroff_boot(2)
        check(b2["current"] == b1["result"],
              f"boot 2: current-system {b2['current']} is not generation 1 {b1['result']}")
        check(b2["result"].endswith("-nixos-system-alpha-2"),
              f"boot 2: unexpected rebuild result {b2['result']}")
        check(guestlib.read_file_from_ext4(state, "/boot-count").strip() == b"2",
              "state disk: boot-count is not 2")
        name = guestlib.read_file_from_ext4(state, b2["result"].replace("/nix/store-built", "/store")
                                            + "/name")
        check(name.strip() == b"alpha", f"state disk: generation 2 name is {name!r}")

        # boot 3: rebuild told to fail; stay; port 8080; power button.
        cfg = make_cfg(work, "# sprout-test: fail\n")
        with Guest(kernel, initrd, state_disk=state, disks=[(cfg, "sprout-cfg", True)],
                   after="stay", qmp=True, hostfwd=[(0, 8080)], timeout=120, workdir=work,
                   name="boot3") as g:
            started = g.status.wait_for(lambda l: l.get("event") == "agent-started", 90)
            check(started["current_system"] == b2["result"],
                  f"boot 3: current-system {started['current_system']} is not generation 2", g)
            rebuilt = g.status.wait_for(lambda l: l.get("event") == "rebuilt", 60)
            check(rebuilt["rc"] == 1 and "(sprout-test: rebuild told to fail)" in rebuilt["last"],
                  f"boot 3: expected a told-to-fail rebuild, got {rebuilt}", g)
            g.wait_console(r"^sprout-test: staying up", 30)
            line = guestlib.tcp_read_line(g.ports[8080], 30)
            check(line.startswith("sprout-test-guest"), f"boot 3: port 8080 said {line!r}", g)
            t = time.monotonic()
            g.qmp().system_powerdown()
            rc = g.wait(30)
            powerdown_s = time.monotonic() - t
            timings.append((3, first_status_time(g), time.monotonic() - g.started_at))
            check(rc == 0, f"boot 3: qemu exit code {rc} after system_powerdown", g)
            check("power button pressed; powering off" in g.console()
                  and "sprout-test: poweroff" in g.console(),
                  "boot 3: no clean power-button poweroff on the console", g)
        print(f"smoke_test: boot 3: port 8080 said {line!r}; "
              f"system_powerdown to qemu exit {powerdown_s:.1f} s")

        # boot 4: the agent reboots with systemctl; reboot in place; button ignored.
        cfg = make_cfg(work, "# smoke: agent-reboots\n")
        with Guest(kernel, initrd, state_disk=state, disks=[(cfg, "sprout-cfg", True)],
                   after="stay", no_reboot=False, ignore_powerdown=True, qmp=True,
                   timeout=150, workdir=work, name="boot4") as g:
            g.status.wait_for(lambda l: l.get("event") == "rebooting", 90)
            g.wait_console(r"^sprout-test: boot 5 ", 60)
            # The same status connection sees the second boot's agent.
            g.status.wait_count(4, 60)
            g.wait_console(r"^sprout-test: staying up", 60)
            starts = [l for l in g.status.lines if l.get("event") == "agent-started"]
            check(len(starts) >= 2, f"boot 4/5: status lines {g.status.lines}", g)
            check(starts[1]["current_system"].endswith("-nixos-system-alpha-3"),
                  f"boot 5: current-system {starts[1]['current_system']} is not generation 3", g)
            g.qmp().system_powerdown()
            g.wait_console(r"power button pressed; ignored", 20)
            check(g.running(), "boot 5: the guest stopped although the button is ignored", g)
            g.qmp().quit()
            g.wait(20)
            timings.append((4, first_status_time(g), time.monotonic() - g.started_at))

        for n, first, total in timings:
            print(f"smoke_test: boot {n}: first status line after {first:.1f} s, "
                  f"qemu ran {total:.1f} s")
        print("smoke_test: OK")
        ok = True
        return 0
    except GuestError as e:
        fail(str(e))
    finally:
        if args.keep or not ok:
            print(f"smoke_test: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Status-channel latency inside a TCG test guest, measured by round trip.

Guest and host clocks are not synchronized to the millisecond under TCG, so the
one-way "guest writes an event -> host has it" time cannot be read off timestamps.
This benchmark boots the test guest (tests/vm) with a tiny echo program on the
virtio-serial port sprout.status.0, writes timestamped lines into the host side of
the port (the unix socket `sprout run` reads), and times each echo. Half the round
trip bounds the guest-write-to-host-read part of the latency; `bench_runtime.py`
measures the host's handling (decode, status.json) separately.

Usage: status_latency_tcg.py [COUNT]   (prints median, p95 and max)
"""
import os
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "vm"))
import guestlib  # noqa: E402

ECHO_AGENT = "#!/bin/sh\n" + guestlib.FIND_STATUS_PORT_SH + r"""
exec 3<>"$port"
printf 'echo-ready\n' >&3
exec cat <&3 >&3
"""


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    work = tempfile.mkdtemp(prefix="sprout-lat-")
    agent = os.path.join(work, "echo-agent")
    with open(agent, "w") as f:
        f.write(ECHO_AGENT)
    os.chmod(agent, 0o755)
    kernel, initrd = guestlib.build_guest(agent, None, os.path.join(work, "guest"))
    state = guestlib.make_state_disk(os.path.join(work, "state.img"))
    with guestlib.Guest(kernel, initrd, state_disk=state, after="stay", timeout=300, workdir=work) as g:
        g.status.close()  # this benchmark talks to the port itself
        deadline = time.monotonic() + 60
        s = None
        while s is None and time.monotonic() < deadline:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(g.status_sock)
            except OSError:
                s.close()
                s = None
                time.sleep(0.05)
        if s is None:
            sys.exit("cannot connect to the status socket")
        s.settimeout(60)
        f = s.makefile("rb")
        line = f.readline()
        if line.strip() != b"echo-ready":
            sys.exit(f"unexpected first line {line!r}")
        s.settimeout(10)
        rtts = []
        for i in range(count):
            t0 = time.monotonic_ns()
            s.sendall(f"{i} {t0}\n".encode())
            echoed = f.readline()
            t1 = time.monotonic_ns()
            if not echoed.startswith(f"{i} ".encode()):
                sys.exit(f"lost sync at {i}: {echoed!r}")
            rtts.append((t1 - t0) / 1e6)
            time.sleep(0.01)
        s.close()
        g.kill()
    rtts.sort()
    p95 = rtts[int(len(rtts) * 0.95) - 1]
    print(f"round trips over sprout.status.0 in the TCG guest ({count}): median {statistics.median(rtts):.2f} ms, "
          f"p95 {p95:.2f} ms, max {rtts[-1]:.2f} ms")
    print(f"one way (half the round trip, includes the in-guest echo): median {statistics.median(rtts) / 2:.2f} ms, "
          f"p95 {p95 / 2:.2f} ms")


if __name__ == "__main__":
    main()

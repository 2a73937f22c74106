#!/usr/bin/env python3
"""The status recorder (`sprout watch`), `sprout status` and `sprout wait` against a
fake guest: a unix socket this test listens on at STATE/status.sock (as qemu does)
and writes to. Needs no VM.

usage: test_fake_guest.py SPROUT CASE   (CASE: garbage, wait, stop-during-prepare, notify, hostile,
       qmp-stuck, watch-record)
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import runtime_lib as rl
from runtime_lib import check


def event(phase, seq, msg="", vm="fake", boot="b1", gen="g1", detail=None):
    e = {"version": 1, "vm": vm, "bootId": boot, "seq": seq, "timeMs": int(time.time() * 1000),
         "phase": phase, "message": msg, "generation": gen}
    if detail is not None:
        e["detail"] = detail
    return (json.dumps(e) + "\n").encode()


# A libvirt VM's watcher reads its channel through libvirt's API; these fake guests
# play its qemu on STATE/status.sock instead, which sprout's test seam has the watcher
# read (backend/backend.h: test_local_status_channel). The API path is the libvirt
# suite's (tests/libvirt).
os.environ["SPROUT_TEST_LOCAL_STATUS_SOCKET"] = "1"


def make_spec(root, name="fake"):
    """A libvirt VM's spec, as `sprout watch` records one, with its status channel on
    STATE/status.sock (the seam above), which the fake guest listens on here. Its URI
    is libvirt's own in-process test driver, where no domain of this name exists:
    nothing asks the host's libvirtd."""
    state = os.path.join(root, name)
    os.makedirs(state, exist_ok=True)
    spec_dir = os.path.join(root, "specs")
    os.makedirs(spec_dir, exist_ok=True)
    base = os.path.join(root, "base.img")
    open(base, "wb").close()
    rl.write_spec(os.path.join(spec_dir, name + ".json"), version=1, name=name,
                  backend="libvirt", libvirt={"uri": "test:///default"},
                  base={"image": base, "format": "raw"}, stateDir=state,
                  sources={"config": root, "self": root})
    return os.path.join(spec_dir, name + ".json"), state, spec_dir


class FakeGuest:
    """Listens on the status socket like qemu's chardev server and accepts one peer."""

    def __init__(self, path):
        if os.path.exists(path):
            os.unlink(path)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.srv.settimeout(20)
        self.conn = None

    def accept(self):
        self.conn, _ = self.srv.accept()
        return self

    def send(self, data: bytes):
        self.conn.sendall(data)

    def drop(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def close(self):
        self.drop()
        self.srv.close()


def case_garbage(root):
    spec, state, _ = make_spec(root)
    fake = FakeGuest(os.path.join(state, "status.sock"))
    with rl.Proc(["watch", "--spec", spec], os.path.join(root, "watch.log")) as w:
        fake.accept()
        fake.send(event("starting", 1, "agent up"))
        fake.send(b"this is not json\n")
        fake.send(b"\xff\xfe\xfd not utf-8\n")
        fake.send(b"{" + b"x" * 100000 + b"}\n")          # over-long
        fake.send(b'{"version": 1, "vm": "fake"}\n')        # missing fields
        fake.send(b"[1,2,3]\n\n\n")
        fake.send(event("rebuilding", 2, "nixos-rebuild boot"))
        # A flood of log lines: the recorder must stay bounded and keep going.
        flood = b"".join(event("log", 3 + i, f"building {i}") for i in range(20000))
        fake.send(flood)
        fake.send(event("rebuilt", 30000, "built"))
        st = rl.wait_status(state, lambda s: s.get("phase") == "rebuilt", 30, "rebuilt after the garbage")
        c = st["counters"]
        check(c["garbage"] >= 3, f"garbage not counted: {c}")
        check(c["invalidUtf8"] == 1, f"invalid UTF-8 not counted: {c}")
        check(c["overlong"] == 1, f"over-long line not counted: {c}")
        check(c["accepted"] == 20003, f"valid lines lost: {c}")
        check(st["lastLog"][-1] == "building 19999", f"last log line wrong: {st['lastLog']}")
        size = os.path.getsize(os.path.join(state, "events.jsonl"))
        check(size <= 2 << 20, f"events.jsonl unbounded: {size}")
        # The guest goes away (reboot / qemu restart) and comes back: watch reconnects.
        fake.drop()
        fake.accept()
        fake.send(b"partial line without newline")
        fake.drop()
        fake.accept()
        fake.send(event("starting", 1, "second boot", boot="b2"))
        fake.send(event("specialized", 2, "running generation g1", boot="b2"))
        st = rl.wait_status(state, lambda s: s.get("phase") == "specialized", 30, "specialized after reconnect")
        check(st["bootId"] == "b2", f"wrong boot: {st}")
        check(st["counters"]["connections"] >= 3, f"reconnects not counted: {st['counters']}")
        check(w.p.poll() is None, "sprout watch died")
        log = open(os.path.join(root, "watch.log"), errors="replace").read()
        check("dropped" in log, "bad lines were not logged")
        # A restarted recorder keeps what it knew.
        w.signal(signal.SIGTERM)
        check(w.wait(10) == 0, "watch did not exit 0 on SIGTERM")
    fake.close()
    events = rl.read_events(state)
    phases = [e["phase"] for e in events if e["phase"] != "log"]
    check(phases == ["starting", "rebuilding", "rebuilt", "starting", "specialized"], f"events.jsonl phases: {phases}")


def case_wait(root):
    spec, state, spec_dir = make_spec(root)
    # No record yet: status says so; wait waits for a first run, and times out (3).
    r = rl.sprout(["status", "--spec-dir", spec_dir])
    check(r.returncode == 0 and "no record" in r.stdout, f"status without record: {r.stdout}{r.stderr}")
    r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "1"])
    check(r.returncode == 3, f"wait without record should time out (3): {r.returncode} {r.stderr}")
    r = rl.sprout(["wait", "nosuchvm", "--spec-dir", spec_dir, "--timeout", "1"])
    check(r.returncode == 2 and "nosuchvm" in r.stderr, f"unknown VM: {r.returncode} {r.stderr}")

    fake = FakeGuest(os.path.join(state, "status.sock"))
    with rl.Proc(["watch", "--spec", spec], os.path.join(root, "watch.log")) as w:
        fake.accept()
        waiter = subprocess.Popen([rl.SPROUT, "wait", "fake", "--spec-dir", spec_dir, "--timeout", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            check(waiter.poll() is None, "wait returned before specialized")
            fake.send(event("starting", 1, "up"))
            fake.send(event("rebuilding", 2, "building"))
            fake.send(event("log", 3, "copying"))
            time.sleep(0.3)
            t_sent = time.monotonic()
            fake.send(event("specialized", 4, "done"))
            out, err = waiter.communicate(timeout=20)
            dt = time.monotonic() - t_sent
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        check(waiter.returncode == 0, f"wait exit {waiter.returncode}: {out}{err}")
        check("rebuilding" in out and "reached specialized" in out, f"wait output: {out!r}")
        print(f"wait noticed specialized after {dt:.2f} s")
        # sprout status: table and JSON.
        r = rl.sprout(["status", "--spec-dir", spec_dir])
        check(r.returncode == 0 and "fake" in r.stdout and "specialized" in r.stdout, r.stdout + r.stderr)
        r = rl.sprout(["status", "--spec-dir", spec_dir, "--json", "fake"])
        j = json.loads(r.stdout)
        check(j[0]["status"]["phase"] == "specialized", r.stdout)
        check(j[0]["specialize"] == "guest" and "hostSystem" not in j[0], r.stdout)
        # Who built the system it runs, and which: kept across the next boot's phases.
        sysp = "/nix/store/8n3vhg33jahifvjg9qj859f31763mhdi-nixos-system-web"
        fake.send(event("specialized", 5, "done", detail={"currentSystem": sysp, "specializedBy": "host"}))
        fake.send(event("starting", 1, "up", boot="b9"))
        rl.wait_status(state, lambda s: s.get("bootId") == "b9", 10, "next boot recorded")
        r = rl.sprout(["status", "--spec-dir", spec_dir])
        row = next((l.split() for l in r.stdout.splitlines() if l.startswith("fake ")), [])
        check(row[1:2] == ["starting"] and "host" in row and "nixos-system-web" in row,
              f"status shows BY host and the system: {r.stdout}")
        j = json.loads(rl.sprout(["status", "--spec-dir", spec_dir, "--json", "fake"]).stdout)
        check(j[0]["status"]["system"] == {"path": sysp, "by": "host"}, json.dumps(j))
        # keep_old: the guest runs g1 and says the exported configuration (g9) is pending.
        fake.send(event("specialized", 2, "kept", boot="b9", detail={"currentSystem": sysp, "action": "keep-old",
                                                                      "pendingGeneration": "g9"}))
        rl.wait_status(state, lambda s: s.get("pendingGeneration") == "g9", 10, "pending generation recorded")
        r = rl.sprout(["status", "--spec-dir", spec_dir])
        check("pending generation g9 not applied" in r.stdout, f"status with a pending generation: {r.stdout}")
        j = json.loads(rl.sprout(["list", "--spec-dir", spec_dir, "--json"]).stdout)
        check(j[0]["pendingRespecialization"] is True and j[0]["status"]["generation"] == "g1", json.dumps(j))
        r = rl.sprout(["status", "--spec-dir", spec_dir, "other"])
        check(r.returncode == 2, f"status of an unknown VM: {r.returncode}")
        # A failed rebuild: wait exits 1 with the reason and the last lines.
        fake.send(event("starting", 1, "up", boot="b2", gen="g2"))
        fake.send(event("rebuilding", 2, "building", boot="b2", gen="g2"))
        fake.send(event("log", 3, "error: attribute 'foo' missing", boot="b2", gen="g2"))
        fake.send(event("failed", 4, "nixos-rebuild exited with status 1", boot="b2", gen="g2",
                        detail={"lastLines": ["error: attribute 'foo' missing"]}))
        rl.wait_status(state, lambda s: s.get("phase") == "failed", 10, "failed")
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "10"])
        check(r.returncode == 1, f"wait on failed: {r.returncode}")
        check("nixos-rebuild exited with status 1" in r.stderr and "attribute 'foo'" in r.stderr, r.stderr)
        w.signal(signal.SIGTERM)
        w.wait(10)
    fake.close()

    # Records left by runs that have ended. status.json is what a recorder writes; the
    # supervisor pid says whether that run is still alive.
    def record(phase, host):
        # Replaced whole, as the recorder does (a temporary, then rename): a wait that
        # reads while a plain open("w") has truncated the file sees a corrupt record.
        tmp = os.path.join(state, ".status.json.test")
        with open(tmp, "w") as f:
            json.dump({"vm": "fake", "phase": phase, "message": phase, "generation": "g", "bootId": "b",
                       "seq": 1, "sinceMs": 1, "updatedMs": 1, "detail": None, "lastLog": [], "host": host}, f)
        os.replace(tmp, os.path.join(state, "status.json"))

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    # A run that reached the phase and then ended before this wait began is history,
    # not an answer: the VM is not running, exit 1 at once, saying how the run ended.
    record("specialized", {"state": "stopped", "how": "guest powered off", "stoppedMs": 1})
    r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "600"], timeout=60)
    check(r.returncode == 1 and "not running" in r.stderr and "guest powered off" in r.stderr,
          f"ended run that reached it: {r.returncode} {r.stdout}{r.stderr}")
    # A record saying "running" whose supervisor is gone (SIGKILLed, or `sprout run
    # --print-command`) is not live: status shows it stopped, wait answers at once.
    record("rebuilding", {"state": "running", "supervisor": dead.pid, "startedMs": 1})
    r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "600"], timeout=60)
    check(r.returncode == 1 and "is gone" in r.stderr, f"dead supervisor: {r.returncode} {r.stderr}")
    r = rl.sprout(["status", "--spec-dir", spec_dir])
    row = next((l.split() for l in r.stdout.splitlines() if l.startswith("fake ")), [])
    check("stopped" in row and "gone" in r.stdout, f"status of a record whose supervisor is gone: {r.stdout}")
    # A live pid that is not the recorded process (its start time differs: the pid was
    # reused) is not the supervisor either.
    with open(f"/proc/{os.getpid()}/stat") as f:
        my_start = int(f.read().rsplit(")", 1)[1].split()[19])
    record("rebuilding", {"state": "running", "supervisor": os.getpid(), "supervisorStart": my_start + 1,
                          "startedMs": 1})
    r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "600"], timeout=60)
    check(r.returncode == 1 and "is gone" in r.stderr, f"reused pid: {r.returncode} {r.stderr}")
    # A VM that is not running can be given time to start: --start-timeout.
    r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "600", "--start-timeout", "1"], timeout=60)
    check(r.returncode == 1 and "not running" in r.stderr, f"--start-timeout: {r.returncode} {r.stderr}")
    # A run that started after the wait began is the one it waits for, even if it has
    # ended by the time the wait looks (a guest that powers off once specialized).
    waiter = subprocess.Popen([rl.SPROUT, "wait", "fake", "--spec-dir", spec_dir, "--timeout", "600",
                               "--start-timeout", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        now = int(time.time() * 1000)
        record("specialized", {"state": "stopped", "how": "guest powered off", "startedMs": now, "stoppedMs": now})
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    check(waiter.returncode == 0 and "has ended since" in out, f"a run begun during the wait: {waiter.returncode} {out}{err}")
    # ... while the same record with a live supervisor is followed.
    record("specialized", {"state": "running", "supervisor": os.getpid(), "supervisorStart": my_start,
                           "startedMs": 1})
    r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "5"])
    check(r.returncode == 0 and "after" in r.stdout, f"live record: {r.returncode} {r.stdout}")
    # The state directory is removed and made again while wait waits: it must watch the
    # new one (it would otherwise sleep on the old, deleted directory until its timeout).
    record("rebuilding", {"state": "running", "supervisor": os.getpid(), "startedMs": 1})
    # (A wait that missed the new directory would sleep a minute on the old one, past
    # the 45 s given here; one that sees it answers at once.)
    waiter = subprocess.Popen([rl.SPROUT, "wait", "fake", "--spec-dir", spec_dir, "--timeout", "3600"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # let it start watching (no harm if it is late: it reads the record first)
        import shutil
        shutil.rmtree(state)
        time.sleep(0.5)
        os.makedirs(state)
        record("specialized", {"state": "running", "supervisor": os.getpid(), "startedMs": 1})
        try:
            out, err = waiter.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            err = "still waiting 45 s after the state directory came back"
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    check(waiter.returncode == 0, f"wait after the state directory was recreated: {waiter.returncode} {err}")


class WriteCounter:
    """Counts status.json rewrites in a state directory: each is a new temporary file
    with a name of its own (.status.json.tmp-PID-N), so inotify cannot merge them."""

    def __init__(self, state):
        import ctypes
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        self.libc.inotify_add_watch(self.fd, state.encode(), 0x100)  # IN_CREATE
        self.count = 0

    def poll(self):
        import struct
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.count
            i = 0
            while i < len(buf):
                _, _, _, n = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + n].rstrip(b"\0")
                self.count += name.startswith(b".status.json.tmp-")
                i += 16 + n


def case_hostile(root):
    """A hostile guest: terminal escapes, a deeply nested detail, a seq at 2^64-1, and
    a flood of phase changes. The host stays bounded and nothing raw reaches a terminal."""
    spec, state, spec_dir = make_spec(root)
    fake = FakeGuest(os.path.join(state, "status.sock"))
    log_path = os.path.join(root, "watch.log")
    with rl.Proc(["watch", "--spec", spec], log_path) as w:
        fake.accept()
        fake.send(event("starting", 1, "up"))
        # Depth 600 in one 4 KiB line: refused, and status.json stays small.
        deep = '{"version": 1, "vm": "fake", "bootId": "b1", "seq": 2, "timeMs": 1, "phase": "mounting", ' \
               '"message": "", "generation": "g1", "detail": ' + '{"a":' * 600 + '1' + '}' * 600 + '}\n'
        fake.send(deep.encode())
        fake.send(event("mounting", 3, "still here"))
        st = rl.wait_status(state, lambda s: s.get("message") == "still here", 30, "the event after the deep one")
        check(st["counters"]["garbage"] == 1, f"the deep detail was not refused: {st['counters']}")
        size = os.path.getsize(os.path.join(state, "status.json"))
        check(size < 16384, f"status.json is {size} bytes")
        # seq at the top of its range, then a small one: no wrap, no gap storm.
        fake.send(event("mounting", 2**64 - 1, "top"))
        fake.send(event("mounting", 5, "after the top"))
        fake.send(event("mounting", 6, "next"))
        st = rl.wait_status(state, lambda s: s.get("message") == "next", 30, "events after seq 2^64-1")
        check(st["counters"]["seqGaps"] < 2**63, f"seq gap counter wrapped: {st['counters']}")
        # A flood of phase changes: status.json is rewritten at most every 100 ms.
        writes = WriteCounter(state)
        t0 = time.monotonic()
        n = 5000
        fake.send(b"".join(event("rebuilding" if i % 2 else "mounting", 10 + i, f"phase {i}") for i in range(n)))
        fake.send(event("rebuilding", 10 + n, "flood over"))
        rl.wait_status(state, lambda s: s.get("message") == "flood over", 120, "the end of the flood")
        elapsed = time.monotonic() - t0
        count = writes.poll()
        bound = 3 + int(elapsed / 0.1) * 2
        check(count <= bound, f"{n} phase events rewrote status.json {count} times in {elapsed:.1f} s (bound {bound})")
        # Terminal escapes in everything a guest chooses.
        evil = "\x1b[2J\x1b[H\rvm1 specialized\x1b]0;owned\x07 \u009b31m \u202edeliaf"
        fake.send(event("failed", 10 + n + 1, evil, detail={"lastLines": [evil]}))
        fake.send(b'{"version": 1, "bogus\x1b[31m": 1}\n')
        rl.wait_status(state, lambda s: s.get("phase") == "failed", 30, "failed")
        time.sleep(0.2)
        r = rl.sprout(["status", "--spec-dir", spec_dir])
        check("\x1b" not in r.stdout and "\\x1b[2J" in r.stdout, f"status printed raw escapes: {r.stdout!r}")
        check("\u009b" not in r.stdout and "\u202e" not in r.stdout, f"status printed C1/bidi controls: {r.stdout!r}")
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "10"])
        check(r.returncode == 1 and "\x1b" not in r.stdout + r.stderr and "\\x1b" in r.stderr,
              f"wait printed raw escapes: {r.stderr!r}")
        w.signal(signal.SIGTERM)
        check(w.wait(30) == 0, "watch did not exit 0 on SIGTERM")
    fake.close()
    with open(log_path, "rb") as f:
        log = f.read()
    check(b"\x1b" not in log and b"\xc2\x9b" not in log, "the guest's escapes reached sprout's log")
    # The first 10, then every 1000th: never one per event after a seq of 2^64-1.
    check(log.count(b"never arrived") <= 10, f"{log.count(b'never arrived')} seq gap warnings")


def case_stop_during_prepare(root):
    """SIGTERM while `sprout run` is still exporting: the export finishes (nothing it
    started is left running), the VM is not started, and the record says so."""
    cfg = os.path.join(root, "cfg")
    os.makedirs(os.path.join(cfg, "hosts", "self"))
    with open(os.path.join(cfg, "big"), "wb") as f:
        f.write(os.urandom(1 << 20) * 8)
    base = os.path.join(root, "base.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "64M"], check=True)
    spec = os.path.join(root, "v.json")
    state = os.path.join(root, "v")
    rl.write_spec(spec, version=1, name="v", base={"image": base}, stateDir=state,
                  sources={"config": cfg, "self": os.path.join(cfg, "hosts", "self")}, network={"mode": "none"})
    # The export's config image waits (in $SPROUT_TEST_HOOK, host/image/test_hook.h) until
    # the test has asked run to stop.
    building, go = os.path.join(root, "building"), os.path.join(root, "go")
    hook = os.path.join(root, "hook")
    with open(hook, "w") as f:
        f.write(f'#!/bin/sh\nif [ "$1 $2" = "build config" ]; then touch {building}; '
                f'n=0; while [ ! -e {go} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; fi\n')
    os.chmod(hook, 0o755)
    p = subprocess.Popen([rl.SPROUT, "run", "--spec", spec, "--qemu", "/nonexistent/qemu"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, SPROUT_TEST_HOOK=hook))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not os.path.exists(building):
        time.sleep(0.02)
    if not os.path.exists(building):
        p.kill()
        check(False, "the export never started building")
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # (a run that ignored the signal would start qemu once the export ends)
    with open(go, "w"):
        pass
    out, _ = p.communicate(timeout=120)
    check(p.returncode == 0, f"run exit {p.returncode}: {out}")
    check("not starting the VM" in out, out)
    check(subprocess.run(["pgrep", "-f", hook], capture_output=True).returncode != 0, "the export's child left running")
    status = rl.read_status(state)
    check(status["host"]["state"] == "stopped", f"record: {status}")
    check(os.path.exists(os.path.join(state, "root.qcow2")), "overlay missing")
    check(os.path.exists(os.path.join(state, "config.img")), "the export did not finish")


def case_notify(root):
    """`sprout watch` under systemd (the libvirt backend's unit): the real libsystemd
    sends to NOTIFY_SOCKET, here a datagram socket of the test's. A guest that fails
    still ends the start-up with READY=1, so systemd does not time the unit out into a
    restart loop; STATUS= follows the guest; SIGTERM says STOPPING=1."""
    spec, state, _ = make_spec(root)
    notify_path = os.path.join(root, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify_path)
    ns.settimeout(10)
    fake = FakeGuest(os.path.join(state, "status.sock"))
    with rl.Proc(["watch", "--spec", spec], os.path.join(root, "watch.log"), env={"NOTIFY_SOCKET": notify_path}) as w:
        fake.accept()
        fake.send(event("starting", 1, "up"))
        messages = [ns.recv(4096).decode()]
        check(messages[-1].startswith("STATUS=starting"), f"first notification: {messages}")
        check(not any("READY=1" in m for m in messages), "READY before the guest finished")
        fake.send(event("failed", 2, "nixos-rebuild exited with status 1"))
        while "READY=1" not in messages[-1]:
            messages.append(ns.recv(4096).decode())
        check("failed" in messages[-1], f"READY without the failure in STATUS: {messages[-1]!r}")
        w.signal(signal.SIGTERM)
        while "STOPPING=1" not in messages[-1]:
            messages.append(ns.recv(4096).decode())
        w.wait(10)
    fake.close()
    ns.close()


def fake_qemu_spec(root):
    """A qemu-backend VM "fake" for tests/runtime/fake_qemu.py: (spec, spec_dir, state)."""
    cfg = os.path.join(root, "cfg")
    os.makedirs(os.path.join(cfg, "hosts", "self"))
    base = os.path.join(root, "base.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "64M"], check=True)
    spec_dir = os.path.join(root, "specs")
    os.makedirs(spec_dir)
    spec = os.path.join(spec_dir, "fake.json")
    state = os.path.join(root, "fake")
    rl.write_spec(spec, version=1, name="fake", base={"image": base}, stateDir=state,
                  sources={"config": cfg, "self": os.path.join(cfg, "hosts", "self")}, network={"mode": "none"},
                  shutdownTimeoutSeconds=1)
    return spec, spec_dir, state


def proc_state(pid):
    """'R', 'S', 'Z', ... from /proc/PID/stat; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def case_orphan(root):
    """Issue 29: qemu loses its parent-death signal when it switches user, so a SIGKILLed
    `sprout run` leaves it running (the fake qemu switches as qemu's -runas does). The
    next run of the VM kills that orphan before it prepares anything."""
    if os.geteuid() != 0:
        print("skip: only root switches qemu's user")
        sys.exit(77)
    spec, spec_dir, state = fake_qemu_spec(root)
    qemu = os.path.join(rl.HERE, "fake_qemu.py")
    with rl.Proc(["run", "--spec", spec, "--qemu", qemu], os.path.join(root, "run.log"),
                 env={"FAKE_QEMU_LOG": os.path.join(root, "fake-qemu.log")}) as run:
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "120"], timeout=150)
        check(r.returncode == 0, f"wait: {r.returncode} {r.stdout}{r.stderr}\n{run.output()}")
        pid = rl.read_status(state)["host"]["pid"]
        with open(f"/proc/{pid}/status") as f:
            uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        check(0x73700000 <= uid < 0x73710000, f"the fake qemu runs as uid {uid}, not a dynamic one")
        run.signal(signal.SIGKILL)
        run.wait(60)
    time.sleep(0.5)
    check(proc_state(pid) not in (None, "Z"), "the fake qemu died with its sprout run: nothing to test")
    again = rl.sprout(["run", "--spec", spec, "--qemu", "/nonexistent/qemu"], timeout=120)
    check(again.returncode == 1, f"second run: {again.returncode} {again.stdout}{again.stderr}")
    check("still runs the guest although its sprout run is gone" in again.stderr, again.stderr)
    check(proc_state(pid) in (None, "Z"), f"the orphaned qemu (pid {pid}) still runs")


def case_qmp_stuck(root):
    """`sprout run` with a qemu (tests/runtime/fake_qemu.py) that accepts QMP and never
    answers: the supervisor's loop keeps recording the status channel while the QMP
    handshake is pending, and SIGTERM still ends the run through the power-down
    timeout and the fallback to SIGTERM for qemu."""
    spec, spec_dir, state = fake_qemu_spec(root)
    fake_log = os.path.join(root, "fake-qemu.log")
    qemu = os.path.join(rl.HERE, "fake_qemu.py")
    with rl.Proc(["run", "--spec", spec, "--qemu", qemu], os.path.join(root, "run.log"),
                 env={"FAKE_QEMU_LOG": fake_log}) as run:
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "120"], timeout=150)
        check(r.returncode == 0, f"wait while QMP is stuck: {r.returncode} {r.stdout}{r.stderr}\n{run.output()}")
        steps = open(fake_log).read().splitlines()
        check(steps[:3] == ["status channel accepted", "qmp accepted", "events sent"], f"fake qemu: {steps}")
        run.signal(signal.SIGTERM)
        rc = run.wait(120)
        check(rc == 3, f"run exit {rc} (want 3: the guest did not power off, qemu was stopped)\n{run.output()}")
    steps = open(fake_log).read().splitlines()
    check(steps[-1] == "SIGTERM", f"qemu was not sent SIGTERM when QMP could not take quit: {steps}")
    st = rl.read_status(state)
    check(st["phase"] == "specialized" and st["host"]["state"] == "stopped", f"record: {st}")
    print(f"QMP connections the fake qemu held silent: {steps.count('qmp accepted')}")


def case_watch_record(root):
    """`sprout watch` is the record's supervisor: while it runs and a VM is connected the
    record is live (its pid, state "running"); when it ends it says "stopped" and how,
    so `sprout status` shows the VM stopped and `sprout wait` does not wait on a record
    nobody keeps. A watcher outlives runs: a restarted watcher on the same status
    socket continues the run's record; a new socket (qemu made it anew: a new run of
    the VM) starts a fresh one, so a stale `specialized` is never this run's answer."""
    spec, state, spec_dir = make_spec(root)
    with rl.Proc(["watch", "--spec", spec], os.path.join(root, "watch.log")) as w:
        # A watcher no VM has connected to yet (no status socket yet) describes no run
        # that ended: a wait begun just before it (libvirt: define --start, watch, wait)
        # waits on; it does not answer "stopped".
        rl.wait_status(state, lambda s: s.get("host", {}).get("state") == "waiting", 30, "the watcher waiting")
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "1"])
        check(r.returncode == 3, f"wait on a watcher with no VM yet: {r.returncode} {r.stdout}{r.stderr}")
        fake = FakeGuest(os.path.join(state, "status.sock"))
        fake.accept()
        fake.send(event("starting", 1, "up"))
        fake.send(event("rebuilding", 2, "building"))
        st = rl.wait_status(state, lambda s: s.get("phase") == "rebuilding", 30, "rebuilding")
        check(st["host"].get("supervisor") == w.p.pid and st["host"].get("state") == "running",
              f"watch is not the record's supervisor: {st['host']}")
        r = rl.sprout(["status", "--spec-dir", spec_dir, "--json", "fake"])
        check(json.loads(r.stdout)[0]["run"]["state"] == "running", r.stdout)
        # A phase the run already passed is an answer (it would never come again).
        r = rl.sprout(["wait", "fake", "--for", "starting", "--spec-dir", spec_dir, "--timeout", "30"])
        check(r.returncode == 0 and "reached starting" in r.stdout, f"wait for a passed phase: {r.returncode} {r.stdout}")
        r = rl.sprout(["wait", "fake", "--for", "started", "--spec-dir", spec_dir, "--timeout", "30"])
        check(r.returncode == 0, f"wait --for started: {r.returncode} {r.stdout}{r.stderr}")
        # --timeout 0 looks once: not there yet is a timeout, exit 3.
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "0"])
        check(r.returncode == 3 and "timed out" in r.stderr, f"--timeout 0: {r.returncode} {r.stderr}")
        # A wait started while watch runs ends when watch does (not at its timeout).
        waiter = subprocess.Popen([rl.SPROUT, "wait", "fake", "--spec-dir", spec_dir, "--timeout", "300"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Its first line says it has read the live record (a wait that only ever saw
            # the stopped one would take it for an earlier run's).
            first = waiter.stdout.readline()
            check("rebuilding" in first, f"wait's first line: {first!r}")
            w.signal(signal.SIGTERM)
            check(w.wait(30) == 0, "watch did not exit 0 on SIGTERM")
            try:
                out, err = waiter.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                out, err = "", "still waiting 120 s after watch ended"
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        check(waiter.returncode == 1 and "stopped before reaching" in err,
              f"wait when watch ended: {waiter.returncode} {out}{err}")
    fake.drop()
    st = rl.read_status(state)
    check(st["host"].get("state") == "stopped" and "SIGTERM" in st["host"].get("how", ""),
          f"record after watch ended: {st['host']}")
    check(st["phase"] == "rebuilding", f"the guest's phase was lost: {st}")
    r = rl.sprout(["status", "--spec-dir", spec_dir])
    row = next((l.split() for l in r.stdout.splitlines() if l.startswith("fake ")), [])
    check("stopped" in row and "not running" in r.stdout, f"status after watch ended: {r.stdout}")
    # Nobody records the VM now: wait answers at once that it cannot get there.
    r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "600"], timeout=60)
    check(r.returncode == 1 and "not running" in r.stderr, f"wait with no run: {r.returncode} {r.stderr}")
    # A new watch on the same socket (the same run) continues the record.
    with rl.Proc(["watch", "--spec", spec], os.path.join(root, "watch2.log")) as w:
        fake.accept()
        st = rl.wait_status(state, lambda s: s["host"].get("supervisor") == w.p.pid and
                            s["host"].get("state") == "running", 30, "the new watcher")
        check(st["phase"] == "rebuilding", f"same socket, same run: the record was not continued: {st}")
        fake.send(event("specialized", 3, "done"))
        rl.wait_status(state, lambda s: s.get("phase") == "specialized", 30, "specialized")
        # The VM is restarted (its qemu makes a new socket): the record starts afresh,
        # and the old run's `specialized` is not an answer for the new one.
        fake.close()
        fake = FakeGuest(os.path.join(state, "status.sock"))
        fake.accept()
        st = rl.wait_status(state, lambda s: s.get("phase") is None and s["host"].get("state") == "running", 30,
                            "a fresh record for the new run")
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "0"])
        check(r.returncode == 3, f"stale specialized answered for a new run: {r.returncode} {r.stdout}{r.stderr}")
        fake.send(event("starting", 1, "up", boot="b2"))
        fake.send(event("specialized", 2, "done", boot="b2"))
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "30"])
        check(r.returncode == 0, f"wait in the new run: {r.returncode} {r.stdout}{r.stderr}")
        # The VM's qemu exits (socket closed): the watcher says no VM is connected, and a
        # wait answers at once.
        fake.close()
        rl.wait_status(state, lambda s: s["host"].get("state") == "waiting", 30, "the watcher without a VM")
        r = rl.sprout(["wait", "fake", "--spec-dir", spec_dir, "--timeout", "600"], timeout=60)
        check(r.returncode == 1 and "not running" in r.stderr, f"wait, VM gone: {r.returncode} {r.stderr}")
        w.signal(signal.SIGTERM)
        check(w.wait(30) == 0, "second watch exit status")


if __name__ == "__main__":
    sys.exit(rl.run_case({"garbage": case_garbage, "wait": case_wait, "stop-during-prepare": case_stop_during_prepare,
                          "hostile": case_hostile, "qmp-stuck": case_qmp_stuck,
                          "watch-record": case_watch_record, "orphan": case_orphan,
                          "notify": case_notify}, sys.argv[2]))

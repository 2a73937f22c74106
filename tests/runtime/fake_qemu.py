#!/usr/bin/env python3
"""A stand-in for qemu-system-x86_64 under `sprout run` (test_fake_guest.py, case
qmp-stuck): it makes the status channel and QMP sockets named on its command line,
accepts sprout's QMP connection and never says a word on it (nor reads it), and
reports a guest that specializes on the status channel. It runs until SIGTERM (what
sprout sends when QMP cannot take `quit`) and exits 0. It writes what it did, one
line per step, to $FAKE_QEMU_LOG. Like qemu, it answers -help (it can switch users)
and, given -runas UID:GID, switches to that user once its sockets are made.
"""
import json
import os
import signal
import socket
import sys
import time


def option(argv, flag, prefix):
    for i, a in enumerate(argv[:-1]):
        if a == flag and argv[i + 1].startswith(prefix):
            return argv[i + 1]
    raise SystemExit(f"fake qemu: no {flag} {prefix}... in {argv}")


def listen(path):
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    return s


def switch_user(argv):
    if "-runas" in argv:
        uid, gid = (int(x) for x in argv[argv.index("-runas") + 1].split(":"))
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)


def main():
    if sys.argv[1:] == ["-help"]:
        print("-runas user     change to user id user just before starting the VM")
        return
    log = open(os.environ["FAKE_QEMU_LOG"], "a", buffering=1)
    status_path = dict(kv.split("=", 1) for kv in option(sys.argv, "-chardev", "socket,id=sprout-status,")
                       .split(",") if "=" in kv)["path"]
    qmp_path = option(sys.argv, "-qmp", "unix:")[len("unix:"):].split(",")[0]
    signal.signal(signal.SIGTERM, lambda *_: (log.write("SIGTERM\n"), sys.exit(0)))
    status_srv, qmp_srv = listen(status_path), listen(qmp_path)
    switch_user(sys.argv)
    status, _ = status_srv.accept()
    log.write("status channel accepted\n")
    qmp, _ = qmp_srv.accept()  # and then silence: no greeting, nothing read
    log.write("qmp accepted\n")
    name = os.environ.get("FAKE_QEMU_VM", "fake")
    for seq, phase in enumerate(["starting", "mounting", "specialized"], 1):
        e = {"version": 1, "vm": name, "bootId": "b1", "seq": seq, "timeMs": int(time.time() * 1000),
             "phase": phase, "message": phase + " (fake qemu)", "generation": "g1"}
        status.sendall((json.dumps(e) + "\n").encode())
    log.write("events sent\n")
    held = [qmp]
    while True:  # further QMP connections (after a handshake timed out) are held silent too
        c, _ = qmp_srv.accept()
        held.append(c)
        log.write("qmp accepted\n")


if __name__ == "__main__":
    main()

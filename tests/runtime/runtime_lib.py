"""Helpers for the runtime tests (suite vm): specs, `sprout run` processes that are
always reaped, a check that no qemu is left behind, and status.json reading.

Everything waits with a timeout; every process started here is killed and reaped
in a finally block.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
import guestlib  # noqa: E402

SPROUT = os.environ.get("SPROUT") or (sys.argv[1] if len(sys.argv) > 1 else "sprout")
AGENT = os.environ.get("SPROUT_AGENT", "")


class TestFailure(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise TestFailure(msg)


def workdir(prefix: str = "sprt-") -> str:
    # unix socket paths must stay under 108 bytes: a short directory in /tmp.
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def read_status(state_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(state_dir, "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_events(state_dir: str, host: bool = False) -> list[dict]:
    """The guest's events from events.jsonl; with host=True also the host's own
    ("source": "host": qemu started and exited, stop asked, ...)."""
    out = []
    try:
        with open(os.path.join(state_dir, "events.jsonl")) as f:
            for line in f:
                e = json.loads(line)
                if host or e.get("source") != "host":
                    out.append(e)
    except OSError:
        pass
    return out


def wait_status(state_dir: str, pred: Callable[[dict], bool], timeout: float, what: str,
                run: Optional["Proc"] = None) -> dict:
    """Waits until status.json satisfies `pred`. With `run` (the process that runs the
    VM), it ends at once when that process has ended and the record still does not
    satisfy `pred`: a VM whose qemu died does not keep a test waiting for its timeout."""
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        ended = run is not None and run.p.poll() is not None
        st = read_status(state_dir)
        if st is not None and pred(st):
            return st
        if ended:
            raise TestFailure(f"status.json never showed {what}: its run ended (exit status {run.p.returncode}); "
                              f"last: {json.dumps(st)}\n{run.output()}")
        time.sleep(0.05)
    raise TestFailure(f"status.json never showed {what} within {timeout} s; last: {json.dumps(st)}")


def qemu_pids(marker: str) -> list[int]:
    """qemu processes whose command line mentions `marker` (a state directory)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and b"qemu-system" in cmd[0] and any(marker.encode() in a for a in cmd):
            pids.append(int(d))
    return pids


def assert_no_qemu(marker: str) -> None:
    deadline = time.monotonic() + 10
    while qemu_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = qemu_pids(marker)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    check(not left, f"qemu processes left behind: {left}")


class Proc:
    """A sprout subprocess with its output in a log file; killed and reaped on exit."""

    def __init__(self, args: list[str], log: str, env: Optional[dict] = None):
        self.log = log
        self._f = open(log, "ab")
        self.p = subprocess.Popen([SPROUT] + args, stdin=subprocess.DEVNULL, stdout=self._f,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  env=dict(os.environ, **(env or {})))

    def wait(self, timeout: float) -> int:
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure(f"{self.p.args[1:3]} still running after {timeout} s\n{self.output()}")

    def signal(self, sig: int) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def output(self) -> str:
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")[-6000:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        self._f.close()


def sprout(args: list[str], timeout: float = 120, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    return subprocess.run([SPROUT] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def write_spec(path: str, **spec) -> str:
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
    return path


class GuestWorld:
    """A test guest (kernel + initrd with the real agent), a shared base image and a
    spec directory, in one work directory."""

    def __init__(self, root: str, agent: str = AGENT):
        self.root = root
        self.spec_dir = os.path.join(root, "specs")
        os.makedirs(self.spec_dir, exist_ok=True)
        check(bool(agent) and os.path.exists(agent), f"sprout-agent not built ({agent!r})")
        self.kernel, self.initrd = guestlib.build_guest(agent, None, os.path.join(root, "guest"))
        raw = guestlib.make_state_disk(os.path.join(root, "base.raw"), "64M")
        self.base = os.path.join(root, "base.qcow2")
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, self.base], check=True, timeout=60)
        os.unlink(raw)
        self.make_config_tree()

    def make_config_tree(self) -> None:
        """self.config: the shared config tree (common/default.nix, hosts/self)."""
        self.config = os.path.join(self.root, "config")
        os.makedirs(os.path.join(self.config, "common"), exist_ok=True)
        # The VM's own disk is mounted at /etc/nixos/hosts/self, inside the config disk.
        os.makedirs(os.path.join(self.config, "hosts", "self"), exist_ok=True)
        with open(os.path.join(self.config, "common", "default.nix"), "w") as f:
            f.write("{ ... }: { services.openssh.enable = true; }\n")

    def self_dir(self, name: str, extra: str = "") -> str:
        d = os.path.join(self.root, "self-" + name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "configuration.nix"), "w") as f:
            f.write("{ ... }: {\n  imports = [ ../../common/default.nix ];\n"
                    f"  networking.hostName = \"{name}\";\n}}\n{extra}")
        return d

    def spec(self, name: str, after: str = "poweroff", extra_cmdline: str = "",
             self_extra: str = "", **overrides) -> str:
        state = os.path.join(self.root, name)
        spec = {
            "version": 1, "name": name,
            "base": {"image": self.base, "format": "qcow2"},
            "stateDir": state,
            "cacheDir": os.path.join(self.root, "cache"),
            "gcRootDir": os.path.join(self.root, "gcroots"),
            "sources": {"config": self.config, "self": self.self_dir(name, self_extra)},
            "memory": 256, "vcpus": 1,
            "network": {"mode": "none"},
            "kernel": {"path": self.kernel, "initrd": self.initrd,
                       "cmdline": f"console=ttyS0 quiet panic=-1 sprout_test.after={after} {extra_cmdline}".strip()},
            # The test guest finds its persistent disk by this serial; the boot
            # overlay has no serial of its own, so a global default gives it one.
            "qemuArgs": ["-global", "virtio-blk-pci.serial=sprout-test-state"],
            "shutdownTimeoutSeconds": 30,
        }
        spec.update(overrides)
        return write_spec(os.path.join(self.spec_dir, name + ".json"), **spec)

    def state(self, name: str) -> str:
        return os.path.join(self.root, name)

    def console(self, name: str) -> str:
        try:
            with open(os.path.join(self.state(name), "console.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def boots(self, name: str) -> list[int]:
        import re
        return [int(n) for n in re.findall(r"^sprout-test: boot (\d+)", self.console(name), re.M)]


def run_case(cases: dict, name: str) -> int:
    fn = cases.get(name)
    if fn is None:
        print(f"unknown case {name}; known: {sorted(cases)}", file=sys.stderr)
        return 2
    root = workdir()
    t0 = time.monotonic()
    try:
        fn(root)
    except TestFailure as e:
        print(f"FAIL {name}: {e}", file=sys.stderr)
        _dump(root)
        return 1
    finally:
        assert_no_qemu(root)
    print(f"ok {name} ({time.monotonic() - t0:.1f} s)")
    shutil.rmtree(root, ignore_errors=True)
    return 0


def _dump(root: str) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f in ("console.log", "run.log", "watch.log", "status.json"):
                p = os.path.join(dirpath, f)
                with open(p, "rb") as fh:
                    data = fh.read().decode(errors="replace")[-3000:]
                print(f"--- {p} ---\n{data}", file=sys.stderr)


class Pty:
    """A command on a pseudo-terminal, as a person at a terminal runs it: reads what it
    prints (with a timeout), writes keystrokes, and is always reaped."""

    def __init__(self, argv: list[str], env: Optional[dict] = None, cols: int = 100):
        import fcntl
        import pty
        import struct
        import termios
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, cols, 0, 0))
        self.p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                  close_fds=True)
        os.close(slave)
        self.out = b""

    def read_until(self, needle: str, timeout: float) -> str:
        import select
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.out:
            left = deadline - time.monotonic()
            check(left > 0, f"the terminal never showed {needle!r} within {timeout} s; it shows:\n{self.text()}")
            r, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the command ended and closed the terminal
                    chunk = b""
                if not chunk:
                    check(needle.encode() in self.out, f"the command ended before showing {needle!r}:\n{self.text()}")
                self.out += chunk
        return self.text()

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def text(self) -> str:
        return self.out.decode(errors="replace")

    def wait(self, timeout: float) -> int:
        import select
        deadline = time.monotonic() + timeout
        while self.p.poll() is None:
            check(time.monotonic() < deadline, f"{self.p.args} did not end within {timeout} s")
            r, _, _ = select.select([self.master], [], [], 0.2)
            if r:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    pass
        # What it wrote just before it exited is still in the terminal: take it too.
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.out += chunk
        return self.p.returncode

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        os.close(self.master)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

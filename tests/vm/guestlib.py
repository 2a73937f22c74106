"""guestlib: host-side harness for sprout's VM tests (Python 3, stdlib only).

Boots the small real Linux test guest that build-guest.sh makes (Debian's cloud
kernel + busybox initramfs + the agent + stand-ins for nixos-rebuild/systemctl)
under qemu-system-x86_64 with TCG, and talks to it.

Promises:
  build_guest(agent, agent_config, out_dir, cache_dir=None, extra_files=())
      -> (kernel, initrd) paths; runs build-guest.sh (a few seconds).
  build_systemd_guest(agent, out_dir, cache_dir=None)
      -> (kernel, stage-1 initrd, root image) of the guest with a real systemd
         (build-systemd-guest.sh; Skip when it cannot be built here).
  make_state_disk(path, size="64M")       an empty ext4 state disk (label sprout-state).
  make_ext4_from_dir(src_dir, label, path, size=None)
                                          a populated ext4 image, no root needed.
  read_file_from_ext4(image, path)        a file's bytes from an ext4 image (debugfs).
  Guest(...)                              one qemu process; a context manager that always
                                          kills and reaps qemu; a host-side timeout kills
                                          it too; console in a log file; status port on a
                                          unix socket read by a StatusReader; optional QMP.
  StatusReader(sock_path)                 JSON lines from the guest's status port.
  Qmp(sock_path)                          system_powerdown / quit / any command.

Every wait here takes a timeout; nothing blocks forever.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import Callable, Iterable, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
STATE_SERIAL = "sprout-test-state"
STATUS_PORT = "sprout.status.0"

# Shell for stand-in agents: sets $port to the /dev node of the status port, found by
# name (the node is made from the port's sysfs `dev` when devtmpfs has not made it),
# or leaves it empty when there is no port.
FIND_STATUS_PORT_SH = r"""port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = STATUS_PORT_NAME ] || continue
  port=/dev/${p##*/}
  [ -e "$port" ] || { mm=$(cat "$p/dev"); mknod "$port" c "${mm%%:*}" "${mm##*:}"; }
done
""".replace("STATUS_PORT_NAME", STATUS_PORT)


class GuestError(Exception):
    """A guest did not do what a test waited for (with the console tail attached)."""


class Skip(Exception):
    """A guest cannot be built on this machine (the reason is the message)."""


def default_cache_dir() -> str:
    return os.environ.get("SPROUT_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sprout-test")


def build_guest(agent: str, agent_config: Optional[str], out_dir: str,
                cache_dir: Optional[str] = None,
                extra_files: Iterable[tuple[str, str]] = ()) -> tuple[str, str]:
    """Builds out_dir/vmlinuz and out_dir/initrd.img; returns their paths.

    extra_files: (host path, path in the guest) pairs, e.g. test helper programs.
    """
    cmd = [os.path.join(HERE, "build-guest.sh"), "--agent", agent, "--out", out_dir,
           "--cache", cache_dir or default_cache_dir()]
    if agent_config:
        cmd += ["--agent-config", agent_config]
    for src, dest in extra_files:
        cmd += ["--add", f"{src}={dest}"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"build-guest.sh failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    return os.path.join(out_dir, "vmlinuz"), os.path.join(out_dir, "initrd.img")


def build_systemd_guest(agent: str, out_dir: str, cache_dir: Optional[str] = None
                        ) -> tuple[str, str, str]:
    """The test guest with a real systemd (build-systemd-guest.sh): returns (kernel,
    stage-1 initrd, root image). Raises Skip when debootstrap cannot run (not root)."""
    cmd = [os.path.join(HERE, "build-systemd-guest.sh"), "--agent", agent, "--out", out_dir,
           "--cache", cache_dir or default_cache_dir()]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=1800)
    if r.returncode == 77:
        raise Skip(r.stderr.strip())
    if r.returncode != 0:
        raise RuntimeError(f"build-systemd-guest.sh failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    return tuple(os.path.join(out_dir, f) for f in ("vmlinuz", "initrd.img", "root.img"))


def make_state_disk(path: str, size: str = "64M") -> str:
    """An empty ext4 image for the guest's persistent state (attach with serial
    sprout-test-state; Guest does that)."""
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "sprout-state", path, size],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return path


def _dir_size(path: str) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_size + 4096
            except OSError:
                pass
    return total


def make_ext4_from_dir(src_dir: str, label: str, path: str,
                       size: Optional[str] = None) -> str:
    """A journal-less ext4 image holding src_dir's contents, owned by root.
    (mkfs.ext4 -d: no root, no loop device.) size defaults to 2x the contents + 8 MiB."""
    if size is None:
        size = f"{(2 * _dir_size(src_dir)) // 1024 + 8192}K"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", label, "-d", src_dir,
                    "-E", "root_owner=0:0", path, size],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    return path


def read_file_from_ext4(image: str, path: str) -> bytes:
    """A file's contents from an (unmounted) ext4 image, read with debugfs."""
    r = subprocess.run(["debugfs", "-R", f"cat {path}", image], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"debugfs cat {path} {image}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def _connect_unix(path: str, deadline: float, stop: Optional[threading.Event] = None
                  ) -> Optional[socket.socket]:
    """Connects to a unix socket, retrying until it exists and accepts or deadline."""
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            time.sleep(0.05)
    return None


class StatusReader:
    """Reads newline-separated JSON from the guest's status port (a qemu chardev
    unix socket, server=on,wait=off). A thread connects (retrying until qemu has
    made the socket, up to connect_timeout), reads lines and keeps them.

    lines:  parsed JSON objects, in order (a non-JSON line becomes {"_raw": text}).
    times:  time.monotonic() when each line arrived.
    wait_for(pred, timeout) -> the first line (old or new) with pred(line) true.
    """

    def __init__(self, sock_path: str, connect_timeout: float = 60.0):
        self.sock_path = sock_path
        self.lines: list[dict] = []
        self.times: list[float] = []
        self.connected_at: Optional[float] = None
        self.closed = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._sock: Optional[socket.socket] = None
        self._deadline = time.monotonic() + connect_timeout
        self._thread = threading.Thread(target=self._run, name="status-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        s = _connect_unix(self.sock_path, self._deadline, self._stop)
        if s is None:
            with self._cond:
                self.closed = True
                self._cond.notify_all()
            return
        self._sock = s
        self.connected_at = time.monotonic()
        buf = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    text = raw.decode("utf-8", errors="replace").strip()
                    if not text:
                        continue
                    try:
                        obj = json.loads(text)
                        if not isinstance(obj, dict):
                            obj = {"_value": obj}
                    except ValueError:
                        obj = {"_raw": text}
                    with self._cond:
                        self.lines.append(obj)
                        self.times.append(time.monotonic())
                        self._cond.notify_all()
        finally:
            s.close()
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def wait_for(self, pred: Callable[[dict], bool], timeout: float) -> dict:
        """The first line satisfying pred; GuestError after timeout or when the
        port closed (qemu exited) without one."""
        deadline = time.monotonic() + timeout
        i = 0
        with self._cond:
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    why = "port closed" if self.closed else f"{timeout:.0f} s passed"
                    raise GuestError(f"no matching status line ({why}); got {self.lines}")
                self._cond.wait(left)

    def wait_count(self, n: int, timeout: float) -> list[dict]:
        """Waits until at least n lines arrived; returns a copy of all lines."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.lines) < n:
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise GuestError(f"expected {n} status lines, got {self.lines}")
                self._cond.wait(left)
            return list(self.lines)

    def close(self) -> None:
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)


class Qmp:
    """A minimal QMP client (qemu -qmp unix:PATH,server=on,wait=off)."""

    def __init__(self, sock_path: str, timeout: float = 30.0):
        s = _connect_unix(sock_path, time.monotonic() + timeout)
        if s is None:
            raise GuestError(f"QMP socket {sock_path} did not accept within {timeout} s")
        s.settimeout(timeout)
        self._sock = s
        self._file = s.makefile("rwb")
        self.events: list[dict] = []
        self._read()  # greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict:
        line = self._file.readline()
        if not line:
            raise GuestError("QMP connection closed")
        return json.loads(line)

    def command(self, name: str, **arguments) -> dict:
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self._file.write(json.dumps(msg).encode() + b"\n")
        self._file.flush()
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise GuestError(f"QMP {name}: {r['error']}")
            return r.get("return", {})

    def system_powerdown(self) -> None:
        """Presses the ACPI power button."""
        self.command("system_powerdown")

    def quit(self) -> None:
        try:
            self.command("quit")
        except (GuestError, OSError):
            pass  # qemu may close the socket before answering

    def close(self) -> None:
        try:
            self._file.close()
            self._sock.close()
        except OSError:
            pass


class Guest:
    """One test guest under qemu (TCG). Use as a context manager:

        with Guest(kernel, initrd, state_disk=img, disks=[(cfg, "sprout-cfg", True)]) as g:
            g.status.wait_for(lambda l: l.get("event") == "done", 60)
            rc = g.wait(60)

    disks: (image path, virtio serial (max 20 bytes), readonly) in -device order.
    after: sprout_test.after= (poweroff | reboot | stay).
    no_reboot: qemu -no-reboot (a guest reboot ends qemu) when True.
    qmp: open a QMP socket (self.qmp() connects).
    hostfwd: [(host port, guest port)] adds a virtio NIC with user-mode networking
             (guest 10.0.2.15); host port 0 picks a free port (see self.ports).
    timeout: seconds after start when qemu is killed no matter what.
    """

    def __init__(self, kernel: str, initrd: str, *, state_disk: Optional[str] = None,
                 disks: Sequence[tuple[str, str, bool]] = (), after: str = "poweroff",
                 ignore_powerdown: bool = False, no_reboot: bool = True, qmp: bool = False,
                 hostfwd: Sequence[tuple[int, int]] = (), nic: bool = False,
                 timeout: float = 180.0, memory: int = 256, append: str = "",
                 workdir: Optional[str] = None, name: str = "guest",
                 status_port: bool = True):
        self.kernel, self.initrd = kernel, initrd
        self.state_disk, self.disks = state_disk, list(disks)
        self.after, self.ignore_powerdown = after, ignore_powerdown
        self.no_reboot, self.use_qmp = no_reboot, qmp
        self.hostfwd, self.nic = list(hostfwd), nic or bool(hostfwd)
        self.timeout, self.memory, self.extra_append = timeout, memory, append
        self.name, self.use_status = name, status_port
        self._own_workdir = workdir is None
        # unix socket paths must stay short (108 bytes): use a short temp dir.
        self.workdir = workdir or tempfile.mkdtemp(prefix="sprout-vm-")
        self.console_path = os.path.join(self.workdir, f"{name}.console.log")
        self.qemu_log_path = os.path.join(self.workdir, f"{name}.qemu.log")
        self.status_sock = os.path.join(self.workdir, f"{name}.status.sock")
        self.qmp_sock = os.path.join(self.workdir, f"{name}.qmp.sock")
        self.ports: dict[int, int] = {}
        self.proc: Optional[subprocess.Popen] = None
        self.status: Optional[StatusReader] = None
        self.started_at: Optional[float] = None
        self.timed_out = False
        self._timer: Optional[threading.Timer] = None
        self._qmp: Optional[Qmp] = None

    # -- command line --------------------------------------------------------
    def command_line(self) -> list[str]:
        append = f"console=ttyS0 quiet panic=-1 sprout_test.after={self.after}"
        if self.ignore_powerdown:
            append += " sprout_test.ignore_powerdown=1"
        if self.extra_append:
            append += " " + self.extra_append
        cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(self.memory), "-smp", "1",
               "-nodefaults", "-display", "none", "-monitor", "none",
               "-serial", f"file:{self.console_path}",
               "-kernel", self.kernel, "-initrd", self.initrd, "-append", append]
        if self.no_reboot:
            cmd.append("-no-reboot")
        all_disks = []
        if self.state_disk:
            all_disks.append((self.state_disk, STATE_SERIAL, False))
        all_disks += self.disks
        for i, (img, serial, ro) in enumerate(all_disks):
            if len(serial.encode()) > 20:
                raise ValueError(f"virtio serial {serial!r} is longer than 20 bytes")
            drive = f"file={img},if=none,id=d{i},format=raw"
            if ro:
                drive += ",readonly=on"
            cmd += ["-drive", drive, "-device", f"virtio-blk-pci,drive=d{i},serial={serial}"]
        if self.use_status:
            cmd += ["-device", "virtio-serial-pci",
                    "-chardev", f"socket,id=st0,path={self.status_sock},server=on,wait=off",
                    "-device", f"virtserialport,chardev=st0,name={STATUS_PORT}"]
        if self.use_qmp:
            cmd += ["-qmp", f"unix:{self.qmp_sock},server=on,wait=off"]
        if self.nic:
            netdev = "user,id=n0"
            for host, guest in self.hostfwd:
                if host == 0:
                    host = _free_port()
                self.ports[guest] = host
                netdev += f",hostfwd=tcp:127.0.0.1:{host}-:{guest}"
            cmd += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"]
        return cmd

    # -- life cycle ----------------------------------------------------------
    def start(self) -> "Guest":
        for p in (self.status_sock, self.qmp_sock, self.console_path):
            if os.path.lexists(p):
                os.unlink(p)
        cmd = self.command_line()
        with open(self.qemu_log_path, "wb") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._timer = threading.Timer(self.timeout, self._on_timeout)
        self._timer.daemon = True
        self._timer.start()
        if self.use_status:
            self.status = StatusReader(self.status_sock, connect_timeout=min(60, self.timeout))
        return self

    def _on_timeout(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.timed_out = True
            self.proc.kill()

    def wait(self, timeout: float) -> int:
        """Waits for qemu to exit; returns its exit code. On timeout qemu is
        killed and GuestError raised."""
        assert self.proc
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GuestError(f"{self.name}: qemu still running after {timeout} s; killed\n"
                             + self.console_tail())
        finally:
            if self.timed_out:
                raise GuestError(f"{self.name}: host-side timeout ({self.timeout} s) hit; "
                                 "qemu killed\n" + self.console_tail())

    def running(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> None:
        """Kills and reaps qemu, stops the reader threads; keeps the logs."""
        if self._timer:
            self._timer.cancel()
        if self._qmp:
            self._qmp.close()
        self.kill()
        if self.status:
            self.status.close()

    def __enter__(self) -> "Guest":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def cleanup(self) -> None:
        """Removes the work directory if Guest made it."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- console and QMP -----------------------------------------------------
    def console(self) -> str:
        try:
            with open(self.console_path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, n: int = 40) -> str:
        lines = self.console().splitlines()[-n:]
        return f"--- {self.name} console (last {len(lines)} lines) ---\n" + "\n".join(lines)

    def wait_console(self, pattern: str, timeout: float) -> re.Match:
        """Waits until the console log matches the regex; returns the match."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console())
            if m:
                return m
            if not self.running():
                raise GuestError(f"{self.name}: qemu exited before console matched "
                                 f"{pattern!r}\n" + self.console_tail())
            if time.monotonic() > deadline:
                raise GuestError(f"{self.name}: console did not match {pattern!r} within "
                                 f"{timeout} s\n" + self.console_tail())
            time.sleep(0.1)

    def boot_markers(self) -> list[tuple[int, str]]:
        """(boot number, current-system) of every "sprout-test: boot N" line so far."""
        return [(int(n), path) for n, path in
                re.findall(r"^sprout-test: boot (\d+) current-system=(\S+)", self.console(), re.M)]

    def qmp(self) -> Qmp:
        if not self.use_qmp:
            raise ValueError("Guest started without qmp=True")
        if self._qmp is None:
            self._qmp = Qmp(self.qmp_sock)
        return self._qmp


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tcp_read_line(port: int, timeout: float = 30.0, read_timeout: float = 5.0) -> str:
    """Connects to 127.0.0.1:port (retrying until timeout: the guest may still be
    booting, and qemu's hostfwd accepts before the guest listens) and returns the
    first line the guest sends. read_timeout: how long one connection waits for its
    line before trying again (a service that answers slowly needs more)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(read_timeout)
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    return data.split(b"\n", 1)[0].decode(errors="replace")
                last = "connection closed without data"
        except OSError as e:
            last = str(e)
        time.sleep(0.3)
    raise GuestError(f"no line from 127.0.0.1:{port} within {timeout} s ({last})")

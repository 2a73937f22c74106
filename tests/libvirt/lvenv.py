"""lvenv: a private libvirt daemon for sprout's libvirt tests (Python 3, stdlib only).

Debian 12 without systemd: nothing starts libvirtd or virtlogd, and the privileged
daemon reads its configuration from /etc/libvirt and keeps state under /var/lib,
/run, /var/log and /var/cache. To leave the machine as it was, the daemons run in a
private mount namespace (unshare -m) in which those five directories are bind mounts
of directories under a temporary directory.

The daemon is configured as real hosts configure theirs: qemu runs as an unprivileged
user (QEMU_USER, `libvirt-qemu`, Debian's name; NixOS calls it `qemu-libvirtd`) with
libvirt's DAC security driver and `dynamic_ownership = 1` (libvirt chowns each disk,
kernel and initrd to that user while the domain runs), unless the domain names a uid
of its own (a static DAC label, as sprout's domains do: then that uid). `security_driver = "none"`
only leaves out sVirt (AppArmor, SELinux), which these machines do not run: the
privileged daemon always stacks DAC under it (naming "dac" there is an error). The
tests check that qemu's uids and gids are that user's or the domain's (privilege_problem),
so they cannot pass with a root qemu. stop() also removes sprout's uid records
(VM_UID_REGISTRY) of the test's VMs.

The user and group are created on the host by this module when missing (a system
account, no home, no shell; idempotent, and safe when several tests start daemons at
once: ACCOUNT_LOCK). No package makes them on a fresh Debian 12 with what
scripts/install-deps installs: Debian's libvirt-daemon-system would, but it also sets
up and starts the host's own libvirtd, which these tests leave alone.

Where the host's /dev/kvm is root's alone (no udev here), a node of the same device,
group QEMU_USER and mode 0660, is bound over /dev/kvm in the namespace, as udev's
root:kvm 0660 and the kvm group give it to libvirt's qemu user on a real host
(_kvm_for_qemu says why libvirt needs that). Whether KVM can run a guest is sprout's
question, not this module's.

    with LibvirtDaemon() as lv:     # raises LibvirtUnavailable when it cannot run
        lv.uri                      # qemu:///system?socket=DIR/sock/libvirt-sock
        lv.virsh("list", "--all")

On exit (also after a failing test) every domain of this daemon is destroyed and
undefined (storage is never touched), every qemu it started is killed if still there,
and exactly the virtlogd and libvirtd processes started here are stopped (by the
pids they wrote). Every wait is bounded.
"""

from __future__ import annotations

import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

QEMU_USER = "libvirt-qemu"
# sprout's records of the uids it gave libvirt VMs' qemus (host/runtime/vm_uid_registry.h).
VM_UID_REGISTRY = "/var/lib/sprout/libvirt-uids"
PRIVATE_DIRS = ["/etc/libvirt", "/var/lib/libvirt", "/run/libvirt", "/var/log/libvirt",
                "/var/cache/libvirt"]


class LibvirtUnavailable(Exception):
    """libvirtd cannot be run here (missing programs, not root, no namespaces)."""


def _run(cmd, timeout=60, check=True, **kw):
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}{r.stdout}")
    return r


ACCOUNT_LOCK = "/run/sprout-lvenv-account.lock"


def _ensure_qemu_account() -> None:
    """Makes QEMU_USER's group and user (a system account without a home or a shell)
    when missing. Tests may start daemons at once: the check and the creation hold
    ACCOUNT_LOCK (flock), and a groupadd/useradd that fails is not an error when the
    account exists afterwards (another program made it meanwhile)."""
    def have(db: str) -> bool:
        return _run(["getent", db, QEMU_USER], check=False).returncode == 0

    steps = [("group", ["groupadd", "--system", QEMU_USER]),
             ("passwd", ["useradd", "--system", "--no-create-home", "--home-dir", "/var/lib/libvirt",
                         "--shell", "/usr/sbin/nologin", "--gid", QEMU_USER, QEMU_USER])]
    if all(have(db) for db, _ in steps):
        return
    with open(ACCOUNT_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for db, cmd in steps:
            for attempt in range(5):  # /etc/passwd may be locked by another program for a moment
                if have(db):
                    break
                r = _run(cmd, check=False)
                if r.returncode != 0 and not have(db) and attempt == 4:
                    raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}{r.stdout}")
                time.sleep(0.2 if r.returncode != 0 else 0)


def host_directory(path: str) -> str:
    """A test's work directory (mkdtemp makes it 0700) made 0711, as /var/lib is to
    sprout's state and cache directories on a real host: qemu's user may pass
    through it to the files it is handed, nobody else may list it."""
    os.chmod(path, 0o711)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie we cannot reap (not our child) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _stop_pid(pid: int, timeout: float = 15.0) -> None:
    if not _pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.1)


def _read_pid(path: str):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class LibvirtDaemon:
    def __init__(self, workdir: str | None = None, keep: bool = False):
        self.keep = keep
        self.dir = workdir or tempfile.mkdtemp(prefix="sprout-libvirtd-")
        self.sock_dir = os.path.join(self.dir, "sock")
        self.uri = f"qemu:///system?socket={self.sock_dir}/libvirt-sock"
        self.root = os.path.join(self.dir, "root")  # the private /etc/libvirt etc.
        self.pids: dict[str, int] = {}

    # -- paths inside the private tree
    def private(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _write(self, path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def _kvm_for_qemu(self) -> str:
        """Shell commands, run in the namespace, that give qemu's user /dev/kvm as a
        real host does (udev: root:kvm 0660, and libvirt's qemu user is in group kvm),
        when it cannot open the host's. Without them, where /dev/kvm is root's alone
        (0600 here: no udev), libvirt probes qemu's capabilities with CAP_DAC_OVERRIDE
        (KVM present) but checks them against qemu's user (no KVM), finds them stale
        every time and probes again, about 4 s on each capability lookup. The node
        (the same device, group QEMU_USER) is bound over /dev/kvm and its name removed."""
        try:
            st = os.stat("/dev/kvm")
        except OSError:
            return ""
        if not stat.S_ISCHR(st.st_mode):
            return ""
        uid, gid = self.qemu_account()
        m = st.st_mode
        if (st.st_uid == uid and m & 0o600 == 0o600) or m & 0o006 == 0o006 or \
                (st.st_gid in os.getgrouplist(QEMU_USER, gid) and m & 0o060 == 0o060):
            return ""
        node = os.path.join(self.dir, "kvm")
        return (f'mknod -m 0660 "{node}" c {os.major(st.st_rdev)} {os.minor(st.st_rdev)} && '
                f'{{ chgrp {QEMU_USER} "{node}" && mount --bind "{node}" /dev/kvm; r=$?; rm -f "{node}"; '
                '[ $r = 0 ]; } && ')

    def check_host(self) -> None:
        """Raises LibvirtUnavailable when libvirtd cannot run here; makes QEMU_USER."""
        if os.geteuid() != 0:
            raise LibvirtUnavailable("the libvirt tests need root (qemu:///system)")
        for prog in ["libvirtd", "virtlogd", "virsh", "unshare", "qemu-system-x86_64"]:
            if shutil.which(prog) is None and not os.path.exists(f"/usr/sbin/{prog}"):
                raise LibvirtUnavailable(f"{prog} not found (scripts/install-deps installs "
                                         "libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients)")
        _ensure_qemu_account()

    def write_config(self, sock_dir: str, log_dir: str) -> None:
        """Writes the daemons' configuration into the private tree (self.private):
        libvirtd listening in `sock_dir`, both daemons logging into `log_dir` (paths as
        the daemons will see them), qemu as QEMU_USER under the DAC driver."""
        for d in PRIVATE_DIRS:
            os.makedirs(self.private(d), exist_ok=True)
        etc = self.private("/etc/libvirt")
        logs = self.private("/var/log/libvirt")
        self._write(os.path.join(etc, "libvirtd.conf"),
                    f'unix_sock_dir = "{sock_dir}"\n'
                    'unix_sock_group = "root"\nunix_sock_rw_perms = "0700"\n'
                    'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                    f'log_outputs = "3:file:{log_dir}/libvirtd.log"\n')
        self._write(os.path.join(etc, "virtlogd.conf"),
                    f'log_outputs = "3:file:{log_dir}/virtlogd.log"\n')
        self._write(os.path.join(etc, "qemu.conf"),
                    f'user = "{QEMU_USER}"\ngroup = "{QEMU_USER}"\n'
                    'security_driver = "none"\ndynamic_ownership = 1\nremember_owner = 1\n'
                    'cgroup_controllers = [ ]\nnamespaces = [ ]\n'
                    'stdio_handler = "logd"\n')
        self._write(os.path.join(etc, "libvirt.conf"), "")
        open(os.path.join(logs, "libvirtd.log"), "a").close()
        open(os.path.join(logs, "virtlogd.log"), "a").close()

    @staticmethod
    def daemons_command(pid_dir: str, which=("virtlogd", "libvirtd")) -> str:
        """Shell commands, run where /etc/libvirt is the private one, that start the
        daemons (they daemonize) with their pid files in `pid_dir`."""
        return " && ".join(f'{d} -d -f /etc/libvirt/{d}.conf -p "{pid_dir}/{d}.pid"' for d in which)

    def start(self) -> "LibvirtDaemon":
        self.check_host()
        os.makedirs(self.sock_dir, exist_ok=True)
        self.write_config(self.sock_dir, self.private("/var/log/libvirt"))
        # One shell in a private mount namespace: bind the private tree over the
        # system paths, then start both daemons (they daemonize and stay in it).
        binds = "".join(f'mkdir -p {d} && mount --bind "{self.private(d)}" {d} && '
                        for d in PRIVATE_DIRS)
        script = binds + self._kvm_for_qemu() + self.daemons_command(self.dir)
        try:
            _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], timeout=60)
        except Exception:
            self._collect_pids()
            self.stop()
            raise
        self._collect_pids()
        try:
            self.wait_ready(30)
        except Exception:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float, uri: str | None = None, argv_prefix=()) -> None:
        """Waits until `virsh -c URI uri` (this daemon's URI by default; run under
        `argv_prefix`, e.g. nsenter, when given) answers; raises RuntimeError with the
        daemon's log tail after `timeout` seconds."""
        uri = uri or self.uri
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            r = _run([*argv_prefix, "virsh", "-c", uri, "uri"], check=False, timeout=20)
            if r.returncode == 0:
                return
            last = r.stderr
            time.sleep(0.2)
        raise RuntimeError(f"libvirtd did not answer on {uri} within {timeout:g} s: {last}\n"
                           + self.log_tail())

    def restart_libvirtd(self, timeout: float = 30.0) -> tuple[float, float]:
        """Stops libvirtd (SIGTERM, as a service manager restarting it would; its
        domains keep running) and starts it again in the same private mount namespace
        (virtlogd's, which stays). Returns the monotonic times at which the old daemon
        was gone and the new one answered. Bounded by `timeout` for each half."""
        old = self.pids.pop("libvirtd")
        _stop_pid(old, timeout=timeout)
        gone = time.monotonic()
        try:
            os.unlink(os.path.join(self.dir, "libvirtd.pid"))
        except OSError:
            pass
        ns = f"/proc/{self.pids['virtlogd']}/ns/mnt"
        _run(["nsenter", f"--mount={ns}", "libvirtd", "-d", "-f", "/etc/libvirt/libvirtd.conf",
              "-p", f"{self.dir}/libvirtd.pid"], timeout=timeout)
        self._collect_pids()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _run(["virsh", "-c", self.uri, "uri"], check=False, timeout=20).returncode == 0:
                return gone, time.monotonic()
            time.sleep(0.1)
        raise RuntimeError(f"libvirtd did not answer within {timeout} s after its restart\n" + self.log_tail())

    def channel_socket(self, domain: str, port: str = "sprout.status.0") -> str | None:
        """The path of a running domain's unix channel socket for the virtio port
        `port`, from its live XML (libvirt places it when the XML names no path)."""
        xml = self.virsh("dumpxml", domain).stdout
        for chan in re.findall(r"<channel type='unix'>.*?</channel>", xml, re.S):
            if f"name='{port}'" in chan:
                m = re.search(r"<source mode='bind' path='([^']+)'", chan)
                return m.group(1) if m else None
        return None

    def pause_libvirtd(self) -> None:
        """Stops libvirtd with SIGSTOP: its sockets stay open and nothing answers, as a
        host gone from the network looks to a client. resume_libvirtd() undoes it."""
        os.kill(self.pids["libvirtd"], signal.SIGSTOP)

    def resume_libvirtd(self) -> None:
        os.kill(self.pids["libvirtd"], signal.SIGCONT)

    def daemon_path(self, path: str) -> str:
        """`path` as libvirtd sees it (its private mount namespace), reachable from
        here through /proc/PID/root: for a test that looks at what the daemon made."""
        return f"/proc/{self.pids['libvirtd']}/root{path}"

    def _collect_pids(self, pid_dir: str | None = None, which=("virtlogd", "libvirtd")) -> None:
        deadline = time.monotonic() + 10
        for name in which:
            while name not in self.pids and time.monotonic() < deadline:
                pid = _read_pid(os.path.join(pid_dir or self.dir, f"{name}.pid"))
                if pid:
                    self.pids[name] = pid
                else:
                    time.sleep(0.05)

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.private("/var/log/libvirt/libvirtd.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def virsh(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run(["virsh", "-c", self.uri, *args], check=check, timeout=timeout)

    def qemu_pids(self, domain: str | None = None) -> list[int]:
        """Live qemu processes of this daemon's domains (from libvirt's DOMAIN.pid
        files; a pid is only counted when its command line is a qemu-system one)."""
        d = self.private("/run/libvirt/qemu")
        pids = []
        if os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                if not f.endswith(".pid") or (domain is not None and f != f"{domain}.pid"):
                    continue
                pid = _read_pid(os.path.join(d, f))
                if not pid or not _pid_alive(pid):
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        argv0 = c.read().split(b"\0")[0]
                except OSError:
                    continue
                if b"qemu-system" in argv0:
                    pids.append(pid)
        return pids

    @staticmethod
    def qemu_account() -> tuple[int, int]:
        """The uid and gid qemu.conf names (QEMU_USER's)."""
        return pwd.getpwnam(QEMU_USER).pw_uid, grp.getgrnam(QEMU_USER).gr_gid

    def give_to_qemu(self, path: str) -> str:
        """chown to qemu's user: for a file that reaches qemu other than through the
        domain's devices (qemuArgs), which libvirt's DAC driver does not label."""
        os.chown(path, *self.qemu_account())
        return path

    @staticmethod
    def process_ids(pid: int) -> dict[str, list[int]]:
        """The real, effective, saved and file-system uids and gids of a process, and
        its supplementary groups (/proc/PID/status)."""
        out = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Uid", "Gid", "Groups"):
                    out[key] = [int(v) for v in value.split()]
        return out

    def privilege_problem(self, pid: int, account: tuple[int, int] | None = None) -> str | None:
        """None when qemu process `pid` runs as `account` (uid, gid; by default
        qemu.conf's user and group) alone: every uid and gid of it, no supplementary
        group root, and not root; else what is wrong."""
        uid, gid = account or self.qemu_account()
        ids = self.process_ids(pid)
        if uid != 0 and ids.get("Uid") == [uid] * 4 and ids.get("Gid") == [gid] * 4 \
                and 0 not in ids.get("Groups", [0]):
            return None
        return f"qemu (pid {pid}) is not {uid}:{gid} alone: {ids}"

    def domain_qemu_account(self, name: str) -> tuple[int, int] | None:
        """The uid and gid of the domain's static DAC label (what sprout gave the VM's
        qemu), from its persistent definition; None when it has none."""
        xml = self.virsh("dumpxml", "--inactive", name).stdout
        m = re.search(r"<seclabel type='static' model='dac'[^>]*>\s*<label>\+(\d+):\+(\d+)</label>", xml)
        return (int(m.group(1)), int(m.group(2))) if m else None

    def stop(self) -> None:
        """Destroys and undefines every domain, kills leftover qemu, stops both daemons."""
        if "libvirtd" in self.pids and _pid_alive(self.pids["libvirtd"]):
            os.kill(self.pids["libvirtd"], signal.SIGCONT)  # (a test may have paused it)
        if "libvirtd" in self.pids and _pid_alive(self.pids["libvirtd"]):
            try:
                names = self.virsh("list", "--all", "--name", check=False, timeout=30).stdout.split()
                for n in names:
                    self.virsh("destroy", n, check=False, timeout=30)
                    self.virsh("undefine", n, "--nvram", check=False, timeout=30)
            except Exception:
                pass
        for pid in self.qemu_pids():
            _stop_pid(pid, timeout=5)
        for name in ["libvirtd", "virtlogd"]:
            pid = self.pids.pop(name, None)
            if pid:
                _stop_pid(pid)
        self.forget_vm_uids()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def forget_vm_uids(self) -> None:
        """Removes sprout's uid records of the VMs whose state directories are in this
        test's directory (the one holding this daemon's): their domains went with the
        daemon, and a test that failed before `sprout destroy` must not leave them."""
        test_dir = os.path.dirname(os.path.abspath(self.dir)) + "/"
        try:
            names = os.listdir(VM_UID_REGISTRY)
        except OSError:
            return
        for n in names:
            path = os.path.join(VM_UID_REGISTRY, n)
            try:
                with open(path) as f:
                    if json.load(f).get("stateDir", "").startswith(test_dir):
                        os.unlink(path)
            except (OSError, ValueError):
                pass

    def __enter__(self) -> "LibvirtDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

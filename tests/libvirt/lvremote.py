"""lvremote: a second host for sprout's libvirt tests, reached over real ssh (Python 3,
stdlib only). It extends lvenv.LibvirtDaemon: the same daemons, configured the same way
(qemu as QEMU_USER under the DAC driver, `dynamic_ownership = 1`), but on a "host" the
test process cannot look into.

    with RemoteLibvirtHost() as remote:      # raises lvenv.LibvirtUnavailable when it cannot run
        remote.uri       # qemu+ssh://root@127.0.0.1:PORT/system?command=...&keyfile=...&no_tty=1
        remote.virsh("hostname")             # virsh -c remote.uri ...: "sprout-remote"
        remote.read_file(POOL_DIR + "/x")    # a file as the remote sees it (nsenter)
        remote.drop_connections()            # kills every ssh session: clients see EOF
        with remote.blocked(): ...           # sshd and its sessions stopped: a dead link
        remote.restart_daemon()              # libvirtd restarted, running domains kept
        remote.scp_argv(SRC, POOL_DIR + "/x")  # scp there, through the same sshd

What runs where:
- A namespace of its own (unshare --mount --uts, kept by one shell, the holder, that
  waits for its stdin to end and then kills whatever is left in the namespace): hostname REMOTE_HOSTNAME; a tmpfs on /run; /etc/libvirt, /var/lib/libvirt,
  /run/libvirt, /var/log/libvirt, /var/cache/libvirt and /var/lib/sprout (the pool
  directory POOL_DIR is in it) are bind mounts of directories on that tmpfs, mounted
  in that namespace only: the test process sees the machine's own (untouched) paths,
  never what the remote holds, and nothing is left on disk. /tmp, /var/tmp, /root,
  /home, the repository and the test's working directory are covered by empty tmpfs
  there: a domain that names a file of the control side (a test's temporary
  directory, the build tree) fails on this "host" as it would on another machine.
- virtlogd and libvirtd (lvenv's configuration; socket in the default
  /run/libvirt/libvirt-sock, the private one) and a real sshd (openssh-server,
  /usr/sbin/sshd -D -f CONFIG, on 127.0.0.1 and a free port) all run in that
  namespace, started with nsenter. sshd uses only files of its own on the tmpfs under
  STATE_DIR: an ed25519 host key and an authorized key made for this test (never the
  machine's /etc/ssh or /root/.ssh), root login by key only, no PAM, no forwarding.
  Its sessions run in the namespace, so libvirt's remote command (`sh -c 'which
  virt-ssh-helper ...'`) finds virt-ssh-helper (Debian's libvirt-daemon) and it
  connects to /run/libvirt/libvirt-sock there. No netcat is needed.
- The client side is the test's: a key, a known_hosts with the fixture's host key
  only and an ssh_config in client/ of the work directory. libvirt's qemu+ssh
  transport runs the openssh client, which reads neither known_hosts= nor the
  known_hosts_verify= of the URI (those are for qemu+libssh/libssh2), so the URI's
  command= names a wrapper, client/ssh, that runs `ssh -F client/ssh_config`: strict
  host key checking against that known_hosts, no agent, BatchMode, ConnectTimeout 5 s
  (connect_timeout: libvirt has no timeout of its own for opening a connection, so
  a host that accepts TCP and never answers would hang it). No ServerAlive by default
  (as ssh's own default): on a dead link an open connection ends only through
  libvirt's keepalive (virConnectSetKeepAlive; virsh -k/-K), which is what a test of
  sprout should prove; server_alive_interval=N adds ssh's (N s, 3 unanswered).
  keyfile= names the client key as well.

- KVM: this machine's /dev/kvm opens but runs no guest (kvm_pvm), and sprout
  takes a remote libvirt's word for KVM. So by default the remote is a host without
  KVM: a unix socket file is bound over /dev/kvm there (open() fails with ENXIO) and
  libvirt offers only domain type 'qemu' (its qemu probe is about twice as fast, too).
  kvm=True gives qemu's user /dev/kvm as lvenv does.
- Its own name resolves there (/etc/hosts, a copy with REMOTE_HOSTNAME added, bound
  over the machine's in the namespace). Shared with the machine, as no second host
  would: the user database (/etc/passwd: QEMU_USER is the same account), /usr, the
  network (sshd listens on the machine's 127.0.0.1) and the pid namespace (the
  remote's processes show in the test's /proc; /proc/PID/root would even reach its
  files: tests must not use that to take a shortcut past the URI).

stop() (also after a failing test, and when the test gets SIGTERM if it turns that
into an exception) stops sshd and its sessions, libvirtd and virtlogd by their pids,
then every process left in the namespace (qemu of running domains, helpers: found by
their /proc/PID/ns/mnt, which is the holder's) and the holder: with the last process
the namespace and its tmpfs are gone. /var/lib/sprout, made as a mount point when
the machine had none, is removed again (when empty). Every wait is bounded. When the
test process dies without stop() (SIGKILL, meson's timeout), sshd dies with it
(PR_SET_PDEATHSIG) and the holder, whose stdin then ends, kills everything else in
the namespace (libvirtd, virtlogd, qemu): only the work directory is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

import lvenv

REMOTE_HOSTNAME = "sprout-remote"
# The remote's pool directory (a directory pool's target; empty, root's, 0711).
POOL_DIR = "/var/lib/sprout/pool"
# Inside the namespace: the fixture's own files (sshd's config, keys, log, pid files).
STATE_DIR = "/run/sprout-remote"
# The remote's private directories: lvenv's five, and /var/lib/sprout (the pool).
REMOTE_DIRS = lvenv.PRIVATE_DIRS + ["/var/lib/sprout"]
SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: it must be started by its absolute path
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

_PR_SET_PDEATHSIG = 1

# The holder's last act, when its stdin ends (stop() closes it; it ends by itself when
# the test process dies, even by SIGKILL): every other process in its mount namespace
# is sent SIGTERM, and if there was any, those left 3 s later SIGKILL. `-ef` compares
# the namespace files without a subshell (that would be a process in the namespace too).
WATCHDOG_SWEEP = (
    'sweep() { found=; for p in /proc/[0-9]*; do [ "${p#/proc/}" != $$ ] && '
    '[ "$p/ns/mnt" -ef /proc/$$/ns/mnt ] && kill -$1 "${p#/proc/}" 2>/dev/null && found=1; done; :; }; '
    'sweep TERM; if [ -n "$found" ]; then sleep 3; sweep KILL; fi')


def _die_with_parent() -> None:
    """preexec_fn: the child is killed when the test process dies (also by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    """Every process's children (from /proc/PID/stat)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _descendants(pid: int) -> list[int]:
    kids = _children()
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


class RemoteLibvirtHost(lvenv.LibvirtDaemon):
    def __init__(self, workdir: str | None = None, keep: bool = False,
                 hide: list[str] | None = None, kvm: bool = False, connect_timeout: int = 5,
                 server_alive_interval: int | None = None):
        super().__init__(workdir or tempfile.mkdtemp(prefix="sprout-remote-"), keep)
        # Before start(), lvenv's private tree (the daemons' configuration) is written
        # here, then copied into the namespace's tmpfs and removed.
        self.seed = os.path.join(self.dir, "seed")
        self.root = self.seed
        self.client = os.path.join(self.dir, "client")
        self.keyfile = os.path.join(self.client, "id_ed25519")
        self.ssh_config = os.path.join(self.client, "ssh_config")
        self.ssh_wrapper = os.path.join(self.client, "ssh")
        self.known_hosts = os.path.join(self.client, "known_hosts")
        self.sock_dir = "/run/libvirt"  # in the namespace
        self.uri = None
        self.port = None
        self.holder: subprocess.Popen | None = None
        self.sshd: subprocess.Popen | None = None
        self._ns = None  # the namespace's /proc/PID/ns/mnt link
        self._stopped: list[int] = []  # pids sent SIGSTOP by blocked()
        self._made_var_lib_sprout = False
        self.kvm = kvm
        self.connect_timeout = connect_timeout
        self.server_alive_interval = server_alive_interval
        hide = hide if hide is not None else ["/tmp", "/var/tmp", "/root", "/home", REPO, os.getcwd()]
        # Never what the remote needs (the system, its own directories): no "/", no
        # parent of /usr, /etc, ... (the repository or the working directory could be).
        needed = REMOTE_DIRS + ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/dev", "/proc", "/sys",
                                "/run", "/var/log"]
        self.hide = [h for h in (os.path.abspath(h) for h in hide)
                     if h != "/" and not any(n == h or n.startswith(h + "/") for n in needed)]

    # -- paths
    def private(self, path: str) -> str:
        """Where `path`, as the remote sees it, can be read from here: the seed tree
        before start(), then through the holder's root (/proc/PID/root: root only)."""
        if self.holder is not None and self.holder.poll() is None:
            return f"/proc/{self.holder.pid}/root/{path.lstrip('/')}"
        return os.path.join(self.seed, path.lstrip("/"))

    # -- running things inside
    def nsenter_argv(self, *cmd: str) -> list[str]:
        if self.holder is None or self.holder.poll() is not None:
            raise RuntimeError("the remote host's namespace is not there")
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-u", "--", *cmd]

    def run_inside(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs a command on the "remote host" (its mount and UTS namespace; as root)."""
        return lvenv._run(self.nsenter_argv(*cmd), check=check, timeout=timeout)

    def read_file(self, path: str, timeout: float = 30) -> bytes:
        """The bytes of `path` as the remote host sees it (nsenter ... cat)."""
        r = subprocess.run(self.nsenter_argv("cat", "--", path), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise FileNotFoundError(f"{path} on the remote host: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout

    def exists_inside(self, path: str) -> bool:
        return self.run_inside("test", "-e", path, check=False, timeout=30).returncode == 0

    def ssh_argv(self, *cmd: str) -> list[str]:
        """ssh to the remote host as libvirt does (the fixture's ssh_config): runs
        `cmd` there, in its namespace."""
        return [shutil.which("ssh"), "-F", self.ssh_config, "-p", str(self.port), "root@127.0.0.1", "--", *cmd]

    def scp_argv(self, src: str, remote_path: str) -> list[str]:
        """scp a local file to `remote_path` on the remote host (SFTP, as scp does by
        default), e.g. to compare what it moves with libvirt's streams."""
        return [shutil.which("scp"), "-q", "-F", self.ssh_config, "-P", str(self.port), "--", src,
                f"root@127.0.0.1:{remote_path}"]

    def local_virsh(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """virsh on the remote host itself (qemu:///system there), not through ssh."""
        return self.run_inside("virsh", "-c", "qemu:///system", *args, check=check, timeout=timeout)

    # -- start
    def _check_programs(self) -> None:
        for prog in [SSHD, "ssh", "ssh-keygen", "nsenter", "hostname", "virt-ssh-helper"]:
            if shutil.which(prog) is None:
                raise lvenv.LibvirtUnavailable(
                    f"{prog} not found (scripts/install-deps installs openssh-server, openssh-client, "
                    "libvirt-daemon)")

    def _make_keys(self) -> None:
        ssh_dir = self.private(f"{STATE_DIR}/ssh")
        os.makedirs(ssh_dir, mode=0o755, exist_ok=True)
        os.makedirs(self.client, mode=0o700, exist_ok=True)
        hostkey = os.path.join(ssh_dir, "ssh_host_ed25519_key")
        lvenv._run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{REMOTE_HOSTNAME} host key",
                    "-f", hostkey], timeout=30)
        lvenv._run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sprout test client",
                    "-f", self.keyfile], timeout=30)
        with open(self.keyfile + ".pub") as f:
            client_pub = f.read().strip()
        with open(hostkey + ".pub") as f:
            self._host_pub = " ".join(f.read().split()[:2])
        # restrict: no pty, no forwarding of any kind; commands run as usual.
        self._write(os.path.join(ssh_dir, "authorized_keys"), f"restrict {client_pub}\n")
        os.chmod(os.path.join(ssh_dir, "authorized_keys"), 0o600)
        self._write(os.path.join(ssh_dir, "sshd_config"), "\n".join([
            "ListenAddress 127.0.0.1",
            f"HostKey {STATE_DIR}/ssh/ssh_host_ed25519_key",
            f"AuthorizedKeysFile {STATE_DIR}/ssh/authorized_keys",
            f"PidFile {STATE_DIR}/ssh/sshd.pid",
            "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "AllowTcpForwarding no", "AllowAgentForwarding no", "AllowStreamLocalForwarding no",
            "X11Forwarding no", "PermitTunnel no", "PermitUserEnvironment no",
            "UseDNS no", "PrintMotd no", "PrintLastLog no", "LogLevel VERBOSE",
            "MaxStartups 100", "LoginGraceTime 30",
            # scp (its SFTP mode) for the comparison of bytes moved
            "Subsystem sftp internal-sftp", ""]))
        self._write(self.ssh_config, "\n".join([
            "Host *",
            "  User root",
            f"  IdentityFile {self.keyfile}",
            "  IdentitiesOnly yes", "  IdentityAgent none",
            f"  UserKnownHostsFile {self.known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes", "  UpdateHostKeys no", "  CheckHostIP no",
            "  BatchMode yes", "  PasswordAuthentication no", "  KbdInteractiveAuthentication no",
            f"  ConnectTimeout {self.connect_timeout}",
            *([f"  ServerAliveInterval {self.server_alive_interval}", "  ServerAliveCountMax 3"]
              if self.server_alive_interval else []),
            "  ControlMaster no", "  ControlPath none", "  ForwardAgent no", "  ForwardX11 no",
            "  RequestTTY no", "  LogLevel ERROR", ""]))
        self._write(self.ssh_wrapper, "#!/bin/sh\n# libvirt's ssh (the URI's command=): the test's own ssh_config only.\n"
                    f'exec {shutil.which("ssh")} -F "{self.ssh_config}" "$@"\n')
        os.chmod(self.ssh_wrapper, 0o755)

    def _set_port(self, port: int) -> None:
        self.port = port
        self._write(self.known_hosts, f"[127.0.0.1]:{port} {self._host_pub}\n")
        q = lambda p: urllib.parse.quote(p, safe="/")  # noqa: E731
        self.uri = (f"qemu+ssh://root@127.0.0.1:{port}/system?command={q(self.ssh_wrapper)}"
                    f"&keyfile={q(self.keyfile)}&no_tty=1")

    @staticmethod
    def _root_locked() -> bool:
        """sshd without PAM (the fixture's) refuses every login, keys included, to an
        account whose password field is locked ("!..."); "*" (no password) is fine."""
        try:
            with open("/etc/shadow") as f:
                field = next((ln.split(":")[1] for ln in f if ln.startswith("root:")), "")
        except (OSError, IndexError):
            return False
        return field.startswith("!")

    def _namespace_script(self) -> str:
        binds = "".join(
            f'mkdir -p "{STATE_DIR}/tree{d}" && mount --bind "{STATE_DIR}/tree{d}" "{d}" && '
            for d in REMOTE_DIRS)
        hides = "".join(
            f'if [ -d "{h}" ]; then mount -t tmpfs -o mode={"1777" if h.endswith("tmp") else "0755"} '
            f'sprout-remote-hidden "{h}"; fi && '
            for h in self.hide)
        return (f'hostname {REMOTE_HOSTNAME} && '
                'mount -t tmpfs -o mode=0755 sprout-remote-run /run && '
                f'mkdir -m 0755 /run/libvirt /run/sshd /run/lock "{STATE_DIR}" && '
                # the seed: lvenv's private tree and sshd's files, copied onto the tmpfs
                f'mkdir -m 0755 "{STATE_DIR}/tree" && cp -a "{self.seed}/." "{STATE_DIR}/tree/" && '
                f'mv "{STATE_DIR}/tree{STATE_DIR}/ssh" "{STATE_DIR}/ssh" && '
                + binds +
                f'mkdir -m 0711 "{POOL_DIR}" && '
                # its own name resolves (libvirt looks it up for `virsh hostname`)
                f'{{ cat /etc/hosts && echo "127.0.1.1 {REMOTE_HOSTNAME}"; }} >"{STATE_DIR}/hosts" && '
                f'mount --bind "{STATE_DIR}/hosts" /etc/hosts && '
                # where root's password is locked, the remote's root has none instead
                + (f'sed "s/^root:![^:]*:/root:*:/" /etc/shadow >"{STATE_DIR}/shadow" && '
                   f'chmod 0640 "{STATE_DIR}/shadow" && mount --bind "{STATE_DIR}/shadow" /etc/shadow && '
                   if self._root_locked() else '')
                + self._kvm_snippet() + hides +
                'echo ready && { read _ || :; } && ' + WATCHDOG_SWEEP)

    def _kvm_snippet(self) -> str:
        """With kvm: /dev/kvm for qemu's user as lvenv gives it. Without: a host without
        KVM (libvirt offers only domain type 'qemu'): a unix socket file is bound over
        /dev/kvm, whose open() fails (ENXIO)."""
        if self.kvm:
            return self._kvm_for_qemu()
        if not os.path.exists("/dev/kvm"):
            return ""
        node = os.path.join(self.dir, "no-kvm")
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(node)
        return f'mount --bind "{node}" /dev/kvm && rm -f "{node}" && '

    def start(self) -> "RemoteLibvirtHost":
        self.check_host()
        self._check_programs()
        try:
            for d in REMOTE_DIRS:  # the mount points (the machine's own directories)
                if not os.path.isdir(d):
                    os.makedirs(d, mode=0o755)
                    self._made_var_lib_sprout |= d == "/var/lib/sprout"
            self.write_config(self.sock_dir, "/var/log/libvirt")
            self._make_keys()
            self._start_namespace()
            shutil.rmtree(self.seed, ignore_errors=True)  # the remote's files are on its tmpfs now
            self._start_daemons()
            self._start_sshd()
            self.wait_ready(30)  # through ssh
        except BaseException:
            tail = self.log_tail() + self.sshd_log_tail()
            self.stop()
            if tail.strip():
                print(f"lvremote: the remote's logs:\n{tail}")
            raise
        return self

    def _start_namespace(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-ec", self._namespace_script()],
            # Not killed with the test process: its stdin ends then, and it sweeps.
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        deadline = time.monotonic() + 30
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            ready, _, _ = select.select([self.holder.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(self.holder.stdout.fileno(), 64)
                if not chunk:
                    break
                line += chunk
        if line.strip() != b"ready":
            err = b""
            if self.holder.poll() is not None:
                err = self.holder.stderr.read()
            raise RuntimeError("the remote host's namespace was not set up within 30 s: "
                               + (line + err).decode(errors="replace"))
        self._ns = _mnt_ns(self.holder.pid)

    def _start_daemons(self, which=("virtlogd", "libvirtd")) -> None:
        self.run_inside("sh", "-c", self.daemons_command(STATE_DIR, which), timeout=60)
        self._collect_pids(self.private(STATE_DIR), which)
        for name in which:
            if name not in self.pids:
                raise RuntimeError(f"{name} wrote no pid file on the remote host")
        self.wait_ready(30, uri="qemu:///system", argv_prefix=self.nsenter_argv())

    def _start_sshd(self) -> None:
        last = ""
        for _ in range(3):  # the free port may be taken meanwhile: another one
            self._set_port(_free_port())
            log = f"{STATE_DIR}/ssh/sshd.log"
            self.sshd = subprocess.Popen(
                self.nsenter_argv(SSHD, "-D", "-f", f"{STATE_DIR}/ssh/sshd_config", "-E", log,
                                  "-o", f"Port={self.port}"),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.sshd.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                        s.settimeout(2)
                        if s.recv(64).startswith(b"SSH-2.0-"):
                            return
                except OSError:
                    pass
                time.sleep(0.1)
            if self.sshd.poll() is None:
                self._stop_sshd()
            last = self.sshd_log_tail() + (self.sshd.stderr.read().decode(errors="replace")
                                           if self.sshd.stderr else "")
        raise RuntimeError(f"sshd did not answer on 127.0.0.1:{self.port}: {last}")

    # -- logs
    def sshd_log_tail(self, n: int = 30) -> str:
        try:
            with open(self.private(f"{STATE_DIR}/ssh/sshd.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # -- faults
    def session_pids(self) -> list[int]:
        """The processes of the open ssh sessions (the listener's descendants: sshd's
        per-connection processes, the remote command, virt-ssh-helper)."""
        if self.sshd is None or self.sshd.poll() is not None:
            return []
        return _descendants(self.sshd.pid)

    def drop_connections(self, timeout: float = 10) -> int:
        """Kills every ssh session (SIGKILL): each client's ssh sees its connection
        closed at once, and libvirt on it fails with EOF. New connections are
        accepted as before. Returns how many processes were killed."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(lvenv._pid_alive(p) for p in pids):
            time.sleep(0.05)
        return len(pids)

    @contextlib.contextmanager
    def blocked(self):
        """A dead link while inside: sshd and every session are stopped (SIGSTOP), so
        TCP stays up and nothing answers. An open connection then ends only when
        libvirt's keepalive (or ssh's ServerAlive, when configured) gives up, a new
        one when ssh's ConnectTimeout passes. On exit they are continued (SIGCONT)."""
        self.block()
        try:
            yield self
        finally:
            self.unblock()

    def block(self) -> None:
        if self.sshd is None or self.sshd.poll() is not None:
            raise RuntimeError("sshd is not running")
        for pid in [self.sshd.pid] + self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                self._stopped.append(pid)

    def unblock(self) -> None:
        pids = set(self._stopped)
        if self.sshd is not None and self.sshd.poll() is None:
            pids |= {self.sshd.pid, *self.session_pids()}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._stopped = []

    def restart_daemon(self, kill: bool = False, timeout: float = 30) -> int:
        """Stops the remote libvirtd (SIGTERM, as a service manager does; SIGKILL with
        kill=True, a crash) and starts it again. Running domains keep running (libvirtd
        does not stop its domains when it stops) and the new daemon takes them over.
        Returns the new libvirtd's pid once it answers through ssh."""
        pid = self.pids.pop("libvirtd", None)
        if pid:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and lvenv._pid_alive(pid):
                    time.sleep(0.05)
            else:
                lvenv._stop_pid(pid)
            with contextlib.suppress(OSError):
                os.unlink(self.private(f"{STATE_DIR}/libvirtd.pid"))
        self._start_daemons(("libvirtd",))
        self.wait_ready(timeout)
        return self.pids["libvirtd"]

    # -- stop
    def _stop_sshd(self) -> None:
        if self.sshd is None:
            return
        sessions = self.session_pids()
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.sshd.poll() is None:
            self.sshd.terminate()
            try:
                self.sshd.wait(10)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
                self.sshd.wait(5)

    def namespace_pids(self) -> list[int]:
        """Every process in the remote's mount namespace but the holder."""
        if not self._ns:
            return []
        holder = self.holder.pid if self.holder else None
        return [int(d) for d in os.listdir("/proc")
                if d.isdigit() and int(d) != holder and _mnt_ns(int(d)) == self._ns]

    def stop(self) -> None:
        """Stops everything in the namespace; the namespace and its tmpfs go with it.
        Each step runs even when an earlier one failed (the first error is raised at
        the end)."""
        errors = []
        for step in (self.unblock, self._stop_sshd, self._stop_daemons, self._stop_namespace,
                     self._remove_dirs):
            try:
                step()
            except Exception as e:  # noqa: BLE001 (the next steps still clean up)
                errors.append(e)
        if errors:
            raise errors[0]

    def _stop_daemons(self) -> None:
        for name in ["libvirtd", "virtlogd"]:
            pid = self.pids.pop(name, None)
            if pid:
                lvenv._stop_pid(pid)

    def _stop_namespace(self) -> None:
        """Every process left in the namespace (qemu, helpers), then the holder."""
        holder_alive = self.holder is not None and self.holder.poll() is None
        if self._ns and not holder_alive:
            # The namespace's inode may only be trusted while it exists: while one of
            # its processes does (then no other namespace can have that number).
            self._ns = None
        left = self.namespace_pids()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(lvenv._pid_alive(p) for p in left):
            time.sleep(0.1)
        for pid in left:
            if lvenv._pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.holder is not None:
            with contextlib.suppress(OSError):
                self.holder.stdin.close()  # its sweep finds nothing left by now
            try:
                self.holder.wait(10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.holder.wait(5)
            for f in (self.holder.stdout, self.holder.stderr):
                if f:
                    f.close()
        if self.sshd is not None and self.sshd.stderr:
            self.sshd.stderr.close()
        self._ns = None

    def _remove_dirs(self) -> None:
        if self._made_var_lib_sprout:
            with contextlib.suppress(OSError):
                os.rmdir("/var/lib/sprout")
            self._made_var_lib_sprout = False
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

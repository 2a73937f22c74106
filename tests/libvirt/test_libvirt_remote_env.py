#!/usr/bin/env python3
"""The libvirt suite's second host itself (tests/libvirt/lvremote.py), without a guest.

Usage: test_libvirt_remote_env.py [--keep]

With lvenv's private daemon (the control side's) and a RemoteLibvirtHost:
1. `virsh -c qemu+ssh://root@127.0.0.1:PORT/system?...` reaches the remote daemon
   through the fixture's sshd: its hostname is the remote's, its URI answers, its
   domain capabilities offer x86_64 guests under TCG, and not KVM (lvremote's default).
2. The two daemons are distinct: a domain defined (not started) on the remote with
   `virsh define` of a file of the control side is listed there and not by the local
   daemon; the remote's definition is in its own /etc/libvirt/qemu, not the machine's;
   each daemon lists its own pool only.
3. A volume uploaded into a directory pool at lvremote.POOL_DIR on the remote (a
   stream through ssh) is there, byte for byte, as the remote sees it, and the test
   process cannot see it (nor the remote's /run/libvirt socket); the control side's
   temporary directory is not visible on the remote.
4. Dropped connections: a virsh call in flight (`event --loop`) whose ssh session is
   killed fails at once with a clear error; while the link is dead (sshd and its
   sessions stopped) a call in flight fails within a bound through libvirt's keepalive
   (virsh -k 1 -K 2), and a new connection through ssh's ConnectTimeout (the
   fixture's ssh_config); afterwards a new connection works. The remote end of the
   transport is virt-ssh-helper.
5. The remote libvirtd restarted (a new pid) answers through ssh again and still has
   the domain.
6. After stop(), no process of the remote is left, its port is closed, and
   /var/lib/sprout (and the pool directory in it) is as it was here.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lvenv  # noqa: E402
import lvremote  # noqa: E402

SKIP = 77
DOMAIN = "sprout-remote-env-probe"
POOL = "sprout-remote-env"
LOCAL_POOL = "sprout-local-env"


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def domain_xml(name: str) -> str:
    # Never started: no disk, no kernel. type='qemu' (TCG) exists on every host.
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os><features><acpi/></features></domain>\n")


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def lines(out: str) -> list[str]:
    """The non-empty lines of virsh's output (it separates commands' outputs by one)."""
    return [ln.strip() for ln in out.splitlines() if ln.strip()]


def timed_virsh(uri: str, *args: str, timeout: float = 30) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    r = subprocess.run(["virsh", "-c", uri, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    return time.monotonic() - t0, r


T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"test_libvirt_remote_env: [{time.monotonic() - T0:5.1f} s] {msg}", flush=True)


def _term(signum, frame):
    raise SystemExit(128 + signum)  # meson's timeout: clean up as after a failure


def main():
    signal.signal(signal.SIGTERM, _term)
    keep = "--keep" in sys.argv
    work = lvenv.host_directory(tempfile.mkdtemp(prefix="sprout-libvirt-remote-env-"))
    had_var_lib_sprout = os.path.isdir("/var/lib/sprout")
    had_pool_dir = os.path.exists(lvremote.POOL_DIR)
    local = remote = None
    remote_pids: list[int] = []
    port = None
    try:
        try:
            local = lvenv.LibvirtDaemon(workdir=os.path.join(work, "libvirtd"), keep=keep).start()
            remote = lvremote.RemoteLibvirtHost(workdir=os.path.join(work, "remote"), keep=keep).start()
        except lvenv.LibvirtUnavailable as e:
            say(f"SKIP: {e}")
            return SKIP
        R = remote.uri
        port = remote.port
        say(f"remote up at {R}")

        # 1. reached through ssh
        check(R.startswith("qemu+ssh://root@127.0.0.1:"), f"not an ssh URI: {R}")
        # (several commands in one virsh: one connection, one ssh handshake)
        host, ruri = lines(remote.virsh("hostname; uri").stdout)
        check(host == lvremote.REMOTE_HOSTNAME, f"remote hostname {host!r}")
        check(ruri.startswith(f"qemu+ssh://root@127.0.0.1:{port}/system"), f"remote uri: {ruri}")
        lhost = local.virsh("hostname").stdout.strip()
        check(lhost and lhost != host, f"local hostname {lhost!r}")

        # 2. two daemons; a definition crosses (virsh reads the file here, the XML
        # travels). The remote probes its qemu at its first definition and for its
        # capabilities; the local daemon is given only a pool (no probe: CPU time).
        rxml = os.path.join(work, "remote.xml")
        with open(rxml, "w") as f:
            f.write(domain_xml(DOMAIN))
        remote.virsh("define", rxml)
        # The domain capabilities come from the probe the definition made; `virsh
        # capabilities` would probe every emulator installed (qemu-system-i386 too:
        # 2-3 s more of CPU for nothing sprout uses).
        caps = remote.virsh("domcapabilities", "--virttype", "qemu", "--arch", "x86_64").stdout
        kvm = remote.virsh("domcapabilities", "--virttype", "kvm", "--arch", "x86_64", check=False)
        os.mkdir(os.path.join(work, "local-pool"))
        local.virsh("pool-define-as", LOCAL_POOL, "dir", "--target", os.path.join(work, "local-pool"))
        check("<domain>qemu</domain>" in caps and "<arch>x86_64</arch>" in caps,
              "remote domain capabilities: " + caps[:400])
        # This machine's /dev/kvm runs no guest: the remote is a host without KVM.
        check(kvm.returncode != 0, "the remote offers KVM: " + kvm.stdout[:200])
        deadline = time.monotonic() + 5  # sshd ends a session soon after its client has gone
        while remote.session_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        check(not remote.session_pids(), f"ssh sessions left open: {remote.session_pids()}")
        say("virsh reaches the remote's libvirtd through its sshd (hostname, uri, domain capabilities)")

        *rnames, rstate = lines(remote.virsh(f"list --all --name; domstate {DOMAIN}").stdout)
        lnames = local.virsh("list", "--all", "--name").stdout.split()
        check(DOMAIN in rnames, f"remote lists {rnames}")
        check(DOMAIN not in lnames, f"local lists {lnames}")
        check(rstate == "shut off", f"remote domain state {rstate!r}")
        defn = f"/etc/libvirt/qemu/{DOMAIN}.xml"
        check(f"<name>{DOMAIN}</name>".encode() in remote.read_file(defn), "remote definition file")
        check(not os.path.exists(defn), f"{defn} is visible from the test process")
        say("distinct daemons; a domain defined through ssh is listed there only")

        # 3. the remote's pool, invisible here
        payload = b"sprout remote pool probe\n" + os.urandom(4096) + b"\0" * 65536 + b"end\n"
        src = os.path.join(work, "probe.img")
        with open(src, "wb") as f:
            f.write(payload)
        path = lines(remote.virsh(
            f"pool-define-as {POOL} dir --target {lvremote.POOL_DIR}; pool-start {POOL}; "
            f"vol-create-as {POOL} probe.img {len(payload)} --format raw; "
            f"vol-upload --pool {POOL} probe.img {src}; vol-path --pool {POOL} probe.img").stdout)[-1]
        check(path == f"{lvremote.POOL_DIR}/probe.img", f"vol-path {path}")
        check(remote.read_file(path) == payload, "the uploaded volume's bytes differ on the remote")
        check(not os.path.exists(path), f"{path} is visible from the test process")
        rpools = remote.virsh("pool-list", "--all", "--name").stdout.split()
        lpools = local.virsh("pool-list", "--all", "--name").stdout.split()
        check(POOL in rpools and LOCAL_POOL not in rpools, f"remote pools {rpools}")
        check(LOCAL_POOL in lpools and POOL not in lpools, f"local pools {lpools}")
        sock = "/run/libvirt/libvirt-sock"
        inside = remote.run_inside("stat", "-c", "%d %i", sock).stdout.split()
        here = [str(os.stat(sock).st_dev), str(os.stat(sock).st_ino)] if os.path.exists(sock) else None
        check(here != inside, f"the remote's {sock} is the test process's")
        check(os.path.exists(src) and not remote.exists_inside(src),
              f"the control side's {src} is visible on the remote")
        say("a volume uploaded through ssh is in the remote's pool only; each daemon lists its own pool only")

        # 4. dropped connections. A call in flight: `virsh event --loop` waits on its
        # connection until its timeout. On a dead link only libvirt's keepalive (here
        # every 1 s, dead after 2 unanswered: virConnectSetKeepAlive) ends it: the
        # fixture's ssh sends no keepalive of its own, as ssh does by default.
        def waiting_call():
            w = {"p": subprocess.Popen(["virsh", "-k", "1", "-K", "2", "-c", R, "event", "--all", "--loop",
                                        "--timeout", "60"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)}

            def wait():
                w["out"], w["err"] = w["p"].communicate()
                w["ended"] = time.monotonic()
            w["thread"] = threading.Thread(target=wait, daemon=True)
            w["thread"].start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "ended" not in w and not any(
                    b"virt-ssh-helper" in cmdline(q) for q in remote.session_pids()):
                time.sleep(0.05)
            check("ended" not in w, f"virsh event ended early: {w.get('err')}")
            # The remote end of libvirt's ssh transport is virt-ssh-helper (no netcat).
            check(any(b"virt-ssh-helper" in cmdline(q) for q in remote.session_pids()),
                  f"no virt-ssh-helper among the ssh session's processes: "
                  f"{[cmdline(q) for q in remote.session_pids()]}")
            time.sleep(0.3)  # virt-ssh-helper is connected; virsh registers for events
            return w

        def ends(w, t_fault, bound):
            w["thread"].join(max(0, t_fault + bound + 10 - time.monotonic()))
            if "ended" not in w:
                w["p"].kill()
                raise Fail(f"virsh still waits {bound + 10} s after the fault")
            secs = w["ended"] - t_fault
            err = " / ".join(ln.strip() for ln in w["err"].replace(R, "URI").splitlines() if ln.strip())
            check(w["p"].returncode != 0 and "error" in err.lower(),
                  f"virsh after the fault: rc {w['p'].returncode}, {err!r}")
            check(secs < bound, f"virsh took {secs:.1f} s to fail (bound {bound} s): {err}")
            return secs, err

        w = waiting_call()
        t_fault = time.monotonic()
        n = remote.drop_connections()
        secs, err = ends(w, t_fault, 3)
        say(f"dropped ({n} session processes killed): the call in flight failed in {secs:.1f} s: {err[:300]}")
        secs, r = timed_virsh(R, "hostname")
        check(r.returncode == 0 and r.stdout.strip() == lvremote.REMOTE_HOSTNAME,
              f"a new connection after the drop: {r.stderr}")

        w = waiting_call()
        with remote.blocked():
            t_fault = time.monotonic()
            nsecs, nr = timed_virsh(R, "hostname", timeout=30)
            secs, err = ends(w, t_fault, 8)
        check("keepalive" in err, f"the call in flight did not end through libvirt's keepalive: {err}")
        check(nr.returncode != 0 and "error" in nr.stderr.lower(), f"new virsh on a dead link: {nr}")
        check(nsecs < 8, f"a new connection took {nsecs:.1f} s to give up on a dead link")
        nerr = " / ".join(ln.strip() for ln in nr.stderr.splitlines() if ln.strip())
        say(f"dead link: the call in flight failed in {secs:.1f} s ({err[:200]}); a new connection "
            f"in {nsecs:.1f} s ({nerr[:200]})")
        secs, r = timed_virsh(R, "hostname")
        check(r.returncode == 0, f"a new connection after the dead link: {r.stderr}")
        say(f"and a new connection works again ({secs:.1f} s)")

        # 5. libvirtd restarted
        old = remote.pids["libvirtd"]
        new = remote.restart_daemon()
        check(new != old and not lvenv._pid_alive(old), f"libvirtd pid {old} -> {new}")
        check(DOMAIN in remote.virsh("list", "--all", "--name").stdout.split(), "domain after restart")
        say(f"libvirtd restarted (pid {old} -> {new}) and reachable again")

        remote_pids = remote.namespace_pids() + [remote.holder.pid]
        remote.stop()
        left = [p for p in remote_pids if lvenv._pid_alive(p)]
        check(not left, f"remote processes left after stop(): {left}")
        with socket.socket() as so:
            so.settimeout(2)
            check(so.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after stop()")
        check(os.path.isdir("/var/lib/sprout") == had_var_lib_sprout, "/var/lib/sprout made or removed")
        check(os.path.exists(lvremote.POOL_DIR) == had_pool_dir, f"{lvremote.POOL_DIR} made or removed here")
        say(f"stopped: {len(remote_pids)} processes gone, port closed")
        remote = None
        say("PASS")
        return 0
    except Exception as e:
        print(f"test_libvirt_remote_env: FAIL: {e}", file=sys.stderr, flush=True)
        if remote:
            print(remote.log_tail(), remote.sshd_log_tail(), file=sys.stderr)
        return 1
    finally:
        if remote:
            remote.stop()
        if local:
            local.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())

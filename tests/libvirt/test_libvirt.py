#!/usr/bin/env python3
"""sprout's libvirt backend against a real libvirt daemon (suite 'libvirt').

Usage: test_libvirt.py SPROUT [--keep]

1. validate: `sprout domain-xml` for every golden example spec (tests/nix/golden; their
   paths need not exist) and for a set of specs covering every network mode, direct
   kernel boot, VNC and the ssh disk: each XML passes `virt-xml-validate FILE domain`.
2. With a private libvirtd (lvenv.LibvirtDaemon, qemu:///system?socket=...):
   - a bad spec (unknown memory unit; missing base) is refused (exit 2) and nothing is
     defined or written;
   - `sprout define` defines the test guest (tests/vm, placeholder agent) with a uid
     of its own for its qemu (a static DAC label; recorded in sprout's registry, never
     a uid the user database knows), shared disks (the cached images, the base) root's
     and readable by that uid through an ACL only; `sprout define --start` starts it:
     its status line reaches `sprout watch` through libvirt's API (the domain's
     status socket is libvirt's, in the daemon's private mount namespace: no path of
     it exists here), its console in console.log; qemu
     runs as that uid (every uid and gid, from /proc), not libvirt's qemu user, and
     owns the overlay and the secrets disk;
   - define again with the same spec: "unchanged", same domain id and qemu pid;
   - a changed spec: "updated", the running domain is not restarted (same id/pid),
     the uid is the same;
   - `sprout stop`: graceful ACPI shutdown, seen on `sprout console` (attached through
     libvirt's API, virDomainOpenConsole), which ends by itself when the domain
     stops; the watcher records the run's end, and the next start as a new run with a
     record of its own; started again with a guest that ignores
     the power button, `sprout stop --force` destroys it at once (no power button) and
     keeps its definition and disks; once stopped, the secrets disk is the VM's uid's
     (0400) and another uid cannot read it; the shared images are root's (0400, ACL
     user:UID:r--), readable by the uid, not writable or chmod-able by it, unreadable
     to another; a cached image given to libvirt's qemu user (as an earlier sprout
     let libvirt do) is taken back at the next define; `sprout undefine`: domain gone,
     overlay and exported disks still there, the overlay the VM's uid's and 0600;
   - `sprout destroy --delete-disks`: the uid's record and its ACL entries are gone.
The full specialization flow with the real agent (`sprout watch`, `sprout wait`) and
a failing rebuild are in test_libvirt_agent.py.
"""

import grp
import json
import os
import pwd
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))
import guestlib  # noqa: E402
import lvenv  # noqa: E402

SKIP = 77

PLACEHOLDER_AGENT = ("#!/bin/sh\n# Placeholder agent: one status event on the status port (bounded write), naming the\n"
                     "# disks it sees; `sprout watch` records it (as another VM's: it says vm unknown).\n"
                     + guestlib.FIND_STATUS_PORT_SH + r"""
disks=
for d in /sys/block/*; do disks="$disks ${d##*/}:$(cat $d/serial 2>/dev/null):$(cat $d/ro)"; done
[ -n "$port" ] && timeout 20 sh -c 'printf "%s\n" "$1" >"$2"' _ \
  "{\"version\":1,\"vm\":\"unknown\",\"bootId\":\"placeholder\",\"seq\":0,\"timeMs\":0,\"phase\":\"starting\",\"message\":\"disks ${disks# }\",\"generation\":\"\"}" "$port"
exit 0
""")


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def run(cmd, timeout=300):
    # With UMask=0077, as sprout's units run it: the directories it makes on the way to
    # what it hands libvirt's unprivileged qemu must still let that user pass.
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, preexec_fn=lambda: os.umask(0o077))


def validate(sprout, path):
    r = run([sprout, "domain-xml", "--spec", path])
    check(r.returncode == 0, f"domain-xml {path}: exit {r.returncode}: {r.stderr}")
    xml = path + ".xml" if os.access(os.path.dirname(path), os.W_OK) and not path.startswith(ROOT) \
        else os.path.join(tempfile.gettempdir(), f"sprout-{os.getpid()}-{os.path.basename(path)}.xml")
    with open(xml, "w") as f:
        f.write(r.stdout)
    v = run(["virt-xml-validate", xml, "domain"])
    check(v.returncode == 0, f"virt-xml-validate {path}: {v.stderr}{v.stdout}\n{r.stdout}")
    if xml.startswith(tempfile.gettempdir()) and not path.startswith(tempfile.gettempdir()):
        os.unlink(xml)
    return r.stdout


def acl_users(path):
    """The named users of `path`'s access ACL and their permission bits."""
    try:
        raw = os.getxattr(path, "system.posix_acl_access")
    except OSError:
        return {}
    users = {}
    for at in range(4, len(raw), 8):
        tag, perm, ident = struct.unpack_from("<HHI", raw, at)
        if tag == 0x02:
            users[ident] = perm
    return users


def try_as(uid, path, flags, do_chmod=False):
    """Whether a process of `uid` (gid the same, no other group) can open `path` with
    `flags` (and chmod it, with do_chmod)."""
    pid = os.fork()
    if pid == 0:
        ok = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                os.close(os.open(path, flags))
                ok = 1
                if do_chmod:
                    os.chmod(path, 0o666)
                    ok = 3
            except OSError:
                pass
        finally:
            os._exit(ok)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return (code & 1) != 0 if not do_chmod else ((code & 1) != 0, (code & 2) != 0)


def read_file(path):
    with open(path, errors="replace") as f:
        return f.read()


def host_events(state):
    out = []
    try:
        with open(os.path.join(state, "events.jsonl")) as f:
            for line in f:
                out.append(json.loads(line))
    except OSError:
        pass
    return out


def placeholder_event(state, run, timeout, watch_log):
    """The placeholder agent's event of the `run`-th run, as `sprout watch` recorded it
    (the record of each run starts afresh: that run is its `run`-th "run-started")."""
    deadline = time.monotonic() + timeout
    while True:
        events = host_events(state)
        starts = [i for i, e in enumerate(events) if e.get("source") == "host" and e.get("event") == "run-started"]
        if len(starts) >= run:
            got = [e for e in events[starts[run - 1]:] if e.get("source") != "host" and e.get("bootId") == "placeholder"]
            if got:
                return got[0]
        check(time.monotonic() < deadline,
              f"no placeholder event of run {run} recorded within {timeout} s: {events}\n{read_file(watch_log.name)}")
        time.sleep(0.2)


def placeholder_run_ended(state, run, watch_log):
    """The watcher recorded the end of the `run`-th run (the channel closed with qemu)."""
    deadline = time.monotonic() + 15
    while sum(1 for e in host_events(state) if e.get("event") == "run-ended") < run:
        check(time.monotonic() < deadline, f"the end of run {run} was not recorded\n{read_file(watch_log.name)}")
        time.sleep(0.1)


def write_spec(path, spec):
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
    return path


def spec_set(work):
    base = {"version": 1, "name": "v", "backend": "libvirt", "base": {"image": "/nonexistent/base.qcow2"},
            "stateDir": "/var/lib/sprout/vms/v", "sources": {"config": "/c", "self": "/c/hosts/v"}}
    variants = {
        "minimal": {},
        "user-forwards": {"network": {"mode": "user", "forwards": [
            {"hostPort": 10022, "guestPort": 22}, {"protocol": "udp", "hostAddress": "127.0.0.1",
                                                  "hostPort": 5353, "guestPort": 53}]},
                          "qemuArgs": ["-smp", "1"]},
        "bridge": {"network": {"mode": "bridge", "bridge": "br-lan", "mac": "52:54:00:aa:bb:cc"}},
        "libvirt-net": {"network": {"mode": "libvirt", "libvirtNetwork": "default"}, "vnc": True},
        "none-kernel": {"network": {"mode": "none"},
                        "kernel": {"path": "/k/vmlinuz", "initrd": "/k/initrd", "cmdline": "console=ttyS0 a='b' <&>"}},
        "ssh-raw-units": {"sources": {"config": "/c", "self": "/c/s", "ssh": "/k & <ssh>"},
                          "base": {"image": "/b/base.img", "format": "raw"},
                          "memory": {"amount": 1500, "unit": "MB"}, "vcpus": 3,
                          "stateDir": "/var/lib/sprout/vms/it's & <odd>"},
    }
    out = []
    for name, extra in variants.items():
        s = dict(base)
        s.update(extra)
        s["name"] = name
        out.append(write_spec(os.path.join(work, f"set-{name}.json"), s))
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    sprout = os.path.abspath(sys.argv[1])
    keep = "--keep" in sys.argv
    work = lvenv.host_directory(tempfile.mkdtemp(prefix="sprout-libvirt-test-"))
    lv = watch = None
    try:
        # 1. every generated XML validates
        golden = sorted(os.path.join(ROOT, "tests", "nix", "golden", f)
                        for f in os.listdir(os.path.join(ROOT, "tests", "nix", "golden")) if f.endswith(".json"))
        for p in golden + spec_set(work):
            validate(sprout, p)
        print(f"test_libvirt: {len(golden)} golden + test-set specs: XML validates")

        try:
            lv = lvenv.LibvirtDaemon(workdir=os.path.join(work, "libvirtd"), keep=keep).start()
        except lvenv.LibvirtUnavailable as e:
            print(f"test_libvirt: SKIP daemon tests: {e}")
            return SKIP
        print(f"test_libvirt: libvirtd up at {lv.uri}")

        # The test guest: kernel + initramfs with a placeholder agent.
        agent = os.path.join(work, "agent.sh")
        with open(agent, "w") as f:
            f.write(PLACEHOLDER_AGENT)
        os.chmod(agent, 0o755)
        kernel, initrd = guestlib.build_guest(agent, None, os.path.join(work, "guest"))
        # A disk given to qemu by qemuArgs is not one libvirt labels: it is given to the
        # VM's uid below, once define has given the VM one.
        statedisk = guestlib.make_state_disk(os.path.join(work, "test-state.img"))
        basef = os.path.join(work, "base.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", basef, "64M"], check=True, timeout=60)
        os.chmod(basef, 0o600)  # a private base outside the Nix store: the VM's uid reads it by its ACL
        cfg = os.path.join(work, "cfg")
        os.makedirs(os.path.join(cfg, "hosts", "alpha"))
        with open(os.path.join(cfg, "hosts", "alpha", "configuration.nix"), "w") as f:
            f.write('{ ... }: { networking.hostName = "alpha"; }\n')
        name = f"sprout-lvtest-{os.getpid()}"
        # The state and cache directories' parents do not exist yet: sprout makes them.
        state = os.path.join(work, "vms", "alpha")
        spec = {"version": 1, "name": name, "backend": "libvirt", "libvirt": {"uri": lv.uri},
                "base": {"image": basef}, "stateDir": state, "cacheDir": os.path.join(work, "var", "cache"),
                "gcRootDir": os.path.join(work, "gcroots"),
                "sources": {"config": cfg, "self": os.path.join(cfg, "hosts", "alpha")},
                "memory": {"amount": 256, "unit": "MiB"}, "network": {"mode": "none"},
                "kernel": {"path": kernel, "initrd": initrd,
                           "cmdline": "console=ttyS0 quiet panic=-1 sprout_test.after=stay"},
                "qemuArgs": ["-drive", f"file={statedisk},format=raw,if=none,id=teststate",
                             "-device", "virtio-blk-pci,drive=teststate,serial=sprout-test-state,bus=pci.0,addr=0x1d"],
                "shutdownTimeoutSeconds": 30}
        spec_file = write_spec(os.path.join(work, f"{name}.json"), spec)

        def domains():
            return lv.virsh("list", "--all", "--name").stdout.split()

        # 2a. bad specs: refused before anything is defined or written
        bad = dict(spec, memory={"amount": 1, "unit": "XB"})
        r = run([sprout, "define", "--spec", write_spec(os.path.join(work, "bad-unit.json"), bad), "--start"])
        check(r.returncode == 2 and "memory" in r.stderr, f"bad memory unit: exit {r.returncode}: {r.stderr}")
        bad = dict(spec, base={"image": os.path.join(work, "missing.qcow2")})
        r = run([sprout, "define", "--spec", write_spec(os.path.join(work, "bad-base.json"), bad), "--start"])
        check(r.returncode == 2 and "missing.qcow2" in r.stderr, f"missing base: exit {r.returncode}: {r.stderr}")
        check(domains() == [], f"a bad spec defined something: {domains()}")
        check(not os.path.exists(os.path.join(state, "root.qcow2")), "a bad spec created an overlay")
        print("test_libvirt: bad specs refused, nothing defined")

        # 2b. define: a uid of its own for the VM's qemu; then define --start
        t = time.monotonic()
        r = run([sprout, "define", "--spec", spec_file])
        check(r.returncode == 0 and "defined" in r.stdout and "not running" in r.stdout,
              f"define: exit {r.returncode}: {r.stderr}{r.stdout}")
        account = lv.domain_qemu_account(name)
        check(account is not None and account[0] == account[1], f"the domain's DAC label: {account}")
        vm_uid = account[0]
        check(vm_uid != lv.qemu_account()[0] and vm_uid != 0, f"the VM's uid {vm_uid} is not its own")
        for db in (pwd.getpwuid, grp.getgrgid):
            try:
                db(vm_uid)
                raise Fail(f"the VM's uid {vm_uid} is known to the user database")
            except KeyError:
                pass
        with open(os.path.join(lvenv.VM_UID_REGISTRY, str(vm_uid))) as f:
            record = json.load(f)
        check(record == {"vm": name, "stateDir": state}, f"the uid's record: {record}")
        # domain-xml shows the recorded uid; that XML (label, relabel='no' sources) validates.
        xml = validate(sprout, spec_file)
        check(f"<label>+{vm_uid}:+{vm_uid}</label>" in xml and xml.count("relabel='no'") == 3,
              f"domain-xml after define lacks the VM's label or the shared disks' relabel='no':\n{xml}")
        os.chown(statedisk, vm_uid, vm_uid)
        # The recorder, for every run from here on (it reads the channel through libvirt).
        watch_log = open(os.path.join(work, "watch.log"), "w+")
        watch = subprocess.Popen([sprout, "watch", "--spec", spec_file], stdin=subprocess.DEVNULL,
                                 stdout=watch_log, stderr=subprocess.STDOUT)
        r = run([sprout, "define", "--spec", spec_file, "--start"])
        check(r.returncode == 0 and "unchanged" in r.stdout and "started" in r.stdout,
              f"define --start: exit {r.returncode}: {r.stderr}{r.stdout}")
        line = placeholder_event(state, 1, 120, watch_log)
        sock = lv.channel_socket(name)
        check(sock is not None and not os.path.lexists(sock) and not os.path.lexists(os.path.join(state, "status.sock")),
              f"the status socket {sock!r} is reachable here, or there is one in the state directory")
        disks = line["message"]
        for want in ["sprout-config:1", "sprout-self:1", "sprout-test-state:0"]:
            check(want in disks, f"guest disks {disks!r} lack {want}")
        print(f"test_libvirt: guest up, status line after {time.monotonic() - t:.1f} s: {disks}")
        with open(os.path.join(state, "console.log"), errors="replace") as f:
            check("sprout-test: boot 1" in f.read(), "console.log has no boot marker")

        def dom_id():
            return lv.virsh("domid", name).stdout.strip()
        id1, pids1 = dom_id(), lv.qemu_pids(name)
        check(id1 not in ("", "-") and len(pids1) == 1, f"domain id {id1!r}, qemu pids {pids1}")
        problem = lv.privilege_problem(pids1[0], (vm_uid, vm_uid))
        check(problem is None, problem)
        groups = lv.process_ids(pids1[0]).get("Groups", [])
        check(set(groups) <= {vm_uid}, f"qemu has supplementary groups {groups} (libvirt's user's?)")
        # The VM's own disks are its uid's while the domain runs.
        overlay, secrets = os.path.join(state, "root.qcow2"), os.path.join(state, "secrets.img")
        for f in (overlay, secrets):
            check(os.stat(f).st_uid == vm_uid, f"the running domain's {f} is not uid {vm_uid}'s: {os.stat(f).st_uid}")
        print(f"test_libvirt: qemu runs as the VM's own uid {vm_uid} (not {lvenv.QEMU_USER} "
              f"{lv.qemu_account()}, not root), which owns the overlay and the secrets disk")

        # 2c. define again, same spec: nothing changes
        r = run([sprout, "define", "--spec", spec_file, "--start"])
        check(r.returncode == 0 and "unchanged" in r.stdout, f"second define: {r.returncode} {r.stdout}{r.stderr}")
        check(dom_id() == id1 and lv.qemu_pids(name) == pids1, "second define restarted the domain")
        # 2d. a changed spec: updated, takes effect at next start
        write_spec(spec_file, dict(spec, vcpus=2))
        r = run([sprout, "define", "--spec", spec_file])
        check(r.returncode == 0 and "updated" in r.stdout and "next start" in r.stdout,
              f"changed define: {r.returncode} {r.stdout}{r.stderr}")
        check(dom_id() == id1 and lv.qemu_pids(name) == pids1, "a changed definition restarted the domain")
        inactive = lv.virsh("dumpxml", "--inactive", name).stdout
        check("<vcpu placement='static'>2</vcpu>" in inactive, "new definition not stored")
        check(lv.domain_qemu_account(name) == (vm_uid, vm_uid), "a re-define changed the VM's uid")
        print("test_libvirt: redefine unchanged/changed: domain not restarted")

        # 2e. stop (ACPI), seen on `sprout console`; undefine: disks stay
        con_err = open(os.path.join(work, "console.err"), "w+")
        con_out = open(os.path.join(work, "console.out"), "w+b")
        # stdin stays open until it has ended by itself (closed input would end it too).
        console = subprocess.Popen([sprout, "console", "--spec", spec_file], stdin=subprocess.PIPE,
                                   stdout=con_out, stderr=con_err)
        try:
            deadline = time.monotonic() + 30
            while "attached to the console" not in read_file(con_err.name):
                check(console.poll() is None and time.monotonic() < deadline,
                      f"sprout console did not attach: {read_file(con_err.name)}")
                time.sleep(0.1)
            r = run([sprout, "stop", "--spec", spec_file], timeout=120)
            check(r.returncode == 0 and "shut down" in r.stdout, f"stop: {r.returncode} {r.stdout}{r.stderr}")
            console.wait(timeout=20)  # it ends by itself: the domain stopped
        finally:
            if console.poll() is None:
                console.kill()
                console.wait(10)
            console.stdin.close()
        con_out.seek(0)
        out = con_out.read()
        said = read_file(con_err.name)
        check(console.returncode == 0 and b"power button pressed" in out and "console of domain" in said,
              f"sprout console: exit {console.returncode}, stderr {said!r}, output {out[-500:]!r}")
        print("test_libvirt: stop shut the domain down gracefully; sprout console (libvirt's API) showed it and ended")
        placeholder_run_ended(state, 1, watch_log)
        # Stopped: libvirt gives back no read-only disk, and the secrets disk stays the
        # VM's uid's, which no other qemu runs as.
        st = os.stat(secrets)
        check(st.st_uid == vm_uid and st.st_mode & 0o777 == 0o400,
              f"secrets.img after the run: uid {st.st_uid}, mode {st.st_mode & 0o777:o}")
        check(try_as(vm_uid, secrets, os.O_RDONLY), "the VM's uid cannot read its secrets disk")
        check(not try_as(vm_uid + 1, secrets, os.O_RDONLY), "another uid can read the VM's secrets disk")
        check(not try_as(lv.qemu_account()[0], secrets, os.O_RDONLY), f"{lvenv.QEMU_USER} can read the secrets disk")
        shared = [os.path.realpath(os.path.join(state, f)) for f in ("config.img", "self.img")] + [basef]
        for f in shared:
            st = os.stat(f)
            check(st.st_uid == 0 and st.st_mode & 0o077 == 0o040 and acl_users(f) == {vm_uid: 4},
                  f"{f} after the run: uid {st.st_uid}, mode {st.st_mode & 0o777:o}, ACL users {acl_users(f)}")
            check(try_as(vm_uid, f, os.O_RDONLY, do_chmod=True) == (True, False),
                  f"the VM's uid cannot read {f}, or can chmod it")
            check(not try_as(vm_uid, f, os.O_WRONLY), f"the VM's uid can write {f}")
            check(not try_as(vm_uid + 1, f, os.O_RDONLY), f"another uid can read {f}")
        print(f"test_libvirt: stopped: secrets.img is uid {vm_uid}'s, 0400, unreadable to others; the shared "
              "images and the base are root's, readable by that uid alone (ACL), not writable or chmod-able")
        # An image an earlier sprout let libvirt give its qemu user (which then made it
        # writable) is taken back at the next define.
        os.chown(shared[0], *lv.qemu_account())
        os.chmod(shared[0], 0o644)
        # ... with an ACL entry of its own, letting another uid write: not kept.
        none = 0xFFFFFFFF
        os.setxattr(shared[0], "system.posix_acl_access",
                    struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in [
                        (0x01, 6, none), (0x02, 6, vm_uid + 1), (0x04, 4, none), (0x10, 6, none), (0x20, 4, none)]))
        # An overlay whose header the VM's qemu rewrote to name another file as its
        # backing (the overlay is that uid's): define refuses, and opens nothing to it.
        decoy = os.path.join(work, "not-a-base.img")
        with open(decoy, "wb") as f:
            f.write(b"root's, private\n")
        os.chmod(decoy, 0o600)
        info = json.loads(subprocess.run(["qemu-img", "info", "--force-share", "--output=json", overlay],
                                         capture_output=True, text=True, check=True).stdout)
        subprocess.run(["qemu-img", "rebase", "-u", "-F", "raw", "-b", decoy, overlay], check=True)
        r = run([sprout, "define", "--spec", spec_file])
        check(r.returncode == 1 and "not opened to the VM's qemu" in r.stderr and not acl_users(decoy),
              f"define with a rewritten backing: {r.returncode} {r.stderr} (decoy ACL {acl_users(decoy)})")
        subprocess.run(["qemu-img", "rebase", "-u", "-F", info["backing-filename-format"], "-b",
                        info["backing-filename"], overlay], check=True)
        print("test_libvirt: an overlay naming a backing file that is not its base is refused by define")
        # 2f. stop --force on a guest that ignores the power button (the same domain,
        # started again with sprout_test.ignore_powerdown=1 and a shutdown timeout a
        # graceful stop would wait out far beyond this stop's 120 s): destroyed at once,
        # the power button never pressed, the definition and every disk kept.
        write_spec(spec_file, dict(spec, vcpus=2, shutdownTimeoutSeconds=600,
                                   kernel=dict(spec["kernel"],
                                               cmdline=spec["kernel"]["cmdline"] + " sprout_test.ignore_powerdown=1")))
        with open(os.path.join(state, "console.log"), errors="replace") as f:
            console_before = len(f.read())
        r = run([sprout, "define", "--spec", spec_file, "--start"])
        check(r.returncode == 0 and "started" in r.stdout, f"define --start again: {r.returncode} {r.stdout}{r.stderr}")
        st = os.stat(shared[0])
        check(st.st_uid == 0 and st.st_mode & 0o777 == 0o440 and acl_users(shared[0]) == {vm_uid: 4},
              f"{shared[0]} not taken back: uid {st.st_uid}, mode {st.st_mode & 0o777:o}")
        placeholder_event(state, 2, 120, watch_log)  # a new run: a record of its own
        r = run([sprout, "stop", "--spec", spec_file, "--force"], timeout=120)
        check(r.returncode == 0 and "destroyed" in r.stdout, f"stop --force: {r.returncode} {r.stdout}{r.stderr}")
        placeholder_run_ended(state, 2, watch_log)
        watch.terminate()
        check(watch.wait(15) == 0, f"watch exit status {watch.returncode}\n{read_file(watch_log.name)}")
        # Two runs, each begun and ended once: no run made up of a domain being stopped.
        seen = [e["event"] for e in host_events(state) if e.get("source") == "host"]
        check(seen == ["run-started", "run-ended", "run-started", "run-ended", "recorder-stopped"],
              f"the watcher's host events: {seen}\n{read_file(watch_log.name)}")
        print("test_libvirt: sprout watch recorded both runs through libvirt's API, each its own record")
        check(lv.virsh("domstate", name).stdout.strip() == "shut off", "the domain runs after stop --force")
        check(name in domains(), "stop --force removed the definition")
        check("sprout_test.ignore_powerdown=1" in lv.virsh("dumpxml", "--inactive", name).stdout,
              "the kept definition is not the one started")
        with open(os.path.join(state, "console.log"), errors="replace") as f:
            console = f.read()
        console = console[console_before:] if len(console) >= console_before else console  # (appended, or new)
        check("sprout-test: boot" in console, f"the second boot left no console: {console[-500:]!r}")
        check("power button pressed" not in console, f"stop --force pressed the power button: {console[-500:]!r}")
        for f in ["root.qcow2", "config.img", "self.img"]:
            check(os.path.exists(os.path.join(state, f)), f"stop --force removed {f}")
        print("test_libvirt: stop --force destroyed a guest that ignores the power button; definition and disks kept")
        r = run([sprout, "undefine", name, "--spec", spec_file], timeout=120)
        check(r.returncode == 0 and "undefined" in r.stdout, f"undefine: {r.returncode} {r.stdout}{r.stderr}")
        check(name not in domains(), "domain still defined after undefine")
        for f in ["root.qcow2", "config.img", "self.img"]:
            check(os.path.exists(os.path.join(state, f)), f"undefine removed {f}")
        # Once the domain is gone, the overlay is the VM's uid's still (sprout gave it at
        # define; libvirt gave back what it found).
        st = os.stat(overlay)
        check(st.st_uid == vm_uid and st.st_mode & 0o777 == 0o600,
              f"the overlay after undefine: uid {st.st_uid}, mode {st.st_mode & 0o777:o}")
        r = run([sprout, "undefine", name, "--uri", lv.uri])
        check(r.returncode == 0 and "nothing to undefine" in r.stdout, f"second undefine: {r.stdout}{r.stderr}")
        print("test_libvirt: undefine kept overlay and exported disks")
        # 2g. a domain of that name that sprout did not define is not sprout's to stop
        foreign = os.path.join(work, "foreign.xml")
        with open(foreign, "w") as f:
            f.write(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
                    "<os><type arch='x86_64'>hvm</type></os></domain>")
        lv.virsh("define", foreign)
        r = run([sprout, "stop", "--spec", spec_file], timeout=120)
        check(r.returncode == 1 and "not defined by sprout" in r.stderr, f"stop of a foreign domain: {r.returncode} {r.stderr}")
        lv.virsh("undefine", name)
        print("test_libvirt: a domain sprout did not define is refused by stop")
        # 2h. destroy: the uid is free again, and no image lets it read any more.
        r = run([sprout, "destroy", "--spec", spec_file, "--delete-disks"], timeout=120)
        check(r.returncode == 0 and f"released its qemu's uid {vm_uid}" in r.stdout,
              f"destroy: {r.returncode} {r.stdout}{r.stderr}")
        check(not os.path.exists(os.path.join(lvenv.VM_UID_REGISTRY, str(vm_uid))), "destroy kept the uid's record")
        for f in shared:
            check(vm_uid not in acl_users(f) and not try_as(vm_uid, f, os.O_RDONLY),
                  f"{f} still lets uid {vm_uid} read it after destroy: {acl_users(f)}")
        print(f"test_libvirt: destroy released uid {vm_uid} and its ACL entries")
        print("test_libvirt: PASS")
        return 0
    except (Fail, guestlib.GuestError) as e:
        print(f"test_libvirt: FAIL: {e}", file=sys.stderr)
        if lv:
            print(lv.log_tail(), file=sys.stderr)
        return 1
    finally:
        if watch is not None and watch.poll() is None:
            watch.kill()
            watch.wait(10)
        if lv:
            lv.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test_libvirt: kept {work}")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""sprout's libvirt backend against a real libvirt daemon (suite 'libvirt').

Usage: test_libvirt.py SPROUT [--keep]

1. validate: `sprout domain-xml` for every golden example spec (tests/nix/golden; their
   paths need not exist) and for a set of specs covering every network mode, direct
   kernel boot, VNC and the ssh disk: each XML passes `virt-xml-validate FILE domain`.
2. With a private libvirtd (lvenv.LibvirtDaemon, qemu:///system?socket=...):
   - a bad spec (unknown memory unit; missing base) is refused (exit 2) and nothing is
     defined or written;
   - `sprout define --start` defines and starts the test guest (tests/vm, placeholder
     agent); its status line arrives on STATE/status.sock, its console in console.log;
     qemu runs as the daemon's unprivileged user (every uid and gid, from /proc), which
     owns the overlay while the domain runs (DAC's dynamic ownership);
   - define again with the same spec: "unchanged", same domain id and qemu pid;
   - a changed spec: "updated", the running domain is not restarted (same id/pid);
   - `sprout stop`: graceful ACPI shutdown; started again with a guest that ignores
     the power button, `sprout stop --force` destroys it at once (no power button) and
     keeps its definition and disks; `sprout undefine`: domain gone, overlay and
     exported disks still there, the overlay root's and 0600 again.
The full specialization flow with the real agent (`sprout watch`, `sprout wait`) and
a failing rebuild are in test_libvirt_agent.py.
"""

import json
import os
import shutil
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

PLACEHOLDER_AGENT = ("#!/bin/sh\n# Placeholder agent: one status line on the status port (bounded write).\n"
                     + guestlib.FIND_STATUS_PORT_SH + r"""
disks=
for d in /sys/block/*; do disks="$disks ${d##*/}:$(cat $d/serial 2>/dev/null):$(cat $d/ro)"; done
[ -n "$port" ] && timeout 20 sh -c 'printf "%s\n" "$1" >"$2"' _ \
  "{\"event\":\"agent-started\",\"disks\":\"${disks# }\"}" "$port"
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
    lv = None
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
        # A disk given to qemu by qemuArgs is not one libvirt labels: it is qemu's user's.
        statedisk = lv.give_to_qemu(guestlib.make_state_disk(os.path.join(work, "test-state.img")))
        basef = os.path.join(work, "base.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", basef, "64M"], check=True, timeout=60)
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

        # 2b. define --start
        t = time.monotonic()
        r = run([sprout, "define", "--spec", spec_file, "--start"])
        check(r.returncode == 0, f"define --start: exit {r.returncode}: {r.stderr}{r.stdout}")
        check("defined" in r.stdout and "started" in r.stdout, f"define --start said: {r.stdout}")
        reader = guestlib.StatusReader(os.path.join(state, "status.sock"), connect_timeout=30)
        try:
            line = reader.wait_for(lambda l: l.get("event") == "agent-started", 120)
        finally:
            reader.close()
        disks = line["disks"]
        for want in ["sprout-config:1", "sprout-self:1", "sprout-test-state:0"]:
            check(want in disks, f"guest disks {disks!r} lack {want}")
        print(f"test_libvirt: guest up, status line after {time.monotonic() - t:.1f} s: {disks}")
        with open(os.path.join(state, "console.log"), errors="replace") as f:
            check("sprout-test: boot 1" in f.read(), "console.log has no boot marker")

        def dom_id():
            return lv.virsh("domid", name).stdout.strip()
        id1, pids1 = dom_id(), lv.qemu_pids(name)
        check(id1 not in ("", "-") and len(pids1) == 1, f"domain id {id1!r}, qemu pids {pids1}")
        problem = lv.privilege_problem(pids1[0])
        check(problem is None, problem)
        # DAC's dynamic ownership: the overlay is qemu's user's while the domain runs.
        overlay = os.path.join(state, "root.qcow2")
        check(os.stat(overlay).st_uid == lv.qemu_account()[0],
              f"the running domain's overlay is not {lvenv.QEMU_USER}'s: uid {os.stat(overlay).st_uid}")
        print(f"test_libvirt: qemu runs as {lvenv.QEMU_USER} {lv.qemu_account()}, not root, and owns the overlay")

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
        print("test_libvirt: redefine unchanged/changed: domain not restarted")

        # 2e. stop (ACPI), undefine: disks stay
        r = run([sprout, "stop", "--spec", spec_file], timeout=120)
        check(r.returncode == 0 and "shut down" in r.stdout, f"stop: {r.returncode} {r.stdout}{r.stderr}")
        print("test_libvirt: stop shut the domain down gracefully")
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
        reader = guestlib.StatusReader(os.path.join(state, "status.sock"), connect_timeout=30)
        try:
            reader.wait_for(lambda l: l.get("event") == "agent-started", 120)
        finally:
            reader.close()
        r = run([sprout, "stop", "--spec", spec_file, "--force"], timeout=120)
        check(r.returncode == 0 and "destroyed" in r.stdout, f"stop --force: {r.returncode} {r.stdout}{r.stderr}")
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
        # Once the domain is gone, libvirt gave the (writable) overlay back to its owner.
        st = os.stat(overlay)
        check(st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o600,
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
        print("test_libvirt: PASS")
        return 0
    except (Fail, guestlib.GuestError) as e:
        print(f"test_libvirt: FAIL: {e}", file=sys.stderr)
        if lv:
            print(lv.log_tail(), file=sys.stderr)
        return 1
    finally:
        if lv:
            lv.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test_libvirt: kept {work}")


if __name__ == "__main__":
    sys.exit(main())

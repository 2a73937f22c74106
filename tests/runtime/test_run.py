#!/usr/bin/env python3
"""`sprout run` end to end with the test guest (tests/vm: Debian's cloud kernel,
busybox, the real sprout-agent, stand-in nixos-rebuild/systemctl) under qemu TCG.

usage: test_run.py SPROUT CASE     (SPROUT_AGENT=path/to/sprout-agent)
CASE: lifecycle, two-vms, failing, recorder-restart, shutdown, ignore-powerdown, cli, accel
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import runtime_lib as rl
from runtime_lib import GuestWorld, Proc, check

sys.path.insert(0, os.path.join(rl.HERE, "..", "vm"))
import guestlib  # noqa: E402

BOOT_BUDGET = 240  # seconds for a VM to specialize under TCG (two boots and a rebuild)


def run_vm(world, name, log_name="run.log", args=()):
    return Proc(["run", "--spec", os.path.join(world.spec_dir, name + ".json"), *args],
                os.path.join(world.root, f"{name}-{log_name}"))


def wait_for(world, name, phase="specialized", timeout=BOOT_BUDGET):
    # (--start-timeout: the run was just started and may not hold its lock yet.)
    return rl.sprout(["wait", name, "--for", phase, "--spec-dir", world.spec_dir, "--timeout", str(timeout),
                      "--start-timeout", "120"],
                     timeout=timeout + 30)


def events_of_boot(state, boot_id):
    return [e for e in rl.read_events(state) if e.get("bootId") == boot_id]


def phases_between(events, start_index):
    return [e["phase"] for e in events[start_index:] if e["phase"] != "log"]


DYNAMIC_UIDS = range(0x73700000, 0x73700000 + 0x10000)  # runtime/dynamic_uid.h


def running_qemu(state, run, timeout=120):
    """/proc/PID/status of the qemu a run records (status.json's host.pid), read once
    the guest has said something (qemu switches users just before the guest starts):
    {"Uid": [...], "Gid": [...], "Groups": [...], "Seccomp": "2", ...}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = rl.read_status(state) or {}
        pid = (st.get("host") or {}).get("pid")
        if pid and st.get("phase"):
            try:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            except OSError:
                fields = None
            if fields:
                for k in ("Uid", "Gid", "Groups"):
                    fields[k] = [int(x) for x in fields.get(k, "").split()]
                return fields
        check(run.p.poll() is None, f"the run ended before its qemu was seen\n{run.output()}")
        time.sleep(0.05)
    check(False, f"no qemu recorded in {state} within {timeout} s\n{run.output()}")


def check_confined(name, q):
    """Issue 29: qemu is not root once the guest runs, and is in its seccomp sandbox.
    (Only a sprout running as root switches qemu's user.)"""
    if os.geteuid() != 0:
        return
    check(len(set(q["Uid"])) == 1 and q["Uid"][0] in DYNAMIC_UIDS,
          f"{name}: qemu's uids {q['Uid']} (want one uid of its own, from sprout's range)")
    check(q["Gid"] == [q["Uid"][0]] * 4 and q["Groups"] == [q["Uid"][0]],
          f"{name}: qemu's gids {q['Gid']}, groups {q['Groups']}")
    check(q.get("Seccomp") == "2", f"{name}: qemu's Seccomp is {q.get('Seccomp')} (want 2: the sandbox's filter)")


def case_lifecycle(root):
    w = GuestWorld(root)
    w.spec("web")
    state = w.state("web")
    # 1. A fresh VM specializes after exactly one reboot; wait exits 0. Its qemu runs
    #    as a uid of its own, in QEMU's seccomp sandbox (and still reboots the guest,
    #    and powers off).
    with run_vm(w, "web") as run:
        check_confined("web", running_qemu(state, run))
        r = wait_for(w, "web")
        check(r.returncode == 0, f"wait: {r.returncode} {r.stdout} {r.stderr}\n{run.output()}")
        check(run.wait(120) == 0, f"run exit status\n{run.output()}")
    st = rl.read_status(state)
    check(st["phase"] == "specialized", f"status.json: {st}")
    check(st["host"]["state"] == "stopped", f"host state: {st['host']}")
    check(w.boots("web") == [1, 2], f"boots: {w.boots('web')}")
    gen1 = st["generation"]
    n_events = len(rl.read_events(state))
    check(phases_between(rl.read_events(state), 0).count("rebooting") == 1, "more than one reboot")
    # 2. A second run goes straight to specialized, without a rebuild.
    with run_vm(w, "web", "run2.log") as run:
        r = wait_for(w, "web")
        check(r.returncode == 0, f"second wait: {r.returncode} {r.stderr}\n{run.output()}")
        check(run.wait(120) == 0, f"second run exit status\n{run.output()}")
    check(w.boots("web") == [1, 2, 3], f"boots after second run: {w.boots('web')}")
    ph = phases_between(rl.read_events(state), n_events)
    check("rebuilding" not in ph and "rebooting" not in ph, f"second run rebuilt: {ph}")
    check(rl.read_status(state)["phase"] == "specialized", "second run did not end specialized")
    # 3. A changed self config: exactly one re-specialization.
    n_events = len(rl.read_events(state))
    with open(os.path.join(root, "self-web", "configuration.nix"), "a") as f:
        f.write("# changed: a new generation\n")
    with run_vm(w, "web", "run3.log") as run:
        r = wait_for(w, "web")
        check(r.returncode == 0, f"third wait: {r.returncode} {r.stderr}\n{run.output()}")
        check(run.wait(120) == 0, f"third run exit status\n{run.output()}")
    ph = phases_between(rl.read_events(state), n_events)
    check(ph.count("rebooting") == 1 and ph.count("rebuilt") == 1, f"re-specialization phases: {ph}")
    check(w.boots("web") == [1, 2, 3, 4, 5], f"boots after the change: {w.boots('web')}")
    st = rl.read_status(state)
    check(st["phase"] == "specialized" and st["generation"] != gen1, f"generation did not change: {st}")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def case_two_vms(root):
    w = GuestWorld(root)
    before = sha256(w.base)
    for n in ("alpha", "beta"):
        w.spec(n)
    runs = [run_vm(w, n) for n in ("alpha", "beta")]
    try:
        # Each qemu runs as a uid of its own: one cannot signal or trace the other.
        qemus = [running_qemu(w.state(n), run) for n, run in zip(("alpha", "beta"), runs)]
        for n, q in zip(("alpha", "beta"), qemus):
            check_confined(n, q)
        check(qemus[0]["Uid"][0] != qemus[1]["Uid"][0], f"alpha and beta share uid {qemus[0]['Uid'][0]}")
        # One wait per VM, both from the start: each follows its VM's run (these
        # guests power off once specialized, and a wait begun after a run has ended
        # answers "not running", not from its history).
        waits = [subprocess.Popen([rl.SPROUT, "wait", n, "--spec-dir", w.spec_dir, "--timeout", str(BOOT_BUDGET),
                                   "--start-timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for n in ("alpha", "beta")]
        for n, p in zip(("alpha", "beta"), waits):
            try:
                out, err = p.communicate(timeout=BOOT_BUDGET + 60)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            check(p.returncode == 0, f"{n}: wait {p.returncode} {out}{err}")
        for run in runs:
            check(run.wait(120) == 0, f"run exit status\n{run.output()}")
    finally:
        for run in runs:
            run.__exit__()
    check(sha256(w.base) == before, "the base image changed")
    for n in ("alpha", "beta"):
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json",
                                          os.path.join(w.state(n), "root.qcow2")],
                                         capture_output=True, text=True, check=True).stdout)
        check(os.path.realpath(info.get("full-backing-filename", info.get("backing-filename", ""))) ==
              os.path.realpath(w.base), f"{n}: overlay backing {info}")
        size = os.path.getsize(os.path.join(w.state(n), "root.qcow2"))
        print(f"{n}: overlay {size} bytes after specialization (base {os.path.getsize(w.base)} bytes)")
        check(size < 16 << 20, f"{n}: overlay unexpectedly large ({size})")
        check(rl.read_status(w.state(n))["phase"] == "specialized", f"{n} not specialized")
        check(w.boots(n) == [1, 2], f"{n}: boots {w.boots(n)}")


def case_failing(root):
    w = GuestWorld(root)
    w.spec("bad", after="stay", self_extra="# sprout-test: fail\n")
    with run_vm(w, "bad") as run:
        r = wait_for(w, "bad")
        check(r.returncode == 1, f"wait on a failing rebuild: {r.returncode} {r.stdout} {r.stderr}")
        check("failed" in r.stderr, f"no reason printed: {r.stderr}")
        # The VM stays up and does not reboot-loop.
        time.sleep(8)
        check(run.p.poll() is None, "run ended after a failed rebuild")
        check(w.boots("bad") == [1], f"reboot loop: boots {w.boots('bad')}")
        check(rl.read_status(w.state("bad"))["phase"] == "failed", "status.json is not failed")
        run.signal(signal.SIGTERM)
        check(run.wait(60) == 0, f"graceful stop\n{run.output()}")


def case_recorder_restart(root):
    w = GuestWorld(root)
    w.spec("rr", self_extra="# sprout-test: sleep 4\n")
    state = w.state("rr")
    spec = os.path.join(w.spec_dir, "rr.json")
    with run_vm(w, "rr", args=["--external-recorder"]) as run:
        with Proc(["watch", "--spec", spec], os.path.join(root, "watch1.log")) as watch1:
            rl.wait_status(state, lambda s: s.get("phase") == "rebuilding", BOOT_BUDGET, "rebuilding", run=run)
            watch1.p.kill()  # no goodbye: the recorder dies mid-boot
            watch1.p.wait(10)
        time.sleep(2)
        with Proc(["watch", "--spec", spec], os.path.join(root, "watch2.log")) as watch2:
            check(run.wait(BOOT_BUDGET) == 0, f"run exit status\n{run.output()}")
            st = rl.wait_status(state, lambda s: s.get("phase") == "specialized", 20, "specialized")
            check(w.boots("rr") == [1, 2], f"boots {w.boots('rr')}")
            watch2.signal(signal.SIGTERM)
            check(watch2.wait(10) == 0, "watch exit status")
    ph = [e["phase"] for e in rl.read_events(state) if e["phase"] != "log"]
    check(ph[-1] == "specialized" and "rebooting" in ph, f"events: {ph}")


def case_shutdown(root):
    w = GuestWorld(root)
    port = guestlib._free_port()
    w.spec("up", after="stay",
           network={"mode": "user", "forwards": [{"hostAddress": "127.0.0.1", "hostPort": port, "guestPort": 8080}]})
    with run_vm(w, "up") as run:
        r = wait_for(w, "up")
        check(r.returncode == 0, f"wait {r.returncode} {r.stderr}")
        line = guestlib.tcp_read_line(port, 60)
        check(bool(line), "no answer through the port forward")
        print(f"port {port} -> guest 8080 answered: {line}")
        t0 = time.monotonic()
        run.signal(signal.SIGTERM)
        check(run.wait(40) == 0, f"run exit status after SIGTERM\n{run.output()}")
        dt = time.monotonic() - t0
    # How long it took is printed, not asserted: the host status says it was graceful.
    st = rl.read_status(w.state("up"))
    check(st["host"]["state"] == "stopped" and "on request" in st["host"]["how"], f"host: {st['host']}")
    check("sprout-test: poweroff" in w.console("up") or "power button" in w.console("up"), "guest did not power off")
    print(f"graceful power-down took {dt:.1f} s")


def case_ignore_powerdown(root):
    """A guest that ignores the power button: SIGTERM quits qemu after the spec's
    shutdown timeout (exit 3); `sprout stop --force` quits it at once."""
    w = GuestWorld(root)
    w.spec("stubborn", after="stay", extra_cmdline="sprout_test.ignore_powerdown=1", shutdownTimeoutSeconds=5)
    with run_vm(w, "stubborn") as run:
        r = wait_for(w, "stubborn")
        check(r.returncode == 0, f"wait {r.returncode} {r.stderr}")
        t0 = time.monotonic()
        run.signal(signal.SIGTERM)
        rc = run.wait(40)
        dt = time.monotonic() - t0
        check(rc == 3, f"run exit status {rc} (want 3: quit after timeout)\n{run.output()}")
    # Quit only after the shutdown timeout (a lower bound is a fact; an upper one would
    # measure the machine's load).
    check(dt >= 5, f"quit after {dt:.1f} s, before the 5 s shutdown timeout")
    print(f"quit {dt:.1f} s after SIGTERM (timeout 5 s)")
    # `sprout stop --force` is a hard stop at once, whatever the spec's timeout: the
    # guest ignores the power button and would hold a plain stop for 600 s.
    w.spec("stubborn", after="stay", extra_cmdline="sprout_test.ignore_powerdown=1", shutdownTimeoutSeconds=600)
    with run_vm(w, "stubborn") as run:
        r = wait_for(w, "stubborn")
        check(r.returncode == 0, f"wait {r.returncode} {r.stderr}")
        r = rl.sprout(["stop", "stubborn", "--force", "--spec-dir", w.spec_dir], timeout=120)
        check(r.returncode == 0 and "quit" in r.stdout, f"stop --force: {r.returncode} {r.stdout} {r.stderr}")
        rc = run.wait(60)
        check(rc == 3, f"run exit status {rc} (want 3: qemu quit)\n{run.output()}")
    st = rl.read_status(w.state("stubborn"))
    check("asked a second time" in st["host"]["how"], f"how: {st['host']}")


def case_cli(root):
    """The command as a person at a terminal uses it, on one real VM, by NAME only
    ($SPROUT_SPEC_DIR): run, wait (on a pty: a live line, then the whole answer),
    status, logs and logs --follow (the host's events next to the guest's), console
    (typed input reaches the guest, Ctrl-] detaches), stop through the supervisor,
    then wait's answers once no run is current, a qemu that dies before the guest
    starts, run --print-command, and destroy (refused without --delete-disks)."""
    w = GuestWorld(root)
    w.spec("web", after="stay")
    state = w.state("web")
    env = {"SPROUT_SPEC_DIR": w.spec_dir}
    full_env = dict(os.environ, **env)
    with Proc(["run", "web"], os.path.join(root, "web-run.log"), env=env) as run:
        with rl.Pty([rl.SPROUT, "wait", "web", "--timeout", str(BOOT_BUDGET), "--start-timeout", "120"],
                    env=full_env) as t:
            rc = t.wait(BOOT_BUDGET + 60)
            out = t.text()
        check(rc == 0, f"wait on a terminal: {rc}\n{out}\n{run.output()}")
        st = rl.read_status(state)
        # A live line rewritten in place with the elapsed time, then the answer whole,
        # the generation in its 12 digits as every command shows it.
        check("\r\x1b[K" in out and "s]" in out, f"no live line on the terminal: {out!r}")
        check(f"web reached specialized after" in out and f"(generation {st['generation'][:12]})" in out,
              f"answer: {out!r}")
        r = rl.sprout(["status", "--json"], env=env)
        row = json.loads(r.stdout)[0]
        check(row["run"]["state"] == "running" and row["status"]["host"]["state"] == "running", r.stdout)
        r = rl.sprout(["logs", "web"], env=env)
        check(r.returncode == 0 and "host  qemu started" in r.stdout and "guest specialized" in r.stdout,
              f"logs: {r.stdout}{r.stderr}")
        check(" guest   | " in r.stdout, f"logs without the rebuild's output lines: {r.stdout}")
        # The console: what is typed reaches the guest, whose answer comes back; Ctrl-]
        # detaches and leaves the VM running.
        with rl.Pty([rl.SPROUT, "console", "web"], env=full_env) as c:
            c.read_until("Ctrl-] detaches", 30)
            c.write(b"hello-console\r")
            c.read_until("console got: hello-console", 60)
            c.write(b"\x1d")
            check(c.wait(30) == 0, f"console after Ctrl-]: {c.text()}")
            check("detached" in c.text(), c.text())
        check(run.p.poll() is None, "detaching the console stopped the VM")
        check("\x1b[" not in w.console("web"), "the agent wrote colour codes to the console")
        # logs --follow on a terminal, while the VM is stopped by NAME through its
        # supervisor (the power button, as SIGTERM does).
        # (NO_COLOR: a terminal gets no colour with it set.)
        with rl.Pty([rl.SPROUT, "logs", "web", "--follow", "--lines", "3"], env=dict(full_env, NO_COLOR="1")) as f:
            f.read_until("guest specialized", 30)
            r = rl.sprout(["stop", "web"], timeout=200, env=env)
            check(r.returncode == 0 and "guest powered off on request" in r.stdout, f"stop: {r.returncode} {r.stdout}{r.stderr}")
            check(run.wait(60) == 0, f"run after stop\n{run.output()}")
            f.read_until("asked to stop", 30)
            f.read_until("guest powered off on request", 30)
            f.p.send_signal(signal.SIGINT)
            check(f.wait(30) == 0, f"logs --follow on SIGINT: {f.text()}")
            check("\x1b[" not in f.text(), f"colour despite NO_COLOR: {f.text()!r}")
    # No run is current now: wait answers at once, from no history, with the reason.
    r = rl.sprout(["wait", "web", "--timeout", "900"], timeout=60, env=env)
    check(r.returncode == 1 and "not running" in r.stderr and "guest powered off on request" in r.stderr,
          f"wait on a stopped VM: {r.returncode} {r.stdout}{r.stderr}")
    r = rl.sprout(["stop", "web"], env=env)
    check(r.returncode == 0 and "not running" in r.stdout, f"stop when stopped: {r.returncode} {r.stdout}")
    # --print-command starts nothing and leaves no record that looks live.
    r = rl.sprout(["run", "web", "--print-command"], env=env)
    check(r.returncode == 0 and len(r.stdout.strip().splitlines()) == 1, f"print-command: {r.stdout}")
    r = rl.sprout(["status", "--json"], env=env)
    check(json.loads(r.stdout)[0]["run"]["state"] == "stopped", f"status after print-command: {r.stdout}")
    # A qemu that dies before the guest starts: a wait ends at once, saying so, and
    # qemu's own words are kept with the host's events.
    w.spec("web", after="stay", qemuArgs=["-global", "virtio-blk-pci.serial=sprout-test-state", "-bogus-option"])
    with Proc(["run", "web"], os.path.join(root, "web-run2.log"), env=env) as run:
        r = rl.sprout(["wait", "web", "--timeout", "900", "--start-timeout", "120"], timeout=200, env=env)
        check(run.wait(60) == 1, f"run with a bad qemu option\n{run.output()}")
    check(r.returncode == 1 and "qemu exited with status 1 before the guest started" in r.stderr,
          f"wait when qemu died: {r.returncode} {r.stderr}")
    exited = [e for e in rl.read_events(state, host=True) if e.get("event") == "qemu-exited"]
    check(exited and any("bogus" in l for l in exited[-1]["detail"]["qemuStderr"]), f"host events: {exited}")
    # destroy keeps a VM's data unless asked by name.
    overlay = os.path.join(state, "root.qcow2")
    r = rl.sprout(["destroy", "web"], env=env)
    check(r.returncode == 2 and overlay in r.stderr and "--delete-disks" in r.stderr, f"destroy: {r.returncode} {r.stderr}")
    check(os.path.exists(overlay), "destroy without --delete-disks removed the overlay")
    r = rl.sprout(["destroy", "web", "--delete-disks"], env=env)
    check(r.returncode == 0 and not os.path.exists(state), f"destroy --delete-disks: {r.returncode} {r.stdout}{r.stderr}")
    check(not os.path.lexists(os.path.join(root, "gcroots", "web")), "destroy left the GC root")


# A qemu that fails under KVM as these machines' kvm_pvm does (the MSR assertion,
# SIGABRT), and runs everything else with the real qemu: given to sprout as its qemu,
# it makes the fallback independent of the machine's /dev/kvm.
ABORTING_KVM_QEMU = """#!/bin/sh
prev=
for a in "$@"; do
  if [ "$prev" = -accel ] && [ "$a" = kvm ]; then
    echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
    echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion \`ret == cpu->kvm_msr_buf->nmsrs' failed." >&2
    kill -ABRT $$
  fi
  prev=$a
done
exec qemu-system-x86_64 "$@"
"""


def aborting_kvm_qemu(root):
    path = os.path.join(root, "qemu-kvm-aborts")
    with open(path, "w") as f:
        f.write(ABORTING_KVM_QEMU)
    os.chmod(path, 0o755)
    return path


def case_accel(root):
    w = GuestWorld(root)
    qemu = aborting_kvm_qemu(root)
    # 1. "auto" (the default): the probe sees KVM fail, the VM runs under TCG and
    #    specializes; the warning says why, once, and how to choose.
    w.spec("auto")
    with run_vm(w, "auto", args=["--qemu", qemu]) as run:
        r = wait_for(w, "auto")
        check(r.returncode == 0, f"wait: {r.returncode} {r.stdout} {r.stderr}\n{run.output()}")
        check(run.wait(120) == 0, f"run exit status\n{run.output()}")
        out = run.output()
    warnings = [l for l in out.splitlines() if "KVM does not run guests here" in l]
    check(len(warnings) == 1, f"expected one warning about KVM:\n{out}")
    check("signal 6" in warnings[0] and "kvm_buf_set_msrs" in warnings[0] and '"accel": "tcg"' in warnings[0],
          f"the warning does not say why and how to choose: {warnings[0]}")
    starts = [l for l in out.splitlines() if ": starting " in l]
    check(len(starts) == 1 and "-accel tcg" in starts[0], f"qemu not started under TCG:\n{out}")
    # check-host gives the same verdict, from this boot's cache, and warns (no FAIL).
    r = rl.sprout(["check-host", "--json", "--spec-dir", w.spec_dir, "--qemu", qemu])
    check(r.returncode == 0, f"check-host: {r.returncode} {r.stdout} {r.stderr}")
    kvm = [c for c in json.loads(r.stdout) if c["check"] == "kvm"]
    check(len(kvm) == 1 and kvm[0]["result"] == "WARN" and "signal 6" in kvm[0]["message"]
          and "cached" in kvm[0]["message"], f"check-host's kvm line: {kvm}")
    # 2. "kvm" never falls back: qemu fails at once, and run, status, wait and logs show
    #    qemu's own words and the spec key to change.
    w.spec("insist", accel="kvm")
    with run_vm(w, "insist", args=["--qemu", qemu]) as run:
        check(run.wait(120) == 5, f"run exit status (qemu crashed: SIGABRT)\n{run.output()}")
        out = run.output()
    check("kvm_buf_set_msrs" in out and '"accel"' in out, f"run does not show qemu's words and the key:\n{out}")
    check("KVM does not run guests here" not in out, f"\"kvm\" fell back:\n{out}")
    # (No --start-timeout: the run has ended, and wait answers at once with how.)
    r = rl.sprout(["wait", "insist", "--spec-dir", w.spec_dir, "--timeout", "600"], timeout=630)
    check(r.returncode == 1 and "kvm_buf_set_msrs" in r.stderr + r.stdout, f"wait: {r.returncode} {r.stdout} {r.stderr}")
    r = rl.sprout(["status", "insist", "--json", "--spec-dir", w.spec_dir])
    check(r.returncode == 0 and "kvm_buf_set_msrs" in r.stdout and "accel" in r.stdout, f"status: {r.stdout} {r.stderr}")
    r = rl.sprout(["logs", "insist", "--spec-dir", w.spec_dir])
    check("kvm_buf_set_msrs" in r.stdout, f"logs: {r.stdout} {r.stderr}")
    r = rl.sprout(["check-host", "--spec-dir", w.spec_dir, "--qemu", qemu])
    check(r.returncode == 1 and "FAIL  kvm" in r.stdout and "insist" in r.stdout, f"check-host: {r.returncode} {r.stdout}")
    # 3. "tcg": no probe, no warning.
    w.spec("soft", accel="tcg")
    r = rl.sprout(["run", "soft", "--spec-dir", w.spec_dir, "--qemu", qemu, "--print-command"])
    check(r.returncode == 0 and "-accel tcg" in r.stdout and "KVM" not in r.stderr, f"tcg: {r.stdout} {r.stderr}")


if __name__ == "__main__":
    sys.exit(rl.run_case({"lifecycle": case_lifecycle, "two-vms": case_two_vms, "failing": case_failing,
                          "recorder-restart": case_recorder_restart, "shutdown": case_shutdown,
                          "ignore-powerdown": case_ignore_powerdown, "cli": case_cli, "accel": case_accel}, sys.argv[2]))

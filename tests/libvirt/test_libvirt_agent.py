#!/usr/bin/env python3
"""The full flow through libvirt with the REAL guest agent (suite 'libvirt').

usage: test_libvirt_agent.py SPROUT SPROUT_AGENT CASE [--keep]
CASE:
  flow     `sprout define --start` on a private libvirtd (lvenv.py): qemu runs as the
           VM's own uid (its domain's DAC label), not root nor libvirt's qemu user,
           checked from /proc; `sprout watch`
           records the status channel, started late on purpose (6 s after the guest's
           boot marker, when the agent has written its first events), through
           libvirt's API: the domain's status socket is libvirt's (its channel
           directory, in the daemon's private mount namespace), a path that does not
           exist where sprout runs, so no local connect could have read it; the test guest
           (tests/vm: busybox, the real sprout-agent, stand-in nixos-rebuild) rebuilds,
           reboots (libvirt restarts it in place: same domain id, same qemu pid) and
           specializes; `sprout wait NAME` exits 0; every event of both boots is
           recorded (the events written before watch connected were queued by the
           agent, not lost; one connection carries both boots); `sprout status`
           agrees; `sprout undefine` stops the guest (ACPI) and removes the domain,
           the overlay and the exported disks stay; the watcher notices the end of the
           channel (its qemu exited) and records the run as ended before it is stopped.
  failing  the self config says `# sprout-test: fail`: `sprout wait` exits 1 with
           the reason and the rebuild's last lines (as with the QEMU backend,
           tests/runtime case `failing`); the domain keeps running, no reboot loop.
           libvirtd is restarted under the watcher once it has the channel (the
           domain keeps running): the watcher notices the loss within seconds,
           records "reconnecting" (a `sprout wait` begun before stays with the run),
           reconnects when libvirtd is back and continues the same run's record, to
           which the guest's later events are added. Once the guest has failed,
           libvirtd is paused (SIGSTOP: connected, silent, as a host gone from the
           network): keepalive notices within 30 s (the record: reconnecting, still
           failed), and once it is resumed the watcher has the same run again.
The guest is built exactly as tests/runtime builds it (runtime_lib.GuestWorld: the
agent's default config; the VM's overlay is the guest's persistent state disk by the
serial `sprout-test-state`, set with a qemu `-global`). Exit 77 when libvirtd cannot
run here. The daemon fixture stops exactly what it started, also after a failure.
"""
import os
import shutil
import signal
import stat
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "runtime"))
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))
import lvenv  # noqa: E402
import runtime_lib as rl  # noqa: E402
from runtime_lib import GuestWorld, Proc, check  # noqa: E402

SKIP = 77
BOOT_BUDGET = 300  # seconds to specialize under TCG (two boots and a rebuild)
WATCH_DELAY = 6    # flow: seconds between the guest's boot marker and starting `sprout watch`


def non_log(events):
    return [e["phase"] for e in events if e.get("phase") != "log"]


class LvWorld:
    """A GuestWorld whose VMs are libvirt domains of a private daemon."""

    def __init__(self, root, agent, lv):
        self.w = GuestWorld(root, agent)
        self.lv = lv

    def spec(self, name, **kw):
        return self.w.spec(name, after="stay", backend="libvirt", libvirt={"uri": self.lv.uri}, **kw)

    def dom_id(self, name):
        return self.lv.virsh("domid", name, check=False).stdout.strip()

    def domains(self):
        return self.lv.virsh("list", "--all", "--name").stdout.split()

    def wait_console(self, name, text, timeout):
        """Until the console shows `text`; at once a failure when the domain is not running."""
        deadline = time.monotonic() + timeout
        polls = 0
        while text not in self.w.console(name):
            check(time.monotonic() < deadline, f"console never showed {text!r} within {timeout} s")
            if polls % 10 == 0:
                state = self.lv.virsh("domstate", name, check=False).stdout.strip()
                check(state in ("running", "paused", "in shutdown") or text in self.w.console(name),
                      f"console never showed {text!r}: the domain is {state!r}")
            polls += 1
            time.sleep(0.2)

    def watch(self, name):
        logs = os.path.join(self.w.root, "logs-" + name)
        os.makedirs(logs, exist_ok=True)
        return Proc(["watch", "--spec", os.path.join(self.w.spec_dir, name + ".json")],
                    os.path.join(logs, "watch.log"))

    def wait(self, name, timeout=BOOT_BUDGET):
        return rl.sprout(["wait", name, "--spec-dir", self.w.spec_dir, "--timeout", str(timeout)],
                         timeout=timeout + 30)

    def define_start(self, name):
        r = rl.sprout(["define", "--spec", os.path.join(self.w.spec_dir, name + ".json"), "--start"], timeout=180)
        check(r.returncode == 0 and "started" in r.stdout, f"define --start: {r.returncode} {r.stdout}{r.stderr}")

    def undefine(self, name):
        t0 = time.monotonic()
        r = rl.sprout(["undefine", name, "--spec", os.path.join(self.w.spec_dir, name + ".json")], timeout=120)
        check(r.returncode == 0 and "undefined" in r.stdout, f"undefine: {r.returncode} {r.stdout}{r.stderr}")
        check(name not in self.domains(), "domain still defined after undefine")
        check(self.lv.qemu_pids(name) == [], "qemu still running after undefine")
        for f in ["root.qcow2", "config.img", "self.img"]:
            check(os.path.exists(os.path.join(self.w.state(name), f)), f"undefine removed {f}")
        return time.monotonic() - t0

    def host_events(self, name):
        return [e for e in rl.read_events(self.w.state(name), host=True) if e.get("source") == "host"]

    def wait_for(self, what, cond, timeout):
        deadline = time.monotonic() + timeout
        while not cond():
            check(time.monotonic() < deadline, f"{what}: not within {timeout} s")
            time.sleep(0.1)

    def stop_watch(self, watch):
        watch.signal(signal.SIGTERM)
        check(watch.wait(15) == 0, f"watch exit status\n{watch.output()}")
        return watch.output()


def case_flow(lw):
    name = "web"
    lw.spec(name)
    state = lw.w.state(name)
    t0 = time.monotonic()
    lw.define_start(name)
    id1, pids1 = lw.dom_id(name), lw.lv.qemu_pids(name)
    check(id1 not in ("", "-") and len(pids1) == 1, f"domain id {id1!r}, qemu pids {pids1}")
    # qemu runs as the uid sprout gave this VM (its domain's static DAC label), not
    # libvirt's qemu user.
    account = lw.lv.domain_qemu_account(name)
    check(account is not None and account[0] != lw.lv.qemu_account()[0], f"the domain's DAC label: {account}")
    problem = lw.lv.privilege_problem(pids1[0], account)
    check(problem is None, problem)
    # The status socket is libvirt's, in its channel directory of the daemon's private
    # mount namespace: it does not exist where sprout runs, so `sprout watch` can only
    # read it through libvirt's API (virDomainOpenChannel).
    sock = lw.lv.channel_socket(name)
    check(sock is not None and not sock.startswith(state), f"the status socket: {sock!r}")
    check(not os.path.lexists(sock), f"the status socket {sock} is reachable where sprout runs")
    check(stat.S_ISSOCK(os.stat(lw.lv.daemon_path(sock)).st_mode), f"libvirtd has no socket at {sock}")
    check(not os.path.lexists(os.path.join(state, "status.sock")), "a status socket in the state directory")
    # Start the recorder late, when the agent has already written its first events:
    # the guest's virtio port then has no host side, the agent's non-blocking writes
    # get EAGAIN and it keeps the events queued until someone connects.
    lw.wait_console(name, "sprout-test: boot 1 ", 120)
    time.sleep(WATCH_DELAY)
    watch_ms = int(time.time() * 1000)
    with lw.watch(name) as watch:
        r = lw.wait(name)
        took = time.monotonic() - t0
        check(r.returncode == 0 and "reached specialized" in r.stdout,
              f"wait: {r.returncode} {r.stdout} {r.stderr}\n{watch.output()}")
        print(f"flow: specialized {took:.1f} s after define --start")
        # libvirt restarted the guest in place (on_reboot=restart): same domain, same qemu.
        check(lw.w.boots(name) == [1, 2], f"boots {lw.w.boots(name)}")
        check(lw.dom_id(name) == id1 and lw.lv.qemu_pids(name) == pids1,
              f"the reboot was not in place: id {lw.dom_id(name)} (was {id1}), pids {lw.lv.qemu_pids(name)} (was {pids1})")
        events = rl.read_events(state)
        boots = []
        for e in events:
            if e.get("bootId") and (not boots or boots[-1] != e["bootId"]):
                boots.append(e["bootId"])
        check(len(boots) == 2, f"events from {len(boots)} boots: {non_log(events)}")
        b1 = non_log([e for e in events if e.get("bootId") == boots[0]])
        b2 = non_log([e for e in events if e.get("bootId") == boots[1]])
        # Nothing lost before watch connected, nothing lost across the reboot.
        check(b1 == ["starting", "mounting", "rebuilding", "rebuilt", "rebooting"], f"boot 1 events: {b1}")
        check(b2 == ["starting", "mounting", "specialized"], f"boot 2 events: {b2}")
        check(any(e.get("phase") == "log" for e in events), "the rebuild's output was not recorded")
        # The guest clock comes from the RTC (whole seconds, so it may lag by up to 1 s):
        # a guest time 1 s before watch was started means the guest wrote it earlier.
        first = events[0]
        print(f"flow: watch started {WATCH_DELAY} s after the boot marker; the first event "
              f"({first['phase']}) was written {(watch_ms - first['timeMs']) / 1000:.1f} s before that "
              f"and recorded {(first['hostTimeMs'] - first['timeMs']) / 1000:.1f} s after it was written")
        check(first["timeMs"] <= watch_ms - 1000,
              f"the first event was not written before watch started ({first['timeMs']} vs {watch_ms}): "
              "the test does not show that queued events survive")
        st = rl.read_status(state)
        check(st["phase"] == "specialized" and st["detail"].get("action") == "record-applied", f"status.json: {st}")
        s = rl.sprout(["status", name, "--spec-dir", lw.w.spec_dir, "--json"])
        check(s.returncode == 0 and "specialized" in s.stdout, f"status: {s.returncode} {s.stdout}{s.stderr}")
        # The guest stays up (sprout_test.after=stay): undefine stops it gracefully.
        time.sleep(3)
        check(lw.w.boots(name) == [1, 2], f"boots after specializing: {lw.w.boots(name)}")
        dt = lw.undefine(name)
        print(f"flow: undefine (ACPI shutdown + undefine) took {dt:.1f} s; overlay and disks kept")
        # The watcher noticed the channel's end (its qemu exited): the run ended.
        lw.wait_for("the watcher recording the run's end",
                    lambda: any(e.get("event") == "run-ended" for e in lw.host_events(name)), 15)
        check((rl.read_status(state) or {}).get("host", {}).get("state") == "waiting",
              f"record after the domain stopped: {(rl.read_status(state) or {}).get('host')}")
        check("sprout-test: poweroff" in lw.w.console(name) or "power button" in lw.w.console(name),
              "the guest did not power off on undefine")
        out = lw.stop_watch(watch)
        connects = (rl.read_status(state) or {}).get("counters", {}).get("connections")
        print(f"flow: watch connected {connects} time(s)")
        check("status channel connected (channel sprout.status.0 of domain web at qemu:///" in out,
              f"watch never connected through libvirt's API:\n{out}")
        # watch was the record's supervisor: once it ended, the record says so (not live).
        host = (rl.read_status(state) or {}).get("host", {})
        check(host.get("state") == "stopped" and "SIGTERM" in host.get("how", ""), f"record after watch: {host}")
        row = rl.sprout(["status", name, "--spec-dir", lw.w.spec_dir]).stdout
        check("stopped" in row, f"status after watch ended: {row}")


def case_failing(lw):
    name = "bad"
    lw.spec(name, self_extra="# sprout-test: fail\n")
    state = lw.w.state(name)
    t0 = time.monotonic()
    lw.define_start(name)
    id1, pids1 = lw.dom_id(name), lw.lv.qemu_pids(name)
    with lw.watch(name) as watch:
        waiter = Proc(["wait", name, "--spec-dir", lw.w.spec_dir, "--timeout", str(BOOT_BUDGET)],
                      os.path.join(lw.w.root, "logs-" + name, "wait.log"))
        # Once the watcher has the channel, restart libvirtd under it (the domain runs on).
        lw.wait_for("watch connecting", lambda: "status channel connected" in watch.output(), 60)
        before_ms = time.time() * 1000
        gone, back = lw.lv.restart_libvirtd()
        back_ms = time.time() * 1000
        print(f"failing: libvirtd restarted ({back - gone:.1f} s down)")

        with waiter:
            rc = waiter.wait(BOOT_BUDGET + 30)
            out = waiter.output()
        print(f"failing: wait exited {rc} after {time.monotonic() - t0:.1f} s")
        check(rc == 1, f"wait on a failing rebuild: {rc} {out}\n{watch.output()}")
        check("bad failed:" in out and "exited with status 1" in out, f"no reason printed: {out}")
        check("rebuild told to fail" in out, f"no rebuild output printed: {out}")
        # The loss was noticed and recovered, bounded, and the record is the same run's.
        hev = lw.host_events(name)
        names = [e["event"] for e in hev]
        check(names == ["run-started", "channel-lost", "channel-back"], f"host events: {names}\n{watch.output()}")
        lost_ms = next(e["hostTimeMs"] for e in hev if e["event"] == "channel-lost")
        back_at = next(e["hostTimeMs"] for e in hev if e["event"] == "channel-back")
        print(f"failing: the watcher noticed the loss {(lost_ms - before_ms) / 1000:.1f} s after the restart began "
              f"and had the channel again {(back_at - back_ms) / 1000:.1f} s after libvirtd answered")
        check(lost_ms - before_ms < 15000 and back_at - back_ms < 6000,
              f"loss noticed at +{lost_ms - before_ms:.0f} ms, back at +{back_at - back_ms:.0f} ms")
        guest_after = [e for e in rl.read_events(state) if e.get("source") != "host" and e.get("hostTimeMs", 0) >= back_at]
        check(guest_after, "no guest event was recorded through the new stream")
        check((rl.read_status(state) or {}).get("counters", {}).get("connections", 0) >= 2,
              f"counters: {(rl.read_status(state) or {}).get('counters')}")
        # Then libvirtd goes silent (SIGSTOP: its sockets open, no answer, as a host
        # gone from the network): only keepalive can tell. Resumed once the watcher
        # has noticed, it has the channel again, and the record is still this run's.
        paused_ms = time.time() * 1000
        lw.lv.pause_libvirtd()
        try:
            lw.wait_for("the watcher noticing a silent libvirtd (keepalive)",
                        lambda: [e["event"] for e in lw.host_events(name)].count("channel-lost") >= 2, 45)
            st = rl.read_status(state) or {}
            check(st.get("host", {}).get("state") == "reconnecting" and st.get("phase") == "failed",
                  f"record while libvirtd is silent: {st.get('host')} {st.get('phase')}")
        finally:
            lw.lv.resume_libvirtd()
        silent_ms = [e["hostTimeMs"] for e in lw.host_events(name) if e["event"] == "channel-lost"][1]
        print(f"failing: a silent libvirtd noticed after {(silent_ms - paused_ms) / 1000:.1f} s (keepalive)")
        check(silent_ms - paused_ms < 30000, f"keepalive took {silent_ms - paused_ms:.0f} ms")
        lw.wait_for("the watcher back after libvirtd resumed",
                    lambda: [e["event"] for e in lw.host_events(name)].count("channel-back") >= 2, 30)
        st = rl.read_status(state) or {}
        names = [e["event"] for e in lw.host_events(name)]
        check(names == ["run-started", "channel-lost", "channel-back", "channel-lost", "channel-back"] and
              st.get("phase") == "failed" and st.get("host", {}).get("state") == "running",
              f"after libvirtd resumed: {names} {st.get('host')} {st.get('phase')}")
        # No reboot loop: the domain keeps running, one boot only.
        time.sleep(8)
        check(lw.w.boots(name) == [1], f"reboot loop: boots {lw.w.boots(name)}")
        check(lw.dom_id(name) == id1 and lw.lv.qemu_pids(name) == pids1, "the domain was restarted")
        check(lw.lv.virsh("domstate", name).stdout.strip() == "running", "the domain is not running")
        st = rl.read_status(state)
        check(st["phase"] == "failed", f"status.json is not failed: {st}")
        ph = non_log(rl.read_events(state))
        check(ph[:3] == ["starting", "mounting", "rebuilding"] and ph[-1] == "failed" and "rebooting" not in ph,
              f"events: {ph}")
        lw.undefine(name)
        lw.stop_watch(watch)


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    rl.SPROUT = os.path.abspath(sys.argv[1])
    agent = os.path.abspath(sys.argv[2])
    cases = {"flow": case_flow, "failing": case_failing}
    name = sys.argv[3]
    if name not in cases:
        print(f"unknown case {name}; known: {sorted(cases)}", file=sys.stderr)
        return 2
    keep = "--keep" in sys.argv[4:]
    root = lvenv.host_directory(rl.workdir("sprt-lv-"))
    t0 = time.monotonic()
    lv = lvenv.LibvirtDaemon(workdir=os.path.join(root, "lvd"), keep=True)
    ok = skipped = False
    try:
        try:
            lv.start()
        except lvenv.LibvirtUnavailable as e:
            print(f"SKIP: {e}")
            skipped = True
            return SKIP
        cases[name](LvWorld(root, agent, lv))
        ok = True
    except (rl.TestFailure, RuntimeError) as e:
        print(f"FAIL {name}: {e}", file=sys.stderr)
        rl._dump(root)
        print(lv.log_tail(), file=sys.stderr)
    finally:
        lv.stop()
        try:
            rl.assert_no_qemu(root)
        except rl.TestFailure as e:
            print(f"FAIL {name}: {e}", file=sys.stderr)
            ok = False
        if (ok or skipped) and not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    if ok:
        print(f"ok {name} ({time.monotonic() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The real sprout-agent in the real test guest (tests/vm), under qemu TCG.

usage: test_agent_vm.py SPROUT_AGENT SPROUT [--keep] [--workdir DIR] [--cache DIR]

Disks come from the real `sprout export`; the guest's stand-in nixos-rebuild makes
system profile generations on the persistent state disk. Scenarios:
  A  boot 1: starting, mounting, rebuilding, log..., rebuilt, rebooting (in order), reboots;
     boot 2: specialized (record-applied); boot 3: specialized (already), no rebuild;
     disks ro in /sys/block, mounts ro,nosuid,nodev (ssh noexec);
     changed self config: boot 4 re-specializes, boot 5 specialized, no third rebuild.
  B  a failing rebuild reports failed with its output and does not reboot.
  C  nobody listening on the status socket: the agent still ends within its flush timeout.
  D  a missing self disk is reported by name.
Prints the agent's own timings of the already-specialized boots (docs/performance.md).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "vm"))
import guestlib  # noqa: E402
from guestlib import Guest  # noqa: E402

FLUSH_TIMEOUT = 3
DISK_WAIT = 4
failures = []


def check(cond, msg, guest=None):
    if cond:
        print(f"ok    {msg}")
    else:
        print(f"FAIL  {msg}")
        if guest is not None:
            print(guest.console_tail(60))
        failures.append(msg)
    return cond


class NoListenerGuest(Guest):
    """The status port exists in the guest but nobody on the host connects."""

    def command_line(self):
        saved, self.use_status = self.use_status, True
        try:
            return super().command_line()
        finally:
            self.use_status = saved


DECOY_FLAKE = ('# A classic VM must never build this (nixos-rebuild prefers /etc/nixos/flake.nix\n'
               '# unless told --no-flake).\n{ outputs = { self }: { }; }\n')


def export(sprout, work, tag, self_extra="", ssh=True, flake=None, rebuild=None):
    """config/self/ssh trees -> images with the real `sprout export`; returns disks.
    `flake`: text of config/flake.nix (none by default); `rebuild`: the spec's rebuild
    settings (export then goes through a spec file)."""
    base = os.path.join(work, f"trees-{tag}")
    shutil.rmtree(base, ignore_errors=True)
    cfg, slf, sshd = (os.path.join(base, d) for d in ("config", "self", "ssh"))
    os.makedirs(os.path.join(cfg, "hosts", "self"))
    os.makedirs(slf)
    with open(os.path.join(cfg, "configuration.nix"), "w") as f:
        f.write("{ ... }: { imports = [ ./hosts/self/configuration.nix ]; }\n")
    with open(os.path.join(slf, "configuration.nix"), "w") as f:
        f.write(self_extra + '{ ... }: { networking.hostName = "web"; }\n')
    if flake is not None:
        with open(os.path.join(cfg, "flake.nix"), "w") as f:
            f.write(flake)
    cmd = [sprout, "export", "--name", "web", "--config", cfg, "--self", slf,
           "--out", os.path.join(work, f"out-{tag}"), "--json"]
    if rebuild is not None:
        spec = os.path.join(base, "web.json")
        with open(spec, "w") as f:
            json.dump({"version": 1, "name": "web", "base": {"image": "/nonexistent/base.qcow2"},
                       "stateDir": os.path.join(work, f"out-{tag}"), "cacheDir": os.path.join(work, "cache"),
                       "sources": {"config": cfg, "self": slf, **({"ssh": sshd} if ssh else {})},
                       "rebuild": rebuild}, f)
        cmd = [sprout, "export", "--spec", spec, "--json"]
    if ssh:
        os.makedirs(sshd)
        with open(os.path.join(sshd, "authorized_keys"), "w") as f:
            f.write("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0000000000000000000 test\n")
        if rebuild is None:
            cmd[cmd.index("--out"):cmd.index("--out")] = ["--ssh", sshd]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"sprout export failed: {r.stderr}")
    out = json.loads(r.stdout)
    paths = {i["role"]: i["path"] for i in out["images"]}
    disks = [(paths["config"], "sprout-config", True), (paths["self"], "sprout-self", True)]
    if "ssh" in paths:
        disks.append((paths["ssh"], "sprout-ssh", True))
    return disks, out["generation"]


def phases(lines):
    return [l.get("phase") for l in lines]


def boot(kernel, initrd, state, disks, work, name, cls=Guest, **kw):
    """One boot until qemu exits; returns (guest, status lines, qemu rc)."""
    g = cls(kernel, initrd, state_disk=state, disks=disks, timeout=150, workdir=work, name=name, **kw)
    with g:
        rc = g.wait(140)
        if g.status is not None:
            time.sleep(0.2)  # let the reader take the last bytes
            lines = list(g.status.lines)
        else:
            lines = []
    return g, lines, rc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("agent")
    ap.add_argument("sprout")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--workdir")
    ap.add_argument("--cache")
    ap.add_argument("--only", default="ABCDE")
    args = ap.parse_args()
    for tool in ("qemu-system-x86_64", "mkfs.ext4", "busybox", "cpio"):
        if not shutil.which(tool):
            print(f"skipping: {tool} is not installed")
            return 77
    work = args.workdir or tempfile.mkdtemp(prefix="sprout-agent-vm-")
    os.makedirs(work, exist_ok=True)
    t_all = time.monotonic()
    try:
        conf = os.path.join(work, "agent.json")
        with open(conf, "w") as f:
            json.dump({"version": 1,
                       "mountPoints": {"config": "/etc/nixos", "self": "/etc/nixos/hosts/self",
                                       "ssh": "/root/.ssh"},
                       "rebuild": {"command": ["nixos-rebuild", "boot"], "timeoutSeconds": 600,
                                   "maxAttempts": 3, "respecializeOnChange": True},
                       "rebootCommand": ["systemctl", "reboot"],
                       "stateDir": "/var/lib/sprout",
                       "diskWaitSeconds": DISK_WAIT, "flushTimeoutSeconds": FLUSH_TIMEOUT}, f)
        kernel, initrd = guestlib.build_guest(args.agent, conf, os.path.join(work, "guest"),
                                              cache_dir=args.cache)
        fast = []

        if "A" in args.only:
            state = guestlib.make_state_disk(os.path.join(work, "state-a.img"))
            # The config tree holds a flake.nix: classic mode must still build the
            # classic configuration (--no-flake), not /etc/nixos#<hostname>.
            disks, gen1 = export(args.sprout, work, "a1", flake=DECOY_FLAKE)
            g, lines, rc = boot(kernel, initrd, state, disks, work, "a1")
            p = [x for x in phases(lines) if x != "log"]
            check(p == ["starting", "mounting", "rebuilding", "rebuilt", "rebooting"],
                  f"A boot 1: starting, mounting, rebuilding, rebuilt, rebooting in order (got {p})", g)
            logs = [l for l in lines if l.get("phase") == "log"]
            check(len(logs) >= 3 and any("building the system configuration" in l["message"] for l in logs),
                  f"A boot 1: rebuild output streamed as log events ({len(logs)})", g)
            if p[:3] == ["starting", "mounting", "rebuilding"]:
                i_rb = phases(lines).index("rebuilding")
                i_rt = phases(lines).index("rebuilt") if "rebuilt" in phases(lines) else len(lines)
                check(all(i_rb < lines.index(l) < i_rt for l in logs), "A boot 1: log lines between rebuilding and rebuilt")
            check(all(l.get("vm") == "web" and l.get("generation") == gen1 for l in lines),
                  "A boot 1: every event names vm web and the exported generation", g)
            check(rc == 0 and "sprout-test: reboot" in g.console(), "A boot 1: the guest rebooted (systemctl reboot)", g)
            mnt = next((l for l in lines if l.get("phase") == "mounting"), {})
            ro = {k: v.get("readOnly") for k, v in mnt.get("detail", {}).get("disks", {}).items()}
            check(ro == {"config": True, "self": True, "ssh": True},
                  f"A boot 1: /sys/block/*/ro is 1 for config, self and ssh ({ro})", g)
            rebuilding = next((l for l in lines if l.get("phase") == "rebuilding"), {})
            mounts = rebuilding.get("detail", {}).get("mounts", {})
            opts = {k: set(v.split(",")) for k, v in mounts.items()}
            check(set(opts) == {"/etc/nixos", "/etc/nixos/hosts/self", "/root/.ssh"}
                  and all({"ro", "nosuid", "nodev"} <= o for o in opts.values())
                  and "noexec" in opts.get("/root/.ssh", set()),
                  f"A boot 1: mounts ro,nosuid,nodev (ssh noexec): {mounts}", g)
            cmd = rebuilding.get("detail", {}).get("command")
            check(cmd == ["nixos-rebuild", "boot", "-I", "nixos-config=/etc/nixos/hosts/self/configuration.nix", "--no-flake"],
                  f"A boot 1: rebuild command {cmd}", g)
            built = next((l for l in lines if l.get("phase") == "rebuilt"), {}).get("detail", {}).get("system", "")
            check("-nixos-system-web-" in built and "flake" not in json.dumps(logs),
                  f"A boot 1: classic mode built the classic configuration beside a flake.nix ({built})", g)

            g, lines, rc = boot(kernel, initrd, state, disks, work, "a2")
            p = [x for x in phases(lines) if x != "log"]
            check(p == ["starting", "mounting", "specialized"], f"A boot 2: specialized (got {p})", g)
            check(g.boot_markers() and g.boot_markers()[0][1] == built,
                  f"A boot 2: running the rebuilt system {built}", g)
            sp = lines[-1] if lines else {}
            check(sp.get("detail", {}).get("action") == "record-applied", "A boot 2: recorded as applied", g)
            check("sprout-test: poweroff" in g.console() and "agent exited 0" in g.console(),
                  "A boot 2: agent exited 0, no reboot", g)

            # The agent twice in one boot, as a restarted service would run it: the second
            # run finds the disks already mounted (real mounts, real mount table).
            # And the config disk is already mounted before the first run, read-only but
            # without nosuid,nodev: the agent must not take it as it is.
            g, lines, rc = boot(kernel, initrd, state, disks, work, "a3",
                                append="sprout_test.agent_runs=2 sprout_test.premount_config=1")
            p = [x for x in phases(lines) if x != "log"]
            check(p == ["starting", "mounting", "specialized"] * 2,
                  f"A boot 3: two runs, each specialized (got {p})", g)
            sps = [l for l in lines if l.get("phase") == "specialized"]
            check(len(sps) == 2 and all(s["detail"].get("action") == "already-specialized" for s in sps)
                  and sps[0].get("bootId") == sps[1].get("bootId"),
                  "A boot 3: already specialized in both runs of one boot", g)
            check(g.console().count("agent exited 0") == 2, "A boot 3: both runs exited 0", g)
            # Mounting again would stack a second mount and still succeed: the agent's own
            # line is what tells that it saw the first one.
            check(all(f"is already mounted at {mp}" in g.console() for mp in ("/etc/nixos", "/etc/nixos/hosts/self")),
                  "A boot 3: the second run found config and self already mounted, mounted nothing again", g)
            if len(sps) == 2:
                again = {k: set(v.split(",")) for k, v in sps[1]["detail"].get("mounts", {}).items()}
                check(set(again) == {"/etc/nixos", "/etc/nixos/hosts/self", "/root/.ssh"}
                      and all({"ro", "nosuid", "nodev"} <= o for o in again.values()),
                      f"A boot 3: the second run keeps the mounts it found: {sps[1]['detail'].get('mounts')}", g)
                first = {k: set(v.split(",")) for k, v in sps[0]["detail"].get("mounts", {}).items()}
                check("premounted" in g.console() and {"ro", "nosuid", "nodev"} <= first.get("/etc/nixos", set()),
                      f"A boot 3: a premounted config disk without nosuid,nodev was remounted with them: {first}", g)
                fast.append(("A boot 3", sps[0]["detail"]))

            disks2, gen2 = export(args.sprout, work, "a2", self_extra="# changed\n")
            check(gen2 != gen1, "A: a changed self config is a new generation")
            g, lines, rc = boot(kernel, initrd, state, disks2, work, "a4")
            p = [x for x in phases(lines) if x != "log"]
            check(p == ["starting", "mounting", "rebuilding", "rebuilt", "rebooting"] and rc == 0,
                  f"A boot 4: the changed config re-specializes (got {p})", g)
            g, lines, rc = boot(kernel, initrd, state, disks2, work, "a5")
            p = [x for x in phases(lines) if x != "log"]
            check(p == ["starting", "mounting", "specialized"], f"A boot 5: specialized, no second rebuild (got {p})", g)
            st = json.loads(guestlib.read_file_from_ext4(state, "/var-lib-sprout/state.json"))
            check(st["generation"] == gen2 and st["applied"] and st["attempts"] == 1,
                  f"A: state file on the state disk: {st}")
            log = guestlib.read_file_from_ext4(state, "/var-lib-sprout/agent.log").decode()
            check(log.count('"phase":"rebuilding"') == 2 and log.count('"phase":"specialized"') == 4,
                  "A: agent.log on the state disk has every run's events (2 rebuilds, 4 specialized)")

        if "B" in args.only:
            state = guestlib.make_state_disk(os.path.join(work, "state-b.img"))
            disks, _ = export(args.sprout, work, "b", self_extra="# sprout-test: fail\n", ssh=False)
            g, lines, rc = boot(kernel, initrd, state, disks, work, "b1")
            last = lines[-1] if lines else {}
            check(last.get("phase") == "failed" and "exited with status 1" in last.get("message", ""),
                  f"B: failing rebuild reports failed ({last.get('message')})", g)
            check("rebuild told to fail" in json.dumps(last.get("detail", {}).get("lastLines", [])),
                  "B: the failure carries the rebuild's last lines", g)
            check("rebooting" not in phases(lines) and "sprout-test: poweroff" in g.console()
                  and "sprout-test: reboot" not in g.console() and "agent exited 1" in g.console(),
                  "B: no reboot; agent exited 1", g)

        if "C" in args.only:
            # Reuse scenario A's specialized state disk if there is one (the fast path).
            state = os.path.join(work, "state-a.img")
            disks_c = disks2 if "A" in args.only else export(args.sprout, work, "c")[0]
            if "A" not in args.only:
                state = guestlib.make_state_disk(os.path.join(work, "state-c.img"))
            g = NoListenerGuest(kernel, initrd, state_disk=state, disks=disks_c, timeout=150, workdir=work,
                                name="c1", status_port=False)
            with g:
                g.wait_console(r"^sprout-test: boot \d+", 120)
                t0 = time.monotonic()
                g.wait_console(r"^sprout-test: agent exited", 120)
                took = time.monotonic() - t0
                rc = g.wait(60)
            # Reaching "agent exited" at all (within the generous wait above) is the proof
            # that nothing hung; the time is printed, not asserted.
            print(f"C: nobody listening: the agent ended {took:.1f} s after boot (flush timeout {FLUSH_TIMEOUT} s)")
            log = guestlib.read_file_from_ext4(state, "/var-lib-sprout/agent.log").decode().splitlines()
            lastlog = json.loads(log[-1]) if log else {}
            check(lastlog.get("phase") in ("specialized", "rebooting"),
                  f"C: the local log has the boot's last event ({lastlog.get('phase')})")
            if lastlog.get("phase") == "specialized":
                fast.append(("C (no listener)", lastlog["detail"]))

        if "E" in args.only:
            # Flake mode on the read-only config disk, with no flake.lock: Nix would
            # write one next to flake.nix; --no-write-lock-file keeps it from trying.
            state = guestlib.make_state_disk(os.path.join(work, "state-e.img"))
            disks, _ = export(args.sprout, work, "e", ssh=False, flake='{ outputs = { self }: { }; }\n',
                              rebuild={"mode": "flake", "target": "/etc/nixos#web"})
            g, lines, rc = boot(kernel, initrd, state, disks, work, "e1")
            p = [x for x in phases(lines) if x != "log"]
            rebuilding = next((l for l in lines if l.get("phase") == "rebuilding"), {})
            cmd = rebuilding.get("detail", {}).get("command")
            check(cmd == ["nixos-rebuild", "boot", "--flake", "/etc/nixos#web", "--no-write-lock-file"],
                  f"E: flake rebuild command {cmd}", g)
            built = next((l for l in lines if l.get("phase") == "rebuilt"), {}).get("detail", {}).get("system", "")
            check(p == ["starting", "mounting", "rebuilding", "rebuilt", "rebooting"] and "-nixos-system-web-" in built,
                  f"E: flake mode on a read-only tree without flake.lock specializes (got {p}, {built})", g)

        if "D" in args.only:
            state = guestlib.make_state_disk(os.path.join(work, "state-d.img"))
            disks, _ = export(args.sprout, work, "d", ssh=False)
            g, lines, rc = boot(kernel, initrd, state, [disks[0]], work, "d1")
            last = lines[-1] if lines else {}
            check(last.get("phase") == "failed" and "required disk 'self'" in last.get("message", "")
                  and last.get("vm") == "unknown",
                  f"D: a missing self disk is reported by name ({last.get('message')})", g)
            check("agent exited 1" in g.console(), "D: the boot goes on (agent exited 1)", g)

        for label, d in fast:
            print(f"timing {label}: timingsMs={json.dumps(d.get('timingsMs'))} cpuMs={json.dumps(d.get('cpuMs'))}")
        print(f"total {time.monotonic() - t_all:.1f} s")
    finally:
        if not args.keep and not failures:
            shutil.rmtree(work, ignore_errors=True)
        elif failures:
            print(f"work directory kept: {work}")
    print(f"\n{len(failures)} failed" if failures else "\nall passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The real sprout-agent under a real systemd (the guest build-systemd-guest.sh makes:
Debian's systemd from debootstrap, the agent as the unit the NixOS guest module
generates), booted by the real `sprout run` with the disks of the real export.

usage: test_systemd_guest.py SPROUT CASE     (SPROUT_AGENT=path/to/sprout-agent)
CASE:
  root       (suite vm, CI, early and in parallel) only the cached debootstrap root
  lifecycle  (suite vm, CI) one `sprout run`, two boots:
     both boots: Debian's real sshd serves the host-minted ed25519 key (ssh-keyscan
       through the forwarded port), which the early unit installed before it; `sprout
       ssh` gets in with StrictHostKeyChecking=yes; /run/sprout/secrets/db-password is
       the secret, 0400 root in a 0700 directory, unreadable to nobody; SMBIOS type 11
       carries the machine-id; the secrets disk is unmounted again. After boot 2,
       `sprout identity --rotate`: sprout ssh refuses the guest (still on the old key)
       and names the key it expected.
     boot 1: while the stand-in rebuild waits (for the host's probe), the guest
       answers on a forwarded port with multi-user.target active and the agent's unit
       still active (the agent holds nothing up); systemd loaded the agent's unit from
       the golden file, unchanged; the agent started after network-online.target was
       reached; then the agent reboots with `systemctl reboot` from inside its unit,
       and systemd's reboot.target is reached.
     boot 2: the generation the stand-in switched is booted (hostname, current-system)
       and the agent reports `specialized`; `sprout wait` exits 0.
     both boots: the host module's units for three VMs (tests/nix/golden/
       systemd-guest-units, loaded unchanged) run a stand-in sprout (systemd/sprout).
       In boot 2, once sprout-vm@bad's restarts ended: multi-user.target is active
       while sprout-vm@slow (status sent, READY=1 never) is still activating; bad
       (exit 1) ended failed after StartLimitBurst starts, the next refused for the
       start limit; badspec (exit 2) failed and was never restarted, though bad,
       with the same RestartSec, was restarted after it ended. The units carry
       their hardening as rendered: under it the stand-in for slow writes its state
       directory, the cache, a GC root and /run/sprout, kills a child that switched
       uid (setpriv), and cannot write /etc or bad's state directory; bad's start
       count survives its restarts in /run/sprout (RuntimeDirectoryPreserve);
       `systemd-analyze security` scores the loaded unit, and its file offline (in the
       guest and here), at most 4.0.
     `sprout run`'s SIGTERM: the guest powers off through systemd (power button,
       logind, poweroff.target), run exits 0 within the shutdown timeout.
  identity   (bench/systemd_guest_bench.sh) the identity across what changes a VM:
       specialized with key K1; `sprout identity --rotate` while stopped, and the next
       start serves K2 (sprout ssh gets in); `baseChange: recreate` onto another base:
       K2 and the same machine-id on the new overlay's first boot and after it
       specialized again.
  failing    (bench/systemd_guest_bench.sh) a failing rebuild: `sprout wait` exits 1 with
       the reason, systemctl reports the agent's unit `failed`, no reboot, SIGTERM
       still shuts down through systemd.
Times are printed, never asserted. Exit 77 (skip) when the guest cannot be built here
(debootstrap needs root).
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "runtime"))
import runtime_lib as rl  # noqa: E402
from runtime_lib import GuestWorld, Proc, check  # noqa: E402
import guestlib  # noqa: E402

GOLDEN_UNIT = os.path.join(HERE, "..", "nix", "golden", "sprout-agent.service")
# The host module's units for three VMs (build-systemd-guest.sh installs the directory
# as it is; systemd/sprout is the stand-in their ExecStart runs).
HOST_UNITS = os.path.join(HERE, "..", "nix", "golden", "systemd-guest-units")
VMS = {name: f"sprout-vm@{name}.service" for name in ("slow", "bad", "badspec")}
BASE_SYSTEM = "/nix/store/00000000000000000000000000000000-nixos-system-base"
CMDLINE = "console=ttyS0 quiet panic=-1 root=LABEL=nixos init=/lib/systemd/systemd systemd.show_status=1"
BOOT_BUDGET = 600      # seconds for one systemd boot + agent under TCG on a loaded machine
SHUTDOWN_TIMEOUT = 120  # the spec's shutdownTimeoutSeconds


class SystemdWorld(GuestWorld):
    """GuestWorld's config tree and helpers, with the systemd guest as the base image."""

    def __init__(self, root, agent=rl.AGENT):
        self.root = root
        self.spec_dir = os.path.join(root, "specs")
        os.makedirs(self.spec_dir, exist_ok=True)
        check(bool(agent) and os.path.exists(agent), f"sprout-agent not built ({agent!r})")
        t0 = time.monotonic()
        self.kernel, self.initrd, self.base = guestlib.build_systemd_guest(agent, os.path.join(root, "guest"))
        print(f"systemd guest built in {time.monotonic() - t0:.1f} s "
              f"(root image {os.path.getsize(self.base) >> 20} MiB)", flush=True)
        self.make_config_tree()

    def console(self, name):
        """The console log without systemd's colour and cursor escapes."""
        return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", super().console(name))

    def boots(self, name):
        # Not anchored at a line start: systemd's status line may precede it on a line.
        return [int(n) for n in re.findall(r"sprout-test: boot (\d+) ", self.console(name))]

    def spec(self, name, port, self_extra=""):
        """GuestWorld's spec with this guest's base, kernel and a forwarded port 8080."""
        return super().spec(
            name, self_extra=self_extra, base={"image": self.base, "format": "raw"}, memory=512,
            network={"mode": "user", "forwards": [
                {"hostAddress": "127.0.0.1", "hostPort": port, "guestPort": 8080}]},
            kernel={"path": self.kernel, "initrd": self.initrd, "cmdline": CMDLINE},
            qemuArgs=[], shutdownTimeoutSeconds=SHUTDOWN_TIMEOUT)


def run_vm(w, name):
    return Proc(["run", "--spec", os.path.join(w.spec_dir, name + ".json")],
                os.path.join(w.root, f"{name}-run.log"))


def wait_for(w, name, timeout=BOOT_BUDGET * 2):
    return rl.sprout(["wait", name, "--for", "specialized", "--spec-dir", w.spec_dir,
                      "--timeout", str(timeout)], timeout=timeout + 30)


def answer(port, timeout=BOOT_BUDGET):
    """The guest's answer line on port 8080, as a dict (see systemd/answer)."""
    # One connection waits long: the answer runs several systemctl calls under TCG.
    line = guestlib.tcp_read_line(port, timeout, read_timeout=180)
    check(line.startswith("sprout-test: answer "), f"not an answer: {line!r}")
    return dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_unit_is_golden(a):
    check(a["unit"] == "/etc/systemd/system/sprout-agent.service" and a["unit-needs-reload"] == "no",
          f"systemd loaded the agent's unit from {a['unit']} (needs reload: {a['unit-needs-reload']})")
    check(a["unit-sha256"] == sha256(GOLDEN_UNIT),
          "the agent's unit in the guest drifted from tests/nix/golden/sprout-agent.service "
          f"(guest sha256 {a['unit-sha256']}, golden {sha256(GOLDEN_UNIT)})")


def host_unit(a, unit):
    """One of the host module's units in an answer, as {property: value} (systemd/answer)."""
    check(unit in a, f"the answer says nothing about {unit}: {a}")
    return dict(kv.split("=", 1) for kv in a[unit].split(";") if "=" in kv)


def unit_setting(unit, key):
    """The one value of KEY= in the golden file of a host unit."""
    with open(os.path.join(HOST_UNITS, unit)) as f:
        values = re.findall(rf"^{key}=(.*)$", f.read(), re.M)
    check(len(values) == 1, f"{unit}: {key}= {values}")
    return values[0]


def check_host_units_are_golden(a):
    for unit in [*VMS.values(), "sprout-vms.target"]:
        p = host_unit(a, unit)
        golden = sha256(os.path.join(HOST_UNITS, unit))
        check(p["FragmentPath"] == f"/etc/systemd/system/{unit}" and p["NeedDaemonReload"] == "no"
              and p["sha256"] == golden,
              f"systemd loaded {unit} from {p['FragmentPath']} (sha256 {p['sha256']}, needs reload "
              f"{p['NeedDaemonReload']}), not tests/nix/golden/systemd-guest-units/{unit} (sha256 {golden})")


def wait_restarts_end(port, a, timeout=BOOT_BUDGET):
    """Answers until sprout-vm@bad, which fails at each start, is `failed` (no longer
    auto-restart): that answer. On the way, bad never started more often than
    StartLimitBurst allows. (Without a start limit that trips, it never ends.)"""
    burst = int(unit_setting(VMS["bad"], "StartLimitBurst"))
    t0 = time.monotonic()
    while True:
        bad = host_unit(a, VMS["bad"])
        check(int(bad["starts"]) <= burst, f"sprout-vm@bad started {bad['starts']} times (burst {burst}): {bad}")
        # (journald may take a moment to show the refusal that made it failed)
        if bad["ActiveState"] == "failed" and bad["limit"] != "0":
            return a
        check(time.monotonic() - t0 < timeout, f"sprout-vm@bad's restarts did not end: {bad}")
        time.sleep(3)
        a = answer(port)


# What the stand-in (systemd/sprout) could do under sprout-vm@slow's confinement, as
# the real `sprout run` must: write its state directory, the cache, a GC root and
# /run/sprout, signal a child that switched to another uid (qemu's -runas); and what it
# must not: write /etc or another VM's state directory.
CONFINED = ("state=ok;cache=ok;gcroot=ok;run=ok;etc=denied;other=denied;umask=0077;"
            "childuid=64000;signal=ok;killed=143")
SECURITY_MAX = 4.0  # issue 29's target for `systemd-analyze security`


def offline_security(unit):
    """This machine's `systemd-analyze security --offline=yes` on a golden unit file."""
    r = subprocess.run(["systemd-analyze", "security", "--no-pager", "--offline=yes", os.path.join(HOST_UNITS, unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    check(m is not None, f"systemd-analyze security --offline=yes {unit} here: {r.stdout}{r.stderr}")
    return float(m.group(1))


def check_confinement(a):
    """The hardening as rendered, under the guest's real systemd: what `sprout run`
    needs still works, the rest is refused; systemd-analyze security scores the loaded
    unit (and its file offline, in the guest and here) at most SECURITY_MAX."""
    check(a.get("slow-checks") == CONFINED,
          f"sprout-vm@slow's stand-in under its unit's confinement: {a.get('slow-checks')}, not {CONFINED}")
    here = offline_security(VMS["slow"])
    scores = {"loaded, in the guest": a.get("security"), "offline, in the guest": a.get("security-offline"),
              "offline, here": f"{here:.1f}"}
    print(f"systemd-analyze security sprout-vm@slow.service: {scores}", flush=True)
    check(all(re.fullmatch(r"\d+\.\d+", v or "") and float(v) <= SECURITY_MAX for v in scores.values()),
          f"systemd-analyze security rates sprout-vm@slow.service above {SECURITY_MAX}: {scores}")


def check_vm_ordering(a):
    """The answer given once sprout-vm@bad's restarts ended: the boot reached
    multi-user.target while a VM is still starting and another has failed; restarts
    ended after StartLimitBurst starts, and exit status 2 was not restarted at all."""
    slow, bad, badspec = (host_unit(a, VMS[n]) for n in ("slow", "bad", "badspec"))
    target = host_unit(a, "sprout-vms.target")
    check(a["multi-user.target"] == "active" and slow["ActiveState"] == "activating" and slow["SubState"] == "start"
          and slow["StatusText"] == "sprout-test:_specializing,_never_ready" and slow["starts"] == "1",
          f"multi-user.target is {a['multi-user.target']} while sprout-vm@slow (told its status, never READY=1) "
          f"is {slow['ActiveState']}/{slow['SubState']}: {slow}")
    check(target["ActiveState"] == "active",
          f"sprout-vms.target is active at once, ordered after none of its VMs (DefaultDependencies=false): it is {target['ActiveState']}")
    # systemd 252 counts a restart when it queues it (NRestarts) and keeps the failure
    # that caused it as Result (exit-code) when the start limit refuses it.
    burst = int(unit_setting(VMS["bad"], "StartLimitBurst"))
    check(bad["ActiveState"] == "failed" and bad["Result"] == "exit-code" and bad["ExecMainStatus"] == "1"
          and int(bad["starts"]) == burst and int(bad["NRestarts"]) == burst and bad["limit"] == "1",
          f"sprout-vm@bad (exit 1 at each start) ended failed after StartLimitBurst={burst} starts, its next "
          f"restart refused for the start limit (the journal's 'Start request repeated too quickly'): {bad}")
    restart_us = int(unit_setting(VMS["bad"], "RestartSec")) * 1000000
    check(badspec["ActiveState"] == "failed" and badspec["Result"] == "exit-code" and badspec["ExecMainStatus"] == "2"
          and badspec["NRestarts"] == "0" and badspec["starts"] == "1" and badspec["limit"] == "0",
          f"sprout-vm@badspec (exit 2) failed and was not restarted: {badspec}")
    # Not too early to tell: bad, with the same RestartSec, was started again well after
    # badspec had ended.
    check(int(bad["ExecMainStartTimestampMonotonic"]) > int(badspec["ExecMainExitTimestampMonotonic"]) + restart_us,
          f"sprout-vm@bad's last start ({bad['ExecMainStartTimestampMonotonic']} µs) is more than RestartSec after "
          f"sprout-vm@badspec ended ({badspec['ExecMainExitTimestampMonotonic']} µs)")


def console_after(text, marker):
    i = text.find(marker)
    return text[i:] if i >= 0 else ""


def check_powered_off_by_systemd(w, name, since_marker):
    tail = console_after(w.console(name), since_marker)
    check(re.search(r"Reached target .*System Power Off", tail) and "reboot: Power down" in tail,
          f"the guest did not power off through systemd's poweroff.target:\n{tail[-3000:]}")
    st = rl.read_status(w.state(name))
    check(st["host"]["state"] == "stopped" and "on request" in st["host"]["how"], f"host: {st['host']}")


SECRET = "sprout-test-secret-7f3a"


def add_identity_sources(w, name, ssh_port):
    """The spec gains a forward of guest port 22, an ssh directory that lets the test's
    client key in as root, and a secrets directory; returns the client's key file."""
    client = os.path.join(w.root, "client_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", client], check=True)
    ssh = os.path.join(w.root, "ssh")
    os.makedirs(ssh, mode=0o700)
    with open(client + ".pub") as f, open(os.path.join(ssh, "authorized_keys"), "w") as out:
        out.write(f.read())
    os.chmod(os.path.join(ssh, "authorized_keys"), 0o600)
    secrets = os.path.join(w.root, "secrets")
    os.makedirs(secrets, mode=0o700)
    with open(os.path.join(secrets, "db-password"), "w") as f:
        f.write(SECRET)
    path = os.path.join(w.spec_dir, name + ".json")
    with open(path) as f:
        spec = json.load(f)
    spec["network"]["forwards"].append({"hostAddress": "127.0.0.1", "hostPort": ssh_port, "guestPort": 22})
    spec["sources"].update(ssh=ssh, secrets=secrets)
    rl.write_spec(path, **spec)
    return client


def identity(w, name):
    r = rl.sprout(["identity", name, "--spec-dir", w.spec_dir, "--json"])
    check(r.returncode == 0, f"sprout identity: {r.returncode} {r.stderr}")
    return json.loads(r.stdout)


def key_served(port, timeout=BOOT_BUDGET):
    """The ed25519 key the guest's sshd serves, through the forwarded port, asked
    until sshd answers (the boot may not have started it yet)."""
    t0 = time.monotonic()
    while True:
        r = subprocess.run(["ssh-keyscan", "-T", "120", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
                           capture_output=True, text=True, timeout=300)
        keys = [line.split()[1:3] for line in r.stdout.splitlines() if line and not line.startswith("#")]
        if keys:
            check(len(keys) == 1, f"ssh-keyscan through port {port}: {r.stdout} {r.stderr}")
            return " ".join(keys[0])
        check(time.monotonic() - t0 < timeout, f"sshd never answered on port {port}: {r.stderr}")
        time.sleep(2)


def sprout_ssh(w, name, client, command):
    return rl.sprout(["ssh", "--spec-dir", w.spec_dir, "-o", f"IdentityFile={client}", "-o", "IdentitiesOnly=yes",
                      "-o", "BatchMode=yes", "-o", "ConnectTimeout=120", name, "--", command],
                     timeout=300)


# In the guest, as root through `sprout ssh`: the secret, its modes, whether nobody can
# read it, the machine-id in SMBIOS type 11, and the secrets disk unmounted again.
GUEST_CHECKS = ("cat /run/sprout/secrets/db-password; echo; "
                "stat -c %a:%U /run/sprout/secrets /run/sprout/secrets/db-password; "
                "setpriv --reuid=65534 --regid=65534 --clear-groups cat /run/sprout/secrets/db-password "
                ">/dev/null 2>&1 && echo nobody-reads || echo nobody-denied; "
                "cat /sys/firmware/dmi/entries/11-*/raw | tr -c '[:print:]' '\\n' | grep '^io.systemd.credential:'; "
                "findmnt -n /run/sprout/secrets-disk >/dev/null && echo disk-mounted || echo disk-unmounted")


def check_identity_in_guest(w, name, port, client, when):
    """The host-minted key is what sshd serves, `sprout ssh` gets in with strict
    checking, and the secret is root's alone."""
    ident = identity(w, name)
    want = " ".join(ident["sshHostKeys"][0]["publicKey"].split()[:2])
    check(key_served(port) == want, f"{when}: sshd does not serve the host-minted key {want}")
    r = sprout_ssh(w, name, client, GUEST_CHECKS)
    expected = [SECRET, "700:root", "400:root", "nobody-denied",
                f"io.systemd.credential:system.machine_id={ident['machineId']}", "disk-unmounted"]
    check(r.returncode == 0 and r.stdout.split() == expected,
          f"{when}: sprout ssh with strict host key checking: {r.returncode}\n{r.stdout}\n{r.stderr}\n"
          f"expected {expected}")
    print(f"{when}: sshd serves the host-minted key {ident['sshHostKeys'][0]['fingerprint']}; sprout ssh in, "
          f"secret root's alone, machine-id in SMBIOS type 11", flush=True)
    return ident


def check_rotated_key_refused(w, name, client, old):
    """`sprout identity --rotate` while the guest still serves the old key: sprout ssh
    refuses the guest and says which key it expected."""
    new = json.loads(rl.sprout(["identity", name, "--spec-dir", w.spec_dir, "--rotate", "--json"]).stdout)
    new_fp, old_fp = new["sshHostKeys"][0]["fingerprint"], old["sshHostKeys"][0]["fingerprint"]
    check(new_fp != old_fp, "--rotate made no new key")
    r = sprout_ssh(w, name, client, "true")
    check(r.returncode == 255 and f"expected ssh-ed25519 {new_fp}" in r.stderr and f"shown {old_fp}" in r.stderr,
          f"sprout ssh after --rotate, the guest still on the old key: {r.returncode}\n{r.stderr}")
    print(f"after --rotate: sprout ssh refused the old key {old_fp}, expecting {new_fp}", flush=True)


def case_root(root):
    """Only the cached Debian root (debootstrap-root.sh): run early, in parallel with
    other tests, so that the lifecycle case finds it built."""
    t0 = time.monotonic()
    r = subprocess.run([os.path.join(HERE, "debootstrap-root.sh"), guestlib.default_cache_dir()],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800)
    if r.returncode == 77:
        raise guestlib.Skip(r.stderr.strip())
    check(r.returncode == 0, f"debootstrap-root.sh failed ({r.returncode}):\n{r.stderr}")
    print(f"{r.stdout.strip()} after {time.monotonic() - t0:.1f} s\n{r.stderr.strip()}", flush=True)


def case_lifecycle(root):
    w = SystemdWorld(root)
    port = guestlib._free_port()
    # The rebuild finishes only once the host's probe was answered (an event, no sleep).
    w.spec("web", port, self_extra="# sprout-test: wait-for /run/sprout-test/answered 900\n")
    ssh_port = guestlib._free_port()
    client = add_identity_sources(w, "web", ssh_port)
    state = w.state("web")
    with run_vm(w, "web") as run:
        t0 = time.monotonic()
        rl.wait_status(state, lambda s: s.get("phase") == "rebuilding", BOOT_BUDGET, "rebuilding", run=run)
        t_rebuilding = time.monotonic() - t0
        # Before the first answer, which lets the rebuild end (and the guest reboot).
        ident = check_identity_in_guest(w, "web", ssh_port, client, "boot 1")
        # The agent does not wait for the network, so its rebuild may begin before the
        # boot reaches multi-user.target: ask until it has (the rebuild, held until an
        # answer says so, is still running then).
        while True:
            a = answer(port)
            check(a["sprout-agent"] == "active", f"while the rebuild runs: agent {a['sprout-agent']}")
            if a["multi-user.target"] == "active":
                break
            check(time.monotonic() - t0 < BOOT_BUDGET, f"multi-user.target never became active: {a}")
            time.sleep(1)
        t_answer = time.monotonic() - t0
        print(f"boot 1: rebuilding after {t_rebuilding:.1f} s, answer after {t_answer:.1f} s: {a}", flush=True)
        check(a["current-system"] == BASE_SYSTEM, f"boot 1 runs {a['current-system']}, not the base")
        check_unit_is_golden(a)
        check_host_units_are_golden(a)
        # The agent does not wait for the network (a host-built or network-less VM
        # needs none); its rebuild does: the guest module's nixos-rebuild wrapper starts
        # network-online.target and waits for it before the real one runs.
        check(int(a["agent-started-at"]) > 0, f"the agent did not start: {a}")

        r = wait_for(w, "web")
        t_specialized = time.monotonic() - t0
        check(r.returncode == 0, f"sprout wait: {r.returncode} {r.stdout} {r.stderr}\n{run.output()}")
        said = [e.get("message", "") for e in rl.read_events(state) if "network-online.target is" in e.get("message", "")]
        check(said and said[0].endswith("network-online.target is active"),
              f"the rebuild did not begin after network-online.target was reached: {said}")
        a2 = answer(port)
        print(f"boot 2: specialized after {t_specialized:.1f} s (total); answer: {a2}", flush=True)
        check(a2["host"] == "web" and re.fullmatch(r"/nix/store-built/[0-9a-f]{32}-nixos-system-web-1",
                                                   a2["current-system"]) is not None,
              f"boot 2 does not run the generation the rebuild switched: {a2}")
        check(a2["sprout-agent"] != "failed", f"agent unit after specializing: {a2['sprout-agent']}")
        check_unit_is_golden(a2)
        check(check_identity_in_guest(w, "web", ssh_port, client, "boot 2") == ident,
              "the identity changed across specialization")
        check_rotated_key_refused(w, "web", client, ident)
        pid = rl.read_status(state)["host"]["pid"]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            check(SECRET.encode() not in f.read(), "the secret is on qemu's command line")
        # The host module's VM units (a stand-in sprout): wait for bad's restarts to end.
        t2 = time.monotonic()
        a3 = wait_restarts_end(port, a2)
        print(f"boot 2: sprout-vm@bad's restarts ended {time.monotonic() - t2:.1f} s after that answer: "
              + " ".join(f"{u}={a3[u]}" for u in [*VMS.values(), "sprout-vms.target"]), flush=True)
        check_vm_ordering(a3)
        check_host_units_are_golden(a3)
        check_confinement(a3)

        t1 = time.monotonic()
        run.signal(signal.SIGTERM)
        rc = run.wait(SHUTDOWN_TIMEOUT + 60)
        print(f"SIGTERM to exit: {time.monotonic() - t1:.1f} s", flush=True)
        check(rc == 0, f"sprout run exit status after SIGTERM: {rc}\n{run.output()}")

    console = w.console("web")
    check(w.boots("web") == [1, 2], f"boots: {w.boots('web')}")
    check("Welcome to " in console and "Debian GNU/Linux" in console, "systemd did not boot (no welcome line)")
    boot1 = console[console.find("sprout-test: boot 1 "):console.find("sprout-test: boot 2 ")]
    check(re.search(r"Reached target .*System Reboot", boot1) and "reboot: Restarting system" in boot1,
          f"boot 1 did not end with systemd's reboot.target:\n{boot1[-3000:]}")
    check_powered_off_by_systemd(w, "web", "sprout-test: boot 2 ")
    phases = [e["phase"] for e in rl.read_events(state) if e["phase"] != "log"]
    check(phases.count("rebooting") == 1 and phases[-1] == "specialized", f"phases: {phases}")
    # The secret's bytes are nowhere but on its own disk: not in the cache, the record,
    # the events, the logs sprout shows, or the run's output.
    logs = rl.sprout(["logs", "web", "--spec-dir", w.spec_dir])
    with open(run.log, "rb") as f:
        places = {"sprout logs": (logs.stdout + logs.stderr).encode(), "run output": f.read()}
    for d in (os.path.join(root, "cache"), state):
        for base, _, files in os.walk(d):
            for f in files:
                path = os.path.join(base, f)
                if (os.path.isfile(path) and f != "secrets.img"  # files only: the state has sockets
                        and not (base.endswith("identity") or "/identity/" in base)):
                    with open(path, "rb") as fh:
                        places[path] = fh.read()
    # (root.qcow2 too: the guest keeps its secrets in /run, never on its disk)
    leaks = [k for k, v in places.items() if SECRET.encode() in v]
    check(not leaks, f"the secret's bytes are in {leaks}")


def wait_specialized_again(w, name, run):
    """`sprout wait` once this run's record has replaced the last run's (whose
    `stopped` would end the wait at once)."""
    before = (rl.read_status(w.state(name)) or {}).get("host", {}).get("startedMs", 0)
    rl.wait_status(w.state(name), lambda s: s.get("host", {}).get("startedMs", 0) > before, BOOT_BUDGET,
                   "this run's record", run=run)
    check(wait_for(w, name).returncode == 0, f"not specialized:\n{run.output()}")


def stop_vm(run):
    run.signal(signal.SIGTERM)
    rc = run.wait(SHUTDOWN_TIMEOUT + 60)
    check(rc == 0, f"sprout run exit status after SIGTERM: {rc}\n{run.output()}")


def case_identity(root):
    """The identity across what changes a VM: specialized (two boots) with key K1;
    `sprout identity --rotate` while stopped, the next start serves K2 and `sprout ssh`
    gets in; then `baseChange: recreate` onto another base (a new overlay, a first boot
    and its specialization again): still K2, the same machine-id, on the new overlay's
    first boot and after its specialization."""
    w = SystemdWorld(root)
    port, ssh_port = guestlib._free_port(), guestlib._free_port()
    w.spec("web", port)
    client = add_identity_sources(w, "web", ssh_port)
    t0 = time.monotonic()
    with run_vm(w, "web") as run:
        check(wait_for(w, "web").returncode == 0, f"not specialized:\n{run.output()}")
        first = check_identity_in_guest(w, "web", ssh_port, client, "specialized")
        stop_vm(run)
    rotated = json.loads(rl.sprout(["identity", "web", "--spec-dir", w.spec_dir, "--rotate", "--json"]).stdout)
    check(rotated["sshHostKeys"][0]["fingerprint"] != first["sshHostKeys"][0]["fingerprint"], "no new key")
    with run_vm(w, "web") as run:
        wait_specialized_again(w, "web", run)
        check(check_identity_in_guest(w, "web", ssh_port, client, "restarted after --rotate") == rotated,
              "the restarted guest does not serve the rotated key")
        stop_vm(run)
    # The new overlay's rebuild waits for the host's probe, so its first boot can be asked.
    w.self_dir("web", "# sprout-test: wait-for /run/sprout-test/answered 900\n")
    base2 = os.path.join(root, "base2.img")
    subprocess.run(["cp", "--sparse=always", w.base, base2], check=True)
    path = os.path.join(w.spec_dir, "web.json")
    with open(path) as f:
        spec = json.load(f)
    spec["base"]["image"] = base2
    spec["baseChange"] = "recreate"
    rl.write_spec(path, **spec)
    state = w.state("web")
    before = rl.read_status(state)["host"]["startedMs"]
    with run_vm(w, "web") as run:
        rl.wait_status(state, lambda s: s.get("phase") == "rebuilding" and s["host"].get("startedMs", 0) > before,
                       BOOT_BUDGET, "rebuilding", run=run)
        check(check_identity_in_guest(w, "web", ssh_port, client, "recreated overlay, first boot") == rotated,
              "the recreated overlay's first boot does not serve the VM's key")
        answer(port)  # lets the stand-in rebuild end
        rl.wait_status(state, lambda s: s.get("phase") == "rebooting", BOOT_BUDGET, "rebooting", run=run)
        check(wait_for(w, "web").returncode == 0, f"the recreated overlay did not specialize:\n{run.output()}")
        check(check_identity_in_guest(w, "web", ssh_port, client, "recreated overlay, specialized") == rotated,
              "the recreated overlay's specialized boot does not serve the VM's key")
        stop_vm(run)
    check(any(n.startswith("root.qcow2.old-") for n in os.listdir(state)), "the overlay was not recreated")
    print(f"identity: rotate and recreate checked in {time.monotonic() - t0:.1f} s", flush=True)


def case_failing(root):
    w = SystemdWorld(root)
    port = guestlib._free_port()
    w.spec("bad", port, self_extra="# sprout-test: fail\n")
    with run_vm(w, "bad") as run:
        t0 = time.monotonic()
        r = wait_for(w, "bad")
        t_failed = time.monotonic() - t0
        check(r.returncode == 1, f"sprout wait on a failing rebuild: {r.returncode} {r.stdout} {r.stderr}")
        check("bad failed: rebuild exited with status 1" in r.stderr and "rebuild told to fail" in r.stderr,
              f"sprout wait did not print the reason: {r.stderr}")
        print(f"failed after {t_failed:.1f} s; sprout wait said: {r.stderr.strip()}", flush=True)
        a = answer(port)
        check(a["sprout-agent"] == "failed" and a["multi-user.target"] == "active",
              f"after a failed rebuild systemctl says agent {a['sprout-agent']}, "
              f"multi-user.target {a['multi-user.target']}")
        check_unit_is_golden(a)
        check(w.boots("bad") == [1], f"a failed rebuild rebooted: boots {w.boots('bad')}")
        t1 = time.monotonic()
        run.signal(signal.SIGTERM)
        rc = run.wait(SHUTDOWN_TIMEOUT + 60)
        print(f"SIGTERM to exit: {time.monotonic() - t1:.1f} s", flush=True)
        check(rc == 0, f"sprout run exit status after SIGTERM: {rc}\n{run.output()}")
    check_powered_off_by_systemd(w, "bad", "sprout-test: boot 1 ")


if __name__ == "__main__":
    try:
        sys.exit(rl.run_case({"root": case_root, "lifecycle": case_lifecycle, "failing": case_failing,
                                  "identity": case_identity}, sys.argv[2]))
    except guestlib.Skip as e:
        print(f"SKIPPED: {e}")
        sys.exit(77)

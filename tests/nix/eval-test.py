#!/usr/bin/env python3
"""Evaluates sprout's NixOS modules with nixpkgs' lib and checks what they produce.

Usage: NIXPKGS_LIB=/path/to/nixpkgs/lib eval-test.py [--nix-instantiate PATH] [--update-golden]

Cases are in cases.nix. Specs of the examples are compared with golden/<example>-<vm>.json
(store path hashes replaced by zeros). Without NIXPKGS_LIB the test is skipped (exit 77).
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases.nix")
GOLDEN = os.path.join(HERE, "golden")
SKIP = 77

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def nix_eval(nix, lib, attr):
    """Returns (value, None) or (None, error text)."""
    env = dict(os.environ, NIXPKGS_LIB=lib, NIX_CONFIG="build-users-group =")
    p = subprocess.run(
        [nix, "--eval", "--strict", "--json", "--readonly-mode", CASES,
         "--argstr", "libPath", lib, "-A", attr],
        capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return None, p.stderr
    return json.loads(p.stdout), None


def normalize(value):
    """Store paths' hashes depend on file contents; the golden files do not."""
    text = json.dumps(value, indent=2, sort_keys=True)
    return json.loads(re.sub(r"/nix/store/[0-9a-z]{32}-", "/nix/store/" + "0" * 32 + "-", text))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nix-instantiate", default="nix-instantiate")
    ap.add_argument("--update-golden", action="store_true")
    args = ap.parse_args()

    lib = os.environ.get("NIXPKGS_LIB", "")
    if not lib or not os.path.exists(os.path.join(lib, "default.nix")):
        print("SKIPPED: set NIXPKGS_LIB to the lib directory of a nixpkgs checkout")
        return SKIP
    lib = os.path.abspath(lib)
    nix = args.nix_instantiate

    def get(attr):
        value, err = nix_eval(nix, lib, attr)
        check(err is None, f"{attr} evaluates" + ("" if err is None else ":\n" + err))
        return value

    # The examples: specs equal the golden files, units and assertions as expected.
    examples = {
        "nixos-on-nixos": ["db", "web"],
        "qemu-quickstart": ["guest"],
        "libvirt": ["guest"],
    }
    for example, vms in examples.items():
        r = get(f"examples.{example}")
        if r is None:
            continue
        check(sorted(r["specs"]) == vms, f"{example}: VMs {vms}")
        check(r["failedAssertions"] == [] and r["warnings"] == [], f"{example}: no failed assertions or warnings")
        for vm in vms:
            spec = normalize(r["specs"][vm])
            golden = os.path.join(GOLDEN, f"{example}-{vm}.json")
            if args.update_golden:
                with open(golden, "w") as f:
                    f.write(json.dumps(spec, indent=2, sort_keys=True) + "\n")
            with open(golden) as f:
                check(json.load(f) == spec, f"{example}: spec of {vm} equals golden/{example}-{vm}.json")
            check(f"sprout/vms/{vm}.json" in r["etc"], f"{example}: /etc/sprout/vms/{vm}.json")
            unit = r["units"].get(f"sprout-vm@{vm}")
            check(unit is not None, f"{example}: unit sprout-vm@{vm}")
            if unit is None:
                continue
            sc = unit["serviceConfig"]
            spec_path = f"/etc/sprout/vms/{vm}.json"
            if spec.get("backend") == "libvirt":
                check(sc["ExecStart"].endswith(f"/bin/sprout watch --spec {spec_path}"), f"{example}: {vm} ExecStart watch")
                check(sc["ExecStartPre"].endswith(f"/bin/sprout define --spec {spec_path} --start"),
                      f"{example}: {vm} ExecStartPre define --start")
                check("libvirtd.service" in unit["requires"] and "libvirtd.service" in unit["after"],
                      f"{example}: {vm} requires and is after libvirtd.service")
            else:
                check(sc["ExecStart"].endswith(f"/bin/sprout run --spec {spec_path}"), f"{example}: {vm} ExecStart run")
            check(sc["Type"] == "notify" and sc["NotifyAccess"] == "main" and sc["KillMode"] == "mixed",
                  f"{example}: {vm} Type=notify, NotifyAccess=main, KillMode=mixed")
            check(int(sc["TimeoutStopSec"]) > spec.get("shutdownTimeoutSeconds", 60),
                  f"{example}: {vm} TimeoutStopSec > shutdown timeout")
        check(r["targets"].get("sprout-vms", {}).get("wantedBy") == ["multi-user.target"],
              f"{example}: sprout-vms.target wanted by multi-user.target")
        check(any(p.endswith("-sprout-0.1.0") for p in r["systemPackages"]), f"{example}: sprout in systemPackages")

    r = get("examples.nixos-on-nixos")
    if r:
        web, db = r["specs"]["web"], r["specs"]["db"]
        check(web["base"]["image"] == db["base"]["image"], "nixos-on-nixos: web and db share one base image")
        check(web["sources"]["config"] == db["sources"]["config"], "nixos-on-nixos: web and db share the config tree")
        check(web["sources"]["self"].endswith("-web") and db["sources"]["self"].endswith("-db"),
              "nixos-on-nixos: selfDir defaults to hosts/<name>")
        u = r["units"]
        check(u["sprout-vm@web"]["wantedBy"] == ["sprout-vms.target"], "autostart: web wanted by sprout-vms.target")
        check(u["sprout-vm@db"]["wantedBy"] == [], "autostart off: db not wanted")
        check(u["sprout-vm@web"]["restartIfChanged"] is False and u["sprout-vm@web"]["restartTriggers"] == [],
              "restartOnChange off: no restart on switch, no triggers")
        check(u["sprout-vm@db"]["restartIfChanged"] is True
              and u["sprout-vm@db"]["restartTriggers"] == [r["etc"]["sprout/vms/db.json"]["source"]],
              "restartOnChange on: the spec file is the restart trigger")
        check("d /var/lib/sprout/vms/web 0750 root root -" in r["tmpfiles"], "tmpfiles: state directory")

    r = get("examples.libvirt")
    if r:
        check(r["etc"]["sprout/libvirt-domains"]["text"] == "guest\n", "libvirt: domain list for the gc unit")
        gc = r["units"].get("sprout-libvirt-gc", {})
        check(gc.get("serviceConfig", {}).get("Type") == "oneshot" and gc.get("restartTriggers"),
              "libvirt: sprout-libvirt-gc is a oneshot restarted when the domain list changes")

    # Every key the module can write, and how it writes it.
    r = get("everything")
    if r:
        with open(os.path.join(HERE, "expected-everything.json")) as f:
            check(r["specs"]["t"] == json.load(f), "everything: spec equals expected-everything.json")

    r = get("minimal")
    if r:
        check(r["specs"]["t"] == {
            "version": 1, "name": "t",
            "base": {"image": "/nix/store/00000000000000000000000000000000-base/nixos.qcow2"},
            "stateDir": "/var/lib/sprout/vms/t",
            "sources": {"config": "/etc/nixos-vms", "self": "/etc/nixos-vms/hosts/t"},
            "memory": 1024, "vcpus": 1}, "minimal: spec has only required keys, memory and vcpus")

    r = get("disabled")
    if r:
        check(r["specs"] == {} and r["units"] == {} and r["etc"] == {} and r["targets"] == {},
              "enable = false: no specs, units or targets")

    # Assertions fire, each with its message.
    expected = {
        "forwardsWithBridge": 'port forwards need network.mode = "user" (it is "bridge")',
        "sshBoth": "set sshAuthorizedKeys or sshDir, not both",
        "noBase": "set exactly one of base.modules",
        "bothBases": "set exactly one of base.modules",
        "flakeWithoutTarget": "configDir has no flake.nix; set rebuild.target",
        "libvirtWithoutLibvirtd": "needs virtualisation.libvirtd.enable = true",
        "libvirtNetworkOnQemu": 'needs backend = "libvirt"',
        "privateKeysWithoutSshDir": "allowPrivateKeys only applies to sshDir",
        "badName": "virtualisation.sprout.vms.-x: a VM name is",
    }
    bad = get("bad")
    if bad:
        for case, message in expected.items():
            msgs = bad.get(case, [])
            check(len(msgs) == 1 and message in msgs[0], f"assertion {case}: {message!r} (got {msgs})")

    # Type errors read well: nixpkgs' message, naming the option.
    _, err = nix_eval(nix, lib, "memoryLots")
    check(err is not None and "virtualisation.sprout.vms.t.memory" in err and "is not of type" in err,
          "memory = \"lots\": type error naming virtualisation.sprout.vms.t.memory")

    # The guest module.
    g = get("guest")
    if g:
        check(g["agentConfig"] == {
            "version": 1,
            "mountPoints": {"config": "/etc/nixos", "self": "/etc/nixos/hosts/self", "ssh": "/root/.ssh"},
            "rebuild": {"command": ["nixos-rebuild", "boot"], "timeoutSeconds": 3600, "maxAttempts": 3,
                        "respecializeOnChange": True},
            "rebootCommand": ["systemctl", "reboot"],
            "stateDir": "/var/lib/sprout"}, "guest: /etc/sprout/agent.json")
        s = g["service"]
        check(s["serviceConfig"]["Type"] == "exec" and s["wantedBy"] == ["multi-user.target"]
              and s["before"] == [] and s["restartIfChanged"] is False,
              "guest: agent is Type=exec, wanted by multi-user.target, before nothing, not restarted by switches")
        check(s["serviceConfig"]["ExecStart"].endswith("-agent/bin/sprout-agent --config /etc/sprout/agent.json"),
              "guest: ExecStart runs the agent output's sprout-agent")
        check(any(p.endswith("-nixos-rebuild") for p in s["path"]) and any(p.endswith("-nix") for p in s["path"])
              and any(p.endswith("-systemd") for p in s["path"]), "guest: nixos-rebuild, nix, systemd on PATH")
        mods = g["kernelModules"] + g["initrdModules"]
        check(all(m in mods for m in ["virtio_blk", "virtio_console", "virtio_pci"]), "guest: virtio modules")
        check(g["fileSystems"]["/"]["device"] == "/dev/disk/by-label/nixos", "guest: root by label nixos")

    print(f"\n{len(failures)} failed" if failures else "\nall passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

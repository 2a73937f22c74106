#!/usr/bin/env python3
"""Evaluates sprout's NixOS modules with nixpkgs' lib and checks what they produce.

Usage: NIXPKGS_LIB=/path/to/nixpkgs/lib eval-test.py [--nix-instantiate PATH] [--update-golden]

Cases are in cases.nix. Specs of the examples are compared with golden/<example>-<vm>.json
(store path hashes replaced by zeros); the VMs in HOST_SPECS (specialize = "host") carry
the host-mode keys, no other VM does; every golden file passes `sprout check-spec`.
Without NIXPKGS_LIB the test is skipped (exit 77).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases.nix")
GOLDEN = os.path.join(HERE, "golden")
# The VMs with specialize = "host" (their golden specs carry system and baseSystem).
HOST_SPECS = {("nixos-on-nixos", "dns")}
HOST_KEYS = ("specialize", "system", "baseSystem")
SKIP = 77

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


NIX_ENV = dict(os.environ, NIX_CONFIG="build-users-group =")
traces = {}


def nix_eval(nix, lib, attr, store=False):
    """Returns (value, None) or (None, error text). store=True: evaluates with the real
    store (builtins.path and writeText write /nix/store), as a NixOS build does."""
    mode = "--read-write-mode" if store else "--readonly-mode"
    p = subprocess.run(
        [nix, "--eval", "--strict", "--json", mode, CASES, "--argstr", "libPath", lib, "-A", attr],
        capture_output=True, text=True, env=NIX_ENV, timeout=240)
    traces[attr] = [l for l in p.stderr.splitlines() if "sprout-test:" in l]
    if p.returncode != 0:
        return None, p.stderr
    return json.loads(p.stdout), None


def flake_eval(lib, attr):
    """Evaluates cases.nix the way a flake is evaluated: pure, from store copies of a
    flake's inputs (the repository's Nix files and nixpkgs' lib). Returns (value, err)."""
    nix = shutil.which("nix")
    if nix is None:
        return None, "no nix command"
    repo = os.path.dirname(os.path.dirname(HERE))
    with tempfile.TemporaryDirectory(prefix="sprout-pure-") as tmp:
        src = os.path.join(tmp, "sprout")
        for d in ("nixos", "examples", os.path.join("tests", "nix")):
            shutil.copytree(os.path.join(repo, d), os.path.join(src, d))
        shutil.copy(os.path.join(repo, "flake.nix"), src)
        probe = os.path.join(tmp, "probe")
        os.makedirs(probe)
        with open(os.path.join(probe, "flake.nix"), "w") as f:
            f.write("{\n"
                    f'  inputs.sprout = {{ url = "path:{src}"; flake = false; }};\n'
                    f'  inputs.lib = {{ url = "path:{os.path.dirname(lib)}"; flake = false; }};\n'
                    '  outputs = { self, sprout, lib }: {\n'
                    '    cases = import "${sprout}/tests/nix/cases.nix" { libPath = "${lib}/lib"; };\n'
                    "  };\n}\n")
        p = subprocess.run(
            [nix, "--extra-experimental-features", "nix-command flakes", "eval", "--json",
             f"path:{probe}#cases.{attr}"],
            capture_output=True, text=True, env=NIX_ENV, timeout=240)
    if p.returncode != 0:
        return None, p.stderr
    return json.loads(p.stdout), None


def parse_evals(lines):
    """The stub eval-config's traces: [{pkgs, toplevel, files}], one per evaluation."""
    out = []
    for line in lines:
        m = re.search(r"sprout-test: eval-config pkgs=(\S+) toplevel=(\S+) files=(\S*)", line)
        if m:
            out.append({"pkgs": m.group(1), "toplevel": m.group(2),
                        "files": [f for f in m.group(3).split(",") if f]})
    return out


def eval_of(evals, suffix):
    """The one evaluation whose modules include a file ending in suffix, or None."""
    found = [e for e in evals if any(f.endswith(suffix) for f in e["files"])]
    return found[0] if len(found) == 1 else None


def zero_hashes(text):
    """Store paths' hashes depend on file contents; the golden files do not."""
    return re.sub(r"/nix/store/[0-9a-z]{32}-", "/nix/store/" + "0" * 32 + "-", text)


def normalize(value):
    return json.loads(zero_hashes(json.dumps(value, indent=2, sort_keys=True)))


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
        "nixos-on-nixos": ["db", "dns", "web"],
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
            if vm not in r["specs"]:
                continue
            spec = normalize(r["specs"][vm])
            golden = os.path.join(GOLDEN, f"{example}-{vm}.json")
            if args.update_golden:
                with open(golden, "w") as f:
                    f.write(json.dumps(spec, indent=2, sort_keys=True) + "\n")
            with open(golden) as f:
                check(json.load(f) == spec, f"{example}: spec of {vm} equals {os.path.relpath(golden, HERE)}")
            check(((example, vm) in HOST_SPECS) == any(k in spec for k in HOST_KEYS),
                  f"{example}: {vm} has the host-mode keys exactly when it is host-built")
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
        evals = parse_evals(traces["examples.nixos-on-nixos"])
        check(len(evals) == 2 and all(e["pkgs"] == "host-pkgs" for e in evals),
              f"nixos-on-nixos: two evaluations (the shared base, dns's host-built system), with the host's pkgs ({evals})")
        web, db, dns = r["specs"]["web"], r["specs"]["db"], r["specs"]["dns"]
        check(web["base"]["image"] == db["base"]["image"] == dns["base"]["image"],
              "nixos-on-nixos: web, db and dns share one base image")
        base = eval_of(evals, "common/vm_host_base.nix")
        system = eval_of(evals, "hosts/dns/configuration.nix")
        check(base is not None and dns.get("baseSystem") == base["toplevel"],
              f"nixos-on-nixos: dns's baseSystem is the base evaluation's toplevel ({dns.get('baseSystem')})")
        check(system is not None and dns.get("system") == system["toplevel"] and dns.get("specialize") == "host"
              and any(f.endswith("/nixos/guest.nix") for f in system["files"]),
              f"nixos-on-nixos: dns's system is hosts/dns/configuration.nix (its default configuration) plus the guest module ({dns.get('system')})")
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
        "noSelfDir": 'virtualisation.sprout.vms.t.selfDir: ' + os.path.dirname(os.path.dirname(HERE))
                     + '/examples/qemu-quickstart/vm/hosts/t does not exist (selfDir defaults to configDir + "/hosts/t"',
        "noConfigDir": "virtualisation.sprout.vms.t.configDir: ",
        "hostWithoutConfiguration": 'virtualisation.sprout.vms.t.configuration: specialize = "host" needs the configuration',
        "hostFlake": 'set virtualisation.sprout.vms.t.configuration.',
    }
    bad = get("bad")
    if bad:
        for case, message in expected.items():
            msgs = bad.get(case, [])
            check(len(msgs) == 1 and message in msgs[0], f"assertion {case}: {message!r} (got {msgs})")

    # Host-built specialization (specialize = "host").
    r = get("hostShared")
    if r:
        evals = parse_evals(traces["hostShared"])
        base = eval_of(evals, "common/vm_host_base.nix")
        one = eval_of(evals, "hosts/one/configuration.nix")
        two = eval_of(evals, "hosts/two/configuration.nix")
        check(len(evals) == 3 and base and one and two and all(e["pkgs"] == "host-pkgs" for e in evals),
              f"hostShared: three evaluations: the base, and one per distinct configuration, with the host's pkgs ({evals})")
        sp = r["specs"]
        if base and one and two:
            check(sp["t"].get("specialize") == "host" and sp["t"].get("system") == one["toplevel"]
                  and sp["u"].get("system") == one["toplevel"],
                  f"hostShared: t and u (one configuration) share one system, that evaluation's toplevel ({sp['t'].get('system')})")
            check(sp["v"].get("system") == two["toplevel"] and two["toplevel"] != one["toplevel"],
                  "hostShared: v (another configuration) has its own system")
            check(all(sp[n].get("baseSystem") == base["toplevel"] for n in "tuv")
                  and base["toplevel"] not in (one["toplevel"], two["toplevel"]),
                  f"hostShared: baseSystem is the base evaluation's toplevel ({base['toplevel']})")
            check(all(any(f.endswith("/nixos/guest.nix") for f in e["files"]) for e in (one, two)),
                  "hostShared: a host-built system includes sprout's guest module")
        check(not any(k in sp["w"] for k in HOST_KEYS) and sp["w"]["base"] == sp["t"]["base"],
              f"hostShared: the guest-mode VM w has none of {HOST_KEYS}, and the same base")
        check(r["failedAssertions"] == [] and r["warnings"] == [], "hostShared: no failed assertions or warnings")
        check(re.fullmatch(r"/nix/store/[0-9a-z]{32}-nixos-system", sp["t"].get("system") or "") is not None,
              "hostShared: system is a /nix/store toplevel")

    r = get("hostDefaults")
    if r:
        evals = parse_evals(traces["hostDefaults"])
        sp = r["specs"]
        one = eval_of(evals, "hosts/one/configuration.nix")
        two = eval_of(evals, "hosts/two/configuration.nix")
        check(one is not None and sp["t"]["system"] == one["toplevel"],
              "hostDefaults: configuration defaults to selfDir + \"/configuration.nix\"")
        check(two is not None and sp["u"]["system"] == two["toplevel"] and sp["v"]["system"] == two["toplevel"],
              "hostDefaults: rebuild.target under /etc/nixos/hosts/self maps to selfDir, else under /etc/nixos to configDir")
        check(len(evals) == 2, f"hostDefaults: u and v build the same file once ({len(evals)} evaluations)")
        check(sp["u"]["baseSystem"] is None and sp["u"]["base"]["image"] == "/i",
              "hostDefaults: a prebuilt base.image gives baseSystem = null")
        check(r["failedAssertions"] == [] and r["warnings"] == [], "hostDefaults: no failed assertions or warnings")

    r = get("guestWithConfiguration")
    if r:
        check(len(r["warnings"]) == 1 and "virtualisation.sprout.vms.t.configuration is only used with specialize" in r["warnings"][0]
              and not any(k in r["specs"]["t"] for k in HOST_KEYS),
              f"guest mode with a configuration: a warning, no host-mode keys ({r['warnings']})")
    r = get("minimal")
    if r:
        check(not any(k in r["specs"]["t"] for k in HOST_KEYS), f"guest mode (the default): none of {HOST_KEYS}")

    # Type errors read well: nixpkgs' message, naming the option.
    _, err = nix_eval(nix, lib, "memoryLots")
    check(err is not None and "virtualisation.sprout.vms.t.memory" in err and "is not of type" in err,
          "memory = \"lots\": type error naming virtualisation.sprout.vms.t.memory")

    r = get("typedBases")
    if r:
        check(len(traces["typedBases"]) == 2 and r["specs"]["t"]["base"] == r["specs"]["v"]["base"],
              f"typedBases: true and \"1\" are different bases, equal ones are shared ({traces['typedBases']})")

    # qemu's bridge helper is allowed the bridges qemu VMs use, once each.
    r = get("bridge")
    if r:
        check(r["etc"].get("qemu/bridge.conf", {}).get("text") == "allow br7\nallow br8\n",
              f"bridge: /etc/qemu/bridge.conf allows br7 and br8 ({r['etc'].get('qemu/bridge.conf')})")
    r = get("minimal")
    if r:
        check("qemu/bridge.conf" not in r["etc"], "user networking: no /etc/qemu/bridge.conf")

    # The flake: x86_64 only; host and default together; host and guest together.
    r = get("flake")
    if r:
        check(r["systems"] == ["x86_64-linux"], f"flake: packages for x86_64-linux only ({r['systems']})")
        h = r["hostAndDefault"]
        check(list(h["specs"]) == ["t"] and h["failedAssertions"] == [],
              "flake: nixosModules.host and nixosModules.default imported together")
        check(r["hostAndGuest"]["specs"] == ["t"]
              and r["hostAndGuest"]["agent"].endswith("-agent/bin/sprout-agent --config /etc/sprout/agent.json"),
              "flake: nixosModules.host and nixosModules.guest imported together")

    # The specialized configuration: it imports the pinned module the base installs,
    # from the real store, where Nix copied it.
    def check_specialized(sp, how):
        text = sp["pinnedText"]
        imports = re.findall(r"imports = \[ (\S+) \];", text)
        check(len(imports) == 1 and re.fullmatch(r"/nix/store/[0-9a-z]{32}-sprout-nixos/guest\.nix", imports[0])
              and os.path.isfile(imports[0]) and os.path.isfile(os.path.dirname(imports[0]) + "/package.nix"),
              f"{how}: the pinned module imports guest.nix from a store copy of the whole nixos/ ({imports})")
        check("builtins.storePath" not in text, f"{how}: the pinned module does not use builtins.storePath")
        check(sp["specEnabled"] and sp["specAgent"] == sp["baseAgent"],
              f"{how}: the specialized configuration runs the base's agent ({sp['specAgent']})")
        check(sp["specPinned"] == sp["pinned"], f"{how}: the specialized system installs the same pinned module")
        check(sp["specNixPath"] == sp["baseNixPath"],
              f"{how}: the specialized system's NIX_PATH is the base's ({sp['specNixPath']}, {sp['baseNixPath']})")
        check(sp["specAgentContext"] == [sp["agentPath"]],
              f"{how}: the agent keeps its store context (stays in the closure): {sp['specAgentContext']}")

    sp, err = nix_eval(nix, lib, "specialized", store=True)
    check(err is None, "specialized evaluates with the real store" + ("" if err is None else ":\n" + err))
    if sp:
        check_specialized(sp, "specialized")
    # Pure evaluation, as a flake host evaluates the modules. (A pure evaluation may
    # not import the pinned file from the store; only a classic guest imports it.)
    for attr in ("specialized.pinned", "guest", "flake", "examples.nixos-on-nixos"):
        v, err = flake_eval(lib, attr)
        check(err is None, f"pure (flake) evaluation of {attr}" + ("" if err is None else ":\n" + err))
        if attr == "specialized.pinned" and v and sp:
            check(v == sp["pinned"], f"pure evaluation installs the same pinned module ({v})")

    g = get("guestNix")
    if g:
        check(g["agentConfig"].get("nixBinDir") == g["nix"] + "/bin" and g["nix"] in g["path"],
              f"guest: agent.json's nixBinDir is nix.package's bin, and nix.package is on the agent's PATH ({g['agentConfig'].get('nixBinDir')})")

    # The guest module.
    g = get("guest")
    if g:
        with open(os.path.join(HERE, "expected-agent.json")) as f:
            check(g["agentConfig"] == json.load(f), "guest: /etc/sprout/agent.json equals expected-agent.json")
        s = g["service"]
        env = s["environment"]
        check(re.fullmatch(r"nixpkgs=/nix/store/[0-9a-z]{32}-nixpkgs", env.get("NIX_PATH", ""))
              and env.get("HOME") == "/root",
              f"guest: the agent's unit has NIX_PATH with the base's nixpkgs, and HOME ({env})")
        check("network-online.target" in s["after"] and "network-online.target" in s["wants"],
              "guest: the agent wants and is after network-online.target")
        check(any(p.endswith("-git-minimal") for p in s["path"]), "guest: git on the agent's PATH")
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

    # The agent's unit file as NixOS would write it, store hashes zeroed. The NixOS
    # module and nixpkgs' lib are real; the rendering is OUR transcription of nixpkgs'
    # nixos/lib/systemd-lib.nix serviceToUnit (systemd-unit.nix; nixos/ is not
    # available here). The systemd test guest installs this file (tests/vm/systemd/).
    text = get("guestUnit")
    if text is not None:
        text = zero_hashes(text)
        golden = os.path.join(GOLDEN, "sprout-agent.service")
        if args.update_golden:
            with open(golden, "w") as f:
                f.write(text)
        with open(golden) as f:
            check(f.read() == text, "guest: the agent's unit, rendered by our copy of nixpkgs' serviceToUnit "
                  "(systemd-unit.nix), equals golden/sprout-agent.service")

    print(f"\n{len(failures)} failed" if failures else "\nall passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

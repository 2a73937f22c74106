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
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nixsys"))
import nix_system  # noqa: E402
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


def nix_eval(nix, lib, attr, store=False, args=()):
    """Returns (value, None) or (None, error text). store=True: evaluates with the real
    store (builtins.path and writeText write /nix/store), as a NixOS build does."""
    mode = "--read-write-mode" if store else "--readonly-mode"
    p = subprocess.run(
        [nix, "--eval", "--strict", "--json", mode, CASES, "--argstr", "libPath", lib, *args, "-A", attr],
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
    """The stub eval-config's traces: [{pkgs, toplevel, files, nixpkgsConfig}], one per evaluation."""
    out = []
    for line in lines:
        m = re.search(r"sprout-test: eval-config pkgs=(\S+) toplevel=(\S+) files=(\S*) nixpkgsConfig=(.*)$", line)
        if m:
            out.append({"pkgs": m.group(1), "toplevel": m.group(2),
                        "files": [f for f in m.group(3).split(",") if f],
                        "nixpkgsConfig": json.loads(m.group(4).rstrip("'\""))})
    return out


def eval_of(evals, suffix):
    """The one evaluation whose modules include a file ending in suffix, or None."""
    found = [e for e in evals if any(f.endswith(suffix) for f in e["files"])]
    return found[0] if len(found) == 1 else None


def parse_unit(text):
    """A unit file as {section: {key: [values]}} (systemd's syntax as far as NixOS writes it)."""
    out, section = {}, None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
        elif "=" in line and section is not None:
            k, v = line.split("=", 1)
            section.setdefault(k, []).append(v)
    return out


def unit_environment(unit):
    """The Environment= of a [Service] section: NixOS writes each as one JSON string."""
    env = {}
    for v in unit.get("Service", {}).get("Environment", []):
        k, val = json.loads(v).split("=", 1)
        env[k] = val
    return env


def wrapper_flags(post_fixup):
    """The makeWrapper flags of package.nix's `wrapProgram $out/bin/sprout ...`."""
    words = shlex.split(post_fixup.replace("\\\n", " "))
    at = words.index("wrapProgram")
    assert words[at + 1] == "$out/bin/sprout", words
    flags, rest = [], words[at + 2:]
    while rest:
        if rest[0] in ("--prefix", "--suffix"):
            flags.append(tuple(rest[:4]))
            rest = rest[4:]
        else:
            raise ValueError(f"package.nix's wrapProgram has {rest[0]}, which this test does not model")
    return flags


def wrapped_path(path, flags):
    """PATH as the wrapper hands it on, given the caller's (None: unset): nixpkgs'
    make-wrapper.sh, --prefix VAR SEP VAL: VAL${VAR:+SEP$VAR}; --suffix: VAR+=${VAR:+SEP}VAL."""
    for flag, var, sep, val in flags:
        assert var == "PATH", var
        if not val:
            continue
        if flag == "--prefix":
            path = val + (sep + path if path else "")
        else:
            path = (path + sep if path else "") + val
    return path


def make_wrapper(out, program, flags):
    """The script makeWrapper writes (make-wrapper.sh: export lines, then exec)."""
    lines = ["#! /bin/bash -eu", "declare -a extraFlagsArray=()"]
    for flag, var, sep, val in flags:
        if flag == "--prefix":
            lines.append(f"export {var}={shlex.quote(val)}${{{var}:+{shlex.quote(sep)}${var}}}")
        else:
            lines.append(f"export {var}+=${{{var}:+{shlex.quote(sep)}}}{shlex.quote(val)}")
    lines += ["set +u", f'exec -a "$0" {shlex.quote(program)} "${{extraFlagsArray[@]}}" "$@"']
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(out, 0o755)
    return out


def which(name, path):
    """Where execvp finds `name` with this PATH, or None."""
    for d in (path or "").split(":"):
        p = os.path.join(d or ".", name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


# The programs `sprout` runs by name (argv[0] without a '/': host/*.cc), and where:
# in a VM's unit (run, prepare, export, host-built export) or only from a shell.
UNIT_PROGRAMS = ["qemu-system-x86_64", "qemu-img", "mkfs.ext4", "ssh-keygen", "nix-store", "nix"]
SHELL_PROGRAMS = ["virsh", "ssh", "ssh-keyscan"]


def check_rebuild_wrapper(w, path, nix, lib, update_golden=False):
    """The agent's `nixos-rebuild` (guest.nix, rebuildAfterNetwork) comes before the real
    one on PATH and, run with recording stand-ins for systemctl and nixos-rebuild in
    place of the store paths its text names, starts network-online.target and waits for
    it before the rebuild, and rebuilds anyway when the target fails. In classic mode
    (--no-flake) it adds --file with its entry file, which builds <nixos-config> and
    nothing else: nixos-rebuild-ng (26.05) builds <nixos-system> or
    /etc/nixos/system.nix without --file, and nixpkgs' <nixpkgs/nixos> prefers
    $NIXOS_CONFIG. It runs the rebuild in a directory of its own."""
    check(w["text"] is not None and w["destination"] == "/bin/nixos-rebuild"
          and path.index(w["path"]) < path.index(w["nixosRebuild"]),
          f"guest: the nixos-rebuild first on the agent's PATH is sprout's wrapper ({path})")
    if w["text"] is None:
        return
    golden = os.path.join(GOLDEN, "sprout-nixos-rebuild")
    if update_golden:
        with open(golden, "w") as f:
            f.write(zero_hashes(w["text"]))
    with open(golden) as f:
        check(f.read() == zero_hashes(w["text"]), f"guest: the wrapper equals {os.path.relpath(golden, HERE)}")
    entry = w.get("entry")
    check(entry is not None and w["text"].count(entry) == 1, f"guest: the wrapper names one --file ({entry})")
    with tempfile.TemporaryDirectory(prefix="sprout-wrapper-") as tmp:
        log = os.path.join(tmp, "log")
        rundir = os.path.join(tmp, "run", "sprout-nixos-rebuild")
        for name, status, record in (("systemctl", "${SYSTEMCTL_STATUS:-0}", f'echo "systemctl $*" >>{log}'),
                                     ("nixos-rebuild", "0",
                                      f'echo "nixos-rebuild $*" >>{log}; echo "cwd $(pwd)" >>{log}; '
                                      f'echo "NIXOS_CONFIG ${{NIXOS_CONFIG-unset}}" >>{log}')):
            os.makedirs(os.path.join(tmp, name, "bin"))
            with open(os.path.join(tmp, name, "bin", name), "w") as f:
                f.write(f"#!/bin/sh\n{record}\nexit {status}\n")
            os.chmod(os.path.join(tmp, name, "bin", name), 0o755)
        script = os.path.join(tmp, "wrapper")
        with open(script, "w") as f:
            f.write(re.sub(r"^#!\S+", "#!/bin/bash", w["text"]).replace(w["systemd"], os.path.join(tmp, "systemctl"))
                    .replace(w["nixosRebuild"], os.path.join(tmp, "nixos-rebuild"))
                    .replace("/run/sprout-nixos-rebuild", rundir))
        os.chmod(script, 0o755)
        classic = ["boot", "-I", "nixos-config=/etc/nixos/hosts/self/configuration.nix", "--no-flake"]
        runs = [
            # (arguments, status of systemctl, what nixos-rebuild must get)
            (classic, "0", classic + ["--file", entry]),
            (classic, "1", classic + ["--file", entry]),
            (["boot", "--flake", "/etc/nixos#self", "--no-write-lock-file"], "0", None),
            (classic + ["--file", "/etc/nixos/mine.nix"], "0", None),
            (classic + ["--attr", "vm"], "0", None),
        ]
        for args, status, expected in runs:
            expected = expected or args
            if os.path.exists(log):
                os.remove(log)
            # The agent's unit sets no NIXOS_CONFIG; the entry file must not read it anyway.
            p = subprocess.run([script, *args], capture_output=True, text=True, timeout=30, cwd=tmp,
                               env={"PATH": "/usr/bin:/bin", "SYSTEMCTL_STATUS": status})
            with open(log) as f:
                calls = f.read().splitlines()
            check(p.returncode == 0
                  and calls == ["systemctl start network-online.target", "nixos-rebuild " + " ".join(expected),
                                f"cwd {rundir}", "NIXOS_CONFIG unset"]
                  and (status == "0" or "network-online.target was not reached; rebuilding anyway" in p.stderr),
                  f"guest: the wrapper starts network-online.target, then runs nixos-rebuild in its own directory with "
                  f"{'--file ENTRY added' if expected is not args else 'its arguments'} "
                  f"({' '.join(args)}; systemctl exit {status}: {calls}, {p.stderr.strip()!r})")

    # The entry file, in the real store, evaluated as both nixos-rebuild implementations
    # do with --file (nix-build FILE -A config.system.build.toplevel -I nixos-config=TARGET),
    # against a nixpkgs whose nixos/default.nix has the real one's arguments
    # ({ configuration ? import ./lib/from-env.nix "NIXOS_CONFIG" <nixos-config>, system ? ... }),
    # with every other entry point present: NIXOS_CONFIG, a nixos-system entry, a
    # system.nix in the working directory.
    stored, err = nix_eval(nix, lib, "guest.rebuildWrapper.entry", store=True)
    check(err is None and stored == entry, "guest: the entry file is written to the store" + ("" if err is None else ":\n" + err))
    if err is not None:
        return
    with tempfile.TemporaryDirectory(prefix="sprout-entry-") as tmp:
        os.makedirs(os.path.join(tmp, "nixpkgs", "nixos"))
        with open(os.path.join(tmp, "nixpkgs", "nixos", "default.nix"), "w") as f:
            f.write('{ configuration ? (let e = builtins.getEnv "NIXOS_CONFIG"; in if e != "" then e else <nixos-config>),\n'
                    '  system ? builtins.currentSystem }:\n'
                    '{ config.system.build.toplevel = "built " + toString configuration; }\n')
        paths = {}
        for name in ("target", "other", "system"):
            paths[name] = os.path.join(tmp, name + ".nix")
            with open(paths[name], "w") as f:
                f.write("{ }\n")
        with open(os.path.join(tmp, "system.nix"), "w") as f:
            f.write("{ }\n")
        p = subprocess.run([nix, "--eval", "--strict", "--json", entry, "-A", "config.system.build.toplevel",
                            "-I", "nixos-config=" + paths["target"]],
                           capture_output=True, text=True, timeout=60, cwd=tmp,
                           env=dict(NIX_ENV, NIX_PATH=f"nixpkgs={tmp}/nixpkgs:nixos-system={paths['system']}:"
                                                     f"nixos-config={paths['other']}",
                                    NIXOS_CONFIG=paths["other"]))
        check(p.returncode == 0 and json.loads(p.stdout) == "built " + paths["target"],
              f"guest: the entry file builds what -I nixos-config names, not NIXOS_CONFIG, NIX_PATH's nixos-config "
              f"or nixos-system, or ./system.nix ({p.stdout.strip()} {p.stderr.strip()[-400:]})")


def systemd_verify(files, what):
    """systemd-analyze verify on unit files; every diagnostic but the fixture's fake store
    paths (not executable) is a failure. Returns the diagnostics, or None without systemd-analyze."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="sprout-units-") as d:
        paths = []
        for name, text in files.items():
            paths.append(os.path.join(d, name))
            with open(paths[-1], "w") as f:
                f.write(text)
        p = subprocess.run([tool, "verify", "--man=no", *paths], capture_output=True, text=True, timeout=120)
    # (libvirtd.service is NixOS's libvirtd module's; this machine may have none.)
    return [l for l in (p.stdout + p.stderr).splitlines()
            if l.strip() and not re.search(r"Command /nix/store/\S+ is not executable|Unit libvirtd.service not found", l)]


def check_unit_files(example, r):
    """The host module's units of an example, as NixOS renders them: where their programs
    are found, what they are ordered after and hold up, how restarts end, the gc timer."""
    files = r["files"]
    for name, spec in r["specs"].items():
        text = files.get(f"sprout-vm@{name}.service")
        check(text is not None, f"{example}: sprout-vm@{name}.service rendered")
        if text is None:
            continue
        u = parse_unit(text)
        path = unit_environment(u).get("PATH", "")
        check(re.search(r"/nix/store/[0-9a-z]{32}-nix/bin(:|$)", path) is not None,
              f"{example}: {name}: nix.package's bin on the unit's PATH (nix-store, nix: host-built export)")
        state, cache = spec["stateDir"], spec.get("cacheDir", "/var/lib/sprout/cache")
        check(sorted(u["Unit"].get("RequiresMountsFor", [])) == sorted([state, cache]),
              f"{example}: {name}: RequiresMountsFor= its stateDir and the cacheDir ({u['Unit'].get('RequiresMountsFor')})")
        check(u["Unit"].get("StartLimitIntervalSec") == ["600"] and u["Unit"].get("StartLimitBurst") == ["5"]
              and u["Service"].get("RestartPreventExitStatus") == ["2"] and u["Service"].get("Restart") == ["on-failure"],
              f"{example}: {name}: restarts end: at most 5 starts in 600 s ([Unit]), none after exit 2 (bad input)")
    t = parse_unit(files.get("sprout-vms.target", ""))
    check(t.get("Unit", {}).get("DefaultDependencies") == ["false"]
          and t["Unit"].get("Conflicts") == ["shutdown.target"] and t["Unit"].get("Before") == ["shutdown.target"]
          and "After" not in t["Unit"] and "Wants" not in t["Unit"],
          f"{example}: sprout-vms.target has no default dependencies (so it is not ordered after the VMs, nor "
          f"multi-user.target after it: boot and switch wait for no VM), and is stopped at shutdown ({t.get('Unit')})")
    g, gt = parse_unit(files.get("sprout-gc.service", "")), parse_unit(files.get("sprout-gc.timer", ""))
    check(g.get("Service", {}).get("Type") == ["oneshot"]
          and re.fullmatch(r"/nix/store/\S+/bin/sprout gc", g["Service"].get("ExecStart", [""])[0]) is not None,
          f"{example}: sprout-gc.service runs `sprout gc` (oneshot)")
    check(gt.get("Timer", {}).get("OnCalendar") == ["daily"] and gt["Timer"].get("Persistent") == ["true"]
          and gt.get("Install", {}).get("WantedBy") == ["timers.target"],
          f"{example}: sprout-gc.timer: daily, persistent, wanted by timers.target (on by default)")
    diags = systemd_verify(files, example)
    if diags is not None:
        check(diags == [], f"{example}: systemd-analyze verify accepts every unit ({diags})")


def check_unit_tree(what, r, golden, update_golden=False):
    """The unit files and .wants links a host configuration makes (r["files"], r["links"],
    store hashes zeroed) are exactly the directory `golden`: its regular files and its
    symlinks, as they would lie in /etc/systemd/system."""
    if update_golden:
        shutil.rmtree(golden, ignore_errors=True)
        os.makedirs(golden)
        for name, text in r["files"].items():
            with open(os.path.join(golden, name), "w") as f:
                f.write(zero_hashes(text))
        for name, target in r["links"].items():
            os.makedirs(os.path.join(golden, os.path.dirname(name)), exist_ok=True)
            os.symlink(target, os.path.join(golden, name))
    files, links = {}, {}
    for d, _, names in os.walk(golden):
        for n in names:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, golden)
            if os.path.islink(p):
                links[rel] = os.readlink(p)
            else:
                with open(p) as f:
                    files[rel] = f.read()
    rendered = {n: zero_hashes(t) for n, t in r["files"].items()}
    rel = os.path.relpath(golden, HERE)
    for name in sorted(set(files) | set(rendered)):
        check(files.get(name) == rendered.get(name),
              f"{what}: {name}, rendered as NixOS renders it, equals {rel}/{name}")
    check(links == r["links"], f"{what}: the .wants links NixOS makes are those of {rel} ({sorted(r['links'])})")


def render_and_run(nix, lib, sprout):
    """A host-built VM's unit, rendered as NixOS renders it, and its program run under
    exactly the unit's environment (`env -i` + its Environment=): sprout, wrapped as
    package.nix wraps it, with every package it names a real store path of stand-ins
    (tests/nix/fixtures/stubs) that run this machine's tools."""
    r, err = nix_eval(nix, lib, "unitRun", store=True)
    check(err is None, "unitRun evaluates with the real store" + ("" if err is None else ":\n" + err))
    if r is None:
        return
    unit = parse_unit(r["files"]["sprout-vm@t.service"])
    env = unit_environment(unit)
    exec_start = unit["Service"]["ExecStart"][0].split()
    check(exec_start[0] == r["sprout"] + "/bin/sprout" and exec_start[1:] == ["run", "--spec", "/etc/sprout/vms/t.json"],
          f"unitRun: ExecStart runs the package's sprout ({exec_start})")
    try:
        flags = wrapper_flags(r["postFixup"])
    except ValueError as e:
        check(False, str(e))
        return
    seen = wrapped_path(env.get("PATH"), flags)
    for prog in UNIT_PROGRAMS:
        found = which(prog, seen)
        check(found is not None and found.startswith("/nix/store/"),
              f"unit: sprout finds {prog} on its PATH in the unit, in the store ({found})"
              + ("" if found else f"; PATH={seen}"))
    # From a shell: whatever the caller's PATH has, virsh and ssh are found (none at all here).
    for prog in SHELL_PROGRAMS:
        found = which(prog, wrapped_path(None, flags))
        check(found is not None and found.startswith("/nix/store/"),
              f"shell: sprout finds {prog} through its wrapper alone ({found})")
    with tempfile.TemporaryDirectory(prefix="sprout-unit-run-") as tmp:
        wrapper = make_wrapper(os.path.join(tmp, "sprout"), sprout, flags)
        try:
            base, system = nix_system.build_systems(tmp, "sprout-unit-run")
        except (RuntimeError, subprocess.SubprocessError) as e:
            check(False, f"unitRun: building the NixOS-shaped systems with this machine's Nix: {e}")
            return
        for d in ("cfg/hosts/t", "state", "cache", "gcroots"):
            os.makedirs(os.path.join(tmp, d))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", os.path.join(tmp, "base.qcow2"), "64M"], check=True)
        spec = {"version": 1, "name": "t", "base": {"image": os.path.join(tmp, "base.qcow2")},
                "stateDir": os.path.join(tmp, "state"), "cacheDir": os.path.join(tmp, "cache"),
                "gcRootDir": os.path.join(tmp, "gcroots"),
                "sources": {"config": os.path.join(tmp, "cfg"), "self": os.path.join(tmp, "cfg/hosts/t")},
                "specialize": "host", "system": system, "baseSystem": base}
        with open(os.path.join(tmp, "t.json"), "w") as f:
            json.dump(spec, f)
        # ExecStart with the built sprout for the fixture's, prepare (what run does first)
        # for run, and this spec for /etc's.
        argv = ["/usr/bin/env", "-i", *[f"{k}={v}" for k, v in sorted(env.items())],
                wrapper, "prepare", "--spec", os.path.join(tmp, "t.json")]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        closure = os.path.join(tmp, "state", "closure.img")
        check(p.returncode == 0 and os.path.exists(closure) and os.path.exists(os.path.join(tmp, "state", "root.qcow2")),
              "unit: host-built prepare succeeds under exactly the unit's environment (env -i, its PATH): "
              f"closure disk and overlay made (exit {p.returncode}){'' if p.returncode == 0 else ':' + chr(10) + p.stderr[-2000:]}")


def zero_hashes(text):
    """Store paths' hashes depend on file contents; the golden files do not."""
    return re.sub(r"/nix/store/[0-9a-z]{32}-", "/nix/store/" + "0" * 32 + "-", text)


def normalize(value):
    return json.loads(zero_hashes(json.dumps(value, indent=2, sort_keys=True)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nix-instantiate", default="nix-instantiate")
    ap.add_argument("--update-golden", action="store_true")
    ap.add_argument("--sprout", help="the built sprout, for render and run (meson passes it)")
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
        check_unit_files(example, r)
        # The units of a qemu and a libvirt host, as NixOS renders them (unit-security
        # scores these files).
        if example in ("qemu-quickstart", "libvirt"):
            units_dir = os.path.join(GOLDEN, f"{example}-units")
            for name, text in r["files"].items():
                golden = os.path.join(units_dir, name)
                text = zero_hashes(text)
                if args.update_golden:
                    os.makedirs(os.path.dirname(golden), exist_ok=True)
                    with open(golden, "w") as f:
                        f.write(text)
                with open(golden) as f:
                    check(f.read() == text, f"{example}: {name}, rendered as NixOS renders it, equals "
                          f"{os.path.relpath(golden, HERE)}")
            check(sorted(r["files"]) == sorted(os.listdir(units_dir)),
                  f"{example}: the units are those of golden/{example}-units ({sorted(r['files'])})")

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
        check("d /var/lib/sprout/vms/web 0700 root root -" in r["tmpfiles"], "tmpfiles: a qemu VM's state directory, closed to others")
        check("d /var/lib/sprout/vms 0750 root root -" in r["tmpfiles"], "tmpfiles: qemu VMs only: nobody else lists them")

        images = [json.loads(l.split("sprout-test: make-disk-image ", 1)[1].rstrip("'\""))
                  for l in traces["examples.nixos-on-nixos"] if "sprout-test: make-disk-image " in l]
        check(images != [] and all(i["copyChannel"] is False for i in images),
              f"nixos-on-nixos: make-disk-image copies no channel (one nixpkgs per base: nixPath's) ({images})")

    # The pinned nixpkgs leaves a checkout's .git out, and is the same store path as a
    # copy that never had one (a flake input's).
    with tempfile.TemporaryDirectory(prefix="sprout-nixpkgs-") as tmp:
        checkout = os.path.join(tmp, "nixpkgs")
        shutil.copytree(os.path.join(HERE, "fixtures", "nixpkgs"), checkout)
        os.makedirs(os.path.join(checkout, ".git", "objects"))
        with open(os.path.join(checkout, ".git", "HEAD"), "w") as f:
            f.write("ref: refs/heads/master\n")
        with open(os.path.join(checkout, "nixos", ".git"), "w") as f:
            f.write("gitdir: ../.git/modules/nixos\n")
        v, err = nix_eval(nix, lib, "pinnedFromCheckout", store=True, args=("--argstr", "gitNixpkgs", checkout))
        check(err is None, "pinnedFromCheckout evaluates" + ("" if err is None else ":\n" + err))
        g, _ = nix_eval(nix, lib, "guest")
        if v and g:
            pinned = v.removeprefix("nixpkgs=")
            found = [os.path.relpath(os.path.join(d, n), pinned) for d, ds, fs in os.walk(pinned) for n in ds + fs
                     if n == ".git"]
            check(found == [] and os.path.isfile(os.path.join(pinned, "nixos/lib/eval-config.nix")),
                  f"guest: the pinned nixpkgs of a checkout has no .git ({pinned}: {found})")
            check(v == g["service"]["environment"]["NIX_PATH"],
                  f"guest: ... and is the store path a copy without .git gets ({v}, {g['service']['environment']['NIX_PATH']})")

    r = get("examples.libvirt")
    if r:
        check(r["etc"]["sprout/libvirt-domains"]["text"] == "guest\n", "libvirt: domain list for the gc unit")
        # libvirt's unprivileged qemu passes through to the VM's overlay and disks.
        check("d /var/lib/sprout/vms 0711 root root -" in r["tmpfiles"]
              and "d /var/lib/sprout/vms/guest 0711 root root -" in r["tmpfiles"],
              f"libvirt: /var/lib/sprout/vms and the state directory traversable: {r['tmpfiles']}")
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
        check(r["specs"] == {} and r["units"] == {} and r["etc"] == {} and r["targets"] == {} and r["timers"] == {},
              "enable = false: no specs, units, targets or timers")

    # The gc timer: on by default (examples), off with gc.automatic = false, its settings.
    r = get("gcOff")
    if r:
        check("sprout-gc" not in r["timers"] and "sprout-gc" in r["units"],
              "gc.automatic = false: no sprout-gc.timer (the service stays, for a manual start)")
    r = get("gcSettings")
    if r:
        t = parse_unit(r["files"].get("sprout-gc.timer", ""))
        check(t.get("Timer") == {"OnCalendar": ["weekly"], "RandomizedDelaySec": ["0"], "Persistent": ["false"]},
              f"gc.dates, randomizedDelaySec, persistent: the timer's OnCalendar, RandomizedDelaySec, Persistent ({t.get('Timer')})")

    # Assertions fire, each with its message.
    expected = {
        "forwardsWithBridge": 'port forwards need network.mode = "user" (it is "bridge")',
        "sshBoth": "set sshAuthorizedKeys or sshDir, not both",
        "noBase": "set exactly one of base.modules",
        "bothBases": "set exactly one of base.modules",
        "flakeWithoutTarget": "configDir has no flake.nix; set rebuild.target",
        "libvirtWithoutLibvirtd": "needs virtualisation.libvirtd.enable = true",
        "libvirtNetworkOnQemu": 'needs backend = "libvirt"',
        "qemuUserOnLibvirt": 'virtualisation.sprout.vms.t.qemuUser = "root": a libvirt VM\'s qemu runs as libvirt\'s qemu.conf says',
        "privateKeysWithoutSshDir": "allowPrivateKeys only applies to sshDir",
        "badName": "virtualisation.sprout.vms.-x: a VM name is",
        "noSelfDir": 'virtualisation.sprout.vms.t.selfDir: ' + os.path.dirname(os.path.dirname(HERE))
                     + '/examples/qemu-quickstart/vm/hosts/t does not exist (selfDir defaults to configDir + "/hosts/t"',
        "noConfigDir": "virtualisation.sprout.vms.t.configDir: ",
        "hostWithoutConfiguration": 'virtualisation.sprout.vms.t.configuration: specialize = "host" needs the configuration',
        "hostFlake": 'set virtualisation.sprout.vms.t.configuration.',
        "secretsNixPath": "virtualisation.sprout.vms.t.secretsDir is a Nix path or in the Nix store",
        "secretsInStore": "virtualisation.sprout.vms.t.secretsDir is a Nix path or in the Nix store",
        "secretsInConfig": "virtualisation.sprout.vms.t.secretsDir overlaps configDir, selfDir or sshDir",
    }
    bad = get("bad")
    if bad:
        for case, message in expected.items():
            msgs = bad.get(case, [])
            check(len(msgs) == 1 and message in msgs[0], f"assertion {case}: {message!r} (got {msgs})")

    # qemuUser (issue 29): in the spec only when not "dynamic". (Rendering only: sprout
    # check-spec learns the key with the qemu part of issue 29.)
    r = get("qemuUser")
    if r:
        sp = r["specs"]
        check(sp["t"].get("qemuUser") == "vmrunner" and sp["u"].get("qemuUser") == "root"
              and "qemuUser" not in sp["v"] and r["failedAssertions"] == [],
              f"qemuUser: a user name and \"root\" are written into the spec, the default \"dynamic\" is not "
              f"({[sp[n].get('qemuUser') for n in 'tuv']}, {r['failedAssertions']})")
        rw = {n: r["units"].get(f"sprout-vm@{n}", {}).get("serviceConfig", {}).get("ReadWritePaths", "").split()
              for n in "tuv"}
        check("-/i" in rw["v"] and not any("/i" in p for n in "tu" for p in rw[n]),
              f"a libvirt VM's base image outside the store is writable to its unit (define sets its ACL entry), "
              f"a qemu VM's is not ({rw})")
    r = get("minimal")
    if r:
        check("qemuUser" not in r["specs"]["t"], "qemuUser: the default leaves the key out of the spec")
        check("secrets" not in r["specs"]["t"]["sources"], "secretsDir: none by default")
    r = get("secrets")
    if r:
        check(r["specs"]["t"]["sources"].get("secrets") == "/var/lib/sprout/secrets/t" and r["failedAssertions"] == [],
              f"secretsDir: a string path becomes sources.secrets ({r['specs']['t']['sources']}, {r['failedAssertions']})")

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

    # The host's nixpkgs.config in the guest's own evaluation (plain data), and a warning
    # for what cannot be carried.
    r = get("hostNixpkgs")
    if r:
        evals = parse_evals(traces["hostNixpkgs"])
        want = {"allowUnfree": True, "permittedInsecurePackages": ["olddb-1.0"]}
        check(len(evals) == 2 and all(e["nixpkgsConfig"] == [want] for e in evals),
              f"nixpkgs.config: every guest evaluation (base, host-built system) gets its plain values ({evals})")
        w = [x for x in r["warnings"] if "whose nixos-rebuild evaluates with the guest's own nixpkgs" in x]
        check(len(w) == 1 and w[0].startswith("virtualisation.sprout.vms.t specializes in the guest")
              and "nixpkgs.overlays (1)" in w[0] and "nixpkgs.config.packageOverrides, nixpkgs.config.someDrv" in w[0],
              f"nixpkgs: a warning for the guest-specialized VM only, naming the overlays and the keys not carried ({r['warnings']})")
    r = get("minimal")
    if r:
        check(r["warnings"] == [], "nixpkgs: nothing to carry, no warning")
    c, err = nix_eval(nix, lib, "carriedConfig", store=True)
    check(err is None, "carriedConfig evaluates with the real store" + ("" if err is None else ":\n" + err))
    if c:
        check(c["baseConfig"] == {} and c["specConfig"] == {"allowUnfree": True, "permittedInsecurePackages": ["olddb-1.0"]},
              f"guest: the base sets no nixpkgs.config (its pkgs are the host's); a specialized configuration gets the "
              f"carried one ({c['baseConfig']}, {c['specConfig']})")
        check(c["overriddenConfig"] == {"cudaSupport": True} and c["samePinned"],
              "guest: a specialized configuration that sets nixpkgs.config replaces the carried one as a whole (nixpkgs "
              "merges that option without priorities inside), and installs the same pinned module again "
              f"({c['overriddenConfig']})")
        check("nixpkgs.config" not in c["plainPinnedText"], "guest: nothing carried, the pinned module sets no nixpkgs.config")

    # nixos-rebuild 26.05's entry points other than -I nixos-config (/etc/nixos/system.nix,
    # <nixos-system>) are not consulted with --file, which the agent's wrapper passes
    # (check_rebuild_wrapper): a tree with a system.nix, a nixPath with nixos-system are fine.
    r = get("systemNix")
    if r:
        check(r["warnings"] == [], f"classic mode, a configDir with system.nix: no warning ({r['warnings']})")
    r = get("systemNixFlake")
    if r:
        check(r["warnings"] == [], "flake mode, a configDir with system.nix: no warning")
    r = get("nixosSystemInNixPath")
    if r is not None:
        check(r == [], f"guest: nixPath with nixos-system: no assertion ({r})")
    g = get("guest")
    if g:
        check(not any(e.split("=", 1)[0] in ("nixos-system", "nixos-config")
                      for e in g["service"]["environment"]["NIX_PATH"].split(":")),
              "guest: the agent's NIX_PATH names no nixos-system or nixos-config (only -I nixos-config=TARGET does)")

    # Disk space: a base built with diskSize "auto" leaves ~512 MiB; a null diskSize keeps it.
    r = get("smallDisk")
    if r:
        check(len(r["warnings"]) == 1 and "virtualisation.sprout.vms.t.diskSize is null and base.diskSize is \"auto\"" in r["warnings"][0]
              and "No space left on device" in r["warnings"][0],
              f"base.diskSize = \"auto\" and diskSize = null: a warning naming the option ({r['warnings']})")
    for case in ("sizedDisk", "sizedBase", "minimal"):
        r = get(case)
        if r:
            check(r["warnings"] == [], f"{case}: no disk-space warning (diskSize set, a sized base, or a prebuilt base.image)")

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
        check(len(parse_evals(traces["typedBases"])) == 2 and r["specs"]["t"]["base"] == r["specs"]["v"]["base"],
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
        check("network-online.target" not in s["after"] and "network-online.target" not in s["wants"],
              "guest: the agent neither wants nor waits for network-online.target (a host-built or network-less VM "
              "does not wait for a network it does not use)")
        check_rebuild_wrapper(g["rebuildWrapper"], s["path"], nix, lib, args.update_golden)
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
    def check_golden_unit(name, text):
        golden = os.path.join(GOLDEN, name)
        if args.update_golden:
            with open(golden, "w") as f:
                f.write(text)
        with open(golden) as f:
            check(f.read() == text, f"guest: {name}, rendered by our copy of nixpkgs' serviceToUnit "
                  f"(systemd-unit.nix), equals golden/{name}")

    text = get("guestUnit")
    if text is not None:
        check_golden_unit("sprout-agent.service", zero_hashes(text))

    # The early unit: the VM's identity and secrets before sshd and sysinit.target.
    e = get("guestEarly")
    if e is not None:
        text = zero_hashes(e["unit"])
        check_golden_unit("sprout-agent-early.service", text)
        check("DefaultDependencies=false" in text and "WantedBy=sysinit.target" in text
              and all(u in text.split("Before=")[1].split("\n")[0].split()
                      for u in ("sysinit.target", "sshd.service", "sshd-keygen.service", "sshd.socket"))
              and "After=local-fs.target" in text and "Type=oneshot" in text
              and re.search(r"ExecStart=/nix/store/\S+/bin/sprout-agent --early --config /etc/sprout/agent.json", text),
              "guest: the early unit runs `sprout-agent --early` once, before sysinit.target and sshd, after local-fs")
        check(e["hostKeys"] == [{"type": "ed25519", "path": "/etc/ssh/ssh_host_ed25519_key"}],
              "guest: sshd serves the host-minted ed25519 key alone (services.openssh.hostKeys)")
        check(e["offHasUnit"] is False and e["offHostKeys"] is None,
              "guest: identity.enable = false: no early unit, sshd's host keys left alone")

    # The host's units the vm suite's systemd guest runs under a real systemd
    # (tests/vm/build-systemd-guest.sh copies golden/systemd-guest-units/ into the
    # guest's /etc/systemd/system as it is, and test_systemd_guest.py checks that
    # systemd loaded those files): the module's VM units, target and gc units.
    r = get("systemdGuest")
    if r:
        check(r["failedAssertions"] == [] and r["warnings"] == [], "systemdGuest: no failed assertions or warnings")
        check_unit_files("systemdGuest", r)
        check_unit_tree("systemdGuest", r, os.path.join(GOLDEN, "systemd-guest-units"), args.update_golden)
        check(r["links"].get("multi-user.target.wants/sprout-vms.target") == "../sprout-vms.target"
              and all(r["links"].get(f"sprout-vms.target.wants/sprout-vm@{n}.service") == f"../sprout-vm@{n}.service"
                      for n in ("slow", "bad", "badspec")),
              "systemdGuest: multi-user.target wants sprout-vms.target, which wants each VM")

    # Render and run: what a NixOS host runs, in the environment NixOS gives it.
    if args.sprout:
        render_and_run(nix, lib, os.path.abspath(args.sprout))
    else:
        print("note  render and run not run: no --sprout (meson passes it)")

    print(f"\n{len(failures)} failed" if failures else "\nall passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Host-built specialization, measured: a ~200 MB / ~2,000-path closure difference built
by this machine's real Nix, its `sprout export`, and `sprout run` of the TCG test guest
until `specialized`, next to a plain guest-built boot-reboot cycle of the same guest.

usage: host_built_bench.py SPROUT_AGENT SPROUT [--old-agent AGENT] [--vs OLD_SPROUT] [--vs-agent AGENT] [--tag TAG]
                           [--paths N] [--mb MB] [--cycles N] [--fresh N] [--rehits N]
                           [--boots N] [--cache DIR] [--workdir DIR] [--keep] [--skip rfld]
       host_built_bench.py SPROUT_AGENT SPROUT --fast-from WORKDIR [--boots N]

1. Closure: TAG seeds a generator of ~N source trees (sizes log-normal: many small
   files, a few of several MB, some multi-file directories), added to the store by
   `builtins.path`, plus ~N/16 derivations (busybox builder) that refer to chunks of
   them, and two NixOS-shaped toplevels (tests/nixsys's switch-to-configuration): a
   base and a system sharing 30 sources with it. One `nix-build` builds both; the same
   TAG gives the same paths, so a rerun finds them built (--cache keeps the generated
   sources). Build time is printed apart: it is Nix's work, not sprout's.
2. `sprout export` of the host-built spec: fresh (empty cacheDir) --fresh rounds, each
   taking turns (the order rotating) with `nix copy --to file://` of the system alone
   (the yardstick), reading the difference's paths once (`tar | cat`, the limit) and
   --vs OLD_SPROUT's fresh export; the closure image's own steps from its log line
   (Nix's database, NARs into the image, commit). Once: Nix's serialisation of the
   paths in one process (`nix-store --export`) and `nix-store --dump` of each path
   (one process a path; --skip d leaves it out). An unchanged re-export --rehits
   times; the closure image's size against the NAR bytes.
3. `sprout run` of the test guest (real agent, Debian's nix on a base qcow2 that holds
   the base's closure in a real store), 1024 MB: time from starting `sprout run` to
   `specialized` in events.jsonl, host-built (boot 1 imports, switches, reboots; boot 2
   reports specialized) and guest-built (the stand-in nixos-rebuild), in turn, --cycles
   times each; the import+switch seconds of the `rebuilt` event, the intervals between
   events (host receive times), log line counts, qemu's peak RSS. With --vs, the same
   host-built VM is also exported and run by OLD_SPROUT (its own closure disk); with
   --vs-agent, run again with another agent in the guest (this sprout's disk).
3b. The guest's limits, in one more host-built run whose agent runs wrappers instead
   of nix (bench-tools on the base image): before the import, with the guest's caches
   dropped before each, `cp -a` of the closure disk's NARs into the store's disk +
   `sync`, and `nix hash file` of every NAR (Nix's SHA-256); then the import itself under
   `time` (user and system CPU) and strace counting its sync calls. --skip l leaves it
   out. The timed runs' import is reported against the in-guest copy.
4. Ten specs with the same system and base, one cacheDir: one closure image.
5. The already-specialized boot (the agent's timingsMs.total and cpuMs from its
   `specialized` event) on the state disks the `sprout run`s left: host-built VM,
   guest-built VM, and --old-agent (the agent from before host-built mode) on a
   guest-built VM it specialized itself, boots alternating, --boots each.
   The order of the variants rotates from round to round. --fast-from WORKDIR boots
   them again on the disks a finished run left in its --workdir.
Prints tables; exits 0 unless something failed outright. No timed assertions.
"""

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for sub in ("tests/vm", "tests/nixsys", "tests/agent", "tests/runtime"):
    sys.path.insert(0, os.path.join(HERE, "..", sub))
import guestlib  # noqa: E402
import nix_system  # noqa: E402
from runtime_lib import qemu_pids  # noqa: E402
from test_host_built_vm import NIX_TOOLS, nix_tools  # noqa: E402

SHARED = 30  # sources in both the base's and the system's closure

AGENT_CONFIG = {"version": 1,
                "mountPoints": {"config": "/etc/nixos", "self": "/etc/nixos/hosts/self", "ssh": "/root/.ssh"},
                "rebuild": {"command": ["nixos-rebuild", "boot"], "timeoutSeconds": 3600, "maxAttempts": 3,
                            "respecializeOnChange": True},
                "rebootCommand": ["systemctl", "reboot"], "stateDir": "/var/lib/sprout",
                "diskWaitSeconds": 4, "flushTimeoutSeconds": 3}

NIX = r'''
{ tag }:
let
  bb = builtins.path { path = ./bb; name = "busybox-${tag}"; };
  sh = "${bb}/busybox";
  mk = name: attrs: script: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = sh;
    args = [ "sh" "-e" "-c" script ];
    PATH = "${bb}";
  } // attrs);
  names = import ./sources.nix;
  src = n: builtins.path { path = ./src + "/${n}"; name = n; };
  all = map src names;
  shared = builtins.genList (i: builtins.elemAt all i) SHARED;
  own = builtins.genList (i: builtins.elemAt all (i + SHARED)) (builtins.length all - SHARED);
  chunk = 16;
  wrapper = i: let deps = builtins.genList (j: builtins.elemAt own (i * chunk + j)) chunk; in
    mk "wrapper-${toString i}-${tag}" { deps = toString deps; passAsFile = [ "deps" ]; } ''
      mkdir -p $out/bin $out/nix-support
      cp $depsPath $out/nix-support/propagated-build-inputs
      printf '#!/bin/sh\nexec %s "$@"\n' ${builtins.elemAt deps 0} >$out/bin/w${toString i}
      chmod +x $out/bin/w${toString i}
    '';
  wrappers = builtins.genList wrapper (builtins.length own / chunk);
  toplevel = name: deps: mk name { deps = toString deps; passAsFile = [ "deps" ]; } ''
    mkdir -p $out/bin
    cp ${./switch-to-configuration} $out/bin/switch-to-configuration
    chmod 555 $out/bin/switch-to-configuration
    echo ${name} >$out/name
    echo sprout-${tag} >$out/nixos-version
    cp $depsPath $out/dependencies
  '';
in {
  base = toplevel "nixos-system-base-${tag}" shared;
  system = toplevel "nixos-system-web-${tag}" (shared ++ own ++ wrappers);
}
'''.replace("SHARED", str(SHARED))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def mmm(xs, fmt="{:.2f}"):
    if not xs:
        return "-"
    return f"{fmt.format(median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))}, n={len(xs)})"


# -- 1. the closure --------------------------------------------------------------------

def generate_sources(d, tag, paths, mb):
    """Deterministic (seeded by tag) source trees: one directory per store path."""
    done = os.path.join(d, f".done-{paths}-{mb}")
    if os.path.exists(done):
        return sorted(os.listdir(os.path.join(d, "src")))
    shutil.rmtree(os.path.join(d, "src"), ignore_errors=True)
    rng = random.Random(f"sprout-host-built-{tag}")
    n = paths
    sizes = [min(rng.lognormvariate(9.5, 2.0), 24 << 20) for _ in range(n)]
    scale = (mb << 20) * 0.97 / sum(sizes)
    sizes = [max(64, int(s * scale)) for s in sizes]
    names = []
    for i, size in enumerate(sizes):
        name = f"pkg-{i:04d}-{tag}"
        root = os.path.join(d, "src", name)
        nfiles = rng.randint(2, 40) if size > 65536 and rng.random() < 0.4 else 1
        for k in range(nfiles):
            sub = ("lib", "share", "bin")[k % 3] if nfiles > 1 else "share"
            os.makedirs(os.path.join(root, sub), exist_ok=True)
            p = os.path.join(root, sub, f"f{k}")
            with open(p, "wb") as f:
                f.write(rng.randbytes(size // nfiles))
            if sub == "bin":
                os.chmod(p, 0o755)
        names.append(name)
    open(done, "w").close()
    return names


def build_closure(cache, tag, paths, mb):
    """Returns (base, system, seconds to generate, seconds nix-build took)."""
    d = os.path.join(cache, f"closure-{tag}")
    os.makedirs(os.path.join(d, "bb"), exist_ok=True)
    shutil.copy(nix_system.BUSYBOX, os.path.join(d, "bb", "busybox"))
    with open(os.path.join(d, "switch-to-configuration"), "w") as f:
        f.write(nix_system.SWITCH)
    # Leave room for the wrappers and toplevels in the path count.
    n_src = paths - (paths - SHARED) // 17 - 2 + SHARED
    t0 = time.monotonic()
    names = generate_sources(d, tag, n_src, mb)
    t_gen = time.monotonic() - t0
    with open(os.path.join(d, "sources.nix"), "w") as f:
        f.write("[\n" + "".join(f'  "{n}"\n' for n in names) + "]\n")
    with open(os.path.join(d, "systems.nix"), "w") as f:
        f.write(NIX)
    t0 = time.monotonic()
    r = subprocess.run(["nix-build", os.path.join(d, "systems.nix"), "-A", "base", "-A", "system",
                        "--no-out-link", "--max-jobs", "2", "--argstr", "tag", tag],
                       capture_output=True, text=True, env=nix_system.nix_env(), timeout=3600)
    t_build = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"nix-build failed:\n{r.stderr[-3000:]}")
    base, system = r.stdout.split()[-2:]
    return base, system, t_gen, t_build


def path_infos(path):
    r = nix_system.nix3("path-info", "--json", "-r", path)
    return {i["path"]: i for i in json.loads(r.stdout)}


# -- specs and export -------------------------------------------------------------------

def trees(work):
    t = os.path.join(work, "trees")
    if os.path.isdir(t):
        return t
    cfg, slf, ssh = (os.path.join(t, x) for x in ("config", "self", "ssh"))
    os.makedirs(os.path.join(cfg, "hosts", "self"))
    os.makedirs(slf)
    os.makedirs(ssh)
    with open(os.path.join(cfg, "configuration.nix"), "w") as f:
        f.write("{ ... }: { imports = [ ./hosts/self/configuration.nix ]; }\n")
    with open(os.path.join(slf, "configuration.nix"), "w") as f:
        f.write('{ ... }: { networking.hostName = "web"; }\n')
    with open(os.path.join(ssh, "authorized_keys"), "w") as f:
        f.write("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0000000000000000000 bench\n")
    return t


def write_spec(work, name, mode, cache_dir, base=None, system=None, guest=None, base_image=None):
    t = trees(work)
    spec = {"version": 1, "name": name,
            "base": {"image": base_image or "/nonexistent/base.qcow2", "format": "qcow2"},
            "stateDir": os.path.join(work, "vms", name), "cacheDir": cache_dir,
            "gcRootDir": os.path.join(work, "gcroots"),
            "sources": {"config": os.path.join(t, "config"), "self": os.path.join(t, "self"),
                        "ssh": os.path.join(t, "ssh")},
            "rebuild": {"timeoutSeconds": 3600},
            "memory": 1024, "vcpus": 1, "network": {"mode": "none"},
            "qemuArgs": ["-global", "virtio-blk-pci.serial=sprout-test-state"],
            "shutdownTimeoutSeconds": 30}
    if guest:
        spec["kernel"] = {"path": guest[0], "initrd": guest[1],
                          "cmdline": "console=ttyS0 quiet panic=-1 sprout_test.after=poweroff"}
    if mode == "host":
        spec.update({"specialize": "host", "system": system, "baseSystem": base})
    path = os.path.join(work, "specs", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(spec, f, indent=2)
    return path, spec


STEPS_RE = re.compile(r"built closure image .* in ([0-9.]+) s \(Nix's database ([0-9.]+) s, image ([0-9.]+) s, "
                      r"commit ([0-9.]+) s\)")


def export(sprout, spec, steps=None):
    """One `sprout export`, timed from outside. With `steps` (a dict of lists), the closure
    image's own steps from its log line are appended to it, when it prints them."""
    t0 = time.monotonic()
    r = subprocess.run([sprout, "export", "--spec", spec, "--json"], capture_output=True, text=True,
                       timeout=1800, env=nix_system.nix_env())
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"sprout export {spec} failed: {r.stderr[-3000:]}")
    m = STEPS_RE.search(r.stderr)
    if steps is not None and m:
        for k, v in zip(("closure image", "  Nix's database (queries)", "  NARs into the image", "  commit (fsync)"),
                        m.groups()):
            steps.setdefault(k, []).append(float(v))
    return dt, json.loads(r.stdout)


# -- the limits ----------------------------------------------------------------------------

def timed(argv_or_shell, shell=False):
    t0 = time.monotonic()
    subprocess.run(argv_or_shell, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=3600, env=nix_system.nix_env())
    return time.monotonic() - t0


def read_once(paths_file):
    """Reading the closure's paths once: tar of them into a pipe (GNU tar does not read
    files it writes to /dev/null itself)."""
    return timed(f"tar -cf - -T {paths_file} | cat >/dev/null", shell=True)


def nix_export_once(paths):
    """Nix's own serialisation of every path, in one process (`nix-store --export`)."""
    return timed(["sh", "-c", 'nix-store --export "$@" | cat >/dev/null', "sh"] + paths)


def dump_each(paths):
    """`nix-store --dump` of each path into /dev/null: one Nix process a path."""
    return timed(["sh", "-c", 'for p; do nix-store --dump "$p" >/dev/null || exit 1; done', "sh"] + paths)


# The guest's limits: wrappers the agent runs instead of Debian's nix (its nixBinDir) in
# one extra host-built run. The import's first Nix call (this agent's `nix-store
# --check-validity --print-invalid`; an older agent's `nix copy --from file://DIR`) first copies DIR's
# NARs into a directory of the store's disk (`cp -a` + `sync`), hashes them all with
# Nix's own SHA-256 (`nix hash file`), each with cold caches, then runs the real import
# under `time` and strace counting the sync calls alone (seccomp-bpf: the other calls
# run untraced). Every figure is printed as a line the agent streams as a log event.
BENCH_TOOLS = "/persist/bench-tools/bin"
WRAPPER = r"""#!/bin/sh
real=/persist/nix-tools/bin
export LD_LIBRARY_PATH=/persist/nix-tools/lib:/persist/bench-tools/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
tool=${0##*/}
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
src=; prev=
for a in "$@"; do [ "$prev" = --from ] && src=${a#file://}; prev=$a; done
limits() {  # the copy and the hash of the closure disk's NARs, caches dropped before each
  n=$(ls "$src/nar" | wc -l); kb=$(du -sk "$src/nar" | cut -f1)
  echo "sprout-bench: closure disk: $n NARs, $kb KiB"
  cold; t=$(now)
  cp -a "$src/nar" /nix/store/.sprout-bench-copy && sync
  echo "sprout-bench: limit cp: $(since $t) s (cp -a of the NARs into the store's disk, then sync)"
  rm -rf /nix/store/.sprout-bench-copy; cold; t=$(now)
  "$real/nix" --extra-experimental-features nix-command hash file --type sha256 "$src"/nar/*.nar >/dev/null
  echo "sprout-bench: limit hash: $(since $t) s (nix hash file --type sha256 of every NAR)"
}
# This agent's import (sprout-agent --import-closure) runs nix-store once it knows
# what the store lacks (to ask about paths already there) or at its end (--load-db, the
# only call of a fresh import): the limits run then, once, caches dropped before each.
if [ "$tool" = nix-store ] && { [ "$1 $2" = "--check-validity --print-invalid" ] || [ "$1" = --load-db ]; } \
   && [ ! -e /tmp/.sprout-bench-limits ]; then
  touch /tmp/.sprout-bench-limits
  src=/run/sprout/closure
  limits
  cold
  exec "$real/$tool" "$@"
fi
if [ "$tool" = nix ] && [ -n "$src" ]; then
  limits
  cold; t=$(now)
  time /persist/bench-tools/bin/strace -f -c -o /tmp/strace.txt --seccomp-bpf     -e trace=fsync,fdatasync,sync,syncfs,sync_file_range,msync "$real/nix" "$@" 2>&1 | grep -v "^copying path"
  rc=$?
  echo "sprout-bench: import: $(since $t) s"
  sed 's/^/sprout-bench: strace: /' /tmp/strace.txt
  exit $rc
fi
exec "$real/$tool" "$@"
"""


def bench_tools(dest):
    """The wrappers above, and strace with its libraries."""
    os.makedirs(os.path.join(dest, "bin"))
    os.makedirs(os.path.join(dest, "lib"))
    for t in ("nix", "nix-store", "nix-env"):
        with open(os.path.join(dest, "bin", t), "w") as f:
            f.write(WRAPPER)
        os.chmod(os.path.join(dest, "bin", t), 0o755)
    strace = shutil.which("strace")
    if strace:
        shutil.copy(strace, os.path.join(dest, "bin", "strace"))
        out = subprocess.run(["ldd", strace], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split("=>")
            lib = parts[1].split()[0] if len(parts) == 2 else ""
            if lib.startswith("/"):
                shutil.copy(lib, os.path.join(dest, "lib", os.path.basename(lib)))


def image(out, role):
    return next(i for i in out["images"] if i["role"] == role)


def allocated(path):
    return os.stat(path).st_blocks * 512


# -- the guest ----------------------------------------------------------------------------

def build_base_image(work, base):
    """A qcow2 whose filesystem is what the test guest's /init expects of its state disk:
    a real Nix store + database with the base's closure, and Debian's nix."""
    root = os.path.join(work, "base-root")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    nix_system.nix3("copy", "--no-check-sigs", "--to", root, base)
    nix_tools(os.path.join(root, "nix-tools"))
    bench_tools(os.path.join(root, "bench-tools"))
    raw = guestlib.make_ext4_from_dir(root, "sprout-state", os.path.join(work, "base.raw"), size="2G")
    q = os.path.join(work, "base.qcow2")
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, q], check=True, timeout=300)
    os.unlink(raw)
    shutil.rmtree(root, ignore_errors=True)
    return q


def read_events(state_dir):
    out = []
    try:
        with open(os.path.join(state_dir, "events.jsonl")) as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("source") != "host":  # the guest's events only
                    out.append(e)
    except OSError:
        pass
    return out


_QEMU = {}


def qemu_hwm(marker):
    """Peak resident set (kB) of the qemu whose command line names `marker`: the guest
    memory it touched plus qemu's own (TCG's translation cache included)."""
    pid = _QEMU.get(marker)
    if pid is None:
        pids = qemu_pids(marker)
        if not pids:
            return 0
        pid = _QEMU[marker] = pids[0]
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(l.split()[1]) for l in f if l.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def sprout_run(sprout, spec_path, spec, timeout):
    """`sprout run` from a fresh overlay until the guest powers off after `specialized`.
    Returns a dict of figures (seconds from the start of `sprout run`)."""
    state = spec["stateDir"]
    shutil.rmtree(state, ignore_errors=True)
    _QEMU.pop(state, None)
    t0 = time.monotonic()
    t0_unix_ms = time.time() * 1000
    logf = open(os.path.join(os.path.dirname(spec_path), f"{spec['name']}.run.log"), "wb")
    p = subprocess.Popen([sprout, "run", "--spec", spec_path], stdin=subprocess.DEVNULL, stdout=logf,
                         stderr=subprocess.STDOUT, start_new_session=True, env=nix_system.nix_env())
    seen, hwm = None, 0
    try:
        while time.monotonic() - t0 < timeout:
            hwm = max(hwm, qemu_hwm(state))
            ev = read_events(state)
            if any(e.get("phase") == "specialized" for e in ev):
                seen = time.monotonic() - t0
                break
            if any(e.get("phase") == "failed" for e in ev) or p.poll() is not None:
                break
            time.sleep(0.05)
        while p.poll() is None and time.monotonic() - t0 < timeout + 120:
            hwm = max(hwm, qemu_hwm(state))
            time.sleep(0.2)
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        logf.close()
    ev = read_events(state)
    if seen is None:
        last = [e for e in ev if e.get("phase") != "log"][-3:]
        raise RuntimeError(f"{spec['name']}: no specialized event (rc {p.returncode}); last: {json.dumps(last)[:2000]}")

    def at(phase, nth=0):
        xs = [e for e in ev if e.get("phase") == phase]
        return (xs[nth]["hostTimeMs"] - t0_unix_ms) / 1000 if len(xs) > nth and "hostTimeMs" in xs[nth] else None

    rebuilt = next((e for e in ev if e.get("phase") == "rebuilt"), {})
    logs = [e for e in ev if e.get("phase") == "log"]
    steps = {}
    for e in logs:
        m = e.get("message", "")
        if m.startswith("sprout-agent: ") and "hostTimeMs" in e:
            steps[m.split(":")[1].strip()] = (e["hostTimeMs"] - t0_unix_ms) / 1000
    sp = [e for e in ev if e.get("phase") == "specialized"][-1]
    return {"start": 0.0, "toSpecialized": seen, "rc": rc, "firstStarting": at("starting"), "rebuilding": at("rebuilding"),
            "rebuilt": at("rebuilt"), "rebooting": at("rebooting"), "secondStarting": at("starting", 1),
            "specializedEvent": at("specialized"), "rebuiltSeconds": rebuilt.get("detail", {}).get("seconds"),
            "logEvents": len(logs), "copyingLines": sum(1 for e in logs if e.get("message", "").startswith("copying path")),
            "qemuPeakRssMB": hwm / 1024, "steps": steps, "specialized": sp.get("detail", {}), "console": os.path.join(state, "console.log"),
            "overlay": os.path.join(state, "root.qcow2")}


def rebuild_log_lines(overlay, work):
    raw = os.path.join(work, "overlay-read.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", overlay, raw], check=True, timeout=600)
    try:
        data = guestlib.read_file_from_ext4(raw, "/var-lib-sprout/rebuild.log")
        return len(data.splitlines())
    except RuntimeError:
        return None
    finally:
        os.unlink(raw)


def guest_mem(console):
    """MemTotal/MemAvailable lines if the console shows any (the test guest prints none today)."""
    try:
        with open(console, errors="replace") as f:
            return [l.strip() for l in f if "MemAvailable" in l or "MemTotal" in l][:4]
    except OSError:
        return []


def span(r, a, b):
    def t(k):
        return r["steps"].get(k) if k in r["steps"] else r.get(k)
    x, y = t(a), t(b)
    return y - x if x is not None and y is not None else None


def breakdown_keys(mode):
    """Intervals of one `sprout run`, from the host's receive times of the events."""
    if mode.startswith("host"):
        work = [("import", ("importing the closure", "checking the imported system")),
                ("check validity", ("checking the imported system", "setting the system profile")),
                ("set profile (nix-env)", ("setting the system profile", "switch-to-configuration boot")),
                ("switch-to-configuration", ("switch-to-configuration boot", "rebuilt"))]
    else:
        work = [("nixos-rebuild (stand-in)", ("rebuilding", "rebuilt"))]
    return ([("start to agent starting", ("start", "firstStarting"))] + work +
            [("reboot to agent starting", ("rebooting", "secondStarting")),
             ("agent to specialized", ("secondStarting", "specializedEvent"))])


def fast_boot(kernel, initrd, state, disks, work, name):
    g = guestlib.Guest(kernel, initrd, state_disk=state, disks=disks, timeout=150, workdir=work, name=name,
                       memory=1024)
    with g:
        g.wait(140)
        time.sleep(0.2)
        lines = list(g.status.lines) if g.status else []
    sp = [l for l in lines if l.get("phase") == "specialized"]
    if not sp:
        raise RuntimeError(f"{name}: no specialized\n{g.console_tail(40)}")
    return sp[-1]["detail"], g


def disks_of(state_dir, host_built):
    disks = [(os.path.join(state_dir, "config.img"), "sprout-config", True),
             (os.path.join(state_dir, "self.img"), "sprout-self", True),
             (os.path.join(state_dir, "ssh.img"), "sprout-ssh", True)]
    if host_built:
        disks.append((os.path.join(state_dir, "closure.img"), "sprout-closure", True))
    return disks


def fast_loop(variants, boots, work):
    """Boots each variant `boots` times, one boot of each per round, the order rotated
    from round to round so that no variant always follows the same one."""
    fast = {v[0]: [] for v in variants}
    for n in range(boots):
        for j in range(len(variants)):
            label, (k, i), raw, disks = variants[(n + j) % len(variants)]
            d, g = fast_boot(k, i, raw, disks, work, f"fast{n}-{j}")
            if d.get("action") != "already-specialized":
                raise RuntimeError(f"{label}: boot {n} was {d.get('action')}, not already-specialized")
            fast[label].append(d)
        log(f"fast path round {n + 1} of {boots} done (load {os.getloadavg()[0]:.1f})")
    return fast


def print_fast(fast):
    if not fast:
        return
    print("already-specialized boot, agent's own figures, ms: median (min-max, n)")
    for label, ds in fast.items():
        print(f"  {label}:")
        for k in ("find", "mount", "decide", "report", "total"):
            print(f"    {k:<18} {mmm([d['timingsMs'][k] for d in ds], '{:.1f}')}")
        for k in ("total", "run", "runWithoutMounts"):
            print(f"    cpu.{k:<14} {mmm([d['cpuMs'][k] for d in ds if k in d.get('cpuMs', {})], '{:.1f}')}")
        print(f"    mounts             {sorted(ds[-1].get('mounts', {}))}")


def fast_again(work, boots):
    """--fast-from: the already-specialized boots again, on the disks a finished run
    left in its --workdir (its state disks are already specialized)."""
    g = lambda d: (os.path.join(work, d, "vmlinuz"), os.path.join(work, d, "initrd.img"))  # noqa: E731
    variants = [("new agent, host-built VM", g("guest"), os.path.join(work, "fast-host.raw"),
                 disks_of(os.path.join(work, "vms", "hostvm"), True)),
                ("new agent, guest-built VM", g("guest"), os.path.join(work, "fast-guest.raw"),
                 disks_of(os.path.join(work, "vms", "guestvm"), False))]
    if os.path.exists(os.path.join(work, "fast-old.raw")):
        variants.append(("old agent (6aa83df), guest-built VM", g("guest-old"), os.path.join(work, "fast-old.raw"),
                         disks_of(os.path.join(work, "vms", "guestvm"), False)))
    fast = fast_loop(variants, boots, work)
    print(f"\n=== already-specialized boots again, on the disks in {work} ===")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; qemu TCG")
    print_fast(fast)
    with open(os.path.join(work, f"fast-again-{int(time.time())}.json"), "w") as f:
        json.dump(fast, f, indent=1)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("agent")
    ap.add_argument("sprout")
    ap.add_argument("--old-agent", help="sprout-agent from before host-built mode (6aa83df)")
    ap.add_argument("--tag", default="hb1")
    ap.add_argument("--paths", type=int, default=2000)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--cycles", type=int, default=1, help="sprout run cycles per mode")
    ap.add_argument("--fresh", type=int, default=3, help="fresh exports")
    ap.add_argument("--rehits", type=int, default=9, help="unchanged re-exports")
    ap.add_argument("--boots", type=int, default=7, help="already-specialized boots per variant")
    ap.add_argument("--cache", default=os.path.join(guestlib.default_cache_dir(), "host-built-bench"))
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--fast-from", metavar="WORKDIR",
                    help="only the already-specialized boots, again, on a finished run's --workdir")
    ap.add_argument("--skip", default="",
                    help="letters of parts to skip: r (sprout run and fast path), f (fast path), "
                         "l (the guest's limits run), d (nix-store --dump of each path, ~1 min)")
    ap.add_argument("--vs", metavar="OLD_SPROUT", help="a second sprout whose fresh export takes turns with this one's")
    ap.add_argument("--vs-agent", metavar="OLD_AGENT",
                    help="a second sprout-agent: the same host-built VM (this sprout's export) also runs with it, "
                         "cycles taking turns (the import before and after, in one run)")
    args = ap.parse_args()
    agent, sprout = os.path.abspath(args.agent), os.path.abspath(args.sprout)
    if args.fast_from:
        return fast_again(args.fast_from, args.boots)
    os.makedirs(args.cache, exist_ok=True)
    work = args.workdir or tempfile.mkdtemp(prefix="sprt-hb-", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    res = {}
    try:
        # 1. closure
        log(f"building the closure (tag {args.tag}, ~{args.paths} paths, ~{args.mb} MB)")
        base, system, t_gen, t_build = build_closure(args.cache, args.tag, args.paths, args.mb)
        sys_info, base_info = path_infos(system), path_infos(base)
        diff = sorted(set(sys_info) - set(base_info))
        nar_bytes = sum(sys_info[p]["narSize"] for p in diff)
        sizes = sorted(sys_info[p]["narSize"] for p in diff)
        refs = sum(len(sys_info[p].get("references", [])) for p in diff)
        log(f"base {base}\n  system {system}\n  generate {t_gen:.1f} s, nix-build {t_build:.1f} s; "
            f"difference: {len(diff)} paths, {nar_bytes / 1e6:.1f} MB of NAR")

        # 2. export
        cache_dir = os.path.join(work, "cache")
        spec0, _ = write_spec(work, "vm0", "host", cache_dir, base, system)
        fresh, nix_alone, old_fresh, tar_once, out = [], [], [], [], None
        steps, old_steps = {}, {}
        diff_file = os.path.join(work, "difference.txt")
        with open(diff_file, "w") as f:
            f.write("".join(p + "\n" for p in diff))
        old_spec = write_spec(work, "old0", "host", os.path.join(work, "old-cache"), base, system)[0] if args.vs else None

        def fresh_new():
            shutil.rmtree(cache_dir, ignore_errors=True)
            shutil.rmtree(os.path.join(work, "vms", "vm0"), ignore_errors=True)
            dt, o = export(sprout, spec0, steps)
            if image(o, "closure").get("cacheHit"):
                log("WARNING: a fresh export reports a closure cache hit")
            fresh.append(dt)
            res["out"] = o

        def fresh_old():
            shutil.rmtree(os.path.join(work, "old-cache"), ignore_errors=True)
            shutil.rmtree(os.path.join(work, "vms", "old0"), ignore_errors=True)
            old_fresh.append(export(os.path.abspath(args.vs), old_spec, old_steps)[0])

        def copy_alone():
            # Nix's part alone: the same nix copy sprout ran before, into an empty directory.
            nc = os.path.join(work, "nix-copy-alone")
            shutil.rmtree(nc, ignore_errors=True)
            nix_alone.append(timed(["nix", "--extra-experimental-features", "nix-command", "copy", "--to",
                                    f"file://{nc}?compression=none", system]))
            shutil.rmtree(nc, ignore_errors=True)

        turns = [fresh_new, copy_alone, lambda: tar_once.append(read_once(diff_file))] + ([fresh_old] if args.vs else [])
        for i in range(args.fresh):
            for k in range(len(turns)):  # each round in another order
                turns[(i + k) % len(turns)]()
            log(f"round {i + 1}: fresh export {fresh[-1]:.2f} s, nix copy alone {nix_alone[-1]:.2f} s, "
                f"read once {tar_once[-1]:.2f} s" + (f", --vs {old_fresh[-1]:.2f} s" if args.vs else ""))
        out = res["out"]
        export_once = nix_export_once(diff)
        each = None if "d" in args.skip else dump_each(diff)
        log(f"nix-store --export of the {len(diff)} paths, one process: {export_once:.2f} s; nix-store --dump of each: "
            f"{'skipped' if each is None else f'{each:.1f} s'}")
        clo_img = os.path.realpath(os.path.join(work, "vms", "vm0", "closure.img"))
        clo = json.loads(guestlib.read_file_from_ext4(clo_img, "/sprout-closure.json"))
        img_apparent, img_alloc = os.path.getsize(clo_img), allocated(clo_img)
        rehit = []
        for i in range(args.rehits):
            dt, o = export(sprout, spec0)
            rehit.append(dt)
            if not image(o, "closure").get("cacheHit"):
                log(f"WARNING: re-export {i} reports no closure cache hit: {json.dumps(image(o, 'closure'))}")
        log(f"unchanged re-export: {mmm(rehit)} s")

        # 4. ten VMs, one closure image, from an empty cache (the first export is fresh)
        ten = []
        shutil.rmtree(cache_dir, ignore_errors=True)
        for i in range(10):
            sp, _ = write_spec(work, f"vm{i}", "host", cache_dir, base, system)
            dt, o = export(sprout, sp)
            c = image(o, "closure")
            link = os.path.join(work, "vms", f"vm{i}", "closure.img")
            ten.append({"name": f"vm{i}", "seconds": dt, "cacheHit": c.get("cacheHit"),
                        "image": os.path.realpath(link), "islink": os.path.islink(link),
                        "ino": os.stat(link).st_ino})
            if i == 0:
                fresh.append(dt)
        closure_images = sorted(f for f in os.listdir(cache_dir) if "closure" in f)
        cache_du = subprocess.run(["du", "-sk", cache_dir], capture_output=True, text=True).stdout.split()[0]

        # 3. sprout run
        runs = {"host": [], "guest": [], "host-vs": [], "host-old-agent": []}
        fast = {}
        if "r" not in args.skip:
            conf = os.path.join(work, "agent.json")
            with open(conf, "w") as f:
                json.dump(dict(AGENT_CONFIG, nixBinDir=NIX_TOOLS), f)
            log("building the test guest and the base image")
            guest = guestlib.build_guest(agent, conf, os.path.join(work, "guest"))
            base_q = build_base_image(work, base)
            rcache = os.path.join(work, "run-cache")
            specs = {"host": write_spec(work, "hostvm", "host", rcache, base, system, guest, base_q),
                     "guest": write_spec(work, "guestvm", "guest", rcache, guest=guest, base_image=base_q)}
            binary = {"host": sprout, "guest": sprout}
            if args.vs_agent:  # the same host-built VM and export, another agent in the guest
                oaguest = guestlib.build_guest(os.path.abspath(args.vs_agent), conf, os.path.join(work, "guest-old-agent"))
                specs["host-old-agent"] = write_spec(work, "hostoa", "host", rcache, base, system, oaguest, base_q)
                binary["host-old-agent"] = sprout
            if args.vs:  # the same host-built VM, exported and run by the other sprout
                specs["host-vs"] = write_spec(work, "hostvs", "host", os.path.join(work, "run-cache-vs"), base,
                                              system, guest, base_q)
                binary["host-vs"] = os.path.abspath(args.vs)
            for m in specs:  # exports outside the timed runs too (the cache is warm in both)
                export(binary[m], specs[m][0])
            for c in range(args.cycles):
                for mode in specs:
                    log(f"sprout run, {mode}-built, cycle {c + 1}")
                    r = sprout_run(binary[mode], *specs[mode], timeout=3600)
                    runs[mode].append(r)
                    log(f"  specialized after {r['toSpecialized']:.1f} s (rebuilt.seconds {r['rebuiltSeconds']}, "
                        f"{r['logEvents']} log events)")
            for mode in specs:
                r = runs[mode][-1]
                r["rebuildLogLines"] = rebuild_log_lines(r["overlay"], work)
                r["mem"] = guest_mem(r["console"])

            # 3b. the guest's limits, in one more host-built run with the bench wrappers
            if "l" not in args.skip:
                lconf = os.path.join(work, "agent-limits.json")
                with open(lconf, "w") as f:
                    json.dump(dict(AGENT_CONFIG, nixBinDir=BENCH_TOOLS), f)
                lguest = guestlib.build_guest(agent, lconf, os.path.join(work, "guest-limits"))
                lspec = write_spec(work, "limvm", "host", rcache, base, system, lguest, base_q)
                export(sprout, lspec[0])
                log("sprout run with the bench wrappers: the guest's limits")
                r = sprout_run(sprout, *lspec, timeout=3600)
                limits = [e.get("message", "") for e in read_events(lspec[1]["stateDir"]) if e.get("phase") == "log"]
                res["guestLimits"] = [m for m in limits if m.startswith("sprout-bench:") or
                                      re.match(r"^(real|user|sys)\s", m)]
                res["guestLimits"].append(f"sprout-bench: (that run: specialized after {r['toSpecialized']:.1f} s)")

            # 5. fast path
            if "f" not in args.skip:
                variants = []
                for mode in ("host", "guest"):
                    raw = os.path.join(work, f"fast-{mode}.raw")
                    subprocess.run(["qemu-img", "convert", "-O", "raw", runs[mode][-1]["overlay"], raw],
                                   check=True, timeout=600)
                    disks = disks_of(specs[mode][1]["stateDir"], mode == "host")
                    variants.append((f"new agent, {mode}-built VM", guest, raw, disks))
                if args.old_agent:
                    oconf = os.path.join(work, "agent-old.json")
                    with open(oconf, "w") as f:
                        json.dump(AGENT_CONFIG, f)
                    oguest = guestlib.build_guest(os.path.abspath(args.old_agent), oconf, os.path.join(work, "guest-old"))
                    raw = os.path.join(work, "fast-old.raw")
                    subprocess.run(["qemu-img", "convert", "-O", "raw", base_q, raw], check=True, timeout=600)
                    disks = variants[1][3]
                    for name in ("old-specialize", "old-apply"):
                        g = guestlib.Guest(*oguest, state_disk=raw, disks=disks, timeout=300, workdir=work,
                                           name=name, memory=1024)
                        with g:
                            g.wait(290)
                    variants.append((f"--old-agent {args.old_agent}, guest-built VM", oguest, raw, disks))
                fast = fast_loop(variants, args.boots, work)

        # report
        print("\n=== Host-built specialization benchmark ===")
        print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; qemu TCG")
        print(f"closure (tag {args.tag}): difference {len(diff)} paths, NAR {nar_bytes / 1e6:.1f} MB "
              f"(median path {sizes[len(sizes) // 2] / 1e3:.1f} kB, p90 {sizes[int(len(sizes) * .9)] / 1e3:.1f} kB, "
              f"largest {sizes[-1] / 1e6:.1f} MB; {refs} references); base closure {len(base_info)} paths, "
              f"system closure {len(sys_info)} paths")
        print(f"  generate sources {t_gen:.1f} s, nix-build {t_build:.1f} s (Nix's work, not sprout's)")
        print("export of the host-built spec, s (whole processes; the rounds take turns, warm page cache):")
        print(f"  limit: read the paths once (tar | cat)     {mmm(tar_once)}")
        print(f"  limit: nix-store --export, one process     {export_once:.2f} (once)")
        print(f"  limit: nix-store --dump of each path       " +
              ("skipped (--skip d)" if each is None else f"{each:.2f} (once; one process a path)"))
        print(f"  yardstick: nix copy --to file:// alone     {mmm(nix_alone)}")
        print(f"  sprout export, fresh (empty cacheDir)      {mmm(fresh)}: "
              f"{median(fresh) / median(nix_alone):.2f}x nix copy, {median(fresh) / median(tar_once):.1f}x read once")
        for k, v in steps.items():
            print(f"    {k:<38} {mmm(v)}")
        if args.vs:
            print(f"  --vs {args.vs}, fresh  {mmm(old_fresh)}: {median(old_fresh) / median(nix_alone):.2f}x nix copy")
            for k, v in old_steps.items():
                print(f"    {k:<38} {mmm(v)}")
        print(f"  unchanged re-export      {mmm(rehit, '{:.3f}')}")
        print(f"  closure image            {img_apparent / 1e6:.1f} MB apparent, {img_alloc / 1e6:.1f} MB allocated; "
              f"NAR bytes {nar_bytes / 1e6:.1f} MB (allocated/NAR {img_alloc / nar_bytes:.3f}); "
              f"sprout-closure.json: {clo.get('paths')} paths with NARs, {clo.get('narBytes')} NAR bytes, "
              f"{clo.get('basePathsReferenced')} NAR-less base narinfos")
        hits = [t for t in ten if t["cacheHit"]]
        print(f"ten VMs, one system: {len(closure_images)} closure image(s) in the cache {closure_images}; "
              f"{len(set(t['image'] for t in ten))} distinct image path(s); cache hits {len(hits)} of 10 "
              f"(first {'hit' if ten[0]['cacheHit'] else 'built'}); links: {ten[0]['islink']}")
        print(f"  export time of the cache hits {mmm([t['seconds'] for t in ten[1:]], '{:.3f}')} s; "
              f"cacheDir {int(cache_du) / 1e3:.1f} MB on disk, against {10 * img_alloc / 1e6:.1f} MB for ten copies")
        for mode in ("guest", "host", "host-vs", "host-old-agent"):
            rs = runs[mode]
            if not rs:
                continue
            print(f"sprout run -> specialized, {mode}-built{f' (--vs {args.vs})' if mode == 'host-vs' else ''}"
                  f"{f' (--vs-agent {args.vs_agent})' if mode == 'host-old-agent' else ''}, "
                  f"1024 MB, s:")
            print(f"  to specialized       {mmm([r['toSpecialized'] for r in rs])}")
            for k in ("firstStarting", "rebuilding", "rebuilt", "rebooting", "secondStarting", "specializedEvent"):
                vals = [r[k] for r in rs if r[k] is not None]
                print(f"  {k:<20} {mmm(vals)}")
            print(f"  rebuilt.seconds      {mmm([r['rebuiltSeconds'] for r in rs if r['rebuiltSeconds'] is not None])}")
            print(f"  log events           {[r['logEvents'] for r in rs]} ('copying path' {[r['copyingLines'] for r in rs]}); "
                  f"rebuild.log lines {rs[-1].get('rebuildLogLines')}")
            for label, (a, b) in breakdown_keys(mode):
                vals = [span(r, a, b) for r in rs]
                vals = [v for v in vals if v is not None]
                print(f"  {label:<26} {mmm(vals)}")
            print(f"  qemu peak RSS, MB    {mmm([r['qemuPeakRssMB'] for r in rs], '{:.0f}')}")
            if rs[-1].get("mem"):
                print(f"  guest memory         {rs[-1]['mem']}")
        if res.get("guestLimits"):
            print("the guest's limits (one more host-built run, bench wrappers, caches dropped before each):")
            for m in res["guestLimits"]:
                print(f"  {m}")
            cp = [float(x) for x in re.findall(r"limit cp: ([0-9.]+) s", " ".join(res["guestLimits"]))]
            hs = [float(x) for x in re.findall(r"limit hash: ([0-9.]+) s", " ".join(res["guestLimits"]))]
            for mode in ("host", "host-vs", "host-old-agent"):
                imp = [span(r, "importing the closure", "checking the imported system") for r in runs[mode]]
                imp = [v for v in imp if v is not None]
                if cp and hs and imp:
                    print(f"  import in the timed {mode} runs {mmm(imp)} s: {median(imp) / cp[0]:.2f}x the in-guest "
                          f"copy; {median(imp) / (cp[0] + hs[0]):.2f}x copy + hash")
        if runs["host"] and runs["guest"]:
            d = median([r["toSpecialized"] for r in runs["host"]]) - median([r["toSpecialized"] for r in runs["guest"]])
            print(f"  host-built minus plain cycle: {d:.1f} s")
        print_fast(fast)
        with open(os.path.join(work, "results.json"), "w") as f:
            json.dump({"closure": {"paths": len(diff), "narBytes": nar_bytes, "build": t_build},
                       "fresh": fresh, "nixCopyAlone": nix_alone, "readOnce": tar_once, "steps": steps,
                       "vs": old_fresh, "vsSteps": old_steps, "nixStoreExport": export_once, "dumpEach": each,
                       "guestLimits": res.get("guestLimits"), "rehit": rehit, "ten": ten,
                       "runs": {m: [{k: v for k, v in r.items() if k != "specialized"} for r in rs]
                                for m, rs in runs.items()},
                       "fast": fast}, f, indent=1, default=str)
        print(f"raw figures: {os.path.join(work, 'results.json')}")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

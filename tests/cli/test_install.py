#!/usr/bin/env python3
"""`meson install --destdir` on the real build, then the installed files checked:
 - everything expected is installed (both binaries, sprout-vm@.service and
   sprout-vms.target, bash/zsh/fish completions, sprout.1 and sprout-agent.1), at the
   paths `meson introspect --installed` names;
 - the installed binaries run `--version` and print the project's version;
 - the unit template passes `systemd-analyze verify` (no running systemd needed; a
   copy whose ExecStart names the binary under DESTDIR, as an instance), with no
   warning at all, and sets the keys nixos/host.nix sets for a VM at the defaults;
 - the man pages render with groff without a warning and `man -l` shows every
   command `sprout help` lists, and the agent's options;
 - the completions parse (bash -n, zsh -n, fish -n), and complete: commands from a
   prefix, and VM names from $SPROUT_SPEC_DIR (bash and fish, driven for real).
Usage: test_install.py MESON BUILD_DIR SOURCE_DIR VERSION
"""
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

MESON, BUILD, SOURCE, VERSION = sys.argv[1:5]
# (file name, a part of its path): each must be installed exactly once there.
EXPECTED = [("sprout", "/bin/"), ("sprout-agent", "/bin/"), ("sprout-vm@.service", "/systemd/system/"),
            ("sprout-vms.target", "/systemd/system/"), ("sprout", "/bash-completion/completions/"),
            ("_sprout", "/zsh/site-functions/"), ("sprout.fish", "/fish/vendor_completions.d/"),
            ("sprout.1", "/man1/"), ("sprout-agent.1", "/man1/")]


def sh(*args, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run(args, capture_output=True, text=True, **kw)


def read(path):
    with open(path) as f:
        return f.read()


def need(tool):
    path = shutil.which(tool)
    if not path:
        raise AssertionError(f"{tool} is not installed (scripts/install-deps installs it)")
    return path


class Installed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sprout-install-")
        cls.dest = cls.tmp.name
        r = sh(MESON, "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", cls.dest, timeout=600)
        if r.returncode != 0:
            raise AssertionError(f"meson install failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        installed = json.loads(sh(MESON, "introspect", "--installed", BUILD).stdout)
        cls.paths = {}  # basename (plus the directory's last part for completions) -> path under DESTDIR
        for target in installed.values():
            cls.paths.setdefault(os.path.basename(target), []).append(cls.dest + target)
        cls.commands = sh(cls.path("sprout", "/bin/"), "help").stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
        cls.commands = [line.split()[0] for line in cls.commands.splitlines()]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def path(cls, name, under=""):
        found = [p for p in cls.paths.get(name, []) if under in p]
        if len(found) != 1:
            raise AssertionError(f"{name} (under {under or 'anywhere'}): installed as {found or 'nothing'}")
        return found[0]

    def test_everything_is_installed(self):
        for name, under in EXPECTED:
            with self.subTest(name=name, under=under):
                self.assertTrue(os.path.isfile(self.path(name, under)), name)
        for name in ("sprout", "sprout-agent"):
            self.assertTrue(os.access(self.path(name, "/bin/"), os.X_OK))

    def test_binaries_print_the_version(self):
        for name in ("sprout", "sprout-agent"):
            with self.subTest(name=name):
                r = sh(self.path(name, "/bin/"), "--version")
                self.assertEqual((r.returncode, r.stdout), (0, f"{name} {VERSION}\n"), r.stderr)

    def unit(self):
        return self.path("sprout-vm@.service")

    def test_unit_template_verifies(self):
        analyze = need("systemd-analyze")
        bindir = os.path.dirname(self.path("sprout", "/bin/"))[len(self.dest):]
        text = read(self.unit())
        self.assertIn(f"ExecStart={bindir}/sprout run --spec /etc/sprout/vms/%i.json\n", text)
        # systemd-analyze checks that ExecStart's program exists: the installed one.
        with tempfile.TemporaryDirectory() as d:
            unit = os.path.join(d, "sprout-vm@check.service")
            with open(unit, "w") as f:
                f.write(text.replace(f"ExecStart={bindir}/", f"ExecStart={self.dest}{bindir}/"))
            target = os.path.join(d, "sprout-vms.target")
            shutil.copy(self.path("sprout-vms.target"), target)
            for u in (unit, target):
                r = sh(analyze, "verify", u)
                # Unknown keys and bad values are only warnings (exit 0): none may appear.
                self.assertEqual((r.returncode, r.stderr.strip()), (0, ""), f"{u}:\n{r.stdout}{r.stderr}")

    def test_unit_matches_the_nixos_module(self):
        unit = configparser.ConfigParser(interpolation=None, strict=True)
        unit.optionxform = str
        unit.read(self.unit())
        service = dict(unit["Service"])
        module = read(os.path.join(SOURCE, "nixos", "host.nix"))
        # nixos/host.nix at the spec's defaults: timeoutSeconds 3600, maxAttempts 3,
        # shutdownTimeout 60.
        self.assertEqual(service.pop("TimeoutStartSec"), str(3600 * 3 + 600))
        self.assertEqual(service.pop("TimeoutStopSec"), str(60 + 30))
        self.assertIn("sprout run --spec", service.pop("ExecStart"))
        # The writable paths: the module names each VM's own (ReadWritePaths= its
        # stateDir, the cacheDir, the GC roots, made by tmpfiles); the template the
        # defaults, made by systemd (StateDirectory=) or optional (the GC roots).
        self.assertEqual(service.pop("StateDirectory"), "sprout/vms/%i sprout/cache")
        self.assertEqual(service.pop("StateDirectoryMode"), "0711")  # the cache's mode
        self.assertEqual(service.pop("ReadWritePaths"), "-/nix/var/nix/gcroots/sprout")
        self.assertIn('ReadWritePaths = [ vm.stateDir cfg.cacheDir "/nix/var/nix/gcroots/sprout" ];', module)
        for key, value in service.items():
            with self.subTest(key=key):
                self.assertTrue(re.search(rf'\b{key} = "?{re.escape(value)}"?;', module),
                                f"nixos/host.nix does not set {key} = {value}")
        self.assertEqual(unit["Unit"]["After"], "network.target")
        self.assertEqual(unit["Install"]["WantedBy"], "sprout-vms.target")
        self.assertIn('systemd.targets.sprout-vms', module)
        target = configparser.ConfigParser(interpolation=None)
        target.read(self.path("sprout-vms.target"))
        self.assertEqual(target["Install"]["WantedBy"], "multi-user.target")

    def render(self, page):
        groff = need("groff")
        r = sh(groff, "-man", "-Tutf8", "-ww", "-z", page)
        self.assertEqual((r.returncode, r.stderr), (0, ""), page)
        r = sh(need("man"), "-l", page, env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "",
                                               "PAGER": "cat", "MANPAGER": "cat"})
        self.assertEqual(r.returncode, 0, r.stderr)
        return re.sub(r".\x08", "", r.stdout)

    def test_sprout_man_page(self):
        text = self.render(self.path("sprout.1"))
        for section in ("NAME", "SYNOPSIS", "COMMANDS", "FILES", "SEE ALSO"):
            self.assertRegex(text, rf"(?m)^{section}$")
        self.assertIn(f"sprout {VERSION}", text)
        for cmd in self.commands:
            with self.subTest(cmd=cmd):
                self.assertRegex(text, rf"(?m)^   {re.escape(cmd)}$")  # its subsection
                self.assertIn(f"sprout {cmd} [OPTION...]", text)  # and its own help

    def test_agent_man_page(self):
        text = self.render(self.path("sprout-agent.1"))
        for word in ("--config", "--root", "--version", "diskWaitSeconds", "SEE ALSO"):
            self.assertIn(word, text)

    def test_completions_parse(self):
        for shell, name, under in (("bash", "sprout", "bash-completion"), ("zsh", "_sprout", "zsh"),
                                   ("fish", "sprout.fish", "fish")):
            with self.subTest(shell=shell):
                script = self.path(name, under)
                r = sh(need(shell), "-n", script)
                self.assertEqual((r.returncode, r.stderr), (0, ""), script)
                text = read(script)
                for cmd in self.commands:
                    self.assertIn(cmd, text)

    def spec_dir(self):
        d = tempfile.mkdtemp(dir=self.dest)
        for vm in ("db", "dns", "web"):
            with open(os.path.join(d, vm + ".json"), "w") as f:
                f.write("{}")
        return d

    def test_bash_completes(self):
        script = self.path("sprout", "bash-completion")

        def complete(line):
            words = line.split(" ")
            prog = (f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
                    f"COMP_CWORD={len(words) - 1}; _sprout; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
            r = sh(need("bash"), "-c", prog, env={**os.environ, "SPROUT_SPEC_DIR": self.spec_dir()})
            self.assertEqual(r.returncode, 0, r.stderr)
            return sorted(r.stdout.split())

        self.assertEqual(complete("sprout st"), ["start", "status", "stop"])
        self.assertEqual(complete("sprout --log-level debug wa"), ["wait", "watch"])
        self.assertEqual(complete("sprout undefine d"), ["db", "dns"])
        self.assertEqual(complete("sprout --log-level e"), ["error"])
        self.assertIn("--spec-dir", complete("sprout status --spec"))
        self.assertEqual(complete("sprout help che"), ["check-host", "check-spec"])

    def test_fish_completes(self):
        script = self.path("sprout.fish")

        def complete(line):
            r = sh(need("fish"), "--no-config", "-c", f"source {script}; complete -C {line!r}",
                   env={**os.environ, "SPROUT_SPEC_DIR": self.spec_dir()})
            self.assertEqual(r.returncode, 0, r.stderr)
            return sorted(line.split("\t")[0] for line in r.stdout.splitlines())

        self.assertEqual(complete("sprout st"), ["start", "status", "stop"])
        self.assertEqual(complete("sprout undefine d"), ["db", "dns"])
        self.assertIn("--json", complete("sprout status --"))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)

#!/usr/bin/env python3
"""Bad input against every subcommand of `sprout`: each one exits 2 (input) or 1
(runtime), with one line that names the file, key or argument and what to do; no
library's exception text reaches the user; and nothing on disk changes (a prepared
VM's overlay keeps its bytes, no temporary file stays in the cache, no image link
moves). The classes: JSON that overflows, repeats a key, breaks its syntax or hides
a NUL; a spec that does not exist; an unknown option, an option without its value, a
stray argument; a VM name that is not one; a spec directory that is not there; a
state directory below a regular file. (export/prepare's own tree and spec battery is
BadInputTest in test_export.py.)
Usage: test_bad_input.py SPROUT_BINARY
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_export  # noqa: E402
from test_export import Scratch, run, sha256  # noqa: E402

# Subcommands that take --spec FILE, and those that take a spec directory.
SPEC_COMMANDS = ["export", "prepare", "run", "watch", "domain-xml", "define", "stop"]
DIR_COMMANDS = ["status", "gc"]
LIBRARY_TEXT = ("filesystem error:", "[json.exception", "basic_string", "std::", "terminate called", "\u2018")


class BadInputBattery(Scratch):
    def setUp(self):
        super().setUp()
        self.make_base()
        self.spec = self.make_vm()
        self.specdir = self.path("specs")
        os.makedirs(self.specdir)
        self.good = self.write_spec(self.spec, os.path.join("specs", "web.json"))
        run("prepare", "--spec", self.good)
        self.overlay = os.path.join(self.spec["stateDir"], "root.qcow2")
        self.before = sha256(self.overlay)
        self.links = {n: os.readlink(os.path.join(self.spec["stateDir"], n))
                      for n in os.listdir(self.spec["stateDir"])
                      if n.endswith(".img") and os.path.islink(os.path.join(self.spec["stateDir"], n))}

    def raw(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def assert_refused(self, argv, status, needle):
        p = run(*argv, check=False, stdin=open(os.devnull))
        out = p.stderr + p.stdout
        self.assertEqual(p.returncode, status, f"{argv}: {out}")
        self.assertIn(needle, out, argv)
        for text in LIBRARY_TEXT:
            self.assertNotIn(text, out, f"{argv}: a library's text reached the user")
        self.assertEqual(sha256(self.overlay), self.before, f"{argv} changed the overlay")
        self.assertEqual({n: os.readlink(os.path.join(self.spec["stateDir"], n)) for n in self.links}, self.links)
        leftovers = [f for f in os.listdir(self.spec["cacheDir"]) if f.startswith(".")
                     and f not in (".lock", ".digest-cache")]
        self.assertEqual(leftovers, [], f"{argv} left temporaries in the cache")

    def test_bad_json_in_a_spec_for_every_spec_command(self):
        overflow = self.raw("overflow.json", '{"version": 1, "memory": 1e400}')
        dup = self.raw("dup.json", '{"version": 1, "vcpus": 2, "vcpus": 1}')
        syntax = self.raw("syntax.json", '{"version": 1,\n "name": w}')
        nul = json.loads(json.dumps(self.spec))
        nul["name"] = "we\u0000b"
        nul_file = self.write_spec(nul, "nul.json")
        for cmd in SPEC_COMMANDS + ["check-spec"]:
            spec_arg = [] if cmd == "check-spec" else ["--spec"]
            with self.subTest(cmd=cmd):
                self.assert_refused([cmd, *spec_arg, overflow], 2, "overflow.json: not valid JSON: number overflow")
                self.assert_refused([cmd, *spec_arg, dup], 2, 'dup.json: the key "vcpus" appears twice')
                self.assert_refused([cmd, *spec_arg, syntax], 2, "syntax.json: not valid JSON at line 2, column")
                self.assert_refused([cmd, *spec_arg, nul_file], 2, "nul.json: name: contains a NUL character")
                self.assert_refused([cmd, *spec_arg, self.path("missing.json")], 2, "missing.json: spec file not found")

    def test_json_nested_too_deep_in_every_document_sprout_reads(self):
        # 100,000 nested lists crashed check-spec (SIGSEGV: a recursive walk ran out of
        # stack); every document is refused or ignored at 64 levels, naming its file.
        deep = "[" * 100000 + "]" * 100000
        deep_objects = '{"a":' * 100000 + "1" + "}" * 100000
        too_deep = "lists and objects nested more than 64 deep; sprout reads no JSON that deep"
        for name, text in (("deep.json", deep), ("deep-objects.json", deep_objects)):
            f = self.raw(name, text)
            p = run("check-spec", f, check=False)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual((p.stdout + p.stderr).splitlines(), [f"{f}: {too_deep}"])
            for cmd in SPEC_COMMANDS:
                with self.subTest(cmd=cmd, name=name):
                    self.assert_refused([cmd, "--spec", f], 2, f"{f}: {too_deep}")
        # What sprout itself wrote in the state directory: the record is called corrupt,
        # export.json taken as no export, a log line skipped; each says which file.
        state = self.spec["stateDir"]
        status_file = os.path.join(state, "status.json")
        with open(status_file, "w") as f:
            f.write('{"vm": "web", "phase": ' + deep + "}")
        for argv in (["status"], ["status", "--json"], ["list"], ["wait", "web", "--timeout", "1"]):
            with self.subTest(argv=argv):
                p = run(*argv, "--spec-dir", self.specdir, check=False)
                self.assertIn(p.returncode, (0, 1), p.stderr)
                self.assertIn(f"{status_file}: {too_deep}", p.stdout + p.stderr)
        os.remove(status_file)
        export_file = os.path.join(state, "export.json")
        with open(export_file, "w") as f:
            f.write('{"generation": "g", "images": ' + deep + "}")
        p = run("list", "--spec-dir", self.specdir, "--json", check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIsNone(json.loads(p.stdout)[0]["exportedGeneration"])
        self.assertIn(f"{export_file}: {too_deep}", p.stderr)
        events = os.path.join(state, "events.jsonl")
        with open(events, "w") as f:
            f.write('{"source": "host", "message": "before"}\n{"message": ' + deep + "}\n"
                    '{"source": "host", "message": "after"}\n')
        for extra in ([], ["--json"], ["-n", "2"]):
            with self.subTest(logs=extra):
                p = run("logs", "web", "--spec-dir", self.specdir, *extra, check=False)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn("after", p.stdout)
                self.assertIn(f"{events}: {too_deep} (a line skipped)", p.stderr)

    def test_a_bad_spec_in_a_spec_directory(self):
        self.raw(os.path.join("specs", "broken.json"), '{"version": 1, "memory": 1e400}')
        # status lists it as invalid and still shows the good one; wait names it.
        p = run("status", "--spec-dir", self.specdir)
        self.assertIn("broken", p.stdout)
        self.assertIn("number overflow", p.stdout)
        self.assertIn("web", p.stdout)
        self.assert_refused(["wait", "broken", "--spec-dir", self.specdir, "--timeout", "1"], 2, "broken")

    def test_two_files_cannot_claim_one_vm(self):
        self.write_spec(self.spec, os.path.join("specs", "web-copy.json"))  # also "name": "web"
        p = run("status", "--spec-dir", self.specdir)
        rows = [l for l in p.stdout.splitlines() if l.startswith("web")]
        self.assertEqual(len(rows), 2, p.stdout)  # web, and web-copy shown as invalid
        self.assertIn('web-copy.json: its name is "web" but a spec in a spec directory must be NAME.json', p.stdout)
        self.assertEqual(sum("invalid spec" in r for r in rows), 1, p.stdout)
        self.assert_refused(["wait", "web-copy", "--spec-dir", self.specdir, "--timeout", "1"], 2, "web-copy")

    def test_options_and_arguments_for_every_subcommand(self):
        every = SPEC_COMMANDS + DIR_COMMANDS + ["check-spec", "wait", "undefine"]
        for cmd in every:
            with self.subTest(cmd=cmd):
                self.assert_refused([cmd, "--bogus"], 2, f"sprout {cmd}: Option 'bogus' does not exist (see `sprout {cmd} --help`)")
        for cmd in SPEC_COMMANDS:
            with self.subTest(cmd=cmd):
                # The first positional argument is the VM's NAME; a second one is a stray.
                self.assert_refused([cmd, "web", "stray", "--spec-dir", self.specdir], 2,
                                    f"sprout {cmd}: unexpected argument 'stray' (see `sprout {cmd} --help`)")
                self.assert_refused([cmd, "--spec", self.good, "db"], 2,
                                    f"spec {self.good} is for VM web, not db")
                self.assert_refused([cmd, "--spec"], 2, "Option 'spec' is missing an argument")
        for cmd in ["run", "watch", "domain-xml", "define", "stop", "prepare"]:
            with self.subTest(cmd=cmd):
                self.assert_refused([cmd], 2, "which VM? give its NAME (looked up in the spec directory) or --spec FILE")
                # By NAME: the spec directory, else $SPROUT_SPEC_DIR, else /etc/sprout/vms.
                self.assert_refused([cmd, "nosuch", "--spec-dir", self.specdir], 2,
                                    f"no VM 'nosuch' in {self.specdir} (nosuch.json not found; there are: web)")
        self.assert_refused(["export"], 2, "missing --name (or give the VM: NAME or --spec FILE)")
        self.assert_refused(["gc", "--spec-dir", self.specdir, "stray"], 2, "unexpected argument 'stray'")
        self.assert_refused(["check-spec"], 2, "give at least one spec file")
        self.assert_refused(["wait", "--spec-dir", self.specdir], 2, "which VM?")
        self.assert_refused(["undefine"], 2, "missing the VM NAME")
        self.assert_refused(["frobnicate"], 2, "'frobnicate' is not a sprout command (see `sprout help`)")

    def test_names_and_directories(self):
        self.assert_refused(["undefine", "../evil"], 2, "a VM name must not contain '/'")
        self.assert_refused(["status", "--spec-dir", self.specdir, "nosuch"], 2, "no VM 'nosuch' in")
        self.assert_refused(["wait", "nosuch", "--spec-dir", self.specdir, "--timeout", "1"], 2, "nosuch")
        for cmd in DIR_COMMANDS:
            with self.subTest(cmd=cmd):
                self.assert_refused([cmd, "--spec-dir", self.path("nowhere")], 2, "nowhere: spec directory not found")
                self.assert_refused([cmd, "--spec-dir", self.good], 2, "web.json")
        self.assert_refused(["wait", "web", "--spec-dir", self.path("nowhere"), "--timeout", "1"], 2, "nowhere")

    def test_a_state_directory_below_a_regular_file(self):
        plain = self.raw("plain-file", "x")
        for cmd in ["export", "prepare", "run", "watch"]:
            # (watch: a libvirt VM's; a qemu VM's is refused before its state directory is looked at)
            spec = dict(self.spec, backend="libvirt") if cmd == "watch" else self.spec
            bad = self.write_spec(dict(spec, stateDir=os.path.join(plain, "web")), f"below-file-{cmd}.json")
            in_sys = self.write_spec(dict(spec, stateDir="/sys/sprout-bad-input/web"), f"in-sys-{cmd}.json")
            with self.subTest(cmd=cmd):
                self.assert_refused([cmd, "--spec", bad], 1, plain)
                self.assert_refused([cmd, "--spec", in_sys], 1, "/sys/sprout-bad-input")

    def test_a_port_forwarded_twice(self):
        spec = dict(self.spec, network={"forwards": [{"hostPort": 18080, "guestPort": 80},
                                                      {"hostPort": 18080, "guestPort": 81}]})
        f = self.write_spec(spec, "twice.json")
        for cmd in ["check-spec", "run", "domain-xml"]:
            with self.subTest(cmd=cmd):
                self.assert_refused([cmd] + ([] if cmd == "check-spec" else ["--spec"]) + [f], 2,
                                    "network.forwards[1].hostPort: tcp port 18080 is already forwarded")


if __name__ == "__main__":
    test_export.SPROUT = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""What a newcomer's first hour with `sprout` trips over (issue 26), each point checked
against the real binary with specs and records written here: no VM is started.
Usage: test_first_hour.py SPROUT [SPROUT_AGENT]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from terminal import on_a_terminal

SPROUT = sys.argv[1] if len(sys.argv) > 1 else "sprout"
AGENT = sys.argv[2] if len(sys.argv) > 2 else "sprout-agent"


class World(unittest.TestCase):
    """A spec directory with one VM, web, that has never run."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sprout-first-hour-")
        self.specs = os.path.join(self.tmp, "specs")
        self.state = os.path.join(self.tmp, "web")
        os.makedirs(self.specs)
        os.makedirs(self.state)
        base = os.path.join(self.tmp, "base.img")
        open(base, "wb").close()
        self.write_spec("web", {"version": 1, "name": "web", "base": {"image": base, "format": "raw"},
                                "stateDir": self.state, "sources": {"config": self.tmp, "self": self.tmp}})

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def read_spec(self, name):
        with open(os.path.join(self.specs, name + ".json")) as f:
            return json.load(f)

    def write_spec(self, name, spec):
        with open(os.path.join(self.specs, name + ".json"), "w") as f:
            json.dump(spec, f)

    def sprout(self, *args, timeout=60, spec_dir_env=True):
        env = dict(os.environ, NO_COLOR="1", SPROUT_SPEC_DIR=self.specs if spec_dir_env else "")
        return subprocess.run([SPROUT, *args], capture_output=True, text=True, timeout=timeout, env=env)

    def ended_record(self, how="guest powered off"):
        with open(os.path.join(self.state, "status.json"), "w") as f:
            json.dump({"vm": "web", "phase": "mounting", "message": "m", "generation": "g1", "bootId": "b",
                       "seq": 2, "sinceMs": 1, "updatedMs": 1, "detail": None, "lastLog": [], "reached": ["mounting"],
                       "host": {"state": "stopped", "how": how, "startedMs": 1, "stoppedMs": 2}}, f)


class TimeSpans(World):
    """5: `--timeout 1m` was read as 1 second; spans are systemd's, anything else refused."""

    def test_a_malformed_span_is_refused_naming_the_option(self):
        for option in ("--timeout", "--start-timeout"):
            for bad in ("1x", "1m5", "five", "-3"):
                r = self.sprout("wait", "web", option, bad)
                self.assertEqual(r.returncode, 2, (option, bad, r.stdout, r.stderr))
                self.assertIn(option + " " + bad, r.stderr)
                self.assertIn("5min", r.stderr)  # shows the form

    def test_spans_with_units_are_accepted(self):
        # --timeout 0 looks once; a span that sums to 0 is accepted the same way.
        for span in ("0", "0s", "0min", "0h 0s"):
            r = self.sprout("wait", "web", "--timeout", span, "--json")
            self.assertEqual(r.returncode, 3, (span, r.stdout, r.stderr))  # timed out at once: never ran
            self.assertEqual(json.loads(r.stdout)["outcome"], "timeout")


class WaitAnswers(World):
    """4: a phase the run went past is reached; `started` is the channel; --quiet is quiet.
    The record is a live run's: its supervisor is this test process."""

    def live_record(self, phase, reached, host_state="running"):
        now = int(time.time() * 1000)
        with open(os.path.join(self.state, "status.json"), "w") as f:
            json.dump({"vm": "web", "phase": phase, "message": "m", "generation": "g1", "bootId": "b", "seq": 3,
                       "sinceMs": now, "updatedMs": now, "detail": None, "lastLog": ["boom"], "reached": reached,
                       "host": {"state": host_state, "supervisor": os.getpid(), "startedMs": now}}, f)

    def test_a_fast_path_boot_has_passed_rebuilding(self):
        # Already specialized: the boot never said rebuilding or rebuilt, and is past them.
        self.live_record("specialized", ["starting", "mounting", "specialized"])
        for phase in ("rebuilding", "rebuilt", "rebooting", "mounting"):
            r = self.sprout("wait", "web", "--for", phase, "--timeout", "10min")
            self.assertEqual(r.returncode, 0, (phase, r.stdout, r.stderr))
            self.assertIn(f"reached {phase}", r.stdout)
        r = self.sprout("wait", "web", "--for", "failed", "--timeout", "0")
        self.assertEqual(r.returncode, 3, r.stderr)  # specialized is not past failed

    def test_not_past_a_phase_not_yet_reached(self):
        self.live_record("rebuilding", ["starting", "mounting", "rebuilding"])
        r = self.sprout("wait", "web", "--for", "rebooting", "--timeout", "0")
        self.assertEqual(r.returncode, 3, r.stderr)

    def test_started_is_reached_by_a_guest_that_failed(self):
        self.live_record("failed", ["starting", "mounting", "rebuilding", "failed"])
        r = self.sprout("wait", "web", "--for", "started", "--timeout", "10min")
        self.assertEqual(r.returncode, 0, (r.stdout, r.stderr))
        r = self.sprout("wait", "web", "--for", "specialized", "--timeout", "10min")
        self.assertEqual(r.returncode, 1, (r.stdout, r.stderr))  # and failed for what it did not reach
        self.assertIn("boom", r.stderr)

    def test_quiet_prints_nothing(self):
        self.live_record("failed", ["starting", "mounting", "rebuilding", "failed"])
        r = self.sprout("wait", "web", "--quiet", "--timeout", "10min")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (1, "", ""))
        self.live_record("specialized", ["starting", "mounting", "specialized"])
        r = self.sprout("wait", "web", "--quiet")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))


class Hints(World):
    """3: hints name the VM as it was named (--spec-dir kept) and point to `sprout logs`."""

    def test_not_running_hint_keeps_the_spec_dir_and_names_logs(self):
        self.ended_record()
        r = self.sprout("wait", "web", "--spec-dir", self.specs, spec_dir_env=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"start it: sprout run web --spec-dir {self.specs}", r.stderr)
        self.assertIn(f"sprout logs web --spec-dir {self.specs}", r.stderr)
        self.assertNotIn("systemctl", r.stderr)  # not a spec the installed units run

    def test_the_default_directory_needs_no_option(self):
        self.ended_record()
        r = self.sprout("wait", "web")  # found through $SPROUT_SPEC_DIR
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("start it: sprout run web;", r.stderr)
        self.assertIn("sprout logs web)", r.stderr)

    def test_a_spec_given_by_file_is_named_by_its_file(self):
        self.ended_record()
        other = os.path.join(self.tmp, "elsewhere.json")
        shutil.copy(os.path.join(self.specs, "web.json"), other)
        r = self.sprout("wait", "--spec", other)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"sprout run --spec {other}", r.stderr)


    def test_a_missing_spec_directory_names_the_variable(self):
        r = self.sprout("status", "--spec-dir", os.path.join(self.tmp, "nowhere"))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("$SPROUT_SPEC_DIR", r.stderr)


class CommandNames(World):
    """12: a mistyped command gets a suggestion; -v, help help and help --version work."""

    def test_a_typo_gets_did_you_mean(self):
        for typed, meant in (("stauts", "status"), ("wiat", "wait"), ("consol", "console"), ("hlep", "help")):
            r = self.sprout(typed)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
            self.assertIn(f"did you mean '{meant}'?", r.stderr)
        r = self.sprout("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertNotIn("did you mean", r.stderr)
        r = self.sprout("help", "stauts")
        self.assertIn("did you mean 'status'?", r.stderr)

    def test_version_and_help_spellings(self):
        version = self.sprout("--version").stdout
        self.assertTrue(version.startswith("sprout "), version)
        for argv in (["-v"], ["-V"], ["help", "--version"]):
            r = self.sprout(*argv)
            self.assertEqual((r.returncode, r.stdout), (0, version), (argv, r.stderr))
        r = self.sprout("help", "help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Commands:", r.stdout)


class BackendCommands(World):
    """9: watch of a qemu VM (beside a recording `sprout run`, or with nothing running
    it), and undefine of one, are refused."""

    def test_watch_beside_a_recording_run_is_refused_and_the_record_kept(self):
        now = int(time.time() * 1000)
        record = {"vm": "web", "phase": "rebuilding", "message": "m", "generation": "g1", "bootId": "b", "seq": 3,
                  "sinceMs": now, "updatedMs": now, "detail": None, "lastLog": [], "reached": ["rebuilding"],
                  "host": {"state": "running", "supervisor": os.getpid(), "startedMs": now}}
        path = os.path.join(self.state, "status.json")
        with open(path, "w") as f:
            json.dump(record, f)
        with open(path) as f:
            before = f.read()
        r = self.sprout("watch", "web")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("records it already", r.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), before)

    def test_a_second_watcher_is_refused_for_either_backend(self):
        # A live record kept by a watcher (this test process stands in for it).
        now = int(time.time() * 1000)
        record = {"vm": "web", "phase": "rebuilding", "message": "m", "generation": "g1", "bootId": "b", "seq": 3,
                  "sinceMs": now, "updatedMs": now, "detail": None, "lastLog": [], "reached": ["rebuilding"],
                  "host": {"state": "running", "supervisor": os.getpid(), "recorder": "watch", "startedMs": now}}
        path = os.path.join(self.state, "status.json")
        for backend in ("libvirt", "qemu"):
            spec = self.read_spec("web")
            spec["backend"] = backend
            self.write_spec("web", spec)
            with open(path, "w") as f:
                json.dump(record, f)
            with open(path) as f:
                before = f.read()
            r = self.sprout("watch", "web", timeout=30)
            self.assertEqual(r.returncode, 2, (backend, r.stderr))
            self.assertIn(f"another `sprout watch` (pid {os.getpid()}) records it already", r.stderr)
            with open(path) as f:
                self.assertEqual(f.read(), before)

    def listing(self):
        return sorted((d, f) for d, _, fs in os.walk(self.tmp) for f in fs)

    def test_watch_of_a_qemu_vm_nothing_runs_is_refused_and_writes_nothing(self):
        self.ended_record()
        with open(os.path.join(self.state, "status.json")) as f:
            before_record = f.read()
        before = self.listing()
        r = self.sprout("watch", "web", timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("VM web:", r.stderr)
        self.assertIn('"backend": "qemu"', r.stderr)
        self.assertIn(os.path.join(self.specs, "web.json"), r.stderr)
        self.assertIn("sprout start web", r.stderr)
        self.assertIn("sprout run web", r.stderr)
        self.assertEqual(self.listing(), before)
        with open(os.path.join(self.state, "status.json")) as f:
            self.assertEqual(f.read(), before_record)

    def test_undefine_of_a_qemu_vm_is_refused(self):
        r = self.sprout("undefine", "web")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('backend is "qemu"', r.stderr)
        self.assertIn("sprout stop web", r.stderr)


class HelpText(World):
    """17: placeholders say what they take, a default is said once, the agent's help
    names every config key."""

    def commands(self):
        out = self.sprout("help").stdout
        return [l.split()[0] for l in out.split("Commands:")[1].split("\n\n")[0].splitlines() if l.strip()]

    def test_no_bare_arg_placeholder_and_one_default_per_option(self):
        names = self.commands()
        self.assertIn("wait", names)
        for name in names:
            text = self.sprout("help", name).stdout
            options = "\n".join(l for l in text.splitlines() if l.lstrip().startswith("-") or l.startswith("        "))
            self.assertNotIn(" arg ", options + " ", name)
            # one option's text is one entry: its lines joined until the next option
            for entry in re.split(r"\n\s+(?=-)", options):
                self.assertLessEqual(entry.count("(default"), 1, f"{name}: {entry}")
        agent = subprocess.run([AGENT, "--help"], capture_output=True, text=True, timeout=60).stdout
        self.assertNotIn(" arg ", agent)
        for key in ("mountPoints.closure", "nixBinDir"):
            self.assertIn(key, agent)


class Quotes(World):
    """17: the host and the agent quote names and values alike: a misspelt JSON key as
    "key", a word of the command line as 'word', and where to look as `PROGRAM --help`."""

    def agent(self, *args):
        return subprocess.run([AGENT, "--root", self.tmp, *args], capture_output=True, text=True, timeout=60)

    def test_a_bad_config_file_and_a_bad_spec_are_quoted_alike(self):
        config = os.path.join(self.tmp, "agent.json")
        with open(config, "w") as f:
            json.dump({"version": 1, "diskWaitSecnds": 1}, f)
        spec = self.read_spec("web")
        spec["bakend"] = "qemu"
        self.write_spec("web", spec)
        spec_file = os.path.join(self.specs, "web.json")
        suggestion = re.compile(r"did you mean (\W)(\w+)(\W)\?")
        said = {}
        for who, r in (("agent", self.agent("--config", config)), ("sprout", self.sprout("export", "web"))):
            self.assertEqual(r.returncode, 2, r.stderr)
            m = suggestion.search(r.stderr)
            self.assertIsNotNone(m, r.stderr)
            said[who] = (m.group(1), m.group(3))
        self.assertEqual(said["agent"], ('"', '"'))
        self.assertEqual(said["sprout"], said["agent"])
        # The same config file with a word the options refuse: the agent says it as
        # sprout does (cxxopts' own U+2018/U+2019 quotes were the agent's).
        for host_bad, agent_bad, word in ((["--bogus"], ["--bogus"], "bogus"),
                                          (["--json=soon"], ["--disk-wait=soon"], "soon"),
                                          (["stray"], ["stray"], "stray")):
            with self.subTest(word=word):
                host = self.sprout("export", "web", *host_bad)
                agent = self.agent("--config", config, *agent_bad)
                for program, r in (("sprout export", host), ("sprout-agent", agent)):
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertIn(f"'{word}'", r.stderr)
                    self.assertNotRegex(r.stderr, "[\u2018\u2019]")
                    self.assertIn(f"(see `{program} --help`)", r.stderr)
                strip = lambda text, program: text.split(program + ": ", 1)[1].strip()
                self.assertEqual(strip(agent.stderr, "sprout-agent"), strip(host.stderr, "sprout export")
                                 .replace("sprout export", "sprout-agent"))


class StatusAndLogs(World):
    """15: status shows what exists when a name is missing; --spec FILE; logs -n 0."""

    def test_a_missing_name_is_reported_and_the_others_shown(self):
        r = self.sprout("status", "web", "nope")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("web", r.stdout)
        self.assertIn("no VM 'nope'", r.stderr)
        self.assertIn("there are: web", r.stderr)
        r = self.sprout("status", "nope", "--json")
        self.assertEqual((r.returncode, json.loads(r.stdout)), (2, []))

    def test_status_and_list_take_a_spec_file(self):
        for cmd in ("status", "list"):
            r = self.sprout(cmd, "--spec", os.path.join(self.specs, "web.json"), "--json", spec_dir_env=False)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual([row["name"] for row in json.loads(r.stdout)], ["web"])

    def test_logs_n_0_prints_no_event(self):
        with open(os.path.join(self.state, "events.jsonl"), "w") as f:
            for i in range(3):
                f.write(json.dumps({"source": "host", "event": "x", "vm": "web", "message": f"event {i}",
                                    "hostTimeMs": 1}) + "\n")
        self.assertEqual(self.sprout("logs", "web", "-n", "0").stdout, "")
        self.assertEqual(self.sprout("logs", "web", "-n", "2").stdout.count("event "), 2)
        self.assertEqual(self.sprout("logs", "web").stdout.count("event "), 3)


class DryRun(World):
    """16: run --print-command is a dry run: nothing exported, created or recorded."""

    def test_print_command_writes_nothing(self):
        r = self.sprout("run", "web", "--print-command")  # the real qemu (asked for its -help only)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 1, r.stdout)
        for disk in ("root.qcow2", "config.img", "self.img"):
            self.assertIn(os.path.join(self.state, disk), r.stdout)
        self.assertEqual(sorted(os.listdir(self.state)), [], "the state directory is untouched")


class PendingFromTheTree(World):
    """16: list says "pending re-specialization" when the config tree changed since the
    export, as git status notices a changed tree, and writes nothing to find it out."""

    def setUp(self):
        super().setUp()
        self.cfg = os.path.join(self.tmp, "cfg")
        os.makedirs(os.path.join(self.cfg, "hosts", "web"))
        self.nix = os.path.join(self.cfg, "hosts", "web", "configuration.nix")
        with open(self.nix, "w") as f:
            f.write("{ ... }: { networking.hostName = \"web\"; }\n")
        self.cache = os.path.join(self.tmp, "cache")
        spec = self.read_spec("web")
        spec.update(sources={"config": self.cfg, "self": os.path.join(self.cfg, "hosts", "web")}, cacheDir=self.cache,
                    gcRootDir=os.path.join(self.tmp, "roots"))
        self.write_spec("web", spec)
        # The export keeps the digests of files whose ctime is 3 s old (a younger
        # one might still be changing): wait for that, so that the cache exists, list
        # reads it, and a list that wrote it would show in the snapshots.
        newest = max(os.lstat(os.path.join(d, n)).st_ctime for d, _, fs in os.walk(self.cfg) for n in fs)
        while time.time() - newest <= 3.5:
            time.sleep(0.1)
        r = self.sprout("export", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.listdir(os.path.join(self.cache, ".digest-cache")), "the export kept no digests")

    def snapshot(self):
        """Every file and directory under the cache and the state directory, with its
        size, mtime and inode."""
        out = []
        for top in (self.cache, self.state):
            for d, dirs, files in os.walk(top):
                for n in dirs + files:
                    st = os.lstat(os.path.join(d, n))
                    out.append((os.path.join(d, n), st.st_size, st.st_mtime_ns, st.st_ino))
        return sorted(out)

    def pending(self):
        table = self.sprout("list", "web")
        self.assertEqual(table.returncode, 0, table.stderr)
        js = self.sprout("list", "web", "--json")
        self.assertEqual(js.returncode, 0, js.stderr)
        row = json.loads(js.stdout)[0]
        return "pending re-specialization" in table.stdout, row["pendingRespecialization"], row, table.stdout

    def test_a_changed_tree_is_pending_and_nothing_is_written(self):
        before = self.snapshot()
        in_table, in_json, row, _ = self.pending()
        self.assertFalse(in_table or in_json, row)
        with open(self.nix, "a") as f:
            f.write("# changed\n")
        in_table, in_json, row, table = self.pending()
        self.assertTrue(in_table, table)
        self.assertIn("what it exports changed since the last export (the next start exports it again)", table)
        self.assertTrue(in_json, row)
        self.assertTrue(row.get("sourcesChanged"), row)
        self.assertNotEqual(row.get("sourceGeneration"), row["exportedGeneration"])
        self.assertEqual(self.snapshot(), before, "list wrote into the cache or the state directory")
        # Changed back: the tree is the exported one again.
        with open(self.nix, "w") as f:
            f.write("{ ... }: { networking.hostName = \"web\"; }\n")
        in_table, in_json, row, _ = self.pending()
        self.assertFalse(in_table or in_json, row)
        self.assertFalse(row["sourcesChanged"])
        self.assertEqual(row["sourceGeneration"], row["exportedGeneration"])
        self.assertEqual(self.snapshot(), before, "list wrote into the cache or the state directory")


class CheckSpec(World):
    """6: check-spec takes a directory, and a name that is not the file's is said."""

    def test_a_directory_checks_every_spec_in_it(self):
        r = self.sprout("check-spec", self.specs)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("web.json: ok", r.stdout)
        spec = self.read_spec("web")
        self.write_spec("db", dict(spec, name="other"))
        r = self.sprout("check-spec", self.specs, "--json")
        self.assertEqual(r.returncode, 2, r.stderr)
        by_file = {os.path.basename(e["file"]): e for e in json.loads(r.stdout)}
        self.assertTrue(by_file["web.json"]["ok"])
        self.assertFalse(by_file["db.json"]["ok"])
        self.assertIn('its name is "other"', by_file["db.json"]["problems"][0])

    def test_every_mistake_of_a_file_in_one_run(self):
        spec = self.read_spec("web")
        spec.update(vcpus=0, memory="lots", shutdownTimeoutSeconds=-1, memroy=512)  # four mistakes
        self.write_spec("web", spec)
        r = self.sprout("check-spec", os.path.join(self.specs, "web.json"), "--json")
        self.assertEqual(r.returncode, 2, r.stderr)
        problems = json.loads(r.stdout)[0]["problems"]
        for needle in ("vcpus", "memory", "shutdownTimeoutSeconds", 'did you mean \"memory\"'):
            self.assertTrue(any(needle in p for p in problems), (needle, problems))
        self.assertEqual(len(problems), 4, problems)

    def test_a_lone_file_with_another_name_is_a_warning(self):
        spec = self.read_spec("web")
        lone = os.path.join(self.tmp, "test.json")
        with open(lone, "w") as f:
            json.dump(spec, f)
        r = self.sprout("check-spec", lone)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ok (web", r.stdout)
        self.assertIn("warning:", r.stdout)
        self.assertIn("web.json", r.stdout)


class Gc(World):
    """7: gc honours $SPROUT_SPEC_DIR, and a cache named twice is swept once."""

    def test_a_cache_named_twice_counts_once(self):
        cache, roots = os.path.join(self.tmp, "cache"), os.path.join(self.tmp, "roots")
        os.makedirs(cache)
        os.makedirs(roots)
        spec = self.read_spec("web")
        self.write_spec("web", dict(spec, cacheDir=cache, gcRootDir=roots))
        open(os.path.join(cache, "config-" + "0" * 64 + ".ext4"), "wb").close()  # used by no VM
        dry = self.sprout("gc", "--dry-run", "--cache-dir", cache + "/")  # the specs' own cache, spelled apart
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertIn("would remove 1 image(s)", dry.stdout)
        real = self.sprout("gc", "--cache-dir", cache + "/")
        self.assertIn("removed 1 image(s)", real.stdout)
        self.assertEqual([n for n in os.listdir(cache) if n.endswith(".ext4")], [])


class Ssh(World):
    """13: every word after NAME is the remote command; -o passes options to ssh."""

    def test_the_words_after_name_go_to_the_remote_command(self):
        spec = self.read_spec("web")
        spec["network"] = {"mode": "user", "forwards": [{"hostPort": 2222, "guestPort": 22}]}
        self.write_spec("web", spec)
        self.assertEqual(self.sprout("export", "web").returncode, 0)  # mints its identity
        r = self.sprout("ssh", "--ssh", "/bin/echo", "-o", "ConnectTimeout=5", "web", "uname", "-a", "--", "-x")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split()[-7:], ["-o", "ConnectTimeout=5", "root@127.0.0.1", "uname", "-a", "--", "-x"])
        self.assertIn("StrictHostKeyChecking=yes", r.stdout.split())
        r = self.sprout("ssh", "--ssh", "/bin/echo", "web", "--user", "x")  # after NAME: the remote command's
        self.assertEqual(r.stdout.split()[-3:], ["root@127.0.0.1", "--user", "x"], r.stdout + r.stderr)


class Stop(World):
    """10: stop's --force and --timeout are checked as input."""

    def test_bad_stop_options_are_input_errors(self):
        for argv in (["--force", "--timeout", "5s"], ["--timeout", "1x"]):
            r = self.sprout("stop", "web", *argv)
            self.assertEqual(r.returncode, 2, (argv, r.stderr))
        r = self.sprout("stop", "web", "--force")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "web: not running; nothing to stop"), r.stderr)


class Start(World):
    """11: `sprout start` runs the VM in the background and returns; `stop` ends it."""

    def test_start_returns_with_the_run_in_the_background(self):
        config = os.path.join(self.tmp, "config")
        os.makedirs(os.path.join(config, "hosts", "web"))
        for f in ("configuration.nix", os.path.join("hosts", "web", "configuration.nix")):
            with open(os.path.join(config, f), "w") as out:
                out.write("{ }\n")
        spec = self.read_spec("web")
        spec.update(sources={"config": config, "self": os.path.join(config, "hosts", "web")},
                    cacheDir=os.path.join(self.tmp, "cache"), gcRootDir=os.path.join(self.tmp, "roots"),
                    accel="tcg")
        self.write_spec("web", spec)
        qemu = os.path.join(self.tmp, "fake-qemu")  # a qemu that runs until it is stopped
        with open(qemu, "w") as f:  # (and says, as qemu does, that it can switch users)
            f.write("#!/bin/sh\n[ \"$1\" = -help ] && exec echo '-runas user     change to user id user'\n"
                    "exec sleep 600\n")
        os.chmod(qemu, 0o755)
        r = self.sprout("start", "web", "--qemu", qemu, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("started (sprout run, pid", r.stdout)
        try:
            pid = int(r.stdout.split("pid ")[1].split(")")[0])
            os.kill(pid, 0)  # it outlived `sprout start`
            again = self.sprout("start", "web", "--qemu", qemu)
            self.assertEqual(again.returncode, 0, again.stderr)
            self.assertIn("already running", again.stdout)
        finally:
            stop = self.sprout("stop", "web", "--force", timeout=120)
        self.assertEqual(stop.returncode, 0, stop.stderr)
        self.assertTrue(os.path.exists(os.path.join(self.state, "run.log")))

    def test_a_run_that_fails_at_once_is_reported(self):
        r = self.sprout("start", "web", "--qemu", "/nonexistent/qemu", timeout=120)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("ended at once", r.stderr)


class Vocabulary(World):
    """14: one word for a run's state everywhere, one length for a generation."""

    def test_the_run_state_has_the_same_words_in_json_and_the_table(self):
        self.assertEqual(json.loads(self.sprout("status", "--json").stdout)[0]["run"]["state"], "none")
        self.ended_record()
        self.assertEqual(json.loads(self.sprout("status", "--json").stdout)[0]["run"]["state"], "stopped")
        header, row = self.sprout("status").stdout.splitlines()[:2]
        self.assertEqual(row[header.index("VM"):].split()[0], "stopped")

    def test_a_generation_is_shown_with_12_digits(self):
        gen = "a" * 64
        now = int(time.time() * 1000)
        with open(os.path.join(self.state, "status.json"), "w") as f:
            json.dump({"vm": "web", "phase": "specialized", "message": "m", "generation": gen, "bootId": "b",
                       "seq": 3, "sinceMs": now, "updatedMs": now, "detail": None, "lastLog": [],
                       "reached": ["specialized"], "host": {"state": "running", "supervisor": os.getpid()}}, f)
        for argv in (["wait", "web"], ["status"], ["list"]):
            out = self.sprout(*argv).stdout
            self.assertIn("a" * 12, out, argv)
            self.assertNotIn("a" * 13, out, argv)
        self.assertIn(gen, self.sprout("status", "--json").stdout)




class StatusTable(World):
    """15: the status table fits the terminal; a pipe gets it whole."""

    def test_the_table_fits_the_terminal(self):
        self.ended_record(how="a long story " * 20)
        env = dict(os.environ, NO_COLOR="1", SPROUT_SPEC_DIR=self.specs)
        for columns in (80, 120):
            _, shown = on_a_terminal([SPROUT, "status"], env, columns)
            shown = shown.replace("\r\n", "\n")
            lines = [l for l in shown.splitlines() if l]
            self.assertEqual(len(lines), 2, shown)
            for l in lines:
                self.assertLessEqual(len(l), columns, repr(l))
            self.assertTrue(lines[1].endswith("\u2026"), lines[1])
        piped = self.sprout("status").stdout
        self.assertIn(("a long story " * 20).strip(), piped)


class Console(World):
    """8: a second `sprout console` is refused, as virsh refuses it."""

    def test_a_second_session_is_refused(self):
        import socket
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(os.path.join(self.state, "console.sock"))  # where qemu serves the console
        srv.listen(4)
        env = dict(os.environ, NO_COLOR="1", SPROUT_SPEC_DIR=self.specs)
        first = subprocess.Popen([SPROUT, "console", "web"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env)
        try:
            srv.settimeout(60)
            conn, _ = srv.accept()  # the first session is attached
            second = self.sprout("console", "web")
            self.assertEqual(second.returncode, 1, second.stderr)
            self.assertIn("an active console session exists", second.stderr)
            self.assertIn(f"pid {first.pid}", second.stderr)
            conn.close()
        finally:
            first.stdin.close()
            first.wait(timeout=60)
            first.stdout.close()
            first.stderr.close()
            srv.close()
        # Once it is gone, the next one attaches.
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        os.unlink(os.path.join(self.state, "console.sock"))
        srv.bind(os.path.join(self.state, "console.sock"))
        srv.listen(1)
        third = subprocess.run([SPROUT, "console", "web"], input=b"", capture_output=True, env=env, timeout=60)
        srv.close()
        self.assertEqual(third.returncode, 0, third.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)

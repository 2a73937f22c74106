#!/usr/bin/env python3
"""`systemd-analyze security --offline=yes` on sprout's units: every one must score at
most THRESHOLD (issue 29: 4.0; 10 is a unit with no confinement at all, systemd rates
an unconfined root service 9.6).

usage: unit-security.py [--threshold N] UNIT...

Each UNIT is a unit file: the golden units of tests/nix/golden (the NixOS module's
real rendering, kept equal to it by nix-eval) and the installed template
data/systemd/sprout-vm@.service (as configured by meson, scored as an instance).
Prints each unit's score; for a unit above the threshold, its worst findings. Fails
when systemd-analyze is missing (package systemd; scripts/install-deps installs it):
a score nobody measured is not a pass.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


def score(analyze, path):
    """(overall exposure, [(exposure, name, description)] of what is not set, worst first)."""
    text = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", path],
                          capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text.stdout)
    if m is None:
        raise RuntimeError(f"systemd-analyze security {path}: no overall score (exit {text.returncode}):\n"
                           f"{text.stdout}{text.stderr}")
    js = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", "--json=short", path],
                        capture_output=True, text=True, timeout=120)
    findings = []
    try:
        for f in json.loads(js.stdout):
            if not f.get("set") and f.get("exposure"):
                findings.append((float(f["exposure"]), f["name"], f["description"]))
    except (ValueError, TypeError):
        findings.append((0.0, "(no --json)", js.stderr.strip()))
    findings.sort(key=lambda f: -f[0])
    return float(m.group(1)), findings


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float, default=4.0)
    ap.add_argument("units", nargs="+")
    args = ap.parse_args()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("FAIL  systemd-analyze is not installed (Debian package systemd; scripts/install-deps installs it)")
        return 1
    failed = 0
    with tempfile.TemporaryDirectory(prefix="sprout-unit-security-") as tmp:
        for unit in args.units:
            path = unit
            name = os.path.basename(unit)
            if name.endswith("@.service"):
                # A template is scored as an instance (%i expanded), as systemd runs it.
                path = os.path.join(tmp, name.replace("@.service", "@score.service"))
                shutil.copy(unit, path)
            try:
                overall, findings = score(analyze, path)
            except (RuntimeError, subprocess.SubprocessError) as e:
                print(f"FAIL  {unit}: {e}")
                failed += 1
                continue
            rel = os.path.relpath(unit)
            if overall <= args.threshold:
                print(f"ok    {overall:.1f}  {rel}")
            else:
                failed += 1
                print(f"FAIL  {overall:.1f}  {rel}: above {args.threshold:.1f}; its worst findings:")
                for exposure, key, description in findings[:12]:
                    print(f"        {exposure:.1f}  {key}: {description}")
    print(f"\n{failed} of {len(args.units)} units above {args.threshold:.1f}" if failed else
          f"\nall {len(args.units)} units at most {args.threshold:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

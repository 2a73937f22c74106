#!/usr/bin/env python3
"""The layering of host/ (docs/architecture.md), checked over every include line.

Each folder of host/ is a subsystem; it may include headers of the folders listed for
it below (and of common/, and its own), no others. Every include of a host header names
its folder ("image/export.h"), so each line shows its direction. host/ never includes
guest/ code, and guest/ never includes host/ code.

usage: layering_test.py SOURCE_ROOT
"""
import os
import re
import sys

# Bottom up. A folder may use the folders named here, never one above it.
MAY_USE = {
    "base": set(),
    "spec": {"base"},
    "identity": {"base", "spec"},
    "image": {"base", "spec", "identity"},
    "libvirt": {"base", "spec"},
    "status": {"base", "spec"},
    "disk": {"base", "spec", "identity", "image"},
    "runtime": {"base", "spec", "status"},
    "backend": {"base", "spec", "status", "runtime", "libvirt"},
    "cli": {"base", "spec", "identity", "image", "libvirt", "status", "disk", "runtime", "backend"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources(top):
    for root, _, files in os.walk(top):
        for f in files:
            if f.endswith((".cc", ".h")):
                yield os.path.join(root, f)


def main(src_root):
    host, guest, common = (os.path.join(src_root, d) for d in ("host", "guest", "common"))
    common_headers = {f for f in os.listdir(common) if f.endswith(".h")}
    guest_headers = {f for f in os.listdir(guest) if f.endswith(".h")}
    host_headers = {}  # "folder/name.h" -> folder
    folders = sorted(d for d in os.listdir(host) if os.path.isdir(os.path.join(host, d)))
    problems = []
    stray = [f for f in os.listdir(host) if f.endswith((".cc", ".h"))]
    if stray:
        problems.append(f"host/ holds sources outside a subsystem folder: {sorted(stray)}")
    unknown = set(folders) - set(MAY_USE)
    if unknown:
        problems.append(f"host/ folders without a rule here and in docs/architecture.md: {sorted(unknown)}")
    for d in folders:
        for f in os.listdir(os.path.join(host, d)):
            if f.endswith(".h"):
                host_headers[f"{d}/{f}"] = d
    bare = {h.split("/", 1)[1]: h for h in host_headers}
    for path in sorted(sources(host)):
        rel = os.path.relpath(path, host)
        me = rel.split(os.sep)[0]
        text = open(path, encoding="utf-8").read()
        for inc in INCLUDE.findall(text):
            if inc in host_headers:
                other = host_headers[inc]
                if other != me and other not in MAY_USE.get(me, set()):
                    problems.append(f"host/{rel} includes {inc}: {me}/ may not use {other}/ "
                                    f"(it may use: {', '.join(sorted(MAY_USE.get(me, ()))) or 'common/ only'})")
            elif inc in bare and inc not in common_headers:
                problems.append(f'host/{rel} includes "{inc}": write it with its folder, "{bare[inc]}"')
            elif inc in guest_headers and inc not in common_headers:
                problems.append(f"host/{rel} includes guest code: {inc}")
    for path in sorted(sources(guest)):
        for inc in INCLUDE.findall(open(path, encoding="utf-8").read()):
            if inc in host_headers or (inc in bare and inc not in common_headers and inc not in guest_headers):
                problems.append(f"guest/{os.path.relpath(path, guest)} includes host code: {inc}")
    for p in problems:
        print(p)
    print(f"{len(folders)} folders, {len(host_headers)} host headers; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

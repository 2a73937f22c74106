#!/usr/bin/env python3
"""Generates a deterministic benchmark tree: N files totalling about SIZE_MB, in nested
directories (100 files a directory), pseudo-random content. Usage: gen_tree.py DIR N SIZE_MB"""
import os
import random
import sys

root, count, size_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
per_file = size_mb * 1024 * 1024 // count
blob = rng.randbytes(1 << 20)
for i in range(count):
    d = os.path.join(root, f"d{i // 1000:02d}", f"s{(i // 100) % 10}")
    os.makedirs(d, exist_ok=True)
    n = max(1, int(per_file * rng.uniform(0.5, 1.5)))
    off = rng.randrange(0, len(blob) - n) if n < len(blob) else 0
    with open(os.path.join(d, f"f{i:05d}.nix"), "wb") as f:
        f.write(blob[off:off + n])

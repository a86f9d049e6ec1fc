"""Seconds per schematic face: the renderer of another git revision against this tree's,
timed in the same run (interleaved, best of three), so machine load affects both alike.

Run: ``python benchmarks/bench_schematic_vs_git.py [REV]`` (default ``main``) from the
repository root. The old package is read with ``git show REV:stimgen/backends/schematic/*``
into a temporary module; nothing in the tree changes.
"""
import importlib
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

REV = sys.argv[1] if len(sys.argv) > 1 else "main"
tmp = pathlib.Path(tempfile.mkdtemp()) / "schematic_baseline"
tmp.mkdir()
for name in ("__init__", "drawing", "expression", "geometry", "identity"):
    src = subprocess.run(["git", "show", f"{REV}:stimgen/backends/schematic/{name}.py"],
                         capture_output=True, text=True, check=True).stdout
    (tmp / f"{name}.py").write_text(src.replace("stimgen.backends.schematic", "schematic_baseline"))
sys.path.insert(0, str(tmp.parent))
old = importlib.import_module("schematic_baseline")
import stimgen.backends.schematic as new  # noqa: E402
from stimgen.circumplex import angle_to_va  # noqa: E402
N = 120
angles = np.linspace(0, 360, N, endpoint=False)
def run(mod):
    ids = [mod.sample_identity(s) for s in range(8)]
    start = time.perf_counter()
    for i in range(N):
        mod.render_face(ids[i % 8], *angle_to_va(angles[i], 0.25 + 0.75 * (i % 4) / 3), 512)
    return (time.perf_counter() - start) / N
run(old); run(new)
t = {"old": [], "new": []}
for _ in range(3):
    t["old"].append(run(old)); t["new"].append(run(new))
o, n = min(t["old"]), min(t["new"])
print(f"render_face 512px, {N} faces: {REV} {o * 1e3:.1f} ms/face, this tree {n * 1e3:.1f} "
      f"ms/face, ratio {n / o:.2f}")

"""``benchmarks/bench_core.py --quick`` runs end to end and writes a sane roofline report.

The script runs in a subprocess, as a user would run it; it checks itself that every code path (the fused native
kernels where a compiler exists, the eager code) equals the naive reference before timing. The checks here are on
what any run must produce: the roofline is the lesser of the bandwidth and compute bounds measured in the same run,
with the byte and flop counts of the docstring's models, and the fractions and ratios are consistent with the rates.
Performance is not tested.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_core_quick_reports_the_roofline(tmp_path):
    out = tmp_path / "core.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_core.py"), "--quick", "--threads", "1", "--clock", "cpu",
           "--sizes", "4", "--no-typecheck", "--mbytes", "2", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"bench_core.py --quick exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    info = report["info"]
    assert info["copy_bandwidth_GBps"] > 0 and info["peak_GFLOPs"] > 0 and info["THP_MEM_ALLOC_ENABLE"] == "1"
    rows = {row["kernel"]: row for row in report["kernels"]}
    assert {"plaquette/eager", "force/eager"} <= set(rows)
    # SU(3) in 4D, complex128: the docstring's models
    assert (rows["plaquette/eager"]["bytes_per_site"], rows["plaquette/eager"]["flops_per_site"]) == (584, 2808)
    assert (rows["force/eager"]["bytes_per_site"], rows["force/eager"]["flops_per_site"]) == (1152, 9072)
    for name, row in rows.items():
        bound = min(info["copy_bandwidth_GBps"] * 1e9 / row["bytes_per_site"],
                    info["peak_GFLOPs"] * 1e9 / row["flops_per_site"])
        assert math.isclose(row["bound_sites_per_s"], bound, rel_tol=1e-9), name
        assert math.isclose(row["fraction_of_bound"], row["sites_per_s"] / bound, rel_tol=1e-9), name
        assert row["sites"] == row["batch"] * 4**4 and row["sites_per_s"] > 0, name
        assert name.split("/")[0] in proc.stdout

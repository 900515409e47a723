"""``benchmarks/bench_osq_prior.py --quick`` runs end to end (a subprocess, as a user runs it) and writes one row per
kappa with both priors: finite var(log w) >= 0, ESS / n in (0, 1], the Hartree row's process carrying its kinetic
term and the white one's not. Performance and the size of the gain are not tested (docs/osq.md has them)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_osq_prior_quick(tmp_path):
    out = tmp_path / "prior.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_osq_prior.py"), "--quick", "--json",
                           str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert report["L"] == 4 and report["n"] == 32 and len(report["rows"]) == 3
    for row in report["rows"]:
        for prior in ("white", "hartree"):
            r = row[prior]
            assert math.isfinite(r["var_log_w"]) and r["var_log_w"] >= 0 and 0 < r["ess_fraction"] <= 1, row
        assert "prior_kinetic" in row["hartree"]["process"] and "prior_kinetic" not in row["white"]["process"]
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_osq_prior.py"), "--L", "1"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--L and --n must be >= 2" in bad.stderr and "Traceback" not in bad.stderr

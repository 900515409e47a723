"""``benchmarks/bench_marginal_imh.py --quick`` runs end to end (a subprocess, as a user runs it) and writes a sane
report: one row per (spacing, steps) with var(log w) >= 0, ESS / n and the SNIS acceptance estimate in (0, 1], a
positive cost per proposal, and the timed proposal at the other volume; a lattice the NCSN++ cannot take is a
one-line usage error. The acceptance estimate itself is checked against direct formulas on made-up weights."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_marginal_imh import stationary_acceptance  # noqa: E402


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_marginal_imh.py"), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=180)


def test_bench_marginal_imh_quick(tmp_path):
    out = tmp_path / "m.json"
    proc = _run(tmp_path, "--quick", "--json", str(out))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert report["L"] == 4 and report["n"] == 4
    assert [(r["spacing"], r["steps"]) for r in report["rows"]] == [("uniform", 2), ("uniform", 3),
                                                                    ("geometric", 2), ("geometric", 3)]
    for r in report["rows"]:
        assert r["var_log_w"] >= 0 and 0 < r["ess_fraction"] <= 1 and 0 < r["acceptance"] <= 1, r
        assert math.isfinite(r["cpu_s_per_proposal"]) and r["cpu_s_per_proposal"] > 0
    assert report["costs"][0]["L"] == 8 and report["costs"][0]["cpu_s_per_proposal"] > 0
    path = _run(tmp_path, "--quick", "--route", "path", "--json", str(out))
    assert path.returncode == 0, f"{path.stdout}\n{path.stderr}"
    report = json.loads(out.read_text())
    assert report["route"] == "path" and [r["spacing"] for r in report["rows"]] == ["uniform", "uniform"]
    assert all(0 < r["acceptance"] <= 1 and r["var_log_w"] >= 0 for r in report["rows"])
    bad = _run(tmp_path, "--L", "6")
    assert bad.returncode == 2 and "multiples of 4" in bad.stderr and "Traceback" not in bad.stderr


def test_stationary_acceptance_estimate():
    # equal weights: every proposal is accepted
    assert stationary_acceptance(np.zeros(5)) == 1.0
    # two weights 1 and e: target mass on them is 1/(1+e) and e/(1+e); from the heavy one, min(1, 1/e) to the light
    lw = np.array([0.0, 1.0])
    w = np.exp(lw)
    want = sum(w[i] * sum(min(1.0, w[j] / w[i]) for j in range(2)) for i in range(2)) / (2 * w.sum())
    assert math.isclose(stationary_acceptance(lw), want, rel_tol=1e-12)
    assert math.isclose(want, (3 + math.e) / (2 * (1 + math.e)), rel_tol=1e-12)  # 1 x 2 + e x (1/e + 1)

"""``benchmarks/bench_gauge_tau.py --quick`` runs end to end (a subprocess, as a user runs it) with the diffusion
resampling row and writes a sane report: every row with an acceptance in [0, 1], a positive cost, a finite
plaquette and chi_t, the heatbath rejection-free, and the resampling row's settings in its note."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_gauge_tau_quick_with_resampling(tmp_path):
    out = tmp_path / "g.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gauge_tau.py"), "--quick", "--skip-maala",
                           "--resample-model", str(REPO / "lgdiff" / "models" / "u1_b7.0_L16.safetensors"),
                           "--resample-steps", "4", "--precondition", "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert report["beta"] == 7.0 and report["L"] == 8
    assert list(report["rows"]) == ["heatbath+OR", "hmc", "direct", "dm-resample+hb"]
    for name, row in report["rows"].items():
        assert 0 <= row["acceptance"] <= 1 and row["cpu_s"] > 0, name
        assert math.isfinite(row["plaquette"][0]) and math.isfinite(row["chi_t"][0]), name
    assert report["rows"]["heatbath+OR"]["acceptance"] == 1.0
    assert "t_max 0.1, 4 steps" in report["rows"]["dm-resample+hb"]["note"]
    assert "preconditioned (beta_eff 6.479)" in report["rows"]["dm-resample+hb"]["note"]

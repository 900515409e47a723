"""``benchmarks/bench_su3.py --quick`` runs end to end and writes a sane JSON report.

The script runs in a subprocess (``sys.executable benchmarks/bench_su3.py --quick --json OUT``, OMP_NUM_THREADS=1),
as a user would run it. The checks are on what any run must produce, whatever the (tiny, unthermalised) smoke
statistics: the four algorithms, acceptances in [0, 1] (exactly 1 for the rejection-free heatbath), finite
plaquettes and Wilson loops in (0, 1), positive cost. Performance is not tested.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALGORITHMS = ("heatbath+OR", "hmc", "maala (force)", "maala (score)")


def test_bench_su3_quick_writes_four_sane_rows(tmp_path):
    out = tmp_path / "su3.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_su3.py"), "--quick", "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (f"bench_su3.py --quick exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
                                  f"--- stderr\n{proc.stderr}")
    report = json.loads(out.read_text())
    assert (report["beta"], report["L"], report["chains"], report["n"]) == (5.5, 4, 2, 10)
    rows = report["rows"]
    assert tuple(rows) == ALGORITHMS
    for name, row in rows.items():
        assert 0.0 <= row["acceptance"] <= 1.0, (name, row["acceptance"])
        for key in ("plaquette", "wilson_2x2"):
            value = row[key][0]
            assert math.isfinite(value) and 0.0 < value < 1.0, (name, key, value)
        assert row["cpu_s"] > 0 and row["configs_per_cpu_s"] > 0, (name, row["cpu_s"])
        assert name in proc.stdout
    assert rows["heatbath+OR"]["acceptance"] == 1.0
    for name in ("maala (force)", "maala (score)"):
        assert 0.0 < rows[name]["step_size"] < 1.0, (name, rows[name]["step_size"])


def quick_report(tmp_path: Path, mode: str) -> dict:
    """The JSON report of ``bench_su3.py MODE --quick``, run as a user would run it."""
    out = tmp_path / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_su3.py"), mode, "--quick",
                           "--json", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{mode} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text())


def test_bench_su3_to_ensemble_quick_counts_thermalisation(tmp_path):
    """``--to-ensemble --quick``: the five routes, a thermalisation cut that is a record index (or None when the
    drift test never passes in the short smoke chains), and a cost to N that grows with N where it is defined."""
    report = quick_report(tmp_path, "--to-ensemble")
    assert report["model_train_cpu_s"] > 0
    (point,) = report["points"].values()
    rows = point["rows"]
    assert tuple(rows) == ("heatbath+OR (model start)", "hmc (model start)", "hmc (cold)", "hmc (hot)",
                           "heatbath+OR (hot)")
    for name in ("heatbath+OR (model start)", "hmc (model start)"):
        assert rows[name]["start_cpu_s_per_chain"] > 0, name  # the denoiser's cost is counted
    assert rows["hmc (cold)"]["plaquette_first"] > rows["hmc (hot)"]["plaquette_first"]
    for name, row in rows.items():
        assert 0.0 <= row["acceptance"] <= 1.0 and row["cpu_s_per_update"] > 0, name
        t_th = row["thermalisation"]
        assert t_th is None or 0 <= t_th <= report["n"] // 2, (name, t_th)
        assert len(row["plaquette_chain_mean"]) == report["n"]
        if t_th is not None:
            assert 0.0 < row["wilson_2x2"][0] < 1.0, name
        if t_th is not None and math.isfinite(row["tau_int_plaquette"][0]):
            assert 0 < row["cpu_s_to_16"] < row["cpu_s_to_256"], name


def test_bench_su3_relax_quick_records_every_update_from_both_starts(tmp_path):
    """``--relax --quick``: the loops of every chain after every update from the model's start and from a hot start
    (where the plaquette starts near 0, far below the model's start), and positive costs."""
    report = quick_report(tmp_path, "--relax")
    (point,) = report["points"].values()
    for how in ("model", "hot"):
        loops = point[how]["loops"]
        assert (len(loops), len(loops[0]), len(loops[0][0])) == (report["n"] + 1, report["chains"], 3), how
        assert point[how]["cpu_s_per_update_and_config"] > 0, how
    assert point["model"]["start_cpu_s_per_config"] > 0 and point["hmc_cpu_s_per_trajectory_and_config"] > 0
    hot_start = [chain[0] for chain in point["hot"]["loops"][0]]
    model_start = [chain[0] for chain in point["model"]["loops"][0]]
    assert max(abs(p) for p in hot_start) < 0.05 < min(model_start), (hot_start, model_start)
    assert all(0.0 < x < 1.0 for x in point["equilibrium"]), point["equilibrium"]

"""``benchmarks/bench_osq.py --quick`` runs end to end and writes a sane JSON report.

The script runs in a subprocess (``sys.executable benchmarks/bench_osq.py --quick --json OUT``, OMP_NUM_THREADS=1), as
a user would run it. The checks are on what any run must produce, whatever the tiny smoke statistics: the five
algorithms (OSQ trained and with v = 0, the diffusion model, HMC, HMC + Wolff), acceptances in [0, 1] (HMC + Wolff reports its last kernel's, the rejection-free Wolff update), finite
<|M|> in (0, inf), positive cost, the training costs from the model files (OSQ: no data; the diffusion model: its
data generation measured and scaled to the 180 FA-HMC trajectories of the shipped model's data command).
Performance is not tested.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_osq.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)


def test_bench_osq_quick_writes_five_sane_rows(tmp_path):
    out = tmp_path / "osq.json"
    proc = _run(tmp_path, "--quick", "--json", str(out))
    assert proc.returncode == 0, f"bench_osq.py --quick exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert (report["L"], report["kappa"], report["chains"]) == (8, 0.21, 2)
    rows = report["rows"]
    assert list(rows) == ["osq-imh", "osq-v0", "dm-path", "hmc", "hmc+wolff"]
    for name, row in rows.items():
        assert 0.0 <= row["acceptance"] <= 1.0, (name, row["acceptance"])
        assert math.isfinite(row["<|M|>"][0]) and row["<|M|>"][0] > 0, (name, row["<|M|>"])
        n = 10 if name in ("osq-imh", "osq-v0", "dm-path") else 40
        assert row["cpu_s"] > 0 and row["n"] == n * 2, (name, row)
        assert name in proc.stdout
    assert rows["osq-imh"]["training"]["steps"] == 2 and rows["osq-imh"]["training"]["data_cpu_s"] == 0.0
    dm = rows["dm-path"]["training"]
    assert dm["steps"] == 1200 and dm["lattice"] == [32, 32]
    assert dm["data"]["trajectories"] == 100 + 40 * 2 and dm["data_cpu_s"] > 0


def test_bench_osq_refuses_a_model_of_other_couplings(tmp_path):
    proc = _run(tmp_path, "--osq-model", str(REPO / "lgdiff" / "models" / "phi4_k0.21_L32.safetensors"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--osq-model" in proc.stderr or "osq" in proc.stderr.splitlines()[-1]

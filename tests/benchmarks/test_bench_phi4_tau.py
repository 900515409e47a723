"""``benchmarks/bench_phi4_tau.py --quick`` runs end to end (a subprocess, as a user runs it): several lattices in one
run, each with its model's training cost beside the rows, the preconditioned path IMH and the mixture, FA-HMC + Wolff;
the physics of every row (acceptance, <|M|>, chi, U_L within ranges a 2D phi^4 chain must give) and one-line usage
errors for a model list that does not fit the lattices."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_phi4_tau.py"
MODEL = REPO / "lgdiff" / "models" / "phi4_k0.27_L16.safetensors"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_bench_phi4_tau_quick_on_two_lattices(tmp_path):
    out = tmp_path / "t.json"
    proc = _run(tmp_path, "--quick", "--L", "4", "8", "--model", str(MODEL), "--only", "fahmc", "fahmc+wolff", "path",
                "mix", "--json", str(out))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert [r["L"] for r in report["runs"]] == [4, 8] and report["kappa"] == 0.27
    for run in report["runs"]:
        assert set(run["rows"]) == {"fahmc", "fahmc+wolff", "dm-path", "dm-mix"}
        assert "6000 steps" in run["training"] and "CPU s" in run["training"] and "s wall" in run["training"]
        assert "preconditioned" in run["rows"]["dm-path"]["note"]
        assert set(run["rows"]["dm-path"]["z_vs_reference"]) == {"<|M|>", "chi_2'", "U_L"}
        for name, row in run["rows"].items():
            assert 0 <= row["acceptance"] <= 1 and row["cpu_s"] > 0, (name, row)
            m, dm = row["<|M|>"]
            assert 0 < m < 2 and dm > 0 and row["chi_2'"][0] > 0, (name, row)
    assert "training cost 6000 steps" in proc.stdout and "against fahmc+wolff" in proc.stdout


def test_bench_phi4_tau_model_list_must_fit(tmp_path):
    proc = _run(tmp_path, "--quick", "--L", "4", "8", "12", "--model", str(MODEL), str(MODEL))
    assert proc.returncode == 2 and "one model for all --L or one per --L; got 2 for 3 lattices" in proc.stderr
    proc = _run(tmp_path, "--quick", "--model", str(tmp_path / "none.safetensors"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr

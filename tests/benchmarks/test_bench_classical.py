"""``benchmarks/bench_classical.py --quick`` runs end to end, checks its references and writes a sane JSON report.

The script runs in a subprocess (OMP_NUM_THREADS=1), as a user would run it: once with numba made unimportable
(CI does not install the ``bench`` extra: the numba rows are skipped with one line and the rest still runs), and once
with numba where it is installed. The reference checks themselves are shown to reject a broken sampler. Performance
is not tested.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_classical.py"
HAS_NUMBA = importlib.util.find_spec("numba") is not None


def _run(tmp_path: Path, *, block_numba: bool) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "classical.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    argv = [str(SCRIPT), "--quick", "--json", str(out)]
    # sys.modules["numba"] = None makes `import numba` raise ImportError, as on a machine without it
    launcher = (("import sys; sys.modules['numba'] = None; " if block_numba else "")
                + f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", launcher], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"bench_classical.py --quick exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(out.read_text())


def _check_heatbath(report: dict) -> None:
    hb = report["heatbath"]
    assert hb["check"]["z"] <= 4 and 0.3 < hb["check"]["value"] < 0.8, hb["check"]
    (row,) = hb["rows"]
    assert row["L"] == 4
    for key in ("numpy_link_updates_per_s", "lgdiff_1_link_updates_per_s", "lgdiff_8_link_updates_per_s"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row)
    assert row["ratio_8"] == pytest.approx(row["lgdiff_8_link_updates_per_s"] / row["numpy_link_updates_per_s"])


def test_bench_classical_quick_without_numba_skips_its_rows_with_one_line(tmp_path):
    proc, report = _run(tmp_path, block_numba=True)
    skip = [line for line in proc.stdout.splitlines() if "numba is not installed" in line]
    assert len(skip) == 1 and "pip install -e '.[bench]'" in skip[0], proc.stdout
    assert report["threads"] == 1 and report["clock"] == "cpu"
    metropolis = report["metropolis"]
    assert metropolis["numba"] is None and "checks" not in metropolis
    (row,) = metropolis["rows"]
    assert row["L"] == 8 and set(row) == {"L", "lgdiff_1_site_updates_per_s", "lgdiff_64_site_updates_per_s"}
    assert all(row[key] > 0 for key in row), row
    _check_heatbath(report)


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is optional (the bench extra)")
def test_bench_classical_quick_with_numba_checks_and_times_the_compiled_reference(tmp_path):
    _, report = _run(tmp_path, block_numba=False)
    metropolis = report["metropolis"]
    assert isinstance(metropolis["numba"], str)
    checks = metropolis["checks"]
    assert set(checks) == {"free_phi2", "phi2", "acceptance"}
    assert all(c["z"] <= 4 for c in checks.values()), checks
    assert checks["free_phi2"]["expected_error"] == 0.0  # the exact free-field value
    assert 0 < checks["acceptance"]["value"] < 1
    (row,) = metropolis["rows"]
    assert row["numba_site_updates_per_s"] > 0
    assert row["ratio_64"] == pytest.approx(row["lgdiff_64_site_updates_per_s"] / row["numba_site_updates_per_s"])
    _check_heatbath(report)


def test_bench_classical_refuses_a_json_path_in_a_missing_directory_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(tmp_path / "no" / "out.json")],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1].endswith(f"--json {tmp_path / 'no' / 'out.json'}: the directory "
                                                 f"{tmp_path / 'no'} does not exist")
    assert proc.stdout == ""  # refused before anything ran


@pytest.fixture
def bench_classical():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_classical", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_the_heatbath_check_rejects_a_reference_with_half_the_coupling(bench_classical):
    # the classic slip: alpha = beta k / 3 instead of 2 beta k / 3 samples at beta / 2
    def wrong(U: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
        return bench_classical.numpy_heatbath_sweep(U, beta / 2, rng)

    with pytest.raises(bench_classical.ReferenceMismatch, match="plaquette .* combined errors apart"):
        bench_classical.check_numpy_heatbath(L=4, therm=5, n=10, chains=1, sweep=wrong)


@pytest.mark.skipif(not HAS_NUMBA, reason="numba is optional (the bench extra)")
def test_the_metropolis_check_rejects_a_reference_with_half_the_hopping_term(bench_classical):
    # the classic slip in a local action: -kappa phi(x) n(x) instead of -2 kappa phi(x) n(x)
    sweeps, seed = bench_classical.numba_metropolis()

    def wrong(phi: np.ndarray, kappa: float, lam: float, step: float, n: int) -> int:
        return sweeps(phi, kappa / 2, lam, step, n)

    with pytest.raises(bench_classical.ReferenceMismatch, match="free field .* against the exact value"):
        bench_classical.check_numba_metropolis(wrong, seed, L=8, therm=50, n=300)

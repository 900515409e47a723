"""``benchmarks/bench_memory.py --quick`` runs end to end and writes a sane JSON report (Linux: it reads /proc)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_bench_memory_quick_writes_sane_rows(tmp_path):
    out = tmp_path / "memory.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_memory.py"), "--quick", "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3
    for row in rows:
        assert 7 < row["state_mb"] < 10, row  # the requested 8 MB, to the nearest even extent
        assert row["factor"] > 1, row  # the state itself is held
        assert row["algorithm"] in proc.stdout

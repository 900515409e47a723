"""``benchmarks/bench_flow.py --quick`` runs end to end and writes a sane JSON report.

The script runs in a subprocess (``sys.executable benchmarks/bench_flow.py --quick --json OUT``, OMP_NUM_THREADS=1),
as a user would run it; it checks itself that every chunk size gives the same flowed links. The checks here are on
what any run must produce: the rows (chunks of 1 and 4, the default, the whole ensemble), positive CPU times and
the end-to-end measure with a finite charge. Performance is not tested.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_flow_quick_writes_sane_rows(tmp_path):
    out = tmp_path / "flow.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_flow.py"), "--quick", "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"bench_flow.py --quick exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert (report["L"], report["N"], report["chains"], report["records"]) == (3, 3, 2, 4)
    rows = report["rows"]
    assert list(rows) == ["chunk 1", "chunk 4", "default (2 MiB)", "whole ensemble"]
    assert [row["configs"] for row in rows.values()] == [1, 4, 8, 8] and report["default_chunk"] == 8
    for name, row in rows.items():
        assert row["ms_per_config"] > 0 and row["speedup_vs_whole"] > 0, (name, row)
        assert name in proc.stdout
    assert report["measure"]["cpu_s"] > 0 and math.isfinite(report["measure"]["topo_charge"])

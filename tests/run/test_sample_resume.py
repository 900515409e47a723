"""``lgdiff sample`` killed with SIGKILL mid-run and rerun with the same command continues and writes, record for
record, the file of an uninterrupted run; the independence samplers' chains resume with their log weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lgdiff import Field, Lattice, Phi4Action, VESDE
from lgdiff._io.ensemble import Ensemble, EnsembleError
from lgdiff._run.split import generate_ensemble, pack_resume, unpack_resume
from lgdiff._samplers.independence import PathIMH

REPO = Path(__file__).resolve().parents[2]
RUNS = {
    "u1-maala": ["sample", "--theory", "u1", "--L", "4", "--n", "400", "--chains", "2", "--steps", "3", "--therm",
                 "2", "--every", "1", "--seed", "11"],
    "phi4-path": ["sample", "--theory", "phi4", "--L", "4", "--kappa", "0.27", "--lam", "0.022", "--n", "400",
                  "--chains", "2", "--steps", "4", "--seed", "11"],
}


def _command(run: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "cli.main", *RUNS[run], "--out", str(out)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _finish(run: str, out: Path) -> None:
    done = subprocess.run(_command(run, out), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def _records(path: Path) -> int:
    try:
        return Ensemble.load(path).n_records
    except EnsembleError:  # not written yet, or caught while a writer creates it
        return 0


@pytest.mark.parametrize("run", list(RUNS))
def test_sample_killed_with_sigkill_resumes_to_the_uninterrupted_file(tmp_path, run):
    # gauge MAALA (tuned step size in the file) and scalar path-space IMH (log weights in the resume state)
    _finish(run, tmp_path / "whole.safetensors")
    out = tmp_path / "killed.safetensors"
    proc = subprocess.Popen(_command(run, out), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _records(out) < 100 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("the run ended before it could be killed; make it longer")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _records(out)
    assert 0 < killed_at < 400
    _finish(run, out)
    a, b = Ensemble.load(out), Ensemble.load(tmp_path / "whole.safetensors")
    assert a.n_records == b.n_records == 400
    assert torch.equal(a.configs().data, b.configs().data)  # configuration for configuration
    assert torch.equal(a.index, b.index) and torch.equal(a.acceptance, b.acceptance)
    assert torch.equal(a.rng_state, b.rng_state)


def gaussian_score(x, t):
    """The exact score of the free-ish Gaussian N(0, 1) data under the VE process (a poor model of phi^4)."""
    s2 = VESDE().std(t) ** 2
    return -x / (1 + s2).reshape(-1, *([1] * (x.ndim - 1)))


def test_independence_chains_resume_with_their_log_weights(tmp_path):
    # the log weight of the current state is not a function of the configuration (it depends on the proposal's
    # path): without it the resumed chain would accept differently. Stop after 3 of 8 records, resume, compare.
    lattice = Lattice(shape=(2, 2))
    kernel = PathIMH(score=gaussian_score, process=VESDE(), action=Phi4Action(kappa=0.2, lam=0.02), steps=6)

    def initial(generator):
        return Field.zeros(lattice, batch=3)

    run = dict(theory="phi4", params={"kappa": 0.2, "lam": 0.02}, seed=4)
    whole = generate_ensemble(tmp_path / "w.safetensors", kernel, initial, n=8, **run)
    generate_ensemble(tmp_path / "p.safetensors", kernel, initial, n=3, **run)
    part = generate_ensemble(tmp_path / "p.safetensors", kernel, initial, n=8, **run)
    assert torch.equal(part.configs().data, whole.configs().data)
    assert torch.equal(part.acceptance, whole.acceptance)
    assert 0 < float(whole.acceptance.mean()) < 1  # proposals are really rejected: the weights matter
    rng = torch.Generator().get_state()
    blob = pack_resume(rng, {"log_w": torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)})
    back, carry = unpack_resume(blob, rng.numel(), ("log_w",), 3)
    assert torch.equal(back, rng) and carry["log_w"].tolist() == [0.5, -1.0, 2.0]
    with pytest.raises(EnsembleError, match="the saved resume state has"):
        unpack_resume(blob, rng.numel(), ("log_w", "other"), 3)

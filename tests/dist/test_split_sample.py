"""``lgdiff sample`` through the one ensemble run: under ``torchrun --nproc-per-node 2`` the chains split into two
independently seeded blocks and rank 0 writes the file that one process with ``--blocks 2`` writes, for the exact
gauge sampler (MAALA, whose step-size adaptation averages the acceptance over the blocks and ranks) and for the
scalar path-space independence sampler (whose chains carry their log weights in the resume state)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from lgdiff._io.ensemble import Ensemble

from ._spawn import free_port

GAUGE = ["--theory", "u1", "--L", "4", "--n", "3", "--chains", "4", "--steps", "3", "--therm", "3", "--every", "2",
         "--seed", "5"]
SCALAR = ["--theory", "phi4", "--L", "4", "--kappa", "0.27", "--lam", "0.022", "--n", "3", "--chains", "4",
          "--steps", "4", "--seed", "5"]


def _torchrun(args: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "cli.main", "--", "sample", *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks run (torchrun sets OMP_NUM_THREADS=1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("args", [GAUGE, SCALAR], ids=["u1-maala", "phi4-path"])
def test_two_ranks_write_the_file_of_one_process_with_two_blocks(tmp_path, one_thread, args):
    done = _torchrun(args, tmp_path / "ranks.safetensors")
    assert done.returncode == 0, done.stderr[-3000:]
    result = CliRunner().invoke(cli, ["sample", *args, "--out", str(tmp_path / "one.safetensors"), "--blocks", "2"])
    assert result.exit_code == 0, result.output
    ranks, one = Ensemble.load(tmp_path / "ranks.safetensors"), Ensemble.load(tmp_path / "one.safetensors")
    assert ranks.metadata.settings["run.blocks"] == 2 and ranks.n_records == 3 and ranks.chains == 4
    assert torch.equal(ranks.configs().data, one.configs().data)  # bit for bit
    assert torch.equal(ranks.index, one.index) and torch.equal(ranks.acceptance, one.acceptance)
    assert torch.equal(ranks.rng_state, one.rng_state)
    assert ranks.metadata.differences(one.metadata) == {}
    # the two blocks are different chains (independent seeds), not copies
    data = ranks.configs().data.reshape(3, 2, 2, -1)
    assert not torch.equal(data[:, 0], data[:, 1])

"""``lgdiff sample`` through the one ensemble run: under ``torchrun --nproc-per-node 2`` the chains split into two
independently seeded blocks and rank 0 writes the file that one process with ``--blocks 2`` writes, for the exact
gauge sampler (MAALA, whose step-size adaptation averages the acceptance over the blocks and ranks) and for the
scalar path-space independence sampler and the OSQ one (whose chains carry their log weights in the resume
state)."""


import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from lgdiff._io.ensemble import Ensemble

from ._spawn import assert_same_records, torchrun

GAUGE = ["--theory", "u1", "--L", "4", "--n", "3", "--chains", "4", "--steps", "3", "--therm", "3", "--every", "2",
         "--seed", "5"]
SCALAR = ["--theory", "phi4", "--L", "4", "--kappa", "0.27", "--lam", "0.022", "--n", "3", "--chains", "4",
          "--steps", "4", "--seed", "5"]


@pytest.mark.parametrize("args", [GAUGE, SCALAR], ids=["u1-maala", "phi4-path"])
def test_two_ranks_write_the_file_of_one_process_with_two_blocks(tmp_path, one_thread, args):
    done = torchrun("sample", args, tmp_path / "ranks.safetensors")
    assert done.returncode == 0, done.stderr[-3000:]
    result = CliRunner().invoke(cli, ["sample", *args, "--out", str(tmp_path / "one.safetensors"), "--blocks", "2"])
    assert result.exit_code == 0, result.output
    ranks, one = Ensemble.load(tmp_path / "ranks.safetensors"), Ensemble.load(tmp_path / "one.safetensors")
    assert ranks.metadata.settings["run.blocks"] == 2 and ranks.n_records == 3 and ranks.chains == 4
    assert_same_records(ranks, one)
    # the two blocks are different chains (independent seeds), not copies
    data = ranks.configs().data.reshape(3, 2, 2, -1)
    assert not torch.equal(data[:, 0], data[:, 1])


def test_osq_imh_on_two_ranks_writes_the_file_of_one_process_with_two_blocks(tmp_path, one_thread):
    # an OSQ model (trained without data) through the same run: its chains carry their path log weights too
    model = tmp_path / "osq.safetensors"
    trained = CliRunner().invoke(cli, ["train", "--objective", "osq", "--theory", "phi4", "--L", "4", "--kappa", "0.27",
                                       "--lam", "0.022", "--steps", "1", "--batch-size", "4", "--path-steps", "4",
                                       "--channels", "4", "--out", str(model)])
    assert trained.exit_code == 0, trained.output
    args = ["--theory", "phi4", "--L", "4", "--method", "osq-imh", "--model", str(model), "--n", "3", "--chains", "4",
            "--seed", "5"]
    done = torchrun("sample", args, tmp_path / "ranks.safetensors")
    assert done.returncode == 0, done.stderr[-3000:]
    result = CliRunner().invoke(cli, ["sample", *args, "--out", str(tmp_path / "one.safetensors"), "--blocks", "2"])
    assert result.exit_code == 0, result.output
    ranks, one = Ensemble.load(tmp_path / "ranks.safetensors"), Ensemble.load(tmp_path / "one.safetensors")
    assert ranks.metadata.algorithm == "osq-imh" and ranks.metadata.settings["run.blocks"] == 2
    assert_same_records(ranks, one)

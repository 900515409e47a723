"""``lgdiff generate`` under ``torchrun --nproc-per-node 2``: the chains split into two independently seeded
blocks, one per rank, and rank 0 writes one file (lgdiff/_run/split.py, docs/distributed.md).

Known answers: block b of the file is the ordinary one-generator run with seed ``block_seed(seed, b)`` and half
the chains (run here through the untouched single-block code path), and one process with ``--blocks 2`` writes
the same file."""

from pathlib import Path

import torch
from click.testing import CliRunner

from cli.main import cli
from lgdiff._dist import block_seed
from lgdiff._geometry.lattice import Lattice
from lgdiff._io.ensemble import Ensemble
from lgdiff._run.generate import GenerateConfig
from lgdiff._run.theory import Theory

from ._spawn import assert_same_records, torchrun



def _phi4(n: int = 3, chains: int = 4) -> list[str]:
    return ["--theory", "phi4", "--dim", "2", "--L", "4", "--kappa", "0.2", "--lam", "0.02", "--n", str(n),
            "--therm", "2", "--chains", str(chains), "--seed", "7", "--n-steps", "4"]


PHI4 = _phi4()
U1 = ["--theory", "u1", "--dim", "2", "--L", "2", "--beta", "1.0", "--n", "2", "--therm", "1", "--chains", "4",
      "--seed", "3", "--n-steps", "3"]


def _one_process(args: list[str], out: Path) -> None:
    result = CliRunner().invoke(cli, ["generate", *args, "--out", str(out), "--blocks", "2"])
    assert result.exit_code == 0, result.output


def test_two_ranks_write_the_blocks_of_independent_single_process_runs(tmp_path, one_thread):
    done = torchrun("generate", PHI4, tmp_path / "ranks.safetensors")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = Ensemble.load(tmp_path / "ranks.safetensors")
    meta = ranks.metadata
    assert (meta.chains, meta.seed, ranks.n_records) == (4, 7, 3)
    assert meta.settings["run.blocks"] == 2
    assert meta.settings["run.block_seeds"] == f"{block_seed(7, 0)},{block_seed(7, 1)}"
    assert meta.command is not None and meta.command.startswith("torchrun --nproc-per-node 2 -m cli.main -- generate")
    # chains [2b, 2b + 2) are the ordinary run (one generator, the pre-existing code path) with seed block_seed(7, b)
    theory = Theory(name="phi4", lattice=Lattice(shape=(4, 4)), params={"kappa": 0.2, "lam": 0.02})
    configs = ranks.configs().data.reshape(3, 4, 4, 4)
    for b in (0, 1):
        plain = GenerateConfig(theory=theory, algorithm="hmc", n=3, chains=2, therm=2, n_steps=4,
                               seed=block_seed(7, b)).run(tmp_path / f"plain{b}.safetensors")
        assert plain is not None
        assert torch.equal(configs[:, 2 * b:2 * b + 2], plain.configs().data.reshape(3, 2, 4, 4))
        assert torch.equal(ranks.acceptance[:, 2 * b:2 * b + 2], plain.acceptance)
        assert torch.equal(ranks.index, plain.index)
    # the chains are disjoint: no two chains share a configuration in any record (seed + rank style reuse would)
    flat = configs.reshape(3, 4, -1)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(flat[:, i], flat[:, j]), (i, j)
    # one process with --blocks 2 writes the same file
    _one_process(PHI4, tmp_path / "one.safetensors")
    assert_same_records(ranks, Ensemble.load(tmp_path / "one.safetensors"))
    # the same command again gives the same contents (the file is regenerated from scratch)
    (tmp_path / "ranks.safetensors").rename(tmp_path / "first.safetensors")
    again = torchrun("generate", PHI4, tmp_path / "ranks.safetensors")
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_records(Ensemble.load(tmp_path / "first.safetensors"), Ensemble.load(tmp_path / "ranks.safetensors"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.safetensors", "one.safetensors", "plain0.safetensors",
                                                          "plain1.safetensors", "ranks.safetensors"]


def test_two_ranks_gather_complex_links_like_one_process(tmp_path, one_thread):
    done = torchrun("generate", U1, tmp_path / "ranks.safetensors")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("plaquette") == 1  # rank 0 alone reports
    _one_process(U1, tmp_path / "one.safetensors")
    ranks = Ensemble.load(tmp_path / "ranks.safetensors")
    assert_same_records(ranks, Ensemble.load(tmp_path / "one.safetensors"))
    assert ranks.metadata.group == "U(1)" and ranks.metadata.chains == 4


def test_a_resumed_block_run_continues_bit_for_bit(tmp_path, one_thread):
    _one_process(_phi4(n=2), tmp_path / "resumed.safetensors")
    _one_process(PHI4, tmp_path / "resumed.safetensors")  # --n 3: one more record, continued from the file
    _one_process(PHI4, tmp_path / "straight.safetensors")
    straight = Ensemble.load(tmp_path / "straight.safetensors")
    assert_same_records(Ensemble.load(tmp_path / "resumed.safetensors"), straight)
    # a file of one process continued by two ranks (rank 0 broadcasts each block's last state and generator)
    _one_process(_phi4(n=1), tmp_path / "ranks.safetensors")
    done = torchrun("generate", PHI4, tmp_path / "ranks.safetensors")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_records(Ensemble.load(tmp_path / "ranks.safetensors"), straight)


def test_chains_that_do_not_split_into_the_blocks_are_refused(tmp_path):
    out = tmp_path / "x.safetensors"
    result = CliRunner().invoke(cli, ["generate", *_phi4(chains=5), "--out", str(out), "--blocks", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--chains 5 must be divisible by --blocks 2" in result.output
    assert not any(tmp_path.iterdir())


def test_a_file_of_another_block_count_is_not_continued(tmp_path):
    _one_process(PHI4, tmp_path / "e.safetensors")
    result = CliRunner().invoke(cli, ["generate", *PHI4, "--out", str(tmp_path / "e.safetensors"), "--blocks", "4"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "holds a different ensemble" in result.output and "run.blocks" in result.output

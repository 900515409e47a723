"""Data-parallel training (two gloo processes) makes the same optimiser steps as one process with the same
global batch: DDP averages the gradients of equal shards of one globally drawn batch (lgdiff/_train/dsm.py,
lgdiff/_train/gauge.py, docs/distributed.md)."""

from pathlib import Path

import pytest
import torch

from lgdiff import SU, Lattice, LinkField
from lgdiff import _dist
from lgdiff._io.checkpoint import load_checkpoint
from lgdiff._models.lcnn import LCNNConfig
from lgdiff._models.ncsnpp import NCSNppConfig
from lgdiff._sde.group import GroupVE
from lgdiff._sde.ve import VESDE
from lgdiff._train.dsm import TrainConfig, train_ncsnpp
from lgdiff._train.gauge import GaugeTrainConfig, train_lcnn

from ._spawn import run_ranks

ARCH = NCSNppConfig(dim=2, channels=4, multipliers=(1, 2), time_features=8)
CONFIG = TrainConfig(steps=3, batch_size=8, lr=1e-2, ema=0.5, checkpoint_every=2, seed=11)
GAUGE_ARCH = LCNNConfig(group=SU(2), dim=2, channels=3, blocks=1)
GAUGE_CONFIG = GaugeTrainConfig(steps=3, batch_size=4, lr=1e-2, ema=0.5, checkpoint_every=2, seed=5, t_focus=0.3)


def _data() -> torch.Tensor:
    return torch.randn(20, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _links() -> LinkField:
    return LinkField.random(SU(2), Lattice(shape=(4, 4)), batch=6, generator=torch.Generator().manual_seed(6))


def _train_both(directory: Path) -> None:
    train_ncsnpp(_data(), directory / "ncsnpp.safetensors", config=CONFIG, arch=ARCH, sde=VESDE(),
                 provenance={"theory": "test"}, dtype=torch.float64)
    train_lcnn(_links(), directory / "lcnn.safetensors", config=GAUGE_CONFIG, arch=GAUGE_ARCH, process=GroupVE(),
               provenance={"theory": "test"})


def _ranks_body(tmp: Path) -> None:
    _train_both(tmp / "ddp")
    try:  # a global batch that does not split over the ranks is refused on every rank
        train_ncsnpp(_data(), tmp / "odd.safetensors", config=TrainConfig(steps=1, batch_size=7), arch=ARCH,
                     sde=VESDE(), provenance={}, dtype=torch.float64)
    except ValueError as e:
        (tmp / f"error.{_dist.rank()}.txt").write_text(str(e))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Both trainers on 2 gloo ranks (``ddp/``) and in this process (``single/``), same settings."""
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "ddp").mkdir()
    run_ranks(_ranks_body, tmp, world=2)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # module-scoped: conftest's per-test fixture has not run yet
    try:
        _train_both(tmp / "single")
    finally:
        torch.set_default_dtype(old)
    return tmp


def _assert_same_checkpoint(ddp_path: Path, single_path: Path) -> None:
    ddp, meta_ddp = load_checkpoint(ddp_path)
    one, meta_one = load_checkpoint(single_path)
    assert meta_ddp["world_size"] == 2 and meta_one["world_size"] == 1
    assert meta_ddp["step"] == meta_one["step"] == 3
    # weights, EMA weights, Adam moments and the generator state after 3 steps. The two runs differ only in the
    # order of floating-point sums (the batch-mean gradient is (g_0 + g_1) / 2 over the two shards instead of one
    # sum over the batch), ~1e-16 relative in float64. Measured: weights (O(1)) agree to ~5e-14. Biases in front
    # of a GroupNorm have an exact gradient of zero; Adam turns their rounding-level gradients (~1e-17) into
    # moves of lr g / (|g| + 1e-8) ~ 1e-12 that differ between the two sum orders, so the absolute tolerance is
    # 1e-10 (100x the measured 4e-12, 1e-8 of the 1e-2 step size). A rank-dependent noise draw, an overlapping
    # shard or a summed instead of averaged gradient gives differences of order lr = 1e-2.
    assert ddp.keys() == one.keys() and any(k.startswith("optim.") for k in ddp)
    for key in ddp:
        if key == "rng_state":
            assert torch.equal(ddp[key], one[key])
            continue
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-10, atol=1e-10, msg=lambda m, k=key: f"{k}: {m}")
    # the logged loss is the mean over ranks of the shard losses = the loss of the whole batch
    assert meta_ddp["losses"] == pytest.approx(meta_one["losses"], rel=1e-12)


def test_ddp_ncsnpp_steps_equal_single_process_steps_with_the_same_global_batch(runs):
    _assert_same_checkpoint(runs / "ddp" / "ncsnpp.safetensors", runs / "single" / "ncsnpp.safetensors")


def test_ddp_lcnn_steps_equal_single_process_steps_with_the_same_global_batch(runs):
    _assert_same_checkpoint(runs / "ddp" / "lcnn.safetensors", runs / "single" / "lcnn.safetensors")


def test_rank_0_alone_writes_and_an_unsplittable_batch_is_refused(runs):
    # rank 0 alone wrote, atomically: the model files and nothing else (no temporaries, no second copy)
    assert sorted(p.name for p in (runs / "ddp").iterdir()) == ["lcnn.safetensors", "ncsnpp.safetensors"]
    for r in (0, 1):
        message = (runs / f"error.{r}.txt").read_text()
        assert "TrainConfig.batch_size = 7" in message and "divisible by the number of processes, 2" in message
    assert not (runs / "odd.safetensors").exists()

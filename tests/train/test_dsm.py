import math

import attrs
import pytest
import torch

from lgdiff._io.checkpoint import load_checkpoint
from lgdiff._models.ncsnpp import NCSNppConfig
from lgdiff._sde.ve import VESDE
from lgdiff._train.dsm import TrainConfig, dsm_loss, load_ncsnpp, train_ncsnpp


def test_dsm_loss_of_the_exact_score_is_the_irreducible_minimum(generator):
    # x0 ~ N(0, 1) per site: the exact score of x_t is -x / (1 + s^2) and E(s s* + eps)^2 = 1 / (1 + s(t)^2),
    # averaged over t ~ U(t_min, T): compare with quadrature, error from 40 independent batches
    sde, t_min = VESDE(), 0.3

    def exact(x, t):
        s = sde.std(t)[:, None, None]
        return -x / (1 + s * s)

    losses = torch.stack([dsm_loss(exact, sde, torch.randn(2000, 2, 2, generator=generator), generator=generator,
                                   t_min=t_min) for _ in range(40)])
    grid = torch.linspace(t_min, 1.0, 20001)
    want = float(torch.trapezoid(1 / (1 + sde.std(grid) ** 2), grid) / (1 - t_min))
    mean, err = float(losses.mean()), float(losses.std() / math.sqrt(40))
    assert abs(mean - want) < 4 * err, f"{mean} +- {err} vs {want}"


def test_training_reduces_loss_and_checkpoints_resume(tmp_path, generator):
    data = 0.7 * torch.randn(256, 8, 8, generator=generator)
    arch = NCSNppConfig(dim=2, channels=8)
    cfg = TrainConfig(steps=40, batch_size=16, checkpoint_every=20, lr=3e-3)
    out = tmp_path / "m.safetensors"
    full = train_ncsnpp(data, out, config=cfg, arch=arch, sde=VESDE(), provenance={"theory": "test"},
                        dtype=torch.float64)
    first, last = sum(full.losses[:8]) / 8, sum(full.losses[-8:]) / 8
    assert last < first
    # interrupted after 20 steps and resumed: bit-identical weights to the uninterrupted run
    out2 = tmp_path / "m2.safetensors"
    train_ncsnpp(data, out2, config=TrainConfig(steps=20, batch_size=16, checkpoint_every=20, lr=3e-3), arch=arch,
                 sde=VESDE(), provenance={"theory": "test"}, dtype=torch.float64)
    with pytest.raises(ValueError, match="trained with other train"):  # another learning rate is another run
        train_ncsnpp(data, out2, config=attrs.evolve(cfg, lr=1e-3), arch=arch, sde=VESDE(),
                     provenance={"theory": "test"}, dtype=torch.float64)
    # more steps extend it: the same weights as the run that asked for 40 from the start
    train_ncsnpp(data, out2, config=cfg, arch=arch, sde=VESDE(), provenance={"theory": "test"}, dtype=torch.float64)
    extended, ref = load_checkpoint(out2), load_checkpoint(out)
    assert extended[1]["step"] == 40 and extended[1]["train"]["steps"] == 40
    for k in ref[0]:
        if k.startswith(("model.", "ema.")):
            assert torch.equal(extended[0][k], ref[0][k]), k
    with pytest.raises(ValueError, match="holds 40 training steps, more than the 20 asked for"):
        train_ncsnpp(data, out2, config=attrs.evolve(cfg, steps=20), arch=arch, sde=VESDE(),
                     provenance={"theory": "test"}, dtype=torch.float64)
    a, meta = load_ncsnpp(out)
    assert meta["step"] == 40 and meta["theory"] == "test" and meta["sde"]["name"] == "ve"
    x, t = torch.randn(2, 8, 8, generator=generator), torch.full((2,), 0.5)
    assert torch.isfinite(a(x, t)).all()


class _Stop(Exception):
    pass


def test_interrupted_training_resumes_bit_identically(tmp_path, generator):
    data = torch.randn(64, 8, 8, generator=generator)
    kw = dict(arch=NCSNppConfig(dim=2, channels=8), sde=VESDE(), provenance={}, dtype=torch.float64,
              config=TrainConfig(steps=10, batch_size=8, checkpoint_every=5))
    train_ncsnpp(data, tmp_path / "full.safetensors", **kw)

    def stop_at_6(step, loss):
        if step == 6:
            raise _Stop

    with pytest.raises(_Stop):  # killed after the step-5 checkpoint
        train_ncsnpp(data, tmp_path / "cut.safetensors", progress=stop_at_6, **kw)
    assert load_checkpoint(tmp_path / "cut.safetensors")[1]["step"] == 5
    train_ncsnpp(data, tmp_path / "cut.safetensors", **kw)  # the same command resumes
    done, _ = load_checkpoint(tmp_path / "cut.safetensors")
    ref, _ = load_checkpoint(tmp_path / "full.safetensors")
    for k in ref:
        if k.startswith(("model.", "ema.")):
            assert torch.equal(done[k], ref[k]), k

"""Optimal stochastic quantisation as an entry of the one training loop (lgdiff._train.osq): no data, a model file
that resumes bit for bit and loads for sampling, a training run that lowers KL(Q || Gamma) and raises the effective
sample size on the one-site cosine model, and the errors of its settings."""

import math

import pytest
import torch

from lgdiff import CosineAction, Field, Lattice, Phi4Action
from lgdiff._io.checkpoint import CheckpointError, load_checkpoint
from lgdiff._models.files import load_osq, load_score
from lgdiff._models.mlp import MLPConfig
from lgdiff._models.ncsnpp import NCSNppConfig
from lgdiff._samplers.osq import OSQPathIMH, OSQProcess, osq_path, zero_drift
from lgdiff._stats import effective_sample_size
from lgdiff._train.osq import OSQTrainConfig, train_osq

COSINE = CosineAction(k=5.0)
PROCESS = OSQProcess(T=1.0, steps=20)


class _Stop(Exception):
    pass


def _train(out, steps, progress=None, **config):
    defaults = dict(steps=steps, batch_size=32, lr=3e-3, checkpoint_every=2)
    return train_osq(COSINE, (), out, config=OSQTrainConfig(**{**defaults, **config}), arch=MLPConfig(width=16),
                     process=PROCESS, provenance={"theory": "cosine"}, dtype=torch.float64, progress=progress)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    _train(tmp_path / "a.safetensors", 4)

    def stop_at_3(step, loss):
        if step == 3:
            raise _Stop

    with pytest.raises(_Stop):  # killed after the step-2 checkpoint
        _train(tmp_path / "b.safetensors", 4, progress=stop_at_3)
    assert load_checkpoint(tmp_path / "b.safetensors")[1]["step"] == 2
    _train(tmp_path / "b.safetensors", 4)  # the same command resumes
    ta, ma = load_checkpoint(tmp_path / "a.safetensors")
    tb, mb = load_checkpoint(tmp_path / "b.safetensors")
    assert ma["step"] == mb["step"] == 4 and ma["losses"] == mb["losses"]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert ma["kind"] == "osq" and ma["data_identity"]["configurations"] == 0
    assert ma["train_cpu_seconds"] > 0 and mb["train_cpu_seconds"] > 0  # the training cost, CPU time
    assert ma["action"] == {"class": "CosineAction", "k": 5.0} and ma["osq"] == PROCESS.settings()


def test_the_model_file_loads_as_a_drift_and_samples(tmp_path):
    out = tmp_path / "m.safetensors"
    _train(out, 2)
    model = load_osq(out)
    assert model.process == PROCESS
    kernel = OSQPathIMH(drift=model.drift, process=model.process, action=COSINE)
    g = torch.Generator().manual_seed(0)
    state = kernel.init(Field.zeros(Lattice(shape=()), batch=5), generator=g)
    state, acc = kernel.step(state, generator=g)
    assert state.state.data.shape == (5,) and bool(torch.isfinite(state.log_w).all())
    with pytest.raises(CheckpointError, match="not a score network"):
        load_score(out)


def test_a_resume_with_another_objective_or_theory_is_refused(tmp_path):
    out = tmp_path / "m.safetensors"
    _train(out, 2)
    with pytest.raises(ValueError, match="other train"):
        _train(out, 2, objective="plain")
    with pytest.raises(ValueError, match="other action"):
        train_osq(CosineAction(k=3.0), (), out, config=OSQTrainConfig(steps=2, batch_size=32, lr=3e-3,
                                                                        checkpoint_every=2),
                  arch=MLPConfig(width=16), process=PROCESS, provenance={"theory": "cosine"}, dtype=torch.float64)


def test_training_lowers_the_kl_and_raises_the_ess():
    # the untrained drift (a = b = 0, a random MLP body) against 150 steps of the exact objective; KL(Q || Gamma)
    # = E[-log w] + log Z, log Z of exp(-S) by quadrature; both measured on the same 4000 fresh paths
    import tempfile
    from pathlib import Path

    x = torch.linspace(-7, 7, 40001, dtype=torch.float64)
    log_z = math.log(float(torch.trapezoid(torch.exp(-(x * x / 2 - torch.cos(5 * x))), x)))

    def measure(drift):
        g = torch.Generator().manual_seed(9)
        x0 = PROCESS.prior((4000,), dtype=torch.float64, device="cpu", generator=g)
        with torch.no_grad():
            path = osq_path(drift, COSINE, PROCESS, x0, generator=g)
        return float(-path.log_w.mean()) + log_z, effective_sample_size(path.log_w) / 4000

    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "m.safetensors"
        _train(out, 150, batch_size=128, lr=1e-2, checkpoint_every=150)
        kl_trained, ess_trained = measure(load_osq(out).drift)
    kl_zero, ess_zero = measure(zero_drift)
    assert kl_zero > 0.5 and kl_trained < kl_zero / 2, (kl_zero, kl_trained)
    assert ess_trained > 2 * ess_zero, (ess_zero, ess_trained)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="objective"):
        OSQTrainConfig(objective="reverse")
    with pytest.raises(ValueError, match="gradient"):
        OSQTrainConfig(gradient="adjoint")
    with pytest.raises(ValueError, match="NCSN"):
        train_osq(Phi4Action(kappa=0.2, lam=0.02), (4, 4), "unused.safetensors", config=OSQTrainConfig(),
                  arch=MLPConfig(), process=PROCESS, provenance={})
    with pytest.raises(ValueError, match="dim=1"):
        train_osq(Phi4Action(kappa=0.2, lam=0.02), (4, 4), "unused.safetensors", config=OSQTrainConfig(),
                  arch=NCSNppConfig(dim=1), process=PROCESS, provenance={})

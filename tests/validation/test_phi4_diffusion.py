"""The shipped phi^4 score models, and exactness of the DM-based Monte Carlo routes on the interacting theory.

Fast: the shipped models load, carry their provenance, are translation equivariant and transfer across
volumes, and have learned the large-t limit of the score. Slow: at L = 8, kappa = 0.27, lambda = 0.022 (broken
phase / near-critical), each exact route (path-space IMH, marginal IMH, MAALA) driven by the model trained on
L = 16 reproduces a long HMC + Wolff run on <|M|>, chi_2 and U_L within 4 sigma.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import lgdiff
from lgdiff import Lattice, Phi4Action
from lgdiff._fields.scalar import Field
from lgdiff._samplers.maala import maala, marginal_imh, path_imh
from lgdiff._stats import jackknife
from lgdiff._train.dsm import load_ncsnpp
from lgdiff.testing import assert_translation_equivariant

MODELS = Path(lgdiff.__file__).parent / "models"
SHIPPED = {"phi4_k0.21_L32.safetensors": (0.21, 32), "phi4_k0.27_L16.safetensors": (0.27, 16),
           "phi4_k0.27_L32.safetensors": (0.27, 32)}
LAM = 0.022

# Reference: 2D phi^4, L = 8, kappa = 0.27, lambda = 0.022, HMC (Omelyan, 10 steps, length 1) + single-cluster
# Wolff, 64 chains x 2000 records after 200 thermalisation updates (128000 configurations), made by
#   lgdiff generate --theory phi4 --L 8 --kappa 0.27 --lam 0.022 --algorithm wolff --chains 64 --n 2000 \
#       --every 1 --therm 200 --seed 5
# Errors by the Gamma method (replicas = chains; tau_int(|M|) = 11.8(6) trajectories).
REFERENCE_L8_K027 = {"<|M|>": (0.8915, 0.0050), "chi_2": (60.41, 0.60), "U_L": (0.5067, 0.0027)}


def _model(name: str):
    return load_ncsnpp(MODELS / name)


def _score64(net):
    """The float32 network as a float64 score (the samplers' weights and actions stay in float64)."""
    dtype = next(net.parameters()).dtype

    def score(x, t):
        return net(x.to(dtype), t.to(dtype)).to(x.dtype)

    return score


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_records_its_provenance(name):
    path = MODELS / name
    assert path.stat().st_size < 2 * 2**20, "shipped models must stay small (package data)"
    net, meta = _model(name)
    kappa, L = SHIPPED[name]
    assert meta["params"] == {"kappa": kappa, "lam": LAM}
    assert meta["lattice"] == [L, L]
    assert "examples/train_phi4_models.py train" in meta["command"]
    assert meta["data_command"].startswith("lgdiff generate --theory phi4")
    assert meta["step"] == meta["train"]["steps"], "the shipped model is the finished training run"
    assert net.sde.name == "ve"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_is_translation_equivariant_at_other_volumes(name, generator):
    net, _ = _model(name)
    score = _score64(net)
    t = torch.full((2,), 0.3)
    for L in (8, 24):  # neither is the training volume; shifts by 4 keep the average-pooling grid
        phi = Field(torch.randn(2, L, L, generator=generator), Lattice(shape=(L, L)))
        assert_translation_equivariant(lambda f: score(f.data, t), phi, (4, 0), atol=1e-4)
        assert_translation_equivariant(lambda f: score(f.data, t), phi, (0, 8), atol=1e-4)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_learned_the_large_t_score(name, generator):
    """At t = T the data are negligible next to the noise (s(T) ~ 10 >> |phi| ~ 1): the exact score is
    ``-(x - mean) / (s^2 + Var phi)``, ``~ -x / s^2`` to 1 %. An untrained network without the force base (output
    near 0) fails."""
    net, _ = _model(name)
    sde = net.sde
    L = SHIPPED[name][1]
    t = torch.full((4,), sde.T)
    x = sde.prior_sample((4, L, L), generator=generator, dtype=torch.float64)
    s = sde.std(t)[:, None, None]
    got = _score64(net)(x, t) * s
    want = -x / s
    assert ((got - want).norm() / want.norm()).item() < 0.05


# ---- exactness on the interacting theory (slow) ----------------------------------------------------------------

ROUTES = {
    # route: (sampler, chains, settings, burn-in records); settings chosen for ~1-2 CPU minutes each
    "path": (path_imh, 32, {"n": 120, "steps": 20, "t_min": 0.0}, 2),
    "imh": (marginal_imh, 16, {"n": 16, "steps": 8}, 2),
    "maala": (maala, 32, {"n": 2000, "steps": 40, "t_langevin": 0.02, "step_size": 0.1}, 200),
}


@pytest.mark.slow
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_exact_route_reproduces_hmc_wolff_at_L8_kappa027(route, generator):
    net, meta = _model("phi4_k0.27_L16.safetensors")
    assert meta["lattice"] == [16, 16]  # used at L = 8: volume transfer
    lattice = Lattice(shape=(8, 8))
    action = Phi4Action(kappa=0.27, lam=LAM)
    sampler, chains, settings, burn = ROUTES[route]
    like = Field.zeros(lattice, batch=chains)  # the chains' shape and dtype (float64)
    res = sampler(_score64(net), net.sde, action, like, generator=generator, **settings)
    M = res.samples.mean(dim=(2, 3))[burn:].numpy()  # [n, chains]
    acceptance = res.acceptance[burn:].mean().item()
    assert acceptance > 0.02, f"{route}: acceptance {acceptance:.3f} is too low for a meaningful test"
    V = lattice.volume
    # chains are independent: a leave-one-chain-out jackknife holds every autocorrelation
    got = {
        "<|M|>": jackknife(lambda a: a, np.abs(M), n_bins=1),
        "chi_2": jackknife(lambda a, b: V * (b - a * a), M, M**2, n_bins=1),
        "U_L": jackknife(lambda b, c: 1 - c / (3 * b * b), M**2, M**4, n_bins=1),
    }
    for key, est in got.items():
        ref, ref_err = REFERENCE_L8_K027[key]
        sigma = float(np.hypot(est.error, ref_err))
        assert abs(est.mean - ref) < 4 * sigma, (
            f"{route} (acceptance {acceptance:.2f}): {key} = {est} against HMC + Wolff {ref}({ref_err}), "
            f"{(est.mean - ref) / sigma:+.1f} sigma")

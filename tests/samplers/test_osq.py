"""Optimal stochastic quantisation (lgdiff._samplers.osq): the exact OSQ sampler with a deliberately poor (untrained)
drift against quadrature for the seed talk's one-site models, the power of that test (the raw sampler misses), the
path weight against the formula evaluated at fixed paths, and the contract of the process and kernels."""

import math

import numpy as np
import pytest
import torch

from lgdiff import CosineAction, Field, Lattice, Phi4Action, ToyAction
from lgdiff._samplers.maala import sample_chain
from lgdiff._samplers.osq import (OSQDraws, OSQPathIMH, OSQProcess, osq_log_weight, osq_loss, osq_path,
                                  zero_drift)
from lgdiff._stats import effective_sample_size, reweighted_mean

DOUBLE_WELL = ToyAction(m2=-4.0, g=24.0)  # (phi^2 - 1)^2 up to a constant
COSINE = CosineAction(k=5.0)


def quadrature(action, f):
    """``<f(phi)>`` of ``exp(-S)`` on one site by the trapezoidal rule (the integrands vanish beyond |phi| = 7)."""
    x = torch.linspace(-7, 7, 40001, dtype=torch.float64)
    s = action(Field(x[:, None], Lattice(shape=(1,))))
    p = torch.exp(-(s - s.min()))
    return float(torch.trapezoid(p * f(x), x) / torch.trapezoid(p, x))


OBSERVABLES = {"phi^2": lambda x: x**2, "phi^4": lambda x: x**4, "P(phi>0)": lambda x: (x > 0).to(x.dtype)}


@pytest.mark.parametrize("action", [DOUBLE_WELL, COSINE], ids=["double-well", "cosine"])
def test_exact_osq_with_untrained_drift_matches_quadrature(action):
    # v = 0: plain finite-time Langevin, weighed against the annealed backward path (module docstring)
    kernel = OSQPathIMH(drift=zero_drift, process=OSQProcess(T=1.0, steps=40), action=action)
    g = torch.Generator().manual_seed(1)
    chains = 400
    result = sample_chain(kernel, Field.zeros(Lattice(shape=()), batch=chains), n=60, generator=g, therm=10)
    x = result.samples  # [records, chains]
    acc = float(result.acceptance.mean())
    assert 0.05 < acc < 0.95  # the test has power only if chains both move and reject
    for name, f in OBSERVABLES.items():
        per_chain = f(x).mean(0)  # chains are independent; one mean per chain
        mean, err = float(per_chain.mean()), float(per_chain.std() / math.sqrt(chains))
        exact = quadrature(action, f)
        assert abs(mean - exact) < 4 * err, f"{name}: {mean:.4f} +- {err:.4f} vs exact {exact:.4f} (acc {acc:.2f})"


@pytest.mark.parametrize(("action", "f"), [(DOUBLE_WELL, lambda x: x**2), (COSINE, lambda x: torch.cos(5 * x))],
                         ids=["double-well-phi^2", "cosine-cos(5phi)"])
def test_importance_weights_correct_the_raw_sampler_which_misses(action, f):
    # power: a short path (T = 0.25) ends far from exp(-S); the raw draws miss by many sigma, the reweighted ones
    # (same draws, self-normalised importance sampling with the exact weights) do not
    process = OSQProcess(T=0.25, steps=25)
    g = torch.Generator().manual_seed(2)
    x0 = process.prior((40000,), dtype=torch.float64, device="cpu", generator=g)
    with torch.no_grad():
        path = osq_path(zero_drift, action, process, x0, generator=g)
    exact = quadrature(action, f)
    raw = f(path.final)
    raw_err = float(raw.std() / math.sqrt(raw.numel()))
    assert abs(float(raw.mean()) - exact) > 8 * raw_err
    est = reweighted_mean(raw, path.log_w)
    assert abs(est.mean - exact) < 4 * est.error
    assert 100 < effective_sample_size(path.log_w) < 40000


def test_path_weight_matches_the_formula_at_fixed_paths():
    # osq_path accumulates log w from the noise xi_k; osq_log_weight evaluates log Gamma - log Q from the states
    # alone (residuals of both kernels, the drift re-evaluated in one batch): equal, for a nonzero drift
    action = Phi4Action(kappa=0.2, lam=0.1)
    process = OSQProcess(T=0.5, steps=10, g=1.2, prior_std=0.8)

    def drift(x, t, force):
        return 0.3 * torch.sin(x) * (1 + t.reshape(-1, 1, 1)) - 0.1 * force

    g = torch.Generator().manual_seed(3)
    x0 = process.prior((5, 4, 4), dtype=torch.float64, device="cpu", generator=g)
    with torch.no_grad():
        path = osq_path(drift, action, process, x0, generator=g, keep_states=True)
        assert path.states is not None and path.states.shape == (11, 5, 4, 4)
        fixed = osq_log_weight(drift, action, process, path.states)
    assert torch.allclose(path.log_w, fixed, rtol=0, atol=1e-9 * float(path.log_w.abs().max()))
    # and the plain objective's weight is -(running cost + noise cross term + S) of the same paths
    with torch.no_grad():
        plain = osq_log_weight(drift, action, process, path.states, objective="plain")
    cross = plain + path.fisher + path.action  # = -sum sqrt(h) v.xi / g, zero mean, not zero
    assert float(cross.abs().max()) > 1e-3 and float(cross.abs().max()) < 10


def test_losses_are_finite_and_differentiable():
    from lgdiff._models.mlp import MLPConfig
    from lgdiff._models.osq import OSQDrift

    net = OSQDrift(MLPConfig(width=8), generator=torch.Generator().manual_seed(0))
    process = OSQProcess(T=0.5, steps=10)
    for objective in ("exact", "plain"):
        for gradient in ("path", "log-variance"):
            g = torch.Generator().manual_seed(0)
            x0 = process.prior((16,), dtype=torch.float64, device="cpu", generator=g)
            net.zero_grad()
            loss = osq_loss(net, COSINE, process, x0, generator=g, objective=objective, gradient=gradient)
            loss.backward()
            grads = [p.grad for p in net.parameters() if p.requires_grad]
            assert torch.isfinite(loss) and all(gr is not None and bool(torch.isfinite(gr).all()) for gr in grads)
            assert any(float(gr.abs().sum()) > 0 for gr in grads)


def test_plain_objective_is_the_talks_running_and_terminal_cost():
    # L_plain = E[sum h |v|^2 / (2 g^2) + S(phi_N)]: for a constant drift v = c, the running cost is N h c^2 / (2 g^2)
    process = OSQProcess(T=0.5, steps=10, g=1.5)
    c = 0.7
    g = torch.Generator().manual_seed(4)
    x0 = process.prior((8,), dtype=torch.float64, device="cpu", generator=g)
    with torch.no_grad():
        path = osq_path(lambda x, t, force: torch.full_like(x, c), COSINE, process, x0, generator=g)
    assert torch.allclose(path.fisher, torch.full((8,), process.T * c * c / (2 * process.g**2), dtype=torch.float64))
    g = torch.Generator().manual_seed(4)
    x0 = process.prior((8,), dtype=torch.float64, device="cpu", generator=g)
    loss = osq_loss(lambda x, t, force: torch.full_like(x, c), COSINE, process, x0, generator=g, objective="plain")
    assert float(loss) == pytest.approx(float((path.fisher + path.action).mean()))


def test_raw_osq_kernel_replaces_every_chain():
    kernel = OSQDraws(drift=zero_drift, process=OSQProcess(T=0.5, steps=10), action=COSINE)
    g = torch.Generator().manual_seed(5)
    state = Field.zeros(Lattice(shape=(4,)), batch=3)
    new, acc = kernel.step(state, generator=g)
    assert bool((new.data != 0).all()) and bool((acc == 1).all())
    assert kernel.name == "osq" and kernel.settings() == {"T": 0.5, "steps": 10, "g": math.sqrt(2.0),
                                                          "prior_std": 1.0}


@pytest.mark.parametrize("bad", [dict(T=0.0), dict(T=math.inf), dict(steps=0), dict(steps=2.5), dict(g=-1.0),
                                 dict(prior_std=0.0)])
def test_process_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match="OSQProcess"):
        OSQProcess(**bad)


def test_same_seed_same_bits():
    kernel = OSQPathIMH(drift=zero_drift, process=OSQProcess(T=0.5, steps=10), action=DOUBLE_WELL)
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(6)
        state = kernel.init(Field.zeros(Lattice(shape=()), batch=4), generator=g)
        state, _ = kernel.step(state, generator=g)
        runs.append((state.state.data, state.log_w))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])

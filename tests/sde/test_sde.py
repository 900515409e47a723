import math

import pytest
import torch

from lgdiff._sde.base import expand_like
from lgdiff._sde.ve import VESDE
from lgdiff._sde.vp import VPSDE

SDES = [VESDE(), VESDE(sigma=10.0, t_final=0.5), VPSDE()]


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_kernel_moments_solve_the_moment_odes(sde):
    # for dx = -h x dt + g dW: d a / dt = -h a and d s^2 / dt = -2 h s^2 + g^2; h from drift(x = 1)
    t = torch.linspace(0.05, sde.T - 0.05, 17)
    dt = 1e-6
    x1 = torch.ones(t.shape)
    h = -sde.drift(x1, t)
    a_dot = (sde.mean_coeff(t + dt) - sde.mean_coeff(t - dt)) / (2 * dt)
    v_dot = (sde.std(t + dt) ** 2 - sde.std(t - dt) ** 2) / (2 * dt)
    torch.testing.assert_close(a_dot, -h * sde.mean_coeff(t), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(v_dot, -2 * h * sde.std(t) ** 2 + sde.diffusion(t) ** 2, rtol=1e-6, atol=1e-8)
    assert float(sde.std(torch.zeros(1))) == 0.0 and float(sde.mean_coeff(torch.zeros(1))) == 1.0


def test_ve_matches_the_papers_formula():
    sde = VESDE(sigma=25.0)
    t = torch.tensor([0.3, 1.0])
    torch.testing.assert_close(sde.std(t) ** 2, (25.0 ** (2 * t) - 1) / (2 * math.log(25.0)))
    assert math.isclose(sde.prior_std(), float(sde.std(torch.tensor([1.0]))[0]))


def _em_moments(sde, x0: float, steps: int) -> tuple[float, float]:
    """Exact mean and variance of the Euler-Maruyama chain x' = x + f dt + g sqrt(dt) z (linear SDE)."""
    m, v = x0, 0.0
    ts = torch.linspace(0, sde.T, steps + 1)
    for t0, t1 in zip(ts[:-1], ts[1:]):
        dt = float(t1 - t0)
        c = 1 + float(sde.drift(torch.ones(1), t0[None])[0]) * dt  # drift is -h x: x(1 - h dt)
        m, v = c * m, c * c * v + float(sde.diffusion(t0[None])[0]) ** 2 * dt
    return m, v


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_euler_maruyama_simulation_matches_its_exact_moments(sde, generator):
    n, steps = 20000, 100
    x = torch.full((n,), 1.5)
    ts = torch.linspace(0, sde.T, steps + 1)
    for t0, t1 in zip(ts[:-1], ts[1:]):
        tb = t0.expand(n)
        dt = float(t1 - t0)
        x = x + sde.drift(x, tb) * dt + sde.diffusion(tb) * math.sqrt(dt) * torch.randn(n, generator=generator)
    m_exact, v_exact = _em_moments(sde, 1.5, steps)
    m, v = float(x.mean()), float(x.var())
    assert abs(m - m_exact) < 4 * math.sqrt(v_exact / n)
    assert abs(v - v_exact) < 4 * v_exact * math.sqrt(2 / n)


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_euler_maruyama_moments_converge_to_kernel_at_first_order(sde):
    tT = torch.full((1,), sde.T)
    exact = (1.5 * float(sde.mean_coeff(tT)[0]), float(sde.std(tT)[0]) ** 2)
    errs = []
    for steps in (200, 400, 800):
        m, v = _em_moments(sde, 1.5, steps)
        errs.append(abs(v - exact[1]) + abs(m - exact[0]))
    for coarse, fine in zip(errs[:-1], errs[1:]):
        assert 1.8 < coarse / fine < 2.2, f"errors {errs}: not first order"


def test_perturb_and_prior_logp(generator):
    sde = VESDE()
    x0 = torch.zeros(3, 4, 4)
    xt, eps = sde.perturb(x0, torch.tensor([0.0, 0.5, 1.0]), generator=generator)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[2], sde.prior_std() * eps[2])
    x = torch.randn(2, 3, 3, generator=generator)
    want = torch.distributions.Normal(0.0, sde.prior_std()).log_prob(x).sum((1, 2))
    torch.testing.assert_close(sde.prior_logp(x), want)


def test_expand_like_any_rank():
    t = torch.ones(5)
    for rank in range(1, 6):
        assert expand_like(t, torch.zeros((5,) + (2,) * (rank - 1))).ndim == rank


def test_bad_settings():
    with pytest.raises(ValueError, match="sigma > 1"):
        VESDE(sigma=1.0)
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        VPSDE(beta_min=5.0, beta_max=1.0)

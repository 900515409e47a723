"""Diffusion samplers with exact Gaussian scores (free field): every claim checked against closed forms."""

import math

import pytest
import torch

from lgdiff import Field, Lattice, Phi4Action
from lgdiff._samplers.maala import maala, marginal_imh, path_imh
from lgdiff._samplers.reverse import Corrector, log_likelihood, probability_flow, reverse_sde
from lgdiff._sde.ve import VESDE
from lgdiff._sde.vp import VPSDE

LAT = Lattice(shape=(4, 4))
KAPPA = 0.2


def propagator(kappa: float, lat: Lattice = LAT) -> torch.Tensor:
    """G(k) of the lambda = 0 theory: the data covariance is diagonal in momentum space."""
    return 1 / (2 - 4 * kappa * torch.cos(lat.momenta()).sum(0))


def gaussian_score(sde, kappa: float, inflate: float = 1.0, lat: Lattice = LAT):
    """Exact score of x_t = a x_0 + s eps with x_0 ~ N(0, C): -(a^2 C + s^2)^{-1} x, applied by FFT.
    ``inflate != 1`` gives the score of the wrong covariance inflate * C: a miscalibrated network."""
    g = inflate * propagator(kappa, lat)

    def score(x, t):
        a, s = sde.mean_coeff(t), sde.std(t)
        var = a[:, None, None] ** 2 * g + s[:, None, None] ** 2
        return -torch.fft.ifft2(torch.fft.fft2(x) / var).real

    return score


def gaussian_logp(x, kappa: float):
    """log N(x; 0, C) for the free field."""
    g = propagator(kappa)
    xk = torch.fft.fft2(x)
    quad = (xk.abs() ** 2 / g).sum((1, 2)) / LAT.volume
    return -quad / 2 - 0.5 * torch.log(2 * math.pi * g).sum()


def z_scores(samples, kappa, lat: Lattice = LAT):
    """Per-momentum z of <|phi(k)|^2>/V against G(k); samples [n, chains, *L], chains independent."""
    gk = torch.fft.fft2(samples).abs() ** 2 / lat.volume
    per_chain = gk.mean(0)
    mean, err = per_chain.mean(0), per_chain.std(0) / math.sqrt(per_chain.shape[0])
    return (mean - propagator(kappa, lat)) / err


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=lambda s: s.name)
def test_exact_logdet_is_the_density_of_the_discrete_flow_map(sde, generator):
    # with a Gaussian (linear) score the Heun flow map is linear, x0 = M xT: log q = log N(x0; 0, sT^2 M M^T)
    score = gaussian_score(sde, KAPPA)
    xT = sde.prior_sample((3, 4, 4), generator=generator)
    x0, logq = probability_flow(score, sde, xT, steps=12, divergence="exact", t_min=0.0)
    basis = torch.eye(16).reshape(16, 4, 4)
    m = probability_flow(score, sde, basis, steps=12, divergence="none", t_min=0.0)[0].reshape(16, 16).T  # columns M e_i
    cov = sde.prior_std() ** 2 * m @ m.T
    want = torch.distributions.MultivariateNormal(torch.zeros(16), covariance_matrix=cov).log_prob(x0.reshape(3, 16))
    torch.testing.assert_close(logq, want, rtol=1e-9, atol=1e-9)


def test_pf_ode_likelihood_converges_at_second_order(generator):
    # the exact flow maps N(0, G + sT^2) to N(0, G) mode by mode, so from the N(0, sT^2) prior it produces
    # N(0, sT^2 G / (G + sT^2)) per mode: the continuum log q that the discrete one must approach as h^2
    sde = VESDE()
    score = gaussian_score(sde, KAPPA)
    xT = sde.prior_sample((4, 4, 4), generator=generator)
    errs = []
    for steps in (8, 16, 32):
        x0, logq = probability_flow(score, sde, xT, steps=steps, divergence="exact", t_min=0.0)
        errs.append(float((logq - flow_logq(sde, x0)).abs().max()))
    assert errs[0] / errs[1] > 3 and errs[1] / errs[2] > 3, errs


def flow_logq(sde, x0):
    """Continuum log q of the PF-ODE model with the exact score from the N(0, sT^2) prior: N(0, sT^2 G/(G + sT^2))."""
    g, s2 = propagator(KAPPA), sde.prior_std() ** 2
    w = s2 * g / (g + s2)
    xk = torch.fft.fft2(x0)
    return -(xk.abs() ** 2 / w).sum((1, 2)) / LAT.volume / 2 - 0.5 * torch.log(2 * math.pi * w).sum()


def test_exact_trace_likelihood_converges_at_second_order(generator):
    sde = VESDE()
    score = gaussian_score(sde, KAPPA)
    x0 = torch.randn(4, 4, 4, generator=generator)
    errs = [float((log_likelihood(score, sde, x0, steps=n, divergence="exact", t_min=0.0) - flow_logq(sde, x0)).abs().max())
            for n in (8, 16, 32)]
    assert errs[0] / errs[1] > 3 and errs[1] / errs[2] > 3, errs


def test_hutchinson_likelihood_is_unbiased(generator):
    # same discretisation, estimated against exact trace: unbiased within the estimator's own error
    sde = VESDE()
    score = gaussian_score(sde, KAPPA)
    x0 = torch.randn(1, 4, 4, generator=generator).expand(400, 4, 4)
    est = log_likelihood(score, sde, x0, steps=10, generator=generator, t_min=0.0)
    want = float(log_likelihood(score, sde, x0[:1], steps=10, divergence="exact", t_min=0.0)[0])
    mean, err = float(est.mean()), float(est.std() / math.sqrt(est.numel()))
    assert abs(mean - want) < 4 * err, f"{mean} +- {err} vs {want}"
    assert err > 1e-3  # the estimator is noisy: never for accept/reject


def test_reverse_sde_with_exact_score_reproduces_free_field(generator):
    sde = VESDE()
    xT = sde.prior_sample((2000, 4, 4), generator=generator)
    x0 = reverse_sde(gaussian_score(sde, KAPPA), sde, xT, steps=500, generator=generator, t_min=0.0)
    assert float(z_scores(x0[None], KAPPA).abs().max()) < 4


def test_predictor_corrector_with_small_snr_reproduces_free_field(generator):
    # Langevin correctors add an O(snr^2) stationary bias (unadjusted Langevin); at snr = 0.02 it is negligible
    sde = VESDE()
    xT = sde.prior_sample((2000, 4, 4), generator=generator)
    x0 = reverse_sde(gaussian_score(sde, KAPPA), sde, xT, steps=200, generator=generator, t_min=0.0,
                     corrector=Corrector(steps=1, scale=0.02, rule="snr"))
    assert float(z_scores(x0[None], KAPPA).abs().max()) < 4


# ---- exactness with a deliberately poor score ---------------------------------------------------------

POOR = 1.6  # the score of a covariance 1.6 times too broad drives every proposal (a miscalibrated network)


def test_raw_sampler_with_poor_score_misses(generator):
    sde = VESDE()
    xT = sde.prior_sample((2000, 4, 4), generator=generator)
    x0 = reverse_sde(gaussian_score(sde, KAPPA, inflate=POOR), sde, xT, steps=100, generator=generator, t_min=0.0)
    assert float(z_scores(x0[None], KAPPA).abs().max()) > 8  # the exactness tests below have power


SMALL = Lattice(shape=(2, 2))  # 4 modes: independence samplers mix in a few steps


@pytest.mark.parametrize("lat", [SMALL, pytest.param(LAT, marks=pytest.mark.slow)], ids=str)
def test_path_imh_is_exact_with_poor_score(lat, generator):
    sde = VESDE()
    score = gaussian_score(sde, KAPPA, inflate=POOR, lat=lat)
    n, burn = (60, 20) if lat == SMALL else (300, 100)
    res = path_imh(score, sde, Phi4Action(kappa=KAPPA, lam=0.0), Field.zeros(lat, batch=256), n=n, steps=20,
                   generator=generator, t_min=0.0)
    z = z_scores(res.samples[burn:], KAPPA, lat)
    assert float(z.abs().max()) < 4, z
    assert 0.02 < float(res.acceptance.mean()) < 1


def test_preconditioned_path_imh_is_exact_with_poor_score_and_a_wrong_preconditioner(generator):
    # the default phi4 route of `lgdiff sample`: the reverse kernel preconditioned by a Gaussian, here one for the
    # wrong mass and stiffness, driven by the poor score; the power is test_raw_sampler_with_poor_score_misses
    from lgdiff import PathIMH
    from lgdiff._samplers.maala import sample_chain
    from lgdiff._sde.precondition import FreeScalarPreconditioner

    sde = VESDE()
    pre = FreeScalarPreconditioner(std=0.5, kinetic=1.0)  # the free field's are (2 - 8 kappa)^-1/2 = 1.29 and 0.4
    kernel = PathIMH(score=gaussian_score(sde, KAPPA, inflate=POOR, lat=SMALL), process=sde,
                     action=Phi4Action(kappa=KAPPA, lam=0.0), steps=20, t_min=1e-3, preconditioner=pre)
    res = sample_chain(kernel, Field.zeros(SMALL, batch=256), n=60, generator=generator)
    z = z_scores(res.samples[20:], KAPPA, SMALL)
    assert float(z.abs().max()) < 4, z
    assert 0.02 < float(res.acceptance.mean()) < 1


@pytest.mark.parametrize("lat", [SMALL, pytest.param(LAT, marks=pytest.mark.slow)], ids=str)
def test_marginal_imh_is_exact_with_poor_score(lat, generator):
    sde = VESDE()
    score = gaussian_score(sde, KAPPA, inflate=POOR, lat=lat)
    n, burn, chains = (40, 15, 128) if lat == SMALL else (150, 50, 256)
    res = marginal_imh(score, sde, Phi4Action(kappa=KAPPA, lam=0.0), Field.zeros(lat, batch=chains), n=n, steps=8,
                       generator=generator, t_min=0.0)
    z = z_scores(res.samples[burn:], KAPPA, lat)
    assert float(z.abs().max()) < 4, z
    assert 0.02 < float(res.acceptance.mean()) < 1


@pytest.mark.parametrize("lat", [SMALL, LAT], ids=str)
def test_maala_is_exact_with_poor_score(lat, generator):
    sde = VESDE()
    score = gaussian_score(sde, KAPPA, inflate=POOR, lat=lat)
    res = maala(score, sde, Phi4Action(kappa=KAPPA, lam=0.0), Field.zeros(lat, batch=256), n=200, steps=50,
                t_langevin=0.05, step_size=0.2, generator=generator)
    z = z_scores(res.samples[50:], KAPPA, lat)
    assert float(z.abs().max()) < 4, z
    assert 0.2 < float(res.acceptance.mean()) < 1


def test_unadjusted_maala_with_the_same_poor_score_misses(generator):
    # the power of the MAALA test above: the same proposals, every one accepted, land on the wrong distribution
    sde = VESDE()
    score = gaussian_score(sde, KAPPA, inflate=POOR, lat=LAT)
    res = maala(score, sde, Phi4Action(kappa=KAPPA, lam=0.0), Field.zeros(LAT, batch=256), n=200, steps=50,
                t_langevin=0.05, step_size=0.2, generator=generator, metropolis=False)
    assert float(z_scores(res.samples[50:], KAPPA, LAT).abs().max()) > 8


def test_path_acceptance_grows_as_the_path_is_refined(generator):
    # with the exact score the only path-space mismatch is the discretisation: refining raises acceptance
    sde = VESDE()
    accs = []
    for steps in (10, 60):
        res = path_imh(gaussian_score(sde, KAPPA, lat=SMALL), sde, Phi4Action(kappa=KAPPA, lam=0.0),
                       Field.zeros(SMALL, batch=256), n=6, steps=steps, generator=generator, t_min=0.0)
        accs.append(float(res.acceptance.mean()))
    assert accs[1] > accs[0] + 0.1, accs


def test_an_independence_chain_never_starts_from_a_diverged_proposal(generator, monkeypatch):
    # a reverse path that diverges gives a NaN proposal: step rejects it (accept.metropolis), and init draws that
    # chain again rather than start it at NaN (a NaN state with a NaN weight would reject everything after it)
    from lgdiff import PathIMH

    sde = VESDE()
    kernel = PathIMH(score=gaussian_score(sde, KAPPA, lat=SMALL), process=sde, action=Phi4Action(kappa=KAPPA, lam=0.0),
                     steps=4, t_min=0.0)
    original, calls = PathIMH.propose, []

    def flaky(self, like, *, generator):
        state, log_w = original(self, like, generator=generator)
        calls.append(1)
        if len(calls) == 1:  # the first draw of chain 1 diverges
            data = state.data.clone()
            data[1] = float("nan")
            return state.with_data(data), torch.where(torch.arange(len(log_w)) == 1, float("nan"), log_w)
        return state, log_w

    monkeypatch.setattr(PathIMH, "propose", flaky)
    state = kernel.init(Field.zeros(SMALL, batch=3), generator=generator)
    assert len(calls) == 2 and torch.isfinite(state.log_w).all() and torch.isfinite(state.state.data).all()

    def broken(self, like, *, generator):
        state, log_w = original(self, like, generator=generator)
        return state.with_data(torch.full_like(state.data, float("nan"))), log_w

    monkeypatch.setattr(PathIMH, "propose", broken)
    with pytest.raises(ValueError, match="dm-path: some chains drew no finite proposal in 21 tries"):
        kernel.init(Field.zeros(SMALL, batch=3), generator=generator)

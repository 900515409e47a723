"""`MagnetisedPrior`: its density against a dense two-Gaussian mixture, its draws against its moments, and the path
sampler that starts from it exact with a poor score and a wrong prior (the power: the same draws weighed with another
density miss). `PathIMH.with_fitted_prior` against the free field's exact zero mode."""

import math

import attrs
import pytest
import torch

from lgdiff import Field, GroupVE, Lattice, MagnetisedPrior, PathIMH, Phi4Action
from lgdiff._samplers.maala import sample_chain
from lgdiff._sde.precondition import FreeScalarPreconditioner
from lgdiff._sde.ve import VESDE
from lgdiff._sde.vp import VPSDE

from ..samplers.test_diffusion import KAPPA, POOR, SMALL, gaussian_score, propagator, z_scores

PRIOR = dict(shift=0.7, zero_var=0.05, std=1.5, kinetic=0.6)


def dense_covariance(prior: MagnetisedPrior, shape: tuple[int, ...]) -> torch.Tensor:
    """``Cov[x_i, x_j] = c(r_i - r_j)``, ``c = ifft(Sigma)``: the circulant matrix of the prior's variances."""
    c = torch.fft.ifftn(prior.variances(shape)).real.reshape(-1)
    sites = torch.stack(torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, len(shape))
    diff = (sites[:, None, :] - sites[None, :, :]) % torch.tensor(shape)
    flat = sum(diff[..., mu] * math.prod(shape[mu + 1:]) for mu in range(len(shape)))
    return c[flat]


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=lambda s: s.name)
def test_logp_is_the_dense_two_gaussian_mixture(sde, generator):
    shape = (2, 3)
    prior = MagnetisedPrior.at_T(sde, **PRIOR)
    cov = dense_covariance(prior, shape)
    mean = prior.scale_mean * prior.shift * torch.ones(6, dtype=torch.float64)
    x = 3 * torch.randn(5, *shape, generator=generator, dtype=torch.float64) + 0.5
    peaks = [torch.distributions.MultivariateNormal(s * mean, covariance_matrix=cov).log_prob(x.reshape(5, -1))
             for s in (1, -1)]
    want = torch.logsumexp(torch.stack(peaks), 0) - math.log(2)
    torch.testing.assert_close(prior.logp(x), want, rtol=1e-10, atol=1e-10)


def test_draws_have_the_prior_moments(generator):
    # second moments of every pair of sites and the fourth moment of the zero mode (two peaks, not one Gaussian)
    shape, n = (2, 2), 40000
    prior = MagnetisedPrior(scale_noise=0.5, **PRIOR)
    x = prior.sample_like(torch.zeros(n, *shape, dtype=torch.float64), generator=generator).reshape(n, -1)
    cov = dense_covariance(prior, shape) + prior.shift**2
    prod = x[:, :, None] * x[:, None, :]
    z = (prod.mean(0) - cov) / (prod.std(0) / math.sqrt(n))
    assert float(z.abs().max()) < 4, z
    zeta = x.sum(1) / 2
    a, v0 = prior.shift * 2, float(prior.variances(shape)[0, 0])
    fourth = zeta**4
    z4 = (float(fourth.mean()) - (a**4 + 6 * a * a * v0 + 3 * v0 * v0)) / float(fourth.std() / math.sqrt(n))
    assert abs(z4) < 4
    assert abs(float(zeta.mean())) < 4 * float(zeta.std()) / math.sqrt(n)  # both signs, equally often


def test_prior_checks():
    with pytest.raises(ValueError, match="shift must be a finite number >= 0"):
        MagnetisedPrior(scale_noise=1.0, **{**PRIOR, "shift": -1.0})
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        MagnetisedPrior(scale_noise=1.0, **{**PRIOR, "std": 0.0})
    with pytest.raises(TypeError, match="real-field SDE"):
        MagnetisedPrior.at_T(GroupVE(), **PRIOR)
    prior = MagnetisedPrior.at_T(VESDE(), **PRIOR)
    assert prior.settings()["prior_shift"] == 0.7 and prior.scale_noise == pytest.approx(VESDE().prior_std())


# ---- the path sampler from a magnetised prior -------------------------------------------------------------------

FREE = Phi4Action(kappa=KAPPA, lam=0.0)
WRONG = dict(shift=0.6, zero_var=0.3, std=0.5, kinetic=1.0)  # the free field: no shift, std 1.29, kinetic 0.4
SHORT = VESDE(t_final=0.3)  # s_T = 0.96: short enough that the prior shapes the proposals (at T = 1, s_T = 9.8)


def poor_path(prior: MagnetisedPrior | None) -> PathIMH:
    sde = SHORT
    return PathIMH(score=gaussian_score(sde, KAPPA, inflate=POOR, lat=SMALL), process=sde, action=FREE, steps=20,
                   t_min=1e-3, prior=prior)


def test_path_imh_from_a_wrong_magnetised_prior_is_exact_with_a_poor_score(generator):
    kernel = poor_path(MagnetisedPrior.at_T(SHORT, **WRONG))
    res = sample_chain(kernel, Field.zeros(SMALL, batch=256), n=60, generator=generator)
    z = z_scores(res.samples[20:], KAPPA, SMALL)
    assert float(z.abs().max()) < 4, z
    assert 0.02 < float(res.acceptance.mean()) < 1


def test_path_imh_weighing_the_magnetised_draws_with_another_density_misses(generator, monkeypatch):
    # the power of the test above: the same proposals weighed with the process's N(0, s_T^2) instead of their own
    # prior density land many sigma off
    kernel = poor_path(MagnetisedPrior.at_T(SHORT, **WRONG))
    monkeypatch.setattr(PathIMH, "_prior_logp", lambda self, x: self.process.prior_logp(x).to(torch.float64))
    res = sample_chain(kernel, Field.zeros(SMALL, batch=256), n=60, generator=generator)
    assert float(z_scores(res.samples[20:], KAPPA, SMALL).abs().max()) > 8


def test_fitted_prior_recovers_the_free_field_zero_mode(generator):
    # exact score and preconditioner: the fit's self-normalised estimates of <|M|> and var(|M|) against the Gaussian
    # zero mode, M ~ N(0, G(0) / V), with errors from the effective sample size
    lat = Lattice(shape=(4, 4))
    sde = VESDE()
    g0 = float(propagator(KAPPA, lat)[0, 0]) / lat.volume  # var(M)
    pre = FreeScalarPreconditioner(std=(2 - 8 * KAPPA) ** -0.5, kinetic=2 * KAPPA)
    kernel = PathIMH(score=gaussian_score(sde, KAPPA, lat=lat), process=sde, action=FREE, steps=20, t_min=1e-3,
                     preconditioner=pre)
    fitted = kernel.with_fitted_prior(Field.zeros(lat, batch=500), generator=generator, rounds=1, proposals=2000)
    prior = fitted.prior
    assert prior is not None and prior.fit_proposals == 2000 and prior.fit_ess > 1000
    abs_mean, abs_var = math.sqrt(2 * g0 / math.pi), g0 * (1 - 2 / math.pi)
    assert abs(prior.shift - abs_mean) < 4 * math.sqrt(abs_var / prior.fit_ess)
    assert abs(prior.zero_var - abs_var) < 4 * abs_var * math.sqrt(2 / prior.fit_ess)
    assert (prior.std, prior.kinetic) == (pre.std, pre.kinetic)
    again = kernel.with_fitted_prior(Field.zeros(lat, batch=500), generator=torch.Generator().manual_seed(3),
                                     rounds=1, proposals=1000)
    same = kernel.with_fitted_prior(Field.zeros(lat, batch=500), generator=torch.Generator().manual_seed(3),
                                    rounds=1, proposals=1000)
    assert again == same  # same generator state, same prior
    assert fitted.settings()["prior_fit_proposals"] == 2000


def test_fitted_prior_checks(generator):
    kernel = poor_path(None)
    with pytest.raises(ValueError, match="needs the Gaussian of the non-zero modes"):
        kernel.with_fitted_prior(Field.zeros(SMALL, batch=4), generator=generator)
    pre = FreeScalarPreconditioner(std=1.0, kinetic=0.4)
    with pytest.raises(ValueError, match="rounds must be an int >= 1"):
        kernel.with_fitted_prior(Field.zeros(SMALL, batch=4), generator=generator, rounds=0, gaussian=pre)
    with pytest.raises(ValueError, match="no proposal has a finite weight"):
        nan_score = attrs.evolve(kernel, score=lambda x, t: torch.full_like(x, math.nan))
        nan_score.with_fitted_prior(Field.zeros(SMALL, batch=4), generator=generator, gaussian=pre)


def test_global_local_from_a_magnetised_prior_is_exact_with_a_poor_score(generator):
    # the mixture re-weighs the current configuration with a fresh path: its weight uses the same prior density
    from lgdiff import HMC, GlobalLocal

    kernel = GlobalLocal(global_=poor_path(MagnetisedPrior.at_T(SHORT, **WRONG)),
                         local=HMC(action=FREE, step_size=0.3, n_steps=3), local_steps=1)
    res = sample_chain(kernel, Field.zeros(SMALL, batch=256), n=60, generator=generator)
    z = z_scores(res.samples[20:], KAPPA, SMALL)
    assert float(z.abs().max()) < 4, z
    assert 0.02 < float(res.acceptance.mean()) < 1

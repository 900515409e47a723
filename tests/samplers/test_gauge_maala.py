"""MAALA and the raw reverse SDE on link fields: exactness with deliberately poor scores against the exact 2D
U(1) and SU(2) results, the power of those tests (the unadjusted sampler with the same score fails them), and
the sampler's contract (shapes, group membership, reproducibility, errors)."""

import doctest
import math

import numpy as np
import pytest
import torch

import lgdiff._samplers.gauge_maala as gauge_maala
from lgdiff import SU, U1, AlgebraField, Lattice, LinkField, WilsonAction
from lgdiff._exact import su_n_2d_plaquette, u1_2d_plaquette, u1_2d_topological_susceptibility
from lgdiff._models.lcnn import LCNN, LCNNConfig
from lgdiff._observables.gauge import mean_plaquette, topological_charge_u1_2d
from lgdiff._samplers.gauge_maala import denoise_links, maala_chain, maala_links, scaled_score, wilson_score
from lgdiff._samplers.heatbath import Heatbath
from lgdiff._sde.group import GroupVE
from lgdiff._train.gauge import lcnn_score

PROCESS = GroupVE()


def untrained_lcnn_score(group, dim: int, seed: int):
    """A deliberately poor score: a randomly initialised L-CNN (output / s(t), as a trained one is used)."""
    net = LCNN(LCNNConfig(group=group, dim=dim, channels=4, blocks=1), generator=torch.Generator().manual_seed(seed))
    return lcnn_score(net.requires_grad_(False), PROCESS)


def wrong_beta_force(group, beta: float):
    """A deliberately poor score: the exact t -> 0 score of the Wilson action at another beta."""
    return wilson_score(WilsonAction(beta=beta, group=group))


def chain_stats(samples: torch.Tensor, group, lattice: Lattice, observable) -> tuple[float, float]:
    """Mean and error of an observable from ``samples [n, B, ...]``: one mean per chain, chains independent."""
    values = torch.stack([observable(LinkField(s, group, lattice)) for s in samples])  # [n, B]
    per_chain = values.mean(0)
    return float(per_chain.mean()), float(per_chain.std() / math.sqrt(per_chain.shape[0]))


def su2_torus_plaquette(beta: float, volume: int) -> float:
    """Exact <Re tr U_P / 2> of 2D SU(2) on a periodic torus with ``volume`` plaquettes (genus 1, so
    ``Z = sum_d w_d^V`` with ``w_d = (2 / beta) I_d(beta)``, d = 2j + 1) for the finite-volume check."""
    from scipy.special import ive

    d = np.arange(1, 60)
    log_w = np.log(ive(d, beta)) - np.log(ive(1, beta))            # w_d / w_1 (e^beta and 2/beta cancel)
    dlog = (ive(d - 1, beta) + ive(d + 1, beta)) / (2 * ive(d, beta)) - 1 / beta   # d/dbeta log w_d
    weights = np.exp(volume * log_w)
    return float((weights * dlog).sum() / weights.sum())


# ---- exactness with poor scores ----------------------------------------------------------------------

U1_LAT, U1_BETA = Lattice(shape=(4, 4)), 1.0
U1_RUN = dict(chains=32, n=200, steps=10, t_langevin=0.6, step_size=0.1, therm=300, target_acceptance=0.6)


def test_maala_with_untrained_lcnn_reproduces_exact_u1_2d(generator):
    score = untrained_lcnn_score(U1(), 2, seed=1)
    action = WilsonAction(beta=U1_BETA, group=U1())
    res = maala_links(score, PROCESS, action, U1_LAT, generator=generator, **U1_RUN)
    p, p_err = chain_stats(res.samples, U1(), U1_LAT, mean_plaquette)
    chi, chi_err = chain_stats(res.samples, U1(), U1_LAT, lambda U: topological_charge_u1_2d(U) ** 2 / 16)
    p_exact, chi_exact = u1_2d_plaquette(U1_BETA, (4, 4)), u1_2d_topological_susceptibility(U1_BETA, (4, 4))
    assert abs(p - p_exact) < 4 * p_err, f"plaquette {p} +- {p_err} vs exact {p_exact}"
    assert abs(chi - chi_exact) < 4 * chi_err, f"chi_t {chi} +- {chi_err} vs exact {chi_exact}"
    assert 0.3 < float(res.acceptance.mean()) < 0.9  # proposals are really rejected: the correction is at work


def test_unadjusted_langevin_with_the_same_untrained_lcnn_misses_u1_2d(generator):
    # the power of the test above: without the Metropolis step the same drift is many sigma off
    score = untrained_lcnn_score(U1(), 2, seed=1)
    action = WilsonAction(beta=U1_BETA, group=U1())
    res = maala_links(score, PROCESS, action, U1_LAT, generator=generator, metropolis=False,
                      **{**U1_RUN, "n": 50, "therm": 100})
    p, p_err = chain_stats(res.samples, U1(), U1_LAT, mean_plaquette)
    assert abs(p - u1_2d_plaquette(U1_BETA, (4, 4))) > 15 * p_err, f"{p} +- {p_err}"


SU2_LAT, SU2_BETA = Lattice(shape=(4, 4)), 2.0
SU2_RUN = dict(chains=32, n=150, steps=10, t_langevin=0.3, step_size=0.05, therm=300, target_acceptance=0.6)


def test_su2_finite_volume_effects_are_below_the_test_resolution():
    # su_n_2d_plaquette is the infinite-volume value; on the 4 x 4 torus the difference is ~1e-6 (the
    # exact torus sum), far below the ~3e-3 error of the run below
    torus = su2_torus_plaquette(SU2_BETA, SU2_LAT.volume)
    assert abs(su2_torus_plaquette(SU2_BETA, 10_000) - su_n_2d_plaquette(2, SU2_BETA)) < 1e-12  # the sum is right
    assert abs(torus - su_n_2d_plaquette(2, SU2_BETA)) < 1e-4


def test_maala_with_wrong_beta_score_reproduces_exact_su2_2d(generator):
    score = wrong_beta_force(SU(2), 2 * SU2_BETA)
    action = WilsonAction(beta=SU2_BETA, group=SU(2))
    res = maala_links(score, PROCESS, action, SU2_LAT, generator=generator, **SU2_RUN)
    p, p_err = chain_stats(res.samples, SU(2), SU2_LAT, mean_plaquette)
    exact = su_n_2d_plaquette(2, SU2_BETA)
    assert abs(p - exact) < 4 * p_err, f"plaquette {p} +- {p_err} vs exact {exact}"
    assert p_err < 0.012


def test_unadjusted_langevin_with_the_same_wrong_beta_score_misses_su2_2d(generator):
    score = wrong_beta_force(SU(2), 2 * SU2_BETA)
    action = WilsonAction(beta=SU2_BETA, group=SU(2))
    res = maala_links(score, PROCESS, action, SU2_LAT, generator=generator, metropolis=False,
                      **{**SU2_RUN, "n": 50, "therm": 100})
    p, p_err = chain_stats(res.samples, SU(2), SU2_LAT, mean_plaquette)
    assert abs(p - su_n_2d_plaquette(2, SU2_BETA)) > 15 * p_err, f"{p} +- {p_err}"


@pytest.mark.slow
@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_maala_with_untrained_lcnn_reproduces_exact_u1_2d_8x8(beta, generator):
    # at beta = 3 a chain started from the (untrained) denoiser's output needs far more than these steps to
    # equilibrate with the small step the poor drift allows (measured: plaquette 0.753(4) vs 0.810 after 500),
    # so there the chains start from heatbath-thermalised links: the test checks that MAALA leaves the exact
    # distribution invariant, whatever the drift
    lattice = Lattice(shape=(8, 8))
    score = untrained_lcnn_score(U1(), 2, seed=2)
    action = WilsonAction(beta=beta, group=U1())
    initial = None
    if beta > 1.0:
        initial = LinkField.random(U1(), lattice, batch=64, generator=generator)
        for _ in range(100):
            initial, _ = Heatbath(action).step(initial, generator=generator)
    res = maala_links(score, PROCESS, action, lattice, chains=64, n=500, steps=20, t_langevin=0.6, step_size=0.05,
                      therm=500, target_acceptance=0.6, generator=generator, initial=initial)
    p, p_err = chain_stats(res.samples, U1(), lattice, mean_plaquette)
    chi, chi_err = chain_stats(res.samples, U1(), lattice, lambda U: topological_charge_u1_2d(U) ** 2 / 64)
    p_exact, chi_exact = u1_2d_plaquette(beta, (8, 8)), u1_2d_topological_susceptibility(beta, (8, 8))
    assert abs(p - p_exact) < 4 * p_err, f"plaquette {p} +- {p_err} vs exact {p_exact}"
    assert abs(chi - chi_exact) < 4 * chi_err, f"chi_t {chi} +- {chi_err} vs exact {chi_exact}"


@pytest.mark.slow
def test_maala_with_untrained_lcnn_reproduces_exact_su2_2d_6x6(generator):
    lattice = Lattice(shape=(6, 6))
    score = scaled_score(untrained_lcnn_score(SU(2), 2, seed=3), 0.1)
    action = WilsonAction(beta=SU2_BETA, group=SU(2))
    res = maala_links(score, PROCESS, action, lattice, chains=64, n=400, steps=20, t_langevin=0.3, step_size=0.05,
                      therm=500, target_acceptance=0.6, generator=generator)
    p, p_err = chain_stats(res.samples, SU(2), lattice, mean_plaquette)
    exact = su_n_2d_plaquette(2, SU2_BETA)
    assert abs(su2_torus_plaquette(SU2_BETA, 36) - exact) < 0.1 * p_err
    assert abs(p - exact) < 4 * p_err, f"plaquette {p} +- {p_err} vs exact {exact}"


# ---- contract ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [U1(), SU(2), SU(3)], ids=str)
def test_maala_keeps_links_on_the_group_and_returns_shapes(group, generator):
    lattice = Lattice(shape=(4, 4))
    score = wrong_beta_force(group, 1.0)
    res = maala_links(score, PROCESS, WilsonAction(beta=2.0, group=group), lattice, chains=3, n=4, steps=5,
                      t_langevin=0.1, step_size=0.02, every=2, generator=generator)
    n = group.n
    assert res.samples.shape == (4, 3, 2, 4, 4, n, n) and res.acceptance.shape == (4, 3)
    assert group.membership_error(res.samples).amax() < 1e-12
    assert ((res.acceptance >= 0) & (res.acceptance <= 1)).all()
    assert torch.equal(res.samples[-1], res.state.data)


def test_maala_is_reproducible_with_the_same_seed():
    lattice, action = Lattice(shape=(4, 4)), WilsonAction(beta=2.0, group=SU(2))
    runs = [maala_links(wrong_beta_force(SU(2), 1.0), PROCESS, action, lattice, chains=2, n=3, steps=4,
                        t_langevin=0.1, step_size=0.05, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert torch.equal(runs[0].acceptance, runs[1].acceptance)


def test_maala_records_every_step_after_thermalisation(generator):
    U = LinkField.random(U1(), Lattice(shape=(4, 4)), batch=2, generator=generator)
    records = list(maala_chain(wrong_beta_force(U1(), 1.0), WilsonAction(beta=1.0, group=U1()), U, n=3, every=4,
                               therm=5, t_langevin=0.1, step_size=0.05, generator=generator))
    assert [r.index for r in records] == [8, 12, 16]
    assert all(r.acceptance.shape == (2,) for r in records)


def test_step_size_adaptation_reaches_the_target_acceptance(generator):
    # with the exact score the adapted step gives the target acceptance on the recorded (fixed-step) part
    lattice, action = Lattice(shape=(4, 4)), WilsonAction(beta=2.0, group=SU(2))
    res = maala_links(wrong_beta_force(SU(2), 2.0), PROCESS, action, lattice, chains=32, n=60, steps=5,
                      t_langevin=0.1, step_size=0.005, therm=100, target_acceptance=0.6, generator=generator)
    assert abs(float(res.acceptance.mean()) - 0.6) < 0.1
    assert res.step_size > 0.02  # it grew from the too-small start


def test_denoise_links_returns_group_members_and_scaled_score_scales(generator):
    lattice = Lattice(shape=(4, 4))
    score = wrong_beta_force(SU(2), 1.0)
    U = denoise_links(score, PROCESS, SU(2), lattice, chains=2, steps=5, generator=generator, t_min=0.05,
                      beta_scale=2.0)
    assert U.batch == 2 and SU(2).membership_error(U.data).amax() < 1e-12
    t = torch.full((2,), 0.1)
    torch.testing.assert_close(scaled_score(score, 2.5)(U, t).data, 2.5 * score(U, t).data)


def test_raw_sde_with_zero_score_gives_haar_links(generator):
    # the reverse SDE with a zero score is Brownian motion from Haar: Haar again, <Re tr U / N> = 0 per link
    def zero(U, t):
        return AlgebraField(torch.zeros_like(U.data), U.group, U.lattice)

    U = denoise_links(zero, PROCESS, SU(3), Lattice(shape=(4, 4)), chains=64, steps=10, generator=generator)
    tr = (U.data.diagonal(dim1=-2, dim2=-1).sum(-1).real / 3).reshape(64, -1).mean(1)
    assert abs(float(tr.mean())) < 4 * float(tr.std() / 8)


def test_maala_errors_say_what_to_fix(generator):
    U = LinkField.random(U1(), Lattice(shape=(4, 4)), batch=2, generator=generator)
    score = wrong_beta_force(U1(), 1.0)
    kw = dict(n=1, t_langevin=0.1, step_size=0.05, generator=generator)
    with pytest.raises(ValueError, match="the links are U\\(1\\) but the action is for SU\\(2\\)"):
        next(maala_chain(score, WilsonAction(beta=1.0, group=SU(2)), U, **kw))
    with pytest.raises(ValueError, match="step_size must be a finite number > 0; got -0.1"):
        next(maala_chain(score, WilsonAction(beta=1.0, group=U1()), U, **{**kw, "step_size": -0.1}))
    with pytest.raises(ValueError, match="target_acceptance must be in \\(0, 1\\)"):
        next(maala_chain(score, WilsonAction(beta=1.0, group=U1()), U, target_acceptance=1.5, **kw))
    with pytest.raises(ValueError, match="beta_scale must be a finite number > 0"):
        scaled_score(score, 0.0)
    with pytest.raises(ValueError, match="does not match chains = 3"):
        maala_links(score, PROCESS, WilsonAction(beta=1.0, group=U1()), Lattice(shape=(4, 4)), chains=3, n=1,
                    steps=1, t_langevin=0.1, step_size=0.05, generator=generator, initial=U)

    def bad(U, t):
        return U.data

    with pytest.raises(TypeError, match="the score must return an AlgebraField"):
        next(maala_chain(bad, WilsonAction(beta=1.0, group=U1()), U, **kw))


def test_docstring_examples_run():
    result = doctest.testmod(gauge_maala, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ---- several leapfrog steps per proposal --------------------------------------------------------------

def test_one_leapfrog_step_is_the_maala_move(generator):
    # p = eta, U' = exp(i h (eta + h f / 2).T) U with h = sqrt(2e): omega = e f + sqrt(2e) eta, and p' = -eta_rev
    U = LinkField.random(SU(3), Lattice(shape=(2, 2)), batch=2, generator=generator)
    score = wrong_beta_force(SU(3), 3.0)
    t = torch.zeros(2, dtype=torch.float64)
    f = gauge_maala._coords(score, U, t, 1.0)
    eta = torch.randn(f.shape, generator=generator, dtype=torch.float64)
    e = torch.tensor(0.01, dtype=torch.float64)
    omega = e * f + (2 * e).sqrt() * eta
    moved = SU(3).exp(SU(3).from_coords(omega)) @ U.data
    proposal, f_new, p_end = gauge_maala._leapfrog(score, U, f, eta, (2 * e).sqrt(), 1, t, 1.0)
    torch.testing.assert_close(proposal.data, moved, rtol=0, atol=1e-13)
    eta_rev = (-omega - e * f_new) / (2 * e).sqrt()
    torch.testing.assert_close(p_end, -eta_rev, rtol=0, atol=1e-13)


def test_leapfrog_proposals_with_a_wrong_beta_drift_reproduce_exact_su2_2d(generator):
    # a force 50 % too strong: along a 4-step trajectory the energy is not conserved, the Metropolis step corrects
    score = wrong_beta_force(SU(2), 1.5 * SU2_BETA)
    action = WilsonAction(beta=SU2_BETA, group=SU(2))
    res = maala_links(score, PROCESS, action, SU2_LAT, generator=generator, leapfrog=4, **SU2_RUN)
    p, p_err = chain_stats(res.samples, SU(2), SU2_LAT, mean_plaquette)
    exact = su_n_2d_plaquette(2, SU2_BETA)
    assert abs(p - exact) < 4 * p_err, f"plaquette {p} +- {p_err} vs exact {exact}"
    assert 0.3 < float(res.acceptance.mean()) < 0.9 and p_err < 0.012


def test_leapfrog_trajectories_with_the_exact_drift_accept_more_at_the_same_step(generator):
    # HMC (exact force, trajectory K h) keeps its energy error O(h^2) per unit length: at the step where MAALA
    # accepts ~0.6, 4 leapfrog steps of the exact drift still accept > 0.4 while moving 4x farther
    action = WilsonAction(beta=SU2_BETA, group=SU(2))
    start = LinkField.random(SU(2), SU2_LAT, batch=16, generator=generator)
    U = next(maala_chain(wilson_score(action), action, start, n=1, t_langevin=0.1, step_size=0.05,
                         generator=generator, therm=300, target_acceptance=0.6)).state
    e = 0.05
    accept = {}
    for k in (1, 4):
        recs = list(maala_chain(wilson_score(action), action, U, n=50, t_langevin=0.1, step_size=e,
                                generator=generator, leapfrog=k))
        accept[k] = float(torch.stack([r.acceptance for r in recs]).mean())
    assert accept[4] > 0.4 and accept[1] > 0.4, accept
    with pytest.raises(ValueError, match="leapfrog must be an int >= 1; got 0"):
        next(maala_chain(wilson_score(action), action, U, n=1, t_langevin=0.1, step_size=e, generator=generator,
                         leapfrog=0))

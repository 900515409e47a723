"""The exact diffusion-model samplers on link fields (path-space and marginal independence Metropolis, MAALA) with
deliberately poor scores against the exact 2D U(1) and SU(2) results, the power of those tests (the raw or
unadjusted sampler with the same score misses), and the kernels' contract."""

import math

import pytest
import torch

from lgdiff import SU, U1, AlgebraField, Lattice, LinkField, WilsonAction
from lgdiff._exact import su_n_2d_plaquette, u1_2d_plaquette, u1_2d_topological_susceptibility
from lgdiff._models.lcnn import LCNN, LCNNConfig
from lgdiff._models.files import lcnn_score
from lgdiff._observables.gauge import mean_plaquette, topological_charge_u1_2d
from lgdiff._samplers.hmc import GaugeHMC
from lgdiff._samplers.maala import maala, maala_kernel, marginal_imh, path_imh, wilson_score
from lgdiff._samplers.reverse import probability_flow, reverse_sde
from lgdiff._sde.group import GroupVE
from lgdiff._sde.score import ConditionedScore

PROCESS = GroupVE()
LAT = Lattice(shape=(4, 4))
GRID = dict(t_min=0.01, spacing="geometric")


def damped_wrong_force(group, beta_wrong: float, c: float):
    """A deliberately poor score: the exact t -> 0 score of the Wilson action at a wrong beta, damped by the
    made-up schedule ``1 / (1 + c beta_wrong s(t)^2)`` (the true score at t > 0 is unknown here)."""
    force = wilson_score(WilsonAction(beta=beta_wrong, group=group))

    def score(U, t):
        s2 = PROCESS.std(t.to(torch.float64)) ** 2
        damp = (1.0 / (1.0 + c * beta_wrong * s2)).to(U.data.real.dtype)
        return force(U, t) * damp.reshape(-1, *([1] * (U.data.ndim - 1)))

    return score


def untrained_lcnn_score(group, seed: int):
    net = LCNN(LCNNConfig(group=group, dim=2, channels=4, blocks=1), generator=torch.Generator().manual_seed(seed))
    return lcnn_score(net.requires_grad_(False), PROCESS)


def chain_stats(samples, group, observable):
    """Mean and error of an observable from ``samples [n, B, ...]``: one mean per chain, chains independent."""
    values = torch.stack([observable(LinkField(s, group, LAT)) for s in samples])
    per_chain = values.mean(0)
    return float(per_chain.mean()), float(per_chain.std() / math.sqrt(per_chain.shape[0]))


def batch_stats(U, observable):
    v = observable(U)
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def chi(U):
    return topological_charge_u1_2d(U) ** 2 / LAT.volume


U1_BETA, SU2_BETA = 1.0, 2.0
U1_EXACT = (u1_2d_plaquette(U1_BETA, (4, 4)), u1_2d_topological_susceptibility(U1_BETA, (4, 4)))
SU2_EXACT = su_n_2d_plaquette(2, SU2_BETA)  # the 4 x 4 torus differs by < 1e-4 (tests/exact), far below the errors


def like(group, batch):
    return LinkField.identity(group, LAT, batch=batch)


def assert_exact(samples, group, plaquette, chi_t=None):
    """The chains' plaquette (and for U(1) chi_t) within 4 sigma of the exact values."""
    p, p_err = chain_stats(samples, group, mean_plaquette)
    assert abs(p - plaquette) < 4 * p_err, f"plaquette {p} +- {p_err} vs {plaquette}"
    if chi_t is not None:
        c, c_err = chain_stats(samples, group, chi)
        assert abs(c - chi_t) < 4 * c_err, f"chi_t {c} +- {c_err} vs {chi_t}"


def raw_plaquette(score, group, *, batch, steps, generator, flow=False):
    """Mean and error of the plaquette of the raw proposals (reverse SDE, or the probability flow): the power test."""
    prior = PROCESS.prior_like(like(group, batch), generator=generator)
    if flow:
        U = probability_flow(score, PROCESS, prior, steps=steps, divergence="none", **GRID)[0]
    else:
        U = reverse_sde(score, PROCESS, prior, steps=steps, generator=generator, **GRID)
    return batch_stats(U, mean_plaquette)


# ---- path-space independence Metropolis (exact route 2) ----------------------------------------------------

def test_path_imh_with_a_poor_score_reproduces_exact_u1_2d(generator):
    score = damped_wrong_force(U1(), 1.0, 4.0)
    res = path_imh(score, PROCESS, WilsonAction(beta=U1_BETA, group=U1()), like(U1(), 64), n=100, steps=20,
                   generator=generator, **GRID)
    assert_exact(res.samples[30:], U1(), *U1_EXACT)
    assert 0.05 < float(res.acceptance.mean()) < 0.9


def test_raw_reverse_sde_with_the_same_score_misses_u1_2d(generator):
    # the power of the test above: its proposals alone are many sigma off
    score = damped_wrong_force(U1(), 1.0, 4.0)
    p, p_err = raw_plaquette(score, U1(), batch=512, steps=20, generator=generator)
    assert abs(p - U1_EXACT[0]) > 8 * p_err, f"{p} +- {p_err}"


def test_path_imh_with_a_poor_score_reproduces_exact_su2_2d(generator):
    score = damped_wrong_force(SU(2), 3.0, 2.0)
    res = path_imh(score, PROCESS, WilsonAction(beta=SU2_BETA, group=SU(2)), like(SU(2), 64), n=150, steps=20,
                   generator=generator, **GRID)
    assert_exact(res.samples[50:], SU(2), SU2_EXACT)
    q, q_err = raw_plaquette(score, SU(2), batch=512, steps=20, generator=generator)
    assert abs(q - SU2_EXACT) > 8 * q_err, f"the raw proposals: {q} +- {q_err}"


# ---- marginal independence Metropolis (exact route 1) ------------------------------------------------------

def test_marginal_imh_with_a_poor_score_reproduces_exact_u1_2d(generator):
    score = damped_wrong_force(U1(), 1.0, 16.0)
    res = marginal_imh(score, PROCESS, WilsonAction(beta=U1_BETA, group=U1()), like(U1(), 64), n=60, steps=8,
                       generator=generator, **GRID)
    assert_exact(res.samples[20:], U1(), *U1_EXACT)
    q, q_err = raw_plaquette(score, U1(), batch=2048, steps=8, generator=generator, flow=True)
    assert abs(q - U1_EXACT[0]) > 6 * q_err, f"the raw proposals: {q} +- {q_err}"


@pytest.mark.slow
def test_marginal_imh_with_a_poor_score_reproduces_exact_su2_2d(generator):
    # at beta = 1 (4 x 4 torus: the infinite-volume value to < 1e-6): 96 JVPs per Heun step make it ~90 CPU-s
    beta = 1.0
    score = damped_wrong_force(SU(2), 1.5, 16.0)
    res = marginal_imh(score, PROCESS, WilsonAction(beta=beta, group=SU(2)), like(SU(2), 32), n=40, steps=8,
                       generator=generator, **GRID)
    exact = su_n_2d_plaquette(2, beta)
    assert_exact(res.samples[15:], SU(2), exact)
    q, q_err = raw_plaquette(score, SU(2), batch=512, steps=8, generator=generator, flow=True)
    assert abs(q - exact) > 8 * q_err, f"the raw proposals: {q} +- {q_err}"


def test_exact_logdet_on_u1_is_the_jacobian_in_angles(generator):
    # for U(1) the right-trivialised frame is the angle chart: one Heun step's log|det| must equal the log|det| of
    # the Jacobian of the same map written in angles and differentiated by reverse-mode autograd
    from lgdiff._samplers.reverse import _heun, step_logdet

    score = damped_wrong_force(U1(), 1.0, 1.0)
    U = LinkField.random(U1(), Lattice(shape=(2, 2)), batch=1, generator=generator)

    def step(V):
        return _heun(score, PROCESS, V, 0.3, 0.2, 25.0 ** 0.6, 25.0 ** 0.4)

    _, logdet = step_logdet(step, PROCESS, U)
    theta0 = torch.angle(U.data).reshape(-1)

    def in_angles(theta):
        V = U.with_data(torch.polar(torch.ones_like(theta), theta).reshape(U.data.shape).to(U.data.dtype))
        out = step(V)
        return torch.angle(out.data.reshape(-1) * torch.exp(-1j * theta0).conj().conj() / torch.exp(1j * theta0)
                           ) + theta0
    jac = torch.autograd.functional.jacobian(in_angles, theta0)
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jac)[1], rtol=1e-10, atol=1e-10)


# ---- MAALA (exact route 3): HMC with the model's score as force ---------------------------------------------

MAALA_RUN = dict(n=150, steps=10, therm=300, target_acceptance=0.6, spacing="geometric")


def test_maala_with_an_untrained_lcnn_reproduces_exact_u1_2d(generator):
    score = untrained_lcnn_score(U1(), seed=1)
    res = maala(score, PROCESS, WilsonAction(beta=U1_BETA, group=U1()), like(U1(), 32), t_langevin=0.6,
                step_size=0.1, generator=generator, **MAALA_RUN)
    assert_exact(res.samples, U1(), *U1_EXACT)
    assert 0.3 < float(res.acceptance.mean()) < 0.9


def test_unadjusted_langevin_with_the_same_lcnn_misses_u1_2d(generator):
    score = untrained_lcnn_score(U1(), seed=1)
    res = maala(score, PROCESS, WilsonAction(beta=U1_BETA, group=U1()), like(U1(), 32), t_langevin=0.6,
                step_size=0.1, generator=generator, metropolis=False, **{**MAALA_RUN, "n": 50, "therm": 100,
                                                                           "target_acceptance": None})
    p, p_err = chain_stats(res.samples, U1(), mean_plaquette)
    assert abs(p - U1_EXACT[0]) > 15 * p_err, f"{p} +- {p_err}"


@pytest.mark.parametrize("leapfrog", [1, 4])
def test_maala_with_a_wrong_beta_drift_reproduces_exact_su2_2d(generator, leapfrog):
    drift = wilson_score(WilsonAction(beta=1.5 * SU2_BETA, group=SU(2)))
    res = maala(drift, PROCESS, WilsonAction(beta=SU2_BETA, group=SU(2)), like(SU(2), 32), t_langevin=0.3,
                step_size=0.05, generator=generator, leapfrog=leapfrog, **MAALA_RUN)
    assert_exact(res.samples, SU(2), SU2_EXACT)
    assert chain_stats(res.samples, SU(2), mean_plaquette)[1] < 0.012


def test_unadjusted_langevin_with_the_same_wrong_beta_drift_misses_su2_2d(generator):
    drift = wilson_score(WilsonAction(beta=2 * SU2_BETA, group=SU(2)))
    res = maala(drift, PROCESS, WilsonAction(beta=SU2_BETA, group=SU(2)), like(SU(2), 32), t_langevin=0.3,
                step_size=0.05, generator=generator, metropolis=False, **{**MAALA_RUN, "n": 50, "therm": 100,
                                                                            "target_acceptance": None})
    p, p_err = chain_stats(res.samples, SU(2), mean_plaquette)
    assert abs(p - SU2_EXACT) > 15 * p_err, f"{p} +- {p_err}"


def test_one_leapfrog_step_is_the_langevin_move(generator):
    # h = sqrt(2e): U' = exp(i (e f + sqrt(2e) eta).T) U, the MAALA proposal, and with the exact force it is HMC
    action = WilsonAction(beta=3.0, group=SU(3))
    U = LinkField.random(SU(3), Lattice(shape=(2, 2)), batch=2, generator=generator)
    e = 0.01
    kernel = maala_kernel(action, wilson_score(action), t_langevin=0.1, step_size=e)
    eta = AlgebraField.randn(SU(3), U.lattice, batch=2, generator=torch.Generator().manual_seed(5))
    moved, _ = kernel.evolve(U, eta)
    f = -action.force(U).data
    want = SU(3).exp(e * f + math.sqrt(2 * e) * eta.data) @ U.data
    torch.testing.assert_close(moved.data, want, rtol=0, atol=1e-13)
    hmc = GaugeHMC(action=action, step_size=math.sqrt(2 * e), n_steps=1)
    torch.testing.assert_close(hmc.evolve(U, eta)[0].data, moved.data, rtol=0, atol=1e-13)


# ---- contract ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [U1(), SU(2), SU(3)], ids=str)
def test_exact_samplers_keep_links_on_the_group_and_return_shapes(group, generator):
    score = ConditionedScore(damped_wrong_force(group, 1.0, 1.0), 2.0)
    action = WilsonAction(beta=2.0, group=group)
    for res in (path_imh(score, PROCESS, action, like(group, 3), n=4, steps=5, generator=generator, **GRID),
                maala(score, PROCESS, action, like(group, 3), n=4, steps=5, t_langevin=0.1, step_size=0.02,
                      every=2, generator=generator, spacing="geometric")):
        n = group.n
        assert res.samples.shape == (4, 3, 2, 4, 4, n, n) and res.acceptance.shape == (4, 3)
        assert group.membership_error(res.samples).amax() < 1e-12
        assert ((res.acceptance >= 0) & (res.acceptance <= 1)).all()


def test_exact_samplers_are_reproducible_with_the_same_seed():
    action, score = WilsonAction(beta=2.0, group=SU(2)), damped_wrong_force(SU(2), 1.0, 1.0)
    runs = [path_imh(score, PROCESS, action, like(SU(2), 2), n=3, steps=4,
                     generator=torch.Generator().manual_seed(7), **GRID) for _ in range(2)]
    assert torch.equal(runs[0].samples, runs[1].samples) and torch.equal(runs[0].acceptance, runs[1].acceptance)


def test_step_size_adaptation_reaches_the_target_acceptance(generator):
    action = WilsonAction(beta=SU2_BETA, group=SU(2))
    res = maala(wilson_score(action), PROCESS, action, like(SU(2), 32), n=60, steps=5, t_langevin=0.1,
                step_size=0.005, therm=100, target_acceptance=0.6, generator=generator)
    assert abs(float(res.acceptance.mean()) - 0.6) < 0.1
    assert res.kernel.step_size ** 2 / 2 > 0.02  # the Langevin step grew from the too-small start


def test_errors_say_what_to_fix(generator):
    action = WilsonAction(beta=1.0, group=U1())
    with pytest.raises(ValueError, match="the Langevin step must be a finite number > 0; got -0.1"):
        maala_kernel(action, wilson_score(action), t_langevin=0.1, step_size=-0.1)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        ConditionedScore.at(wilson_score(action), beta=0.0, beta_0=1.0)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        path_imh(wilson_score(action), PROCESS, action, like(U1(), 2), n=1, steps=0, generator=generator)

    def bad(U, t):
        return U.data

    with pytest.raises(TypeError, match="the score must return an AlgebraField"):
        path_imh(bad, PROCESS, action, like(U1(), 2), n=1, steps=2, generator=generator, **GRID)

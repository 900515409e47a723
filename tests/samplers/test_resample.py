"""`DiffusionResample` (noise to t_max, denoise, accept exactly): exact whatever the model. Checked with deliberately
poor scores against closed forms (the free field's propagator, the exact 2D U(1) plaquette and topological
susceptibility on 4 x 4 and 6 x 6), alone and composed with the heatbath; the power of these tests: the same moves
accepted without the Metropolis step land many sigma off."""

import attrs
import pytest
import torch

from lgdiff import U1, Composite, DiffusionResample, Field, Heatbath, Lattice, LinkField, Phi4Action, WilsonAction
from lgdiff._exact import u1_2d_plaquette, u1_2d_topological_susceptibility
from lgdiff._observables.gauge import mean_plaquette, topological_charge_u1_2d
from lgdiff._samplers import resample
from lgdiff._samplers.maala import sample_chain
from lgdiff._sde.precondition import FreeU1Preconditioner
from lgdiff._sde.score import ConditionedScore
from lgdiff._sde.ve import VESDE

from .test_diffusion import KAPPA, POOR, SMALL, gaussian_score, z_scores
from .test_exact_links import PROCESS, U1_BETA, U1_EXACT, assert_exact, chain_stats, damped_wrong_force, like, untrained_lcnn_score

FREE = Phi4Action(kappa=KAPPA, lam=0.0)
U1_ACTION = WilsonAction(beta=U1_BETA, group=U1())


def u1_kernel(score, t_max: float = 0.3, steps: int = 10, preconditioner=None) -> DiffusionResample:
    return DiffusionResample(score=score, process=PROCESS, action=U1_ACTION, steps=steps, t_max=t_max, t_min=0.01,
                             spacing="geometric", preconditioner=preconditioner)


# a preconditioner for the wrong beta (the Gaussian limit of beta = 3 against the target's beta = 1)
WRONG_PRECONDITIONER = FreeU1Preconditioner(beta=3.0)


def accept_all(monkeypatch):
    """Replace the Metropolis step of `DiffusionResample` by accepting every move (the unadjusted sampler)."""
    def always(log_ratio, generator):
        return torch.ones_like(log_ratio, dtype=torch.bool), log_ratio

    monkeypatch.setattr(resample, "metropolis", always)


@pytest.mark.parametrize("poor,pre", [("wrong_beta", None), ("untrained_lcnn", None),
                                      ("untrained_lcnn", WRONG_PRECONDITIONER)])
def test_resample_with_a_poor_score_reproduces_exact_u1_2d(poor, pre, generator):
    # an untrained L-CNN's raw output is O(1), so its score is O(1 / s(t)): scaled by 0.1 some moves are accepted
    score = damped_wrong_force(U1(), 3.0, 4.0) if poor == "wrong_beta" else ConditionedScore(
        untrained_lcnn_score(U1(), 3), 0.1)
    hot = LinkField.random(U1(), like(U1(), 1).lattice, batch=64, generator=generator)
    kernel = u1_kernel(score, t_max=0.3 if poor == "wrong_beta" else 0.1, preconditioner=pre)
    res = sample_chain(kernel, hot, n=150, generator=generator)
    assert_exact(res.samples[50:], U1(), *U1_EXACT)
    assert 0.05 < float(res.acceptance.mean()) < 0.95


@pytest.mark.parametrize("pre", [None, WRONG_PRECONDITIONER])
def test_unadjusted_resampling_with_the_same_score_misses_u1_2d(pre, generator, monkeypatch):
    # the power of the test above: the same noise-denoise moves, all accepted
    accept_all(monkeypatch)
    res = sample_chain(u1_kernel(damped_wrong_force(U1(), 3.0, 4.0), preconditioner=pre), like(U1(), 64), n=100,
                       generator=generator)
    p, p_err = chain_stats(res.samples[30:], U1(), mean_plaquette)  # one mean per independent chain
    assert abs(p - U1_EXACT[0]) > 8 * p_err, f"{p} +- {p_err}"


def test_resample_composed_with_the_heatbath_reproduces_exact_u1_2d_on_6x6(generator):
    beta, lat = 3.0, Lattice(shape=(6, 6))
    action = WilsonAction(beta=beta, group=U1())
    move = DiffusionResample(score=ConditionedScore(untrained_lcnn_score(U1(), 5), 0.1), process=PROCESS, action=action, steps=10,
                             t_max=0.1, t_min=0.01, spacing="geometric")
    kernel = Composite((Heatbath(action=action, n_overrelax=0), move))
    res = sample_chain(kernel, LinkField.identity(U1(), lat, batch=64), n=120, generator=generator)
    U = res.samples[20:]
    per_chain_p = torch.stack([mean_plaquette(LinkField(s, U1(), lat)) for s in U]).mean(0)
    per_chain_chi = torch.stack([topological_charge_u1_2d(LinkField(s, U1(), lat)) ** 2 / lat.volume
                                 for s in U]).mean(0)
    for values, exact in ((per_chain_p, u1_2d_plaquette(beta, (6, 6))),
                          (per_chain_chi, u1_2d_topological_susceptibility(beta, (6, 6)))):
        mean, err = float(values.mean()), float(values.std() / len(values) ** 0.5)
        assert abs(mean - exact) < 4 * err, f"{mean} +- {err} vs {exact}"


def test_resample_with_a_poor_score_reproduces_the_free_field(generator):
    sde = VESDE()
    kernel = DiffusionResample(score=gaussian_score(sde, KAPPA, inflate=POOR, lat=SMALL), process=sde, action=FREE,
                               steps=10, t_max=0.3, t_min=0.0)
    res = sample_chain(kernel, Field.zeros(SMALL, batch=256), n=60, generator=generator)
    assert float(z_scores(res.samples[20:], KAPPA, SMALL).abs().max()) < 4
    assert 0.05 < float(res.acceptance.mean()) < 0.95


def test_unadjusted_resampling_of_the_free_field_misses(generator, monkeypatch):
    accept_all(monkeypatch)
    sde = VESDE()
    kernel = DiffusionResample(score=gaussian_score(sde, KAPPA, inflate=POOR, lat=SMALL), process=sde, action=FREE,
                               steps=10, t_max=0.3, t_min=0.0)
    res = sample_chain(kernel, Field.zeros(SMALL, batch=256), n=60, generator=generator)
    assert float(z_scores(res.samples[20:], KAPPA, SMALL).abs().max()) > 8


def test_resample_contract():
    kernel = u1_kernel(damped_wrong_force(U1(), 3.0, 4.0), t_max=0.2)
    assert kernel.name == "dm-resample"
    assert kernel.settings()["t_max"] == 0.2 and kernel.settings()["steps"] == 10
    U = like(U1(), 3)
    assert kernel.init(U, generator=torch.Generator()) is U  # the state is the configuration: it composes
    a = kernel.step(U, generator=torch.Generator().manual_seed(4))[0].data
    b = kernel.step(U, generator=torch.Generator().manual_seed(4))[0].data
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="t_max must be a number > 0"):
        attrs.evolve(kernel, t_max=-0.1)
    with pytest.raises(ValueError, match="need t_min < t_max <= T"):
        attrs.evolve(kernel, t_max=1.5)
    with pytest.raises(ValueError, match="need t_min < t_max <= T"):
        attrs.evolve(kernel, t_max=0.005)


def test_a_partial_grid_runs_from_t_max_to_t_min():
    sde = VESDE()
    for spacing in ("uniform", "geometric"):
        ts = sde.time_points(8, t_min=0.01, spacing=spacing, t_max=0.3)
        assert ts[0] == 0.3 and ts[-1] == 0.01 and all(a > b for a, b in zip(ts, ts[1:]))
        assert sde.time_points(8, t_min=0.01, spacing=spacing, t_max=sde.T) == sde.time_points(8, t_min=0.01,
                                                                                               spacing=spacing)
    s2 = sde.std(torch.tensor(sde.time_points(8, t_min=0.01, spacing="geometric", t_max=0.3))) ** 2
    ratios = s2[1:] / s2[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))

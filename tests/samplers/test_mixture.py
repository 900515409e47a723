"""`GlobalLocal`: global path-space proposals mixed with local moves, exact whatever the model. Checked with
deliberately poor scores against closed forms (the free field's propagator, the exact 2D U(1) plaquette and
topological susceptibility), with and without local moves; the power of these tests is that of the raw samplers with
the same scores (tests/samplers/test_diffusion.py and test_exact_links.py), and a deliberately wrong weight misses."""

import attrs
import pytest
import torch

from lgdiff import HMC, U1, Field, GlobalLocal, PathIMH, Phi4Action, WilsonAction
from lgdiff._samplers.maala import sample_chain
from lgdiff._samplers.hmc import GaugeHMC
from lgdiff._sde.ve import VESDE

from .test_diffusion import KAPPA, POOR, SMALL, gaussian_score, z_scores
from .test_exact_links import GRID, PROCESS, U1_BETA, U1_EXACT, assert_exact, damped_wrong_force, like

FREE = Phi4Action(kappa=KAPPA, lam=0.0)


def free_field_kernel(local_steps: int, steps: int = 20) -> GlobalLocal:
    sde = VESDE()
    global_ = PathIMH(score=gaussian_score(sde, KAPPA, inflate=POOR, lat=SMALL), process=sde, action=FREE,
                      steps=steps, t_min=0.0)
    return GlobalLocal(global_=global_, local=HMC(action=FREE, step_size=0.3, n_steps=3), local_steps=local_steps)


@pytest.mark.parametrize("local_steps", [0, 1])
def test_global_local_is_exact_with_a_poor_score_on_the_free_field(local_steps, generator):
    # local_steps = 0: the global moves alone, the current weight redrawn with a fresh path at every step
    res = sample_chain(free_field_kernel(local_steps), Field.zeros(SMALL, batch=256), n=60, generator=generator)
    z = z_scores(res.samples[20:], KAPPA, SMALL)
    assert float(z.abs().max()) < 4, z
    assert 0.02 < float(res.acceptance.mean()) < 1


def test_global_local_with_a_wrong_path_weight_misses(generator, monkeypatch):
    # the power of the test above: re-weigh the current state without its path's log-ratio (-S - log prior only)
    # and the same chains land many sigma off
    def wrong(self, state, *, generator):
        with torch.no_grad():
            return -self.action(state).to(torch.float64)

    monkeypatch.setattr(PathIMH, "reweigh", wrong)
    res = sample_chain(free_field_kernel(0), Field.zeros(SMALL, batch=256), n=60, generator=generator)
    assert float(z_scores(res.samples[20:], KAPPA, SMALL).abs().max()) > 8


@pytest.mark.parametrize("local_steps", [0, 2])
def test_global_local_is_exact_with_a_poor_score_on_u1_2d(local_steps, generator):
    action = WilsonAction(beta=U1_BETA, group=U1())
    global_ = PathIMH(score=damped_wrong_force(U1(), 1.0, 4.0), process=PROCESS, action=action, steps=20, **GRID)
    kernel = GlobalLocal(global_=global_, local=GaugeHMC(action=action, step_size=0.2, n_steps=4),
                         local_steps=local_steps)
    res = sample_chain(kernel, like(U1(), 64), n=100, generator=generator)
    assert_exact(res.samples[30:], U1(), *U1_EXACT)
    assert 0.05 < float(res.acceptance.mean()) < 0.9


def test_global_local_contract():
    kernel = free_field_kernel(2)
    assert kernel.name == "dm-path+hmc"
    assert kernel.settings()["local_steps"] == 2 and kernel.settings()["global.steps"] == 20
    with pytest.raises(ValueError, match="local_steps must be an integer >= 0; got -1"):
        attrs.evolve(kernel, local_steps=-1)
    with pytest.raises(ValueError, match="must carry nothing beyond the configuration"):
        GlobalLocal(global_=kernel.global_, local=kernel.global_)
    with pytest.raises(TypeError, match="global_ must be a PathIMH"):
        GlobalLocal(global_=kernel.local, local=kernel.local)

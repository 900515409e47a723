"""`U1Direct` / `u1_2d_direct`: exact independent draws of 2D U(1) on the torus, against the exact finite-volume
plaquette, Wilson loops and topological susceptibility (character expansion, lgdiff._exact.u1_2d), on small and
large tori and at large beta, where every Markov chain freezes; the links reproduce the drawn plaquettes; the power
of the statistical test: without its rejection step the sampler misses the small torus by many sigma."""

import math

import pytest
import torch

from lgdiff import SU, U1, Lattice, LinkField, U1Direct, WilsonAction, u1_2d_direct
from lgdiff._exact import u1_2d_plaquette, u1_2d_topological_susceptibility, u1_2d_wilson_loop
from lgdiff._geometry.paths import rectangle
from lgdiff._observables.gauge import mean_plaquette, plaquette, topological_charge_u1_2d
from lgdiff._samplers import direct
from lgdiff._samplers.direct import links_from_plaquettes, u1_2d_plaquette_angles


def within(values: torch.Tensor, exact: float, sigmas: float = 4.0) -> bool:
    mean, err = float(values.mean()), float(values.std() / math.sqrt(values.numel()))  # independent draws
    assert err > 0
    return abs(mean - exact) < sigmas * err


@pytest.mark.parametrize(("beta", "L", "n"), [(1.0, 4, 8000), (3.0, 6, 8000), (7.0, 16, 2000), (11.0, 8, 4000)])
def test_direct_draws_match_the_exact_u1_2d_values(beta, L, n, generator):
    U = u1_2d_direct(beta, Lattice(shape=(L, L)), batch=n, generator=generator)
    Q = topological_charge_u1_2d(U)
    assert float((Q - Q.round()).abs().max()) < 1e-9
    assert within(mean_plaquette(U), u1_2d_plaquette(beta, (L, L)))
    assert within(Q ** 2 / L ** 2, u1_2d_topological_susceptibility(beta, (L, L)))
    w22 = rectangle(U.data, 0, 1, 2, 2)[..., 0, 0].real.reshape(n, -1).mean(1)
    assert within(w22, u1_2d_wilson_loop(beta, (L, L), 2, 2))


def test_without_the_rejection_step_the_small_torus_is_missed(generator, monkeypatch):
    # the power of the test above: accept every candidate and the constraint plaquette is uniform, not von Mises
    propose = direct._propose_plaquettes

    def accept_all(beta, volume, g):
        theta, ok = propose(beta, volume, g)
        return theta, torch.ones_like(ok)

    monkeypatch.setattr(direct, "_propose_plaquettes", accept_all)
    U = u1_2d_direct(3.0, Lattice(shape=(4, 4)), batch=8000, generator=generator)
    assert not within(mean_plaquette(U), u1_2d_plaquette(3.0, (4, 4)), sigmas=8.0)


def test_links_reproduce_the_drawn_plaquettes(generator):
    for shape in [(4, 6), (5, 3), (1, 4)]:
        theta = u1_2d_plaquette_angles(2.0, shape, batch=5, generator=generator)
        assert torch.allclose(torch.remainder(theta.sum((1, 2)) + math.pi, 2 * math.pi) - math.pi,
                              torch.zeros(5, dtype=theta.dtype), atol=1e-9)
        A = links_from_plaquettes(theta, generator=generator)
        U = LinkField(torch.polar(torch.ones_like(A), A)[..., None, None], U1(), Lattice(shape=shape))
        got = torch.angle(plaquette(U.data, 0, 1)[..., 0, 0])
        diff = torch.remainder(got - theta + math.pi, 2 * math.pi) - math.pi
        assert float(diff.abs().max()) < 1e-9


def test_direct_kernel_contract_and_reproducibility():
    kernel = U1Direct(WilsonAction(beta=7.0, group=U1()))
    assert kernel.name == "direct" and kernel.settings() == {"beta": 7.0, "group": "U(1)"}
    U = LinkField.identity(U1(), Lattice(shape=(4, 4)), batch=3, dtype=torch.complex64)
    a, acc = kernel.step(U, generator=torch.Generator().manual_seed(1))
    b, _ = kernel.step(U, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.data, b.data) and a.data.dtype == torch.complex64 and acc.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="U1Direct samples 2D U\\(1\\)"):
        U1Direct(WilsonAction(beta=2.0, group=SU(2)))
    with pytest.raises(ValueError, match="U1Direct samples 2D U\\(1\\)"):
        kernel.step(LinkField.identity(U1(), Lattice(shape=(2, 2, 2)), batch=1), generator=torch.Generator())
    with pytest.raises(ValueError, match="needs a finite beta >= 0"):
        U1Direct(WilsonAction(beta=-1.0, group=U1())).step(U, generator=torch.Generator())

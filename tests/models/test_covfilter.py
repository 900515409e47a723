"""The gauge-covariant Gaussian filter of the force (`lgdiff._models.covfilter`): J against finite differences of the
plaquettes, J^T as its adjoint, the free-field limit against the FFT operator, the CG solve, gauge covariance."""

import pytest
import torch

from lgdiff import SU, U1, Lattice, LinkField, WilsonAction
from lgdiff._fields.links import AlgebraField, GaugeTransform
from lgdiff._models.covfilter import covariant_filter, plaquette_jacobian, plaquette_jacobian_t
from lgdiff._sde.precondition import FreeU1Preconditioner
from lgdiff.testing import assert_gauge_covariant

CASES = [(U1(), (4, 5)), (SU(2), (3, 4, 3)), (SU(3), (3, 2, 3, 4))]


def _dot(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x.conj() * y).real.sum())


def _plaquettes(u: torch.Tensor) -> torch.Tensor:
    """``U_mu(x) U_nu(x + mu) U_mu(x + nu)^+ U_nu(x)^+`` for ``mu < nu``, written out independently."""
    dim, out = u.shape[1], []
    for mu in range(dim):
        for nu in range(mu + 1, dim):
            um, un = u[:, mu], u[:, nu]
            out.append(um @ torch.roll(un, -1, 1 + mu) @ torch.roll(um, -1, 1 + nu).mH @ un.mH)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize(("group", "shape"), CASES, ids=str)
def test_jacobian_is_the_derivative_of_the_plaquettes(group, shape, generator):
    U = LinkField.random(group, Lattice(shape=shape), batch=2, generator=generator)
    X = AlgebraField.randn(group, U.lattice, batch=2, generator=generator).data
    eps = 1e-6
    moved = _plaquettes(group.exp(eps * X) @ U.data) @ _plaquettes(U.data).mH  # exp(eps J X) + O(eps^2)
    fd = group.project_algebra(moved - torch.eye(group.n, dtype=moved.dtype)) / eps
    jx = plaquette_jacobian(U.data, X)
    assert float((fd - jx).abs().max()) < 1e-5 * float(jx.abs().max())


@pytest.mark.parametrize(("group", "shape"), CASES, ids=str)
def test_transpose_is_the_adjoint(group, shape, generator):
    U = LinkField.random(group, Lattice(shape=shape), batch=2, generator=generator)
    X = AlgebraField.randn(group, U.lattice, batch=2, generator=generator).data
    Y = plaquette_jacobian(U.data, AlgebraField.randn(group, U.lattice, batch=2, generator=generator).data)
    lhs, rhs = _dot(plaquette_jacobian(U.data, X), Y), _dot(X, plaquette_jacobian_t(U.data, Y))
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


@pytest.mark.parametrize(("group", "shape"), CASES, ids=str)
def test_free_field_limit_is_the_fft_filter(group, shape, generator):
    """At U = 1, ``(1 + k H)^-1`` is ``(1 + k p_hat^2)^-1`` on the transverse modes, identity on the gauge modes."""
    lattice = Lattice(shape=shape)
    identity = LinkField.identity(group, lattice, batch=2)
    f = AlgebraField.randn(group, lattice, batch=2, generator=generator)
    k = torch.tensor([0.3, 2.0], dtype=torch.float64)
    z = group.to_coords(covariant_filter(identity.data, f.data, k, steps=200))
    fft = FreeU1Preconditioner(beta=1.0)
    phat2 = lattice.momentum_squared().to(torch.float64)
    for b in range(2):
        for a in range(group.n_generators):
            ref = fft.apply(f.coords()[b:b + 1, ..., a:a + 1], 1 / (1 + k[b] * phat2), 1.0)
            assert torch.allclose(z[b:b + 1, ..., a:a + 1], ref, atol=1e-10)


@pytest.mark.parametrize(("group", "shape"), CASES, ids=str)
def test_solves_the_system_and_is_covariant(group, shape, generator):
    U = LinkField.random(group, Lattice(shape=shape), batch=2, generator=generator)
    f = -WilsonAction(beta=2.0, group=group).force(U).data
    k = torch.tensor([0.0, 0.7], dtype=torch.float64)
    z = covariant_filter(U.data, f, k, steps=300)
    hz = plaquette_jacobian_t(U.data, plaquette_jacobian(U.data, z))
    residual = z + k.reshape(-1, *([1] * (z.ndim - 1))) * hz - f
    assert float(residual.abs().max()) < 1e-8 * float(f.abs().max())
    assert torch.equal(covariant_filter(U.data, f, torch.zeros(2, dtype=torch.float64), steps=1), f)
    assert float((z[1] - f[1]).abs().max()) > 0.1 * float(f[1].abs().max())  # the filter does something
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator)
    assert_gauge_covariant(lambda V: covariant_filter(V.data, -WilsonAction(beta=2.0, group=group).force(V).data, k,
                                                      steps=4), U, omega)

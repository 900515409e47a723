import math

import pytest
import torch

from lgdiff import _native
from lgdiff import SU, U1, Field, GaugeTransform, Lattice, LinkField, Phi4Action, ToyAction, WilsonAction
from lgdiff._geometry.paths import plaquette, staples
from lgdiff._groups.base import trace
from lgdiff.testing import (
    assert_force_is_gradient,
    assert_gauge_covariant,
    assert_gauge_invariant,
    assert_translation_equivariant,
)

GROUPS = [U1(), SU(2), SU(3)]
DTYPES = [torch.complex64, torch.complex128]
SHAPES = [(4, 4), (2, 3, 2, 2)]


def links(group, shape, dtype, generator, batch=2):
    return LinkField.random(group, Lattice(shape=shape), batch=batch, generator=generator, dtype=dtype)


# ---- scalar -------------------------------------------------------------------------------------

PHI4_SHAPES = [(6,), (5,), (4, 4), (3, 4, 2), (2, 2, 2, 3)]  # unequal extents catch swapped axes


@pytest.mark.parametrize("shape", PHI4_SHAPES, ids=str)
def test_phi4_gradient_matches_autodiff(shape, generator, kernel_path):
    # the analytic gradient (fused native kernel or eager code) against autodiff of the eager action
    phi = Field.randn(Lattice(shape=shape), batch=3, generator=generator)
    assert _native.available_scalar(phi.data) == (kernel_path == "native")
    action = Phi4Action(kappa=0.21, lam=0.022)
    assert_force_is_gradient(action, phi, generator=generator)
    torch.testing.assert_close(action.negative_gradient(phi), -action.gradient(phi).data, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", PHI4_SHAPES, ids=str)
def test_phi4_native_kernels_match_the_eager_code(shape, dtype, generator, monkeypatch):
    monkeypatch.setattr(_native, "ENABLED", True)
    if _native.library() is None:
        pytest.skip(f"native kernels: {_native.status()}")
    phi = Field.randn(Lattice(shape=shape), batch=3, generator=generator, dtype=dtype)
    action = Phi4Action(kappa=0.27, lam=0.5)
    native = (action.density(phi), action.gradient(phi).data, action.negative_gradient(phi))
    monkeypatch.setattr(_native, "ENABLED", False)
    eager = (action.density(phi), action.gradient(phi).data, action.negative_gradient(phi))
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    for a, b in zip(native, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_phi4_against_hand_count():
    # constant field phi = c on L^D: S = V [-2 kappa D c^2 + (1 - 2 lam) c^2 + lam c^4]
    lat, c, kappa, lam = Lattice(shape=(3, 4)), 0.7, 0.3, 0.5
    S = Phi4Action(kappa=kappa, lam=lam)(Field(torch.full((1, 3, 4), c), lat))
    torch.testing.assert_close(S, torch.tensor([12 * (-2 * kappa * 2 * c * c + (1 - 2 * lam) * c * c + lam * c**4)]))


def test_phi4_translation_equivariant_density(generator):
    phi = Field.randn(Lattice(shape=(4, 6)), batch=2, generator=generator)
    action = Phi4Action(kappa=0.27, lam=0.022)
    assert_translation_equivariant(action.density, phi, (1, 3))
    assert_translation_equivariant(lambda f: action.gradient(f).data, phi, (3, 2))


def test_toy_action_gradient(generator):
    phi = Field.randn(Lattice(shape=()), batch=50, generator=generator)
    assert_force_is_gradient(ToyAction(m2=-1.0, g=0.4), phi, generator=generator)


def test_phi4_refuses_zero_dimensions():
    with pytest.raises(ValueError, match="ToyAction"):
        Phi4Action(kappa=0.1, lam=0.1)(Field(torch.zeros(1), Lattice(shape=())))
    with pytest.raises(ValueError, match="finite number"):
        Phi4Action(kappa=float("nan"), lam=0.1)


# ---- gauge --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_wilson_force_is_lie_derivative(group, shape, dtype, generator):
    U = links(group, shape, dtype, generator)
    assert_force_is_gradient(WilsonAction(beta=2.3, group=group), U, generator=generator)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_wilson_action_is_gauge_invariant(group, shape, dtype, generator):
    U = links(group, shape, dtype, generator)
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator, dtype=dtype)
    action = WilsonAction(beta=2.3, group=group)
    assert_gauge_invariant(action, U, omega, rtol=1e-5 if dtype == torch.complex64 else 1e-12)
    assert_gauge_invariant(action.density, U, omega, atol=1e-4 if dtype == torch.complex64 else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_staples_and_force_are_gauge_covariant(group, shape, dtype, generator):
    U = links(group, shape, dtype, generator)
    omega = GaugeTransform.random(group, U.lattice, batch=2, generator=generator, dtype=dtype)
    closed = lambda V: torch.stack([V.data[:, mu] @ staples(V.data, mu) for mu in V.lattice.directions], 1)  # noqa: E731
    assert_gauge_covariant(closed, U, omega)
    assert_gauge_covariant(WilsonAction(beta=1.0, group=group).force, U, omega)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_wilson_density_translation_equivariant(group, generator):
    U = links(group, (4, 6), torch.complex128, generator)
    action = WilsonAction(beta=1.0, group=group)
    assert_translation_equivariant(action.density, U, (1, 2))
    assert_translation_equivariant(lambda V: action.force(V).data, U, (3, 1))


def test_u1_wilson_is_one_minus_cos(generator):
    lat = Lattice(shape=(3, 3))
    theta = torch.rand(2, 2, 3, 3, generator=generator) * 2 * math.pi
    U = LinkField(torch.polar(torch.ones_like(theta), theta)[..., None, None], U1(), lat)
    r = lambda t, mu: torch.roll(t, -1, dims=1 + mu)  # noqa: E731
    th_p = theta[:, 0] + r(theta[:, 1], 0) - r(theta[:, 0], 1) - theta[:, 1]
    torch.testing.assert_close(WilsonAction(beta=1.7, group=U1())(U), 1.7 * (1 - torch.cos(th_p)).sum((1, 2)))


def test_cold_start_has_zero_action_and_force():
    U = LinkField.identity(SU(3), Lattice(shape=(2, 2, 2, 2)), batch=1)
    action = WilsonAction(beta=6.0, group=SU(3))
    assert float(action(U)[0]) == 0.0
    assert float(action.force(U).data.abs().max()) == 0.0


def test_plaquette_count_and_staple_sum_relation(generator):
    # sum over links of Re tr(U A) counts every plaquette 4 times: = 4 sum_P Re tr U_P (mod cyclicity)
    U = links(SU(3), (2, 3, 2, 2), torch.complex128, generator)
    lhs = sum(trace(U.data[:, mu] @ staples(U.data, mu)).real.sum() for mu in range(4))
    rhs = 4 * sum(trace(plaquette(U.data, mu, nu)).real.sum() for mu, nu in U.lattice.planes)
    torch.testing.assert_close(lhs, rhs)


def test_wilson_wrong_group_and_dimension_errors(generator):
    U = links(SU(3), (4, 4), torch.complex128, generator)
    with pytest.raises(ValueError, match=r"expects links of SU\(2\), got SU\(3\)"):
        WilsonAction(beta=2.0, group=SU(2))(U)
    U1d = LinkField.identity(U1(), Lattice(shape=(5,)), batch=1)
    with pytest.raises(ValueError, match=r"needs D >= 2.*D = 1"):
        WilsonAction(beta=2.0, group=U1())(U1d)


def test_phi4_native_kernels_split_over_threads_bit_for_bit(generator, monkeypatch):
    monkeypatch.setattr(_native, "ENABLED", True)
    if _native.library() is None:
        pytest.skip(f"native kernels: {_native.status()}")
    phi = Field.randn(Lattice(shape=(5, 3, 4)), batch=3, generator=generator, dtype=torch.float64)  # 45 rows
    action = Phi4Action(kappa=0.27, lam=0.022)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (action.density(phi), action.gradient(phi).data)
        torch.set_num_threads(4)
        monkeypatch.setattr(_native, "MIN_SITES_PER_THREAD", 1)
        four = (action.density(phi), action.gradient(phi).data)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], four[0]) and torch.equal(one[1], four[1])

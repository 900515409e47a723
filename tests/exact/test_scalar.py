"""Toy-model moments and the free lattice propagator against independent computations."""

import math

import numpy as np
import pytest
import torch

scipy = pytest.importorskip("scipy")
from scipy import special  # noqa: E402

from lgdiff import Field, Lattice, Phi4Action  # noqa: E402
from lgdiff._exact import free_field_propagator, toy_moments  # noqa: E402


# ---- toy model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("m2", [0.5, 1.0, 3.0])
def test_toy_gaussian_limit_and_first_order(m2):
    # g -> 0: <phi^2> = 1/m2 - g/(2 m2^3) + O(g^2), <phi^4> = 3/m2^2 - 4 g/m2^4 + O(g^2)
    # (first-order perturbation theory: -(g/24) <phi^k; phi^4>_0 with Gaussian moments 1, 3, 15, 105).
    assert toy_moments(m2, 0.0) == pytest.approx((1 / m2, 3 / m2**2), rel=1e-12)
    g = 1e-4
    phi2, phi4 = toy_moments(m2, g)
    assert abs(phi2 - (1 / m2 - g / (2 * m2**3))) < 20 * g * g / m2**5
    assert abs(phi4 - (3 / m2**2 - 4 * g / m2**4)) < 200 * g * g / m2**6


def test_toy_pure_quartic_by_hand():
    # m2 = 0, g = 24: S = phi^4, <phi^2> = Gamma(3/4) / Gamma(1/4), <phi^4> = Gamma(5/4) / Gamma(1/4) = 1/4.
    phi2, phi4 = toy_moments(0.0, 24.0)
    assert phi2 == pytest.approx(special.gamma(0.75) / special.gamma(0.25), rel=1e-12)
    assert phi4 == pytest.approx(0.25, rel=1e-12)


@pytest.mark.parametrize(("m2", "g"), [(1.0, 0.4), (-1.0, 0.4), (-5.0, 0.01), (0.3, 2.0)])
def test_toy_schwinger_dyson(m2, g):
    # Integration by parts: <phi S'(phi)> = 1, i.e. m2 <phi^2> + (g/6) <phi^4> = 1.
    phi2, phi4 = toy_moments(m2, g)
    scale = abs(m2 * phi2) + g / 6 * phi4  # the two terms cancel to 1 in a deep double well
    assert abs(m2 * phi2 + g / 6 * phi4 - 1.0) < 1e-12 * scale


def test_toy_single_well_bessel_closed_form():
    # Z(a, b) = int exp(-a phi^2 - b phi^4) = (1/2) sqrt(a/b) e^{a^2/8b} K_{1/4}(a^2/8b), a = m2/2, b = g/24;
    # <phi^2> = -d log Z / da, by a central difference of the closed form.
    m2, g = 1.0, 0.4

    def log_z(a):
        b = g / 24
        return math.log(0.5 * math.sqrt(a / b) * special.kve(0.25, a * a / (8 * b)))

    h = 1e-4
    phi2 = -(log_z(m2 / 2 + h) - log_z(m2 / 2 - h)) / (2 * h)
    assert toy_moments(m2, g)[0] == pytest.approx(phi2, rel=1e-7)


def test_toy_errors():
    with pytest.raises(ValueError, match="must be normalisable"):
        toy_moments(-1.0, 0.0)
    with pytest.raises(ValueError, match="must be normalisable"):
        toy_moments(1.0, -0.1)


# ---- free propagator ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("shape", "kappa"), [((5,), 0.4), ((4, 3), 0.2), ((3, 4), -0.1), ((2, 3, 2), 0.1), ((2, 2, 1, 3), 0.09)]
)
def test_free_propagator_matches_inverted_quadratic_form(shape, kappa):
    # K = Hessian of lgdiff's Phi4Action at lambda = 0 (S = phi^T K phi / 2, built by autodiff from the
    # action itself), C = K^{-1} = <phi phi^T>, G(k) = (F C F^dagger)_{kk} / V with F the DFT matrix.
    lattice = Lattice(shape=shape)
    V = lattice.volume
    action = Phi4Action(kappa=kappa, lam=0.0)

    def S(flat):
        return action(Field(flat.reshape(1, *shape), lattice))[0]

    K = torch.autograd.functional.hessian(S, torch.zeros(V, dtype=torch.float64))
    C = torch.linalg.inv(K).to(torch.complex128)
    F = torch.fft.fftn(torch.eye(V, dtype=torch.complex128).reshape(V, *shape), dim=tuple(range(1, 1 + len(shape))))
    F = F.reshape(V, V).T  # F[k, x] = e^{-i k x}
    G = torch.diagonal(F @ C @ F.conj().T).real.reshape(shape) / V
    torch.testing.assert_close(free_field_propagator(shape, kappa), G, rtol=1e-12, atol=1e-12)


def test_free_propagator_zero_dimensions_and_dtype():
    G = free_field_propagator((4, 4), 0.2)
    assert G.dtype == torch.float64 and G.shape == (4, 4)
    assert free_field_propagator((), 0.3).item() == 0.5  # S = phi^2


@pytest.mark.parametrize(("shape", "kappa"), [((4, 4), 0.25), ((4, 4), 0.3), ((6,), -0.5)])
def test_free_propagator_refuses_unstable_kappa(shape, kappa):
    with pytest.raises(ValueError, match=r"unstable .* needs kappa < 1/\(2D\)"):
        free_field_propagator(shape, kappa)

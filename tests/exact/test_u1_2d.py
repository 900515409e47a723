"""2D U(1) exact values against independent computations: brute-force quadrature over all link
angles of tiny tori, closed forms, and the infinite-volume limits."""

import math

import numpy as np
import pytest

scipy = pytest.importorskip("scipy")
from scipy import integrate, special  # noqa: E402

from lgdiff._exact import u1_2d_plaquette, u1_2d_topological_susceptibility, u1_2d_wilson_loop  # noqa: E402


# ---- an independent brute-force integration over the link angles of a tiny torus -----------------

def link_angle_grid(shape, M):
    """Link angles theta[mu][x0][x1] on an M-point periodic grid (trapezoidal rule, spectrally exact
    for these smooth periodic integrands), after fixing the maximal tree theta_1(0, x1) = 0 for
    x1 < L1 - 1 and theta_0(x0, x1) = 0 for x0 < L0 - 1 (exact: integrand and Haar measure are
    gauge invariant). Each free link is its own broadcast axis."""
    L0, L1 = shape
    free = [(1, 0, L1 - 1)] + [(1, x0, x1) for x0 in range(1, L0) for x1 in range(L1)]
    free += [(0, L0 - 1, x1) for x1 in range(L1)]
    assert len(free) == L0 * L1 + 1
    grid = 2 * np.pi * np.arange(M) / M
    theta = {(mu, x0, x1): 0.0 for mu in (0, 1) for x0 in range(L0) for x1 in range(L1)}
    for axis, key in enumerate(free):
        theta[key] = grid.reshape([M if a == axis else 1 for a in range(len(free))])
    return theta


def loop_angle(theta, shape, x, steps):
    """Sum of oriented link angles along a closed path from site x; steps are (mu, +1 or -1)."""
    L = shape
    x = list(x)
    angle = 0.0
    for mu, sign in steps:
        if sign > 0:
            angle = angle + theta[(mu, x[0], x[1])]
            x[mu] = (x[mu] + 1) % L[mu]
        else:
            x[mu] = (x[mu] - 1) % L[mu]
            angle = angle - theta[(mu, x[0], x[1])]
    return angle


def rectangle_steps(r, t):
    return [(0, 1)] * r + [(1, 1)] * t + [(0, -1)] * r + [(1, -1)] * t


def brute_force(shape, beta, M, observable_angles):
    """<cos(angle)> for each observable angle (a function of theta), by direct summation."""
    theta = link_angle_grid(shape, M)
    sites = [(x0, x1) for x0 in range(shape[0]) for x1 in range(shape[1])]
    action = sum(1 - np.cos(loop_angle(theta, shape, x, rectangle_steps(1, 1))) for x in sites)
    weight = np.exp(-beta * action)
    return [float(np.sum(weight * np.cos(f(theta))) / np.sum(weight)) for f in observable_angles]


@pytest.mark.parametrize("beta", [0.5, 1.5])
def test_plaquette_and_wilson_loops_match_brute_force_on_2x2(beta):
    shape = (2, 2)
    loops = [(1, 1), (2, 1), (1, 2), (2, 2)]
    observables = [lambda th, rt=rt: loop_angle(th, shape, (1, 0), rectangle_steps(*rt)) for rt in loops]
    brute = brute_force(shape, beta, 20, observables)
    exact = [u1_2d_wilson_loop(beta, shape, r, t) for r, t in loops]
    np.testing.assert_allclose(exact, brute, rtol=1e-11, atol=1e-13)
    assert u1_2d_plaquette(beta, shape) == pytest.approx(brute[0], rel=1e-11)


def test_wilson_loops_match_brute_force_on_3x1():
    # L1 = 1: the loops wrap in direction 1; the 2x1 loop is a product of two plaquettes.
    shape, beta = (3, 1), 0.8
    loops = [(1, 1), (2, 1), (3, 1)]
    observables = [lambda th, rt=rt: loop_angle(th, shape, (2, 0), rectangle_steps(*rt)) for rt in loops]
    brute = brute_force(shape, beta, 24, observables)
    exact = [u1_2d_wilson_loop(beta, shape, r, t) for r, t in loops]
    np.testing.assert_allclose(exact, brute, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("beta", [0.3, 1.0, 4.0])
def test_plaquette_on_1x2_torus_closed_form(beta):
    # V = 2: theta_P2 = -theta_P1, so Z = I_0(2 beta) (Neumann: sum_n I_n^2 = I_0(2 beta)).
    assert u1_2d_plaquette(beta, (1, 2)) == pytest.approx(special.iv(1, 2 * beta) / special.iv(0, 2 * beta), rel=1e-13)


def test_trivial_tori():
    # On a 1x1 torus U_P = U_0 U_1 U_0^* U_1^* = 1; the product of all plaquettes is 1 on any torus.
    assert u1_2d_plaquette(1.7, (1, 1)) == pytest.approx(1.0, rel=1e-14)
    assert u1_2d_wilson_loop(1.7, (3, 2), 3, 2) == pytest.approx(1.0, rel=1e-14)
    assert u1_2d_topological_susceptibility(1.7, (1, 1)) == 0.0
    assert u1_2d_topological_susceptibility(1.7, (1, 2)) == 0.0


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, 11.0])
def test_infinite_volume_limits(beta):
    ratio = special.ive(1, beta) / special.ive(0, beta)
    assert u1_2d_plaquette(beta, (256, 256)) == pytest.approx(ratio, rel=1e-13, abs=1e-15)
    assert u1_2d_wilson_loop(beta, (256, 256), 3, 2) == pytest.approx(ratio**6, rel=1e-12, abs=1e-15)

    def weight(phi, k):
        return phi**k * math.exp(beta * (math.cos(phi) - 1))

    chi_inf = integrate.quad(weight, -math.pi, math.pi, args=(2,), epsrel=1e-13)[0] / (
        4 * math.pi**2 * integrate.quad(weight, -math.pi, math.pi, args=(0,), epsrel=1e-13)[0]
    )
    assert u1_2d_topological_susceptibility(beta, (256, 256)) == pytest.approx(chi_inf, rel=1e-10)


def test_finite_volume_approaches_infinite_volume():
    beta = 3.0
    gaps = [abs(u1_2d_plaquette(beta, (L, L)) - u1_2d_plaquette(beta, (64, 64))) for L in (2, 3, 4, 6)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[0] > 1e-3
    chis = [u1_2d_topological_susceptibility(beta, (L, L)) for L in (2, 3, 4, 6, 64)]
    assert all(a < b for a, b in zip(chis, chis[1:]))  # Q is suppressed on small tori


def _reduced(a):
    return a - 2 * math.pi * math.floor((a + math.pi) / (2 * math.pi))


@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0, 3.0])
def test_topological_susceptibility_matches_quadrature_on_1x3(beta):
    # L0 = 1: U_P(y) = U_0(y) U_0(y+1)^*, the direction-1 links cancel. Fix a_0 = 0; then
    # phi_1 = -a_1, phi_2 = red(a_1 - a_2), phi_3 = a_2 and Q = (phi_1 + phi_2 + phi_3) / 2pi.
    def weight(a2, a1, k):
        phis = (-a1, _reduced(a1 - a2), a2)
        q = sum(phis) / (2 * math.pi)
        return q**k * math.exp(beta * sum(math.cos(p) - 1 for p in phis))

    def inner_opts(a1, k):
        return {"points": [p for p in (a1 - math.pi, a1 + math.pi) if -math.pi < p < math.pi], "epsabs": 1e-14, "epsrel": 1e-12}

    box = [[-math.pi, math.pi]] * 2
    z = integrate.nquad(weight, box, args=(0,), opts=[inner_opts, {}])[0]
    q2 = integrate.nquad(weight, box, args=(2,), opts=[inner_opts, {}])[0]
    assert u1_2d_topological_susceptibility(beta, (1, 3)) == pytest.approx(q2 / z / 3, rel=1e-9, abs=1e-15)


@pytest.mark.slow
def test_topological_susceptibility_matches_quadrature_on_1x4():
    beta = 1.0

    def weight(a3, a2, a1, k):
        phis = (-a1, _reduced(a1 - a2), _reduced(a2 - a3), a3)
        q = sum(phis) / (2 * math.pi)
        return q**k * math.exp(beta * sum(math.cos(p) - 1 for p in phis))

    def opts_for(a):
        return {"points": [p for p in (a - math.pi, a + math.pi) if -math.pi < p < math.pi], "epsabs": 1e-12, "epsrel": 1e-10}

    opts = [lambda a2, a1, k: opts_for(a2), lambda a1, k: opts_for(a1), {}]
    box = [[-math.pi, math.pi]] * 3
    z = integrate.nquad(weight, box, args=(0,), opts=opts)[0]
    q2 = integrate.nquad(weight, box, args=(2,), opts=opts)[0]
    assert u1_2d_topological_susceptibility(beta, (1, 4)) == pytest.approx(q2 / z / 4, rel=1e-7)


def test_beta_zero_charge_is_uniform():
    # beta = 0: phi_P uniform, chi_t = int phi^2 / (4 pi^2 2 pi) = 1/12 for any V >= 3.
    assert u1_2d_topological_susceptibility(0.0, (3, 5)) == pytest.approx(1 / 12, rel=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        u1_2d_plaquette(-1.0, (4, 4))
    with pytest.raises(ValueError, match="sizes must be positive"):
        u1_2d_topological_susceptibility(1.0, (0, 4))
    with pytest.raises(ValueError, match=r"loop must fit on the torus, 1 <= r <= L0"):
        u1_2d_wilson_loop(1.0, (4, 4), 5, 1)

"""2D SU(N) infinite-volume plaquette against closed forms and Weyl-formula quadrature."""

import itertools

import numpy as np
import pytest

scipy = pytest.importorskip("scipy")
from scipy import special  # noqa: E402

from lgdiff._exact import su_n_2d_plaquette  # noqa: E402


def weyl_plaquette(N, beta, M):
    """<Re tr U / N> over the SU(N) Haar measure in eigen-angle form (Weyl integration formula):
    density ~ prod_{i<j} |e^{i theta_i} - e^{i theta_j}|^2, theta_N = -(theta_1 + ... + theta_{N-1}),
    on an M-point periodic grid per angle (trapezoidal rule: spectrally exact for this entire integrand)."""
    angles = list(np.meshgrid(*[2 * np.pi * np.arange(M) / M] * (N - 1), indexing="ij", sparse=True))
    angles.append(-sum(angles))
    phases = [np.exp(1j * a) for a in angles]
    vandermonde = 1.0
    for i, j in itertools.combinations(range(N), 2):
        vandermonde = vandermonde * np.abs(phases[i] - phases[j]) ** 2
    re_tr = sum(np.cos(a) for a in angles)
    weight = vandermonde * np.exp(beta / N * (re_tr - N))
    return float(np.sum(weight * re_tr / N) / np.sum(weight))


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.0, 8.0, 30.0])
def test_su2_closed_form(beta):
    expected = 0.0 if beta == 0 else special.ive(2, beta) / special.ive(1, beta)
    assert su_n_2d_plaquette(2, beta) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("N", "M"), [(2, 64), (3, 64), (4, 40)])
@pytest.mark.parametrize("beta", [0.5, 3.0, 8.0])
def test_matches_weyl_integration(N, M, beta):
    assert su_n_2d_plaquette(N, beta) == pytest.approx(weyl_plaquette(N, beta, M), rel=1e-12)


def test_strong_coupling_expansion():
    # Small beta: <Re tr U / N> = beta / (2 N^2) + O(beta^2) for N >= 3 (the O(beta^2) term needs N = 2).
    for N in (3, 4):
        beta = 1e-4
        assert su_n_2d_plaquette(N, beta) == pytest.approx(beta / (2 * N * N), rel=1e-3)


def test_errors():
    with pytest.raises(ValueError, match=r"SU\(n\) with n >= 2"):
        su_n_2d_plaquette(1, 1.0)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        su_n_2d_plaquette(3, float("nan"))

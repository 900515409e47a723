"""The normalised autocorrelation function against AR(1) processes, whose rho(t) = a^t is exact."""

import numpy as np
import pytest

from lgdiff._stats import autocorrelation, gamma_method

from .helpers import ar1, numpy_rng


def bartlett_sigma(a: float, t: np.ndarray, N: int) -> np.ndarray:
    """Bartlett's large-N standard deviation of the estimated rho(t) of an AR(1) process,
    Var = (1/N) [(1 + a^2)(1 - a^{2t}) / (1 - a^2) - 2 t a^{2t}]."""
    return np.sqrt(((1 + a * a) * (1 - a ** (2 * t)) / (1 - a * a) - 2 * t * a ** (2 * t)) / N)


@pytest.mark.parametrize("a", [0.5, 0.9])
def test_rho_of_ar1_is_a_to_the_t(a, generator):
    n, chains = 4000, 16
    acf = autocorrelation(ar1(a, n, chains, numpy_rng(generator)))
    assert acf.rho.shape == (n // 2 + 1,) and acf.rho[0] == 1.0
    t = np.arange(1, 4 * round(0.5 * (1 + a) / (1 - a)) + 2)
    deviation = np.abs(acf.rho[t] - a**t)
    assert np.all(deviation < 4 * bartlett_sigma(a, t, n * chains)), (acf.rho[t], a**t)


def test_window_and_tau_int_are_the_gamma_methods(generator):
    x = ar1(0.8, 3000, 8, numpy_rng(generator))
    acf, est = autocorrelation(x), gamma_method(x)
    assert acf.window == est.window
    assert acf.tau_int == pytest.approx(est.tau_int, rel=1e-12)
    assert acf.tau_int == pytest.approx(0.5 + acf.rho[1 : acf.window + 1].sum(), rel=1e-12)
    assert not acf.rho.flags.writeable


def test_constant_series_is_refused():
    with pytest.raises(ValueError, match="the series is constant"):
        autocorrelation(np.full((10, 2), 3.0))

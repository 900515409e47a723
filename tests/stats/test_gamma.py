"""Wolff's Gamma method against AR(1) processes, whose tau_int and error of the mean are exact."""

import numpy as np
import pytest
import torch

from lgdiff._stats import gamma_method, gamma_method_derived, jackknife

from .helpers import ar1, ar1_error_of_mean, ar1_tau_int, numpy_rng


def assert_consistent_with_exact(est, a, n, chains):
    tau, error = ar1_tau_int(a), ar1_error_of_mean(a, n, chains)
    assert abs(est.tau_int - tau) < 4 * est.tau_int_error, (est.summary(), tau)
    # Wolff eq. (44): the error's own relative uncertainty is sqrt((W + 1/2) / N)
    assert abs(est.error - error) < 4 * error * np.sqrt((est.window + 0.5) / (n * chains)), (est.summary(), error)
    assert abs(est.mean) < 4 * est.error
    assert est.n_eff == pytest.approx(n * chains / (2 * est.tau_int), rel=1e-12)


@pytest.mark.parametrize("a", [0.0, 0.5, 0.8, 0.95])
def test_tau_int_and_error_of_ar1_replicas(a, generator):
    n, chains = 4000, 32
    est = gamma_method(ar1(a, n, chains, numpy_rng(generator)))
    assert_consistent_with_exact(est, a, n, chains)
    assert est.window >= 1 and est.tau_int_error > 0


@pytest.mark.parametrize("S", [1.0, 2.0])
def test_tau_int_with_other_window_parameters(S, generator):
    n, chains, a = 20000, 4, 0.8
    assert_consistent_with_exact(gamma_method(ar1(a, n, chains, numpy_rng(generator)), S=S), a, n, chains)


def test_error_covers_the_true_mean_at_the_gaussian_rate(generator):
    # 200 independent AR(1) series: |mean| < error should hold with probability 0.683 (and < 2 error: 0.954).
    a, n, M = 0.7, 2000, 200
    x = ar1(a, n, M, numpy_rng(generator))
    estimates = [gamma_method(x[:, i]) for i in range(M)]
    ratios = np.array([abs(e.mean) / e.error for e in estimates])
    for k, p in [(1, 0.6827), (2, 0.9545)]:
        fraction = np.mean(ratios < k)
        assert abs(fraction - p) < 4 * np.sqrt(p * (1 - p) / M), (k, fraction)
    taus = np.array([e.tau_int for e in estimates])
    tau_errors = np.array([e.tau_int_error for e in estimates])
    assert abs(taus.mean() - ar1_tau_int(a)) < 4 * taus.std(ddof=1) / np.sqrt(M)
    # the quoted (Madras-Sokal) tau_int error does not underestimate the actual spread of tau_int
    # (measured: it is ~10% conservative here; the sample std has relative error 1/sqrt(2M))
    assert tau_errors.mean() > taus.std(ddof=1) * (1 - 4 / np.sqrt(2 * M))


def test_uncorrelated_and_constant_data(generator):
    x = numpy_rng(generator).normal(size=(5000, 2))
    est = gamma_method(x)
    assert abs(est.tau_int - 0.5) < 4 * est.tau_int_error
    assert gamma_method(x, S=0.0).error == pytest.approx(np.sqrt(x.var() / x.size), rel=1e-3)
    assert gamma_method(x, S=0.0).tau_int == pytest.approx(0.5, rel=1e-3)
    const = gamma_method(np.full(100, 3.0))
    assert (const.mean, const.error, const.tau_int, const.window) == (3.0, 0.0, 0.5, 0)


def test_torch_input(generator):
    x = numpy_rng(generator).normal(size=1000)
    assert gamma_method(torch.tensor(x)).to_dict() == gamma_method(x).to_dict()


def test_derived_linear_function_equals_primary(generator):
    rng = numpy_rng(generator)
    x, y = ar1(0.8, 3000, 3, rng), ar1(0.5, 3000, 3, rng) + 0.3 * ar1(0.9, 3000, 3, rng)
    direct = gamma_method(x + 2 * y).to_dict()
    derived = gamma_method_derived(lambda a, b: a + 2 * b, x, y).to_dict()
    assert derived.pop("window") == direct.pop("window")
    assert derived == pytest.approx(direct, rel=1e-9, abs=1e-14)


def test_derived_ratio_error_matches_the_spread_of_independent_datasets(generator):
    # F = <x> / <y> with correlated x = 2 + AR(0.8), y = 1 + 0.2 AR(0.9); F -> 2 exactly.
    rng = numpy_rng(generator)
    M, n = 200, 2000
    x = 2 + ar1(0.8, n, M, rng)
    y = 1 + 0.2 * ar1(0.9, n, M, rng)
    estimates = [gamma_method_derived(lambda a, b: a / b, x[:, i], y[:, i]) for i in range(M)]
    values = np.array([e.mean for e in estimates])
    errors = np.array([e.error for e in estimates])
    spread = values.std(ddof=1)
    assert abs(errors.mean() - spread) < 4 * np.hypot(spread / np.sqrt(2 * (M - 1)), errors.std(ddof=1) / np.sqrt(M))
    assert abs(values.mean() - 2.0) < 4 * spread / np.sqrt(M)
    # and a binned jackknife of one dataset agrees with the Gamma method within its own uncertainty
    jk = jackknife(lambda a, b: a / b, x[:, 0], y[:, 0], n_bins=20)
    assert abs(jk.error - errors[0]) < 4 * jk.error / np.sqrt(2 * 19)


def test_errors():
    with pytest.raises(ValueError, match="window parameter, a finite number >= 0"):
        gamma_method(np.zeros(10), S=-1.0)
    with pytest.raises(TypeError, match="fn must return one float"):
        gamma_method_derived(lambda a: np.array([a, a]), np.arange(10.0))
    # 100 chains frozen at different values: Gamma(t) = Gamma(0) at every lag, no window exists.
    frozen = np.repeat(np.linspace(-1, 1, 100)[None, :], 50, axis=0)
    with pytest.raises(ValueError, match="automatic windowing found no window W <= n/2 = 25"):
        gamma_method(frozen)
    with pytest.raises(ValueError, match="variance of the mean is not positive"):
        gamma_method(np.array([1.0, -1.0] * 50))  # perfectly anticorrelated: C_F(W = 1) < 0
    with pytest.raises(ValueError, match="same shape"):
        gamma_method_derived(lambda a, b: a * b, np.zeros(10), np.zeros((10, 2)))


def test_long_autocorrelation_ar1():
    # tau_int = 99.5: a slow mode, as for |M| near criticality; 16 replicas of 5e4.
    a, n, chains = 0.99, 50000, 16
    est = gamma_method(ar1(a, n, chains, np.random.default_rng(20240613)))
    assert_consistent_with_exact(est, a, n, chains)

"""Binning, jackknife and bootstrap against exact answers and against the spread over many
independent replicate datasets."""

import numpy as np
import pytest
import torch

from lgdiff._stats import binned, bootstrap, jackknife, jackknife_binder, jackknife_susceptibility

from .helpers import ar1, ar1_error_of_mean, numpy_rng


def test_binned_keeps_chains_apart_and_drops_the_tail():
    x = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0], [3.0, 13.0], [4.0, 14.0]])
    np.testing.assert_array_equal(binned(x, 2), [[0.5, 10.5], [2.5, 12.5]])
    np.testing.assert_array_equal(binned(x[:, 0], 5), [2.0])
    np.testing.assert_array_equal(binned(torch.tensor(x[:, 1]), 1), x[:, 1])


def test_jackknife_of_the_mean_is_the_standard_error(generator):
    # Exact identity: the delete-one jackknife of a mean gives s / sqrt(K), s with ddof = 1.
    x = numpy_rng(generator).normal(size=(300, 3))
    est = jackknife(lambda m: m, x)
    assert est.mean == pytest.approx(x.mean(), rel=1e-14)
    assert est.error == pytest.approx(x.std(ddof=1) / np.sqrt(x.size), rel=1e-12)
    blocks = binned(x, 10).reshape(-1)  # 30 bins per chain, never across chains
    assert jackknife(lambda m: m, x, n_bins=30).error == pytest.approx(blocks.std(ddof=1) / np.sqrt(90), rel=1e-12)


def test_jackknife_ratio_error_matches_the_spread_of_independent_datasets(generator):
    # f = <x^2> / <x>^2 of x ~ N(2, 1): exactly (mu^2 + sigma^2) / mu^2 = 1.25. Compare the average
    # jackknife error with the actual spread of f over M independent datasets.
    rng = numpy_rng(generator)
    M, n = 400, 500
    data = rng.normal(2.0, 1.0, size=(M, n))
    estimates = [jackknife(lambda m1, m2: m2 / m1**2, x, x**2, n_bins=100) for x in data]
    values = np.array([e.mean for e in estimates])
    errors = np.array([e.error for e in estimates])
    spread = values.std(ddof=1)
    tolerance = 4 * np.hypot(spread / np.sqrt(2 * (M - 1)), errors.std(ddof=1) / np.sqrt(M))
    assert abs(errors.mean() - spread) < tolerance
    assert abs(values.mean() - 1.25) < 4 * spread / np.sqrt(M)


def test_jackknife_array_valued_quantity(generator):
    x = numpy_rng(generator).normal(1.0, 0.5, size=200)
    est = jackknife(lambda m1, m2: np.array([m1, m2 - m1 * m1]), x, x**2)
    var = jackknife(lambda m1, m2: m2 - m1 * m1, x, x**2)
    assert est.mean.shape == (2,) and est.error[0] == pytest.approx(x.std(ddof=1) / np.sqrt(200), rel=1e-12)
    assert (est.mean[1], est.error[1]) == pytest.approx((var.mean, var.error), rel=1e-12)


def test_binned_jackknife_of_correlated_chains_matches_exact_error(generator):
    # 8 AR(1) chains, tau_int = 9.5; bins of 500 >> tau: the jackknife error of the mean must match
    # the exact standard deviation within the error-of-error 1/sqrt(2(K-1)) of K = 128 blocks.
    a, n, chains = 0.9, 8000, 8
    x = ar1(a, n, chains, numpy_rng(generator))
    est = jackknife(lambda m: m, x, n_bins=16)
    exact = ar1_error_of_mean(a, n, chains)
    assert abs(est.error - exact) < 4 * exact / np.sqrt(2 * 127)
    assert abs(est.mean) < 4 * exact
    # Unbinned, the correlated data's error is underestimated by sqrt(2 tau_int) ~ 4.4.
    assert jackknife(lambda m: m, x).error < exact / 3


def test_jackknife_binder_and_susceptibility_gaussian(generator):
    # Gaussian M with mean 0 and variance s^2: U_L = 1 - 3 s^4 / (3 s^4) = 0, chi_2 = V s^2.
    s, V = 0.1, 64
    M = torch.tensor(numpy_rng(generator).normal(0.0, s, size=(20000, 2)))
    U = jackknife_binder(M, n_bins=100)
    chi = jackknife_susceptibility(M, V, n_bins=100)
    assert abs(U.mean) < 4 * U.error
    assert abs(chi.mean - V * s * s) < 4 * chi.error


def test_jackknife_binder_two_peaks(generator):
    # M = +-m0 + N(0, s^2): <M^2> = m0^2 + s^2, <M^4> = m0^4 + 6 m0^2 s^2 + 3 s^4.
    rng = numpy_rng(generator)
    m0, s = 0.5, 0.1
    M = rng.choice([-m0, m0], size=40000) + rng.normal(0.0, s, size=40000)
    exact = 1 - (m0**4 + 6 * m0**2 * s**2 + 3 * s**4) / (3 * (m0**2 + s**2) ** 2)
    U = jackknife_binder(M, n_bins=200)
    assert abs(U.mean - exact) < 4 * U.error and U.error < 2e-3


def test_bootstrap_agrees_with_jackknife_on_iid_data(generator):
    rng = numpy_rng(generator)
    x = rng.normal(2.0, 1.0, size=2000)
    y = rng.normal(1.0, 0.3, size=2000) + 0.2 * x

    def fn(mx, my, mx2):
        return (mx2 - mx * mx) / my

    n_boot = 1000
    jk = jackknife(fn, x, y, x**2)
    bs = bootstrap(fn, x, y, x**2, n_boot=n_boot, generator=rng, n_bins=500)
    assert bs.mean == pytest.approx(jk.mean, rel=1e-12)
    # bootstrap error's own uncertainty ~ 1/sqrt(2 n_boot); the jackknife's ~ 1/sqrt(2 n) is smaller
    assert abs(bs.error - jk.error) < 4 * jk.error * np.sqrt(1 / (2 * n_boot) + 1 / (2 * len(x)))


def test_bootstrap_is_reproducible_from_a_seed(generator):
    x = numpy_rng(generator).normal(size=(300, 2))
    first = bootstrap(lambda m: m * m, x, n_boot=200, generator=7)
    assert bootstrap(lambda m: m * m, x, n_boot=200, generator=np.random.default_rng(7)).error == first.error
    assert bootstrap(lambda m: m * m, x, n_boot=200, generator=8).error != first.error


def test_errors():
    x = np.zeros(10)
    with pytest.raises(ValueError, match=r"shape \[n\] or \[n, chains\]"):
        jackknife(lambda m: m, np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="same shape"):
        jackknife(lambda a, b: a / b, x, np.zeros(11))
    with pytest.raises(ValueError, match="at least one series"):
        jackknife(lambda: 0.0)
    with pytest.raises(ValueError, match="n_bins is the number of bins along time per chain"):
        jackknife(lambda m: m, x, n_bins=11)
    with pytest.raises(ValueError, match="NaN or inf"):
        bootstrap(lambda m: m, np.array([1.0, np.nan]), n_boot=10, generator=0)
    with pytest.raises(ValueError, match="n_boot must be >= 2"):
        bootstrap(lambda m: m, x, n_boot=1, generator=0)
    with pytest.raises(ValueError, match="bin_size must be between 1 and the series length"):
        binned(x, 0)
    with pytest.raises(ValueError, match="volume is the number of sites"):
        jackknife_susceptibility(x, 0)

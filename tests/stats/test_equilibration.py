"""The half-split drift test: calibrated on stationary chains (its z is Student-t), powerful on relaxing ones."""

import math

import numpy as np
import pytest

from lgdiff import equilibration_drift


def ar1(rng: np.random.Generator, n: int, chains: int, rho: float) -> np.ndarray:
    """Stationary AR(1) chains (unit variance), started from the stationary distribution."""
    x = np.empty((n, chains))
    x[0] = rng.normal(size=chains)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + math.sqrt(1 - rho * rho) * rng.normal(size=chains)
    return x


def test_z_of_stationary_autocorrelated_chains_is_student_t():
    # 2000 independent replicas of 8 stationary AR(1) chains with tau_int ~ 10: |z| > 3 should occur at the
    # Student-t(7) rate 0.0199 (binomial error 0.0031), whatever the autocorrelation
    rng = np.random.default_rng(1)
    zs = np.array([equilibration_drift(ar1(rng, 64, 8, 0.9)).z for _ in range(2000)])
    rate = float(np.mean(np.abs(zs) > 3))
    assert abs(rate - 0.0199) < 4 * math.sqrt(0.0199 * 0.98 / 2000), rate
    assert abs(float(np.std(zs)) - math.sqrt(7 / 5)) < 0.1  # t(7) has variance 7/5


def test_relaxing_chains_are_flagged():
    # chains relaxing from 0 towards 1 with time constant 20 records, on top of AR(1) noise of unit variance
    rng = np.random.default_rng(2)
    t = np.arange(100)[:, None]
    check = equilibration_drift(ar1(rng, 100, 8, 0.5) * 0.2 + 1 - np.exp(-t / 20))
    assert check.drifting() and check.z > 3 and check.second > check.first


def test_frozen_chains_are_not_drifting():
    check = equilibration_drift(np.ones((10, 4)))
    assert math.isnan(check.z) and not check.drifting()


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="needs >= 4 records of >= 4 independent chains; got 10 records x 2 chains"):
        equilibration_drift(np.zeros((10, 2)))

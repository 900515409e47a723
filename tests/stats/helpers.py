"""AR(1) processes with exactly known autocorrelation, for testing error analyses."""

import numpy as np
import torch


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy Generator seeded from the test's reproducible torch generator."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def ar1(a: float, n: int, chains: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary x_t = a x_{t-1} + sqrt(1 - a^2) e_t, unit variance, [n, chains]; rho(t) = a^|t|."""
    e = rng.standard_normal((n, chains))
    x = np.empty((n, chains))
    x[0] = e[0]
    s = np.sqrt(1 - a * a)
    for t in range(1, n):
        x[t] = a * x[t - 1] + s * e[t]
    return x


def ar1_tau_int(a: float) -> float:
    """tau_int = 1/2 + sum_{t>=1} a^t = (1/2)(1 + a)/(1 - a)."""
    return 0.5 * (1 + a) / (1 - a)


def ar1_error_of_mean(a: float, n: int, chains: int = 1) -> float:
    """Exact standard deviation of the mean of `chains` independent stationary AR(1) series of length n:
    Var = (1/(chains n^2)) [n + 2 sum_{t=1}^{n-1} (n - t) a^t]."""
    t = np.arange(1, n)
    return float(np.sqrt((n + 2 * np.sum((n - t) * a**t)) / n**2 / chains))

r"""Is a Markov chain still relaxing? The half-split drift test over independent chains.

For a series ``[n, chains]`` of independent chains, each chain's difference of means between the second and the
first half of its records, ``d_c = mean(x[n/2:, c]) - mean(x[:n/2, c])``, has expectation zero once the chains are
stationary, whatever their autocorrelation. Its mean over chains, divided by the standard error of that mean
(the spread of the ``d_c``, which needs no model of the autocorrelation), is a Student-t variable with
``chains - 1`` degrees of freedom: a large ``|z|`` says the records still drift, i.e. the thermalisation
was too short for the estimates (and their error bars) to be trusted.
"""

import math
import typing

import attrs

from .resampling import SeriesLike, as_series

MIN_CHAINS = 4
"""Fewest chains for the test: with fewer the t-distribution's tails make ``|z| > 3`` common by chance."""


@typing.final
@attrs.frozen
class DriftCheck:
    """``first``, ``second``: means of the first and second halves over all chains; ``difference``: their
    difference, with its ``error`` from the spread over the chains; ``chains``: how many."""

    first: float
    second: float
    difference: float
    error: float
    chains: int

    @property
    def z(self) -> float:
        """``difference / error`` (NaN when every chain has exactly the same difference, e.g. a frozen chain)."""
        return self.difference / self.error if self.error > 0 else math.nan

    def drifting(self, threshold: float = 3.0) -> bool:
        """Whether ``|z| > threshold``: for 8 stationary chains ``|z| > 3`` happens about 2 % of the time."""
        return math.isfinite(self.z) and abs(self.z) > threshold


def equilibration_drift(series: SeriesLike) -> DriftCheck:
    """The half-split drift test (module docstring) of ``series [n, chains]``, ``n >= 4``, ``chains >= 4``.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(40, 8)) * 0.5 + np.linspace(0, 1, 40)[:, None]   # a trend
    >>> check = equilibration_drift(x)
    >>> check.second > check.first, check.drifting()
    (True, True)
    """
    x = as_series(series, where="equilibration_drift")
    n, chains = x.shape
    if n < 4 or chains < MIN_CHAINS:
        raise ValueError(f"equilibration_drift needs >= 4 records of >= {MIN_CHAINS} independent chains; got "
                         f"{n} records x {chains} chains. Run more chains (--chains) or more records (--n)")
    half = n // 2
    first, second = x[:half].mean(0), x[n - half:].mean(0)
    d = second - first
    return DriftCheck(first=float(first.mean()), second=float(second.mean()), difference=float(d.mean()),
                      error=float(d.std(ddof=1) / math.sqrt(chains)), chains=chains)


__all__ = ["MIN_CHAINS", "DriftCheck", "equilibration_drift"]

"""Self-normalised importance sampling: estimates from independent weighted draws (``log w`` per draw, known up to
a constant) and Kish's effective sample size. For the weights of the exact samplers' proposals (diffusion paths,
optimal stochastic quantisation, `lgdiff._samplers.osq`) used without a Markov chain."""

import numpy as np

from .estimate import Estimate
from .resampling import SeriesLike, as_series


def _weights(log_w: SeriesLike, where: str) -> np.ndarray:
    lw = as_series(log_w, where=where)
    if not np.isfinite(lw).any():
        raise ValueError(f"{where}: no draw has a finite log weight")
    lw = np.where(np.isnan(lw), -np.inf, lw)
    w = np.exp(lw - lw.max())
    return w / w.sum()


def effective_sample_size(log_w: SeriesLike) -> float:
    """Kish's ``(sum w)^2 / sum w^2`` of the draws' weights ``exp(log_w)`` (NaN weights count as zero).

    >>> effective_sample_size(np.zeros(4)), round(effective_sample_size(np.array([0.0, -50.0])), 6)
    (4.0, 1.0)
    """
    w = _weights(log_w, "effective_sample_size")
    return float(1.0 / np.sum(w * w))


def reweighted_mean(values: SeriesLike, log_w: SeriesLike) -> Estimate:
    """The self-normalised importance-sampling estimate ``sum w x / sum w`` of independent draws ``values [n]`` with
    log weights ``log_w [n]``, with its delta-method error ``sqrt(sum w^2 (x - mean)^2) / sum w``.

    >>> e = reweighted_mean(np.array([1.0, 3.0]), np.zeros(2))
    >>> e.mean, round(e.error, 6)
    (2.0, 0.707107)
    """
    x = as_series(values, where="reweighted_mean values")
    w = _weights(log_w, "reweighted_mean log_w")
    if x.shape != w.shape:
        raise ValueError(f"reweighted_mean needs one log weight per value; got {x.shape[0]} values and {w.shape[0]} "
                         f"log weights")
    mean = float(np.sum(w * x))
    return Estimate(mean, float(np.sqrt(np.sum(w * w * (x - mean) ** 2))))


__all__ = ["effective_sample_size", "reweighted_mean"]

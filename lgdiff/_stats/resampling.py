r"""Binning, jackknife and bootstrap errors of Monte Carlo time series and of derived quantities.

A *series* is one measurement per configuration, shape ``[n]`` (one chain) or ``[n, chains]``
(independent chains as columns), as a numpy array or a torch tensor (copied to the host as
float64: this is end-of-run analysis). Blocks (bins) are formed along time within each chain,
never across chains; the blocks of all chains are then resampled together.
"""

from collections.abc import Callable

import numpy as np
import torch

from .estimate import Estimate

SeriesLike = np.ndarray | torch.Tensor
"""A Monte Carlo time series ``[n]`` or ``[n, chains]``."""


def as_series(series: SeriesLike, *, where: str) -> np.ndarray:
    """``series`` as a float64 host array ``[n, chains]`` (a 1-D series is one chain)."""
    if isinstance(series, torch.Tensor):
        series = series.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(series, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(
            f"{where}: a series must have shape [n] or [n, chains] with n >= 2 measurements along time "
            f"(axis 0); got shape {tuple(np.shape(series))}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: the series contains NaN or inf values; remove or fix those measurements")
    return array


def as_series_set(series: tuple[SeriesLike, ...], *, where: str) -> list[np.ndarray]:
    """Convert several series that must share one shape ``[n, chains]``."""
    if not series:
        raise ValueError(f"{where}: pass at least one series, e.g. {where}(fn, m2, m4)")
    arrays = [as_series(s, where=where) for s in series]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"{where}: all series must have the same shape [n, chains] (measured on the same configurations); "
            f"got shapes {[a.shape for a in arrays]}"
        )
    return arrays


def binned(series: SeriesLike, bin_size: int) -> np.ndarray:
    r"""Means of consecutive bins of ``bin_size`` measurements along time, within each chain.

    ``b_j = (1/bin_size) sum_{i = j bin_size}^{(j+1) bin_size - 1} a_i``; the last
    ``n mod bin_size`` measurements are dropped. Chains (columns) are never mixed.

    **Arguments:**
    - `series`: ``[n]`` or ``[n, chains]``.
    - `bin_size`: ``1 <= bin_size <= n``.

    **Returns:** float64 ``[n // bin_size]`` or ``[n // bin_size, chains]``, like the input.

    >>> binned(np.arange(7.0), 3)
    array([1., 4.])
    """
    array = as_series(series, where="binned")
    n = array.shape[0]
    if not 1 <= bin_size <= n:
        raise ValueError(f"binned: bin_size must be between 1 and the series length n={n}; got bin_size={bin_size}")
    n_bins = n // bin_size
    out = array[: n_bins * bin_size].reshape(n_bins, bin_size, array.shape[1]).mean(axis=1)
    return out[:, 0] if np.ndim(series) == 1 else out


def _blocks(series: tuple[SeriesLike, ...], n_bins: int | None, *, where: str) -> np.ndarray:
    """Block means ``[n_blocks, n_series]``: ``n_bins`` bins per chain (default: every measurement)."""
    arrays = as_series_set(series, where=where)
    n, chains = arrays[0].shape
    n_bins = n if n_bins is None else n_bins
    if not 1 <= n_bins <= n or n_bins * chains < 2:
        raise ValueError(
            f"{where}: n_bins is the number of bins along time per chain and must satisfy 1 <= n_bins <= n = {n} "
            f"with at least 2 blocks in all (n_bins * chains >= 2); got n_bins={n_bins} with {chains} chain(s)"
        )
    bin_size = n // n_bins
    per_series = [binned(a, bin_size)[:n_bins].reshape(-1) for a in arrays]  # chains kept apart by binned
    return np.stack(per_series, axis=1)


def _evaluate(fn: Callable[..., object], means: np.ndarray) -> np.ndarray:
    """``fn`` on each row of ``means`` ``[rows, n_series]``, stacked ``[rows, *out]`` (one checked call)."""
    return np.stack([np.asarray(fn(*row), dtype=np.float64) for row in means.tolist()])


def jackknife(fn: Callable[..., object], *series: SeriesLike, n_bins: int | None = None) -> Estimate:
    r"""Delete-one-block jackknife estimate of a derived quantity ``f(<a_1>, <a_2>, ...)``.

    With ``K`` equal-size blocks (``n_bins`` per chain, times the number of chains) and ``abar``
    the means over all blocks, ``abar^{(i)}`` the means without block ``i``:

    ``f_i = f(abar^{(i)})``,  ``fbar = (1/K) sum_i f_i``,
    ``error = sqrt((K - 1)/K sum_i (f_i - fbar)^2)``,  ``mean = f(abar)``.

    This is the proper error of a nonlinear function of means (ratios such as the Binder cumulant,
    or ``V(<M^2> - <M>^2)``): ``f`` is re-evaluated on every jackknife sample, never averaged per
    configuration. Choose blocks much longer than the autocorrelation time (``n_bins`` such that
    ``n / n_bins >> tau_int``); the default (one measurement per block) is right for uncorrelated data.
    The jackknife bias estimate ``(K - 1)(fbar - f(abar))`` is O(1/N) and is not subtracted.

    **Arguments:**
    - `fn`: maps the means of the series (Python floats, in order) to a float or an array.
    - `*series`: one or more series ``[n]`` or ``[n, chains]`` of the same shape.
    - `n_bins`: number of bins along time per chain, each of ``n // n_bins`` measurements; the last
      ``n - n_bins (n // n_bins)`` measurements of each chain are dropped.

    **Returns:** an ``Estimate`` (arrays if ``fn`` returns arrays).

    >>> x = np.array([1.0, 2.0, 3.0, 4.0])
    >>> print(jackknife(lambda m: m, x))  # the standard error s / sqrt(n)
    2.5(6)
    """
    blocks = _blocks(series, n_bins, where="jackknife")
    K = blocks.shape[0]
    total = blocks.sum(axis=0)
    leave_one_out = (total[None, :] - blocks) / (K - 1)
    f_i = _evaluate(fn, leave_one_out)
    f_bar = f_i.mean(axis=0)
    error = np.sqrt((K - 1) / K * np.sum((f_i - f_bar) ** 2, axis=0))
    return Estimate(mean=_evaluate(fn, (total / K)[None])[0], error=error)


def bootstrap(
    fn: Callable[..., object],
    *series: SeriesLike,
    n_boot: int,
    generator: np.random.Generator | int,
    n_bins: int | None = None,
) -> Estimate:
    r"""Bootstrap estimate of a derived quantity ``f(<a_1>, <a_2>, ...)`` by resampling blocks.

    Each of ``n_boot`` replicas draws ``K`` of the ``K`` blocks (``n_bins`` per chain, all chains
    pooled) with replacement, the same draw for every series; ``f_b = f(abar^{(b)})``,
    ``error = sqrt(1/(n_boot - 1) sum_b (f_b - fbar)^2)``, ``mean = f(abar)`` on the full data.
    Blocks must be longer than the autocorrelation time, as for ``jackknife``.

    **Arguments:**
    - `fn`, `*series`, `n_bins`: as in ``jackknife``.
    - `n_boot`: number of bootstrap replicas, ``>= 2`` (a few hundred to thousands).
    - `generator`: a ``numpy.random.Generator``, or an int seed for ``numpy.random.default_rng``.

    **Returns:** an ``Estimate``.
    """
    if n_boot < 2:
        raise ValueError(f"bootstrap: n_boot must be >= 2 (typically 1000); got n_boot={n_boot}")
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    blocks = _blocks(series, n_bins, where="bootstrap")
    K = blocks.shape[0]
    chunk = max(1, min(n_boot, 2**22 // K))  # bound the memory of the index array
    replica_means = []
    for start in range(0, n_boot, chunk):
        index = rng.integers(0, K, size=(min(chunk, n_boot - start), K))
        replica_means.append(blocks[index].mean(axis=1))
    f_b = _evaluate(fn, np.concatenate(replica_means))
    return Estimate(mean=_evaluate(fn, blocks.mean(axis=0)[None])[0], error=f_b.std(axis=0, ddof=1))


def jackknife_binder(magnetisation: SeriesLike, *, n_bins: int | None = None) -> Estimate:
    r"""Binder cumulant ``U_L = 1 - <M^4> / (3 <M^2>^2)`` (docs/conventions.md, Observables) with its
    jackknife error: the ratio is re-evaluated on every jackknife sample of ``(<M^2>, <M^4>)``.

    **Arguments:** `magnetisation`: ``M = (1/V) sum_x phi(x)`` per configuration, ``[n]`` or
    ``[n, chains]``; `n_bins`: as in ``jackknife``.
    """
    m = as_series(magnetisation, where="jackknife_binder")
    return jackknife(lambda m2, m4: 1 - m4 / (3 * m2 * m2), m**2, m**4, n_bins=n_bins)


def jackknife_susceptibility(magnetisation: SeriesLike, volume: int, *, n_bins: int | None = None) -> Estimate:
    r"""Susceptibility ``chi_2 = V (<M^2> - <M>^2)`` (docs/conventions.md, Observables) with its jackknife
    error, re-evaluated on every jackknife sample of ``(<M>, <M^2>)``.

    **Arguments:** `magnetisation`: ``M`` per configuration, ``[n]`` or ``[n, chains]``; `volume`:
    the number of sites ``V``; `n_bins`: as in ``jackknife``.
    """
    if volume < 1:
        raise ValueError(f"jackknife_susceptibility: volume is the number of sites V >= 1; got {volume}")
    m = as_series(magnetisation, where="jackknife_susceptibility")
    return jackknife(lambda m1, m2: volume * (m2 - m1 * m1), m, m**2, n_bins=n_bins)

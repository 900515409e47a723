r"""Wolff's Gamma method: errors and integrated autocorrelation times with automatic windowing.

U. Wolff, "Monte Carlo errors with less errors", Comput. Phys. Commun. 156 (2004) 143
(hep-lat/0306017), and its reference implementation UWerr. With replicas ``r = 1..R`` of length
``n`` (chains as columns), ``N = n R``, global means ``abar`` and deviations ``delta = a - abar``:

- ``Gamma(t) = 1/(N - R t) sum_r sum_{i=1}^{n-t} delta_i^r delta_{i+t}^r`` (Wolff eqs. 31, 38);
- ``tau_int(W) = 1/2 + sum_{t=1}^{W} Gamma(t) / Gamma(0)``;
- automatic window: the first ``W`` with ``g(W) = exp(-W / tau(W)) - tau(W) / sqrt(W N) < 0``,
  ``tau(W) = S / ln((2 tau_int(W) + 1) / (2 tau_int(W) - 1))`` (eq. 52; ``S ~ 1..2``);
- bias correction ``Gamma(t) -> Gamma(t) + C_F(W) / N``, ``C_F = Gamma(0) + 2 sum_{t=1}^{W} Gamma(t)``
  (eq. 49), then ``error^2 = C_F / N = 2 tau_int Gamma(0) / N``;
- ``delta tau_int = 2 tau_int sqrt((W + 1/2 - tau_int) / N)`` (Madras-Sokal, eq. 42).

A derived quantity ``F = f(A_1, A_2, ...)`` is analysed through the projected series
``delta_F = sum_alpha f_alpha (a_alpha - abar_alpha)`` with ``f_alpha = df/dA_alpha`` at the
means, by central differences with step ``h_alpha = sigma_alpha / (2 sqrt(N))`` as in UWerr.
"""

import math
from collections.abc import Callable

import numpy as np

from .estimate import Autocorrelation, GammaEstimate
from .resampling import SeriesLike, as_series, as_series_set


def _autocovariance(delta: np.ndarray) -> np.ndarray:
    """``Gamma(t)`` for ``t = 0..n // 2`` from mean-free replicas ``[n, R]``, by FFT (O(N log N))."""
    n, R = delta.shape
    t_max = n // 2
    size = 1 << (2 * n - 1).bit_length()  # zero padding: no wrap-around
    spectrum = np.fft.rfft(delta, n=size, axis=0)
    lagged = np.fft.irfft(spectrum * spectrum.conj(), n=size, axis=0)[: t_max + 1].sum(axis=1)
    return lagged / (n * R - R * np.arange(t_max + 1))


def _automatic_window(gamma: np.ndarray, n: int, N: int, S: float, *, where: str) -> int:
    """Wolff's automatic window: the first ``W`` with ``g(W) < 0`` (module docstring); 0 for ``S = 0``."""
    if S == 0:
        return 0
    W = np.arange(1, gamma.size)
    excess = np.cumsum(gamma[1:]) / gamma[0]  # tau_int(W) - 1/2
    positive = excess > 0
    safe = np.where(positive, excess, 1.0)
    tau = np.where(positive, S / np.log((safe + 1) / safe), np.finfo(np.float64).eps)
    g = np.exp(-W / tau) - tau / np.sqrt(W * N)
    below = np.flatnonzero(g < 0)
    if below.size == 0:
        raise ValueError(
            f"{where}: Wolff's automatic windowing found no window W <= n/2 = {n // 2}: the series is too "
            f"short for its autocorrelation time (tau_int({n // 2}) = {0.5 + excess[-1]:.3g} at n = {n} per "
            f"chain; frozen chains look like this). Use longer chains, thin less, or pass S=0 to assume "
            f"no autocorrelation."
        )
    return int(W[below[0]])


def _windowed_gamma(delta: np.ndarray, S: float, *, where: str) -> tuple[np.ndarray, int] | None:
    """Bias-corrected ``Gamma(t)``, ``t = 0..n // 2``, and the automatic window; ``None`` for a constant series."""
    n, R = delta.shape
    N = n * R
    gamma = _autocovariance(delta)
    if gamma[0] <= 0:  # a constant series: no fluctuations, no autocorrelation
        return None
    window = _automatic_window(gamma, n, N, S, where=where)
    c_f = gamma[0] + 2 * gamma[1 : window + 1].sum()
    if c_f <= 0:
        raise ValueError(f"{where}: the estimated variance of the mean is not positive (C_F = {c_f:.3g}); the data are pathological")
    return gamma + c_f / N, window  # Wolff eq. 49: remove the O(1/N) bias of Gamma(t) from the subtracted mean


def _tau_int_error(tau_int: float, window: int, N: int) -> float:
    """Madras-Sokal: ``delta tau_int = 2 tau_int sqrt((W + 1/2 - tau_int) / N)``."""
    return 2 * tau_int * math.sqrt(max(window + 0.5 - tau_int, 0.0) / N)


def _gamma_analysis(delta: np.ndarray, value: float, S: float, *, where: str) -> GammaEstimate:
    N = delta.size
    windowed = _windowed_gamma(delta, S, where=where)
    if windowed is None:
        return GammaEstimate(mean=value, error=0.0, tau_int=0.5, tau_int_error=0.0, window=0, n_eff=N)
    gamma, window = windowed
    c_f = gamma[0] + 2 * gamma[1 : window + 1].sum()
    tau_int = c_f / (2 * gamma[0])
    tau_int_error = _tau_int_error(tau_int, window, N)
    return GammaEstimate(
        mean=value,
        error=math.sqrt(c_f / N),
        tau_int=tau_int,
        tau_int_error=tau_int_error,
        window=window,
        n_eff=N / (2 * tau_int),
    )


def _check_S(S: float, where: str) -> None:
    if not (math.isfinite(S) and S >= 0):
        raise ValueError(f"{where}: S is Wolff's window parameter, a finite number >= 0 (typically 1..2; 0 = no autocorrelation); got S={S!r}")


def gamma_method(series: SeriesLike, *, S: float = 1.5) -> GammaEstimate:
    r"""Mean, error and integrated autocorrelation time of a series by Wolff's Gamma method.

    See the module docstring for the formulas. Replicas (independent chains, the columns of an
    ``[n, chains]`` series) share one global mean and their autocorrelation functions are summed,
    never correlated across chains (Wolff Sec. 3.3). ``tau_int`` is in units of the series'
    spacing (``tau_int = 0.5`` for uncorrelated data).

    **Arguments:**
    - `series`: ``[n]`` or ``[n, chains]``, numpy or torch.
    - `S`: window parameter (Wolff: ``S = 1.5`` is robust; ``S = 0`` assumes no autocorrelation).

    **Returns:** a ``GammaEstimate``. Raises ``ValueError`` if no window satisfies the criterion up
    to ``n/2`` (chains too short compared to ``tau_int``).

    >>> rng = np.random.default_rng(1)
    >>> print(gamma_method(rng.normal(size=10_000)).summary())  # white noise: tau_int = 1/2
    -0.011(10)  tau_int = 0.491(10)  W = 1  N_eff = 10188
    """
    _check_S(S, "gamma_method")
    a = as_series(series, where="gamma_method")
    mean = float(a.mean())
    return _gamma_analysis(a - mean, mean, S, where="gamma_method")


def autocorrelation(series: SeriesLike, *, S: float = 1.5) -> Autocorrelation:
    r"""Normalised autocorrelation function ``rho(t) = Gamma(t) / Gamma(0)`` and Wolff's window.

    The same analysis as ``gamma_method`` (replicas summed, bias-corrected ``Gamma``, automatic
    window), exposed for plotting: ``tau_int = 1/2 + sum_{t=1}^{W} rho(t)`` equals ``gamma_method``'s.
    For an AR(1) process ``a_i = phi a_{i-1} + noise``, ``rho(t) = phi^t``.

    **Arguments:**
    - `series`: ``[n]`` or ``[n, chains]``, numpy or torch.
    - `S`: window parameter, as in ``gamma_method``.

    **Returns:** an ``Autocorrelation`` with ``rho`` for ``t = 0..n // 2``. Raises ``ValueError`` for a
    constant series (``Gamma(0) = 0``: rho is undefined) or when no window is found (as ``gamma_method``).

    >>> rng = np.random.default_rng(1)
    >>> acf = autocorrelation(rng.normal(size=10_000))  # white noise: rho(t > 0) ~ 0, W = 1
    >>> acf.window, round(float(acf.rho[0]), 3), abs(float(acf.rho[1])) < 0.05
    (1, 1.0, True)
    """
    _check_S(S, "autocorrelation")
    a = as_series(series, where="autocorrelation")
    windowed = _windowed_gamma(a - a.mean(), S, where="autocorrelation")
    if windowed is None:
        raise ValueError(f"autocorrelation: the series is constant ({float(a.flat[0])!r} throughout), so "
                         f"rho(t) = Gamma(t) / Gamma(0) is undefined; check that the observable fluctuates")
    gamma, window = windowed
    rho = gamma / gamma[0]
    tau_int = 0.5 + float(rho[1 : window + 1].sum())
    tau_int_error = _tau_int_error(tau_int, window, a.size)
    return Autocorrelation(rho=rho, window=window, tau_int=tau_int, tau_int_error=tau_int_error)


def gamma_method_derived(fn: Callable[..., float], *series: SeriesLike, S: float = 1.5) -> GammaEstimate:
    r"""Wolff's Gamma method for a scalar derived quantity ``F = f(<a_1>, <a_2>, ...)``.

    ``F`` is estimated as ``f(abar)``; its error and ``tau_int`` are those of the projected series
    ``sum_alpha f_alpha (a_alpha - abar_alpha)``, with the gradient ``f_alpha`` of ``f`` at the
    means by central differences (step ``sigma_alpha / (2 sqrt(N))``, UWerr's choice). With several
    replicas the estimate is ``f`` of the global means (UWerr's extra replica bias correction is not
    applied).

    **Arguments:**
    - `fn`: maps the means (Python floats, in the order of `series`) to a float.
    - `*series`: series ``[n]`` or ``[n, chains]`` of the same shape, measured on the same configurations.
    - `S`: window parameter, as in ``gamma_method``.

    **Returns:** a ``GammaEstimate``.
    """
    _check_S(S, "gamma_method_derived")
    arrays = as_series_set(series, where="gamma_method_derived")
    means = [float(a.mean()) for a in arrays]

    def f(args: list[float]) -> float:
        out = np.asarray(fn(*args), dtype=np.float64)
        if out.ndim != 0:
            raise TypeError(
                f"gamma_method_derived: fn must return one float, got an array of shape {out.shape}; "
                f"analyse each component separately, or use jackknife() for array-valued quantities"
            )
        return float(out)

    value = f(means)
    N = arrays[0].size
    delta = np.zeros_like(arrays[0])
    for alpha, a in enumerate(arrays):
        h = float(a.std()) / math.sqrt(N) / 2
        if h == 0:  # this observable does not fluctuate: it does not contribute
            continue
        up, down = list(means), list(means)
        up[alpha] += h
        down[alpha] -= h
        delta += (f(up) - f(down)) / (2 * h) * (a - means[alpha])
    return _gamma_analysis(delta, value, S, where="gamma_method_derived")

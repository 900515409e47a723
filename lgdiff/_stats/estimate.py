"""Results of an error analysis: a value with its error, printed in physics notation ``2.42(10)``."""

import math
import typing

import attrs
import numpy as np


def format_value_error(value: float, error: float) -> str:
    r"""``value(error)`` in the standard physics notation, e.g. ``2.42(10)``, ``1.234(5)``.

    The error is quoted to the precision of the Particle Data Group rule: its three leading digits
    ``100..354`` give two significant digits, ``355..949`` one, ``950..999`` are rounded up to
    ``1000`` and quoted with two; the value is rounded to the same decimal place. The digits in
    parentheses are the error in units of the value's last digit; when the error reaches the units
    place it is printed in full (``1230(350)``). Beyond 8 decimals or 10^5 the notation is
    scientific, ``6.02(4)e23``. A zero or non-finite error gives ``value(0)`` /
    ``value(nan)`` with the value to 12 significant digits.

    >>> format_value_error(2.4213, 0.1011), format_value_error(0.00171, 0.00149), format_value_error(1.2341, 0.0052)
    ('2.42(10)', '0.0017(15)', '1.234(5)')
    """
    if not math.isfinite(value):
        return f"{value}({error:g})"
    if not math.isfinite(error) or error <= 0:
        return f"{value:.12g}({error:g})"
    exponent = math.floor(math.log10(error))
    lead = round(error / 10.0 ** (exponent - 2))  # three leading digits, 100..1000
    if lead >= 1000:  # log10 rounding, or 999.5 rounding up
        exponent, lead = exponent + 1, round(lead / 10)
    if lead < 355:
        significant = 2
    elif lead < 950:
        significant = 1
    else:  # 950..999 round up to 1000: two digits, "10"
        exponent, significant = exponent + 1, 2
    decimals = significant - 1 - exponent
    if decimals > 8 or decimals < -5:  # very small or large numbers: scientific notation, 6.02(4)e23
        k = math.floor(math.log10(abs(value))) if abs(value) >= error else exponent
        if k == 0 or error < 1e-8 * abs(value):  # an error far below the value's digits: show both plainly
            return f"{value:.12g}({error:.2g})"
        return f"{format_value_error(value / 10.0**k, error / 10.0**k)}e{k}"
    error_digits = round(error * 10.0**decimals)
    if decimals > 0:
        text = f"{value:.{decimals}f}({error_digits})"
    else:
        text = f"{round(value, decimals):.0f}({error_digits * 10 ** (-decimals)})"
    if text.startswith("-") and not any(c in "123456789" for c in text.split("(")[0]):
        text = text[1:]  # "-0.000(12)" -> "0.000(12)"
    return text


def finite_or_nan(x: object) -> float:
    """``x`` as a float if it is a finite real number (Python or numpy), else NaN (also for ``None``)."""
    try:
        value = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def format_mean_error(mean: object, error: object) -> str:
    """``format_value_error`` for results that may be incomplete: ``"n/a"`` without a finite mean, the mean
    alone (6 significant digits) without a finite positive error.

    >>> format_mean_error(0.44521, 0.0019), format_mean_error(1.0, None), format_mean_error(None, 0.1)
    ('0.4452(19)', '1', 'n/a')
    """
    m, e = finite_or_nan(mean), finite_or_nan(error)
    if math.isnan(m):
        return "n/a"
    if math.isnan(e) or e <= 0:
        return f"{m:.6g}"
    return format_value_error(m, e)


def _value(x: object) -> float | np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 0:
        return float(array)
    array = array.copy()
    array.setflags(write=False)
    return array


def _plain(x: float | np.ndarray) -> float | list:
    return float(x) if isinstance(x, float) else x.tolist()


@typing.final
@attrs.frozen(eq=False)
class Estimate:
    r"""A Monte Carlo estimate ``mean +- error`` of a scalar or of an array of quantities.

    ``mean`` and ``error`` are Python floats, or read-only float64 arrays of equal shape (for a
    derived quantity that is an array, e.g. a correlator). ``str()`` gives ``2.42(10)`` (see
    ``format_value_error``), elementwise in brackets for arrays.

    >>> print(Estimate(mean=2.4213, error=0.1011))
    2.42(10)
    >>> Estimate(mean=2.4213, error=0.1011).to_dict()
    {'mean': 2.4213, 'error': 0.1011}
    """

    mean: float | np.ndarray = attrs.field(converter=_value)
    error: float | np.ndarray = attrs.field(converter=_value)

    def __attrs_post_init__(self) -> None:
        if np.shape(self.mean) != np.shape(self.error):
            raise ValueError(
                f"Estimate needs mean and error of the same shape; got {np.shape(self.mean)} and {np.shape(self.error)}"
            )

    def __str__(self) -> str:
        if isinstance(self.mean, float):
            return format_value_error(self.mean, float(self.error))
        pairs = zip(np.ravel(self.mean), np.ravel(self.error))
        return "[" + ", ".join(format_value_error(float(m), float(e)) for m, e in pairs) + "]"

    def to_dict(self) -> dict[str, float | list]:
        """``{"mean": ..., "error": ...}`` with plain Python floats (nested lists for arrays)."""
        return {"mean": _plain(self.mean), "error": _plain(self.error)}


@typing.final
@attrs.frozen
class GammaEstimate:
    r"""Result of Wolff's Gamma method (``gamma_method``): a scalar mean with its error and
    integrated autocorrelation time.

    - `mean`, `error`: the estimate and its standard error, ``error^2 = 2 tau_int Gamma(0) / N``.
    - `tau_int`: ``1/2 + sum_{t=1}^{W} Gamma(t) / Gamma(0)`` (0.5 for uncorrelated data), in units of
      the series' spacing.
    - `tau_int_error`: ``2 tau_int sqrt((W + 1/2 - tau_int) / N)`` (Madras-Sokal, as in Wolff).
    - `window`: the summation window ``W`` chosen by Wolff's automatic criterion.
    - `n_eff`: effective number of independent samples, ``N / (2 tau_int)``.

    ``str()`` gives ``mean(error)`` like ``Estimate``; ``summary()`` adds tau_int and W.
    """

    mean: float = attrs.field(converter=float)
    error: float = attrs.field(converter=float)
    tau_int: float = attrs.field(converter=float)
    tau_int_error: float = attrs.field(converter=float)
    window: int = attrs.field(converter=int)
    n_eff: float = attrs.field(converter=float)

    def __str__(self) -> str:
        return format_value_error(self.mean, self.error)

    def summary(self) -> str:
        """``2.42(10)  tau_int = 3.1(4)  W = 12  N_eff = 810``."""
        tau = format_value_error(self.tau_int, self.tau_int_error)
        return f"{self}  tau_int = {tau}  W = {self.window}  N_eff = {self.n_eff:.0f}"

    def to_dict(self) -> dict[str, float | int]:
        """All fields as plain Python numbers (``window`` an int, the rest floats)."""
        return attrs.asdict(self)


def _read_only_rho(x: object) -> np.ndarray:
    array = np.array(x, dtype=np.float64)
    array.setflags(write=False)
    return array


@typing.final
@attrs.frozen(eq=False)
class Autocorrelation:
    r"""The normalised autocorrelation function of a series and Wolff's window (``autocorrelation``).

    - `rho`: ``rho(t) = Gamma(t) / Gamma(0)`` for ``t = 0..n // 2`` (read-only float64; ``rho(0) = 1``),
      from the bias-corrected ``Gamma(t)`` of the Gamma method.
    - `window`: Wolff's automatic summation window ``W``.
    - `tau_int`: ``1/2 + sum_{t=1}^{W} rho(t)``, the same number ``gamma_method`` reports.
    - `tau_int_error`: ``2 tau_int sqrt((W + 1/2 - tau_int) / N)`` (Madras-Sokal).
    """

    rho: np.ndarray = attrs.field(converter=_read_only_rho)
    window: int = attrs.field(converter=int)
    tau_int: float = attrs.field(converter=float)
    tau_int_error: float = attrs.field(converter=float)

    def __attrs_post_init__(self) -> None:
        if self.rho.ndim != 1 or self.rho.size < 1 or self.rho[0] != 1.0:
            raise ValueError(f"Autocorrelation.rho must be 1-D with rho[0] = 1; got shape {self.rho.shape}"
                             f"{f' and rho[0] = {self.rho[0]}' if self.rho.size else ''}")
        if not 0 <= self.window < self.rho.size:
            raise ValueError(f"Autocorrelation.window must be in 0..{self.rho.size - 1} (the lags of rho); "
                             f"got {self.window}")

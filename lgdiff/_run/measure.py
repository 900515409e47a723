"""``lgdiff measure``: every observable that fits an ensemble's theory, with errors and tau_int.

Errors and integrated autocorrelation times come from Wolff's Gamma method over the ``[T, C]`` series
(records x independent chains): ``method`` ``"gamma"``. Where the Gamma method finds no window (chains too short
for their autocorrelation, or frozen, e.g. each chain stuck in one topological sector), the chains are taken as
independent samples, the error comes from a jackknife over the chain means and tau_int is NaN: ``method``
``"jackknife"``, with a ``warning``; with one chain there is no error at all (``method`` ``"none"``). A Gamma
estimate from fewer than ``MIN_N_OVER_TAU`` tau_int measurements carries a ``warning`` too. tau_int is in units of
records (``every`` updates each).
"""

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .._fields.links import LinkField
from .._fields.scalar import Field
from .._groups.u1 import U1
from .._io.ensemble import Ensemble
from .._observables.flow import flow_chunk, wilson_flow
from .._observables.gauge import (
    mean_plaquette,
    polyakov_loop,
    topological_charge_clover,
    topological_charge_u1_2d,
    wilson_loop,
)
from .._observables.scalar import magnetization
from .._stats import gamma_method, gamma_method_derived, jackknife

Result = dict[str, float | str]
"""One observable: ``mean``, ``error``, ``tau_int`` (floats, NaN where unknown), ``method`` (``"gamma"``,
``"jackknife"`` or ``"none"``, module docstring) and, where the numbers need a caveat, ``warning`` (one line)."""

MIN_N_OVER_TAU = 50
"""A Gamma-method estimate from ``N`` measurements (records x chains) with ``N < MIN_N_OVER_TAU tau_int`` is
flagged: tau_int is then uncertain by about ``2 sqrt(W / N)`` with a window ``W`` of several tau_int, i.e. 50% or
more (Madras-Sokal, `lgdiff._stats.gamma`), and so is the error."""


def _reason(e: ValueError) -> str:
    """The Gamma method's complaint without the function name and the advice: ``"Wolff's automatic windowing
    found no window W <= n/2 = 8: the series is too short ... (tau_int(8) = 5.1 at n = 16 per chain; ...)"``."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    head, sep, rest = text.partition(": ")
    text = rest if sep and " " not in head else text
    return text.split(". ")[0].rstrip(".")


def _fallback(fn: Callable[..., float], series: Sequence[np.ndarray], reason: str) -> Result:
    chains = series[0].shape[1] if series[0].ndim == 2 else 1
    if chains < 2:
        return {"mean": float(fn(*[float(s.mean()) for s in series])), "error": math.nan, "tau_int": math.nan,
                "method": "none", "warning": f"no error estimate: the Gamma method failed ({reason}) and one chain "
                                             f"gives no chain means to compare; run more chains or longer ones"}
    per_chain = [s.mean(0) for s in series]  # one bin per chain: chains are independent
    est = jackknife(fn, *per_chain, n_bins=chains)
    return {"mean": float(est.mean), "error": float(est.error), "tau_int": math.nan, "method": "jackknife",
            "warning": f"error from a jackknife over the {chains} chain means, tau_int unknown: the Gamma method "
                       f"failed ({reason})"}


def _analyse(fn: Callable[..., float], *series: np.ndarray) -> Result:
    """Gamma-method estimate of ``fn(<a_1>, ...)``; falls back to chains as independent samples (module
    docstring)."""
    try:
        est = gamma_method(series[0]) if len(series) == 1 and fn is _identity else gamma_method_derived(fn, *series)
        if not math.isfinite(est.error):
            raise ValueError(f"the error is not finite ({est.error})")
    except ValueError as e:
        return _fallback(fn, series, _reason(e))
    out: Result = {"mean": est.mean, "error": est.error, "tau_int": est.tau_int, "method": "gamma"}
    n = series[0].size
    if est.error > 0 and n < MIN_N_OVER_TAU * est.tau_int:  # (a constant series has nothing to estimate)
        out["warning"] = (f"N = {n} measurements < {MIN_N_OVER_TAU} tau_int: the run is too short for its "
                          f"autocorrelation; tau_int and the error are uncertain (50% or more); run longer chains")
    return out


def _identity(x: float) -> float:
    return x


def _np(t: Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def measure_scalar(ens: Ensemble) -> dict[str, Result]:
    """``mag``, ``abs_mag``, ``chi2`` = V(<M^2> - <M>^2), ``chi2_abs`` = V(<M^2> - <|M|>^2) (sign-blind),
    ``binder`` = 1 - <M^4> / (3 <M^2>^2)."""
    volume = ens.metadata.to_lattice().volume
    m = _np(ens.series(magnetization))
    out = {
        "mag": _analyse(_identity, m),
        "abs_mag": _analyse(_identity, np.abs(m)),
        "chi2": _analyse(lambda a, b: volume * (b - a * a), m, m * m),
        "chi2_abs": _analyse(lambda a, b: volume * (b - a * a), np.abs(m), m * m),
        "binder": _analyse(lambda b, c: 1 - c / (3 * b * b), m * m, m**4),
    }
    return out


FLOW_EPS = 0.05
"""RK3 Wilson-flow step of the measured charge: on SU(3) 6^4 at beta = 5.5, flowed to t = 1, Q differs from
eps = 0.02 by < 1e-4 per configuration (far below its spread, ~0.3) at 2.4x less cost; the flow is most of the cost
of measuring a 4D ensemble."""


FLOW_PRECISION = {torch.complex128: torch.complex64}
"""The dtype the measured charge's flow runs in, by the ensemble's dtype: single precision for double-precision
links (chains store complex128 so that they resume bit for bit). On 32 SU(3) 6^4 configurations at beta = 5.0,
flowed to t = 1, Q differs from the double-precision flow by < 1e-6 per configuration (its spread: 0.83) at 1.7x
less CPU time."""


def _loop_sizes(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    top = min(4, min(shape) // 2)
    return [(r, t) for t in range(1, top + 1) for r in range(1, t + 1)]


def _flowed_charge(ens: Ensemble) -> bool:
    """Whether the ensemble's topological charge is measured after Wilson flow: 4D SU(N)."""
    group = ens.metadata.to_group()
    return group is not None and group != U1() and len(ens.metadata.lattice) == 4


def flowed_configurations(ens: Ensemble) -> int:
    """Configurations (records x chains) that measuring the ensemble flows: all of them for 4D SU(N), else 0
    (size a progress bar for the ``progress`` of `measure` with this)."""
    return ens.n_records * ens.chains if _flowed_charge(ens) else 0


def topological_charge_observable(ens: Ensemble, *, flow_time: float = 1.0, flow_eps: float = FLOW_EPS,
                                  progress: Callable[[int], None] | None = None
                                  ) -> Callable[[LinkField], Tensor] | None:
    """The per-configuration topological charge that fits the ensemble, or ``None`` where none is defined:
    2D U(1): the geometric charge; 4D SU(N): the clover charge after Wilson flow to ``flow_time`` (RK3 steps of
    ``flow_eps``, in ``FLOW_PRECISION``), flowed and measured a few MB of configurations at a time (`flow_chunk`),
    calling ``progress`` with the number of configurations flowed."""
    group, dim = ens.metadata.to_group(), len(ens.metadata.lattice)
    if group == U1() and dim == 2:
        return topological_charge_u1_2d
    if _flowed_charge(ens):
        def charge(U: LinkField) -> Tensor:  # flowed and measured a chunk at a time: the clover needs ~6x the links
            V = U.with_data(U.data.to(FLOW_PRECISION.get(U.data.dtype, U.data.dtype)))
            chunk = flow_chunk(V)
            return torch.cat([topological_charge_clover(wilson_flow(V.with_data(V.data[start:start + chunk]),
                                                                    t=flow_time, eps=flow_eps, progress=progress))
                              for start in range(0, V.batch, chunk)]).to(U.data.real.dtype)
        return charge
    return None


def measure_wilson_loops(ens: Ensemble) -> dict[tuple[int, int], Result]:
    """``W(R, T)`` for ``R <= T <= min(L)/2`` (at most 4), keyed by ``(R, T)``."""
    return {(r, t): _analyse(_identity, _np(ens.series(lambda U, r=r, t=t: wilson_loop(U, r, t))))
            for r, t in _loop_sizes(ens.metadata.to_lattice().shape)}


def measure_gauge(ens: Ensemble, *, flow_time: float = 1.0, flow_eps: float = FLOW_EPS,
                  progress: Callable[[int], None] | None = None) -> dict[str, Result]:
    """``plaquette``, ``wilson_RxT`` (R <= T <= min(L)/2, at most 4), ``polyakov`` (Re of the loop in the last
    direction), ``polyakov_abs``, and where defined ``topo_charge`` and ``topo_susceptibility`` = <Q^2>/V
    (2D U(1): geometric charge; 4D: clover charge after Wilson flow to ``flow_time``; ``progress`` is called with
    the number of configurations flowed, `flowed_configurations` in all)."""
    lattice = ens.metadata.to_lattice()
    out: dict[str, Result] = {"plaquette": _analyse(_identity, _np(ens.series(mean_plaquette)))}
    for (r, t), result in measure_wilson_loops(ens).items():
        out[f"wilson_{r}x{t}"] = result
    poly = ens.series(polyakov_loop)
    out["polyakov"] = _analyse(_identity, _np(poly.real))
    out["polyakov_abs"] = _analyse(_identity, _np(poly.abs()))
    charge = topological_charge_observable(ens, flow_time=flow_time, flow_eps=flow_eps, progress=progress)
    if charge is not None:
        q = _np(ens.series(charge))
        out["topo_charge"] = _analyse(_identity, q)
        out["topo_susceptibility"] = _analyse(_identity, q * q / lattice.volume)
    return out


def measure(ens: Ensemble, *, flow_time: float = 1.0,
            progress: Callable[[int], None] | None = None) -> dict[str, Result]:
    """Every observable that fits the ensemble's theory, plus ``acceptance`` where recorded: name -> `Result`
    (``mean``, ``error``, ``tau_int``, ``method`` and, where the numbers need a caveat, ``warning``). ``progress``
    is called with the number of configurations Wilson-flowed (`flowed_configurations` in all; none but 4D
    SU(N))."""
    if ens.metadata.kind == "links":
        out = measure_gauge(ens, flow_time=flow_time, progress=progress)
    else:
        out = measure_scalar(ens)
    acc = _np(ens.acceptance)
    if acc.size:
        out["acceptance"] = _analyse(_identity, acc)
    return out


__all__ = ["MIN_N_OVER_TAU", "Result", "flowed_configurations", "measure", "measure_gauge", "measure_scalar",
           "measure_wilson_loops", "topological_charge_observable", "Field"]

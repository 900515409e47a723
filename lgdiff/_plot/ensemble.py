r"""``lgdiff plot``: the standard plots of an ensemble file, written as PNG files.

Scalar (phi4) ensembles: the histogram of the magnetisation ``M = (1/V) sum_x phi(x)``, the
autocorrelation function of ``|M|`` and a snapshot of ``phi(x)``. Gauge ensembles: the histograms of
the plaquette and (2D U(1), 4D SU(N)) of the topological charge, the autocorrelation function of the
plaquette, the Wilson loops ``W(R, T)`` against their area and a snapshot of the plaquette angle (U(1))
or of the plaquette density ``Re tr U_01(x) / N``. Exact values are drawn where lgdiff knows them
(`lgdiff._exact`): 2D U(1) on the finite torus (plaquette, Wilson loops, ``<Q> = 0``, ``chi_t``) and
2D SU(N) in infinite volume (plaquette ``w`` and ``W(R, T) = w^{R T}``, since the plaquettes of 2D
SU(N) are independent). Errors are those of ``lgdiff measure`` (Gamma method).
"""

import contextlib
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .._fields.links import LinkField
from .._groups.u1 import U1
from .._io.ensemble import Ensemble, EnsembleMetadata
from .._observables.gauge import mean_plaquette, plaquette_field
from .._observables.scalar import magnetization
from .._run.measure import _analyse, _identity, _np, measure_wilson_loops, topological_charge_observable
from .._stats import Autocorrelation, autocorrelation, format_mean_error
from .figures import (
    PLOT_EXTRA_HINT,
    Figure,
    MissingPlotDependency,
    autocorrelation_figure,
    histogram_figure,
    snapshot_figure,
    wilson_loop_figure,
)

_SYMBOLS = {"kappa": "κ", "lam": "λ", "beta": "β", "m2": "m²", "g": "g"}
_THEORY_NAMES = {"phi4": "φ⁴ theory", "toy": "toy model", "u1": "U(1) gauge theory", "su2": "SU(2) gauge theory",
                 "su3": "SU(3) gauge theory"}


def describe(ens: Ensemble) -> str:
    """A title line naming theory, couplings, lattice, algorithm and statistics, e.g.
    ``U(1) gauge theory, β = 1, L = 8×8, heatbath, 200 records × 8 chains``."""
    meta = ens.metadata
    name = _THEORY_NAMES.get(meta.theory, f"{meta.theory} ({meta.group})" if meta.group else meta.theory)
    couplings = ", ".join(f"{_SYMBOLS.get(k, k)} = {v:g}" if isinstance(v, float) else f"{_SYMBOLS.get(k, k)} = {v}"
                          for k, v in meta.params.items())
    lattice = "×".join(map(str, meta.lattice)) or "a single site"
    return (f"{name}, {couplings}, L = {lattice}\n{meta.algorithm}, {ens.n_records} records × {ens.chains} chains"
            f" (seed {meta.seed})")


def _time_unit(ens: Ensemble) -> str:
    if ens.n_records >= 2:
        steps = np.diff(ens.index.numpy())
        if steps.size and np.all(steps == steps[0]) and steps[0] > 1:
            return f"records, 1 record = {int(steps[0])} updates"
    return "records"


def _acf(series: np.ndarray) -> tuple[Autocorrelation | None, str | None]:
    """The autocorrelation function, or why there is none (plots never fail for a short series)."""
    if series.shape[0] < 2:
        return None, "fewer than 2 records: no autocorrelation function"
    if np.ptp(series) == 0:
        return None, "the observable is constant: no autocorrelation function"
    try:
        return autocorrelation(series), None
    except ValueError:  # Wolff's criterion not met up to n/2: show rho anyway, flagged
        return autocorrelation(series, S=0.0), "no window found up to n/2: series too short, tau_int unreliable"


def require_plotting(*, exact: bool = True) -> None:
    """Raise `MissingPlotDependency` now if `plot_ensemble` would lack matplotlib (or scipy, for ``exact``):
    a long run with ``--plot`` checks this before it starts."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingPlotDependency(f"plotting needs matplotlib, which is not installed; install it with "
                                    f"{PLOT_EXTRA_HINT}") from None
    if exact:
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise MissingPlotDependency(f"the exact reference lines need scipy, which is not installed; install it "
                                        f"with {PLOT_EXTRA_HINT}, or plot without them (exact=False, --no-exact)") from None


def _exact_gauge(meta: EnsembleMetadata) -> tuple[Callable[[int, int], float] | None, str, dict[str, float]]:
    """``(W(R, T) -> exact or None, label, extras)``: the exact Wilson loops (``W(1, 1)`` is the plaquette)
    and further exact numbers (``chi_t``) where lgdiff knows them; ``(None, "", {})`` elsewhere."""
    from .._exact import su_n_2d_plaquette, u1_2d_plaquette, u1_2d_topological_susceptibility, u1_2d_wilson_loop

    beta = meta.params.get("beta")
    group = meta.to_group()
    if len(meta.lattice) != 2 or not isinstance(beta, (int, float)) or group is None:
        return None, "", {}
    shape = (meta.lattice[0], meta.lattice[1])
    if group == U1():
        extras = {"plaquette": u1_2d_plaquette(float(beta), shape),
                  "chi_t": u1_2d_topological_susceptibility(float(beta), shape)}
        return (lambda r, t: u1_2d_wilson_loop(float(beta), shape, r, t)), "exact (finite volume)", extras
    w = su_n_2d_plaquette(group.n, float(beta))
    return (lambda r, t: w ** (r * t)), r"exact, infinite volume: $w^{RT}$", {"plaquette": w}


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG atomically (temporary file, then rename): a failure never leaves a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def _scalar_figures(ens: Ensemble, title: str) -> dict[str, Figure]:
    meta = ens.metadata
    m = _np(ens.series(magnetization))
    figures = {"hist_mag": histogram_figure(m, quantity=r"magnetisation $M = \frac{1}{V}\sum_x \phi(x)$",
                                            title=title, mean=_analyse(_identity, m))}
    if meta.lattice:
        acf, note = _acf(np.abs(m))
        figures["autocorr"] = autocorrelation_figure(acf, quantity="|M|", time_unit=_time_unit(ens), title=title,
                                                     note=note)
        phi = ens.record(-1).data[0]  # [*L], chain 0
        dim = len(meta.lattice)
        field = phi[(slice(None),) * min(dim, 2) + (0,) * max(dim - 2, 0)]
        where = "" if dim <= 2 else ", slice " + " = ".join(f"$x_{k}$" for k in range(2, dim)) + " = 0"
        figures["snapshot"] = snapshot_figure(_np(field), quantity=r"field $\phi(x)$",
                                              title=f"{title}\nlast record, chain 0{where}")
    return figures


def _gauge_figures(ens: Ensemble, title: str, *, exact: bool, flow_time: float) -> dict[str, Figure]:
    meta = ens.metadata
    lattice = meta.to_lattice()
    exact_loop, exact_label, extras = _exact_gauge(meta) if exact else (None, "", {})
    p = _np(ens.series(mean_plaquette))
    figures = {"hist_plaquette": histogram_figure(
        p, quantity=r"plaquette $P = \langle \mathrm{Re\,tr}\,U_{\mu\nu}(x) / N \rangle_{x,\,\mu<\nu}$", title=title,
        mean=_analyse(_identity, p), exact=extras.get("plaquette"), exact_label=exact_label or "exact")}
    charge = topological_charge_observable(ens, flow_time=flow_time)
    if charge is not None:
        q = _np(ens.series(charge))
        q2 = _analyse(_identity, q * q / lattice.volume)
        geometric = meta.to_group() == U1()  # the 2D U(1) geometric charge: an integer (to rounding)
        note = rf"$\chi_t = \langle Q^2\rangle / V$ = {format_mean_error(q2['mean'], q2['error'])} measured"
        if "chi_t" in extras:
            note += f"\n{'':>8}{extras['chi_t']:.5f} exact (finite volume)"
        figures["hist_topo"] = histogram_figure(
            np.rint(q) if geometric else q,
            quantity="topological charge Q" + (" (clover, after Wilson flow to t = " + f"{flow_time:g})"
                                                 if lattice.dim == 4 else " (geometric)"),
            title=title, integer=geometric, mean=_analyse(_identity, q), exact=0.0,
            exact_label=r"exact $\langle Q \rangle$ (symmetry)", note=note)
    acf, note = _acf(p)
    figures["autocorr"] = autocorrelation_figure(acf, quantity="the plaquette", time_unit=_time_unit(ens),
                                                 title=title, note=note)
    if min(lattice.shape) >= 2:
        loops = measure_wilson_loops(ens)
        exact_values = {rt: exact_loop(*rt) for rt in loops} if exact_loop is not None else None
        figures["wilson"] = wilson_loop_figure(loops, title=title, exact=exact_values, exact_label=exact_label)
    U = ens.record(-1)
    assert isinstance(U, LinkField)  # a links ensemble: Ensemble.record returns links
    plaq = plaquette_field(U[0:1], 0, 1)[0, ..., 0, 0] if U.group.n == 1 else plaquette_field(U[0:1], 0, 1)[0]
    where = "" if lattice.dim == 2 else ", slice " + " = ".join(f"$x_{k}$" for k in range(2, lattice.dim)) + " = 0"
    index = (slice(None), slice(None)) + (0,) * (lattice.dim - 2)
    snap_title = f"{title}\nlast record, chain 0, plane (0, 1){where}"
    if U.group.n == 1:
        angle = torch.angle(plaq[index])
        angle = torch.where(angle <= -math.pi, angle + 2 * math.pi, angle)
        figures["snapshot"] = snapshot_figure(
            _np(angle), quantity=r"plaquette angle $\theta_{01}(x) = \arg U_{01}(x) = 2\pi\, q(x)$",
            title=snap_title, limits=(-math.pi, math.pi), cmap="twilight_shifted",
            ticks={-math.pi: r"$-\pi$", -math.pi / 2: r"$-\pi/2$", 0.0: "0", math.pi / 2: r"$\pi/2$", math.pi: r"$\pi$"})
    else:
        density = torch.diagonal(plaq[index], dim1=-2, dim2=-1).sum(-1).real / U.group.n
        figures["snapshot"] = snapshot_figure(
            _np(density), quantity=r"plaquette density $\mathrm{Re\,tr}\,U_{01}(x) / N$", title=snap_title,
            limits=(float(density.min()), 1.0), cmap="viridis")
    return figures


def ensemble_figures(ens: Ensemble, *, exact: bool = True, flow_time: float = 1.0) -> dict[str, Figure]:
    """The figures of `plot_ensemble`, unsaved, keyed ``hist_mag`` (scalar) or ``hist_plaquette``,
    ``hist_topo`` (gauge, where a charge is defined), ``autocorr``, ``wilson`` (gauge) and ``snapshot``.
    Raises `MissingPlotDependency` (an ``ImportError``) without matplotlib (or scipy with ``exact``),
    ``ValueError`` for an empty ensemble."""
    if ens.n_records == 0:
        raise ValueError(f"{ens.path} holds no records; there is nothing to plot")
    require_plotting(exact=exact)
    title = describe(ens)
    if ens.metadata.kind == "links":
        return _gauge_figures(ens, title, exact=exact, flow_time=flow_time)
    return _scalar_figures(ens, title)


def plot_ensemble(ens: Ensemble, out_dir: str | os.PathLike, *, exact: bool = True,
                  flow_time: float = 1.0) -> list[Path]:
    """Write the standard plots of an ensemble as PNG files ``<out_dir>/<file stem>-<plot>.png``.

    **Arguments:**
    - `ens`: an ensemble with at least one record.
    - `out_dir`: created if missing.
    - `exact`: draw the exact values where known (needs scipy, part of the ``plot`` extra).
    - `flow_time`: Wilson-flow time of the 4D topological charge, as in `measure`.

    **Returns:** the written paths, in the order of `ensemble_figures`. Each file is written atomically.
    Raises as `ensemble_figures`, and ``ValueError`` if `out_dir` is a file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the plot directory {out} exists and is not a directory; choose another --out")
    figures = ensemble_figures(ens, exact=exact, flow_time=flow_time)
    out.mkdir(parents=True, exist_ok=True)
    return [_save(fig, out / f"{ens.path.stem}-{name}.png") for name, fig in figures.items()]


__all__ = ["describe", "ensemble_figures", "plot_ensemble", "require_plotting"]

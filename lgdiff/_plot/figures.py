r"""Figure builders: each takes plain numbers (numpy arrays, `measure` results) and returns a matplotlib
``Figure`` with labelled axes and a title. Nothing here reads files or knows about ensembles
(`lgdiff._plot.ensemble` does); tests inspect the returned figures directly.

matplotlib is an optional dependency (the ``plot`` extra): it is imported when a figure is built,
never when ``lgdiff`` is imported, and only its object-oriented API is used (``Figure`` with the Agg
canvas), never ``pyplot``'s global state.
"""

import math
import typing
from collections.abc import Mapping, Sequence

import numpy as np

from .._stats import Autocorrelation, format_mean_error
from .._stats.estimate import finite_or_nan

PLOT_EXTRA_HINT = "pip install 'lgdiff[plot]'"

Figure: typing.TypeAlias = typing.Any
"""A ``matplotlib.figure.Figure``; typed ``Any`` so that this module imports without matplotlib (optional)."""


class MissingPlotDependency(ImportError):
    """matplotlib (or scipy, for the exact reference lines) is not installed; the message says what to install."""


def new_figure(width: float = 6.4, height: float = 4.6) -> Figure:
    """A ``Figure`` on the Agg canvas (no display needed). Raises `MissingPlotDependency` without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure as MplFigure
    except ImportError:
        raise MissingPlotDependency(
            f"plotting needs matplotlib, which is not installed; install it with {PLOT_EXTRA_HINT}"
        ) from None
    fig = MplFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def integer_bin_edges(values: np.ndarray) -> np.ndarray:
    """Edges ``k - 1/2`` so that every integer ``k`` between min and max has its own bin (topological charge)."""
    lo, hi = math.floor(float(np.min(values)) + 0.5), math.floor(float(np.max(values)) + 0.5)
    return np.arange(lo, hi + 2) - 0.5


def histogram_figure(values: np.ndarray, *, quantity: str, title: str, integer: bool = False,
                     mean: Mapping[str, float | str] | None = None, exact: float | None = None,
                     exact_label: str = "exact", note: str | None = None) -> Figure:
    """Histogram of per-configuration values.

    **Arguments:**
    - `values`: any shape, flattened (all chains and records together).
    - `quantity`: the x-axis label, a name with its definition/units.
    - `integer`: one bin per integer (topological charge); otherwise numpy's ``"auto"`` rule
      (the larger of Sturges and Freedman-Diaconis), at least 10 and at most 80 bins.
    - `mean`: ``{"mean", "error"}`` from `measure`, drawn as a solid line with its error in the legend.
    - `exact`: an exact expectation value, drawn as a dashed line labelled ``"<exact_label> = <exact>"``.
    - `note`: a further line of text in a box (e.g. measured against exact susceptibility).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    fig = new_figure()
    ax = fig.add_subplot()
    if integer:
        bins: np.ndarray | int = integer_bin_edges(values)
    else:
        edges = np.histogram_bin_edges(values, bins="auto")
        bins = int(np.clip(edges.size - 1, 10, 80)) if np.ptp(values) > 0 else 10
    ax.hist(values, bins=bins, color="tab:blue", alpha=0.75, edgecolor="white", linewidth=0.5,
            label=f"{values.size} configurations")
    if mean is not None and math.isfinite(finite_or_nan(mean.get("mean"))):
        m, e = finite_or_nan(mean.get("mean")), finite_or_nan(mean.get("error"))
        ax.axvline(m, color="black", linewidth=1.5, label=f"mean {format_mean_error(m, e)}")
        if math.isfinite(e) and e > 0:
            ax.axvspan(m - e, m + e, color="black", alpha=0.15, linewidth=0)
    if exact is not None:
        ax.axvline(exact, color="tab:red", linestyle="--", linewidth=1.5, label=f"{exact_label} = {exact:.5g}")
    if integer:
        ax.xaxis.get_major_locator().set_params(integer=True)
    if note:
        ax.text(0.02, 0.97, note, transform=ax.transAxes, ha="left", va="top", fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # head room: the legend and note sit above the bars
    ax.set_xlabel(quantity)
    ax.set_ylabel("number of configurations")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9, loc="upper right")
    return fig


def autocorrelation_figure(acf: Autocorrelation | None, *, quantity: str, time_unit: str, title: str,
                           note: str | None = None) -> Figure:
    r"""``rho(t) = Gamma(t) / Gamma(0)`` against Monte Carlo time, with Wolff's window ``W`` marked and
    ``tau_int`` in the legend; ``rho`` is shown up to ``max(4 W, 20)`` (at most ``n/2``).
    With ``acf = None`` (a constant series) the axes carry `note` instead of data."""
    fig = new_figure()
    ax = fig.add_subplot()
    if acf is None:
        ax.text(0.5, 0.5, note or "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        t_max = min(acf.rho.size - 1, max(4 * acf.window, 20))
        t = np.arange(t_max + 1)
        tau = format_mean_error(acf.tau_int, acf.tau_int_error)
        ax.plot(t, acf.rho[: t_max + 1], "o-", markersize=3.5, color="tab:blue",
                label=rf"$\rho(t)$ of {quantity}, $\tau_\mathrm{{int}}$ = {tau}")
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.axvline(acf.window, color="tab:red", linestyle="--", linewidth=1.5,
                   label=f"Gamma-method window W = {acf.window}" + (f" ({note})" if note else ""))
        ax.set_xlim(-0.5, t_max + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=9)
    ax.set_xlabel(f"Monte Carlo time t [{time_unit}]")
    ax.set_ylabel(r"normalised autocorrelation $\rho(t) = \Gamma(t)\,/\,\Gamma(0)$")
    ax.set_title(title, fontsize=10)
    return fig


def wilson_loop_figure(loops: Mapping[tuple[int, int], Mapping[str, float | str]], *, title: str,
                       exact: Mapping[tuple[int, int], float] | None = None,
                       exact_label: str = "exact") -> Figure:
    r"""``<W(R, T)>`` against the loop area ``R T`` on a logarithmic axis (area law: a straight line),
    measured points with errors and, where given, the exact values as a dashed line with crosses.
    Points whose mean is not positive cannot be drawn on the log axis; their number is stated in the legend."""
    fig = new_figure()
    ax = fig.add_subplot()
    keys = sorted(loops, key=lambda rt: (rt[0] * rt[1], rt))
    area = np.array([r * t for r, t in keys], dtype=np.float64)
    mean = np.array([finite_or_nan(loops[k].get("mean")) for k in keys])
    err = np.array([finite_or_nan(loops[k].get("error")) for k in keys])
    shown = np.isfinite(mean) & (mean > 0)
    hidden = int((~shown).sum())
    label = "measured" + (f" ({hidden} loop{'s' if hidden > 1 else ''} with mean <= 0 not shown)" if hidden else "")
    ax.errorbar(area[shown], mean[shown], yerr=np.where(np.isfinite(err), err, 0.0)[shown], fmt="o",
                color="tab:blue", capsize=3, markersize=5, label=label)
    names: dict[float, list[str]] = {}  # loops of equal area (1x4, 2x2) share one label
    for k, a, s in zip(keys, area, shown):
        if s:
            names.setdefault(float(a), []).append(f"{k[0]}x{k[1]}")
    for a, label_text in names.items():
        top = float(np.max(mean[shown & (area == a)]))
        ax.annotate(", ".join(label_text), (a, top), textcoords="offset points", xytext=(6, 4), fontsize=7)
    if exact:
        ex_keys = sorted(exact, key=lambda rt: (rt[0] * rt[1], rt))
        ax.plot([r * t for r, t in ex_keys], [exact[k] for k in ex_keys], "x--", color="tab:red",
                markersize=7, linewidth=1.2, label=exact_label)
    ax.set_yscale("log")
    ax.set_xlabel(r"loop area $R \times T$ [plaquettes, $a^2$]")
    ax.set_ylabel(r"Wilson loop $\langle W(R,T) \rangle = \langle \mathrm{Re\,tr}\,W / N \rangle$")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9)
    return fig


def snapshot_figure(field: np.ndarray, *, quantity: str, title: str, axis_names: Sequence[str] = ("x_0", "x_1"),
                    limits: tuple[float, float] | None = None, cmap: str = "RdBu_r",
                    ticks: Mapping[float, str] | None = None) -> Figure:
    """One configuration: a 2D array ``field[x_0, x_1]`` as an image (``x_0`` horizontal, colour bar labelled
    `quantity`), or a 1D array as a line. `limits` fixes the colour range (default: symmetric about 0);
    `ticks` maps colour-bar values to labels (e.g. multiples of pi for an angle)."""
    field = np.asarray(field, dtype=np.float64)
    if field.ndim not in (1, 2):
        raise ValueError(f"snapshot_figure draws a 1D or 2D array; got shape {field.shape}. Slice it first")
    fig = new_figure(6.0, 5.0) if field.ndim == 2 else new_figure()
    ax = fig.add_subplot()
    if field.ndim == 1:
        ax.plot(np.arange(field.size), field, "o-", markersize=3)
        ax.set_xlabel(f"${axis_names[0]}$ [lattice units a]")
        ax.set_ylabel(quantity)
        ax.xaxis.get_major_locator().set_params(integer=True)  # sites are integers
    else:
        if limits is None:
            bound = float(np.max(np.abs(field))) or 1.0
            limits = (-bound, bound)
        image = ax.imshow(field.T, origin="lower", cmap=cmap, vmin=limits[0], vmax=limits[1],
                          extent=(-0.5, field.shape[0] - 0.5, -0.5, field.shape[1] - 0.5), interpolation="nearest")
        bar = fig.colorbar(image, ax=ax, label=quantity, shrink=0.9)
        if ticks:
            bar.set_ticks(list(ticks), labels=list(ticks.values()))
        ax.set_xlabel(f"${axis_names[0]}$ [lattice units a]")
        ax.set_ylabel(f"${axis_names[1]}$ [lattice units a]")
        for axis in (ax.xaxis, ax.yaxis):  # sites are integers
            axis.get_major_locator().set_params(integer=True)
    ax.set_title(title, fontsize=10)
    return fig


__all__ = [
    "MissingPlotDependency",
    "autocorrelation_figure",
    "histogram_figure",
    "integer_bin_edges",
    "new_figure",
    "snapshot_figure",
    "wilson_loop_figure",
]

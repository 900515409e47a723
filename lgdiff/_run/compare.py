r"""``lgdiff compare``: the observables of two ensembles of one theory side by side, with the difference in sigma.

Both ensembles are measured exactly as ``lgdiff measure`` does (`measure`: Wolff's Gamma method with
tau_int, or chains as independent samples where the chains are too short). For every observable that
both produce, the difference ``A - B`` and its significance

$$ \sigma = \frac{\bar A - \bar B}{\sqrt{\delta A^2 + \delta B^2}} $$

(independent ensembles: errors added in quadrature) are reported; ``|sigma| > 2`` and ``|sigma| > 4``
are marked. The typical use is a diffusion model against HMC on the same lattice and couplings;
different lattice sizes or couplings are allowed but flagged, since the observables then differ for
physical reasons.
"""

import math
import typing
from collections.abc import Mapping

import attrs

from .._io.ensemble import Ensemble, EnsembleMetadata
from .._stats import format_mean_error
from .._stats.estimate import finite_or_nan
from .measure import Result, measure

NOT_COMPARED = ("acceptance",)
"""Keys of `measure` that describe the algorithm, not the theory: never compared."""


@typing.final
@attrs.frozen
class ObservableComparison:
    """One observable of two ensembles: ``a`` and ``b`` as `measure` reports them (``mean``, ``error``,
    ``tau_int``), ``diff = mean_a - mean_b`` and ``sigma = diff / sqrt(error_a^2 + error_b^2)``.

    ``sigma`` is NaN when an error is unknown (NaN), ``+-inf`` when both errors are 0 and the means differ,
    and 0 when both are exact and equal.

    >>> c = ObservableComparison.of({"mean": 1.0, "error": 0.3}, {"mean": 0.5, "error": 0.4})
    >>> c.diff, c.diff_error, round(c.sigma, 12), c.flag
    (0.5, 0.5, 1.0, '')
    """

    a: Result
    b: Result
    diff: float = attrs.field(converter=float)
    diff_error: float = attrs.field(converter=float)
    sigma: float = attrs.field(converter=float)

    @classmethod
    def of(cls, a: Mapping[str, float | str], b: Mapping[str, float | str]) -> "ObservableComparison":
        """Compare two `measure` results (mappings with at least ``mean`` and ``error``)."""
        for label, r in (("a", a), ("b", b)):
            if "mean" not in r or "error" not in r:
                raise ValueError(f"ObservableComparison.of needs results with 'mean' and 'error' (as measure() "
                                 f"returns them); got keys {sorted(r)} for {label}")
        mean_a, mean_b = finite_or_nan(a["mean"]), finite_or_nan(b["mean"])
        err_a, err_b = finite_or_nan(a["error"]), finite_or_nan(b["error"])
        diff = mean_a - mean_b
        diff_error = math.hypot(err_a, err_b)
        if math.isnan(diff) or math.isnan(diff_error):
            sigma = math.nan
        elif diff_error == 0:
            sigma = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        else:
            sigma = diff / diff_error
        return cls(a=dict(a), b=dict(b), diff=diff, diff_error=diff_error, sigma=sigma)

    @property
    def flag(self) -> str:
        """``"**"`` for ``|sigma| > 4``, ``"*"`` for ``|sigma| > 2``, else ``""`` (also for an unknown sigma)."""
        if math.isnan(self.sigma):
            return ""
        return "**" if abs(self.sigma) > 4 else "*" if abs(self.sigma) > 2 else ""

    def to_dict(self) -> dict[str, object]:
        """``{"a": {...}, "b": {...}, "diff": .., "diff_error": .., "sigma": .., "flag": ..}``."""
        return {"a": dict(self.a), "b": dict(self.b), "diff": self.diff, "diff_error": self.diff_error,
                "sigma": self.sigma, "flag": self.flag}


def _describe(meta: EnsembleMetadata) -> str:
    what = meta.theory if meta.group is None else f"{meta.theory} ({meta.group})"
    return f"{what} in D = {len(meta.lattice)}"


def check_comparable(a: EnsembleMetadata, b: EnsembleMetadata, *, a_name: str = "A",
                     b_name: str = "B") -> list[str]:
    """Refuse two ensembles of different theories (`ValueError`); return warning lines for differences
    that are allowed but change the physics: lattice sizes (finite-volume effects) and couplings."""
    if (a.kind, a.theory, a.group, len(a.lattice)) != (b.kind, b.theory, b.group, len(b.lattice)):
        raise ValueError(f"{a_name} and {b_name} are ensembles of different theories: {_describe(a)} vs "
                         f"{_describe(b)}; compare two ensembles of the same theory, group and dimension")
    warnings = []
    if a.lattice != b.lattice:
        warnings.append(f"note: lattice sizes differ, {a_name} L = {list(a.lattice)}, {b_name} L = "
                        f"{list(b.lattice)}: finite-volume effects enter the differences")
    coupling = {k: v for k, v in a.differences(b).items() if k.startswith("params.")}
    if coupling:
        what = ", ".join(f"{k.removeprefix('params.')} = {x} vs {y}" for k, (x, y) in coupling.items())
        warnings.append(f"warning: couplings differ ({what}): the observables differ physically; comparing "
                        f"different couplings is usually a mistake")
    return warnings


@typing.final
@attrs.frozen
class EnsembleComparison:
    """The result of `compare`: the files, warning lines, and one `ObservableComparison` per shared observable
    (in `measure`'s order)."""

    a_file: str
    b_file: str
    warnings: tuple[str, ...] = attrs.field(converter=tuple)
    observables: dict[str, ObservableComparison]

    @property
    def worst_sigma(self) -> float:
        """The largest finite-or-infinite ``|sigma|`` (NaN if no observable has a known sigma)."""
        known = [abs(c.sigma) for c in self.observables.values() if not math.isnan(c.sigma)]
        return max(known) if known else math.nan

    def to_dict(self) -> dict[str, object]:
        """``{observable: {"a", "b", "diff", "diff_error", "sigma", "flag"}, ..., "a_file", "b_file", "warnings"}``."""
        out: dict[str, object] = {name: c.to_dict() for name, c in self.observables.items()}
        out.update(a_file=self.a_file, b_file=self.b_file, warnings=list(self.warnings))
        return out

    def table(self) -> list[str]:
        """Human-readable lines: header, one row per observable, legend."""
        lines = [f"{'observable':>20}  {'A':>16}  {'B':>16}  {'A - B':>16}  {'sigma':>7}"]
        for name, c in self.observables.items():
            cells = [format_mean_error(c.a.get("mean"), c.a.get("error")), format_mean_error(c.b.get("mean"), c.b.get("error")),
                     format_mean_error(c.diff, c.diff_error)]
            sigma = "n/a" if math.isnan(c.sigma) else f"{c.sigma:+.2f}"
            lines.append(f"{name:>20}  {cells[0]:>16}  {cells[1]:>16}  {cells[2]:>16}  {sigma:>7} {c.flag}".rstrip())
        lines.append("sigma = (A - B) / sqrt(err_A^2 + err_B^2);  * |sigma| > 2,  ** |sigma| > 4")
        return lines


def compare(a: Ensemble, b: Ensemble, *, flow_time: float = 1.0) -> EnsembleComparison:
    """Measure both ensembles as `measure` does and compare every observable they share.

    **Arguments:**
    - `a`, `b`: ensembles of the same theory, group and dimension (else `ValueError`); lattice sizes and
      couplings may differ (reported in ``warnings``).
    - `flow_time`: Wilson-flow time of the 4D topological charge, as in `measure`.

    **Returns:** an `EnsembleComparison`; ``acceptance`` (a property of the algorithm) is not compared.
    """
    warnings = check_comparable(a.metadata, b.metadata, a_name=f"A ({a.path})", b_name=f"B ({b.path})")
    for label, ens in (("A", a), ("B", b)):
        if ens.n_records == 0:
            raise ValueError(f"{label} ({ens.path}) holds no records; generate some first")
    results_a, results_b = measure(a, flow_time=flow_time), measure(b, flow_time=flow_time)
    shared = [k for k in results_a if k in results_b and k not in NOT_COMPARED]
    return EnsembleComparison(a_file=str(a.path), b_file=str(b.path), warnings=warnings,
                              observables={k: ObservableComparison.of(results_a[k], results_b[k]) for k in shared})


__all__ = ["EnsembleComparison", "ObservableComparison", "check_comparable", "compare"]

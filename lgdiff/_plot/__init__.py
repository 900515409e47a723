"""Plots of ensembles (matplotlib, the optional ``plot`` extra; imported only when a figure is built)."""

from .ensemble import describe as describe
from .ensemble import ensemble_figures as ensemble_figures
from .ensemble import plot_ensemble as plot_ensemble
from .ensemble import require_plotting as require_plotting
from .figures import MissingPlotDependency as MissingPlotDependency
from .figures import autocorrelation_figure as autocorrelation_figure
from .figures import histogram_figure as histogram_figure
from .figures import snapshot_figure as snapshot_figure
from .figures import wilson_loop_figure as wilson_loop_figure

__all__ = [
    "MissingPlotDependency",
    "autocorrelation_figure",
    "describe",
    "ensemble_figures",
    "histogram_figure",
    "plot_ensemble",
    "require_plotting",
    "snapshot_figure",
    "wilson_loop_figure",
]

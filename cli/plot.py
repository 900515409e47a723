"""``lgdiff plot FILE``: the standard plots of an ensemble as PNG files."""

from pathlib import Path

import click

from cli._files import load_ensemble
from lgdiff._io.ensemble import Ensemble
from lgdiff._plot import MissingPlotDependency, plot_ensemble, require_plotting
from cli._common import _user_errors


def write_plots(ens: Ensemble, out: Path, *, exact: bool = True, err: bool = False) -> list[Path]:
    """Plot `ens` into `out` and print the written files (to stderr with ``err=True``, e.g. after JSON output).
    A missing matplotlib/scipy becomes a one-line ``ClickException``."""
    try:
        paths = plot_ensemble(ens, out, exact=exact)
    except MissingPlotDependency as e:
        raise click.ClickException(str(e)) from None
    for path in paths:
        click.echo(str(path), err=err)
    return paths


def check_plotting(plot_dir: Path | None) -> None:
    """Before a long run with ``--plot DIR``: fail now, not after the run, if plotting is impossible."""
    if plot_dir is None:
        return
    try:
        require_plotting()
    except MissingPlotDependency as e:
        raise click.ClickException(str(e)) from None
    if plot_dir.exists() and not plot_dir.is_dir():
        raise click.UsageError(f"--plot {plot_dir} exists and is not a directory; choose a directory")


@click.command("plot")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the PNG files (default: <FILE without suffix>-plots next to FILE).")
@click.option("--exact/--no-exact", default=True, show_default=True,
              help="Draw exact values where known (2D U(1); 2D SU(N) in infinite volume).")
def plot_cmd(file: Path, out: Path | None, exact: bool) -> None:
    """Write PNG plots of FILE: histograms (magnetisation; plaquette and topological charge), the
    autocorrelation function of |M| or the plaquette with the Gamma-method window, Wilson loops against
    the exact values where known, and a configuration snapshot. Prints the files written."""

    with _user_errors():
        ens = load_ensemble(file)
        write_plots(ens, out if out is not None else file.with_name(f"{file.stem}-plots"), exact=exact)

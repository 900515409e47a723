"""``lgdiff compare A B``: the observables of two ensembles side by side, with the difference in sigma."""

import json
from pathlib import Path

import click

from cli._files import load_ensemble
from lgdiff._run.compare import compare
from cli._common import _clean, _user_errors


@click.command("compare")
@click.argument("a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--flow-time", type=float, default=1.0, show_default=True,
              help="Wilson-flow time for the 4D topological charge (as in lgdiff measure).")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object: {observable: {"a", "b", "diff", "sigma", ...}, "a_file", "b_file", "warnings"}.')
def compare_cmd(a: Path, b: Path, flow_time: float, as_json: bool) -> None:
    """Compare two ensembles of one theory (e.g. a diffusion model against HMC).

    Every observable of `lgdiff measure` that both files have is shown as A, B, A - B and
    sigma = (A - B) / sqrt(err_A^2 + err_B^2) (Gamma-method errors, tau_int included);
    * marks |sigma| > 2 and ** |sigma| > 4. Different lattice sizes or couplings are allowed and flagged.
    """

    with _user_errors():
        ens_a, ens_b = load_ensemble(a), load_ensemble(b)
        result = compare(ens_a, ens_b, flow_time=flow_time)
    if as_json:
        for line in result.warnings:  # also in the JSON ("warnings"); stderr keeps stdout one JSON object
            click.echo(line, err=True)
        click.echo(json.dumps(_clean(result.to_dict())))
        return
    for label, ens in (("A", ens_a), ("B", ens_b)):
        m = ens.metadata
        click.echo(f"{label}: {ens.path}  {m.theory} {m.params} L={list(m.lattice)} {m.algorithm}: "
                   f"{ens.n_records} records x {ens.chains} chains")
    for line in result.warnings:
        click.echo(line)
    for line in result.table():
        click.echo(line)

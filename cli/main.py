"""``lgdiff`` command line. Parse, build library objects, call one library function, print."""

import json
import platform

import click
import torch

import lgdiff


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(lgdiff.__version__, prog_name="lgdiff")
def cli() -> None:
    """lgdiff: lattice field theory with diffusion models."""


@cli.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info_cmd(as_json: bool) -> None:
    """What this installation is: version, groups, torch and devices."""
    report = {
        "lgdiff": lgdiff.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "groups": ["U(1)", "SU(2)", "SU(3)", "SU(N)"],
        "theories": ["phi4", "u1", "su2", "su3"],
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    for key, value in report.items():
        click.echo(f"{key:>15}: {value}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()

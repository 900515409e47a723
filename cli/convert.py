"""``lgdiff convert``: lgdiff ensembles <-> NERSC / ILDG gauge configurations."""

import shlex
from pathlib import Path

import click

from lgdiff._io.convert import export_ensemble, format_of, import_configs, sniff_format
from lgdiff._io.ensemble import Ensemble
from cli._common import _user_errors

_HELP = """Convert gauge configurations between lgdiff ensembles and NERSC / ILDG files.

\b
  lgdiff convert ens.safetensors 'cfg.c{chain}.{index}.nersc'   ensemble -> one NERSC file per config
  lgdiff convert ens.safetensors cfg.lime --record -1           the last record (one chain) -> ILDG
  lgdiff convert cfg.*.nersc --beta 6.0 ens.safetensors         NERSC / ILDG files -> one ensemble

The last argument is the output. Exporting an ensemble writes one file per configuration: OUT is a
pattern with {index} (the record's trajectory number, needed for several records) and {chain}
(needed for several chains). Importing reads one or more NERSC / ILDG files (format from their
content) into a new ensemble of one chain, a record per file, ordered by the files' trajectory numbers.
The output format comes from the suffix of OUT (.safetensors: lgdiff, .nersc/.cfg: nersc,
.lime/.ildg: ildg) unless --format is given. Only SU(3) on 4D lattices (these formats' scope).
"""


def _command_line(inputs: tuple[Path, ...], out: Path, options: dict[str, object]) -> str:
    parts = ["lgdiff", "convert", *map(str, inputs), str(out)]
    for name, value in options.items():
        if value is not None:
            parts += [f"--{name}", str(value)]
    return " ".join(shlex.quote(p) for p in parts)


@click.command("convert", help=_HELP)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", metavar="[nersc|ildg|lgdiff]", help="Output format (default: from the suffix of OUT).")
@click.option("--precision", metavar="[single|double]", default="double", show_default=True,
              help="Floating-point precision of NERSC / ILDG output.")
@click.option("--record", type=int, help="Export only this record (negative counts from the end).")
@click.option("--storage", metavar="[3x3|3x2]", default="3x3", show_default=True, help="NERSC matrix storage.")
@click.option("--endian", metavar="[big|little]", default="big", show_default=True, help="NERSC byte order.")
@click.option("--beta", type=float, help="Coupling of imported files that do not record it (else recorded as unknown).")
@click.option("--ensemble-id", help="ENSEMBLE_ID of exported files (default: from the ensemble).")
def convert_cmd(inputs: tuple[Path, ...], out: Path, fmt: str | None, precision: str, record: int | None,
                storage: str, endian: str, beta: float | None, ensemble_id: str | None) -> None:

    try:
        with _user_errors():
            _convert(inputs, out, fmt, precision, record, storage, endian, beta, ensemble_id)
    except OSError as e:  # a directory where a file should be, no permission, a full disk
        raise click.ClickException(f"{e.filename or out}: {e.strerror or e}") from None


def _convert(inputs: tuple[Path, ...], out: Path, fmt: str | None, precision: str, record: int | None,
             storage: str, endian: str, beta: float | None, ensemble_id: str | None) -> None:
    for name, value, allowed in (("--precision", precision, ("single", "double")),
                                 ("--storage", storage, ("3x3", "3x2")), ("--endian", endian, ("big", "little"))):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    out_fmt = format_of(out, fmt)
    in_fmts = [sniff_format(p) for p in inputs]
    if out_fmt == "lgdiff":
        if "lgdiff" in in_fmts:
            raise ValueError("converting to an lgdiff ensemble needs NERSC or ILDG inputs; got an lgdiff ensemble")
        command = _command_line(inputs, out, {"format": fmt, "beta": beta})
        ens = import_configs(inputs, out, beta=beta, command=command)
        beta_value = ens.metadata.params["beta"]
        coupling = (f"beta = {beta_value}" if beta_value is not None
                    else "beta unknown (the files do not record it; give --beta to record it)")
        click.echo(f"wrote {out}: {ens.n_records} configurations of SU(3) on L={ens.metadata.lattice}, {coupling}")
        return
    if in_fmts != ["lgdiff"]:
        raise ValueError(f"converting to {out_fmt} needs one lgdiff ensemble (*.safetensors) as input; got "
                         f"{len(inputs)} file(s) of format {', '.join(in_fmts)}")
    files = export_ensemble(Ensemble.load(inputs[0]), str(out), fmt=out_fmt, precision=precision, record=record,
                            storage=storage, endian=endian, ensemble_id=ensemble_id)
    click.echo(f"wrote {len(files)} {out_fmt} file(s): {files[0]}" + (f" .. {files[-1]}" if len(files) > 1 else ""))

"""Conversion between lgdiff ensembles and the community SU(3) formats (NERSC, ILDG): `lgdiff convert`.

- ensemble -> NERSC / ILDG: one file per configuration (record t, chain c), named by a pattern with
  the placeholders ``{index}`` (the record's trajectory number) and ``{chain}``; the files carry beta,
  the trajectory number (NERSC ``SEQUENCE_NUMBER``) and an ensemble id.
- NERSC / ILDG -> ensemble: one or several files into one ensemble of one chain, a record per file,
  with theory ``su3``, the beta of the files (or the one given; ``None``, unknown, if neither has one),
  algorithm ``imported:<format>`` and the source file names in ``settings["sources"]``.
"""

import os
import string
import typing
from collections.abc import Sequence
from pathlib import Path

import attrs
import torch

from .._fields.links import LinkField
from .._groups.sun import SU
from .ensemble import SUFFIX, Ensemble, EnsembleMetadata, EnsembleWriter
from .ildg import IldgError, read_ildg, write_ildg
from .lime import MAGIC
from .nersc import NerscError, read_nersc, write_nersc

FORMATS = ("lgdiff", "nersc", "ildg")
SUFFIX_FORMATS = {SUFFIX: "lgdiff", ".nersc": "nersc", ".cfg": "nersc", ".lime": "ildg", ".ildg": "ildg"}
PLACEHOLDERS = ("index", "chain")
IMPORTED = "imported:"
"""Prefix of the ``algorithm`` of an imported ensemble (``imported:nersc``): no chain to continue."""


class ConvertError(ValueError):
    """A conversion cannot be done as asked; the message says why and what to do."""


def format_of(path: str | os.PathLike, given: str | None = None) -> str:
    """``given`` if set (checked), else the format named by the suffix of ``path``."""
    if given is not None:
        if given not in FORMATS:
            raise ConvertError(f"unknown format {given!r}; expected one of {', '.join(FORMATS)}")
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        known = ", ".join(f"{s} ({f})" for s, f in SUFFIX_FORMATS.items())
        raise ConvertError(f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}; use one of {known} "
                           f"or give --format")
    return SUFFIX_FORMATS[suffix]


def sniff_format(path: str | os.PathLike) -> str:
    """The format of an existing file from its first bytes: ``nersc``, ``ildg`` or ``lgdiff``."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file; check the path")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"BEGIN_HEADER"):
        return "nersc"
    if head[:4] == MAGIC.to_bytes(4, "big"):
        return "ildg"
    if path.suffix == SUFFIX:
        return "lgdiff"
    raise ConvertError(f"{path} is neither a NERSC (BEGIN_HEADER), an ILDG/LIME (magic 0x456789ab) nor an lgdiff "
                       f"ensemble (*{SUFFIX}) file; give a gauge configuration file")


def _check_pattern(pattern: str, *, records: int, chains: int) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as e:
        raise ConvertError(f"output pattern {pattern!r} is not a valid pattern ({e}); use e.g. cfg.{{index}}.nersc") from None
    unknown = sorted(names - set(PLACEHOLDERS))
    if unknown:
        raise ConvertError(f"output pattern {pattern!r} has unknown placeholders {unknown}; use {{index}} (trajectory "
                           f"number) and {{chain}}")
    if records > 1 and "index" not in names:
        raise ConvertError(f"{records} records go to separate files: the output {pattern!r} needs an {{index}} "
                           f"placeholder (e.g. cfg.{{index}}.nersc), or pick one record with --record")
    if chains > 1 and "chain" not in names:
        raise ConvertError(f"the ensemble has {chains} chains: the output {pattern!r} needs a {{chain}} placeholder "
                           f"(e.g. cfg.c{{chain}}.{{index}}.nersc)")


def export_ensemble(ensemble: Ensemble, pattern: str, *, fmt: str, precision: str = "double",
                    record: int | None = None, storage: str = "3x3", endian: str = "big",
                    ensemble_id: str | None = None) -> list[Path]:
    """Write the configurations of an SU(3) 4D ensemble as NERSC or ILDG files, one per configuration.

    **Arguments:**
    - `pattern`: the output path with ``{index}`` (trajectory number) and ``{chain}`` placeholders,
      required when more than one record / chain is written.
    - `fmt`: ``"nersc"`` or ``"ildg"``; `precision`: ``"single"`` or ``"double"``.
    - `record`: write only record ``record`` (negative counts from the end); all records if ``None``.
    - `storage`, `endian`: NERSC only (see `write_nersc`).
    - `ensemble_id`: default ``settings["ensemble_id"]`` of an imported ensemble, else
      ``lgdiff-<theory>-seed<seed>``.

    **Returns:** the files written, in (record, chain) order.
    """
    meta = ensemble.metadata
    if fmt not in ("nersc", "ildg"):
        raise ConvertError(f"an ensemble exports to 'nersc' or 'ildg'; got {fmt!r}")
    if meta.group != str(SU(3)) or len(meta.lattice) != 4:
        raise ConvertError(f"{ensemble.path} holds {meta.group or 'scalar'} fields on L={meta.lattice}; {fmt.upper()} "
                           f"files hold SU(3) links on a 4D lattice")
    if record is not None and not -ensemble.n_records <= record < ensemble.n_records:
        raise ConvertError(f"--record {record} is out of range: {ensemble.path} has {ensemble.n_records} records "
                           f"(0..{ensemble.n_records - 1}, or negative from the end)")
    records = range(ensemble.n_records) if record is None else [record % ensemble.n_records]
    if not records:
        raise ConvertError(f"{ensemble.path} holds no records; nothing to convert")
    _check_pattern(pattern, records=len(records), chains=meta.chains)
    beta = _number(meta.params.get("beta"))
    if ensemble_id is None:
        stored_id = meta.settings.get("ensemble_id")
        ensemble_id = stored_id if isinstance(stored_id, str) and stored_id else f"lgdiff-{meta.theory}-seed{meta.seed}"
    written: list[Path] = []
    for t in records:
        index = int(ensemble.index[t])
        links = ensemble.record(t)
        assert isinstance(links, LinkField)
        for c in range(meta.chains):
            out = Path(pattern.format(index=index, chain=c))
            try:
                if fmt == "nersc":
                    write_nersc(out, links[c], precision=precision, storage=storage, endian=endian,
                                ensemble_id=ensemble_id, ensemble_label=f"chain {c}", sequence_number=index,
                                beta=beta)
                else:
                    info = {"ensemble_id": ensemble_id, "sequence_number": index, "chain": c, "theory": meta.theory}
                    if beta is not None:
                        info["beta"] = beta
                    write_ildg(out, links[c], precision=precision, metadata=info)
            except (NerscError, IldgError) as e:
                done = f"the {len(written)} files before it were written" if written else "no file was written"
                raise ConvertError(f"record {t} (trajectory {index}) chain {c} of {ensemble.path}: {e} ({done})") from None
            written.append(out)
    return written


@typing.final
@attrs.frozen
class _Imported:
    """One NERSC or ILDG file as read, with the metadata it records."""

    path: Path
    fmt: str
    links: LinkField
    beta: float | None
    sequence_number: int | None
    ensemble_id: str | None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read_any(path: Path) -> _Imported:
    fmt = sniff_format(path)
    if fmt == "nersc":
        links, header = read_nersc(path)
        beta_text, seq_text = header.get("BETA"), header.get("SEQUENCE_NUMBER", "")
        try:
            beta = float(beta_text) if beta_text is not None else None
        except ValueError:
            raise ConvertError(f"{path}: BETA = {beta_text!r} is not a number; fix the header or give --beta") from None
        seq = int(seq_text) if seq_text.isdigit() else None
        return _Imported(path, fmt, links, beta, seq, header.get("ENSEMBLE_ID") or None)
    if fmt == "ildg":
        links, info = read_ildg(path)
        meta = info["metadata"]
        assert isinstance(meta, dict)
        seq, eid = meta.get("sequence_number"), meta.get("ensemble_id")
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None
        return _Imported(path, fmt, links, _number(meta.get("beta")), seq, eid if isinstance(eid, str) and eid else None)
    raise ConvertError(f"{path} is an lgdiff ensemble; convert it to NERSC/ILDG, or give NERSC/ILDG inputs")


def import_configs(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, beta: float | None = None,
                   command: str | None = None) -> Ensemble:
    """Read NERSC / ILDG files (format from their content) into one new lgdiff ensemble ``out``.

    Every file is one record of a single chain. The record index is the file's trajectory number (NERSC
    ``SEQUENCE_NUMBER``, ILDG ``lgdiff-metadata`` ``sequence_number``) when every file has one and they
    are distinct (records sorted by it); otherwise 0, 1, ... in the order given. Imported
    configurations have no acceptance (recorded as 1) and no generator state (a fresh generator's):
    the ensemble can be measured, not continued.

    **Arguments:**
    - `beta`: the coupling; it must agree with the files' when they record one (NERSC ``BETA``, lgdiff's
      ILDG metadata). When neither gives it, beta is recorded as unknown (``params = {"beta": None}``):
      measuring needs no coupling, and what does (training a model) refuses such an ensemble.
    - `command`: provenance, e.g. the command line.
    """
    if not paths:
        raise ConvertError("give at least one NERSC or ILDG file to import")
    out = Path(out)
    if out.suffix != SUFFIX:
        raise ConvertError(f"an lgdiff ensemble is named *{SUFFIX}; got {str(out)!r}")
    if out.exists():
        raise ConvertError(f"{out} exists; choose another output or delete it (imports never append)")
    files = [_read_any(Path(p)) for p in paths]
    first = files[0]
    for f in files[1:]:
        if f.links.lattice != first.links.lattice or f.links.data.dtype != first.links.data.dtype:
            raise ConvertError(f"{f.path} holds L={f.links.lattice.shape} {f.links.data.dtype}, but {first.path} holds "
                               f"L={first.links.lattice.shape} {first.links.data.dtype}; import files of one "
                               f"ensemble together")
    betas = {f.beta for f in files if f.beta is not None} | ({float(beta)} if beta is not None else set())
    if len(betas) > 1:
        raise ConvertError(f"the files and --beta disagree on beta: {sorted(betas)}; import one ensemble at a time")
    numbered = [f.sequence_number for f in files if f.sequence_number is not None]
    if len(numbered) == len(files) and len(set(numbered)) == len(files):
        files = sorted(files, key=lambda f: f.sequence_number or 0)
        index = sorted(numbered)
    else:
        index = list(range(len(files)))
    formats = sorted({f.fmt for f in files})
    ids = sorted({f.ensemble_id for f in files if f.ensemble_id is not None})
    meta = EnsembleMetadata(
        kind="links", theory="su3", group=str(SU(3)), lattice=first.links.lattice.shape,
        params={"beta": betas.pop() if betas else None},
        algorithm=IMPORTED + "+".join(formats),
        settings={"sources": ", ".join(f.path.name for f in files), "ensemble_id": ", ".join(ids)},
        seed=0, chains=1, dtype=str(first.links.data.dtype).removeprefix("torch."), command=command)
    rng = torch.Generator().get_state()
    with EnsembleWriter.open(out, meta, flush_every=len(files)) as writer:
        for f, k in zip(files, index):
            writer.append(f.links, k, torch.ones(1, dtype=torch.float64), rng)
    return Ensemble.load(out)

"""Ensembles of configurations on disk: one safetensors file per ensemble, appended as a chain runs.

The format is specified in ``docs/file-format.md``. In short, a file holds five tensors,

- ``configs``    ``[T, C, *field]``: T records in time of C independent chains; ``field`` is ``[*L]``
  for a real scalar field and ``[D, *L, N, N, 2]`` for links (complex numbers stored as real pairs,
  ``torch.view_as_real``); float32 or float64;
- ``index``      ``[T]`` int64: the trajectory / sweep number of each record, strictly increasing;
- ``acceptance`` ``[T, C]`` float64: acceptance per chain, averaged over the steps since the last record;
- ``crc32``      ``[T]`` int64: the CRC-32 of each record's bytes (configs, index, acceptance);
- ``rng_state``  ``[S]`` uint8: ``torch.Generator.get_state()`` right after the last record;

and the safetensors metadata key ``"lgdiff"``, whose value is a JSON object (`EnsembleMetadata`).

Appending costs one record: while a writer runs, each flush appends the new records as one safetensors blob
(a *frame*) to the file's journal, ``.<name>.<id>.lgdiff-journal`` next to it, and fsyncs it; the file itself
is written once at the first flush and rewritten (atomically: temporary file, fsync, ``os.replace``) only when
the writer closes, which folds the journal into it and removes the journal. A reader sees the file plus the
complete frames of its journal as one ensemble. A kill at any moment leaves the file and a prefix of the frames
(an incomplete last frame is ignored and cut off by the next writer); a kill loses at most the records appended
since the last flush. A lock file, ``.<name>.lgdiff-lock``, keeps a second writer off the file while one is open.

Every record is checked when it is read (`Ensemble.configs`, `Ensemble.record`, `Ensemble.series`; and all of
them when a writer continues a file): its checksum, finiteness, and for links membership of the group within a
tolerance of the dtype. A failure is an `EnsembleError` naming the file and the record.

Resumption assumes that the writer is given the chain state after each kept step: the last record *is*
the state of every chain at that point, and together with ``rng_state`` it continues the same Markov
chain bit for bit (`ResumePoint`, `lgdiff.generate_ensemble`).
"""

import contextlib
import datetime
import glob
import json
import math
import os
import secrets
import tempfile
import typing
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version as _package_version
from pathlib import Path

import attrs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .._fields.links import LinkField
from .._fields.scalar import Field
from .._geometry.lattice import MAX_DIM, Lattice
from .._groups.base import AbstractGroup
from .._groups.names import group_from_name
from .._samplers.base import AbstractKernel
from ._store import (
    O_BINARY,
    SAFETENSORS_DTYPES,
    BlobTensor,
    Busy,
    TornBlob,
    WriterLock,
    blob_header,
    pread,
    read_blob_header,
    read_tensor,
    tensor_bytes,
    write_all,
)

FORMAT = "lgdiff.ensemble"
FORMAT_VERSION = 2
METADATA_KEY = "lgdiff"
SUFFIX = ".safetensors"
_TMP_SUFFIX = ".lgdiff-tmp"

JSONScalar = float | int | str | bool | None

_DTYPES = {"float32": torch.float32, "float64": torch.float64,
           "complex64": torch.complex64, "complex128": torch.complex128}
_KIND_DTYPES = {"scalar": ("float32", "float64"), "links": ("complex64", "complex128")}
_STORED_DTYPES = {"float32": torch.float32, "float64": torch.float64,
                  "complex64": torch.float32, "complex128": torch.float64}
_CHAIN_KEYS = ("kind", "theory", "group", "lattice", "params", "algorithm", "settings", "seed", "chains", "dtype")
"""The keys that define the Markov chain: two files may be continued into one only if these agree."""


class EnsembleError(ValueError):
    """An ensemble file cannot be read, written or appended to as asked; the message says why and what to do."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _lgdiff_version() -> str:
    try:
        return _package_version("lgdiff")
    except PackageNotFoundError:  # a source tree without installation (lgdiff/__init__.py does the same)
        return "0.0.0+unknown"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---- metadata -----------------------------------------------------------------------------------

def _sorted_mapping(value: object) -> object:
    """Converter: a sorted plain-dict copy of a mapping (floats as plain floats); anything else unchanged."""
    if not isinstance(value, Mapping):
        return value
    items = sorted(value.items(), key=lambda kv: str(kv[0]))
    return {k: float(v) if isinstance(v, float) else v for k, v in items}


def _check_mapping(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"EnsembleMetadata.{attribute.name} must be a dict of str to JSON scalars; "
                        f"got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str):
            raise TypeError(f"EnsembleMetadata.{attribute.name} keys must be str; got {k!r}")
        if v is not None and not isinstance(v, (bool, int, float, str)):
            raise TypeError(f"EnsembleMetadata.{attribute.name}[{k!r}] must be a float, int, str, bool or None; "
                            f"got {type(v).__name__} {v!r}. Convert tensors and numpy values with float() or int().")
        if isinstance(v, float) and not math.isfinite(v):
            raise EnsembleError(f"EnsembleMetadata.{attribute.name}[{k!r}] = {v} is not finite; "
                                f"record the finite value the run uses")


def _check_str(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"EnsembleMetadata.{attribute.name} must be a non-empty str; got {value!r}")


def _check_count(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"EnsembleMetadata.{attribute.name} must be an int; got {type(value).__name__} {value!r}")
    low = 1 if attribute.name == "chains" else 0
    if value < low:
        raise EnsembleError(f"EnsembleMetadata.{attribute.name} must be >= {low}; got {value}")


def _check_lattice(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if (not isinstance(value, tuple) or len(value) > MAX_DIM
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in value)):
        raise EnsembleError(f"EnsembleMetadata.lattice must be 0..{MAX_DIM} positive ints, e.g. [8, 8]; got {value!r}")


def _check_optional_str(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"EnsembleMetadata.{attribute.name} must be a str or None; got {value!r}")


def _group_from_name(name: str) -> AbstractGroup:
    """The group a file's ``group`` names (`group_from_name`), which must be spelled as ``str(group)`` prints it."""
    try:
        group = group_from_name(name)
    except ValueError:
        group = None
    if group is None or str(group) != name:
        raise EnsembleError(f"EnsembleMetadata.group must be 'U(1)' or 'SU(N)' with N >= 2 (as str(group) prints "
                            f"it); got {name!r}")
    return group


@typing.final
@attrs.frozen
class EnsembleMetadata:
    """Everything that defines an ensemble, stored as JSON under the safetensors metadata key ``"lgdiff"``.

    The chain-defining keys (``kind`` .. ``dtype``) must agree for a file to be continued
    (`compatible_with`); ``lgdiff_version``, ``created`` and ``command`` are provenance only.

    **Fields:**
    - `kind`: ``"scalar"`` (a `Field`) or ``"links"`` (a `LinkField`).
    - `theory`: ``"phi4"``, ``"toy"``, ``"u1"``, ``"su2"``, ``"su3"``, ...
    - `group`: ``None`` for scalars; ``str(group)`` for links, ``"U(1)"`` or ``"SU(N)"``.
    - `lattice`: the sizes ``(L_0, ..., L_{D-1})``.
    - `params`: the action's parameters, e.g. ``{"kappa": 0.21, "lam": 0.022}`` or ``{"beta": 2.0}``.
    - `algorithm`, `settings`: the kernel's ``name`` and ``settings()``.
    - `seed`: the generator seed of the run; `chains`: the number C of independent chains.
    - `dtype`: the configurations' torch dtype name (``float32``/``float64``, ``complex64``/``complex128``).

    >>> meta = EnsembleMetadata(kind="scalar", theory="phi4", group=None, lattice=(8, 8),
    ...                         params={"kappa": 0.21, "lam": 0.022}, algorithm="hmc",
    ...                         settings={"n_steps": 10}, seed=1, chains=4, dtype="float64")
    >>> meta.differences(attrs.evolve(meta, params={"kappa": 0.27, "lam": 0.022}))
    {'params.kappa': (0.21, 0.27)}
    """

    kind: str = attrs.field(validator=attrs.validators.in_(tuple(_KIND_DTYPES)))
    theory: str = attrs.field(validator=_check_str)
    group: str | None = attrs.field(validator=_check_optional_str)
    lattice: tuple[int, ...] = attrs.field(converter=lambda s: tuple(s) if isinstance(s, list) else s,
                                           validator=_check_lattice)
    params: dict[str, JSONScalar] = attrs.field(converter=_sorted_mapping, validator=_check_mapping)
    algorithm: str = attrs.field(validator=_check_str)
    settings: dict[str, JSONScalar] = attrs.field(converter=_sorted_mapping, validator=_check_mapping)
    seed: int = attrs.field(validator=_check_count)
    chains: int = attrs.field(validator=_check_count)
    dtype: str = attrs.field(validator=attrs.validators.in_(tuple(_DTYPES)))
    lgdiff_version: str = attrs.field(factory=_lgdiff_version, validator=_check_str)
    created: str = attrs.field(factory=_now, validator=_check_str)
    command: str | None = attrs.field(default=None, validator=_check_optional_str)

    def __attrs_post_init__(self) -> None:
        if self.dtype not in _KIND_DTYPES[self.kind]:
            raise EnsembleError(f"EnsembleMetadata.dtype of a {self.kind} ensemble must be one of "
                                f"{_KIND_DTYPES[self.kind]}; got {self.dtype!r}")
        if self.kind == "scalar" and self.group is not None:
            raise EnsembleError(f"EnsembleMetadata.group must be None for a scalar ensemble; got {self.group!r}")
        if self.kind == "links":
            if self.group is None:
                raise EnsembleError("EnsembleMetadata.group is required for a links ensemble, e.g. 'SU(3)'")
            _group_from_name(self.group)
            if not self.lattice:
                raise EnsembleError("EnsembleMetadata.lattice of a links ensemble needs D >= 1 directions; got []")

    @classmethod
    def for_run(cls, state: Field | LinkField, kernel: AbstractKernel, *, theory: str,
                params: Mapping[str, JSONScalar], seed: int, command: str | None = None) -> "EnsembleMetadata":
        """The metadata of a run of ``kernel`` whose chains are ``state`` (kind, group, lattice, chains and
        dtype are read from the state; algorithm and settings from the kernel)."""
        is_links = isinstance(state, LinkField)
        return cls(kind="links" if is_links else "scalar", theory=theory,
                   group=str(state.group) if is_links else None, lattice=state.lattice.shape, params=dict(params),
                   algorithm=kernel.name, settings=kernel.settings(), seed=seed, chains=state.batch,
                   dtype=str(state.data.dtype).removeprefix("torch."), command=command)

    # -- derived objects --

    def to_lattice(self) -> Lattice:
        return Lattice(shape=self.lattice)

    def to_group(self) -> AbstractGroup | None:
        """``U1()`` / ``SU(N)`` for links, ``None`` for scalars."""
        return None if self.group is None else _group_from_name(self.group)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The dtype of the configurations in memory (complex for links)."""
        return _DTYPES[self.dtype]

    @property
    def stored_dtype(self) -> torch.dtype:
        """The dtype of the ``configs`` tensor in the file (the real dtype; links as real pairs)."""
        return _STORED_DTYPES[self.dtype]

    @property
    def stored_field_shape(self) -> tuple[int, ...]:
        """The shape of one configuration in the file: ``[*L]`` or ``[D, *L, N, N, 2]``."""
        group = self.to_group()
        if group is None:
            return self.lattice
        return (len(self.lattice), *self.lattice, group.n, group.n, 2)

    # -- comparison --

    def differences(self, other: "EnsembleMetadata") -> dict[str, tuple[object, object]]:
        """The chain-defining keys on which ``self`` and ``other`` differ, as ``{key: (ours, theirs)}``.

        ``params`` and ``settings`` are compared entry by entry (keys ``"params.kappa"``, ...); a missing
        entry reads ``"<missing>"``. Provenance (``lgdiff_version``, ``created``, ``command``) is ignored.
        """
        out: dict[str, tuple[object, object]] = {}
        for key in _CHAIN_KEYS:
            ours, theirs = getattr(self, key), getattr(other, key)
            if isinstance(ours, dict) and isinstance(theirs, dict):
                for sub in sorted(set(ours) | set(theirs)):
                    a, b = ours.get(sub, "<missing>"), theirs.get(sub, "<missing>")
                    if a != b or isinstance(a, bool) != isinstance(b, bool):
                        out[f"{key}.{sub}"] = (a, b)
            elif ours != theirs:
                out[key] = (ours, theirs)
        return out

    def compatible_with(self, other: "EnsembleMetadata") -> bool:
        """Whether both describe the same Markov chain (all keys but the provenance agree)."""
        return not self.differences(other)

    # -- JSON --

    def to_json(self) -> str:
        """One line of JSON with ``format`` and ``format_version`` first; non-finite numbers are refused."""
        obj: dict[str, object] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        for field in attrs.fields(EnsembleMetadata):
            value = getattr(self, field.name)
            obj[field.name] = list(value) if isinstance(value, tuple) else value
        return json.dumps(obj, allow_nan=False, separators=(", ", ": "))

    @classmethod
    def from_json(cls, text: str) -> "EnsembleMetadata":
        """Parse and validate; any problem raises `EnsembleError` with a one-line reason."""
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise EnsembleError(f"the metadata is not valid JSON ({_one_line(e)})") from None
        if not isinstance(obj, dict):
            raise EnsembleError(f"the metadata must be a JSON object; got {type(obj).__name__}")
        fmt = obj.get("format")
        if fmt != FORMAT:
            raise EnsembleError(f"the metadata describes {fmt!r}, not an lgdiff ensemble ({FORMAT!r})")
        ver = obj.get("format_version")
        if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
            raise EnsembleError(f"the metadata has an invalid format_version {ver!r}; expected {FORMAT_VERSION}")
        if ver > FORMAT_VERSION:
            raise EnsembleError(f"the file has format_version {ver}, newer than this lgdiff reads "
                                f"({FORMAT_VERSION}); upgrade lgdiff")
        fields = {f.name for f in attrs.fields(EnsembleMetadata)}
        body = {k: v for k, v in obj.items() if k not in ("format", "format_version")}
        missing, unknown = sorted(fields - set(body)), sorted(set(body) - fields)
        if missing or unknown:
            raise EnsembleError(f"the metadata has missing keys {missing} and unknown keys {unknown}")
        try:
            return cls(**body)
        except (TypeError, ValueError) as e:
            raise EnsembleError(f"the metadata is invalid: {_one_line(e)}") from None


# ---- conversion between fields and stored tensors -----------------------------------------------

def _to_stored(state: Field | LinkField) -> Tensor:
    """``[C, *field]`` on the host: the data itself for scalars, ``view_as_real`` for links."""
    data = state.data.detach()
    if data.is_complex():
        data = torch.view_as_real(data)
    return data.to("cpu", copy=True).contiguous()


def _from_stored(meta: EnsembleMetadata, raw: Tensor, device: torch.device | str | None,
                 dtype: torch.dtype | None) -> Field | LinkField:
    """``raw [B, *field]`` from the file -> a Field or LinkField of batch B."""
    group = meta.to_group()
    if group is None:
        return Field(raw.to(device=device, dtype=dtype or meta.torch_dtype), meta.to_lattice())
    # clone: a view into the safetensors buffer is only 8-byte aligned, and torch's complex128 batched matmul
    # crashes on such storage
    data = torch.view_as_complex(raw.contiguous()).clone()
    return LinkField(data.to(device=device, dtype=dtype or meta.torch_dtype), group, meta.to_lattice())


# ---- reading ------------------------------------------------------------------------------------

JOURNAL_KEY = "lgdiff.journal"
"""Safetensors metadata key of a file whose records continue in a journal: the journal's file name."""
FRAME_KEY = "lgdiff.frame"
"""Safetensors metadata key of a journal frame: JSON ``{"first": t}``, the record number of its first record."""
_JOURNAL_SUFFIX = ".lgdiff-journal"
_LOCK_SUFFIX = ".lgdiff-lock"
_CHUNK_BYTES = 64 << 20
"""Records are read and copied in chunks of about this many bytes."""
_GROUP_TOL = {torch.complex64: 1e-2, torch.complex128: 1e-8}
"""Largest distance from the group (``group.membership_error``) of a link read from a file, by dtype: far above
the rounding drift of a long run that never re-unitarises (SU(3), 2e4 left updates: 2.7e-4 in complex64, 3.6e-13
in complex128), far below damage (links scaled by 3: distance 2)."""


def _damaged(path: Path, t: int, why: str) -> EnsembleError:
    return EnsembleError(f"{path}: record {t} is damaged ({why})")


def _checksums(configs: Tensor, index: Tensor, acceptance: Tensor) -> Tensor:
    """``[T]`` int64: the CRC-32 (zlib's, ISO-HDLC) of each record's bytes, ``configs[t]`` then ``index[t]``
    then ``acceptance[t]``, little-endian and C-contiguous as stored."""
    out = []
    for t in range(configs.shape[0]):
        crc = zlib.crc32(tensor_bytes(configs[t]))
        crc = zlib.crc32(tensor_bytes(index[t:t + 1]), crc)
        out.append(zlib.crc32(tensor_bytes(acceptance[t]), crc))
    return torch.tensor(out, dtype=torch.int64)


def _check_records(path: Path, meta: EnsembleMetadata, raw: Tensor, start: int, index: Tensor, acceptance: Tensor,
                   crc: Tensor | None) -> None:
    """Check records ``start .. start + k`` (``raw`` = stored ``configs[start:start + k]``, with their index,
    acceptance and stored checksums): checksum, then finiteness, then group membership of links. Vectorised over
    the records; the first failure raises `EnsembleError` ``FILE: record K is damaged (...)``."""
    k = raw.shape[0]
    if k == 0:
        return
    if crc is not None:
        got = _checksums(raw, index, acceptance)
        bad = (got != crc).nonzero()
        if bad.numel():
            t = int(bad[0, 0])
            raise _damaged(path, start + t, f"checksum mismatch: stored 0x{int(crc[t]):08x}, the bytes give "
                                            f"0x{int(got[t]):08x}")
    finite = torch.isfinite(raw.reshape(k, meta.chains, -1)).all(-1)
    if not bool(finite.all()):
        t, c = (~finite).nonzero()[0].tolist()
        raise _damaged(path, start + t, f"chain {c}: non-finite values")
    group = meta.to_group()
    if group is not None:
        # one record at a time, so that the temporaries of the batched 3x3 algebra stay the size of one record
        # (a 6^4 SU(3) ensemble of 16 x 8 records needed ~0.7 GB more checked at once); clone: aligned storage
        # for the batched complex matmul (see _from_stored)
        err = torch.stack([group.membership_error(torch.view_as_complex(raw[t].contiguous()).clone())
                           .reshape(meta.chains, -1).amax(-1) for t in range(k)])
        tol = _GROUP_TOL[meta.torch_dtype]
        bad = ~(err <= tol)
        if bool(bad.any()):
            t, c = bad.nonzero()[0].tolist()
            raise _damaged(path, start + t, f"chain {c}: links not in {group}: distance {float(err[t, c]):.1e} > "
                                            f"{tol:.0e}")


def _check_small(path: Path, index: Tensor, acceptance: Tensor) -> None:
    """Index strictly increasing and >= 0, acceptance in [0, 1] (cheap: checked on every load)."""
    if index.numel() and int(index[0]) < 0:
        raise _damaged(path, 0, f"index {int(index[0])} is negative")
    if index.numel() > 1:
        bad = (index[1:] <= index[:-1]).nonzero()
        if bad.numel():
            t = int(bad[0, 0]) + 1
            raise _damaged(path, t, f"index is not strictly increasing: {int(index[t])} after {int(index[t - 1])}")
    ok = (acceptance >= 0) & (acceptance <= 1)
    if not bool(ok.all()):
        t, c = (~ok).nonzero()[0].tolist()
        raise _damaged(path, t, f"acceptance {float(acceptance[t, c])} of chain {c} is outside [0, 1]")


def _check_tensors(where: str, meta: EnsembleMetadata, tensors: Mapping[str, tuple[str, list[int]]], *,
                   checksums: bool) -> int:
    """Check names, dtypes and shapes against the metadata; return the number of records T."""
    want_names = {"configs", "index", "acceptance", "rng_state"} | ({"crc32"} if checksums else set())
    if set(tensors) != want_names:
        raise EnsembleError(f"{where} is a damaged lgdiff ensemble: tensors {sorted(tensors)}, expected "
                            f"{sorted(want_names)}; regenerate it")
    n = tensors["index"][1][0] if len(tensors["index"][1]) == 1 else -1
    want = {
        "configs": (meta.stored_dtype, [n, meta.chains, *meta.stored_field_shape]),
        "index": (torch.int64, [n]),
        "acceptance": (torch.float64, [n, meta.chains]),
    }
    if checksums:
        want["crc32"] = (torch.int64, [n])
    for name, (dtype, shape) in want.items():
        got_dtype, got_shape = tensors[name]
        if got_dtype != SAFETENSORS_DTYPES[dtype] or list(got_shape) != shape or n < 0:
            raise EnsembleError(f"{where} is a damaged lgdiff ensemble: {name} is {got_dtype} {list(got_shape)}, "
                                f"expected {SAFETENSORS_DTYPES[dtype]} {shape} for the metadata; regenerate it")
    got_dtype, got_shape = tensors["rng_state"]
    if got_dtype != "U8" or len(got_shape) != 1:
        raise EnsembleError(f"{where} is a damaged lgdiff ensemble: rng_state is {got_dtype} {list(got_shape)}, "
                            f"expected U8 [S]; regenerate it")
    return n


@typing.final
@attrs.frozen(eq=False)
class _File:
    """An ensemble file opened once: the safetensors handle (for lazy reads), the metadata, its JSON text,
    the number of records in the file, whether it holds checksums (format_version >= 2) and the name of its
    journal (``None``: no journal)."""

    handle: typing.Any
    metadata: EnsembleMetadata
    text: str
    records: int
    checksums: bool
    journal: str | None


def _open(path: Path) -> _File:
    """Open ``path`` once and check it against its metadata. Every failure is an `EnsembleError`."""
    if not path.exists():
        raise EnsembleError(f"{path}: no such ensemble file; check the path")
    if not path.is_file():
        raise EnsembleError(f"{path} is not a file; give the path of an ensemble *{SUFFIX} file")
    try:
        handle = safe_open(str(path), framework="pt")
        raw_meta = handle.metadata() or {}
        tensors = {}
        for name in handle.keys():
            sl = handle.get_slice(name)
            tensors[name] = (sl.get_dtype(), list(sl.get_shape()))
    except SafetensorError as e:
        raise EnsembleError(f"{path} is not a readable safetensors file ({_one_line(e)}): it is truncated, "
                            f"corrupt or of another format; regenerate it or give another file") from None
    except OSError as e:
        raise EnsembleError(f"{path} cannot be read: {_one_line(e)}") from None
    if METADATA_KEY not in raw_meta:
        raise EnsembleError(f"{path} is a safetensors file but not an lgdiff ensemble (no {METADATA_KEY!r} "
                            f"metadata key); give an ensemble written by lgdiff")
    text = raw_meta[METADATA_KEY]
    try:
        meta = EnsembleMetadata.from_json(text)
    except EnsembleError as e:
        raise EnsembleError(f"{path} is not a usable lgdiff ensemble: {e}") from None
    version = json.loads(text)["format_version"]  # valid: from_json checked it
    n = _check_tensors(str(path), meta, tensors, checksums=version >= 2)
    journal = raw_meta.get(JOURNAL_KEY)
    if journal is not None and (version < 2 or Path(journal).name != journal or not journal.endswith(_JOURNAL_SUFFIX)):
        raise EnsembleError(f"{path} is a damaged lgdiff ensemble: its journal name {journal!r} is not a "
                            f"*{_JOURNAL_SUFFIX} file in its directory; regenerate it")
    return _File(handle, meta, text, n, version >= 2, journal)


@typing.final
@attrs.frozen(eq=False)
class _Frame:
    """A frame of a journal: the record number of its first record and where its ``configs`` lie."""

    first: int
    configs: BlobTensor


@typing.final
@attrs.frozen(eq=False)
class _Journal:
    """The complete frames of a file's journal, in order (their small tensors: ``index``, ``acceptance``,
    ``crc32`` concatenated; ``rng_state`` of the last). ``end``: the bytes of complete frames; anything after
    them is the torn tail of an interrupted write. ``stale``: written before the file was last rewritten (a kill
    between the rewrite and the journal's removal), so its records are in the file already and it is ignored."""

    path: Path
    frames: tuple[_Frame, ...] = ()
    index: Tensor | None = None
    acceptance: Tensor | None = None
    crc32: Tensor | None = None
    rng_state: Tensor | None = None
    end: int = 0
    size: int = 0
    stale: bool = False


def _all_zero(fd: int, pos: int, size: int) -> bool:
    """Whether bytes ``pos..size`` are zero: what a machine crash leaves of a write that was not fsynced."""
    while pos < size:
        chunk = pread(fd, min(size - pos, 1 << 20), pos)
        if not chunk or chunk.count(0) != len(chunk):
            return not chunk
        pos += len(chunk)
    return True


def _read_journal(path: Path, journal: Path, meta: EnsembleMetadata, first: int) -> _Journal | None:
    """The frames of ``journal`` that continue ``path`` after its ``first`` records; ``None`` if there is no
    journal. A frame that is not a valid safetensors blob of this ensemble raises `EnsembleError`."""
    try:
        fd = os.open(journal, os.O_RDONLY | O_BINARY)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise EnsembleError(f"{path}: its journal {journal.name} cannot be read: {_one_line(e)}") from None
    try:
        size = os.fstat(fd).st_size
        frames: list[_Frame] = []
        small: list[tuple[Tensor, Tensor, Tensor]] = []
        rng, pos, t = None, 0, first
        while pos < size:
            where = f"{path} (journal {journal.name}, frame at byte {pos})"
            try:
                tensors, frame_meta, end = read_blob_header(fd, pos, size)
                start = json.loads(frame_meta[FRAME_KEY])["first"]
                if not isinstance(start, int) or isinstance(start, bool):
                    raise ValueError(f"{FRAME_KEY} has no integer 'first'")
            except TornBlob:
                break
            except (ValueError, KeyError, TypeError) as e:
                if _all_zero(fd, pos, size):
                    break
                raise EnsembleError(f"{where} is damaged ({_one_line(e)}); the records before it are intact: "
                                    f"copy the file and delete the journal to keep them") from None
            if start != t:
                if not frames and start < first:
                    return _Journal(journal, size=size, stale=True)
                raise EnsembleError(f"{where} is damaged (it starts at record {start}, expected {t})")
            k = _check_tensors(where, meta, {name: (e.dtype, list(e.shape)) for name, e in tensors.items()},
                               checksums=True)
            if k < 1:
                raise EnsembleError(f"{where} is damaged (it holds no records)")
            small.append((read_tensor(fd, tensors["index"]), read_tensor(fd, tensors["acceptance"]),
                          read_tensor(fd, tensors["crc32"])))
            rng = read_tensor(fd, tensors["rng_state"])
            frames.append(_Frame(t, tensors["configs"]))
            t, pos = t + k, end
    except OSError as e:
        raise EnsembleError(f"{path}: its journal {journal.name} cannot be read: {_one_line(e)}") from None
    finally:
        os.close(fd)
    if not frames:
        return _Journal(journal, end=pos, size=size)
    index, acceptance, crc = (torch.cat(parts) for parts in zip(*small, strict=True))
    return _Journal(journal, tuple(frames), index, acceptance, crc, rng, pos, size)


@typing.final
@attrs.frozen(eq=False)
class Ensemble:
    """An ensemble opened for reading: the file and the frames of its journal, if a writer left one, as one
    ensemble. Small tensors are loaded; configurations are read lazily and checked as they are read.

    **Attributes:**
    - `path`, `metadata` (`EnsembleMetadata`).
    - `index`: ``[T]`` int64, the trajectory / sweep number of each record.
    - `acceptance`: ``[T, C]`` float64.
    - `rng_state`: ``[S]`` uint8, the generator state right after the last record.
    """

    path: Path
    metadata: EnsembleMetadata
    index: Tensor
    acceptance: Tensor
    rng_state: Tensor
    _metadata_json: str = attrs.field(repr=False)
    _crc32: Tensor | None = attrs.field(default=None, repr=False)
    _file_records: int | None = attrs.field(default=None, repr=False)
    _journal: _Journal | None = attrs.field(default=None, repr=False)
    _journal_name: str | None = attrs.field(default=None, repr=False)
    _verify: bool = attrs.field(default=True, repr=False)

    def __attrs_post_init__(self) -> None:
        T, C = self.index.shape[0], self.metadata.chains
        if self.index.shape != (T,) or self.acceptance.shape != (T, C) or self.rng_state.ndim != 1:
            raise ValueError(f"Ensemble needs index [T], acceptance [T, {C}], rng_state [S]; got "
                             f"{tuple(self.index.shape)}, {tuple(self.acceptance.shape)}, {tuple(self.rng_state.shape)}")
        if self._crc32 is not None and self._crc32.shape != (T,):
            raise ValueError(f"Ensemble needs crc32 [T]; got {tuple(self._crc32.shape)}")

    @classmethod
    def load(cls, path: str | os.PathLike, *, verify: bool = True) -> "Ensemble":
        """Open and validate an ensemble. Raises `EnsembleError` for a missing, foreign, truncated or damaged
        file, and for an index that does not increase or an acceptance outside [0, 1].

        With ``verify`` (the default) every record read later (`configs`, `record`, `series`) is checked
        first: its checksum, that it is finite, and for links that they are in the group (distance within
        1e-4 for complex64, 1e-9 for complex128). ``verify=False`` skips these checks, for speed on a file
        that was checked already.
        """
        path = Path(path)
        file = _open(path)
        index, acceptance, rng = (file.handle.get_tensor(k) for k in ("index", "acceptance", "rng_state"))
        crc = file.handle.get_tensor("crc32") if file.checksums else None
        journal = None
        if file.journal is not None:
            journal = _read_journal(path, path.parent / file.journal, file.metadata, file.records)
            if journal is not None and journal.frames:
                assert journal.index is not None and journal.acceptance is not None and journal.rng_state is not None
                index, acceptance = torch.cat([index, journal.index]), torch.cat([acceptance, journal.acceptance])
                crc, rng = torch.cat([crc, journal.crc32]), journal.rng_state
        _check_small(path, index, acceptance)
        return cls(path, file.metadata, index, acceptance, rng, file.text, crc, file.records, journal,
                   file.journal, verify)

    @property
    def n_records(self) -> int:
        """T, the number of records in time."""
        return self.index.shape[0]

    @property
    def chains(self) -> int:
        """C, the number of independent chains."""
        return self.metadata.chains

    def __len__(self) -> int:
        return self.n_records

    def _read_frames(self, start: int, stop: int) -> list[Tensor]:
        """Stored ``configs[start:stop]`` from the journal's frames (records that are not in the file)."""
        assert self._journal is not None
        fd = os.open(self._journal.path, os.O_RDONLY | O_BINARY)
        try:
            parts = []
            for i, frame in enumerate(self._journal.frames):
                end = self._journal.frames[i + 1].first if i + 1 < len(self._journal.frames) else self.n_records
                a, b = max(start, frame.first), min(stop, end)
                if a < b:
                    parts.append(read_tensor(fd, frame.configs, a - frame.first, b - frame.first))
            return parts
        finally:
            os.close(fd)

    def _read_stored(self, start: int, stop: int) -> Tensor:
        """Stored ``configs[start:stop]``, ``[stop - start, C, *field]``, unchecked."""
        for _ in range(3):
            file = _open(self.path)
            if file.text != self._metadata_json or file.journal != self._journal_name:
                raise EnsembleError(f"{self.path} changed on disk since it was loaded and now holds another "
                                    f"ensemble; load it again")
            # records never change once written; a writer that closes moves the journal's records into the file
            parts = [file.handle.get_slice("configs")[start:min(stop, file.records)]] if start < file.records else []
            if stop > file.records:
                if file.records != self._file_records:
                    raise EnsembleError(f"{self.path} changed on disk since it was loaded; load it again")
                try:
                    parts += self._read_frames(max(start, file.records), stop)
                except OSError:  # the writer folded the journal into the file meanwhile: read it from there
                    continue
            if not parts:
                shape = (0, self.chains, *self.metadata.stored_field_shape)
                return torch.empty(shape, dtype=self.metadata.stored_dtype)
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        raise EnsembleError(f"{self.path} changed on disk while it was read; load it again")

    def _read(self, start: int, stop: int) -> Tensor:
        """Stored ``configs[start:stop]`` as one batch ``[(stop - start) * C, *field]``, time major; checked
        (`_check_records`) unless loaded with ``verify=False``."""
        raw = self._read_stored(start, stop)
        if self._verify:
            crc = None if self._crc32 is None else self._crc32[start:stop]
            _check_records(self.path, self.metadata, raw, start, self.index[start:stop], self.acceptance[start:stop],
                           crc)
        return raw.reshape(-1, *raw.shape[2:])

    def _chunk(self) -> int:
        """Records per read of about ``_CHUNK_BYTES``."""
        shape = self.metadata.stored_field_shape
        record = self.chains * math.prod(shape) * torch.empty((), dtype=self.metadata.stored_dtype).element_size()
        return max(1, _CHUNK_BYTES // max(record, 1))

    def _chunks(self, crc: Tensor | None = None) -> Iterator[Tensor]:
        """Stored ``configs`` of every record, a checked chunk (`_check_records`) of about ``_CHUNK_BYTES`` at a
        time, against the stored checksums or ``crc`` ``[T]``."""
        crc = self._crc32 if crc is None else crc
        chunk = self._chunk()
        for start in range(0, self.n_records, chunk):
            stop = min(start + chunk, self.n_records)
            raw = self._read_stored(start, stop)
            _check_records(self.path, self.metadata, raw, start, self.index[start:stop], self.acceptance[start:stop],
                           None if crc is None else crc[start:stop])
            yield raw

    def _computed_checksums(self) -> Tensor:
        """``[T]``: the checksums of the records as they are (for a format_version 1 file, which has none)."""
        chunk, parts = self._chunk(), []
        for start, raw in zip(range(0, self.n_records, chunk), self._chunks(), strict=True):
            stop = start + raw.shape[0]
            parts.append(_checksums(raw, self.index[start:stop], self.acceptance[start:stop]))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)

    def verify_all(self) -> None:
        """Read and check every record (checksum, finiteness, group membership), a chunk at a time; raises
        `EnsembleError` ``FILE: record K is damaged (...)`` at the first bad one."""
        for _ in self._chunks():
            pass

    def configs(self, device: torch.device | str | None = None,
                dtype: torch.dtype | None = None) -> Field | LinkField:
        """All configurations as one field of batch ``T * C``, ordered ``[t, c]`` (time major): element
        ``t * C + c`` is chain c at record t."""
        return _from_stored(self.metadata, self._read(0, self.n_records), device, dtype)

    def record(self, t: int, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None) -> Field | LinkField:
        """Record ``t`` (negative counts from the end) of every chain: a field of batch C."""
        if not -self.n_records <= t < self.n_records:
            raise IndexError(f"record {t} out of range for {self.n_records} records in {self.path}")
        t %= self.n_records
        return _from_stored(self.metadata, self._read(t, t + 1), device, dtype)

    def series(self, fn: Callable[[Field | LinkField], Tensor], *, chunk: int | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """Apply a per-configuration observable to every record, ``chunk`` records at a time (default: about
        ``_CHUNK_BYTES`` of stored configurations, at least one record, so the whole ensemble is never in memory),
        and return it as ``[T, C]`` (time series of each chain).

        ``fn`` maps a field of batch B to a tensor ``[B]``, e.g. the magnetisation.
        """
        if chunk is None:
            chunk = self._chunk()
        if chunk < 1:
            raise ValueError(f"Ensemble.series needs chunk >= 1; got {chunk}")
        T, C = self.n_records, self.chains
        parts = []
        for start in range(0, T, chunk):
            stop = min(start + chunk, T)
            out = fn(_from_stored(self.metadata, self._read(start, stop), device, dtype))
            if not isinstance(out, Tensor) or tuple(out.shape) != ((stop - start) * C,):
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(f"Ensemble.series: fn must return one value per configuration, "
                                 f"[{(stop - start) * C}]; got {got}")
            parts.append(out.reshape(stop - start, C))
        if not parts:
            return torch.zeros((0, C), dtype=torch.float64, device=device)
        return torch.cat(parts)

    def __repr__(self) -> str:
        m = self.metadata
        what = m.group or "scalar"
        return (f"Ensemble({str(self.path)!r}, {m.theory} {what} L={m.lattice}, T={self.n_records}, C={m.chains}, "
                f"{m.algorithm})")


# ---- writing ------------------------------------------------------------------------------------

def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(directory: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows: os.replace is durable enough, directories cannot be opened
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_replace(path: Path, fill: Callable[[str], None], mode: int) -> None:
    """``fill(tmp)`` writes a temporary file next to ``path``; fsync it and rename it over ``path``; remove the
    temporary on failure. A reader or a crash sees the old file or the complete new one, never a mixture."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _atomic_save(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str], mode: int) -> None:
    """Save a safetensors file atomically (`atomic_replace`)."""
    atomic_replace(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), mode)


@typing.final
@attrs.frozen(eq=False)
class ResumePoint:
    """Where a recorded chain stopped: its last record, the index of that record and the generator state
    right after it. Continue with ``run_chain(kernel, point.state, start=point.index + 1, therm=0, ...)``
    after ``point.restore(generator)``."""

    state: Field | LinkField
    index: int
    rng_state: Tensor
    n_records: int

    def restore(self, generator: torch.Generator) -> None:
        """Set ``generator`` to the saved state (the generator must be of the device type that wrote it)."""
        restore_generator(generator, self.rng_state)


def restore_generator(generator: torch.Generator, state: Tensor) -> None:
    """``generator.set_state(state)``, or a one-line `EnsembleError` for a state of another device type."""
    try:
        generator.set_state(state)
    except RuntimeError as e:
        raise EnsembleError(f"the saved generator state does not fit a generator on {generator.device} "
                            f"({_one_line(e)}); resume on the device type the run started on") from None


@typing.final
class EnsembleWriter:
    """Appends records to an ensemble file; every ``flush_every`` records go to disk at a cost of one record.

    Open with `EnsembleWriter.open` (a context manager). If the file exists its metadata must be compatible
    with the given one (otherwise `EnsembleError`), every record in it is checked (`Ensemble.verify_all`), and
    `resume_state` says where to continue; the file's own metadata (with its original ``created``) is kept.

    The first flush writes the file; later flushes append a frame to its journal (module docstring) and fsync
    it; `close` folds the journal into the file (one atomic rewrite) and removes it. Leaving the ``with`` block
    by an exception flushes what is buffered but does not fold (a quick exit; the next writer folds). One writer
    per file at a time: a second one, in this or another process, is refused with `EnsembleError` until the
    first is closed or its process ends (an advisory lock, ``.<name>.lgdiff-lock``, held while open).

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "toy.safetensors"
    >>> phi = Field.zeros(Lattice(shape=()), batch=2)
    >>> meta = EnsembleMetadata(kind="scalar", theory="toy", group=None, lattice=(), params={"m2": 1.0},
    ...                         algorithm="none", settings={}, seed=0, chains=2, dtype="float64")
    >>> with EnsembleWriter.open(path, meta) as w:
    ...     for i in range(3):
    ...         w.append(phi.with_data(phi.data + i), i, torch.ones(2), torch.Generator().get_state())
    >>> Ensemble.load(path).configs().data.tolist()
    [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    >>> tmp.cleanup()
    """

    def __init__(self, path: str | os.PathLike, metadata: EnsembleMetadata, *, flush_every: int = 1) -> None:
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"EnsembleWriter needs flush_every >= 1; got {flush_every!r}")
        self._path = Path(path)
        if self._path.suffix != SUFFIX:
            raise EnsembleError(f"ensemble files are named *{SUFFIX}; got {str(self._path)!r}. "
                                f"Choose an --out ending in {SUFFIX}")
        self._flush_every = flush_every
        self._metadata = metadata
        self._pending: list[tuple[Tensor, int, Tensor, int]] = []  # (stored state, index, acceptance, crc32)
        self._last: Tensor | None = None  # the stored state of the last record, [C, *field]
        self._last_index = -1
        self._rng_state: Tensor | None = None
        self._written = 0  # records on disk: in the file and in its journal
        self._file_records = 0  # records in the file itself
        self._journal: str | None = None  # the journal's name; None until the file is written in format 2
        self._journal_end = 0  # bytes of complete frames in the journal
        self._closed = False
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = WriterLock.acquire(self._path.parent / f".{self._path.name}{_LOCK_SUFFIX}")
        except Busy as busy:
            who = "unknown" if busy.pid is None else busy.pid
            raise EnsembleError(f"{self._path} is being written by another writer (process {who}); wait for it "
                                f"to finish or choose another --out") from None
        except OSError as e:
            raise EnsembleError(f"cannot write in {self._path.parent} ({_one_line(e)}); choose another --out") from None
        # released when the writer is closed, or when it is dropped without close (the process ends alike)
        self._release = weakref.finalize(self, self._lock.release)
        try:
            # a kill during a rewrite leaves a temporary file behind; the target is intact, the temporary is garbage
            for stale in self._path.parent.glob(glob.escape(f".{self._path.name}.") + "*" + _TMP_SUFFIX):
                stale.unlink(missing_ok=True)
            if self._path.exists():
                self._mode = self._path.stat().st_mode & 0o777
                self._load_existing(metadata)
            else:
                self._mode = _default_mode()
        except BaseException:
            self._release()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike, metadata: EnsembleMetadata, *, flush_every: int = 1) -> "EnsembleWriter":
        """Create ``path`` (at the first flush) or continue it; see the class docstring."""
        return cls(path, metadata, flush_every=flush_every)

    def _load_existing(self, metadata: EnsembleMetadata) -> None:
        existing = Ensemble.load(self._path)
        diff = existing.metadata.differences(metadata)
        if diff:
            what = "; ".join(f"{k}: file {a!r} != requested {b!r}" for k, (a, b) in diff.items())
            raise EnsembleError(f"{self._path} holds a different ensemble ({what}); choose another --out, "
                                f"or delete the file to start over")
        existing.verify_all()  # a damaged record is reported now, before anything is written
        self._metadata = existing.metadata
        self._written = existing.n_records
        if existing.n_records:
            self._last = existing._read_stored(existing.n_records - 1, existing.n_records)[0].clone()
            self._last_index = int(existing.index[-1])
            self._rng_state = existing.rng_state
        self._file_records = existing._file_records or 0
        self._journal = existing._journal_name
        journal = existing._journal
        if journal is None:
            return
        try:
            if journal.stale:  # folded into the file by a writer killed before it removed the journal
                self._unlink_journal()
                return
            if journal.end < journal.size:  # the torn tail of a killed flush: never recorded, cut it off
                fd = os.open(journal.path, os.O_WRONLY | O_BINARY)
                try:
                    os.ftruncate(fd, journal.end)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as e:
            raise EnsembleError(f"cannot repair the journal {journal.path.name} of {self._path} "
                                f"({_one_line(e)}); check the permissions of {self._path.parent}") from None
        self._journal_end = journal.end

    # -- state --

    @property
    def path(self) -> Path:
        return self._path

    @property
    def metadata(self) -> EnsembleMetadata:
        """The metadata in the file (for a continued file: its own, with the original ``created``)."""
        return self._metadata

    @property
    def n_records(self) -> int:
        """Records on disk plus those buffered."""
        return self._written + len(self._pending)

    @property
    def n_written(self) -> int:
        """Records on disk."""
        return self._written

    def resume_state(self, *, device: torch.device | str | None = None) -> ResumePoint | None:
        """The last record, its index and the generator state after it; ``None`` if there are no records."""
        if self._last is None:
            return None
        state = _from_stored(self._metadata, self._last, device, None)
        assert self._rng_state is not None  # set together with every record
        return ResumePoint(state=state, index=self._last_index, rng_state=self._rng_state.clone(),
                           n_records=self.n_records)

    # -- appending --

    def _check_state(self, state: Field | LinkField) -> Tensor:
        meta = self._metadata
        want_type = LinkField if meta.kind == "links" else Field
        if not isinstance(state, want_type):
            raise EnsembleError(f"{self._path} is a {meta.kind} ensemble; append a {want_type.__name__}, "
                                f"got {type(state).__name__}")
        if state.lattice.shape != meta.lattice:
            raise EnsembleError(f"{self._path} holds L={meta.lattice}; got a state on L={state.lattice.shape}")
        if isinstance(state, LinkField) and str(state.group) != meta.group:
            raise EnsembleError(f"{self._path} holds {meta.group} links; got {state.group}")
        if state.batch != meta.chains:
            raise EnsembleError(f"{self._path} holds {meta.chains} chains; got a state of batch {state.batch}")
        if state.data.dtype != meta.torch_dtype:
            raise EnsembleError(f"{self._path} holds {meta.dtype} configurations; got {state.data.dtype}. "
                                f"Run in the recorded precision (a resumed chain must continue bit for bit)")
        raw = _to_stored(state)
        if not bool(torch.isfinite(raw).all()):
            bad = int((~torch.isfinite(raw.reshape(raw.shape[0], -1))).any(1).nonzero()[0, 0])
            raise EnsembleError(f"refusing to record a non-finite configuration (chain {bad}) in {self._path}: "
                                f"the run diverged; lower the step size. Nothing was written for it")
        return raw

    def append(self, state: Field | LinkField, index: int, acceptance: Tensor, rng_state: Tensor) -> None:
        """Buffer one record: the state of every chain after trajectory/sweep ``index``.

        **Arguments:**
        - `state`: the chains, batch C, of the ensemble's kind, lattice, group and dtype; finite.
        - `index`: the trajectory / sweep number, larger than every index recorded before.
        - `acceptance`: ``[C]`` in [0, 1], e.g. ``ChainStep.acceptance``.
        - `rng_state`: ``generator.get_state()`` right after the step that produced ``state``.

        Any invalid input raises `EnsembleError` and records nothing. Flushes every ``flush_every`` appends.
        """
        if self._closed:
            raise EnsembleError(f"the writer of {self._path} is closed; open a new one to append")
        raw = self._check_state(state)
        if self._last is not None and index <= self._last_index:
            raise EnsembleError(f"{self._path} already holds records up to index {self._last_index}; got index "
                                f"{index}. Resume from writer.resume_state() with start = index + 1")
        if index < 0:
            raise EnsembleError(f"record indices are >= 0; got {index}")
        acc = acceptance.detach().to("cpu", torch.float64, copy=True)
        if acc.shape != (self._metadata.chains,):
            raise EnsembleError(f"acceptance must be [{self._metadata.chains}] (one per chain); got "
                                f"{tuple(acceptance.shape)}")
        if not bool(((acc >= 0) & (acc <= 1)).all()):
            raise EnsembleError(f"acceptance must be finite and in [0, 1]; got {acc.tolist()}")
        if rng_state.dtype != torch.uint8 or rng_state.ndim != 1:
            raise EnsembleError(f"rng_state must be generator.get_state(), a uint8 [S] tensor; got "
                                f"{rng_state.dtype} {tuple(rng_state.shape)}")
        crc = int(_checksums(raw[None], torch.tensor([index], dtype=torch.int64), acc[None])[0])
        self._pending.append((raw, index, acc, crc))
        self._last, self._last_index = raw, index
        self._rng_state = rng_state.detach().to("cpu", copy=True)
        if len(self._pending) >= self._flush_every:
            self.flush()

    def _pending_tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        configs = torch.stack([p[0] for p in self._pending])
        index = torch.tensor([p[1] for p in self._pending], dtype=torch.int64)
        acceptance = torch.stack([p[2] for p in self._pending])
        crc = torch.tensor([p[3] for p in self._pending], dtype=torch.int64)
        return configs, index, acceptance, crc

    def flush(self) -> None:
        """Write the buffered records to disk now: the first time (or for a format_version 1 file) by writing
        the whole file atomically, then by appending one frame to the journal. No-op when nothing is buffered."""
        if not self._pending:
            return
        try:
            if self._journal is None:
                self._fold()
            else:
                self._append_frame()
        except (OSError, SafetensorError) as e:
            raise EnsembleError(f"could not write {self._path} ({_one_line(e)}); the file on disk is unchanged "
                                f"and holds {self._written} records") from None

    def _append_frame(self) -> None:
        """Append the buffered records as one frame (a safetensors blob) to the journal and fsync it; on any
        failure cut the journal back to its complete frames."""
        assert self._journal is not None and self._rng_state is not None
        configs, index, acceptance, crc = self._pending_tensors()
        tensors = {"index": index, "acceptance": acceptance, "crc32": crc, "configs": configs,
                   "rng_state": self._rng_state}
        header = blob_header([(k, v.dtype, v.shape) for k, v in tensors.items()],
                             {FRAME_KEY: json.dumps({"first": self._written})})
        journal = self._path.parent / self._journal
        created = not journal.exists()
        if created and self._journal_end:
            raise EnsembleError(f"{journal} was removed while this writer held {self._path}: the records "
                                f"{self._file_records}..{self._written - 1} in it are lost; rerun to regenerate them")
        fd = os.open(journal, os.O_WRONLY | os.O_CREAT | O_BINARY, self._mode)
        try:
            try:
                os.lseek(fd, self._journal_end, os.SEEK_SET)
                write_all(fd, [header, *(tensor_bytes(v) for v in tensors.values())])
                os.fsync(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._journal_end)
                if created:
                    with contextlib.suppress(OSError):
                        os.unlink(journal)
                raise
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self._path.parent)
        self._journal_end += len(header) + sum(v.numel() * v.element_size() for v in tensors.values())
        self._written += len(self._pending)
        self._pending = []

    def _fold(self) -> None:
        """Rewrite the file atomically with every record (those on disk, then the buffered ones), in
        format_version 2, then remove the journal. The records on disk are checked as they are copied."""
        meta = self._metadata
        disk = Ensemble.load(self._path) if self._written else None
        if disk is not None and disk.n_records != self._written:
            raise EnsembleError(f"{self._path} changed on disk while this writer held it ({disk.n_records} records, "
                                f"expected {self._written}); is another process writing it without the lock?")
        new = self._pending_tensors() if self._pending else None
        index_parts, acceptance_parts, crc_parts = [], [], []
        if disk is not None:
            index_parts.append(disk.index)
            acceptance_parts.append(disk.acceptance)
            crc_parts.append(disk._crc32 if disk._crc32 is not None else disk._computed_checksums())
        if new is not None:
            index_parts.append(new[1])
            acceptance_parts.append(new[2])
            crc_parts.append(new[3])
        index, acceptance, crc = torch.cat(index_parts), torch.cat(acceptance_parts), torch.cat(crc_parts)
        assert self._rng_state is not None
        T = index.shape[0]
        journal = self._journal or f".{self._path.name}.{secrets.token_hex(4)}{_JOURNAL_SUFFIX}"
        head = blob_header([("index", torch.int64, (T,)), ("acceptance", torch.float64, (T, meta.chains)),
                            ("crc32", torch.int64, (T,)),
                            ("configs", meta.stored_dtype, (T, meta.chains, *meta.stored_field_shape)),
                            ("rng_state", torch.uint8, tuple(self._rng_state.shape))],
                           {METADATA_KEY: meta.to_json(), JOURNAL_KEY: journal})

        def fill(tmp: str) -> None:
            fd = os.open(tmp, os.O_WRONLY | O_BINARY)
            try:
                write_all(fd, [head, tensor_bytes(index), tensor_bytes(acceptance), tensor_bytes(crc)])
                if disk is not None:  # copied a checked chunk at a time, against the checksums written above
                    write_all(fd, (tensor_bytes(raw) for raw in disk._chunks(crc)))
                if new is not None:
                    write_all(fd, [tensor_bytes(new[0])])
                write_all(fd, [tensor_bytes(self._rng_state)])
            finally:
                os.close(fd)

        atomic_replace(self._path, fill, self._mode)
        self._journal, self._file_records, self._written = journal, T, T
        self._pending = []
        self._unlink_journal()

    def _unlink_journal(self) -> None:
        assert self._journal is not None
        try:
            os.unlink(self._path.parent / self._journal)
        except FileNotFoundError:
            pass
        else:
            _fsync_dir(self._path.parent)
        self._journal_end = 0

    def close(self) -> None:
        """Flush, fold the journal into the file (one atomic rewrite, which leaves one plain safetensors file)
        and release the file (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
            if self._file_records < self._written:
                try:
                    self._fold()
                except (OSError, SafetensorError) as e:
                    raise EnsembleError(f"could not rewrite {self._path} ({_one_line(e)}); its {self._written} "
                                        f"records are safe in the file and its journal: rerun to fold them") from None
        finally:
            self._closed = True
            self._release()

    def __enter__(self) -> "EnsembleWriter":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # the buffered records are valid (append checks them), so they are written even if the body failed; the
        # fold is left to the next writer then, so that an interrupt ends quickly
        if exc_type is None:
            self.close()
            return
        try:
            if not self._closed:
                self.flush()
        finally:
            self._closed = True
            self._release()

    def __repr__(self) -> str:
        return (f"EnsembleWriter({str(self._path)!r}, records={self.n_records}, written={self._written}, "
                f"{'closed' if self._closed else 'open'})")


"""NERSC gauge configurations (the "NERSC archive" format of SU(3) links on a 4D lattice), read and write.

A file is an ASCII header, then the binary links::

    BEGIN_HEADER
    HDR_VERSION = 1.0
    DATATYPE = 4D_SU3_GAUGE_3x3
    DIMENSION_1 = 4
    ...
    CHECKSUM = 3ed6a3c0
    FLOATING_POINT = IEEE64BIG
    END_HEADER
    <binary data>

``DATATYPE`` is ``4D_SU3_GAUGE_3x3`` (full matrices) or ``4D_SU3_GAUGE`` (the first two rows, "3x2";
the third row is ``conj(row0 x row1)``). The data runs x fastest, then y, z, t; per site the four
directions mu = 0..3; per link the stored rows, row-major, each entry (re, im), in the precision and
byte order of ``FLOATING_POINT`` (``IEEE32BIG``, ``IEEE32LITTLE``, ``IEEE64BIG``, ``IEEE64LITTLE``;
``IEEE32`` means big endian, as in older files).

``CHECKSUM`` is the sum mod 2^32 of the stored numbers as unsigned 32-bit words, taken from their
values (independent of the byte order): for 3x2 storage only the stored words count, a float64
contributes its two 32-bit halves. ``PLAQUETTE`` is the average of ``Re tr U_p / 3`` over all
plaquettes (lgdiff's `mean_plaquette`), ``LINK_TRACE`` the average of ``Re tr U / 3`` over all links;
both are computed in float64 arithmetic from the numbers as stored (also in single-precision files),
as external readers recompute them.

Axis mapping: lgdiff direction mu = NERSC mu and lgdiff site axis k = NERSC ``DIMENSION_{k+1}``.
"""

import datetime
import decimal
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._fields.links import LinkField
from .._geometry.lattice import Lattice
from .._groups.sun import SU
from . import _su3_layout as layout

DATATYPES = {"4D_SU3_GAUGE_3x3": 3, "4D_SU3_GAUGE": 2}
"""DATATYPE -> stored rows per link."""
_STORAGE_DATATYPE = {"3x3": "4D_SU3_GAUGE_3x3", "3x2": "4D_SU3_GAUGE"}
_FLOATING_POINT = re.compile(r"IEEE(32|64)(BIG|LITTLE)?")
_MAX_HEADER = 1 << 16
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class NerscError(ValueError):
    """A NERSC file cannot be read or written as asked; the message says what is wrong and what to do."""


def _parse_header(path: Path, head: bytes) -> tuple[dict[str, str], int]:
    """The header's ``KEY = VALUE`` pairs and the byte offset of the data."""
    if not head.startswith(b"BEGIN_HEADER"):
        raise NerscError(f"{path} is not a NERSC gauge file: it does not start with BEGIN_HEADER; give a NERSC "
                         f"configuration (or use read_ildg for ILDG/LIME files)")
    end = re.search(rb"^END_HEADER[ \t\r]*\n", head, flags=re.MULTILINE)
    if end is None:
        raise NerscError(f"{path}: the NERSC header has no END_HEADER line in its first {_MAX_HEADER} bytes; "
                         f"the file is truncated or damaged")
    try:
        text = head[:end.start()].decode("ascii")
    except UnicodeDecodeError:
        raise NerscError(f"{path}: the NERSC header is not ASCII text; the file is damaged") from None
    header: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise NerscError(f"{path}: NERSC header line {line!r} is not of the form KEY = VALUE; the header is damaged")
        header[key] = value.strip()
    return header, end.end()


def _dims(path: Path, header: Mapping[str, str]) -> tuple[int, int, int, int]:
    dims = []
    for k in range(1, 5):
        value = header.get(f"DIMENSION_{k}")
        if value is None or not value.isdigit() or int(value) < 1:
            raise NerscError(f"{path}: the NERSC header needs DIMENSION_{k} = a positive int; got {value!r}")
        dims.append(int(value))
    return dims[0], dims[1], dims[2], dims[3]


def _precision_endian(path: Path, header: Mapping[str, str]) -> tuple[str, str]:
    fp = header.get("FLOATING_POINT", "")
    match = _FLOATING_POINT.fullmatch(fp)
    if match is None:
        raise NerscError(f"{path}: FLOATING_POINT = {fp!r} is not one of IEEE32BIG, IEEE32LITTLE, IEEE64BIG, "
                         f"IEEE64LITTLE (or IEEE32, IEEE64: big endian); fix the header")
    return ("single" if match.group(1) == "32" else "double"), (match.group(2) or "BIG").lower()


def _claimed(path: Path, header: Mapping[str, str], key: str) -> tuple[float, float] | None:
    """The header's value of ``key`` and the size of its last printed digit; ``None`` if absent."""
    if key not in header:
        return None
    try:
        value = decimal.Decimal(header[key])
    except decimal.InvalidOperation:
        raise NerscError(f"{path}: {key} = {header[key]!r} is not a number; fix the header") from None
    if not value.is_finite():
        raise NerscError(f"{path}: {key} = {header[key]!r} is not finite; fix the header")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return float(value), 10.0 ** exponent


def read_nersc(path: str | os.PathLike) -> tuple[LinkField, dict[str, str]]:
    """Read a NERSC gauge configuration and verify everything the file claims.

    Checks, each failing with a one-line `NerscError`: the header (BEGIN_HEADER .. END_HEADER, a known
    DATATYPE and FLOATING_POINT, four positive DIMENSIONs); the data size (a truncated file, or a header
    whose dimensions do not match the data); CHECKSUM; unitarity and det = 1 of every link (tolerance
    1e-5 for single, 1e-10 for double precision); PLAQUETTE and LINK_TRACE when present (the same
    tolerance, widened to the last digit the header prints).

    **Returns:** the links ``[1, 4, L1, L2, L3, L4, 3, 3]`` of SU(3), complex64 for single and complex128
    for double precision (lgdiff site axis k = DIMENSION_{k+1}), and the header as ``{key: value}`` strings.
    """
    path = Path(path)
    if not path.is_file():
        raise NerscError(f"{path}: no such NERSC file; check the path")
    with open(path, "rb") as f:
        header, offset = _parse_header(path, f.read(_MAX_HEADER))
        f.seek(offset)
        raw = f.read()
    datatype = header.get("DATATYPE")
    if datatype not in DATATYPES:
        raise NerscError(f"{path}: DATATYPE = {datatype!r} is not supported; lgdiff reads "
                         f"{' and '.join(DATATYPES)} (SU(3) links on a 4D lattice)")
    rows = DATATYPES[datatype]
    dims = _dims(path, header)
    precision, endian = _precision_endian(path, header)
    itemsize = np.dtype(layout.PRECISIONS[precision]).itemsize
    need = dims[0] * dims[1] * dims[2] * dims[3] * layout.ND * rows * layout.NC * 2 * itemsize
    if len(raw) != need:
        what = "is truncated" if len(raw) < need else "has a header that does not match its data"
        raise NerscError(f"{path} {what}: DIMENSION_1..4 = {dims} with {datatype} {header['FLOATING_POINT']} "
                         f"need {need} bytes of data after the header, the file has {len(raw)}; copy the file "
                         f"again or fix the header's dimensions")
    code = ">" if endian == "big" else "<"
    values = np.frombuffer(raw, dtype=np.dtype(layout.PRECISIONS[precision]).newbyteorder(code))
    claimed_sum = header.get("CHECKSUM")
    if claimed_sum is None or not re.fullmatch(r"(0x)?[0-9a-fA-F]{1,8}", claimed_sum.strip()):
        raise NerscError(f"{path}: CHECKSUM = {claimed_sum!r} is not a 32-bit hex number; the header is damaged")
    got_sum = layout.checksum32(values)
    if got_sum != int(claimed_sum, 16):
        raise NerscError(f"{path}: checksum mismatch: the header says {int(claimed_sum, 16):x}, the data sum to "
                         f"{got_sum:x}; the file is corrupt, copy it again")
    lattice = Lattice(shape=dims)
    data = layout.from_file_order(values, lattice, rows)
    worst, where = layout.unitarity_violation(data)
    tol = layout.UNITARITY_TOL[precision]
    if not worst <= tol:
        raise NerscError(f"{path}: the links are not in SU(3): |U^dag U - 1| + |det U - 1| = {worst:.2e} > {tol:.0e} "
                         f"at (mu, x, y, z, t) = {where}; the file is corrupt or not a gauge field")
    for key, fn in (("PLAQUETTE", layout.plaquette), ("LINK_TRACE", layout.link_trace)):
        claimed = _claimed(path, header, key)
        if claimed is None:
            continue
        value, last_digit = claimed
        got = fn(data)
        allowed = max(layout.OBSERVABLE_TOL[precision], last_digit)
        if not abs(got - value) <= allowed:
            raise NerscError(f"{path}: {key} mismatch: the header says {header[key]}, the data give {got:.10g} "
                             f"(allowed difference {allowed:.0e}); the file is corrupt or its header is wrong")
    return LinkField(data, SU(layout.NC), lattice), header


def nersc_header(links: LinkField, *, precision: str = "double", storage: str = "3x3", endian: str = "big",
                 ensemble_id: str = "lgdiff", ensemble_label: str = "", sequence_number: int = 0,
                 beta: float | None = None, extra: Mapping[str, str] | None = None) -> tuple[dict[str, str], bytes]:
    """The header and the data bytes `write_nersc` writes (see there)."""
    links = layout.check_su3_4d(links, "NERSC")
    if precision not in layout.PRECISIONS:
        raise NerscError(f"precision must be 'single' or 'double'; got {precision!r}")
    if storage not in _STORAGE_DATATYPE:
        raise NerscError(f"storage must be '3x3' or '3x2'; got {storage!r}")
    if endian not in ("big", "little"):
        raise NerscError(f"endian must be 'big' or 'little'; got {endian!r}")
    for name, text in (("ensemble_id", ensemble_id), ("ensemble_label", ensemble_label)):
        if "\n" in text or "\r" in text or not text.isascii():
            raise NerscError(f"{name} must be one line of ASCII text (it goes into the header); got {text!r}")
    data, why = layout.exportable(links, precision)
    if data is None:
        raise NerscError(f"cannot write a NERSC file: {why}; only gauge fields in SU(3) can be exported")
    rows = 3 if storage == "3x3" else 2
    values = layout.real_words(layout.to_file_order(data, rows), precision, endian)
    # the header describes the data as a reader sees it (rounded to the precision, third row rebuilt), in
    # float64 arithmetic as external readers recompute it
    stored = layout.from_file_order(values.astype(np.float64), links.lattice, rows)
    Lx, Ly, Lz, Lt = links.lattice.shape
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%a %b %d %H:%M:%S %Y UTC")
    header = {
        "HDR_VERSION": "1.0",
        "DATATYPE": _STORAGE_DATATYPE[storage],
        "STORAGE_FORMAT": "1.0",
        "DIMENSION_1": str(Lx), "DIMENSION_2": str(Ly), "DIMENSION_3": str(Lz), "DIMENSION_4": str(Lt),
        "LINK_TRACE": f"{layout.link_trace(stored):.17g}",
        "PLAQUETTE": f"{layout.plaquette(stored):.17g}",
        "BOUNDARY_1": "PERIODIC", "BOUNDARY_2": "PERIODIC", "BOUNDARY_3": "PERIODIC", "BOUNDARY_4": "PERIODIC",
        "CHECKSUM": f"{layout.checksum32(values):x}",
        "ENSEMBLE_ID": ensemble_id,
        "ENSEMBLE_LABEL": ensemble_label,
        "SEQUENCE_NUMBER": str(sequence_number),
        "CREATOR": "lgdiff",
        "CREATOR_HARDWARE": platform.machine() or "unknown",
        "CREATION_DATE": now,
        "ARCHIVE_DATE": now,
        "FLOATING_POINT": f"IEEE{32 if precision == 'single' else 64}{endian.upper()}",
    }
    if beta is not None:
        header["BETA"] = repr(float(beta))
    for key, value in (extra or {}).items():
        if not _KEY.fullmatch(key) or "\n" in value or not value.isascii() or key in header:
            raise NerscError(f"extra header entry {key!r} = {value!r} must have a new KEY of letters, digits and _ "
                             f"and a one-line value")
        header[key] = value
    return header, values.tobytes()


def write_nersc(path: str | os.PathLike, links: LinkField, *, precision: str = "double", storage: str = "3x3",
                endian: str = "big", ensemble_id: str = "lgdiff", ensemble_label: str = "",
                sequence_number: int = 0, beta: float | None = None,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Write one SU(3) configuration on a 4D lattice as a NERSC file, atomically (temporary file in the
    same directory, then rename).

    Refuses (`NerscError`, nothing written) links that are not finite or not in SU(3) within the
    tolerance of their own precision; complex64 links written in double precision are first projected
    onto SU(3) in float64, so that the file passes the double-precision check of any reader.

    **Arguments:**
    - `links`: SU(3) links of batch 1 on a 4D lattice; lgdiff site axis k becomes DIMENSION_{k+1}.
    - `precision`: ``"double"`` (IEEE64) or ``"single"`` (IEEE32, rounded to nearest).
    - `storage`: ``"3x3"`` (DATATYPE 4D_SU3_GAUGE_3x3) or ``"3x2"`` (4D_SU3_GAUGE, first two rows).
    - `endian`: ``"big"`` (the usual choice) or ``"little"``.
    - `ensemble_id`, `ensemble_label`, `sequence_number` (the trajectory number), `beta` (written as
      ``BETA``, an lgdiff addition other readers ignore), `extra`: more ``KEY: value`` header entries.

    **Returns:** the header written, ``{key: value}``.
    """
    header, data = nersc_header(links, precision=precision, storage=storage, endian=endian,
                                ensemble_id=ensemble_id, ensemble_label=ensemble_label,
                                sequence_number=sequence_number, beta=beta, extra=extra)
    text = "BEGIN_HEADER\n" + "".join(f"{k} = {v}\n" for k, v in header.items()) + "END_HEADER\n"
    layout.write_atomic(Path(path), [text.encode("ascii"), data])
    return header


__all__ = ["DATATYPES", "NerscError", "read_nersc", "write_nersc", "nersc_header"]

"""What the community SU(3) gauge formats (NERSC, ILDG) share: the axis mapping, the byte layout of
the link data, the checks of what a file claims, and atomic writing of a file's bytes.

Axis mapping (docs/community-formats.md): lgdiff direction ``mu`` is the file's ``mu`` and lgdiff
site axis ``k`` is the file's ``DIMENSION_{k+1}`` (x, y, z, t for k = 0, 1, 2, 3). The files store
x fastest, so one configuration in file order is the array ``[t][z][y][x][mu][row][col]``: lgdiff's
``[B, 4, Lx, Ly, Lz, Lt, 3, 3]`` rearranged ``mu x y z t r c -> t z y x mu r c`` (`FILE_ORDER`, einops).
"""

import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from .._fields.links import LinkField
from .._geometry.lattice import Lattice
from .._geometry.paths import plaquette_trace_sum
from .._groups.base import trace
from .._groups.sun import SU
from .ensemble import _default_mode, atomic_replace

NC = 3
ND = 4
LGDIFF_ORDER = "mu x y z t r c"
FILE_ORDER = "t z y x mu r c"
"""One configuration's axes in lgdiff (site axes x, y, z, t = lattice axes 0..3) and in the files."""
PRECISIONS = {"single": np.float32, "double": np.float64}
UNITARITY_TOL = {"single": 1e-5, "double": 1e-10}
"""Largest accepted ``|U^dag U - 1| + |det U - 1|`` per link, for data stored in that precision."""
OBSERVABLE_TOL = {"single": 1e-5, "double": 1e-10}
"""Accepted difference between the plaquette / link trace a file claims and the one of its data
(before allowing for the digits the header prints)."""


def check_su3_4d(links: object, fmt: str) -> LinkField:
    """The format holds SU(3) on a 4D lattice, one configuration: anything else is a clear error."""
    if not isinstance(links, LinkField):
        raise TypeError(f"{fmt} files hold gauge links; pass a LinkField, got {type(links).__name__}")
    if links.group != SU(NC) or links.lattice.dim != ND:
        raise ValueError(f"{fmt} files hold SU(3) links on a 4D lattice; got {links.group} on "
                         f"L={links.lattice.shape}. Only SU(3) 4D ensembles can be converted to {fmt}")
    if links.batch != 1:
        raise ValueError(f"a {fmt} file holds one configuration; got a LinkField of batch {links.batch}. "
                         f"Write links[i] for each configuration i")
    return links


def to_file_order(data: Tensor, rows: int) -> np.ndarray:
    """Complex ``[Lt, Lz, Ly, Lx, 4, rows, 3]`` on the host of links ``[1, 4, *L, 3, 3]`` (``rows`` = 3,
    or 2 for 3x2 storage)."""
    u = rearrange(data[0].detach().to("cpu"), f"{LGDIFF_ORDER} -> {FILE_ORDER}")[..., :rows, :]
    return u.contiguous().numpy()


def from_file_order(values: np.ndarray, lattice: Lattice, rows: int) -> Tensor:
    """Real ``values`` in file order (re, im interleaved) -> complex links ``[1, 4, *L, 3, 3]``; a 3x2
    storage gets its third row back as ``conj(row0 x row1)`` (unitarity and det = 1)."""
    Lx, Ly, Lz, Lt = lattice.shape
    arr = values.astype(values.dtype.newbyteorder("=")).reshape(Lt, Lz, Ly, Lx, ND, rows, NC, 2)  # a writable copy
    t = torch.view_as_complex(torch.from_numpy(arr))
    if rows == 2:
        t = torch.cat([t, torch.linalg.cross(t[..., 0, :], t[..., 1, :]).conj()[..., None, :]], dim=-2)
    return rearrange(t, f"{FILE_ORDER} -> {LGDIFF_ORDER}").contiguous()[None]


def real_words(u: np.ndarray, precision: str, endian: str) -> np.ndarray:
    """The complex array as the file's real numbers: precision and byte order of the file."""
    code = {"big": ">", "little": "<"}[endian]
    real = np.ascontiguousarray(u).view(u.real.dtype).reshape(-1)
    return real.astype(np.dtype(PRECISIONS[precision]).newbyteorder(code))


def checksum32(values: np.ndarray) -> int:
    """NERSC checksum: the sum, mod 2^32, of the data as unsigned 32-bit words, taken from the *values*
    (so independent of the file's byte order): a float32 is one word, a float64 contributes its two
    32-bit halves."""
    native = values.astype(values.dtype.newbyteorder("<"), copy=False)
    return int(native.view("<u4").sum(dtype=np.uint64)) & 0xFFFFFFFF


def link_trace(data: Tensor) -> float:
    """NERSC's LINK_TRACE of links ``[1, 4, *L, 3, 3]``: the average of ``Re tr U / 3`` over all links,
    in float64 arithmetic whatever the links' precision (as external readers recompute it)."""
    return float(trace(data.to(torch.complex128)).real.mean()) / NC


def plaquette(data: Tensor) -> float:
    """NERSC's PLAQUETTE of links ``[1, 4, *L, 3, 3]``: the average of ``Re tr U_p / 3`` over all
    plaquettes (lgdiff's `mean_plaquette`), in float64 arithmetic whatever the links' precision."""
    return float(plaquette_trace_sum(data.to(torch.complex128)).mean()) / (NC * ND * (ND - 1) // 2)


def unitarity_violation(data: Tensor) -> tuple[float, tuple[int, ...]]:
    """Worst ``|U^dag U - 1| + |det U - 1|`` and the link ``(mu, x, y, z, t)`` where it occurs (NaN, the
    worst, where a link is not finite)."""
    err = SU(NC).membership_error(data[0].to(torch.complex128))
    err = torch.where(err.isnan(), torch.inf, err)
    flat = int(err.argmax())
    where = tuple(int(i) for i in np.unravel_index(flat, tuple(err.shape)))
    worst = float(err.reshape(-1)[flat])
    return (math.nan if math.isinf(worst) else worst), where


def exportable(links: LinkField, precision: str) -> tuple[Tensor | None, str]:
    """The links to write in ``precision``, or ``None`` and why they cannot be written: every entry finite
    and every link in SU(3) within the tolerance of the links' own precision (`UNITARITY_TOL`), so that
    a reader's check of the file cannot fail. Single-precision links written in double precision are
    first projected onto SU(3) in float64 (a change within their rounding), because the file's
    precision promises unitarity to 1e-10."""
    data = links.data.detach()
    finite = torch.isfinite(torch.view_as_real(data)).all(dim=(-1, -2, -3))[0]
    if not bool(finite.all()):
        where = tuple(int(i) for i in np.unravel_index(int((~finite).reshape(-1).int().argmax()), tuple(finite.shape)))
        return None, f"the links are not finite (NaN or inf) at (mu, x, y, z, t) = {where}"
    own = "single" if data.dtype == torch.complex64 else "double"
    worst, where = unitarity_violation(data)
    if not worst <= UNITARITY_TOL[own]:
        return None, (f"the links are not in SU(3): |U^dag U - 1| + |det U - 1| = {worst:.2e} > "
                      f"{UNITARITY_TOL[own]:.0e} at (mu, x, y, z, t) = {where}")
    if own == "single" and precision == "double":
        data = SU(NC).reunitarize(data.to(torch.complex128))
    return data, ""


def write_atomic(path: Path, payload: list[bytes]) -> None:
    """Write the chunks of ``payload`` to ``path`` atomically (temporary file in the same directory, fsync,
    rename; `lgdiff._io.ensemble.atomic_replace`)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            for chunk in payload:
                f.write(chunk)

    atomic_replace(path, fill, _default_mode())

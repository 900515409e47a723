"""Closed loops on raw link tensors ``[B, D, *L, N, N]``: plaquettes, staples and rectangles.

These are undecorated inner helpers (hot paths); the typed public API wraps them.

Why the code looks like this (docs/performance.md has the measurements): a batched ``@`` on
3x3 complex matrices pays per-matrix overhead on the CPU, and every PyTorch operation is one pass
over memory. So the loops are computed in a *matrix-index-first* layout ``[N, N, B, *L]`` (each
matrix entry one contiguous array over the sites), where an N x N product is N broadcasted
multiply-adds over whole arrays, ``C = sum_k A[:, k] B[k, :]``, vectorised across sites. The layout
is converted once on the way in and once on the way out; the products ``U_mu(x) U_nu(x+mu)`` and
``U_nu(x) U_mu(x+nu)`` of a plane are shared between the plaquette, its four staples and its two
orientations; on the CPU the batch is processed in cache-sized chunks (``CHUNK_SITES``). The code
is generic in N (U(1) is N = 1, where a product is one complex multiply), device-agnostic, and
differentiable. When no gradient is needed, fused kernels replace the plaquette trace sum, the staple sum of
one direction and the projected force: on the CPU (all three) the native C++ kernels (``lgdiff._native``, on by default, ``LGDIFF_NATIVE=0`` switches them
off), on CUDA the Triton kernels (``_paths_triton``, opt-in with ``LGDIFF_TRITON=1``; trace sum and force).

Every function here is marked ``@typing.no_type_check``: the test suite's jaxtyping import hook
wraps every other function of lgdiff in a runtime check of about 50-100 us a call, and a force
evaluation makes about a hundred calls to these helpers (benchmarks/bench_core.py measures the
overhead). The typed public API (``WilsonAction``, ``LinkField``) is checked at its boundary.
"""

import math
import typing
import torch
from torch import Tensor

from .. import _native
from . import _paths_triton

_SOA_SITE_AXIS = 3  # in the matrix-index-first layout [N, N, B, *L] they start at axis 3
CHUNK_SITES = 8192
"""On the CPU the batch is processed in chunks of about this many sites (whole configurations), so
that the temporaries of a chunk stay in the cache: with tens of MB of links the unchunked code is
bound by main-memory traffic of its intermediates (docs/performance.md)."""


@typing.no_type_check
def _chunks(u: Tensor) -> list[slice]:
    """Batch slices of about ``CHUNK_SITES`` sites on the CPU; the whole batch on other devices."""
    batch = u.shape[0]
    if u.device.type != "cpu":
        return [slice(0, batch)]
    step = max(1, CHUNK_SITES // math.prod(u.shape[2:-2]))
    return [slice(i, min(i + step, batch)) for i in range(0, batch, step)]


# ---- layout ---------------------------------------------------------------------------------------

@typing.no_type_check
def _to_soa(m: Tensor) -> Tensor:
    """``[B, *L, N, N] -> [N, N, B, *L]``, contiguous: one strided copy into a fresh tensor."""
    n = m.shape[-1]
    return m.new_empty((n, n, *m.shape[:-2])).copy_(m.movedim((-2, -1), (0, 1)))


@typing.no_type_check
def _to_aos(s: Tensor) -> Tensor:
    """``[N, N, B, *L] -> [B, *L, N, N]``, contiguous (inverse of ``_to_soa``)."""
    n = s.shape[0]
    return s.new_empty((*s.shape[2:], n, n)).copy_(s.movedim((0, 1), (-2, -1)))


@typing.no_type_check
def _roll(s: Tensor, mu: int, steps: int = 1) -> Tensor:
    """``g(x) = s(x + steps mu)`` on a matrix-index-first tensor ``[N, N, B, *L]``.

    The convention of ``lattice.shift`` (roll by ``-steps``), inlined to stay out of the import hook.
    """
    return torch.roll(s, shifts=-steps, dims=_SOA_SITE_AXIS + mu)


# ---- products in the matrix-index-first layout ----------------------------------------------------
# ``conj`` arguments are materialised conjugates: arithmetic on lazily conjugated views is ~3x slower.

@typing.no_type_check
def _mm(a: Tensor, b: Tensor) -> Tensor:
    """``A B``: ``C_ij = sum_k A_ik B_kj``."""
    c = a[:, :1] * b[:1]
    for k in range(1, a.shape[0]):
        c = c.addcmul_(a[:, k : k + 1], b[k : k + 1])
    return c


@typing.no_type_check
def _mm_dag(a: Tensor, b_conj: Tensor) -> Tensor:
    """``A B^dagger`` from ``conj(B)``: ``C_ij = sum_k A_ik conj(B_jk)``."""
    c = a[:, :1] * b_conj[:, 0][None]
    for k in range(1, a.shape[0]):
        c = c.addcmul_(a[:, k : k + 1], b_conj[:, k][None])
    return c


@typing.no_type_check
def _dag_mm(a_conj: Tensor, b: Tensor) -> Tensor:
    """``A^dagger B`` from ``conj(A)``: ``C_ij = sum_k conj(A_ki) B_kj``."""
    c = a_conj[0][:, None] * b[:1]
    for k in range(1, a_conj.shape[0]):
        c = c.addcmul_(a_conj[k][:, None], b[k : k + 1])
    return c


@typing.no_type_check
def _re_tr_dag(x: Tensor, y: Tensor) -> Tensor:
    """``Re tr(X Y^dagger) = sum_ij Re X_ij Re Y_ij + Im X_ij Im Y_ij``, ``[B, *L]`` real."""
    n2 = x.shape[0] * x.shape[1]
    xr = torch.view_as_real(x).reshape(n2, -1, 2)
    yr = torch.view_as_real(y).reshape(n2, -1, 2)
    # one batched dot product over (entry, re/im): 4x faster on the CPU than mul + sum over two axes
    return torch.einsum("ksc,ksc->s", xr, yr).reshape(x.shape[2:])


@typing.no_type_check
def _plane_products(u_mu: Tensor, u_nu: Tensor, mu: int, nu: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The two halves of the plaquette in plane (mu, nu), and the shifted links they used:
    ``X = U_mu(x) U_nu(x+mu)``, ``Y = U_nu(x) U_mu(x+nu)`` (so ``U_{mu nu}(x) = X Y^dagger``),
    ``U_nu(x+mu)`` and ``U_mu(x+nu)``, all matrix-index-first."""
    u_nu_xpmu = _roll(u_nu, mu)
    u_mu_xpnu = _roll(u_mu, nu)
    return _mm(u_mu, u_nu_xpmu), _mm(u_nu, u_mu_xpnu), u_nu_xpmu, u_mu_xpnu


# ---- public helpers (raw tensors, AoS in and out) -------------------------------------------------

@typing.no_type_check
def plaquette(u: Tensor, mu: int, nu: int) -> Tensor:
    """``U_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dagger U_nu(x)^dagger``, ``[B, *L, N, N]``."""
    x, y, _, _ = _plane_products(_to_soa(u[:, mu]), _to_soa(u[:, nu]), mu, nu)
    return _to_aos(_mm_dag(x, y.conj_physical()))


@typing.no_type_check
def plaquette_trace_sum(u: Tensor) -> Tensor:
    """``sum_{mu<nu} Re tr U_{mu nu}(x)``, ``[B, *L]`` real: the Wilson action density's ingredient.

    Never forms the plaquette matrix: ``Re tr(X Y^dagger)`` is an elementwise dot product. On CUDA,
    when no gradient is needed and ``LGDIFF_TRITON=1``, one fused Triton kernel.
    """
    if _paths_triton.available(u):
        return _paths_triton.plaquette_trace_sum(u)
    if _native.available(u):
        return _native.plaquette_trace_sum(u)
    parts = [_plaquette_trace_sum(u[chunk]) for chunk in _chunks(u)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


@typing.no_type_check
def _plaquette_trace_sum(u: Tensor) -> Tensor:
    d = u.shape[1]
    soa = [_to_soa(u[:, mu]) for mu in range(d)]
    total = None
    for mu in range(d):
        for nu in range(mu + 1, d):
            x, y, _, _ = _plane_products(soa[mu], soa[nu], mu, nu)
            p = _re_tr_dag(x, y)
            total = p if total is None else total.add_(p)
    return total


@typing.no_type_check
def _plane_staples(
    u_mu: Tensor, u_nu: Tensor, mu: int, nu: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four staples of plane (mu, nu) through the links at x, matrix-index-first:
    upper and lower for ``U_mu(x)``, upper and lower for ``U_nu(x)`` (the lower ones already shifted),
    from the two shared products X, Y of ``_plane_products``:

    - ``U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag = U_nu(x+mu) Y^dag``,
    - ``U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu) = (X^dag U_nu)(x - nu)``,
    - ``U_mu(x+nu) U_nu(x+mu)^dag U_mu(x)^dag = U_mu(x+nu) X^dag``,
    - ``U_mu(x+nu-mu)^dag U_nu(x-mu)^dag U_mu(x-mu) = (Y^dag U_mu)(x - mu)``.
    """
    x, y, u_nu_xpmu, u_mu_xpnu = _plane_products(u_mu, u_nu, mu, nu)
    x_conj, y_conj = x.conj_physical(), y.conj_physical()
    upper_mu = _mm_dag(u_nu_xpmu, y_conj)
    lower_mu = _roll(_dag_mm(x_conj, u_nu), nu, steps=-1)
    upper_nu = _mm_dag(u_mu_xpnu, x_conj)
    lower_nu = _roll(_dag_mm(y_conj, u_mu), mu, steps=-1)
    return upper_mu, lower_mu, upper_nu, lower_nu


@typing.no_type_check
def _staples_one(soa: list[Tensor], mu: int) -> Tensor:
    """Staple sum A_mu for one direction, matrix-index-first, 4 products per other direction."""
    total = None
    u_mu = soa[mu]
    for nu in range(len(soa)):
        if nu == mu:
            continue
        u_nu = soa[nu]
        u_nu_xpmu = _roll(u_nu, mu)
        upper = _mm_dag(u_nu_xpmu, _mm(u_nu, _roll(u_mu, nu)).conj_physical())
        lower = _roll(_dag_mm(_mm(u_mu, u_nu_xpmu).conj_physical(), u_nu), nu, steps=-1)
        total = upper + lower if total is None else total.add_(upper).add_(lower)
    assert total is not None  # D >= 2: callers check
    return total


@typing.no_type_check
def staples(u: Tensor, mu: int) -> Tensor:
    """Sum of the 2(D-1) staples A_mu(x) such that ``U_mu(x) A_mu(x)`` are the closed plaquettes through
    the link, ``[B, *L, N, N]``:

    ``A = sum_{nu != mu} U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag + U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)``.
    """
    if u.shape[1] < 2:
        return torch.zeros_like(u[:, mu])
    if _native.available(u):
        return _native.staples(u, mu)
    out = u.new_empty(u[:, mu].shape)
    for chunk in _chunks(u):
        a = _staples_one([_to_soa(u[chunk, nu]) for nu in range(u.shape[1])], mu)
        out[chunk] = a.movedim((0, 1), (-2, -1))
    return out


@typing.no_type_check
def closed_staples(u: Tensor) -> Tensor:
    """``U_mu(x) A_mu(x)`` for every direction, ``[B, D, *L, N, N]``: the sum of the closed plaquettes
    that start with the link ``U_mu(x)`` (the Wilson force is their algebra projection).

    All D(D-1)/2 planes share their products: 6 N x N products per plane plus one per direction,
    against 4 per ordered pair plus one per direction for D calls of ``staples``.
    """
    out = u.new_empty(u.shape)
    for chunk in _chunks(u):
        out[chunk] = _soa_as_links(_closed_staples(u[chunk]))
    return out


@typing.no_type_check
def _closed_staples(u: Tensor) -> Tensor:
    """``closed_staples`` of one chunk, matrix-index-first: ``[D, N, N, B, *L]``."""
    d = u.shape[1]
    soa = [_to_soa(u[:, mu]) for mu in range(d)]
    total: list[Tensor | None] = [None] * d
    for mu in range(d):
        for nu in range(mu + 1, d):
            upper_mu, lower_mu, upper_nu, lower_nu = _plane_staples(soa[mu], soa[nu], mu, nu)
            for k, a, b in ((mu, upper_mu, lower_mu), (nu, upper_nu, lower_nu)):
                acc = total[k]
                total[k] = a.add_(b) if acc is None else acc.add_(a).add_(b)
    closed = u.new_empty((d, *soa[0].shape))
    for mu in range(d):
        a = total[mu]
        closed[mu] = _mm(soa[mu], a) if a is not None else 0
    return closed


@typing.no_type_check
def _soa_as_links(s: Tensor) -> Tensor:
    """``[D, N, N, B, *L] -> [B, D, *L, N, N]``, a view."""
    return s.movedim((0, 1, 2), (1, -2, -1))


@typing.no_type_check
def projected_closed_staples(u: Tensor, *, traceless: bool, scale: float) -> Tensor:
    """``scale * P(U_mu(x) A_mu(x))`` for every direction, ``[B, D, *L, N, N]``: the Wilson force.

    ``P(M) = (M - M^dagger) / 2``, minus ``tr / N`` times the identity if ``traceless``: the algebra
    projection of SU(N) (traceless) or U(1) (not), computed here rather than by the group because in
    the matrix-index-first layout ``M^dagger`` is a permutation of whole arrays. On CUDA, when no
    gradient is needed and ``LGDIFF_TRITON=1``, one fused Triton kernel does it all in one pass;
    elsewhere it runs chunk by chunk while the products are in the cache.
    """
    if _paths_triton.available(u):
        return _paths_triton.projected_closed_staples(u, scale, traceless)
    if _native.available(u):
        return _native.projected_closed_staples(u, scale, traceless)
    out = u.new_empty(u.shape)
    for chunk in _chunks(u):
        m = _closed_staples(u[chunk])
        p = (m - m.transpose(1, 2).conj_physical()) * (scale / 2)
        if traceless:
            n = m.shape[1]
            t = p.diagonal(dim1=1, dim2=2).sum(-1) / n  # [D, B, *L]
            for i in range(n):
                p[:, i, i] -= t
        out[chunk] = _soa_as_links(p)
    return out


@typing.no_type_check
def rectangle(u: Tensor, mu: int, nu: int, r: int, t: int) -> Tensor:
    """R x T Wilson loop matrix with corner x, R steps along mu and T along nu, ``[B, *L, N, N]``."""
    u_mu, u_nu = _to_soa(u[:, mu]), _to_soa(u[:, nu])
    line_mu = u_mu
    for k in range(1, r):
        line_mu = _mm(line_mu, _roll(u_mu, mu, steps=k))
    line_nu = u_nu
    for k in range(1, t):
        line_nu = _mm(line_nu, _roll(u_nu, nu, steps=k))
    # U_mu-line(x) U_nu-line(x + r mu) [U_mu-line(x + t nu)]^dag [U_nu-line(x)]^dag
    x = _mm(line_mu, _roll(line_nu, mu, steps=r))
    y = _mm(line_nu, _roll(line_mu, nu, steps=t))
    return _to_aos(_mm_dag(x, y.conj_physical()))

"""Fused Triton kernels for the plaquette trace sum and the Wilson force on CUDA (private).

Everything here is ``@typing.no_type_check``: hot paths, and the test suite's jaxtyping import hook
must not wrap a function that ``triton.jit`` compiles.

One GPU thread per site keeps every N x N matrix in registers (``N^2`` real and ``N^2`` imaginary
parts as tuples), loads each link it needs straight from the ``[B, D, *L, N, N]`` complex tensor
(neighbours by periodic index arithmetic, no rolled copies), and writes only the result: one pass
over memory where the eager code (paths.py) makes dozens. No autograd: ``paths.py`` calls these only
when no gradient is needed, and falls back to its eager code on the CPU, without Triton, for D > 4,
or when ``ENABLED`` is False (the benchmark switches it to time both).

Lattice sizes, D and the batch are run-time arguments and the loops over directions are run-time
loops, so Triton compiles one kernel per (N, dtype, traceless) only: an earlier version that
unrolled everything at compile time took minutes to compile for SU(3) in 4D.
"""

import os
import typing

import torch
from torch import Tensor

try:  # Triton ships with the CUDA builds of PyTorch; absent on CPU-only installs
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

# Opt-in until the kernels in this form have been compiled and timed on a GPU (docs/performance.md):
# LGDIFF_TRITON=1 switches them on. Their arithmetic is checked against the eager code in Triton's
# interpreter and, on a CUDA machine, by tests/geometry/test_paths.py.
ENABLED = os.environ.get("LGDIFF_TRITON", "0") == "1"
_BLOCK = 128


@typing.no_type_check
def available(u: Tensor) -> bool:
    """Whether the fused kernels can run on ``u`` (CUDA, Triton present, 2 <= D <= 4, no gradient needed)."""
    return (
        ENABLED
        and triton is not None
        and u.is_cuda
        and 2 <= u.shape[1] <= 4
        and not (u.requires_grad and torch.is_grad_enabled())
    )


@typing.no_type_check
def _geometry(u: Tensor) -> tuple[int, int, tuple[int, int, int, int]]:
    d = u.shape[1]
    shape = tuple(u.shape[2:-2]) + (1,) * (4 - d)  # pad to 4 axes with size-1 axes
    sites = u.shape[0]
    for s in shape:
        sites *= s
    return d, sites, shape  # type: ignore[return-value]


@typing.no_type_check
def plaquette_trace_sum(u: Tensor) -> Tensor:
    """``sum_{mu<nu} Re tr U_{mu nu}(x)``, ``[B, *L]`` real, in one pass."""
    u = u.contiguous()  # Haar-random links come out of QR with transposed matrices
    d, sites, shape = _geometry(u)
    out = torch.empty(u.shape[:1] + u.shape[2:-2], dtype=u.real.dtype, device=u.device)
    grid = (triton.cdiv(sites, _BLOCK),)
    _plaquette_kernel[grid](torch.view_as_real(u), out, sites, d, *shape, N=u.shape[-1], BLOCK=_BLOCK)
    return out


@typing.no_type_check
def projected_closed_staples(u: Tensor, scale: float, traceless: bool) -> Tensor:
    """``scale P(U_mu(x) A_mu(x))``, ``[B, D, *L, N, N]``, with P the anti-Hermitian part (traceless if asked)."""
    u = u.contiguous()
    d, sites, shape = _geometry(u)
    out = torch.empty_like(u)
    # a tensor, not a Python float: Triton would pass a float as float32
    scale_t = torch.full((1,), scale, dtype=u.real.dtype, device=u.device)
    grid = (triton.cdiv(sites, _BLOCK), d)
    _force_kernel[grid](torch.view_as_real(u), torch.view_as_real(out), scale_t, sites, d, *shape, N=u.shape[-1],
                        TRACELESS=traceless, BLOCK=_BLOCK)
    return out


if triton is not None:

    @triton.jit
    @typing.no_type_check
    def _load(ptr, link, mask, N: tl.constexpr):
        """The matrix of link number ``link`` as tuples (re, im) of N*N register vectors."""
        base = link * (2 * N * N)
        re = ()
        im = ()
        for e in tl.static_range(N * N):
            re = re + (tl.load(ptr + base + 2 * e, mask=mask, other=0.0),)
            im = im + (tl.load(ptr + base + 2 * e + 1, mask=mask, other=0.0),)
        return re, im

    @triton.jit
    @typing.no_type_check
    def _mm(ar, ai, br, bi, N: tl.constexpr, DAG_A: tl.constexpr, DAG_B: tl.constexpr):
        """``op(A) op(B)`` with op = dagger where asked, as tuples (re, im)."""
        cr = ()
        ci = ()
        for i in tl.static_range(N):
            for j in tl.static_range(N):
                for k in tl.static_range(N):
                    if DAG_A:
                        xr = ar[k * N + i]
                        xi = -ai[k * N + i]
                    else:
                        xr = ar[i * N + k]
                        xi = ai[i * N + k]
                    if DAG_B:
                        yr = br[j * N + k]
                        yi = -bi[j * N + k]
                    else:
                        yr = br[k * N + j]
                        yi = bi[k * N + j]
                    if k == 0:
                        sr = xr * yr - xi * yi
                        si = xr * yi + xi * yr
                    else:
                        sr = sr + xr * yr - xi * yi
                        si = si + xr * yi + xi * yr
                cr = cr + (sr,)
                ci = ci + (si,)
        return cr, ci

    @triton.jit
    @typing.no_type_check
    def _add(ar, ai, br, bi, N: tl.constexpr):
        cr = ()
        ci = ()
        for e in tl.static_range(N * N):
            cr = cr + (ar[e] + br[e],)
            ci = ci + (ai[e] + bi[e],)
        return cr, ci

    @triton.jit
    @typing.no_type_check
    def _zeros(N: tl.constexpr, BLOCK: tl.constexpr, dtype: tl.constexpr):
        re = ()
        im = ()
        for e in tl.static_range(N * N):
            re = re + (tl.zeros((BLOCK,), dtype=dtype),)
            im = im + (tl.zeros((BLOCK,), dtype=dtype),)
        return re, im

    @triton.jit
    @typing.no_type_check
    def _pick(mu, a0, a1, a2, a3):
        """``(a0, a1, a2, a3)[mu]`` for a run-time direction mu."""
        return tl.where(mu == 0, a0, tl.where(mu == 1, a1, tl.where(mu == 2, a2, a3)))

    @triton.jit
    @typing.no_type_check
    def _hop(lin, mu, x0, x1, x2, x3, L0, L1, L2, L3, FORWARD: tl.constexpr):
        """Linear site index (within one configuration) of the neighbour one step forward (or back)
        along mu, periodic; ``x0..x3`` are the site's coordinates, ``L0..L3`` the lattice sizes."""
        x = _pick(mu, x0, x1, x2, x3)
        size = _pick(mu, L0, L1, L2, L3)
        stride = _pick(mu, L1 * L2 * L3, L2 * L3, L3, 1)
        if FORWARD:
            return tl.where(x == size - 1, lin - (size - 1) * stride, lin + stride)
        else:
            return tl.where(x == 0, lin + (size - 1) * stride, lin - stride)

    @triton.jit
    @typing.no_type_check
    def _sites(pid, n_sites, L0, L1, L2, L3, BLOCK: tl.constexpr):
        """The block's sites: flat index s, mask, and (configuration, linear site, 4 coordinates)."""
        s = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = s < n_sites
        s = tl.where(mask, s, 0)
        V = L0 * L1 * L2 * L3
        b = s // V
        lin = (s - b * V).to(tl.int32)
        x3 = lin % L3
        x2 = (lin // L3) % L2
        x1 = (lin // (L3 * L2)) % L1
        x0 = lin // (L3 * L2 * L1)
        return s, mask, b, lin, x0, x1, x2, x3

    @triton.jit
    @typing.no_type_check
    def _plaquette_kernel(u_ptr, out_ptr, n_sites, D, L0, L1, L2, L3, N: tl.constexpr, BLOCK: tl.constexpr):
        s, mask, b, lin, x0, x1, x2, x3 = _sites(tl.program_id(0), n_sites, L0, L1, L2, L3, BLOCK)
        V = L0 * L1 * L2 * L3
        first = b * D * V  # link number of (b, mu=0, site 0)
        acc = tl.zeros((BLOCK,), dtype=out_ptr.dtype.element_ty)
        for mu in range(D):
            for nu in range(mu + 1, D):
                # Re tr U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag = Re tr X Y^dag
                ar, ai = _load(u_ptr, first + mu * V + lin, mask, N)
                br, bi = _load(u_ptr, first + nu * V + _hop(lin, mu, x0, x1, x2, x3, L0, L1, L2, L3, True), mask, N)
                xr, xi = _mm(ar, ai, br, bi, N, False, False)
                cr, ci = _load(u_ptr, first + nu * V + lin, mask, N)
                dr, di = _load(u_ptr, first + mu * V + _hop(lin, nu, x0, x1, x2, x3, L0, L1, L2, L3, True), mask, N)
                yr, yi = _mm(cr, ci, dr, di, N, False, False)
                for e in tl.static_range(N * N):
                    acc += xr[e] * yr[e] + xi[e] * yi[e]
        tl.store(out_ptr + s, acc, mask=mask)

    @triton.jit
    @typing.no_type_check
    def _force_kernel(u_ptr, out_ptr, scale_ptr, n_sites, D, L0, L1, L2, L3, N: tl.constexpr,
                      TRACELESS: tl.constexpr, BLOCK: tl.constexpr):
        s, mask, b, lin, x0, x1, x2, x3 = _sites(tl.program_id(0), n_sites, L0, L1, L2, L3, BLOCK)
        mu = tl.program_id(1)
        V = L0 * L1 * L2 * L3
        first = b * D * V  # link number of (b, mu=0, site 0)
        up = _hop(lin, mu, x0, x1, x2, x3, L0, L1, L2, L3, True)  # x + mu
        sr, si = _zeros(N, BLOCK, u_ptr.dtype.element_ty)
        for j in range(D - 1):
            nu = j + (j >= mu).to(tl.int32)  # the directions other than mu
            vp = _hop(lin, nu, x0, x1, x2, x3, L0, L1, L2, L3, True)  # x + nu
            vm = _hop(lin, nu, x0, x1, x2, x3, L0, L1, L2, L3, False)  # x - nu
            # x + mu - nu: the mu-coordinate of x - nu is the site's own
            upvm = _hop(vm, mu, x0, x1, x2, x3, L0, L1, L2, L3, True)
            # upper: U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
            pr, pi = _load(u_ptr, first + nu * V + up, mask, N)
            qr, qi = _load(u_ptr, first + mu * V + vp, mask, N)
            tr, ti = _mm(pr, pi, qr, qi, N, False, True)
            qr, qi = _load(u_ptr, first + nu * V + lin, mask, N)
            tr, ti = _mm(tr, ti, qr, qi, N, False, True)
            sr, si = _add(sr, si, tr, ti, N)
            # lower: U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu) = (U_mu(x-nu) U_nu(x+mu-nu))^dag U_nu(x-nu)
            pr, pi = _load(u_ptr, first + nu * V + upvm, mask, N)
            qr, qi = _load(u_ptr, first + mu * V + vm, mask, N)
            tr, ti = _mm(qr, qi, pr, pi, N, False, False)
            qr, qi = _load(u_ptr, first + nu * V + vm, mask, N)
            tr, ti = _mm(tr, ti, qr, qi, N, True, False)
            sr, si = _add(sr, si, tr, ti, N)
        ur, ui = _load(u_ptr, first + mu * V + lin, mask, N)
        mr, mi = _mm(ur, ui, sr, si, N, False, False)
        # scale * anti-Hermitian (traceless) part: (M - M^dag) / 2 - tr / N
        scale = tl.load(scale_ptr)
        if TRACELESS:
            t = mi[0]
            for i in tl.static_range(1, N):
                t += mi[i * N + i]
            t = t / N
        base = (first + mu * V + lin) * (2 * N * N)
        for i in tl.static_range(N):
            for j in tl.static_range(N):
                re = (mr[i * N + j] - mr[j * N + i]) * 0.5
                im = (mi[i * N + j] + mi[j * N + i]) * 0.5
                if TRACELESS:
                    if i == j:
                        im = im - t
                tl.store(out_ptr + base + 2 * (i * N + j), re * scale, mask=mask)
                tl.store(out_ptr + base + 2 * (i * N + j) + 1, im * scale, mask=mask)

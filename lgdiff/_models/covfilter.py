r"""A gauge-covariant Gaussian filter of the Wilson force: the score of a Gaussian field at noise level ``n``.

For a Gaussian target of precision ``c H`` convolved with Brownian noise of variance ``n`` the score is

    ``s_n(X) = -(1 + n c H)^{-1} c H X = (1 + n c H)^{-1} F``,   ``F = -c H X`` (the force at ``n = 0``),

a mode-dependent filter of the force: stiff (short-distance) modes are damped by ``1 / (n c H)``, soft ones pass.
For links, ``H`` is the Gauss-Newton part of the Wilson action's Hessian, ``J^T J`` with ``J`` the linear map
from left perturbations of the links, ``U_mu(x) -> exp(X_mu(x)) U_mu(x)``, to the perturbations of the oriented
plaquettes (each in the frame of its corner ``x``):

    ``(J X)_{mu nu}(x) = X_mu(x) + a X_nu(x + mu) a^+ - b X_mu(x + nu) b^+ - P X_nu(x) P^+``,

``a = U_mu(x)``, ``b = U_mu(x) U_nu(x + mu) U_mu(x + nu)^+``, ``P = b U_nu(x)^+`` (the plaquette). ``J`` and
``J^T`` transport every term to the frame of the site it acts on, so ``H`` commutes with gauge transformations,
is positive semi-definite, and equals the lattice ``curl^T curl`` (``p_hat^2`` on the transverse modes, 0 on the
gauge modes) at ``U = 1``. For 2D U(1) it is exactly the Hessian of the Gaussian action.

:func:`covariant_filter` applies ``(1 + k H)^{-1}`` (``k`` per configuration) by a fixed number of conjugate-gradient
steps from zero: a fixed polynomial in ``H`` applied to the force, so the result is gauge covariant to float precision
for any number of steps, deterministic and differentiable (a network can learn ``c`` through it). A diffusion
score built on it (``LCNNConfig(force_filter=K)``, ``K`` conjugate-gradient steps) holds what a local network cannot represent: the non-local
filter that the Gaussian analogue of the score has at intermediate noise (docs/gauge-diffusion.md).
"""

import functools

import torch
from torch import Tensor

from .._geometry.lattice import shift

_shift = functools.partial(shift, site_axis=1)  # one link direction [B, *L, N, N]


def _ad(g: Tensor, x: Tensor) -> Tensor:
    return g @ x @ g.mH


def _frames(u: Tensor) -> list[tuple[int, int, Tensor, Tensor, Tensor]]:
    """``(mu, nu, a, b, P)`` per plane ``mu < nu`` (the transports of `plaquette_jacobian`)."""
    dim = u.shape[1]
    out = []
    for mu in range(dim):
        for nu in range(mu + 1, dim):
            a = u[:, mu]
            b = a @ _shift(u[:, nu], mu) @ _shift(u[:, mu], nu).mH
            out.append((mu, nu, a, b, b @ u[:, nu].mH))
    return out


def plaquette_jacobian(u: Tensor, x: Tensor, frames: list | None = None) -> Tensor:
    """``J X``: link algebra field ``x [B, D, *L, N, N]`` -> plaquette perturbations ``[B, D(D-1)/2, *L, N, N]``
    (module docstring) at links ``u [B, D, *L, N, N]``."""
    frames = _frames(u) if frames is None else frames
    ys = [x[:, mu] + _ad(a, _shift(x[:, nu], mu)) - _ad(b, _shift(x[:, mu], nu)) - _ad(p, x[:, nu])
          for mu, nu, a, b, p in frames]
    return torch.stack(ys, dim=1)


def plaquette_jacobian_t(u: Tensor, y: Tensor, frames: list | None = None) -> Tensor:
    """``J^T Y`` (the adjoint of `plaquette_jacobian` in ``<X, Y> = sum -tr(X Y)``): ``[B, P, *L, N, N]`` ->
    ``[B, D, *L, N, N]``."""
    frames = _frames(u) if frames is None else frames
    out = [torch.zeros_like(u[:, 0]) for _ in range(u.shape[1])]
    for i, (mu, nu, a, b, p) in enumerate(frames):
        yp = y[:, i]
        out[mu] = out[mu] + yp - _shift(_ad(b.mH, yp), nu, steps=-1)
        out[nu] = out[nu] + _shift(_ad(a.mH, yp), mu, steps=-1) - _ad(p.mH, yp)
    return torch.stack(out, dim=1)


def _dot(x: Tensor, y: Tensor) -> Tensor:
    """``sum -Re tr(X Y) = sum Re(conj(X) Y)`` per configuration (anti-Hermitian X)."""
    return (x.conj() * y).real.flatten(1).sum(1)


def covariant_filter(u: Tensor, f: Tensor, k: Tensor, *, steps: int) -> Tensor:
    """``(1 + k H)^{-1} f`` by ``steps`` conjugate-gradient steps from zero, ``H = J^T J`` (module docstring).

    ``u``: links ``[B, D, *L, N, N]``; ``f``: algebra field of the same shape; ``k``: ``[B]`` non-negative real.
    """
    frames = _frames(u)
    kk = k.to(f.real.dtype).reshape(-1, *([1] * (f.ndim - 1)))

    def apply(x: Tensor) -> Tensor:
        return x + kk * plaquette_jacobian_t(u, plaquette_jacobian(u, x, frames), frames)

    z = torch.zeros_like(f)
    r = f
    p = r
    rr = _dot(r, r)
    tiny = torch.finfo(rr.dtype).tiny
    for _ in range(steps):
        ap = apply(p)
        alpha = (rr / _dot(p, ap).clamp_min(tiny)).reshape(kk.shape)
        z = z + alpha * p
        r = r - alpha * ap
        rr_new = _dot(r, r)
        p = r + (rr_new / rr.clamp_min(tiny)).reshape(kk.shape) * p
        rr = rr_new
    return z


__all__ = ["covariant_filter", "plaquette_jacobian", "plaquette_jacobian_t"]

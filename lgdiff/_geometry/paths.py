"""Closed loops on raw link tensors ``[B, D, *L, N, N]``: plaquettes and staples.

These are undecorated inner helpers (hot paths); the typed public API wraps them.
"""

import torch
from torch import Tensor

from .lattice import shift

_SITE_AXIS = 1  # in a per-direction slice [B, *L, N, N] the sites start at axis 1


def plaquette(u: Tensor, mu: int, nu: int) -> Tensor:
    """``U_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dagger U_nu(x)^dagger``, ``[B, *L, N, N]``."""
    u_mu, u_nu = u[:, mu], u[:, nu]
    return u_mu @ shift(u_nu, mu, site_axis=_SITE_AXIS) @ shift(u_mu, nu, site_axis=_SITE_AXIS).mH @ u_nu.mH


def staples(u: Tensor, mu: int) -> Tensor:
    """Sum of the 2(D-1) staples A_mu(x) such that ``U_mu(x) A_mu(x)`` are the closed plaquettes through
    the link, ``[B, *L, N, N]``:

    ``A = sum_{nu != mu} U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag + U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)``.
    """
    u_mu = u[:, mu]
    total = torch.zeros_like(u_mu)
    for nu in range(u.shape[1]):
        if nu == mu:
            continue
        u_nu = u[:, nu]
        u_nu_xpmu = shift(u_nu, mu, site_axis=_SITE_AXIS)
        upper = u_nu_xpmu @ shift(u_mu, nu, site_axis=_SITE_AXIS).mH @ u_nu.mH
        lower = shift(u_nu_xpmu.mH @ u_mu.mH @ u_nu, nu, site_axis=_SITE_AXIS, steps=-1)
        total = total + upper + lower
    return total


def rectangle(u: Tensor, mu: int, nu: int, r: int, t: int) -> Tensor:
    """R x T Wilson loop matrix with corner x, R steps along mu and T along nu, ``[B, *L, N, N]``."""
    line_mu = u[:, mu]
    for k in range(1, r):
        line_mu = line_mu @ shift(u[:, mu], mu, site_axis=_SITE_AXIS, steps=k)
    line_nu = u[:, nu]
    for k in range(1, t):
        line_nu = line_nu @ shift(u[:, nu], nu, site_axis=_SITE_AXIS, steps=k)
    # U_mu-line(x) U_nu-line(x + r mu) [U_mu-line(x + t nu)]^dag [U_nu-line(x)]^dag
    return (line_mu @ shift(line_nu, mu, site_axis=_SITE_AXIS, steps=r)
            @ shift(line_mu, nu, site_axis=_SITE_AXIS, steps=t).mH @ line_nu.mH)

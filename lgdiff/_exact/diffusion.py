r"""Exact results for linear forward diffusions of scalar fields: the score of the diffused free field and the
cumulants of the magnetisation along the process (docs/cumulants.md).

A linear forward SDE (:class:`lgdiff.AbstractSDE`: VE or VP) has the kernel ``x_t = a(t) x_0 + s(t) eps``, so

- for any target, the magnetisation ``M = (1/V) sum_x phi(x)`` (docs/conventions.md, Observables) at time t is
  ``M_t = a M_0 + s Z / sqrt(V)`` with ``Z ~ N(0, 1)`` independent of ``M_0``. Cumulants add over independent
  terms and a Gaussian has none beyond the second:

  ``kappa_2(t) = a(t)^2 kappa_2 + s(t)^2 / V``,   ``kappa_4(t) = a(t)^4 kappa_4``

  (`diffused_cumulants`). Without drift (VE, ``a = 1``) every cumulant beyond the second is conserved; with the
  VP drift it decays as ``a^n`` (Aarts, Habibi, Wang, Zhou, "On learning higher-order cumulants in diffusion
  models", NeurIPS 2024 ML4PS, arXiv:2410.21212).
- for the free field (phi^4 at ``lambda = 0``, covariance ``C`` diagonal in momentum space with eigenvalues
  ``G(k)`` = :func:`free_field_propagator`) the diffused density is ``N(0, a^2 C + s^2 1)``, diagonal in momentum
  space too, and its score ``-(a^2 C + s^2)^{-1} x`` is two FFTs (`FreeFieldScore`).
"""

import math
import typing

import attrs
import torch
from torch import Tensor

from .._sde.base import AbstractSDE, expand_like
from .._types import ScalarData, Time
from .scalar import free_field_propagator


def _check_shape(shape: tuple[int, ...], *, where: str) -> tuple[int, ...]:
    if len(shape) < 1 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(f"{where}: shape must be the lattice sizes (L_0, ..., L_{{D-1}}), D >= 1, each an int "
                         f">= 1; got shape={shape!r}")
    return tuple(shape)


@typing.final
@attrs.frozen(kw_only=True)
class FreeFieldScore:
    r"""The exact score of the free lattice field diffused by a linear forward SDE, a :class:`lgdiff.Score`.

    The target is ``exp(-S) / Z`` with ``S = sum_x [-2 kappa sum_mu phi(x) phi(x+mu) + phi(x)^2]`` (the phi^4
    action at ``lambda = 0``), a Gaussian with covariance ``C``, ``C~(k) = G(k)`` (:func:`free_field_propagator`).
    Under ``x_t = a(t) x_0 + s(t) eps`` the density at time t is ``N(0, a^2 C + s^2 1)``, so

    ``grad log p_t(x) = -IFFT[ FFT(x)(k) / (a(t)^2 G(k) + s(t)^2) ]``,

    exact at every t, including ``t = 0`` (``s = 0``: the force ``-K x`` of the free action).

    **Arguments:** `shape` (lattice sizes, D >= 1), `kappa` (hopping parameter, ``|kappa| < 1/(2D)``), `sde`
    (the forward process).

    >>> from lgdiff import VESDE
    >>> score = FreeFieldScore(shape=(4, 4), kappa=0.1, sde=VESDE())
    >>> x = torch.ones(1, 4, 4, dtype=torch.float64)  # the k = 0 mode: eigenvalue 1 / G(0) = 2 - 8 kappa at t = 0
    >>> score(x, torch.zeros(1, dtype=torch.float64))[0, 0, 0].item()
    -1.2
    """

    shape: tuple[int, ...] = attrs.field(converter=tuple)
    kappa: float = attrs.field(converter=float)
    sde: AbstractSDE = attrs.field(validator=attrs.validators.instance_of(AbstractSDE))
    propagator: Tensor = attrs.field(init=False, repr=False, eq=False)

    @propagator.default
    def _propagator(self) -> Tensor:
        return free_field_propagator(_check_shape(self.shape, where="FreeFieldScore"), self.kappa)

    def __call__(self, x: ScalarData, t: Time) -> ScalarData:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"FreeFieldScore on lattice {self.shape}: got a field shaped {tuple(x.shape)}; "
                             f"expected [B, {', '.join(map(str, self.shape))}]")
        dims = tuple(range(1, x.ndim))
        g = self.propagator.to(dtype=x.dtype, device=x.device)
        a, s = self.sde.mean_coeff(t), self.sde.std(t)
        variance = expand_like(a * a, x) * g + expand_like(s * s, x)
        return -torch.fft.ifftn(torch.fft.fftn(x, dim=dims) / variance, dim=dims).real


def diffused_cumulants(kappa_2: Tensor | float, kappa_4: Tensor | float, sde: AbstractSDE, t: Tensor,
                       volume: int) -> tuple[Tensor, Tensor]:
    r"""``(kappa_2(t), kappa_4(t))`` of the magnetisation ``M = (1/V) sum_x phi`` along the forward process, from
    those of the data (module docstring): ``kappa_2(t) = a^2 kappa_2 + s^2 / V``, ``kappa_4(t) = a^4 kappa_4``.

    Exact for any target (an HMC ensemble's cumulants give the exact forward values of the same theory). The map
    is linear in ``(kappa_2, kappa_4)``, so their errors scale by ``a^2`` and ``a^4``.

    **Arguments:** `kappa_2`, `kappa_4` (of M at t = 0; floats, or tensors broadcastable against `t`), `sde`,
    `t` (times, any shape), `volume` (the number of sites V).

    **Returns:** two tensors shaped like the broadcast of `t` and the cumulants, in the dtype of `t`.

    >>> from lgdiff import VESDE
    >>> k2, k4 = diffused_cumulants(0.5, -0.25, VESDE(), torch.tensor([0.0, 1.0], dtype=torch.float64), 16)
    >>> [round(v, 4) for v in k2.tolist()], k4.tolist()  # VE: s(1)^2 = 624 / (2 ln 25) = 96.93, kappa_4 conserved
    ([0.5, 6.558], [-0.25, -0.25])
    """
    if isinstance(volume, bool) or not isinstance(volume, int) or volume < 1:
        raise ValueError(f"diffused_cumulants: volume is the number of sites V >= 1; got {volume!r}")
    a, s = sde.mean_coeff(t), sde.std(t)
    a2 = a * a
    return a2 * kappa_2 + s * s / volume, a2 * a2 * kappa_4


def free_field_cumulants(shape: tuple[int, ...], kappa: float, sde: AbstractSDE, t: Tensor
                         ) -> tuple[Tensor, Tensor]:
    r"""``(kappa_2(t), kappa_4(t))`` of ``M`` for the free field diffused by ``sde``: ``kappa_2 = G(0) / V`` at
    ``t = 0`` (``V <M^2> = G(0) = 1 / (2 - 4 D kappa)``), ``kappa_4 = 0`` at every t (`diffused_cumulants`).

    >>> from lgdiff import VPSDE
    >>> k2, k4 = free_field_cumulants((4, 4), 0.2, VPSDE(), torch.tensor([0.0], dtype=torch.float64))
    >>> 16 * k2.item(), k4.item()  # G(0) = 1 / (2 - 1.6)
    (2.5000000000000004, 0.0)
    """
    shape = _check_shape(shape, where="free_field_cumulants")
    volume = math.prod(shape)
    g0 = free_field_propagator(shape, kappa).reshape(-1)[0].item()
    return diffused_cumulants(g0 / volume, 0.0, sde, t, volume)


def free_field_reverse_kappa_2(shape: tuple[int, ...], kappa: float, sde: AbstractSDE, t: Tensor) -> Tensor:
    r"""``kappa_2(t)`` of ``M`` along the reverse SDE with the exact score (continuous time), started from the
    process's Gaussian prior ``N(0, prior_std^2)`` at ``T`` rather than from the exact ``p_T``.

    Per momentum mode the reverse-time variance ``w`` and the forward one ``v = a^2 G + s^2`` obey
    ``dw/dtau = 2 h w - 2 g^2 w / v + g^2`` and ``dv/dtau = 2 h v - g^2`` (``tau = T - t``, drift ``-h x``), so the
    mismatch ``delta = w - v`` decays as ``delta(t) = delta(T) (v(t) / v(T))^2 (a(T) / a(t))^2``. For ``M`` (the
    ``k = 0`` mode): ``kappa_2(t) = [v_0(t) + delta_0(t)] / V`` with ``delta_0(T) = prior_std^2 - v_0(T)``. The
    VE prior misses ``G(0)`` of ``v_0(T) = G(0) + s(T)^2`` (3 % at kappa = 0.21, sigma = 25); the VP one only
    ``a(T)^2 (G(0) - 1)`` (``a(T)^2 = 4e-5``).

    >>> from lgdiff import VESDE
    >>> sde = VESDE()
    >>> t = torch.tensor([1.0, 0.0], dtype=torch.float64)
    >>> k2 = free_field_reverse_kappa_2((4, 4), 0.2, sde, t) * 16  # V kappa_2: the prior's s(T)^2 at T
    >>> round(k2[0].item(), 4), round(k2[1].item(), 4)  # at t = 0: G(0) (1 - (G(0) / v_0(T))^2) = 2.5 (1 - 6e-4)
    (96.9282, 2.4984)
    """
    shape = _check_shape(shape, where="free_field_reverse_kappa_2")
    volume = math.prod(shape)
    g0 = free_field_propagator(shape, kappa).reshape(-1)[0].item()
    big_t = torch.full_like(t, sde.T)

    def v0(tt: Tensor) -> Tensor:
        return sde.mean_coeff(tt) ** 2 * g0 + sde.std(tt) ** 2

    v_t, v_big = v0(t), v0(big_t)
    delta = (sde.prior_std() ** 2 - v_big) * (v_t / v_big) ** 2 * (sde.mean_coeff(big_t) / sde.mean_coeff(t)) ** 2
    return (v_t + delta) / volume


__all__ = ["FreeFieldScore", "diffused_cumulants", "free_field_cumulants", "free_field_reverse_kappa_2"]

r"""Observables of a real scalar field (docs/conventions.md, Observables).

Two kinds of function live here:

- *per-configuration* observables take a `Field` ``[B, *L]`` and return one value (or one
  correlator) per configuration: `magnetization`, `abs_magnetization`, `two_point_momentum`,
  `correlator`;
- *ensemble estimators* are plain functions of ensemble averages (means over configurations, or
  over bins, or jackknife samples: any broadcastable tensors), so an error analysis can call them
  on resampled means: `susceptibility`, `binder`, `connected_correlator`, `effective_mass`.
"""

import math

import torch
from jaxtyping import Float
from torch import Tensor

from .._fields.scalar import Field
from .._types import PerConfig, ScalarData

Correlator = Float[Tensor, "batch t"]
"""A correlator per configuration, ``C(t)`` for ``t = 0 .. L_mu - 1``."""
Mean = Float[Tensor, "*b"]
"""An ensemble average: a scalar, or a stack of them (bins, jackknife samples)."""

# bisection halves the bracket [y, y + log 2] (width < 1): 64 halvings reach float64 resolution
_BISECTION_STEPS = 64


def _require_field(name: str, phi: object) -> Field:
    if not isinstance(phi, Field):
        raise TypeError(
            f"{name} expects a real scalar Field [B, *L]; got {type(phi).__name__}. "
            f"Wrap a tensor as Field(data, Lattice(shape=data.shape[1:]))."
        )
    return phi


def _check_direction(name: str, mu: int, dim: int) -> None:
    if dim == 0:
        raise ValueError(f"{name} needs a lattice with D >= 1 directions; got D = 0 (the one-site toy model)")
    if not 0 <= mu < dim:
        raise ValueError(
            f"{name}: direction mu must be in 0..{dim - 1} for a D = {dim} lattice; got mu = {mu}"
        )


def magnetization(phi: Field) -> PerConfig:
    r"""Magnetisation per configuration, $M = \frac{1}{V}\sum_x \phi(x)$.

    **Arguments:**
    - `phi`: a scalar field ``[B, *L]`` (any D, including D = 0).

    **Returns:** ``[B]``, in the field's dtype.

    >>> from lgdiff import Field, Lattice
    >>> phi = Field(torch.tensor([[1.0, 2.0, 3.0, 6.0]]), Lattice(shape=(4,)))
    >>> magnetization(phi).tolist()
    [3.0]
    """
    phi = _require_field("magnetization", phi)
    return phi.data.reshape(phi.batch, -1).mean(1)


def abs_magnetization(phi: Field) -> PerConfig:
    r"""Absolute magnetisation per configuration, $|M| = |\frac{1}{V}\sum_x \phi(x)|$.

    >>> from lgdiff import Field, Lattice
    >>> abs_magnetization(Field(-torch.ones(2, 3, 3), Lattice(shape=(3, 3)))).tolist()
    [1.0, 1.0]
    """
    return magnetization(_require_field("abs_magnetization", phi)).abs()


def two_point_momentum(phi: Field) -> ScalarData:
    r"""Two-point function in momentum space per configuration, $G(k) = |\tilde\phi(k)|^2 / V$.

    $\tilde\phi(k) = \sum_x e^{-i k \cdot x} \phi(x)$ is ``torch.fft.fftn`` over the site axes, so
    ``k`` is in FFT ordering, as in `Lattice.momenta`. The ensemble average ``<G(k)>`` is the
    propagator; ``G(0) = V M^2`` and Parseval gives ``sum_k G(k) = sum_x phi(x)^2``.

    **Arguments:**
    - `phi`: a scalar field ``[B, *L]``.

    **Returns:** ``[B, *L]`` real, indexed by momentum.

    >>> from lgdiff import Field, Lattice
    >>> stagger = Field(torch.tensor([[1.0, -1.0, 1.0, -1.0]]), Lattice(shape=(4,)))
    >>> two_point_momentum(stagger).tolist()  # all weight at k = pi: G = V
    [[0.0, 0.0, 4.0, 0.0]]
    """
    phi = _require_field("two_point_momentum", phi)
    volume = phi.lattice.volume
    phi_k = torch.fft.fftn(phi.data, dim=phi.lattice.site_dims)
    return phi_k.abs().square() / volume


def correlator(phi: Field, mu: int = 0) -> Correlator:
    r"""Zero-momentum (time-slice) correlator along direction ``mu``, per configuration.

    With the slice sums $S(\tau) = \sum_{x:\, x_\mu = \tau} \phi(x)$ (over the directions
    orthogonal to ``mu``), averaged over the source slice:

    $$C(t) = \frac{1}{V} \sum_{\tau=0}^{L_\mu - 1} S(\tau)\, S(\tau + t), \qquad t = 0 .. L_\mu - 1,$$

    periodic in ``tau + t``. Its ensemble average is
    ``sum_{x_perp} <phi(t, x_perp) phi(0, 0)>`` (the zero-momentum projection), and
    ``C(t) = (1/L_mu) sum_{k_mu} G(k_mu, k_perp = 0) e^{i k_mu t}`` with `two_point_momentum` ``G``.
    Sum rule: ``sum_t C(t) = V M^2``, so ``sum_t`` of the connected correlator is ``chi_2``
    (see `connected_correlator`).

    **Arguments:**
    - `phi`: a scalar field ``[B, *L]``, D >= 1.
    - `mu`: the "time" direction, ``0 <= mu < D``.

    **Returns:** ``[B, L_mu]``.

    >>> from lgdiff import Field, Lattice
    >>> phi = Field(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), Lattice(shape=(4,)))
    >>> correlator(phi).tolist()  # a single unit source: C(0) = 1/V
    [[0.25, 0.0, 0.0, 0.0]]
    """
    phi = _require_field("correlator", phi)
    dim = phi.lattice.dim
    _check_direction("correlator", mu, dim)
    others = tuple(1 + nu for nu in range(dim) if nu != mu)
    slices = phi.data.sum(dim=others) if others else phi.data  # S(tau), [B, L_mu]
    length = phi.lattice.shape[mu]
    # sum_tau S(tau) S(tau + t) = ifft(|fft S|^2)(t): the periodic autocorrelation
    s_k = torch.fft.rfft(slices, dim=-1)
    return torch.fft.irfft(s_k.abs().square(), n=length, dim=-1) / phi.lattice.volume


# ---- ensemble estimators --------------------------------------------------------------------


def _like(*xs: Tensor | float) -> tuple[Tensor, ...]:
    """Promote floats to tensors on the dtype and device of the first tensor (float64 CPU if none)."""
    ref = next((x for x in xs if isinstance(x, Tensor)), None)
    dtype = torch.float64 if ref is None else ref.dtype
    device = None if ref is None else ref.device
    return tuple(x if isinstance(x, Tensor) else torch.tensor(x, dtype=dtype, device=device) for x in xs)


def susceptibility(m_mean: Mean | float, m2_mean: Mean | float, volume: int) -> Mean:
    r"""Magnetic susceptibility $\chi_2 = V (\langle M^2\rangle - \langle M\rangle^2)$.

    **Arguments:**
    - `m_mean`: ``<M>`` (an ensemble, bin or jackknife mean of `magnetization`).
    - `m2_mean`: ``<M^2>``.
    - `volume`: the number of sites V.

    For the sign-blind variant ``V (<M^2> - <|M|>^2)`` pass ``<|M|>`` as `m_mean`.

    **Returns:** a tensor broadcast from the inputs.

    >>> susceptibility(0.5, 0.5, 16).tolist()
    4.0
    """
    m, m2 = _like(m_mean, m2_mean)
    return volume * (m2 - m * m)


def binder(m2_mean: Mean | float, m4_mean: Mean | float) -> Mean:
    r"""Binder cumulant $U_L = 1 - \langle M^4\rangle / (3 \langle M^2\rangle^2)$.

    ``U_L = 0`` for a Gaussian M (disordered phase), ``2/3`` for ``M = +-m0`` (ordered phase).

    >>> binder(1.0, 1.0).tolist()  # M = +-1
    0.6666666666666667
    >>> binder(2.0, 12.0).tolist()  # Gaussian: <M^4> = 3 <M^2>^2
    0.0
    """
    m2, m4 = _like(m2_mean, m4_mean)
    return 1 - m4 / (3 * m2 * m2)


def cumulants(m1_mean: Mean | float, m2_mean: Mean | float, m3_mean: Mean | float,
              m4_mean: Mean | float) -> tuple[Mean, Mean, Mean, Mean]:
    r"""The first four cumulants of an observable from its raw moments ``<A^k>``, k = 1..4:

    $\kappa_1 = m_1$, $\kappa_2 = m_2 - m_1^2$, $\kappa_3 = m_3 - 3 m_2 m_1 + 2 m_1^3$,
    $\kappa_4 = m_4 - 4 m_3 m_1 - 3 m_2^2 + 12 m_2 m_1^2 - 6 m_1^4$.

    For the magnetisation, ``V kappa_2 = chi_2`` (`susceptibility`) and, where ``<M> = 0``,
    ``-kappa_4 / (3 kappa_2^2) = U_L`` (`binder`). The plug-in values: call it on jackknife or bootstrap
    means for errors (`lgdiff.jackknife`).

    **Returns:** ``(kappa_1, kappa_2, kappa_3, kappa_4)``, broadcast from the inputs.

    >>> [round(k.item(), 12) for k in cumulants(1.0, 2.0, 6.0, 24.0)]  # Exp(1): m_k = k!, kappa_k = (k - 1)!
    [1.0, 1.0, 2.0, 6.0]
    """
    m1, m2, m3, m4 = _like(m1_mean, m2_mean, m3_mean, m4_mean)
    k3 = m3 - 3 * m2 * m1 + 2 * m1**3
    k4 = m4 - 4 * m3 * m1 - 3 * m2 * m2 + 12 * m2 * m1 * m1 - 6 * m1**4
    return m1, m2 - m1 * m1, k3, k4


def connected_correlator(c_mean: Float[Tensor, "*b t"], m_mean: Mean | float, volume: int) -> Float[Tensor, "*b t"]:
    r"""Connected time-slice correlator $C_c(t) = \langle C(t)\rangle - (V / L_\mu) \langle M\rangle^2$.

    For the `correlator` normalisation, the disconnected part is
    ``(1/V) sum_tau <S(tau)> <S(tau + t)> = (L_mu / V) <S>^2`` with the ensemble-averaged slice sum
    ``<S> = (V / L_mu) <M>``, i.e. ``(V / L_mu) <M>^2``. Sum rule: ``sum_t C_c(t) = chi_2``
    (`susceptibility`).

    **Arguments:**
    - `c_mean`: ``<C(t)>``, ``[*b, L_mu]`` (mean of `correlator` over configurations or bins).
    - `m_mean`: ``<M>``, ``[*b]`` or a float.
    - `volume`: the number of sites V (``L_mu`` is read from the last axis of `c_mean`).

    **Returns:** ``[*b, L_mu]``.

    >>> connected_correlator(torch.tensor([3.0, 2.0, 1.0, 2.0]), 0.5, 16).tolist()
    [2.0, 1.0, 0.0, 1.0]
    """
    (m,) = _like(m_mean)
    m = m.to(dtype=c_mean.dtype, device=c_mean.device)
    length = c_mean.shape[-1]
    return c_mean - (volume / length) * (m * m)[..., None]


def _log_cosh(x: Tensor) -> Tensor:
    """``log cosh x`` without overflow: ``|x| + log1p(exp(-2|x|)) - log 2``."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - math.log(2)


def effective_mass(c: Float[Tensor, "*b t"]) -> Float[Tensor, "*b t"]:
    r"""Cosh effective mass of a periodic correlator, solved exactly at every ``t``.

    ``m(t)`` solves

    $$\frac{C(t)}{C(t+1)} = \frac{\cosh(m (t - T/2))}{\cosh(m (t + 1 - T/2))},$$

    with ``T = c.shape[-1]`` and ``C(T) = C(0)`` (periodicity), so a single-state correlator
    ``A cosh(m (t - T/2))`` gives ``m(t) = m`` at every ``t``. With ``a = t - T/2``, ``b = a + 1``
    and ``s = sign(|a| - |b|)``, the function ``g(m) = s [log cosh(m a) - log cosh(m b)]`` rises
    monotonically from 0 and obeys ``m - log 2 <= g(m) <= m``, so the root of
    ``g(m) = s log(C(t)/C(t+1)) =: y`` lies in ``[y, y + log 2]``: a vectorised bisection on that
    bracket converges to machine precision in a fixed 64 steps (no data-dependent control flow).

    ``m(t)`` is ``nan`` where it is undefined: where ``C(t)/C(t+1)`` is not positive or lies on the
    wrong side of 1 for its half of the lattice (``y <= 0``, noise), and at ``t = (T - 1)/2`` for odd
    ``T`` (the ratio is 1 for every m).

    **Arguments:**
    - `c`: correlator(s) ``[*b, T]``, e.g. a `connected_correlator`.

    **Returns:** ``[*b, T]``.

    >>> t = torch.arange(8, dtype=torch.float64)
    >>> effective_mass(3.0 * torch.cosh(0.5 * (t - 4))).round(decimals=12).tolist()
    [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    """
    length = c.shape[-1]
    t = torch.arange(length, dtype=c.dtype, device=c.device)
    a = t - length / 2
    b = a + 1
    s = torch.sign(b.abs() - a.abs()).neg()  # +1 in the first half (C falls), -1 in the second
    y = s * torch.log(c / torch.roll(c, shifts=-1, dims=-1))
    valid = (y > 0) & (s != 0)
    lo = torch.where(valid, y, torch.zeros_like(y))
    hi = lo + math.log(2)
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        above = s * (_log_cosh(mid * a) - _log_cosh(mid * b)) > y  # g(mid) > y: the root is below mid
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return torch.where(valid, (lo + hi) / 2, torch.full_like(y, math.nan))

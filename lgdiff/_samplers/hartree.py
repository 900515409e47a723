r"""The best Gaussian approximation of the phi^4 action on a periodic lattice (the Hartree approximation), in either
phase: the data-free prior of optimal stochastic quantisation (`lgdiff._samplers.osq.OSQProcess.hartree`).

With ``S = sum_x [-2 kappa sum_mu phi_x phi_{x+mu} + (1 - 2 lambda) phi_x^2 + lambda phi_x^4]`` on ``D``
dimensions and ``A = 2 (1 - 2 lambda) - 4 kappa D``, the Gaussians ``phi = v + eta``, ``eta ~ N(0, K^-1)`` with
``K(p) = c_0 + 2 kappa p_hat^2`` (``p_hat^2 = sum_mu 4 sin^2(p_mu / 2)``) give the Gibbs-Bogoliubov bound

    ``-log Z <= F(v, K) = -log Z_K + <S>_K - V / 2``,
    ``<S>_K / V = -2 kappa sum_mu (v^2 + C_mu) + (1 - 2 lambda)(v^2 + G) + lambda (v^4 + 6 v^2 G + 3 G^2)``

with ``G = (1/V) sum_p 1/K(p)`` and ``C_mu = (1/V) sum_p cos(p_mu) / K(p)``. Its stationary points are the Hartree
gap equations:

- symmetric phase, ``v = 0``: ``c_0 = A + 12 lambda G`` (one solution);
- broken phase, ``v^2 = -A / (4 lambda) - 3 G > 0``: ``c_0 = 8 lambda v^2 = -2 A - 24 lambda G`` (zero or more).

`hartree_gaussian` solves both and returns the one with the lowest bound (``phase="auto"``) or the phase asked for.
In the broken phase the OSQ prior is the symmetric mixture ``(N(+v, K^-1) + N(-v, K^-1)) / 2``: the action is
Z2-symmetric, and a finite lattice visits both signs.
"""

import math
import typing
from collections.abc import Callable

import attrs
import torch

from .._actions.base import AbstractScalarAction

PHASES = ("auto", "symmetric", "broken")


@typing.final
@attrs.frozen
class HartreeGaussian:
    """``phi = +-shift + N(0, K^-1)``, ``K(p) = 1 / std^2 + kinetic p_hat^2``, with its Gibbs-Bogoliubov bound
    ``free_energy`` on ``-log Z`` and the ``phase`` it solves."""

    std: float
    kinetic: float
    shift: float
    free_energy: float
    phase: str


def _momenta(shape: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``p_hat^2`` and ``cos(p_mu)`` on the momenta of a periodic lattice of ``shape`` (float64)."""
    phat2 = torch.zeros(shape, dtype=torch.float64)
    cosines = []
    for mu, n in enumerate(shape):
        p = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
        view = [n if i == mu else 1 for i in range(len(shape))]
        phat2 = phat2 + (4 * torch.sin(p / 2) ** 2).reshape(view)
        cosines.append(torch.cos(p).reshape(view).expand(shape))
    return phat2, cosines


def gibbs_bogoliubov(kappa: float, lam: float, shape: tuple[int, ...], *, c0: float, kinetic: float,
                     shift: float = 0.0) -> float:
    """The bound ``F(v, K)`` of the module docstring for ``K = c0 + kinetic p_hat^2`` and ``v = shift``."""
    phat2, cosines = _momenta(shape)
    k = c0 + kinetic * phat2
    volume = k.numel()
    g = float((1 / k).mean())
    v2 = shift * shift
    hop = sum(v2 + float((c / k).mean()) for c in cosines)
    mean_s = volume * (-2 * kappa * hop + (1 - 2 * lam) * (v2 + g) + lam * (v2 * v2 + 6 * v2 * g + 3 * g * g))
    log_z = volume / 2 * math.log(2 * math.pi) - float(k.log().sum()) / 2
    return -log_z + mean_s - volume / 2


def _roots(f: Callable[[float], float], lo: float, hi: float, grid: int = 400) -> list[float]:
    """Every sign change of ``f`` on ``(lo, hi)`` (a grid, then bisection)."""
    xs = [lo + (hi - lo) * (i + 0.5) / grid for i in range(grid)]
    fs = [f(x) for x in xs]
    out = []
    for a, b, fa, fb in zip(xs, xs[1:], fs, fs[1:], strict=False):
        if (fa < 0) != (fb < 0):
            for _ in range(100):
                mid = (a + b) / 2
                a, b, fa = (mid, b, f(mid)) if (f(mid) < 0) == (fa < 0) else (a, mid, fa)
            out.append((a + b) / 2)
    return out


def hartree_gaussian(action: AbstractScalarAction, shape: tuple[int, ...], *, phase: str = "auto") -> HartreeGaussian:
    r"""The Hartree Gaussian of a phi^4 ``action`` (``kappa``, ``lam``) on a periodic lattice of ``shape`` (module
    docstring): ``phase="symmetric"`` or ``"broken"``, or ``"auto"``, the solution with the lowest Gibbs-Bogoliubov
    bound. One-line errors where the asked-for Gaussian does not exist.

    >>> from lgdiff import Phi4Action
    >>> h = hartree_gaussian(Phi4Action(kappa=0.2, lam=0.0), (8, 8))  # free field: K is the action's, c_0 = 0.4
    >>> round(h.std**-2, 12), h.kinetic, h.shift, h.phase
    (0.4, 0.4, 0.0, 'symmetric')
    >>> hartree_gaussian(Phi4Action(kappa=0.5, lam=0.022), (16, 16)).phase  # deep in the broken phase
    'broken'
    """
    kappa, lam = getattr(action, "kappa", None), getattr(action, "lam", None)
    if kappa is None or lam is None or not shape:
        raise ValueError(f"a Hartree prior needs a phi^4 action (kappa, lam) on a lattice with D >= 1; got "
                         f"{type(action).__name__} on shape {shape}")
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}; got {phase!r}")
    if kappa <= 0:
        raise ValueError(f"a Hartree prior needs kappa > 0; got {kappa}")
    phat2, _ = _momenta(shape)
    a = 2 * (1 - 2 * lam) - 4 * kappa * len(shape)
    kinetic = 2 * kappa
    name = f"{type(action).__name__}(kappa={kappa}, lam={lam})"

    def gap(c0: float) -> float:
        return float((1 / (c0 + kinetic * phat2)).mean())

    def solution(c0: float, shift: float, which: str) -> HartreeGaussian:
        return HartreeGaussian(std=c0**-0.5, kinetic=kinetic, shift=shift, phase=which,
                               free_energy=gibbs_bogoliubov(kappa, lam, shape, c0=c0, kinetic=kinetic, shift=shift))

    found: list[HartreeGaussian] = []
    if phase in ("auto", "symmetric"):
        if lam == 0:
            if a > 0:
                found.append(solution(a, 0.0, "symmetric"))
        else:  # G - G(c_0(G)) rises from < 0 just above c_0 = 0 to > 0: one root
            lo = max(0.0, -a / (12 * lam))
            hi = 2 * lo + 1.0
            while hi - gap(a + 12 * lam * hi) < 0:
                hi *= 2
            for _ in range(200):  # < 0 at lo (c_0 = 0 or G = 0), > 0 at hi; only midpoints are evaluated
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if mid - gap(a + 12 * lam * mid) < 0 else (lo, mid)
            found.append(solution(a + 12 * lam * hi, 0.0, "symmetric"))
    if phase in ("auto", "broken") and lam > 0 and a < 0:
        g_max = -a / (12 * lam)  # c_0 = -2 A - 24 lambda G > 0 and v^2 > 0 both need G < g_max
        for g in _roots(lambda g: g - gap(-2 * a - 24 * lam * g), 0.0, g_max):
            found.append(solution(-2 * a - 24 * lam * g, math.sqrt(-a / (4 * lam) - 3 * g), "broken"))
    if not found:
        why = ("kappa >= the free critical value (1 - 2 lambda) / (2 D) and lambda = 0" if lam == 0 and a <= 0 else
               "no solution of the broken-phase gap equation")
        raise ValueError(f"the {phase if phase != 'auto' else ''} Hartree Gaussian of {name} does not exist: "
                         f"{why}".replace("the  Hartree", "the Hartree"))
    return min(found, key=lambda h: h.free_energy)


__all__ = ["PHASES", "HartreeGaussian", "gibbs_bogoliubov", "hartree_gaussian"]

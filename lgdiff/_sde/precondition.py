r"""Reverse kernels that are exact for a Gaussian target: the free-field preconditioner of the reverse SDE.

The Euler-Maruyama reverse step ``omega = v s(x_k) + sqrt(v) z`` (:func:`lgdiff._samplers.reverse.reverse_path`) is
the exact reverse transition only when ``v`` is small against every length scale of the marginal at that level: with
``p_{k-1}`` Gaussian of precision ``A``, the exact reverse transition ``p(x_{k-1} | x_k)`` is

    ``N(x_k + v M s_{k-1}(x_k), v M)``,  ``M = (1 + v A)^{-1}``,

and the plain step (``M = 1``) is off by ``O(v A)`` in every stiff mode. Near ``t = 0`` a lattice field is stiff in its
short-distance modes (``A ~ 8 kappa`` for phi^4's highest momentum, ``~ 8 beta`` for U(1) plaquettes), so the path
weight of an independence or resampling move carries a discretisation error that only many steps remove (measured in
docs/gauge-diffusion.md). A preconditioner supplies ``A`` from a Gaussian approximation of the target, diagonal in
momentum space, and the engine uses the kernel above with

    ``A_t(p) = A_0(p) / (1 + n_t A_0(p))``,  ``n_t = s(t)^2 - s(t_min)^2``

(the precision of the data convolved with the forward noise accumulated since ``t_min``), the score evaluated at the
lower time of the step and ``v = s(t_k)^2 - s(t_{k-1})^2`` (the exact forward increment). For the Gaussian target and
its exact score the reverse path is then exact at any number of steps; for a real target and a learned score it is
still exact as a proposal (the kernel is a Gaussian whose density the path weight accounts for), and only the
acceptance depends on how good the approximation is.

- :class:`FreeScalarPreconditioner`: ``A_0(p) = 1 / std^2 + kinetic p_hat^2`` (real scalar fields, any D), e.g. the
  Hartree Gaussian of phi^4 (:func:`lgdiff.hartree_gaussian`).
- :class:`FreeU1Preconditioner`: the Gaussian limit of the U(1) Wilson action ``S = beta / 2 sum_P theta_P^2``:
  ``A_0 = beta p_hat^2`` on the transverse (physical) link modes and ``0`` on the longitudinal (gauge) modes and the
  holonomies (``p = 0``), which are flat.
"""

import abc
import math
import typing

import attrs
import torch
from torch import Tensor

from .._geometry.lattice import Lattice
from .._provenance import AbstractRecorded


def _positive(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not value > 0:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be a finite number > 0; got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be a finite number >= 0; got {value!r}")


class AbstractPreconditioner(AbstractRecorded):
    """A Gaussian approximation of the target with precision ``A_0`` diagonal in momentum space, and the reverse
    kernel ``N(v M s, v M)``, ``M = (1 + v A_t)^{-1}``, it defines (module docstring). Tangent vectors are the
    process's: ``[B, *L]`` for real fields, ``[B, D, *L, 1]`` for U(1) links."""

    @abc.abstractmethod
    def multipliers(self, like: Tensor, v: float, noise: float) -> Tensor:
        """``m(p) = 1 / (1 + v A_t(p))`` on the momenta of ``like`` (a tangent vector), ``A_t = A_0 / (1 + noise
        A_0)``."""

    @abc.abstractmethod
    def apply(self, u: Tensor, m: Tensor, power: float) -> Tensor:
        """``M^power u`` (real, same shape and dtype as ``u``)."""

    @abc.abstractmethod
    def logdet(self, m: Tensor) -> Tensor:
        """``log det M`` per configuration (a 0-d tensor on ``m``'s device, the same for every configuration: no
        host synchronisation per step)."""

    @staticmethod
    def _marginal(a0: Tensor, v: float, noise: float) -> Tensor:
        return 1.0 / (1.0 + v * a0 / (1.0 + noise * a0))


@typing.final
@attrs.frozen(kw_only=True)
class FreeScalarPreconditioner(AbstractPreconditioner):
    """Real scalar fields: ``A_0(p) = 1 / std^2 + kinetic p_hat^2``, ``p_hat^2 = sum_mu 4 sin^2(p_mu / 2)``.

    >>> pre = FreeScalarPreconditioner(std=1.0, kinetic=0.5)
    >>> m = pre.multipliers(torch.zeros(1, 4, 4, dtype=torch.float64), v=0.1, noise=0.0)
    >>> round(float(m[0, 0]), 6)  # 1 / (1 + 0.1 * 1)
    0.909091
    """

    std: float = attrs.field(validator=_positive)
    kinetic: float = attrs.field(validator=_non_negative)

    @property
    def name(self) -> str:
        return "free-scalar"

    def settings(self) -> dict[str, float | int | str]:
        return {"preconditioner": self.name, "precond_std": self.std, "precond_kinetic": self.kinetic}

    def multipliers(self, like: Tensor, v: float, noise: float) -> Tensor:
        phat2 = Lattice(shape=tuple(like.shape[1:])).momentum_squared(device=like.device)
        return self._marginal(1.0 / self.std**2 + self.kinetic * phat2, v, noise)

    def apply(self, u: Tensor, m: Tensor, power: float) -> Tensor:
        dims = tuple(range(1, u.ndim))
        out = torch.fft.ifftn(torch.fft.fftn(u, dim=dims) * m.pow(power), dim=dims).real
        return out.to(u.dtype)

    def logdet(self, m: Tensor) -> Tensor:
        return m.log().sum()


@typing.final
@attrs.frozen(kw_only=True)
class FreeU1Preconditioner(AbstractPreconditioner):
    r"""U(1) links, the Gaussian limit of the Wilson action: ``A_0 = beta p_hat^2`` on the transverse modes, ``0`` on
    the gauge modes ``A_mu(x) -> A_mu(x) + phi(x + mu) - phi(x)`` and on the holonomies. In momentum space the gauge
    direction is ``g_mu(p) = e^{i p_mu} - 1`` and ``M = P_L + m(p) (1 - P_L)``, ``P_L = g g^dagger / |g|^2``.

    ``beta`` is the coupling of the Gaussian: the action's beta, or a mean-field one (``beta <cos theta_P>``).

    >>> pre = FreeU1Preconditioner(beta=2.0)
    >>> m = pre.multipliers(torch.zeros(1, 2, 4, 4, 1, dtype=torch.float64), v=0.1, noise=0.0)
    >>> tuple(m.shape), float(m[0, 0])  # the p = 0 modes (holonomies) are flat
    ((4, 4), 1.0)
    """

    beta: float = attrs.field(validator=_positive)

    @classmethod
    def mean_field(cls, beta: float) -> "FreeU1Preconditioner":
        """The Gaussian at ``beta <cos theta_P>`` with the one-plaquette expectation ``I_1(beta) / I_0(beta)`` (exact
        for the 2D plaquette at infinite volume): fluctuations soften the quadratic action by that factor."""
        b = torch.tensor(float(beta), dtype=torch.float64)
        return cls(beta=float(b * torch.special.i1e(b) / torch.special.i0e(b)))

    @property
    def name(self) -> str:
        return "free-u1"

    def settings(self) -> dict[str, float | int | str]:
        return {"preconditioner": self.name, "precond_beta": self.beta}

    def multipliers(self, like: Tensor, v: float, noise: float) -> Tensor:
        if like.ndim < 4 or like.shape[-1] != 1 or like.shape[1] != like.ndim - 3:
            raise ValueError(f"FreeU1Preconditioner acts on U(1) link tangents [B, D, *L, 1]; got {tuple(like.shape)}")
        phat2 = Lattice(shape=tuple(like.shape[2:-1])).momentum_squared(device=like.device)
        return self._marginal(self.beta * phat2, v, noise)

    def apply(self, u: Tensor, m: Tensor, power: float) -> Tensor:
        dims = tuple(range(2, u.ndim - 1))
        lattice = tuple(u.shape[2:-1])
        g = torch.exp(1j * Lattice(shape=lattice).momenta(device=u.device)) - 1  # [D, *L]
        norm = (g.abs() ** 2).sum(0)
        uh = torch.fft.fftn(u[..., 0].to(torch.float64), dim=dims)  # [B, D, *L]
        along = (g.conj() * uh).sum(1, keepdim=True) / torch.where(norm > 0, norm, 1.0)  # g^dagger u / |g|^2
        longitudinal = g * along
        out = longitudinal + m.pow(power) * (uh - longitudinal)
        return torch.fft.ifftn(out, dim=dims).real.unsqueeze(-1).to(u.dtype)

    def logdet(self, m: Tensor) -> Tensor:
        """``D - 1`` transverse modes at every ``p != 0`` (``m = 1`` at ``p = 0``, where the sum has no weight)."""
        return (m.ndim - 1) * m.log().sum()


__all__ = ["AbstractPreconditioner", "FreeScalarPreconditioner", "FreeU1Preconditioner"]

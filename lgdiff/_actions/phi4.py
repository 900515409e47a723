"""Scalar phi^4 on a D-dimensional lattice (hopping form) and the 0-dimensional toy model."""

import typing

import attrs
import torch
from torch import Tensor

from .. import _native
from .._fields.scalar import Field
from .._geometry.lattice import shift
from .._types import ScalarData
from .base import AbstractScalarAction


def _finite(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, (int, float)) or not torch.isfinite(torch.tensor(float(value))):
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be a finite number; got {value!r}")


@typing.final
@attrs.frozen(kw_only=True)
class Phi4Action(AbstractScalarAction):
    r"""``S = sum_x [ -2 kappa sum_mu phi(x) phi(x+mu) + (1 - 2 lambda) phi(x)^2 + lambda phi(x)^4 ]``.

    docs/conventions.md, Actions. Any D >= 1; the classical critical point is ``kappa_c = (1 - 2 lambda) / (2 D)``.

    >>> from lgdiff import Lattice
    >>> phi = Field(torch.ones(1, 2, 2, dtype=torch.float64), Lattice(shape=(2, 2)))
    >>> float(Phi4Action(kappa=0.25, lam=0.0)(phi)[0])  # -2*0.25*2*4 + 4
    0.0
    """

    kappa: float = attrs.field(validator=_finite)
    lam: float = attrs.field(validator=[_finite, attrs.validators.ge(0.0)])

    def _check(self, phi: Field) -> None:
        if phi.lattice.dim < 1:
            raise ValueError(
                "Phi4Action needs a lattice with D >= 1; for the 0-dimensional toy model use ToyAction(m2=..., g=...)"
            )

    def density(self, phi: Field) -> ScalarData:
        self._check(phi)
        x = phi.data
        if _native.available_scalar(x):  # one fused pass on the CPU when no gradient is needed
            return _native.phi4_density(x, self.kappa, self.lam)
        hop = sum(x * shift(x, mu, site_axis=1) for mu in phi.lattice.directions)
        x2 = x * x
        return -2 * self.kappa * hop + (1 - 2 * self.lam) * x2 + self.lam * x2 * x2

    def gradient(self, phi: Field) -> Field:
        self._check(phi)
        x = phi.data
        if _native.available_scalar(x):  # one fused pass on the CPU when no gradient is needed
            return phi.with_data(_native.phi4_gradient(x, self.kappa, self.lam))
        return phi.with_data(self._eager_gradient(x))

    def negative_gradient(self, phi: Field) -> Tensor:
        self._check(phi)
        x = phi.data
        if _native.available_scalar(x):
            return _native.phi4_gradient(x, self.kappa, self.lam, -1.0)
        return self._eager_gradient(x).neg_()

    def _eager_gradient(self, x: Tensor) -> Tensor:
        # in-place accumulation into fresh temporaries: half the memory passes of the textbook expression
        # (this is the HMC hot path); autograd-safe, since no in-place op overwrites a value saved for backward
        neighbours: Tensor | None = None
        for mu in range(x.dim() - 1):
            forward = shift(x, mu, site_axis=1)
            neighbours = forward if neighbours is None else neighbours.add_(forward)
            neighbours.add_(shift(x, mu, site_axis=1, steps=-1))
        inner = (x * x).mul_(4 * self.lam).add_(2 * (1 - 2 * self.lam))  # 2 (1 - 2 lambda) + 4 lambda phi^2
        force = torch.mul(x, inner)
        return force.add_(neighbours, alpha=-2 * self.kappa) if neighbours is not None else force

    def local_action(self, value: Tensor, neighbour_sum: Tensor) -> Tensor:
        """``-2 kappa phi(x) sum_mu [phi(x+mu) + phi(x-mu)] + (1 - 2 lambda) phi(x)^2 + lambda phi(x)^4``."""
        v2 = value * value
        return -2 * self.kappa * value * neighbour_sum + (1 - 2 * self.lam) * v2 + self.lam * v2 * v2


@typing.final
@attrs.frozen(kw_only=True)
class ToyAction(AbstractScalarAction):
    r"""The one-variable toy model ``S = m2 phi^2 / 2 + g phi^4 / 4!`` (docs/conventions.md; seed Sec. 3).

    Single well ``m2 = +1``, double well ``m2 = -1``, ``g = 0.4``. Acts on fields of any lattice
    site by site (D = 0 is the usual case).
    """

    m2: float = attrs.field(validator=_finite)
    g: float = attrs.field(validator=[_finite, attrs.validators.gt(0.0)])

    def density(self, phi: Field) -> ScalarData:
        x = phi.data
        return self.m2 * x * x / 2 + self.g * x**4 / 24

    def gradient(self, phi: Field) -> Field:
        x = phi.data
        return phi.with_data(self.m2 * x + self.g * x**3 / 6)

    def local_action(self, value: Tensor, neighbour_sum: Tensor) -> Tensor:
        """``m2 phi^2 / 2 + g phi^4 / 4!``: sites do not interact, ``neighbour_sum`` is ignored."""
        v2 = value * value
        return self.m2 * v2 / 2 + self.g * v2 * v2 / 24

"""The one-site cosine model of the seed talk's optimal-stochastic-quantisation examples:
``S(phi) = phi^2 / 2 - cos(k phi)``, a Gaussian with ``~2 k / (2 pi)`` narrow wells (k = 5 in the talk)."""

import typing

import attrs
import torch
from torch import Tensor

from .._fields.scalar import Field
from .._types import ScalarData
from .base import AbstractScalarAction
from .phi4 import _finite


@typing.final
@attrs.frozen(kw_only=True)
class CosineAction(AbstractScalarAction):
    r"""``S = sum_x [phi(x)^2 / 2 - cos(k phi(x))]``: sites do not interact (D = 0 is the usual case).

    >>> from lgdiff import Lattice
    >>> float(CosineAction(k=5.0)(Field(torch.zeros(1, dtype=torch.float64), Lattice(shape=())))[0])
    -1.0
    """

    k: float = attrs.field(default=5.0, validator=_finite)

    def density(self, phi: Field) -> ScalarData:
        x = phi.data
        return x * x / 2 - torch.cos(self.k * x)

    def gradient(self, phi: Field) -> Field:
        x = phi.data
        return phi.with_data(x + self.k * torch.sin(self.k * x))

    def local_action(self, value: Tensor, neighbour_sum: Tensor) -> Tensor:
        """``phi^2 / 2 - cos(k phi)``: sites do not interact, ``neighbour_sum`` is ignored."""
        return value * value / 2 - torch.cos(self.k * value)


__all__ = ["CosineAction"]

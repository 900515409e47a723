"""Abstract actions: S[phi] or S[U] per configuration, its local density, and its force."""

import abc

from torch import Tensor

from .._fields.links import AlgebraField, LinkField
from .._fields.scalar import Field
from .._types import PerConfig, ScalarData


class AbstractScalarAction(abc.ABC):
    """An action of a real scalar field with its analytic gradient dS/dphi(x)."""

    @abc.abstractmethod
    def density(self, phi: Field) -> ScalarData:
        """Local action density s(x), ``[B, *L]``, with ``S = sum_x s(x)``."""

    @abc.abstractmethod
    def gradient(self, phi: Field) -> Field:
        """The force dS/dphi(x), ``[B, *L]`` (analytic, no autograd)."""

    def negative_gradient(self, phi: Field) -> Tensor:
        """``-dS/dphi(x)`` as a plain tensor ``[B, *L]``: the momentum change per unit time of HMC. Actions with
        a fused kernel override it to skip the extra pass of the negation."""
        return -self.gradient(phi).data

    @abc.abstractmethod
    def local_action(self, value: Tensor, neighbour_sum: Tensor) -> Tensor:
        r"""The part of S that depends on phi(x) when every other site is held fixed.

        ``value`` is phi(x) and ``neighbour_sum`` is ``sum_mu [phi(x+mu) + phi(x-mu)]`` (broadcast
        against each other, any shape), so that changing phi(x) from ``a`` to ``b`` changes S by
        ``local_action(b, n) - local_action(a, n)``. Valid on lattices whose extents are all >= 2
        (for L = 1 the site is its own neighbour). Local Metropolis updates are built on it.
        """

    def __call__(self, phi: Field) -> PerConfig:
        """S per configuration, ``[B]``."""
        return self.density(phi).reshape(phi.batch, -1).sum(1)


class AbstractGaugeAction(abc.ABC):
    """An action of gauge links with its Lie-derivative force."""

    @abc.abstractmethod
    def density(self, U: LinkField) -> ScalarData:
        """Local action density s(x), ``[B, *L]``, with ``S = sum_x s(x)``."""

    @abc.abstractmethod
    def force(self, U: LinkField) -> AlgebraField:
        r"""The Lie derivative ``F_mu(x) = i sum_a T^a nabla^a_{x,mu} S``, with
        ``nabla^a f(U) = d/de f(exp(i e T^a) U)|_{e=0}`` on the one link (left convention)."""

    def __call__(self, U: LinkField) -> PerConfig:
        """S per configuration, ``[B]``."""
        return self.density(U).reshape(U.batch, -1).sum(1)

"""The Wilson plaquette gauge action for U(1) and SU(N), any D >= 2."""

import typing

import attrs
import torch

from .._fields.links import AlgebraField, LinkField
from .._geometry.paths import plaquette, staples
from .._groups.base import AbstractGroup, trace
from .._types import ScalarData
from .base import AbstractGaugeAction


@typing.final
@attrs.frozen(kw_only=True)
class WilsonAction(AbstractGaugeAction):
    r"""``S = beta sum_x sum_{mu<nu} (1 - Re tr U_{mu nu}(x) / N)``  (PHYSICS.md, Actions).

    For U(1) this is ``beta sum_P (1 - cos theta_P)``. The force is
    ``F_mu(x) = (beta norm / N) P_alg(U_mu(x) A_mu(x))`` with A the staple sum and
    ``norm = tr(T^a T^a)``: from ``d/de Re tr(exp(e i T^a) U A) = -Im tr(T^a U A)``.
    """

    beta: float = attrs.field(converter=float)
    group: AbstractGroup

    def _check(self, U: LinkField) -> None:
        if U.group != self.group:
            raise ValueError(
                f"WilsonAction expects links of {self.group}, got {U.group}. Build the field with "
                f"LinkField(data, group={self.group}, lattice=...) or construct the action as "
                f"WilsonAction(beta={self.beta}, group={U.group})."
            )
        if U.lattice.dim < 2:
            raise ValueError(
                f"WilsonAction needs D >= 2 directions for plaquettes; got a lattice of shape {U.lattice.shape} (D = {U.lattice.dim})"
            )

    def density(self, U: LinkField) -> ScalarData:
        self._check(U)
        n = self.group.n
        s = torch.zeros(U.data.shape[:1] + U.data.shape[2:-2], dtype=U.data.real.dtype, device=U.data.device)
        for mu, nu in U.lattice.planes:
            s = s + (1 - trace(plaquette(U.data, mu, nu)).real / n)
        return self.beta * s

    def force(self, U: LinkField) -> AlgebraField:
        self._check(U)
        g = self.group
        c = self.beta * g.norm / g.n
        f = torch.stack([g.project_algebra(U.data[:, mu] @ staples(U.data, mu)) for mu in U.lattice.directions], dim=1)
        return AlgebraField(c * f, g, U.lattice)

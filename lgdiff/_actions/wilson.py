"""The Wilson plaquette gauge action for U(1) and SU(N), any D >= 2."""

import typing

import attrs

from .._fields.links import AlgebraField, LinkField
from .._geometry.paths import plaquette_trace_sum, projected_closed_staples
from .._groups.base import AbstractGroup
from .._types import ScalarData
from .base import AbstractGaugeAction


@typing.final
@attrs.frozen(kw_only=True)
class WilsonAction(AbstractGaugeAction):
    r"""``S = beta sum_x sum_{mu<nu} (1 - Re tr U_{mu nu}(x) / N)``  (docs/conventions.md, Actions).

    For U(1) this is ``beta sum_P (1 - cos theta_P)``. The force is
    ``F_mu(x) = (beta norm / N) P_alg(U_mu(x) A_mu(x))`` with A the staple sum and
    ``norm = tr(T^a T^a)``: from ``d/de Re tr(exp(e i T^a) U A) = -Im tr(T^a U A)``.
    """

    beta: float = attrs.field(converter=float)
    group: AbstractGroup

    @typing.no_type_check  # per-step helper: keep it out of the test suite's import hook
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
        # sum_{mu<nu} (1 - Re tr U_P / N), without forming the plaquette matrices
        n_planes = len(U.lattice.planes)
        return self.beta * (n_planes - plaquette_trace_sum(U.data) / self.group.n)

    def force(self, U: LinkField) -> AlgebraField:
        self._check(U)
        g = self.group
        c = self.beta * g.norm / g.n
        # U_mu(x) A_mu(x) for all mu at once (the planes share their products), then P_alg; the algebra
        # has n^2 - 1 generators exactly when its projection removes the trace (su(n), not u(1))
        data = projected_closed_staples(U.data, traceless=g.n_generators == g.n * g.n - 1, scale=c)
        return AlgebraField(data, g, U.lattice)

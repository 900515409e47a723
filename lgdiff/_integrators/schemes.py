"""Symmetric splitting schemes for Hamiltonian molecular dynamics, as validated data."""

import math
import typing
from collections.abc import Callable

import attrs


@typing.final
@attrs.frozen(kw_only=True)
class SplittingScheme:
    r"""One step of a symmetric splitting integrator for ``H = K(p) + S(q)``.

    Momentum (``b``) and position (``a``) sub-steps alternate, ``b`` first:
    ``p -= b_0 eps dS, q += a_0 eps dK, p -= b_1 eps dS, ..., p -= b_m eps dS``.
    Consistency needs ``sum a = sum b = 1``; time reversibility needs palindromic weights.
    """

    name: str
    a: tuple[float, ...]
    b: tuple[float, ...]
    order: int = 2

    def __attrs_post_init__(self) -> None:
        if len(self.b) != len(self.a) + 1:
            raise ValueError(f"{self.name}: need len(b) == len(a) + 1, got {len(self.b)} and {len(self.a)}")
        for label, w in (("a", self.a), ("b", self.b)):
            if not math.isclose(sum(w), 1.0, rel_tol=1e-12):
                raise ValueError(f"{self.name}: weights {label} must sum to 1 (consistency), got {sum(w)!r}")
        if not all(math.isclose(x, y, rel_tol=1e-14) for x, y in zip(self.a, self.a[::-1])) or not all(
            math.isclose(x, y, rel_tol=1e-14) for x, y in zip(self.b, self.b[::-1])
        ):
            raise ValueError(f"{self.name}: weights must be palindromic for time reversibility")

    @property
    def forces_per_step(self) -> int:
        """Force evaluations per step when consecutive steps share their outer momentum kicks."""
        return len(self.b) - 1

    def plan(self, n_steps: int) -> list[tuple[str, float]]:
        """The flat sequence of sub-steps for ``n_steps`` steps, with adjacent kicks merged:
        ``[("p", w), ("q", w), ...]`` with weights in units of the step size."""
        ops: list[tuple[str, float]] = []
        for _ in range(n_steps):
            for i, a in enumerate(self.a):
                b = self.b[i]
                if ops and ops[-1][0] == "p":
                    ops[-1] = ("p", ops[-1][1] + b)
                else:
                    ops.append(("p", b))
                ops.append(("q", a))
            ops.append(("p", self.b[-1]))
        return ops


LEAPFROG = SplittingScheme(name="leapfrog", a=(1.0,), b=(0.5, 0.5))
"""Velocity Verlet / leapfrog: one force per step, error constant of dH ~ eps^2."""

_OMELYAN_LAMBDA = 0.1931833275037836
OMELYAN = SplittingScheme(
    name="omelyan",
    a=(0.5, 0.5),
    b=(_OMELYAN_LAMBDA, 1 - 2 * _OMELYAN_LAMBDA, _OMELYAN_LAMBDA),
)
"""Second-order minimum-norm (2MN) scheme of Omelyan, Mryglod and Folk, Comput. Phys. Commun. 151
(2003) 272, eq. (31) with lambda = 0.1931833275037836: two forces per step, an error constant about
ten times smaller than leapfrog's at equal cost (Takaishi and de Forcrand, PRE 73 (2006) 036706)."""

SCHEMES = {s.name: s for s in (LEAPFROG, OMELYAN)}


P = typing.TypeVar("P")
Q = typing.TypeVar("Q")


def integrate(scheme: SplittingScheme, q: Q, p: P, *, eps: float, n_steps: int,
              kick: Callable[[Q, P, float], P], drift: Callable[[Q, P, float], Q]) -> tuple[Q, P]:
    """Run ``n_steps`` of ``scheme``: ``kick(q, p, h)`` returns p - h dS(q); ``drift(q, p, h)`` moves q by h dK/dp."""
    for kind, w in scheme.plan(n_steps):
        if kind == "p":
            p = kick(q, p, w * eps)
        else:
            q = drift(q, p, w * eps)
    return q, p

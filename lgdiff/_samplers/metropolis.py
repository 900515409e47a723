"""Local Metropolis sweeps for scalar fields, checkerboard-ordered and vectorised over chains and sites."""

import math
import typing

import attrs
import torch
from torch import Tensor

from .. import _native
from .._actions.base import AbstractScalarAction
from .._actions.phi4 import Phi4Action
from .._fields.scalar import Field
from .._geometry.lattice import Lattice, shift
from .._types import PerConfig
from .base import AbstractKernel


def _scalar_action(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, AbstractScalarAction):
        raise TypeError(
            f"{type(instance).__name__}.{attribute.name} must be a scalar action (an AbstractScalarAction such as "
            f"Phi4Action(kappa=..., lam=...) or ToyAction(m2=..., g=...)); got {type(value).__name__}"
        )


def _positive_finite(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not (value > 0 and math.isfinite(value)):  # type: ignore[operator]
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be positive and finite; got {value!r}")


def _positive_int(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be an integer >= 1; got {value!r}")


def neighbour_sum(x: Tensor, lattice: Lattice) -> Tensor:
    """``sum_mu [phi(x+mu) + phi(x-mu)]`` for a batch-first field ``[B, *L]`` (zeros for D = 0)."""
    if lattice.dim == 0:
        return torch.zeros_like(x)
    return sum(shift(x, mu, site_axis=1) + shift(x, mu, site_axis=1, steps=-1) for mu in lattice.directions)


def checkerboard(lattice: Lattice, *, device: torch.device) -> Tensor:
    """Parity ``(sum_mu x_mu) mod 2`` of every site, ``[*L]`` bool (True = odd). ``[]`` False for D = 0."""
    if lattice.dim == 0:
        return torch.zeros((), dtype=torch.bool, device=device)
    coords = torch.meshgrid(*(torch.arange(L, device=device) for L in lattice.shape), indexing="ij")
    return sum(coords).remainder(2) == 1


@typing.final
@attrs.frozen
class Metropolis(AbstractKernel[Field]):
    r"""Local Metropolis: one ``step`` is one sweep, every site updated ``hits`` times.

    At a site x the proposal is ``phi'(x) = phi(x) + step_size * u``, ``u ~ U(-1, 1)`` (symmetric), accepted
    with probability ``min(1, exp(-[s(phi'(x), n(x)) - s(phi(x), n(x))]))`` where ``s`` is the action's
    :meth:`~AbstractScalarAction.local_action` and ``n(x) = sum_mu [phi(x+mu) + phi(x-mu)]``.

    Sites are visited in checkerboard order: all even sites (``sum_mu x_mu`` even) at once, then all odd
    sites. A nearest-neighbour action couples only sites of opposite parity, so the sites of one colour are
    conditionally independent and their simultaneous updates are exactly a sequence of single-site
    Metropolis updates. This needs every extent even (so that the colouring is consistent across the
    periodic boundary); D = 0 (the toy model) has a single site. Each half-sweep is one vectorised
    operation over all chains and sites; no Python loop runs over chains or sites.

    This is the slow baseline: at kappa = 0.27, lambda = 0.022, L = 32 the integrated autocorrelation
    time of |M| is about 80 sweeps (docs/conventions.md, Results).

    **Arguments:**
    - `action`: any :class:`AbstractScalarAction` (``Phi4Action``, ``ToyAction``).
    - `step_size`: half-width of the uniform proposal (tune for acceptance ~ 0.3-0.6).
    - `hits`: Metropolis hits per site and sweep (the neighbours are fixed during them).

    ``step`` returns the new field and, per chain, the fraction of accepted proposals in the sweep.

    >>> from lgdiff import Lattice, Phi4Action
    >>> kernel = Metropolis(action=Phi4Action(kappa=0.27, lam=0.022), step_size=1.5)
    >>> phi = Field.zeros(Lattice(shape=(4, 4)), batch=2)
    >>> phi, acceptance = kernel.step(phi, generator=torch.Generator().manual_seed(0))
    >>> acceptance.shape
    torch.Size([2])
    """

    action: AbstractScalarAction = attrs.field(validator=_scalar_action)
    step_size: float = attrs.field(converter=float, validator=_positive_finite)
    hits: int = attrs.field(default=1, validator=_positive_int)

    @property
    def name(self) -> str:
        return "metropolis"

    def settings(self) -> dict[str, float | int | str]:
        return {"step_size": self.step_size, "hits": self.hits}

    def _check(self, phi: Field) -> None:
        odd = [L for L in phi.lattice.shape if L % 2]
        if odd:
            raise ValueError(
                f"Metropolis updates sites in checkerboard order, which needs every lattice extent even; "
                f"got lattice shape {phi.lattice.shape} with odd extent(s) {odd}. Use even sizes, e.g. "
                f"Lattice(shape={tuple(L + L % 2 for L in phi.lattice.shape)})."
            )

    def step(self, state: Field, *, generator: torch.Generator) -> tuple[Field, PerConfig]:
        self._check(state)
        x = state.data
        lattice = state.lattice
        odd = checkerboard(lattice, device=x.device)
        colours = (~odd, odd) if lattice.dim > 0 else (~odd,)
        # one draw per site and hit serves both colours: even sites use it in the first half-sweep and
        # odd sites in the second, so every proposal still gets its own independent numbers
        shape = (self.hits, *x.shape)
        u = torch.rand(shape, generator=generator, dtype=x.dtype, device=x.device)
        log_r = torch.rand(shape, generator=generator, dtype=x.dtype, device=x.device).log()
        if isinstance(self.action, Phi4Action) and 0 < lattice.dim <= 8 and _native.available_scalar(x):
            # the same sweep site by site in one fused pass (lgdiff._native): same numbers, same decisions
            new, accepted_count = _native.phi4_metropolis(x, u, log_r, self.action.kappa, self.action.lam,
                                                          self.step_size, self.hits)
            return state.with_data(new), accepted_count / (lattice.volume * self.hits)
        accepted = torch.zeros_like(x)
        for colour in colours:
            n = neighbour_sum(x, lattice)  # fixed while this colour moves: neighbours have the other colour
            s_old = self.action.local_action(x, n)
            for h in range(self.hits):
                proposal = x + self.step_size * (2 * u[h] - 1)
                s_new = self.action.local_action(proposal, n)
                # a NaN/inf proposal action compares False: rejected, never propagated
                accept = (log_r[h] < s_old - s_new) & colour
                x = torch.where(accept, proposal, x)
                s_old = torch.where(accept, s_new, s_old)
                accepted = accepted + accept.to(x.dtype)
        acceptance = accepted.reshape(x.shape[0], -1).mean(1) / self.hits
        return state.with_data(x), acceptance

r"""Exact independent draws of 2D U(1) lattice gauge theory on a periodic torus.

The Wilson action of 2D U(1) depends on the links only through the ``V`` plaquette angles, and on the torus these
are independent except for one constraint (the derivation of :mod:`lgdiff._exact.u1_2d`): every link enters two
plaquettes with opposite orientation, so ``sum_P theta_P = 0 (mod 2 pi)``. Gauge-fixing a maximal tree, the links
are in one-to-one, measure-preserving correspondence (an integer unimodular linear map of the angles) with

- the plaquette angles on the constraint surface, with density ``prod_P exp(beta cos theta_P)``;
- two holonomies (the Polyakov-loop angles left over), uniform: they do not enter the action;
- the gauge, uniform: a random gauge transformation restores the Haar-uniform gauge orbit.

So one configuration is drawn exactly by

1. ``theta_1 .. theta_{V-1}`` independent von Mises with concentration ``beta`` (the exact sampler of the heatbath),
   ``theta_V = -sum theta_p`` wrapped to ``(-pi, pi]``, accepted with probability ``exp(beta (cos theta_V - 1))``:
   rejection sampling of the density above, about ``I_0(beta) e^{-beta}`` per try once ``theta_V`` is uniform
   (0.15 at beta = 7, 0.12 at beta = 11), vectorised over the configurations still unaccepted;
2. links from plaquettes in the maximal-tree gauge ``A_0(x_0, x_1) = 0`` for ``x_0 < L_0 - 1`` and
   ``A_1(0, x_1) = 0`` for ``x_1 < L_1 - 1``: ``A_1(x_0 + 1, x_1) = A_1(x_0, x_1) + theta(x_0, x_1)`` along
   direction 0, and the last column ``A_0(L_0 - 1, .)`` by a running sum along direction 1, which closes because the
   plaquettes sum to zero mod 2 pi; the two holonomies ``A_1(0, L_1 - 1)`` and ``A_0(L_0 - 1, 0)`` are uniform;
3. a uniform random gauge transformation ``A_mu(x) -> A_mu(x) + alpha(x) - alpha(x + mu)``.

Every draw is independent of the last, so the topological charge has no autocorrelation at any beta: this is the
reference sampler for the freezing studies (docs/gauge-diffusion.md) and the way to make training data whose
charge distribution is exact where every Markov chain freezes. It exists only because 2D U(1) is solvable; it is
no substitute for a sampler in higher dimensions.
"""

import math
import typing

import attrs
import torch
from torch import Tensor

from .._actions.wilson import WilsonAction
from .._fields.links import LinkField
from .._groups.u1 import U1
from .._geometry.lattice import Lattice
from .base import AbstractKernel, requires
from .heatbath import _rejection, _von_mises


def _wrap(theta: Tensor) -> Tensor:
    """Angles wrapped to ``(-pi, pi]``."""
    out = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
    return torch.where(out <= -math.pi, out + 2 * math.pi, out)


def _propose_plaquettes(beta: Tensor, volume: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Candidates ``[M, V]`` of plaquette angles on the constraint surface and their acceptance mask ``[M]``."""
    kappa = beta[:, None].expand(-1, volume - 1).contiguous()
    free = _von_mises(kappa, generator)  # exact von Mises draws (the heatbath's sampler)
    theta = torch.atan2(free[..., 1], free[..., 0])
    last = _wrap(-theta.sum(1))
    u = torch.rand(beta.shape, generator=generator, dtype=beta.dtype, device=beta.device)
    accept = u < torch.exp(beta * (torch.cos(last) - 1))
    return torch.cat([theta, last[:, None]], dim=1), accept


def u1_2d_plaquette_angles(beta: float, shape: tuple[int, int], *, batch: int, generator: torch.Generator,
                           dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
    r"""Exact draws ``[batch, L0, L1]`` of the plaquette angles of 2D U(1) on the ``L0 x L1`` torus: density
    ``prod_P exp(beta cos theta_P)`` on ``sum_P theta_P = 0 (mod 2 pi)``, each angle in ``(-pi, pi]``
    (module docstring, step 1)."""
    volume = math.prod(shape)
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"the direct U(1) sampler needs a finite beta >= 0; got beta = {beta}")
    if volume < 2:
        raise ValueError(f"the direct U(1) sampler needs at least 2 plaquettes; got L = {shape}")
    param = torch.full((batch,), float(beta), dtype=dtype, device=device)
    theta = _rejection(lambda b, g: _propose_plaquettes(b, volume, g), param, generator)
    return theta.reshape(batch, *shape)


def links_from_plaquettes(theta: Tensor, *, generator: torch.Generator) -> Tensor:
    r"""Link angles ``A [B, 2, L0, L1]`` whose plaquettes are ``theta [B, L0, L1]`` (mod 2 pi; the angles must sum
    to zero mod 2 pi per configuration), with uniform holonomies and a uniform random gauge (module docstring,
    steps 2 and 3). The plaquette is ``A_0(x) + A_1(x + 0) - A_0(x + 1) - A_1(x)``."""
    B, L0, L1 = theta.shape
    two_pi = 2 * math.pi
    u = torch.rand((2, B), generator=generator, dtype=theta.dtype, device=theta.device) * two_pi
    a1_first = torch.zeros((B, L1), dtype=theta.dtype, device=theta.device)
    a1_first[:, -1] = u[0]
    # A_1(x0, x1) = A_1(0, x1) + sum_{x0' < x0} theta(x0', x1)
    a1 = a1_first[:, None, :] + torch.cumsum(theta, dim=1) - theta
    # the last column: A_0(L0 - 1, x1 + 1) = A_0(L0 - 1, x1) + d(x1)
    d = a1[:, 0, :] - a1[:, -1, :] - theta[:, -1, :]
    a0_last = u[1][:, None] + torch.cumsum(d, dim=1) - d
    a0 = torch.zeros_like(theta)
    a0[:, -1, :] = a0_last
    alpha = torch.rand((B, L0, L1), generator=generator, dtype=theta.dtype, device=theta.device) * two_pi
    a0 = a0 + alpha - torch.roll(alpha, -1, dims=1)
    a1 = a1 + alpha - torch.roll(alpha, -1, dims=2)
    return torch.remainder(torch.stack([a0, a1], dim=1), two_pi)


def u1_2d_direct(beta: float, lattice: Lattice, *, batch: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.complex128, device: torch.device | str = "cpu") -> LinkField:
    r"""``batch`` exact, independent configurations of 2D U(1) with the Wilson action at ``beta`` on the periodic
    ``lattice`` (module docstring).

    >>> from lgdiff import Lattice
    >>> from lgdiff._observables.gauge import topological_charge_u1_2d
    >>> U = u1_2d_direct(7.0, Lattice(shape=(8, 8)), batch=4, generator=torch.Generator().manual_seed(0))
    >>> tuple(U.data.shape), bool((topological_charge_u1_2d(U) - topological_charge_u1_2d(U).round()).abs().max() < 1e-9)
    ((4, 2, 8, 8, 1, 1), True)
    """
    if lattice.dim != 2:
        raise ValueError(f"the direct U(1) sampler is for 2D lattices; got L = {lattice.shape}")
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"link dtype must be complex64 or complex128; got {dtype}")
    real = torch.float64  # angles in double precision, whatever the links' precision
    theta = u1_2d_plaquette_angles(beta, lattice.shape, batch=batch, generator=generator, dtype=real, device=device)
    angles = links_from_plaquettes(theta, generator=generator)
    return LinkField(torch.polar(torch.ones_like(angles), angles).to(dtype)[..., None, None], U1(), lattice)


def _check_u1(instance: object, attribute: attrs.Attribute, value: WilsonAction) -> None:
    requires(WilsonAction, "e.g. WilsonAction(beta=7.0, group=U1())")(instance, attribute, value)
    if not isinstance(value.group, U1):
        raise ValueError(f"U1Direct samples 2D U(1); got WilsonAction(group={value.group})")


@typing.final
@attrs.frozen
class U1Direct(AbstractKernel[LinkField]):
    r"""Exact independent draws of 2D U(1) (module docstring) as a kernel: every step replaces each chain's
    configuration by a fresh independent one, so every record is an independent sample and the topological charge
    never freezes. Rejection-free from the chain's point of view (the acceptance is reported as ones).

    >>> from lgdiff import U1, Lattice, LinkField, WilsonAction
    >>> U = LinkField.identity(U1(), Lattice(shape=(4, 4)), batch=2)
    >>> U, acc = U1Direct(WilsonAction(beta=3.0, group=U1())).step(U, generator=torch.Generator().manual_seed(0))
    >>> acc.tolist()
    [1.0, 1.0]
    """

    action: WilsonAction = attrs.field(validator=_check_u1)

    @property
    def name(self) -> str:
        return "direct"

    def settings(self) -> dict[str, float | int | str]:
        return {"beta": self.action.beta, "group": str(self.action.group)}

    def step(self, state: LinkField, *, generator: torch.Generator) -> tuple[LinkField, Tensor]:
        if not isinstance(state.group, U1) or state.lattice.dim != 2:
            raise ValueError(f"U1Direct samples 2D U(1); got {state.group} links on L = {state.lattice.shape}")
        U = u1_2d_direct(self.action.beta, state.lattice, batch=state.batch, generator=generator,
                         dtype=state.data.dtype, device=state.data.device)
        return U, torch.ones(U.batch, dtype=U.data.real.dtype, device=U.data.device)

"""Hybrid Monte Carlo for scalar fields (plain and Fourier-accelerated) and for gauge links."""

import abc
import math
import typing

import attrs
import torch
from torch import Tensor

from .._actions.base import AbstractGaugeAction, AbstractScalarAction
from .._fields.links import AlgebraField, LinkField
from .._fields.scalar import Field
from .._geometry.lattice import Lattice
from .._integrators.schemes import LEAPFROG, SplittingScheme, integrate
from .base import AbstractKernel

State = typing.TypeVar("State", Field, LinkField)


@attrs.frozen
class Trajectory(typing.Generic[State]):
    """One molecular-dynamics trajectory before the accept/reject step."""

    start: State
    proposal: State
    delta_h: Tensor  # [B]: H(end) - H(start), per chain


def _accept(delta_h: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per-chain Metropolis test ``u < exp(-dH)`` in log space. Returns (accepted mask, min(1, e^{-dH}))."""
    u = torch.rand(delta_h.shape, generator=generator, dtype=delta_h.dtype, device=delta_h.device)
    accepted = torch.log(u) < -delta_h
    return accepted, torch.exp(torch.clamp(-delta_h, max=0.0))


def _select(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)


def _check_md(step_size: float, n_steps: int) -> None:
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"HMC step_size must be positive and finite; got {step_size}")
    if n_steps < 1:
        raise ValueError(f"HMC n_steps must be >= 1; got {n_steps}")


# ---- kinetic terms for scalar HMC ---------------------------------------------------------------

class AbstractKinetic(abc.ABC):
    """Kinetic term ``K = p M^{-1} p / 2`` of scalar HMC: how momenta are drawn and move the field."""

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @abc.abstractmethod
    def settings(self) -> dict[str, float | int | str]: ...

    @abc.abstractmethod
    def sample(self, like: Tensor, lattice: Lattice, generator: torch.Generator) -> Tensor:
        """Momenta ~ N(0, M), shaped like the field."""

    @abc.abstractmethod
    def velocity(self, p: Tensor, lattice: Lattice) -> Tensor:
        """dK/dp = M^{-1} p."""

    def energy(self, p: Tensor, lattice: Lattice) -> Tensor:
        """K per configuration, ``[B]``."""
        return (p * self.velocity(p, lattice)).reshape(p.shape[0], -1).sum(1) / 2


@typing.final
@attrs.frozen
class UnitMass(AbstractKinetic):
    """M = 1: plain HMC."""

    @property
    def name(self) -> str:
        return "hmc"

    def settings(self) -> dict[str, float | int | str]:
        return {}

    def sample(self, like: Tensor, lattice: Lattice, generator: torch.Generator) -> Tensor:
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)

    def velocity(self, p: Tensor, lattice: Lattice) -> Tensor:
        return p


@typing.final
@attrs.frozen
class FourierMass(AbstractKinetic):
    r"""Fourier acceleration: ``M(k) = p_hat^2(k) + m_eff^2`` diagonal in momentum space, with
    ``p_hat^2 = sum_mu 4 sin^2(k_mu / 2)``. Long-wavelength modes, slow under plain HMC near
    criticality, move with velocity ``~ 1 / M(k)`` (Duane, Kogut, Sinclair et al.; seed App. C's data
    preparation). ``m_eff2 > 0`` keeps M invertible."""

    m_eff2: float = attrs.field(converter=float)

    def __attrs_post_init__(self) -> None:
        if not self.m_eff2 > 0:
            raise ValueError(f"FourierMass needs m_eff2 > 0 (M(k) = p_hat^2 + m_eff^2 must be invertible); got {self.m_eff2}")

    @property
    def name(self) -> str:
        return "fahmc"

    def settings(self) -> dict[str, float | int | str]:
        return {"m_eff2": self.m_eff2}

    def _mass(self, lattice: Lattice, like: Tensor) -> Tensor:
        return lattice.momentum_squared(dtype=like.dtype, device=like.device) + self.m_eff2

    def sample(self, like: Tensor, lattice: Lattice, generator: torch.Generator) -> Tensor:
        xi = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        dims = lattice.site_dims
        return torch.fft.ifftn(self._mass(lattice, like).sqrt() * torch.fft.fftn(xi, dim=dims), dim=dims).real

    def velocity(self, p: Tensor, lattice: Lattice) -> Tensor:
        dims = lattice.site_dims
        return torch.fft.ifftn(torch.fft.fftn(p, dim=dims) / self._mass(lattice, p), dim=dims).real


# ---- the kernels --------------------------------------------------------------------------------

@typing.final
@attrs.frozen(kw_only=True)
class HMC(AbstractKernel[Field]):
    r"""Hybrid Monte Carlo for a real scalar field, ``H = K(p) + S(phi)``, per-chain accept/reject.

    ``kinetic=UnitMass()`` is plain HMC; ``kinetic=FourierMass(m_eff2=...)`` is Fourier-accelerated HMC.
    The integrator is a :class:`SplittingScheme` (``LEAPFROG``, ``OMELYAN``).
    """

    action: AbstractScalarAction
    step_size: float = attrs.field(converter=float)
    n_steps: int
    scheme: SplittingScheme = LEAPFROG
    kinetic: AbstractKinetic = attrs.field(factory=UnitMass)

    def __attrs_post_init__(self) -> None:
        _check_md(self.step_size, self.n_steps)

    @property
    def name(self) -> str:
        return self.kinetic.name

    def settings(self) -> dict[str, float | int | str]:
        return {"step_size": self.step_size, "n_steps": self.n_steps, "integrator": self.scheme.name,
                **self.kinetic.settings()}

    def hamiltonian(self, phi: Field, p: Tensor) -> Tensor:
        return self.kinetic.energy(p, phi.lattice) + self.action(phi)

    def evolve(self, phi: Field, p: Tensor) -> tuple[Field, Tensor]:
        """Molecular dynamics only (deterministic): ``(phi, p) -> (phi', p')``."""
        lat = phi.lattice

        def kick(q: Field, mom: Tensor, h: float) -> Tensor:
            return torch.add(mom, self.action.gradient(q).data, alpha=-h)

        def drift(q: Field, mom: Tensor, h: float) -> Field:
            return q.with_data(torch.add(q.data, self.kinetic.velocity(mom, lat), alpha=h))

        return integrate(self.scheme, phi, p, eps=self.step_size, n_steps=self.n_steps, kick=kick, drift=drift)

    def trajectory(self, phi: Field, *, generator: torch.Generator) -> Trajectory:
        p = self.kinetic.sample(phi.data, phi.lattice, generator)
        h0 = self.hamiltonian(phi, p)
        new, p_new = self.evolve(phi, p)
        return Trajectory(start=phi, proposal=new, delta_h=self.hamiltonian(new, p_new) - h0)

    def step(self, state: Field, *, generator: torch.Generator) -> tuple[Field, Tensor]:
        traj = self.trajectory(state, generator=generator)
        # a non-finite dH (an exploding trajectory) is a rejection, never a NaN field
        dh = torch.nan_to_num(traj.delta_h, nan=math.inf, posinf=math.inf)
        accepted, prob = _accept(dh, generator)
        return state.with_data(_select(accepted, traj.proposal.data, state.data)), prob


@typing.final
@attrs.frozen(kw_only=True)
class GaugeHMC(AbstractKernel[LinkField]):
    r"""Hybrid Monte Carlo for gauge links: momenta in the algebra, ``K = sum_{x,mu,a} (P^a)^2 / 2``,
    equations of motion ``dU/dt = P U`` (exact group exponential) and ``dP^a/dt = -nabla^a S``.
    """

    action: AbstractGaugeAction
    step_size: float = attrs.field(converter=float)
    n_steps: int
    scheme: SplittingScheme = LEAPFROG

    def __attrs_post_init__(self) -> None:
        _check_md(self.step_size, self.n_steps)

    @property
    def name(self) -> str:
        return "hmc"

    def settings(self) -> dict[str, float | int | str]:
        return {"step_size": self.step_size, "n_steps": self.n_steps, "integrator": self.scheme.name}

    def hamiltonian(self, U: LinkField, P: AlgebraField) -> Tensor:
        return P.norm2() / 2 + self.action(U)

    def evolve(self, U: LinkField, P: AlgebraField) -> tuple[LinkField, AlgebraField]:
        """Molecular dynamics only (deterministic): ``(U, P) -> (U', P')``."""
        group = U.group

        def kick(q: LinkField, mom: AlgebraField, h: float) -> AlgebraField:
            return AlgebraField(mom.data - h * self.action.force(q).data, group, q.lattice)

        def drift(q: LinkField, mom: AlgebraField, h: float) -> LinkField:
            return q.with_data(group.exp(h * mom.data) @ q.data)

        return integrate(self.scheme, U, P, eps=self.step_size, n_steps=self.n_steps, kick=kick, drift=drift)

    def trajectory(self, U: LinkField, *, generator: torch.Generator) -> Trajectory:
        P = AlgebraField.randn(U.group, U.lattice, batch=U.batch, generator=generator, dtype=U.data.dtype,
                               device=U.data.device)
        h0 = self.hamiltonian(U, P)
        new, p_new = self.evolve(U, P)
        return Trajectory(start=U, proposal=new, delta_h=self.hamiltonian(new, p_new) - h0)

    def step(self, state: LinkField, *, generator: torch.Generator) -> tuple[LinkField, Tensor]:
        traj = self.trajectory(state, generator=generator)
        dh = torch.nan_to_num(traj.delta_h, nan=math.inf, posinf=math.inf)
        accepted, prob = _accept(dh, generator)
        return state.with_data(_select(accepted, traj.proposal.data, state.data)), prob

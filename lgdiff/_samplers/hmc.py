"""Hybrid Monte Carlo for scalar fields (plain and Fourier-accelerated) and for gauge links."""

import abc
import math
import typing
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .._actions.base import AbstractGaugeAction, AbstractScalarAction
from .._fields.links import AlgebraField, LinkField
from .._fields.scalar import Field
from .._geometry.lattice import Lattice
from .._integrators.schemes import LEAPFROG, SplittingScheme, integrate
from .._provenance import AbstractRecorded
from .._sde.score import Score
from .accept import metropolis, select
from .base import AbstractKernel

State = typing.TypeVar("State", Field, LinkField)


@attrs.frozen
class Trajectory(typing.Generic[State]):
    """One molecular-dynamics trajectory before the accept/reject step."""

    start: State
    proposal: State
    delta_h: Tensor  # [B]: H(end) - H(start), per chain


def _check_md(step_size: float, n_steps: int, drift_time: float) -> None:
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"HMC step_size must be positive and finite; got {step_size}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"HMC n_steps must be >= 1 (an int); got {n_steps!r}")
    if not (drift_time >= 0 and math.isfinite(drift_time)):
        raise ValueError(f"HMC drift_time must be a finite time >= 0; got {drift_time}")


def _drift_settings(drift: Score | None, label: str, drift_time: float) -> dict[str, float | int | str]:
    return {} if drift is None else {"drift": label, "drift_time": drift_time}


def _accept_step(kernel: "AbstractHMC", state: State, generator: torch.Generator) -> tuple[State, Tensor]:
    """One trajectory and the per-chain accept/reject: a non-finite dH (an exploding trajectory) is a rejection.

    The force (or drift) and the action at the chain's current state are kept from the step that produced it (a
    cache keyed by the identity and version counter of the state's tensor), so a trajectory of K steps costs K
    force and one action evaluation; a state the cache does not know (a start, a resume, another kernel's move, an
    in-place change) is evaluated afresh, with the same bits."""
    cache = kernel._cache
    # the same tensor, not modified in place since (its version counter is unchanged)
    known = cache.get("data") is state.data and cache.get("version") == state.data._version
    p = kernel._momenta(state, generator)
    s0 = cache["action"] if known else kernel.action(state)
    new, p_new, f_first, f_last = kernel._evolve(state, p, cache["force"] if known else None)
    s1 = kernel.action(new)
    dh = torch.nan_to_num(kernel._kinetic(new, p_new) + s1 - (kernel._kinetic(state, p) + s0), nan=math.inf,
                          posinf=math.inf)
    accepted, prob = metropolis(-dh, generator)
    if not kernel.metropolis:  # the unadjusted algorithm (not exact): for comparisons and power tests only
        accepted = torch.ones_like(accepted)
    data = select(accepted, new.data, state.data)
    cache.clear()
    cache.update(data=data, version=data._version, force=select(accepted, f_last, f_first),
                 action=torch.where(accepted, s1, s0))
    return state.with_data(data), prob


def _integrate_cached(kernel: "AbstractHMC", q: State, p: typing.Any, f0: Tensor | None,
                      move: Callable[[State, typing.Any, float], State],
                      kick: Callable[[typing.Any, Tensor, float], typing.Any]) -> tuple[State, typing.Any,
                                                                                             Tensor, Tensor]:
    """The splitting scheme with each position's force evaluated once: ``(q', p', force at q, force at q')``."""
    memo: dict[str, typing.Any] = {"q": q.data, "f": f0 if f0 is not None else kernel._force(q)}
    first = memo["f"]

    def kick_once(x: State, mom: typing.Any, h: float) -> typing.Any:
        if memo["q"] is not x.data:
            memo["q"], memo["f"] = x.data, kernel._force(x)
        return kick(mom, memo["f"], h)

    q_new, p_new = integrate(kernel.scheme, q, p, eps=kernel.step_size, n_steps=kernel.n_steps, kick=kick_once,
                             drift=move)
    assert memo["q"] is q_new.data  # every scheme ends with a kick at the final position
    return q_new, p_new, first, memo["f"]


# ---- kinetic terms for scalar HMC ---------------------------------------------------------------

class AbstractKinetic(AbstractRecorded):
    """Kinetic term ``K = p M^{-1} p / 2`` of scalar HMC: how momenta are drawn and move the field."""

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

@attrs.frozen(kw_only=True)
class AbstractHMC(AbstractKernel[State]):
    """What scalar and gauge HMC share: the splitting integrator, the optional drift (MAALA), the cached force at the
    chain's current state and the accept/reject step. A subclass says how momenta are drawn (``_momenta``), their
    kinetic energy (``_kinetic``), the force (``_force``) and one trajectory (``_evolve``)."""

    step_size: float = attrs.field(converter=float)
    n_steps: int
    scheme: SplittingScheme = LEAPFROG
    drift: Score | None = None
    drift_time: float = attrs.field(default=0.0, converter=float)
    drift_label: str = "score"
    metropolis: bool = True
    _cache: dict = attrs.field(factory=dict, init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        _check_md(self.step_size, self.n_steps, self.drift_time)
        if not self.metropolis and self.drift is None:
            raise ValueError("metropolis=False (the unadjusted algorithm) is for a drift's power tests; plain HMC is "
                             "always adjusted")

    def _md_settings(self) -> dict[str, float | int | str]:
        return {"step_size": self.step_size, "n_steps": self.n_steps, "integrator": self.scheme.name,
                **_drift_settings(self.drift, self.drift_label, self.drift_time)}

    @abc.abstractmethod
    def _momenta(self, q: State, generator: torch.Generator) -> typing.Any: ...

    @abc.abstractmethod
    def _kinetic(self, q: State, p: typing.Any) -> Tensor: ...

    @abc.abstractmethod
    def _force(self, q: State) -> Tensor:
        """The momentum change per unit time: minus the gradient of the action, or the drift."""

    @abc.abstractmethod
    def _evolve(self, q: State, p: typing.Any, f0: Tensor | None) -> tuple[State, typing.Any, Tensor, Tensor]:
        """One trajectory: ``(q', p', force at q, force at q')``, reusing ``f0`` (the force at q) if given."""

    def hamiltonian(self, q: State, p: typing.Any) -> Tensor:
        return self._kinetic(q, p) + self.action(q)

    def evolve(self, q: State, p: typing.Any) -> tuple[State, typing.Any]:
        """Molecular dynamics only (deterministic): ``(q, p) -> (q', p')``."""
        return self._evolve(q, p, None)[:2]

    def trajectory(self, q: State, *, generator: torch.Generator) -> Trajectory:
        p = self._momenta(q, generator)
        h0 = self.hamiltonian(q, p)
        new, p_new = self.evolve(q, p)
        return Trajectory(start=q, proposal=new, delta_h=self.hamiltonian(new, p_new) - h0)

    def step(self, state: State, *, generator: torch.Generator) -> tuple[State, Tensor]:
        return _accept_step(self, state, generator)


@typing.final
@attrs.frozen(kw_only=True)
class HMC(AbstractHMC[Field]):
    r"""Hybrid Monte Carlo for a real scalar field, ``H = K(p) + S(phi)``, per-chain accept/reject.

    ``kinetic=UnitMass()`` is plain HMC; ``kinetic=FourierMass(m_eff2=...)`` is Fourier-accelerated HMC.
    The integrator is a :class:`SplittingScheme` (``LEAPFROG``, ``OMELYAN``).

    **Any drift** (MAALA, exact route 3): with ``drift`` set, the momentum kicks use ``drift(phi, drift_time)``
    (e.g. a learned score at ``t_L``, which tends to ``-grad S`` as ``t_L -> 0``) instead of ``-grad S``, and the
    accept/reject step still uses the exact ``H``. Each kick is a shear and each position update a translation, so
    the trajectory followed by ``p -> -p`` is a volume-preserving involution: the kernel leaves ``exp(-S)``
    invariant whatever the drift (Neklyudov et al. 2020). One leapfrog step of size ``h = sqrt(2 e)`` is the
    Metropolis-adjusted Langevin move ``phi' = phi + e drift + sqrt(2 e) eta``.
    """

    action: AbstractScalarAction
    kinetic: AbstractKinetic = attrs.field(factory=UnitMass)

    def __attrs_post_init__(self) -> None:
        AbstractHMC.__attrs_post_init__(self)
        if self.drift is not None and not isinstance(self.kinetic, UnitMass):
            raise ValueError("HMC with a drift (MAALA) needs the unit kinetic term")

    @property
    def name(self) -> str:
        return self.kinetic.name if self.drift is None else "dm-maala"

    def settings(self) -> dict[str, float | int | str]:
        return {**self._md_settings(), **self.kinetic.settings()}

    def _momenta(self, phi: Field, generator: torch.Generator) -> Tensor:
        return self.kinetic.sample(phi.data, phi.lattice, generator)

    def _kinetic(self, phi: Field, p: Tensor) -> Tensor:
        return self.kinetic.energy(p, phi.lattice)

    def _force(self, q: Field) -> Tensor:
        """The momentum change per unit time: ``-grad S``, or the drift."""
        if self.drift is None:
            return self.action.negative_gradient(q)
        with torch.no_grad():
            return self.drift(q.data, torch.full((q.data.shape[0],), self.drift_time, dtype=q.data.dtype,
                                                 device=q.data.device))

    def _evolve(self, phi: Field, p: Tensor, f0: Tensor | None) -> tuple[Field, Tensor, Tensor, Tensor]:
        lat = phi.lattice

        def move(q: Field, mom: Tensor, h: float) -> Field:
            return q.with_data(torch.add(q.data, self.kinetic.velocity(mom, lat), alpha=h))

        def kick(mom: Tensor, f: Tensor, h: float) -> Tensor:
            return torch.add(mom, f, alpha=h)

        return _integrate_cached(self, phi, p, f0, move, kick)


@typing.final
@attrs.frozen(kw_only=True)
class GaugeHMC(AbstractHMC[LinkField]):
    r"""Hybrid Monte Carlo for gauge links: momenta in the algebra, ``K = sum_{x,mu,a} (P^a)^2 / 2``,
    equations of motion ``dU/dt = P U`` (exact group exponential) and ``dP^a/dt = -nabla^a S``.

    **Any drift** (MAALA on links, exact route 3): with ``drift`` set (``(U, t) -> AlgebraField``, e.g. a learned
    score at ``t_L``, :class:`lgdiff.ConditionedScore`), the kicks are ``P += h drift(U, t_L)`` instead of
    ``P -= h nabla S``; the accept/reject step uses the exact ``H``. Each kick is a shear in ``P`` and each link
    update ``U -> exp(h P) U`` a left translation, which preserves Haar measure, so the trajectory followed by
    ``P -> -P`` is a volume-preserving involution on (links, algebra): exact for any drift. One leapfrog step of
    size ``h = sqrt(2 e)`` is MAALA's Langevin move ``U' = exp(i (e s + sqrt(2 e) eta).T) U``; with the exact
    ``t -> 0`` score (:func:`lgdiff.wilson_score`) it is plain HMC.
    """

    action: AbstractGaugeAction

    @property
    def name(self) -> str:
        return "hmc" if self.drift is None else "dm-maala"

    def settings(self) -> dict[str, float | int | str]:
        return self._md_settings()

    def _momenta(self, U: LinkField, generator: torch.Generator) -> AlgebraField:
        return AlgebraField.randn(U.group, U.lattice, batch=U.batch, generator=generator, dtype=U.data.dtype,
                                  device=U.data.device)

    def _kinetic(self, U: LinkField, P: AlgebraField) -> Tensor:
        return P.norm2() / 2

    def _force(self, q: LinkField) -> Tensor:
        """The momentum change per unit time as algebra matrices: ``-nabla S``, or the drift."""
        if self.drift is None:
            return -self.action.force(q).data
        with torch.no_grad():
            f = self.drift(q, torch.full((q.batch,), self.drift_time, dtype=q.data.real.dtype, device=q.data.device))
        if not isinstance(f, AlgebraField) or f.data.shape != q.data.shape:
            raise ValueError(f"the drift must return an AlgebraField shaped like the links {q!r}; got {f!r}")
        return f.data.to(q.data.dtype)

    def _evolve(self, U: LinkField, P: AlgebraField, f0: Tensor | None) -> tuple[LinkField, AlgebraField, Tensor,
                                                                                   Tensor]:
        group = U.group

        def move(q: LinkField, mom: AlgebraField, h: float) -> LinkField:
            return q.with_data(group.exp(h * mom.data) @ q.data)

        def kick(mom: AlgebraField, f: Tensor, h: float) -> AlgebraField:
            return AlgebraField(mom.data + h * f, group, mom.lattice)

        return _integrate_cached(self, U, P, f0, move, kick)

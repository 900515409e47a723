r"""Independence Metropolis with diffusion-model proposals: exact routes 1 and 2 of docs/conventions.md ("three exact
routes"), one kernel each, for real fields and link fields alike.

Each step draws a fresh, independent proposal ``x'`` with log importance weight ``log w' = log target - log proposal``
and accepts it with probability ``min(1, w' / w)`` against the weight ``w`` of the current state (which the chain
carries). The chain leaves the target invariant whatever the model: a poor model only lowers the acceptance.

**Path space** (:class:`PathIMH`, any volume, no divergence). The proposal is the whole discretised reverse path,
generated from the prior ``x_K`` and the increments ``omega_K .. omega_1`` (:func:`lgdiff._samplers.reverse.reverse_path`):
``x_{k-1} = retract(x_k, omega_k)`` with ``omega_k ~ N(mu_k(x_k), v_k)``. Its density in the coordinates
``(x_K, omega)`` is ``prior(x_K) prod_k N(omega_k; mu_k, v_k)``. The extended target, in the coordinates
``(x_0, omega)``, is ``exp(-S(x_0)) / Z prod_k N(-omega_k; f(x_{k-1}) dt, v_k)``: each factor is a normalised density
of ``omega_k`` given ``x_{k-1}``, which ``x_0`` and ``omega_1 .. omega_{k-1}`` determine, so integrating out
``omega_K``, then ``omega_{K-1}``, ... leaves exactly ``exp(-S(x_0)) / Z``. For fixed ``omega`` the map
``x_K -> x_0`` is a composition of translations: of the field (Jacobian 1), or, for links, left translations
``U -> exp(i omega.T) U`` (Haar measure is invariant). So ``(x_K, omega) <-> (x_0, omega)`` preserves the reference
measure (Lebesgue or Haar times Lebesgue), no Jacobian enters, and

    ``log w = -S(x_0) + sum_k [log N(-omega_k; f dt, v_k) - log N(omega_k; mu_k, v_k)] - log prior(x_K)``

is exact, with ``log prior = 0`` for Haar-random links. On links no density on the group is needed (the wrapped
preimages of the exponential map never enter), which is what makes this route exact at any noise level.

**Marginal** (:class:`MarginalIMH`, small volumes). The proposal is the deterministic probability-flow map of prior
noise, with the exact log-density of the discrete map (:func:`lgdiff._samplers.reverse.probability_flow`,
``divergence="exact"``: ``n`` JVPs per step for ``n`` real degrees of freedom), ``log w = -S(x_0) - log q(x_0)``. On
links ``log q`` is with respect to Haar measure, from Jacobians in right-trivialised frames (module docstring of
:mod:`lgdiff._samplers.reverse`).
"""

import abc
import typing

import attrs
import torch
from torch import Tensor

from .._actions.base import AbstractGaugeAction, AbstractScalarAction
from .._fields.links import LinkField
from .._fields.scalar import Field
from .._sde.base import AbstractProcess, AbstractSDE
from .._sde.precondition import AbstractPreconditioner, FreeScalarPreconditioner
from .._sde.prior import MagnetisedPrior
from .._sde.score import Score
from .accept import metropolis, select
from .base import AbstractKernel
from .reverse import _check_preconditioner, forward_path_weight, probability_flow, reverse_path


@typing.final
@attrs.frozen
class Weighted:
    """The chain state of an independence sampler: configurations and their log importance weights ``[B]``."""

    state: Field | LinkField
    log_w: Tensor


def _unwrap(process: AbstractProcess, state: Field | LinkField) -> typing.Any:
    """The state the process works on: the raw tensor of a real field, the link field itself."""
    if isinstance(process, AbstractSDE):
        if not isinstance(state, Field):
            raise TypeError(f"the {process.name} process acts on real fields; got {type(state).__name__}")
        return state.data
    if not isinstance(state, LinkField):
        raise TypeError(f"the {process.name} process acts on link fields; got {type(state).__name__}")
    return state


def _wrap(like: Field | LinkField, x: typing.Any) -> Field | LinkField:
    return like.with_data(x) if isinstance(like, Field) else x


def _log_target(action: AbstractScalarAction | AbstractGaugeAction, state: Field | LinkField) -> Tensor:
    """``-S`` in float64 (a sum over many sites loses the O(1) differences in float32)."""
    if isinstance(state, LinkField):
        state = state.to(dtype=torch.complex128)
    else:
        state = state.with_data(state.data.to(torch.float64))
    with torch.no_grad():
        return -action(state)


def _check_common(process: object, steps: object) -> None:
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be an AbstractProcess (VESDE, VPSDE, GroupVE); got {type(process).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1; got {steps!r}")


@attrs.frozen(kw_only=True)
class AbstractDiffusionProposal(AbstractKernel):
    """A kernel whose every step generates fresh configurations with a diffusion model: ``steps`` integration steps
    of the ``process`` from ``T`` down to ``t_min`` on the ``spacing`` grid, driven by ``score``."""

    score: Score
    process: AbstractProcess
    steps: int
    t_min: float = 1e-3
    spacing: str = "uniform"
    preconditioner: AbstractPreconditioner | None = None

    def __attrs_post_init__(self) -> None:
        _check_common(self.process, self.steps)
        self.process.time_points(self.steps, t_min=self.t_min, spacing=self.spacing)  # validates the grid
        _check_preconditioner(self.process, self.preconditioner)

    def settings(self) -> dict[str, float | int | str]:
        pre = {} if self.preconditioner is None else self.preconditioner.settings()
        return {"steps": self.steps, "t_min": self.t_min, "spacing": self.spacing, **self.process.settings(), **pre}

    def _prior(self, like: Field | LinkField, generator: torch.Generator) -> typing.Any:
        """Prior noise at ``T`` shaped like ``like``, as the process's state."""
        return self.process.prior_like(_unwrap(self.process, like), generator=generator)


INIT_TRIES = 20
"""Redraws of a chain's first proposal while it is not finite (`AbstractIMH.init`)."""


def _finite_proposal(state: Field | LinkField, log_w: Tensor) -> Tensor:
    """``[B]``: the log weight is finite (not NaN, not +-inf) and so is every entry of the configuration."""
    return torch.isfinite(log_w) & torch.isfinite(state.data.reshape(state.data.shape[0], -1)).all(dim=1)


class AbstractIMH(AbstractKernel):
    """Independence Metropolis over a fresh proposal per step, whose log weight is against the exact target (module
    docstring): the accept/reject and the chain state of every independence sampler (the diffusion routes here, OSQ
    in `lgdiff._samplers.osq`). The chain state is a :class:`Weighted`; :meth:`init` makes the first proposal the
    start of every chain, whatever ``initial`` holds (only its shape, dtype and device are used). A mixin without
    fields (each sampler's attrs class holds its ``action``)."""

    __slots__ = ()

    @abc.abstractmethod
    def propose(self, like: Field | LinkField, *, generator: torch.Generator) -> tuple[Field | LinkField, Tensor]:
        """A fresh proposal shaped like ``like`` and its log weight ``[B]`` (float64)."""

    def init(self, initial: Field | LinkField, *, generator: torch.Generator) -> Weighted:
        """The first proposal of every chain; a chain whose proposal is not finite (a reverse path that diverged:
        the steps rejects those) draws again, up to `INIT_TRIES` times, so that no chain starts from a NaN."""
        state, log_w = self.propose(initial, generator=generator)
        for _ in range(INIT_TRIES):
            bad = ~_finite_proposal(state, log_w)
            if not bool(bad.any()):
                return Weighted(state, log_w)
            new, new_w = self.propose(initial, generator=generator)
            state = state.with_data(select(bad, new.data, state.data))
            log_w = torch.where(bad, new_w, log_w)
        if bool((~_finite_proposal(state, log_w)).any()):
            raise ValueError(f"{self.name}: some chains drew no finite proposal in {INIT_TRIES + 1} tries (the reverse "
                             f"paths diverge); use more steps, a preconditioner or a model trained nearer this run")
        return Weighted(state, log_w)

    def config(self, state: Weighted) -> Field | LinkField:
        return state.state

    @property
    def carry_keys(self) -> tuple[str, ...]:
        return ("log_w",)

    def carry(self, state: Weighted) -> dict[str, Tensor]:
        return {"log_w": state.log_w}

    def restore(self, config: Field | LinkField, carry: dict[str, Tensor]) -> Weighted:
        if "log_w" not in carry:
            raise ValueError(f"resuming {self.name} needs the log weights of the last record, which were not saved")
        return Weighted(config, carry["log_w"].to(device=config.data.device, dtype=torch.float64))

    def step(self, state: Weighted, *, generator: torch.Generator) -> tuple[Weighted, Tensor]:
        new, log_w = self.propose(state.state, generator=generator)
        accepted, _ = metropolis(log_w - state.log_w, generator)
        data = select(accepted, new.data, state.state.data)
        return (Weighted(state.state.with_data(data), torch.where(accepted, log_w, state.log_w)),
                accepted.to(torch.float64))


@attrs.frozen(kw_only=True)
class AbstractIndependenceKernel(AbstractDiffusionProposal, AbstractIMH):
    """Independence Metropolis with diffusion-model proposals against the exact ``action`` (:class:`AbstractIMH`
    with the proposal's score, process and time grid)."""

    action: AbstractScalarAction | AbstractGaugeAction


@typing.final
@attrs.frozen(kw_only=True)
class PathIMH(AbstractIndependenceKernel):
    r"""Exact route 2: path-space independence Metropolis (module docstring). Each proposal is one reverse-SDE
    generation (one score evaluation per step) from the process's prior, or from ``prior`` (real fields: a
    :class:`lgdiff.MagnetisedPrior`, whose zero mode has the two peaks of a magnetised field; fit one with
    :meth:`with_fitted_prior`).

    >>> from lgdiff import U1, Lattice, LinkField, WilsonAction, GroupVE, AlgebraField
    >>> zero = lambda U, t: AlgebraField(torch.zeros_like(U.data), U.group, U.lattice)
    >>> kernel = PathIMH(score=zero, process=GroupVE(), action=WilsonAction(beta=1.0, group=U1()), steps=4)
    >>> g = torch.Generator().manual_seed(0)
    >>> state = kernel.init(LinkField.identity(U1(), Lattice(shape=(2, 2)), batch=3), generator=g)
    >>> state, acc = kernel.step(state, generator=g)
    >>> tuple(state.log_w.shape), tuple(acc.shape)
    ((3,), (3,))
    """

    prior: MagnetisedPrior | None = None

    def __attrs_post_init__(self) -> None:
        AbstractDiffusionProposal.__attrs_post_init__(self)
        if self.prior is not None and not isinstance(self.process, AbstractSDE):
            raise ValueError(f"PathIMH.prior (a MagnetisedPrior) is for real scalar fields; the {self.process.name} "
                             f"process acts on links")

    @property
    def name(self) -> str:
        return "dm-path"

    def settings(self) -> dict[str, float | int | str]:
        return {**AbstractDiffusionProposal.settings(self), **({} if self.prior is None else self.prior.settings())}

    def _prior_logp(self, x_T: typing.Any) -> Tensor:
        logp = self.process.prior_logp(x_T) if self.prior is None else self.prior.logp(x_T)
        return logp.to(torch.float64)

    def propose(self, like: Field | LinkField, *, generator: torch.Generator) -> tuple[Field | LinkField, Tensor]:
        if self.prior is None:
            x_T = self._prior(like, generator)
        else:
            x_T = self.prior.sample_like(_unwrap(self.process, like), generator=generator)
        with torch.no_grad():
            x0, log_ratio = reverse_path(self.score, self.process, x_T, steps=self.steps, generator=generator,
                                         t_min=self.t_min, spacing=self.spacing, weigh=True,
                                         preconditioner=self.preconditioner)
        assert log_ratio is not None
        state = _wrap(like, x0)
        return state, _log_target(self.action, state) + log_ratio - self._prior_logp(x_T)

    def reweigh(self, state: Field | LinkField, *, generator: torch.Generator) -> Tensor:
        """The log weight ``[B]`` of ``state`` with a fresh auxiliary path drawn given it (an exact Gibbs update of the
        path, :func:`lgdiff._samplers.reverse.forward_path_weight`): what a proposal of ``state`` would weigh."""
        with torch.no_grad():
            x_T, log_ratio = forward_path_weight(self.score, self.process, _unwrap(self.process, state),
                                                 steps=self.steps, generator=generator, t_min=self.t_min,
                                                 spacing=self.spacing, preconditioner=self.preconditioner)
        return _log_target(self.action, state) + log_ratio - self._prior_logp(x_T)

    def with_fitted_prior(self, like: Field, *, generator: torch.Generator, rounds: int = 2, proposals: int = 64,
                          gaussian: FreeScalarPreconditioner | None = None) -> "PathIMH":
        r"""This sampler with a :class:`lgdiff.MagnetisedPrior` fitted to the model: ``rounds`` rounds of at least
        ``proposals`` proposals (batches shaped like ``like``), each from the prior fitted to the round before (the
        first from ``shift = 0``), estimate
        ``shift = <|M|>`` and ``zero_var = <M^2> - <|M|>^2`` (``M``: the site mean) with self-normalised importance
        weights. The non-zero modes are those of ``gaussian`` (default: the preconditioner, e.g. the Hartree
        Gaussian). The proposals are discarded; the chain is exact given the fitted prior, which is fixed before it
        starts (and recorded in :meth:`settings`). Same generator state, same prior.

        A poor model gives a poor fit (few effective proposals), which lowers only the acceptance."""
        if not isinstance(like, Field) or not isinstance(self.process, AbstractSDE):
            raise ValueError("PathIMH.with_fitted_prior fits the zero mode of a real scalar field; got "
                             f"{type(like).__name__} with the {self.process.name} process")
        for name, value in (("rounds", rounds), ("proposals", proposals)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"with_fitted_prior: {name} must be an int >= 1; got {value!r}")
        gaussian = self.preconditioner if gaussian is None else gaussian
        if not isinstance(gaussian, FreeScalarPreconditioner):
            raise ValueError("with_fitted_prior needs the Gaussian of the non-zero modes: give gaussian= a "
                             "FreeScalarPreconditioner (e.g. the Hartree Gaussian) or a sampler preconditioned by one")
        volume = like.data[0].numel()
        fit = dict(std=gaussian.std, kinetic=gaussian.kinetic)
        kernel = attrs.evolve(self, prior=MagnetisedPrior.at_T(self.process, shift=0.0,
                                                               zero_var=gaussian.std**2 / volume, **fit))
        batches = -(-proposals // like.data.shape[0])
        for _ in range(rounds):
            drawn = [kernel.propose(like, generator=generator) for _ in range(batches)]
            log_w = torch.cat([w for _, w in drawn])
            m = torch.cat([x.data.to(torch.float64).reshape(x.data.shape[0], -1).mean(1) for x, _ in drawn])
            ok = torch.isfinite(log_w) & torch.isfinite(m)
            if not bool(ok.any()):
                raise ValueError("with_fitted_prior: no proposal has a finite weight (the reverse paths diverge); use "
                                 "more steps or a model trained nearer this run")
            w = torch.softmax(torch.where(ok, log_w, -torch.inf), 0)
            m = torch.where(ok, m, 0.0)
            shift = float((w * m.abs()).sum())
            zero_var = max(float((w * m * m).sum()) - shift**2, 0.0)
            ess = float(1.0 / (w * w).sum())
            kernel = attrs.evolve(kernel, prior=MagnetisedPrior.at_T(
                self.process, shift=shift, zero_var=zero_var, fit_proposals=int(ok.sum()), fit_ess=ess, **fit))
        return kernel


@typing.final
@attrs.frozen(kw_only=True)
class MarginalIMH(AbstractIndependenceKernel):
    r"""Exact route 1: marginal independence Metropolis with probability-flow proposals and the exact log-density of
    the discrete flow map (module docstring). Each proposal costs ``steps`` Heun steps times ``n`` JVPs (``n`` real
    degrees of freedom per configuration, ``chunk`` at a time): small volumes. The score must support forward-mode
    AD (networks and closed-form scores do)."""

    chunk: int = 64

    def __attrs_post_init__(self) -> None:
        AbstractDiffusionProposal.__attrs_post_init__(self)
        if self.preconditioner is not None:
            raise ValueError("MarginalIMH integrates the probability-flow ODE, which has no reverse kernel to "
                             "precondition; use PathIMH or DiffusionResample with a preconditioner")

    @property
    def name(self) -> str:
        return "dm-imh"

    def propose(self, like: Field | LinkField, *, generator: torch.Generator) -> tuple[Field | LinkField, Tensor]:
        x0, logq = probability_flow(self.score, self.process, self._prior(like, generator), steps=self.steps,
                                    divergence="exact", t_min=self.t_min, spacing=self.spacing, chunk=self.chunk)
        state = _wrap(like, x0.detach() if isinstance(x0, Tensor) else x0.with_data(x0.data.detach()))
        return state, _log_target(self.action, state) - logq.detach().to(torch.float64)


@typing.final
@attrs.frozen(kw_only=True)
class RawDraws(AbstractDiffusionProposal):
    r"""The raw diffusion sampler as a kernel: every step replaces each chain by a fresh generation (``method="sde"``:
    the reverse SDE, ``"ode"``: the probability-flow ODE from prior noise) down to ``t_min``, accepted always.
    **Not exact**: the records are independent samples of the model, as good as its score and discretisation.
    Written as a kernel so that raw sampling runs through the same resumable ensemble run as the exact ones."""

    method: str = "sde"

    def __attrs_post_init__(self) -> None:
        AbstractDiffusionProposal.__attrs_post_init__(self)
        if self.method not in ("sde", "ode"):
            raise ValueError(f"RawDraws method must be 'sde' or 'ode'; got {self.method!r}")
        if self.method == "ode" and self.preconditioner is not None:
            raise ValueError("RawDraws(method='ode') has no reverse kernel to precondition; use method='sde'")

    @property
    def name(self) -> str:
        return f"dm-{self.method}"

    def step(self, state: Field | LinkField, *, generator: torch.Generator) -> tuple[Field | LinkField, Tensor]:
        x_T = self._prior(state, generator)
        with torch.no_grad():
            if self.method == "sde":
                x0 = reverse_path(self.score, self.process, x_T, steps=self.steps, generator=generator,
                                  t_min=self.t_min, spacing=self.spacing, preconditioner=self.preconditioner)[0]
            else:
                x0 = probability_flow(self.score, self.process, x_T, steps=self.steps, divergence="none",
                                      t_min=self.t_min, spacing=self.spacing)[0]
        out = _wrap(state, x0)
        return out, torch.ones(self.process.batch(x_T), dtype=torch.float64, device=out.data.device)


__all__ = ["AbstractDiffusionProposal", "AbstractIMH", "AbstractIndependenceKernel", "MarginalIMH", "PathIMH", "RawDraws", "Weighted"]

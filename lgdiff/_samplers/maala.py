r"""Exact route 3, Metropolis-adjusted annealed Langevin (MAALA), for real fields and links, and the common driver
that runs any exact diffusion-model kernel into arrays (:func:`sample_chain`).

MAALA denoises prior noise with the reverse SDE from ``T`` to ``t_L`` (:func:`lgdiff._samplers.reverse.reverse_sde`),
then runs Markov steps whose proposal uses a drift (the model's score at ``t_L``, or the exact ``t -> 0`` score
``-grad S``, :func:`wilson_score`) and whose accept/reject step uses the exact action. Its Markov kernel is
:class:`lgdiff.HMC` / :class:`lgdiff.GaugeHMC` with that drift: ``K`` leapfrog steps of size ``h = sqrt(2 e)``; one
step is the Langevin move ``x' = retract(x, e drift + sqrt(2 e) eta)`` accepted with
``min(1, exp(-S(x') + S(x) - |eta_rev|^2 / 2 + |eta|^2 / 2))``. The kernel is exact for any drift (the trajectory
followed by a momentum flip is a volume-preserving involution; :class:`lgdiff.GaugeHMC` has the proof on links), and
with the exact drift it *is* HMC: one code path.

**Physics conditioning.** A score trained at ``beta_0`` is used at ``beta`` as :class:`lgdiff.ConditionedScore`
(``r s`` with ``r = beta / beta_0``), in the denoising and in the drift; the accept/reject step uses the action at the
target ``beta``, so the result is exact whatever ``r`` does to the drift.
"""

import math
import typing

import attrs
import torch
from torch import Tensor

from .._actions.base import AbstractGaugeAction, AbstractScalarAction
from .._actions.wilson import WilsonAction
from .._fields.links import AlgebraField, LinkField
from .._fields.scalar import Field
from .._sde.base import AbstractProcess
from .._sde.score import Score
from .base import AbstractKernel, StepSizeAdaptation, run_chain
from .hmc import HMC, GaugeHMC
from .independence import MarginalIMH, PathIMH
from .reverse import Corrector, reverse_sde

TARGET_ACCEPTANCE = 0.6
"""Default acceptance that the step-size adaptation during thermalisation aims at."""


@typing.final
@attrs.frozen
class WilsonScore:
    r"""The exact ``t -> 0`` score of ``exp(-S)`` for a gauge action: ``s^a(U) = -nabla^a S(U)``, whatever ``t``.

    Every diffusion model's score tends to this as ``t -> 0`` (the forward kernel becomes a delta; its corrections
    are ``O(s(t)^2)``), so it is the ``t_L -> 0`` limit of MAALA's drift, known in closed form; with it MAALA's
    Markov phase is HMC on ``exp(-S)``.

    >>> from lgdiff import SU, Lattice, LinkField
    >>> action = WilsonAction(beta=5.0, group=SU(3))
    >>> U = LinkField.random(SU(3), Lattice(shape=(2, 2)), batch=1, generator=torch.Generator().manual_seed(0))
    >>> s = wilson_score(action)(U, torch.zeros(1, dtype=torch.float64))
    >>> bool(torch.allclose(s.data, -action.force(U).data))
    True
    """

    action: AbstractGaugeAction

    def __call__(self, U: LinkField, t: Tensor, /) -> AlgebraField:
        return self.action.force(U) * -1.0


def wilson_score(action: WilsonAction) -> WilsonScore:
    """The exact ``t -> 0`` score of ``action`` (:class:`WilsonScore`)."""
    if not isinstance(action, WilsonAction):
        raise TypeError(f"wilson_score needs a WilsonAction; got {type(action).__name__}")
    return WilsonScore(action)


def maala_kernel(action: AbstractScalarAction | AbstractGaugeAction, drift: Score, *, t_langevin: float,
                 step_size: float, leapfrog: int = 1, metropolis: bool = True,
                 drift_label: str = "score") -> HMC | GaugeHMC:
    """MAALA's Markov kernel: ``leapfrog`` steps of size ``sqrt(2 e)`` (``e = step_size``, the Langevin step) with
    ``drift(x, t_langevin)`` as force, accepted with the exact ``action`` (module docstring). ``metropolis=False``
    accepts every proposal (the unadjusted algorithm: not exact, for comparisons only)."""
    if not (isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"the Langevin step must be a finite number > 0; got {step_size!r}")
    if not (isinstance(t_langevin, (int, float)) and math.isfinite(t_langevin) and t_langevin > 0):
        raise ValueError(f"t_langevin must be a finite time > 0; got {t_langevin!r}")
    common = dict(step_size=math.sqrt(2 * step_size), n_steps=leapfrog, drift=drift, drift_time=t_langevin,
                  drift_label=drift_label, metropolis=metropolis)
    if isinstance(action, AbstractGaugeAction):
        return GaugeHMC(action=action, **common)
    return HMC(action=action, **common)


def langevin_step(kernel: HMC | GaugeHMC) -> float:
    """The Langevin step ``e = h^2 / 2`` of a MAALA kernel with leapfrog step ``h``."""
    return kernel.step_size ** 2 / 2


@attrs.frozen
class MCResult:
    """An exact diffusion-model run collected into arrays: ``samples [n, B, ...]`` (the configurations' data),
    ``acceptance [n, B]`` (mean acceptance per record), the final chain ``state`` and the ``kernel`` that made the
    records (for MAALA, with its adapted step)."""

    samples: Tensor
    acceptance: Tensor
    state: typing.Any
    kernel: AbstractKernel


def sample_chain(kernel: AbstractKernel, initial: Field | LinkField, *, n: int, generator: torch.Generator,
                 therm: int = 0, every: int = 1, adapt: StepSizeAdaptation | None = None) -> MCResult:
    """Run ``kernel`` from ``initial`` (``kernel.init`` first: an independence sampler starts from its first
    proposal), ``therm`` steps (tuning the step size if ``adapt``), then ``n`` records one every ``every`` steps."""
    state = kernel.init(initial, generator=generator)
    if adapt is not None:
        kernel, state = adapt.tune(kernel, state, steps=therm, generator=generator)
        therm = 0
    samples, accepts = [], []
    for rec in run_chain(kernel, state, n=n, generator=generator, therm=therm, every=every):
        samples.append(rec.state.data)
        accepts.append(rec.acceptance)
    if not samples:
        raise ValueError("sample_chain needs n >= 1 records")
    return MCResult(samples=torch.stack(samples), acceptance=torch.stack(accepts), state=rec.state, kernel=kernel)


def denoise(score: Score, process: AbstractProcess, like: Field | LinkField, *, steps: int,
            generator: torch.Generator, t_min: float, spacing: str = "uniform",
            corrector: Corrector | None = None) -> Field | LinkField:
    """Prior noise shaped like ``like``, denoised by the reverse SDE to ``t_min`` (no gradients)."""
    x = like.data if isinstance(like, Field) else like
    with torch.no_grad():
        out = reverse_sde(score, process, process.prior_like(x, generator=generator), steps=steps,
                          generator=generator, t_min=t_min, spacing=spacing, corrector=corrector)
    return like.with_data(out) if isinstance(like, Field) else out


def maala(score: Score, process: AbstractProcess, action: AbstractScalarAction | AbstractGaugeAction,
          like: Field | LinkField, *, n: int, steps: int, t_langevin: float, step_size: float,
          generator: torch.Generator, therm: int = 0, every: int = 1, leapfrog: int = 1,
          target_acceptance: float | None = None, drift: Score | None = None, spacing: str = "uniform",
          metropolis: bool = True) -> MCResult:
    """Exact route 3 (module docstring): denoise prior noise shaped like ``like`` with ``steps`` reverse-SDE steps
    to ``t_langevin``, then ``therm + n every`` MAALA proposals with ``drift`` (default: ``score`` itself) at
    ``t_langevin``; ``target_acceptance`` tunes the step during ``therm``."""
    start = denoise(score, process, like, steps=steps, generator=generator, t_min=t_langevin, spacing=spacing)
    kernel = maala_kernel(action, score if drift is None else drift, t_langevin=t_langevin, step_size=step_size,
                          leapfrog=leapfrog, metropolis=metropolis)
    adapt = None if target_acceptance is None else StepSizeAdaptation(target=target_acceptance)
    return sample_chain(kernel, start, n=n, generator=generator, therm=therm, every=every, adapt=adapt)


def path_imh(score: Score, process: AbstractProcess, action: AbstractScalarAction | AbstractGaugeAction,
             like: Field | LinkField, *, n: int, steps: int, generator: torch.Generator, t_min: float = 1e-3,
             spacing: str = "uniform") -> MCResult:
    """Exact route 2, :class:`lgdiff.PathIMH`, collected: ``n`` steps of chains shaped like ``like``."""
    kernel = PathIMH(score=score, process=process, action=action, steps=steps, t_min=t_min, spacing=spacing)
    return sample_chain(kernel, like, n=n, generator=generator)


def marginal_imh(score: Score, process: AbstractProcess, action: AbstractScalarAction | AbstractGaugeAction,
                 like: Field | LinkField, *, n: int, steps: int, generator: torch.Generator, t_min: float = 1e-3,
                 spacing: str = "uniform", chunk: int = 64) -> MCResult:
    """Exact route 1, :class:`lgdiff.MarginalIMH`, collected: ``n`` steps of chains shaped like ``like``."""
    kernel = MarginalIMH(score=score, process=process, action=action, steps=steps, t_min=t_min, spacing=spacing,
                         chunk=chunk)
    return sample_chain(kernel, like, n=n, generator=generator)


__all__ = ["MCResult", "TARGET_ACCEPTANCE", "WilsonScore", "denoise", "langevin_step", "maala", "maala_kernel",
           "marginal_imh", "path_imh", "sample_chain", "wilson_score"]

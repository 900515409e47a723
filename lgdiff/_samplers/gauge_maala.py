r"""Diffusion-model samplers for link fields: the raw reverse SDE on the group ("sde") and the exact
Metropolis-adjusted annealed Langevin sampler ("maala", PHYSICS.md, Exactness and exact route 3).

Both take a score ``score(U, t) -> AlgebraField`` (the score ``i sum_a s^a T^a`` per link, e.g. from
``lgdiff._train.gauge.lcnn_score``) and a :class:`GroupVE` process.

**Physics conditioning.** A score trained at ``beta_0`` is used at ``beta`` as ``r s_theta`` with
``r = beta / beta_0`` (``beta_scale``), in the denoising and in the Langevin drift; the Metropolis step
uses the exact action at the target ``beta``, so the result is exact whatever ``r`` does to the drift.

**MAALA.** Denoise Haar-random links with the reverse SDE from ``t = T`` to ``t_L`` (``t_langevin``), then
run Markov steps with the proposal, per link,

    ``U' = exp(i sum_a T^a omega^a) U``,  ``omega = e r s(U, t_L) + sqrt(2 e) eta``,  ``eta ~ N(0, 1)``,

accepted with probability ``min(1, exp(-S(U') + S(U)) N(-omega; e r s(U', t_L), 2e) / N(omega; e r s(U, t_L), 2e))``
(``N(x; m, v)``: the product over links and generators of Gaussian densities in algebra coordinates):

    ``log alpha = -S(U') + S(U) - |eta_rev|^2 / 2 + |eta|^2 / 2``,  ``eta_rev = (-omega - e r s(U')) / sqrt(2e)``.

Why this is exact. Read the move as a deterministic involution on the extended space (links, algebra
coordinates): ``(U, omega) -> (U', omega') = (exp(i omega.T) U, -omega)``; applying it twice gives back
``(U, omega)`` (``exp(-i omega.T) exp(i omega.T) = 1``). For fixed ``omega`` the map ``U -> exp(i omega.T) U``
is a left translation, which preserves Haar measure, and ``omega -> -omega`` preserves Lebesgue measure, so
the involution preserves ``dU d omega`` (its Jacobian is 1). Metropolis-Hastings with a volume-preserving
involution and auxiliary density ``N(omega; e r s(U), 2e)`` (Tierney 1998; Neklyudov et al. 2020) accepts with
exactly the ratio above and leaves ``exp(-S(U)) dU`` invariant, whatever the score. Equivalently, in terms of
proposal densities on the group, ``q(U'|U) = sum_{omega: exp(i omega.T) = U' U^dagger} N(omega; ...) / J(omega)``
with the exp-map Haar Jacobian ``J`` (``prod_roots (sin(alpha/2) / (alpha/2))^2``): ``J`` is a class
function, even in ``omega``, so it cancels between ``q(U|U')`` (preimage ``-omega``) and ``q(U'|U)``
(preimage ``omega``); the other preimages (``omega`` shifted by ``2 pi`` along a torus direction) carry
relative weight ``~ exp(-pi^2 / e)`` (``e^-987`` at ``e = 0.01``) and vanish in floating point. This is
why ``omega`` is used directly rather than recomputed as ``log(U' U^dagger)``: both agree away from the cut,
and the involution argument does not need the principal branch.

The links of the chain are kept in the precision of ``initial`` (complex128 by default) whatever the
score's precision: a float32 network sees a complex64 copy (:func:`lgdiff._train.gauge.lcnn_score` casts),
the action and every log density are evaluated in float64, and links do not drift off the group over long
chains. Nothing synchronises the device per step.
"""

import math
from collections.abc import Callable, Iterator

import attrs
import torch
from torch import Tensor

from .._actions.wilson import WilsonAction
from .._fields.links import AlgebraField, LinkField
from .._geometry.lattice import Lattice
from .._groups.base import AbstractGroup, real_dtype
from .._sde.group import GroupScore, GroupStepInfo, GroupVE, reverse_sde_group

TARGET_ACCEPTANCE = 0.6
"""Default acceptance that the step-size adaptation during thermalisation aims at."""


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")


def _check_count(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")


def scaled_score(score: GroupScore, beta_scale: float) -> GroupScore:
    """The physics-conditioned score ``r s(U, t)`` with ``r = beta / beta_0`` (PHYSICS.md, Score networks)."""
    _check_positive("beta_scale", beta_scale)
    if beta_scale == 1.0:
        return score

    def rescaled(U: LinkField, t: Tensor) -> AlgebraField:
        return score(U, t) * beta_scale

    return rescaled


def wilson_score(action: WilsonAction) -> GroupScore:
    r"""The exact ``t -> 0`` score of ``exp(-S)``: ``s^a(U) = -nabla^a S(U)``, minus the Lie-derivative force of
    `action` (PHYSICS.md, Actions), whatever ``t``.

    Every diffusion model's score tends to this as ``t -> 0`` (the forward kernel becomes a delta; its
    corrections are ``O(s(t)^2)``), so it is the ``t_L -> 0`` limit of MAALA's Langevin drift, known in closed form.
    With it the Langevin phase of MAALA is the Metropolis-adjusted Langevin algorithm on ``exp(-S)``
    (``drift = "force"`` in :class:`lgdiff.GaugeSampleConfig`). Like any drift it leaves MAALA exact; it is the
    drift that maximises the acceptance at a given step, where a learned score at ``t_L > 0`` carries both its
    training error and the ``O(s(t_L)^2)`` smoothing of the data (docs/gauge-diffusion.md has both measured).

    >>> from lgdiff import SU, Lattice, LinkField
    >>> action = WilsonAction(beta=5.0, group=SU(3))
    >>> U = LinkField.random(SU(3), Lattice(shape=(2, 2)), batch=1, generator=torch.Generator().manual_seed(0))
    >>> s = wilson_score(action)(U, torch.zeros(1, dtype=torch.float64))
    >>> bool(torch.allclose(s.data, -action.force(U).data))
    True
    """
    if not isinstance(action, WilsonAction):
        raise TypeError(f"wilson_score needs a WilsonAction; got {type(action).__name__}")

    def score(U: LinkField, t: Tensor) -> AlgebraField:
        return action.force(U) * -1.0

    return score


def denoise_links(score: GroupScore, process: GroupVE, group: AbstractGroup, lattice: Lattice, *, chains: int,
                  steps: int, generator: torch.Generator, t_min: float = 1e-3, beta_scale: float = 1.0,
                  dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None,
                  spacing: str = "geometric", progress: Callable[[int], None] | None = None,
                  corrector_steps: int = 0, corrector_scale: float = 1.0) -> LinkField:
    r"""The raw ("sde") sampler: Haar-random links at ``t = T``, then the reverse SDE on the group down to
    ``t_min`` with the score ``r s`` (:func:`reverse_sde_group`, ``steps`` exponential Euler-Maruyama steps on
    the ``spacing`` grid, each followed by ``corrector_steps`` annealed-Langevin corrector steps of size
    ``corrector_scale s(t)^2``). Not exact: its distribution is as good as the score and the discretisation.

    **Arguments:** `group`, `lattice`: where the links live; `chains`: the batch; `t_min`: where to stop;
    `beta_scale`: ``r = beta / beta_0``; `progress`: called with ``1 + corrector_steps`` (score evaluations)
    after every predictor step.

    **Returns:** links ``[chains, D, *L, N, N]`` in ``dtype``.
    """
    _check_count("steps", steps, 1)
    _check_count("chains", chains, 1)
    prior = process.prior(group, lattice, batch=chains, generator=generator, dtype=dtype, device=device)

    def callback(info: GroupStepInfo) -> None:
        if progress is not None:
            progress(1 + corrector_steps)

    with torch.no_grad():
        return reverse_sde_group(scaled_score(score, beta_scale), process, prior, steps=steps, generator=generator,
                                 t_min=t_min, spacing=spacing, callback=callback, corrector_steps=corrector_steps,
                                 corrector_scale=corrector_scale)


@attrs.frozen
class LangevinRecord:
    """Yielded by :func:`maala_chain` after every ``every`` steps once thermalised.

    ``index``: Langevin steps done (counted from the first thermalisation step); ``state``: the links of
    every chain; ``acceptance`` ``[B]``: the mean acceptance indicator over the steps since the last record;
    ``step_size``: the step ``e`` in use (a 0-d tensor, fixed after thermalisation)."""

    index: int
    state: LinkField
    acceptance: Tensor
    step_size: Tensor


def _coords(score: GroupScore, U: LinkField, t: Tensor, beta_scale: float) -> Tensor:
    """``r s^a(U, t)`` in float64 coordinates ``[B, D, *L, n_generators]``."""
    with torch.no_grad():
        out = score(U, t)
    if not isinstance(out, AlgebraField):
        raise TypeError(f"the score must return an AlgebraField (i sum_a s^a T^a per link); got {type(out).__name__}")
    if out.data.shape != U.data.shape:
        raise ValueError(f"the score returned {out!r} for links {U!r}: the shapes must match")
    return beta_scale * U.group.to_coords(out.data).to(torch.float64)


def _sq(x: Tensor) -> Tensor:
    return (x * x).reshape(x.shape[0], -1).sum(1)


def _log_target(action: WilsonAction, U: LinkField) -> Tensor:
    """``-S(U)`` in float64 (the sum over ~1e5 plaquettes loses the O(1) differences in float32)."""
    if U.data.dtype != torch.complex128:
        U = U.to(dtype=torch.complex128)
    with torch.no_grad():
        return -action(U)


def maala_chain(score: GroupScore, action: WilsonAction, initial: LinkField, *, n: int, t_langevin: float,
                step_size: float, generator: torch.Generator, beta_scale: float = 1.0, every: int = 1, therm: int = 0,
                target_acceptance: float | None = None, metropolis: bool = True,
                progress: Callable[[int], None] | None = None, leapfrog: int = 1) -> Iterator[LangevinRecord]:
    r"""The Langevin phase of MAALA: Markov chains started at ``initial`` (module docstring for the move and
    its acceptance), ``therm`` unrecorded steps, then ``n`` records one every ``every`` steps.

    **Several leapfrog steps per proposal** (``leapfrog = K > 1``): draw ``p = eta``, then K leapfrog steps of
    size ``h = sqrt(2 e)`` with the drift as force, ``p += h f(U) / 2``, ``U = exp(i h p.T) U``,
    ``p += h f(U) / 2``, and accept with ``exp(-S(U') - |p'|^2 / 2 + S(U) + |eta|^2 / 2)``. Each sub-step is a
    shear or a left translation, so the map, followed by ``p -> -p``, is a volume-preserving involution: exact
    for any drift, as the one-step move. K = 1 is exactly the MAALA move above (``p' = -eta_rev``); with the
    exact ``t -> 0`` score as drift (:func:`wilson_score`) the move is hybrid Monte Carlo with trajectory length
    ``K h``. Each proposal costs K score evaluations.

    **Arguments:**
    - `score`: ``score(U, t) -> AlgebraField``, evaluated at ``t = t_langevin`` (one call per step: the score
      of the current state is kept).
    - `action`: the exact target ``exp(-S)`` (its ``beta`` is the target coupling).
    - `initial`: links ``[B, D, *L, N, N]``; the chains keep its dtype (use complex128).
    - `step_size`: ``e``; with `target_acceptance` set, the starting value of an adaptation during the ``therm``
      steps (Robbins-Monro on ``log e`` with the mean acceptance probability over the chains), frozen
      afterwards, so the recorded part of every chain is a fixed exact kernel.
    - `beta_scale`: ``r`` in the drift. `metropolis`: ``False`` accepts every proposal, i.e. the unadjusted
      Langevin algorithm (not exact: for comparisons only).
    - `progress`: called with ``leapfrog`` (score evaluations) after every step.

    **Yields:** :class:`LangevinRecord`.
    """
    if not isinstance(action, WilsonAction):
        raise TypeError(f"maala_chain needs a WilsonAction (the exact target); got {type(action).__name__}")
    if not isinstance(initial, LinkField):
        raise TypeError(f"maala_chain: initial must be a LinkField (e.g. from denoise_links); got "
                        f"{type(initial).__name__}")
    if initial.group != action.group:
        raise ValueError(f"maala_chain: the links are {initial.group} but the action is for {action.group}; build "
                         f"WilsonAction(beta=..., group={initial.group})")
    _check_count("n", n, 0)
    _check_count("every", every, 1)
    _check_count("therm", therm, 0)
    _check_count("leapfrog", leapfrog, 1)
    _check_positive("step_size", step_size)
    _check_positive("t_langevin", t_langevin)
    _check_positive("beta_scale", beta_scale)
    if target_acceptance is not None and not 0.0 < target_acceptance < 1.0:
        raise ValueError(f"target_acceptance must be in (0, 1) or None; got {target_acceptance!r}")
    U = initial
    device, rdt = U.data.device, real_dtype(U.data.dtype)
    tl = torch.full((U.batch,), t_langevin, dtype=rdt, device=device)
    log_e = torch.tensor(math.log(step_size), dtype=torch.float64, device=device)
    log_p = _log_target(action, U)
    drift = _coords(score, U, tl, beta_scale)
    acc_sum = torch.zeros(U.batch, dtype=torch.float64, device=device)
    step = 0
    for k in range(therm + n * every):
        e = log_e.exp()
        eta = torch.randn(drift.shape, generator=generator, dtype=torch.float64, device=device)
        # one leapfrog step is the MAALA move: omega = e r s + sqrt(2e) eta, and p_end = -eta_rev
        proposal, drift_new, p_end = _leapfrog(score, U, drift, eta, (2 * e).sqrt(), leapfrog, tl, beta_scale)
        log_p_new = _log_target(action, proposal)
        log_alpha = torch.nan_to_num(log_p_new - log_p + (_sq(eta) - _sq(p_end)) / 2, nan=-math.inf)
        if metropolis:
            u = torch.rand(U.batch, generator=generator, dtype=torch.float64, device=device)
            accept = torch.log(u) < log_alpha
        else:
            accept = torch.ones(U.batch, dtype=torch.bool, device=device)
        U = U.with_data(torch.where(accept.reshape(-1, *([1] * (U.data.ndim - 1))), proposal.data, U.data))
        drift = torch.where(accept.reshape(-1, *([1] * (drift.ndim - 1))), drift_new, drift)
        log_p = torch.where(accept, log_p_new, log_p)
        step += 1
        if progress is not None:
            progress(leapfrog)
        if k < therm:
            if target_acceptance is not None:
                # Robbins-Monro on log e with the acceptance probability (less noisy than the indicator)
                prob = log_alpha.clamp(max=0.0).exp().mean()
                log_e = log_e + (prob - target_acceptance) / math.sqrt(1.0 + k / 5.0)
            continue
        acc_sum = acc_sum + accept.to(torch.float64)
        if (k - therm + 1) % every == 0:
            yield LangevinRecord(index=step - 1, state=U, acceptance=acc_sum / every, step_size=log_e.exp())
            acc_sum = torch.zeros_like(acc_sum)


def _leapfrog(score: GroupScore, U: LinkField, drift: Tensor, eta: Tensor, h: Tensor, steps: int, t: Tensor,
              beta_scale: float) -> tuple[LinkField, Tensor, Tensor]:
    """``steps`` leapfrog steps of size ``h`` from ``(U, p = eta)`` with the drift as force (:func:`maala_chain`):
    the final links, the drift there and the final momentum, in float64 coordinates."""
    group, rdt = U.group, real_dtype(U.data.dtype)
    p, u, f = eta, U.data, drift
    for _ in range(steps):
        p = p + (h / 2) * f
        u = group.exp(group.from_coords((h * p).to(rdt))) @ u
        f = _coords(score, U.with_data(u), t, beta_scale)
        p = p + (h / 2) * f
    return U.with_data(u), f, p


@attrs.frozen
class GaugeMCResult:
    """A MAALA run: ``samples [n, B, D, *L, N, N]`` (``n`` records of ``B`` chains), ``acceptance [n, B]`` (mean
    acceptance indicator over the steps of each record), the final ``state`` and the ``step_size`` used."""

    samples: Tensor
    acceptance: Tensor
    state: LinkField
    step_size: float


def maala_links(score: GroupScore, process: GroupVE, action: WilsonAction, lattice: Lattice, *, chains: int,
                n: int, steps: int, t_langevin: float, step_size: float, generator: torch.Generator,
                beta_scale: float = 1.0, initial: LinkField | None = None, every: int = 1, therm: int = 0,
                target_acceptance: float | None = None, dtype: torch.dtype = torch.complex128,
                device: torch.device | str | None = None, spacing: str = "geometric",
                metropolis: bool = True, leapfrog: int = 1) -> GaugeMCResult:
    r"""Exact route 3 for links (module docstring): denoise ``chains`` Haar-random configurations with
    ``steps`` reverse-SDE steps down to ``t_langevin`` (skipped if `initial` is given), then :func:`maala_chain`
    for ``therm + n every`` Langevin steps with the exact Wilson action of `action` (target ``beta``).

    **Arguments:** as :func:`denoise_links` and :func:`maala_chain`; ``beta_scale`` ``r = beta / beta_0``
    scales the score in both phases.

    **Returns:** :class:`GaugeMCResult`, ``samples [n, chains, D, *L, N, N]`` in ``dtype``.

    >>> from lgdiff import U1, Lattice, WilsonAction
    >>> from lgdiff._sde.group import GroupVE
    >>> def zero(U, t):
    ...     return AlgebraField(torch.zeros_like(U.data), U.group, U.lattice)
    >>> res = maala_links(zero, GroupVE(), WilsonAction(beta=1.0, group=U1()), Lattice(shape=(4, 4)), chains=3,
    ...                   n=5, steps=10, t_langevin=0.05, step_size=0.2, generator=torch.Generator().manual_seed(0))
    >>> tuple(res.samples.shape), tuple(res.acceptance.shape)
    ((5, 3, 2, 4, 4, 1, 1), (5, 3))
    """
    if initial is None:
        U = denoise_links(score, process, action.group, lattice, chains=chains, steps=steps, generator=generator,
                          t_min=t_langevin, beta_scale=beta_scale, dtype=dtype, device=device, spacing=spacing)
    else:
        if initial.batch != chains or initial.lattice != lattice:
            raise ValueError(f"maala_links: initial {initial!r} does not match chains = {chains} on "
                             f"L = {lattice.shape}")
        U = initial
    samples, accepts = [], []
    e = torch.tensor(step_size, dtype=torch.float64)
    state = U
    for rec in maala_chain(score, action, U, n=n, t_langevin=t_langevin, step_size=step_size, generator=generator,
                           beta_scale=beta_scale, every=every, therm=therm, target_acceptance=target_acceptance,
                           metropolis=metropolis, leapfrog=leapfrog):
        samples.append(rec.state.data)
        accepts.append(rec.acceptance)
        state, e = rec.state, rec.step_size
    if not samples:
        raise ValueError("maala_links needs n >= 1 records")
    return GaugeMCResult(samples=torch.stack(samples), acceptance=torch.stack(accepts), state=state,
                         step_size=float(e))


__all__ = ["GaugeMCResult", "LangevinRecord", "denoise_links", "maala_chain", "maala_links", "scaled_score",
           "wilson_score"]

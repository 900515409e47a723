r"""Generation with a diffusion model, written once for every forward process (real fields and links): the reverse
SDE with optional Langevin correctors, the probability-flow ODE with the exact (or Hutchinson) log-density of its
output, and the model likelihood of given data.

Every function takes a score (:class:`lgdiff.Score`), a process (:class:`lgdiff.AbstractProcess`) and an initial
state at ``t = T`` (e.g. ``process.prior_like(...)``), and moves the state with the process's geometry: an increment
``v`` (a real tangent vector) acts as ``x + v`` on a real field and as ``exp(i v.T) U`` on links, so links stay on the
group. Nothing here synchronises the device per step (the time grid is host-side).

**Jacobians on the group.** The exact log-density of a deterministic map ``Phi`` is ``log q(Phi(x)) = log q(x) -
log |det J|`` with ``J`` the matrix of ``d/d eps local_coords(Phi(retract(x, eps)), Phi(x))`` at ``eps = 0``: for real
fields the ordinary Jacobian, for links the Jacobian in right-trivialised frames ``dU = i eps.T U``. Haar measure is
bi-invariant, so its density in such a frame is the same constant at every ``U``, and ``|det J|`` is exactly the
volume change of Haar measure; for the same reason the divergence of a velocity field is the trace of
``d/d eps v(retract(x, eps))`` (the frames are divergence-free on a compact group).
"""

import math
import typing
import warnings
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .._sde.base import AbstractProcess, expand_like, flat_sq
from .._sde.precondition import AbstractPreconditioner
from .._sde.score import Score

S = typing.TypeVar("S")

DIVERGENCES = ("exact", "hutchinson", "none")


@attrs.frozen
class StepInfo:
    """Passed to callbacks after each integration step: the step index, the time reached (host float), the state."""

    step: int
    t: float
    state: typing.Any


@typing.final
@attrs.frozen(kw_only=True)
class Corrector:
    r"""Annealed-Langevin corrector steps after each predictor step (Song et al., ICLR 2021, Alg. 4/5; the seed
    talk's "equilibrium at each noise scale"): ``steps`` unadjusted Langevin moves ``x <- retract(x, e s + sqrt(2e) z)``
    at the level reached, with ``e = scale s(t)^2`` (``rule="scale"``) or the signal-to-noise rule
    ``e = 2 (snr |z| / |s|)^2`` per configuration (``rule="snr"``, ``scale`` is then the snr). Unadjusted: on a
    Gaussian level of variance ``s^2`` the ``"scale"`` rule's fixed point has variance ``s^2 / (1 - scale / 2)``;
    stable for ``0 < scale < 2``. Each step costs one score evaluation."""

    steps: int = 1
    scale: float = 1.0
    rule: str = "scale"

    def __attrs_post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"corrector steps must be an int >= 0; got {self.steps!r}")
        if self.rule not in ("scale", "snr"):
            raise ValueError(f"corrector rule must be 'scale' or 'snr'; got {self.rule!r}")
        if self.rule == "scale" and not 0.0 < self.scale < 2.0:
            raise ValueError(f"corrector scale must be in (0, 2) (the Langevin step e = scale s(t)^2 is unstable "
                             f"beyond 2); got {self.scale!r}")
        if self.rule == "snr" and not self.scale > 0:
            raise ValueError(f"corrector snr must be > 0; got {self.scale!r}")

    def apply(self, score: Score, process: AbstractProcess, x: typing.Any, t: float, s2: float,
              generator: torch.Generator) -> typing.Any:
        for _ in range(self.steps):
            s = process.score_coords(score, x, process.times(t, x))
            z = process.noise(x, generator=generator)
            if self.rule == "scale":
                e: Tensor | float = self.scale * s2
            else:
                e = expand_like(2 * (self.scale * flat_sq(z).sqrt() / flat_sq(s).sqrt().clamp_min(1e-30)) ** 2, s)
            x = process.retract(x, e * s + (2 * e) ** 0.5 * z)
        return x


def _schedule(process: AbstractProcess, steps: int, t_min: float, spacing: str,
              t_max: float | None = None) -> tuple[list[float], list[float], list[float]]:
    """Host-side times, ``g(t)^2`` and ``s(t)^2`` on them, computed once (no device synchronisation in the loop)."""
    ts = process.time_points(steps, t_min=t_min, spacing=spacing, t_max=t_max)
    grid = torch.tensor(ts, dtype=torch.float64)
    return list(ts), (process.diffusion(grid) ** 2).tolist(), (process.std(grid) ** 2).tolist()


# ---- the reverse SDE and its path weight ---------------------------------------------------------------

def _check_preconditioner(process: AbstractProcess, preconditioner: AbstractPreconditioner | None) -> None:
    if preconditioner is None:
        return
    if not isinstance(preconditioner, AbstractPreconditioner):
        raise TypeError(f"preconditioner must be an AbstractPreconditioner (FreeScalarPreconditioner, "
                        f"FreeU1Preconditioner) or None; got {type(preconditioner).__name__}")
    if process.name not in ("ve", "group_ve"):
        raise ValueError(f"a preconditioned reverse kernel needs a variance-expanding process (no drift: VESDE, "
                         f"GroupVE); got {process.name!r}")


def reverse_path(score: Score, process: AbstractProcess[S], initial: S, *, steps: int, generator: torch.Generator,
                 t_min: float, spacing: str = "uniform", corrector: Corrector | None = None,
                 callback: Callable[[StepInfo], None] | None = None, weigh: bool = False,
                 t_max: float | None = None,
                 preconditioner: AbstractPreconditioner | None = None) -> tuple[S, Tensor | None]:
    r"""Euler-Maruyama from ``initial`` at ``t_max`` (default ``T``) down to ``t_min``: with ``v_k = g(t_k)^2 dt`` and ``z ~ N(0, 1)``,

    ``omega_k = -f(x_k, t_k) dt + v_k s(x_k, t_k) + sqrt(v_k) z_k``,  ``x_{k-1} = retract(x_k, omega_k)``

    (for VE, ``f = 0``; on links ``U <- exp(i omega.T) U``, docs/conventions.md's exponential Euler-Maruyama). With
    ``weigh=True`` also returns the path log-ratio of the auxiliary forward kernels over the reverse proposals,

    ``sum_k [log N(-omega_k; f(x_{k-1}, t_{k-1}) dt, v_k) - log N(omega_k; mu_k, v_k)]``

    (same variances: the normalisations cancel), the weight of :class:`lgdiff.PathIMH`. Correctors (unadjusted) are
    refused with ``weigh=True``: the path density would not be the one written here.

    With a ``preconditioner`` (:mod:`lgdiff._sde.precondition`; VE processes) each step is the reverse transition
    that is exact for the preconditioner's Gaussian: ``omega_k = v_k M s(x_k, t_{k-1}) + sqrt(v_k) M^{1/2} z_k`` with
    ``v_k = s(t_k)^2 - s(t_{k-1})^2`` and ``M = (1 + v_k A_{t_{k-1}})^{-1}``, and the log-ratio is
    ``sum_k [(|z_k|^2 - |omega_k|^2 / v_k) / 2 + log det M / 2]`` (forward kernels ``N(0, v_k)``, reverse kernels
    ``N(v_k M s, v_k M)``).
    """
    if weigh and corrector is not None and corrector.steps:
        raise ValueError("a weighed reverse path (path-space independence Metropolis) cannot take corrector steps")
    _check_preconditioner(process, preconditioner)
    ts, g2, s2 = _schedule(process, steps, t_min, spacing, t_max)
    x = initial
    log_ratio = None
    if weigh:
        log_ratio = torch.zeros(process.batch(x), dtype=torch.float64, device=process._real_like(x).device)
    for i in range(steps):
        dt = ts[i] - ts[i + 1]
        z = process.noise(x, generator=generator)
        if preconditioner is None:
            v = g2[i] * dt
            tb = process.times(ts[i], x)
            s = process.score_coords(score, x, tb)
            omega = (v * s + math.sqrt(v) * z) - process.drift(x, tb) * dt
            x_new = process.retract(x, omega)
            if weigh:
                assert log_ratio is not None
                back = -omega - process.drift(x_new, process.times(ts[i + 1], x_new)) * dt
                log_ratio = log_ratio + (flat_sq(z) - flat_sq(back) / v).to(torch.float64) / 2
        else:
            v = s2[i] - s2[i + 1]
            m = preconditioner.multipliers(z, v, s2[i + 1] - s2[-1])
            s = process.score_coords(score, x, process.times(ts[i + 1], x))
            half = preconditioner.apply(v * s, m, 0.5) + math.sqrt(v) * z
            omega = preconditioner.apply(half, m, 0.5)
            x_new = process.retract(x, omega)
            if weigh:
                assert log_ratio is not None
                log_ratio = (log_ratio + (flat_sq(z) - flat_sq(omega) / v).to(torch.float64) / 2
                             + preconditioner.logdet(m) / 2)
        x = x_new
        if corrector is not None and corrector.steps:
            x = corrector.apply(score, process, x, ts[i + 1], s2[i + 1], generator)
        if callback is not None:
            callback(StepInfo(step=i, t=ts[i + 1], state=x))
    return process.finalize(x), log_ratio


def forward_path_weight(score: Score, process: AbstractProcess[S], x0: S, *, steps: int, generator: torch.Generator,
                        t_min: float, spacing: str = "uniform", t_max: float | None = None,
                        preconditioner: AbstractPreconditioner | None = None) -> tuple[S, Tensor]:
    r"""Draw the auxiliary path of :func:`reverse_path` given its end ``x0`` (at ``t_min``), and return its start
    ``x_K`` (at ``t_max``, default ``T``) and the path log-ratio that ``reverse_path(..., weigh=True)`` would have returned for it.

    The auxiliary (forward) kernels of the path-space extended target are ``-omega_k ~ N(f(x_{k-1}, t_{k-1}) dt, v_k)``
    with ``x_{k-1} = retract(x_k, omega_k)``: so, from ``x0`` upwards, ``omega_k = -f(x_{k-1}) dt - sqrt(v_k) xi_k``
    and ``x_k = retract(x_{k-1}, -omega_k)`` (a translation, inverted exactly). Drawing the path this way is an exact
    Gibbs update of the auxiliary variables given ``x0``; with the score at every ``x_k`` the log-ratio is
    ``sum_k [log N(-omega_k; f dt, v_k) - log N(omega_k; mu_k, v_k)]``, ``mu_k = v_k s(x_k, t_k) - f(x_k, t_k) dt``
    (``steps`` score evaluations, as many as a proposal). This is what lets a path-space independence sampler
    re-weigh a configuration that another kernel moved (:class:`lgdiff.GlobalLocal`). With a ``preconditioner`` the
    reverse kernels are :func:`reverse_path`'s preconditioned ones (and so is the log-ratio).
    """
    _check_preconditioner(process, preconditioner)
    ts, g2, s2 = _schedule(process, steps, t_min, spacing, t_max)
    x = x0
    log_ratio = torch.zeros(process.batch(x), dtype=torch.float64, device=process._real_like(x).device)
    for i in reversed(range(steps)):
        dt = ts[i] - ts[i + 1]
        xi = process.noise(x, generator=generator)
        if preconditioner is not None:
            v = s2[i] - s2[i + 1]
            m = preconditioner.multipliers(xi, v, s2[i + 1] - s2[-1])
            omega = -math.sqrt(v) * xi
            x_up = process.retract(x, -omega)
            s = process.score_coords(score, x_up, process.times(ts[i + 1], x_up))
            z = (preconditioner.apply(omega, m, -0.5) - preconditioner.apply(v * s, m, 0.5)) / math.sqrt(v)
            log_ratio = (log_ratio + (flat_sq(z) - flat_sq(xi)).to(torch.float64) / 2
                         + preconditioner.logdet(m) / 2)
            x = x_up
            continue
        v = g2[i] * dt
        omega = -process.drift(x, process.times(ts[i + 1], x)) * dt - math.sqrt(v) * xi
        x_up = process.retract(x, -omega)
        tb = process.times(ts[i], x_up)
        mu = v * process.score_coords(score, x_up, tb) - process.drift(x_up, tb) * dt
        log_ratio = log_ratio + (flat_sq(omega - mu) / v - flat_sq(xi)).to(torch.float64) / 2
        x = x_up
    return x, log_ratio


def reverse_sde(score: Score, process: AbstractProcess[S], initial: S, *, steps: int, generator: torch.Generator,
                t_min: float = 1e-3, spacing: str = "uniform", corrector: Corrector | None = None,
                callback: Callable[[StepInfo], None] | None = None) -> S:
    r"""Generate by the reverse SDE (:func:`reverse_path`), from ``initial`` at ``T`` down to ``t_min``, optionally
    with annealed-Langevin correctors after every step (:class:`Corrector`). Not exact: its distribution is as good
    as the score and the discretisation."""
    return reverse_path(score, process, initial, steps=steps, generator=generator, t_min=t_min, spacing=spacing,
                        corrector=corrector, callback=callback)[0]


# ---- the probability-flow ODE and its likelihood --------------------------------------------------------

def _velocity(score: Score, process: AbstractProcess, x: typing.Any, t: float, g2: float) -> Tensor:
    """``dx/dt = f - g^2 s / 2`` as a tangent vector."""
    tb = process.times(t, x)
    return process.drift(x, tb) - (0.5 * g2) * process.score_coords(score, x, tb)


def _heun(score: Score, process: AbstractProcess, x: typing.Any, t0: float, t1: float, g0: float,
          g1: float) -> typing.Any:
    """One Heun step from t0 to t1 (Runge-Kutta-Munthe-Kaas on the group: order 2 needs no ``dexp^{-1}``
    correction): ``x~ = retract(x, h k1)``, ``x' = retract(x, h (k1 + k2) / 2)``, ``h = t1 - t0``."""
    h = t1 - t0
    k1 = _velocity(score, process, x, t0, g0)
    k2 = _velocity(score, process, process.retract(x, h * k1), t1, g1)
    return process.retract(x, (h / 2) * (k1 + k2))


def _basis_jvp(fn: Callable[[Tensor], Tensor], shape: tuple[int, ...], like: Tensor, chunk: int) -> Tensor:
    """``J[b]`` ``[B, n, n]``: columns ``d fn(eps)_b / d eps`` at ``eps = 0`` along every tangent basis vector, by
    forward-mode JVPs, ``chunk`` at a time. Samples are independent (no batch statistics in the score), so one JVP
    with the tangent ``e_i`` on every sample gives column ``i`` of every sample's Jacobian."""
    batch, n = shape[0], math.prod(shape[1:])
    zero = torch.zeros(shape, dtype=like.dtype, device=like.device)
    eye = torch.eye(n, dtype=like.dtype, device=like.device).reshape(n, 1, *shape[1:]).expand(n, *shape)
    cols = []
    for start in range(0, n, chunk):
        tangents = eye[start:start + chunk]
        with warnings.catch_warnings():  # conj_physical has no batching rule yet: a slower fallback, same values
            warnings.filterwarnings("ignore", message="There is a performance drop", category=UserWarning)
            jv = torch.func.vmap(lambda v: torch.func.jvp(fn, (zero,), (v,))[1], in_dims=0, out_dims=0)(tangents)
        cols.append(jv.reshape(jv.shape[0], batch, n))
    return torch.cat(cols, 0).permute(1, 2, 0)


def step_logdet(step: Callable[[typing.Any], typing.Any], process: AbstractProcess, x: typing.Any,
                chunk: int = 64) -> tuple[typing.Any, Tensor]:
    """``(step(x), log |det J|)`` per configuration, exact for the discrete map (module docstring: the Jacobian in
    the process's tangent coordinates; ``n`` JVPs for ``n`` real degrees of freedom per configuration)."""
    y = step(x)
    shape = process.tangent_shape(x)
    like = process._real_like(x)

    def moved(eps: Tensor) -> Tensor:
        return process.local_coords(step(process.retract(x, eps)), y)

    jac = _basis_jvp(moved, shape, like, chunk)
    return y, torch.linalg.slogdet(jac)[1]


def _exact_divergence(score: Score, process: AbstractProcess, x: typing.Any, t: float, g2: float,
                      chunk: int) -> Tensor:
    """``div v(x, t)`` per configuration, exactly (``n`` JVPs)."""
    jac = _basis_jvp(lambda eps: _velocity(score, process, process.retract(x, eps), t, g2),
                     process.tangent_shape(x), process._real_like(x), chunk)
    return jac.diagonal(dim1=-2, dim2=-1).sum(-1)


def _hutchinson(score: Score, process: AbstractProcess, x: typing.Any, t: float, g2: float,
                generator: torch.Generator, n_probes: int) -> Tensor:
    """Skilling-Hutchinson estimate of ``div v = E[eps^T (dv/dx) eps]`` with Rademacher probes, per configuration."""
    shape = process.tangent_shape(x)
    like = process._real_like(x)
    zero = torch.zeros(shape, dtype=like.dtype, device=like.device)
    total = torch.zeros(shape[0], dtype=like.dtype, device=like.device)
    for _ in range(n_probes):
        eps = torch.randint(0, 2, shape, generator=generator, device=like.device).to(like.dtype) * 2 - 1
        _, jv = torch.func.jvp(lambda e: _velocity(score, process, process.retract(x, e), t, g2), (zero,), (eps,))
        total = total + (eps * jv).reshape(shape[0], -1).sum(1)
    return total / n_probes


def probability_flow(score: Score, process: AbstractProcess[S], initial: S, *, steps: int,
                     divergence: str = "exact", generator: torch.Generator | None = None, n_probes: int = 1,
                     t_min: float = 1e-3, spacing: str = "uniform", chunk: int = 64,
                     callback: Callable[[StepInfo], None] | None = None) -> tuple[S, Tensor]:
    r"""Generate by the probability-flow ODE ``dx/dt = f - g^2 s / 2`` (Heun steps, ``T -> t_min``) and return
    ``(x_0, log q(x_0))``.

    ``divergence="exact"``: the log-determinant of the Jacobian of each discrete Heun step (module docstring; ``n``
    JVPs per step), so ``log q`` is the exact density of the discrete flow map's output, deterministic, and may
    enter an accept/reject step (:class:`lgdiff.MarginalIMH`). ``"hutchinson"``: the Skilling-Hutchinson trace
    estimator with ``n_probes`` Rademacher probes (noisy: diagnostics only). ``"none"``: no likelihood (NaN).
    Heun evaluates the score at the end of each step, so ``t_min > 0`` for the VE process (``s(0) = 0``).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}; got {divergence!r}")
    if divergence == "hutchinson" and generator is None:
        raise ValueError("divergence='hutchinson' needs a generator for its probes")
    ts, g2, _ = _schedule(process, steps, t_min, spacing)
    x = initial
    logq = process.prior_logp(x)
    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]

        def heun(y: typing.Any, t0: float = t0, t1: float = t1, i: int = i) -> typing.Any:
            return _heun(score, process, y, t0, t1, g2[i], g2[i + 1])

        if divergence == "exact":
            x, logdet = step_logdet(heun, process, x, chunk)
            logq = logq - logdet.to(logq.dtype)
        elif divergence == "hutchinson":
            assert generator is not None
            x_new = heun(x)
            div0 = _hutchinson(score, process, x, t0, g2[i], generator, n_probes)
            div1 = _hutchinson(score, process, x_new, t1, g2[i + 1], generator, n_probes)
            logq = logq + ((t0 - t1) * (div0 + div1) / 2).to(logq.dtype)  # trapezoid, matching Heun's order
            x = x_new
        else:
            x = heun(x)
        if callback is not None:
            callback(StepInfo(step=i, t=t1, state=x))
    if divergence == "none":
        logq = torch.full_like(logq, math.nan)
    return process.finalize(x), logq


def log_likelihood(score: Score, process: AbstractProcess[S], x0: S, *, steps: int, divergence: str = "hutchinson",
                   generator: torch.Generator | None = None, n_probes: int = 1, t_min: float = 1e-3,
                   chunk: int = 64) -> Tensor:
    r"""``log q(x_0)`` of given data under the PF-ODE model: integrate forward to ``T`` (Heun, trapezoidal
    divergence), ``log q(x_0) = log p_T(x_T) + int_0^T div v dt``. ``divergence="exact"`` takes the trace by ``n``
    JVPs per evaluation (small volumes); ``"hutchinson"`` estimates it with ``n_probes`` Rademacher probes (noisy:
    for the effective action ``S_eff = -log q`` and its R^2 against S, never for accept/reject)."""
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"log_likelihood needs divergence 'exact' or 'hutchinson'; got {divergence!r}")
    if divergence == "hutchinson" and generator is None:
        raise ValueError("divergence='hutchinson' needs a generator for its probes")
    ts, g2, _ = _schedule(process, steps, t_min, "uniform")
    ts, g2 = ts[::-1], g2[::-1]

    def div(y: typing.Any, t: float, g: float) -> Tensor:
        if divergence == "exact":
            return _exact_divergence(score, process, y, t, g, chunk)
        assert generator is not None
        return _hutchinson(score, process, y, t, g, generator, n_probes)

    x = x0
    acc = torch.zeros(process.batch(x0), dtype=process._real_like(x0).dtype, device=process._real_like(x0).device)
    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        x_new = _heun(score, process, x, t0, t1, g2[i], g2[i + 1])
        acc = acc + (t1 - t0) * (div(x, t0, g2[i]) + div(x_new, t1, g2[i + 1])) / 2
        x = x_new
    return process.prior_logp(x).to(acc.dtype) + acc


__all__ = ["Corrector", "DIVERGENCES", "StepInfo", "log_likelihood", "probability_flow", "reverse_path",
           "reverse_sde", "step_logdet"]

r"""Diffusion-model samplers for real fields: reverse SDE, probability-flow ODE with likelihood,
and the three exact DM-based Monte Carlo routes of PHYSICS.md ("What exactness costs").

All samplers are functions over a score ``score(x, t) -> s`` with ``x`` ``[B, *L]`` and ``t`` ``[B]``
(any callable: a network, or an exact score in tests), and a forward SDE object. Nothing here
synchronises the device per step.
"""

import math
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .._actions.base import AbstractScalarAction
from .._fields.scalar import Field
from .._geometry.lattice import Lattice
from .._sde.base import AbstractSDE, expand_like


ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""Anything that maps ``(x [B, *L], t [B])`` to the score ``grad_x log p_t(x)``, shaped like x."""


@attrs.frozen
class StepInfo:
    """Passed to callbacks after each integration step."""

    step: int
    t: float
    x: Tensor


def _flat_sq(x: Tensor) -> Tensor:
    return (x * x).reshape(x.shape[0], -1).sum(1)


def _grid(sde: AbstractSDE, steps: int, like: Tensor, t_min: float) -> Tensor:
    if steps < 1:
        raise ValueError(f"need steps >= 1; got {steps}")
    if not 0.0 <= t_min < sde.T:
        raise ValueError(f"need 0 <= t_min < T = {sde.T}; got t_min = {t_min}")
    return sde.time_grid(steps, like=like, t_min=t_min)


# ---- reverse SDE and its path weight ------------------------------------------------------------

def _reverse_step(score: ScoreFn, sde: AbstractSDE, x: Tensor, t_hi: Tensor, t_lo: Tensor,
                  generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One Euler-Maruyama step backwards: returns (x_new, the unit noise z, the variance v = g^2 dt, dt)."""
    batch = x.shape[0]
    tb = t_hi.expand(batch)
    dt = t_hi - t_lo
    g = sde.diffusion(tb)
    v = expand_like(g * g, x) * dt
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x - sde.drift(x, tb) * dt + v * score(x, tb) + v.sqrt() * noise, noise, v, dt


def _reverse_path(score: ScoreFn, sde: AbstractSDE, x: Tensor, *, steps: int, generator: torch.Generator,
                  t_min: float, callback: Callable[[StepInfo], None] | None) -> tuple[Tensor, Tensor]:
    r"""Euler-Maruyama backwards from ``x`` at T, returning ``x_0`` and the path log-ratio
    ``sum_k [log N(x_k; x_{k-1} + f(x_{k-1}) dt, v_k) - log N(x_{k-1}; x_k + mu_k, v_k)]`` (forward
    kernels over reverse proposals, same variances ``v_k = g(t_k)^2 dt``: normalisations cancel)."""
    ts = _grid(sde, steps, x, t_min)
    batch = x.shape[0]
    log_ratio = torch.zeros(batch, dtype=x.dtype, device=x.device)
    for i in range(steps):
        t_lo = ts[i + 1]
        x_new, noise, v, dt = _reverse_step(score, sde, x, ts[i], t_lo, generator)
        # forward kernel x_k | x_{k-1}: mean x_{k-1} + f(x_{k-1}, t_{k-1}) dt, variance v_k
        fwd_mean = x_new + sde.drift(x_new, t_lo.expand(batch)) * dt
        log_ratio = log_ratio - _flat_sq((x - fwd_mean) / v.sqrt()) / 2 + _flat_sq(noise) / 2
        x = x_new
        if callback is not None:
            callback(StepInfo(step=i, t=float(t_lo), x=x))
    return x, log_ratio


def reverse_sde(score: ScoreFn, sde: AbstractSDE, initial: Tensor, *, steps: int, generator: torch.Generator,
                t_min: float = 0.0, callback: Callable[[StepInfo], None] | None = None) -> Tensor:
    r"""Generate by the reverse SDE (Euler-Maruyama), from ``initial`` at t = T down to ``t_min``:
    ``x <- x - (f - g^2 s) dt + g sqrt(dt) z`` (PHYSICS.md; for VE, f = 0)."""
    x, _ = _reverse_path(score, sde, initial, steps=steps, generator=generator, t_min=t_min, callback=callback)
    return x


def predictor_corrector(score: ScoreFn, sde: AbstractSDE, initial: Tensor, *, steps: int, generator: torch.Generator,
                        snr: float = 0.16, n_corrector: int = 1, t_min: float = 0.0,
                        callback: Callable[[StepInfo], None] | None = None) -> Tensor:
    """Reverse-SDE predictor with Langevin corrector steps at each time (Song et al., ICLR 2021, Alg. 4/5);
    the corrector step size follows the signal-to-noise rule ``eps = 2 (snr |z| / |s|)^2``."""
    ts = _grid(sde, steps, initial, t_min)
    x, batch = initial, initial.shape[0]
    for i in range(steps):
        t_hi, t_lo = ts[i], ts[i + 1]
        tb = t_hi.expand(batch)
        for _ in range(n_corrector):
            s = score(x, tb)
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            eps = 2 * (snr * _flat_sq(z).sqrt() / _flat_sq(s).sqrt().clamp_min(1e-30)) ** 2
            e = expand_like(eps, x)
            x = x + e * s + (2 * e).sqrt() * z
        x = _reverse_step(score, sde, x, t_hi, t_lo, generator)[0]
        if callback is not None:
            callback(StepInfo(step=i, t=float(t_lo), x=x))
    return x


# ---- probability-flow ODE with likelihood -----------------------------------------------------------

DIVERGENCES = ("exact", "hutchinson", "none")


def _velocity(score: ScoreFn, sde: AbstractSDE, x: Tensor, t: Tensor) -> Tensor:
    g = sde.diffusion(t)
    return sde.drift(x, t) - 0.5 * expand_like(g * g, x) * score(x, t)


def _heun(score: ScoreFn, sde: AbstractSDE, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
    """One Heun (explicit trapezoidal, 2nd order) step of dx/dt = v(x, t) from t0 to t1 (either direction)."""
    batch = x.shape[0]
    h = t1 - t0
    k1 = _velocity(score, sde, x, t0.expand(batch))
    k2 = _velocity(score, sde, x + h * k1, t1.expand(batch))
    return x + h * (k1 + k2) / 2


def _jacobian(fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """``(fn(x), J)`` with ``J[b] = d fn(x)_b / d x_b`` as ``[B, n, n]``, by forward-mode JVPs along every site.

    Samples are independent (no batch statistics in the score), so one JVP with the tangent e_i on
    every sample gives column i of every sample's Jacobian.
    """
    batch, n = x.shape[0], x[0].numel()
    x = x.contiguous()  # forward-mode AD cannot attach tangents to expanded (self-overlapping) views
    eye = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, 1, *x.shape[1:]).expand(n, *x.shape)
    cols = []
    y = None
    for start in range(0, n, chunk):
        tangents = eye[start:start + chunk]
        out, jv = torch.func.vmap(lambda v: torch.func.jvp(fn, (x,), (v,)), in_dims=0, out_dims=0)(tangents)
        y = out[0] if y is None else y
        cols.append(jv.reshape(jv.shape[0], batch, n))
    return y, torch.cat(cols, 0).permute(1, 2, 0)


def _step_logdet(step: Callable[[Tensor], Tensor], x: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """``(step(x), log|det d step(x)_b / d x_b|)`` per sample: exact for the discrete map."""
    y, jac = _jacobian(step, x, chunk)
    return y, torch.linalg.slogdet(jac)[1]


def _exact_divergence(score: ScoreFn, sde: AbstractSDE, x: Tensor, t: Tensor, chunk: int) -> Tensor:
    """div v(x, t) = tr(dv/dx) per sample, exactly (V JVPs)."""
    batch = x.shape[0]
    _, jac = _jacobian(lambda y: _velocity(score, sde, y, t.expand(batch)), x, chunk)
    return jac.diagonal(dim1=-2, dim2=-1).sum(-1)


def probability_flow(score: ScoreFn, sde: AbstractSDE, initial: Tensor, *, steps: int,
                     divergence: str = "exact", generator: torch.Generator | None = None, n_probes: int = 1,
                     t_min: float = 1e-3, chunk: int = 64) -> tuple[Tensor, Tensor]:
    r"""Generate by the probability-flow ODE ``dx/dt = f - g^2 s / 2`` (Heun steps, T -> t_min) and
    return ``(x_0, log q(x_0))``.

    ``divergence="exact"``: the log-determinant of the Jacobian of each discrete Heun step, by forward-mode
    JVPs along every site (V JVPs per step): ``log q`` is then the exact density of the discrete flow map's
    output, deterministic, and may enter an accept/reject step. ``"hutchinson"``: the
    Skilling-Hutchinson trace estimator with ``n_probes`` Rademacher probes (noisy: diagnostics only,
    never in an accept/reject step). ``"none"``: no likelihood (returns NaN).
    Heun evaluates the score at the end of each step, so ``t_min > 0`` for the VE SDE (s(0) = 0).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}; got {divergence!r}")
    ts = _grid(sde, steps, initial, t_min)
    x = initial
    logq = sde.prior_logp(x)
    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        if divergence == "exact":
            x, logdet = _step_logdet(lambda y: _heun(score, sde, y, t0, t1), x, chunk)
            logq = logq - logdet
        elif divergence == "hutchinson":
            if generator is None:
                raise ValueError("divergence='hutchinson' needs a generator for its probes")
            x_new = _heun(score, sde, x, t0, t1)
            div0 = _hutchinson(score, sde, x, t0, generator, n_probes)
            div1 = _hutchinson(score, sde, x_new, t1, generator, n_probes)
            logq = logq + (t0 - t1) * (div0 + div1) / 2  # trapezoid, matching Heun's order
            x = x_new
        else:
            x = _heun(score, sde, x, t0, t1)
    if divergence == "none":
        logq = torch.full_like(logq, math.nan)
    return x, logq


def _hutchinson(score: ScoreFn, sde: AbstractSDE, x: Tensor, t: Tensor, generator: torch.Generator,
                n_probes: int) -> Tensor:
    """Skilling-Hutchinson estimate of div v(x, t) = E[eps^T (dv/dx) eps], Rademacher eps, per sample."""
    batch = x.shape[0]
    x = x.contiguous()  # forward-mode AD cannot attach tangents to expanded (self-overlapping) views
    total = torch.zeros(batch, dtype=x.dtype, device=x.device)
    for _ in range(n_probes):
        eps = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
        _, jv = torch.func.jvp(lambda y: _velocity(score, sde, y, t.expand(batch)), (x,), (eps,))
        total = total + (eps * jv).reshape(batch, -1).sum(1)
    return total / n_probes


def log_likelihood(score: ScoreFn, sde: AbstractSDE, x0: Tensor, *, steps: int, divergence: str = "hutchinson",
                   generator: torch.Generator | None = None, n_probes: int = 1, t_min: float = 1e-3,
                   chunk: int = 64) -> Tensor:
    r"""``log q(x_0)`` of given data under the PF-ODE model: integrate forward to T (Heun, trapezoidal
    divergence), ``log q(x_0) = log p_T(x_T) + int_0^T div v dt``. ``divergence="exact"`` takes the trace
    by V JVPs per evaluation (small volumes); ``"hutchinson"`` estimates it with ``n_probes`` Rademacher
    probes (noisy: for the effective action ``S_eff = -log q`` and its R^2 against S, never for accept/reject)."""
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"log_likelihood needs divergence 'exact' or 'hutchinson'; got {divergence!r}")
    if divergence == "hutchinson" and generator is None:
        raise ValueError("divergence='hutchinson' needs a generator for its probes")

    def div(y: Tensor, t: Tensor) -> Tensor:
        if divergence == "exact":
            return _exact_divergence(score, sde, y, t, chunk)
        assert generator is not None
        return _hutchinson(score, sde, y, t, generator, n_probes)

    ts = torch.flip(_grid(sde, steps, x0, t_min), dims=(0,))
    x = x0
    acc = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        x_new = _heun(score, sde, x, t0, t1)
        acc = acc + (t1 - t0) * (div(x, t0) + div(x_new, t1)) / 2  # trapezoid, matching Heun's order
        x = x_new
    return sde.prior_logp(x) + acc


# ---- exact DM-based Monte Carlo ----------------------------------------------------------------------

@attrs.frozen
class MCResult:
    """A DM-based Monte Carlo run: ``samples [n, B, *L]`` (B chains), ``acceptance [n, B]`` (indicator per
    step), the final chain state and its log importance weight ``log_w = log target - log proposal``."""

    samples: Tensor
    acceptance: Tensor
    state: Tensor
    log_w: Tensor


def _imh(propose: Callable[[], tuple[Tensor, Tensor]], *, n: int, generator: torch.Generator) -> MCResult:
    """Independence Metropolis over B chains: accept a fresh proposal with min(1, w'/w) (log space)."""
    x, log_w = propose()
    samples, accepts = [], []
    for _ in range(n):
        x_new, log_w_new = propose()
        u = torch.rand(log_w.shape, generator=generator, dtype=log_w.dtype, device=log_w.device)
        accept = torch.log(u) < torch.nan_to_num(log_w_new - log_w, nan=-math.inf)
        x = torch.where(expand_like(accept, x), x_new, x)
        log_w = torch.where(accept, log_w_new, log_w)
        samples.append(x)
        accepts.append(accept.to(x.dtype))
    return MCResult(samples=torch.stack(samples), acceptance=torch.stack(accepts), state=x, log_w=log_w)


def path_imh(score: ScoreFn, sde: AbstractSDE, action: AbstractScalarAction, lattice: Lattice, *, chains: int,
             n: int, steps: int, generator: torch.Generator, dtype: torch.dtype = torch.float64,
             device: torch.device | str | None = None, t_min: float = 0.0) -> MCResult:
    r"""Exact route 2: path-space independence Metropolis. The proposal is the whole discretised reverse path
    ``x_K .. x_0`` with density ``prior(x_K) prod_k N(x_{k-1}; x_k + mu_k, v_k)``; the extended target is
    ``exp(-S(x_0)) prod_k N(x_k; x_{k-1} + f dt, v_k)``, whose x_0-marginal is exactly ``exp(-S)/Z``. Any
    volume, one generation per proposal, no divergence."""

    def propose() -> tuple[Tensor, Tensor]:
        x_T = sde.prior_sample((chains, *lattice.shape), generator=generator, dtype=dtype, device=device)
        x0, log_ratio = _reverse_path(score, sde, x_T, steps=steps, generator=generator, t_min=t_min, callback=None)
        log_w = -action(Field(x0, lattice)) + log_ratio - sde.prior_logp(x_T)
        return x0, log_w

    return _imh(propose, n=n, generator=generator)


def marginal_imh(score: ScoreFn, sde: AbstractSDE, action: AbstractScalarAction, lattice: Lattice, *, chains: int,
                 n: int, steps: int, generator: torch.Generator, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None, chunk: int = 64, t_min: float = 1e-3) -> MCResult:
    r"""Exact route 1: marginal independence Metropolis with PF-ODE proposals from fresh prior noise and their
    deterministic ``log q`` (log-determinants of the discrete flow map, ``divergence="exact"``). Costs V
    JVPs per ODE step: small volumes."""

    def propose() -> tuple[Tensor, Tensor]:
        x_T = sde.prior_sample((chains, *lattice.shape), generator=generator, dtype=dtype, device=device)
        x0, logq = probability_flow(score, sde, x_T, steps=steps, divergence="exact", chunk=chunk, t_min=t_min)
        return x0, -action(Field(x0, lattice)) - logq

    return _imh(propose, n=n, generator=generator)


def maala(score: ScoreFn, sde: AbstractSDE, action: AbstractScalarAction, lattice: Lattice, *, chains: int,
          n: int, steps: int, t_langevin: float, step_size: float, generator: torch.Generator,
          dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
          drift_scale: float = 1.0) -> MCResult:
    r"""Exact route 3: Metropolis-adjusted annealed Langevin. Denoise with the reverse SDE from T to
    ``t_langevin``, then Markov steps with proposals ``x' = x + e r s(x, t_L) + sqrt(2e) eta``
    (``e = step_size``, ``r = drift_scale``) accepted with the exact target ``exp(-S)`` and the Gaussian
    forward/reverse proposal densities. Exact whatever the score (the drift only shapes the proposal)."""
    x_T = sde.prior_sample((chains, *lattice.shape), generator=generator, dtype=dtype, device=device)
    x = reverse_sde(score, sde, x_T, steps=steps, generator=generator, t_min=t_langevin)
    tl = torch.full((chains,), t_langevin, dtype=dtype, device=device)
    e = step_size

    def log_target_and_drift(y: Tensor) -> tuple[Tensor, Tensor]:
        return -action(Field(y, lattice)), y + e * drift_scale * score(y, tl)

    log_p, mean = log_target_and_drift(x)
    samples, accepts = [], []
    for _ in range(n):
        eta = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_new = mean + math.sqrt(2 * e) * eta
        log_p_new, mean_new = log_target_and_drift(x_new)
        log_fwd = -_flat_sq(eta) / 2                                   # log q(x'|x), up to the shared constant
        log_bwd = -_flat_sq(x - mean_new) / (4 * e)                    # log q(x|x')
        log_alpha = log_p_new - log_p + log_bwd - log_fwd
        u = torch.rand(log_alpha.shape, generator=generator, dtype=x.dtype, device=x.device)
        accept = torch.log(u) < torch.nan_to_num(log_alpha, nan=-math.inf)
        a = expand_like(accept, x)
        x, mean = torch.where(a, x_new, x), torch.where(a, mean_new, mean)
        log_p = torch.where(accept, log_p_new, log_p)
        samples.append(x)
        accepts.append(accept.to(x.dtype))
    return MCResult(samples=torch.stack(samples), acceptance=torch.stack(accepts), state=x, log_w=log_p)

r"""The group-preserving variance-expanding diffusion on link fields, its denoising score-matching
loss, and the reverse-time integrators on the group (PHYSICS.md, Diffusion models, gauge part).

Forward process on every link: ``U_t = exp(i s(t) sum_a T^a eta^a) U_0``, ``eta ~ N(0, 1)``, with
``s(t)^2 = (sigma^{2t} - 1) / (2 ln sigma)`` of the wrapped :class:`VESDE`. Generation runs the
reverse SDE ``U <- exp(i sum_a T^a (g^2 s^a dt + g sqrt(dt) z^a)) U`` or the probability-flow ODE
``U <- exp(i sum_a T^a g^2 s^a dt / 2) U`` from ``t = T`` down to ``t_min``, where ``s^a`` is the score
(the left Lie derivative ``nabla^a log p_t``) and ``g(t) = sigma^t``.

The reverse SDE is the time reversal of Brownian motion on the group run with clock
``tau = s(t)^2``, whose transition density is the heat kernel ``K_tau`` (:mod:`.heat_kernel`). For U(1)
the one-shot Gaussian perturbation above has exactly that law (a wrapped Gaussian); for SU(N) it agrees
with it only to leading order in ``s``: the regression target ``-eta / s`` of the Gaussian loss then
differs from the exact score ``nabla log K_{s^2}`` by a relative ``O(s^2)`` (measured: see
``GroupVE.dsm_loss``), and ``target="heat_kernel"`` trains on exact samples and exact scores instead.
"""

import math
import typing
from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from .._fields.links import AlgebraField, LinkField
from .._geometry.lattice import Lattice
from .._groups.base import AbstractGroup, real_dtype
from .._types import Time
from .base import expand_like
from .heat_kernel import heat_kernel
from .ve import VESDE

GroupScore = Callable[[LinkField, Tensor], AlgebraField]
"""Anything mapping ``(U, t [B])`` to the score ``i sum_a s^a T^a`` per link (a network, or an exact score)."""

TARGETS = ("gaussian", "heat_kernel")
SPACINGS = ("uniform", "geometric")


@typing.final
@attrs.frozen(kw_only=True)
class GroupVE:
    r"""Variance-expanding diffusion on the group, link by link: ``U_t = exp(i s(t) sum_a T^a eta^a) U_0``.

    ``s(t)`` and ``g(t) = sigma^t`` come from the wrapped :class:`VESDE` (``sigma = 25``, ``T = 1``:
    ``s(1)^2 = 96.9``, where the kernel is Haar up to ``exp(-C_F s^2 / 2)`` in ``<Re tr U> / N``: ``1e-21``
    for U(1), ``2e-16`` for SU(2), ``1e-28`` for SU(3)), so :meth:`prior` draws Haar-random links.

    >>> from lgdiff import SU, Lattice, LinkField
    >>> process = GroupVE()
    >>> U0 = LinkField.identity(SU(2), Lattice(shape=(4, 4)), batch=2)
    >>> Ut, eta = process.perturb(U0, torch.tensor([0.1, 0.5]), generator=torch.Generator().manual_seed(0))
    >>> tuple(eta.shape)
    (2, 2, 4, 4, 3)
    """

    sde: VESDE = attrs.field(factory=VESDE, validator=attrs.validators.instance_of(VESDE))

    @property
    def T(self) -> float:
        """Final time."""
        return self.sde.T

    @property
    def name(self) -> str:
        return "group_ve"

    def settings(self) -> dict[str, float | int | str]:
        return {"process": self.name, **self.sde.settings()}

    def std(self, t: Tensor) -> Tensor:
        """``s(t)``: the algebra-coordinate standard deviation of the kernel at time t."""
        return self.sde.std(t)

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sigma^t``."""
        return self.sde.diffusion(t)

    # ---- forward process ------------------------------------------------------------------------

    def perturb(self, U0: LinkField, t: Time, *, generator: torch.Generator) -> tuple[LinkField, Tensor]:
        """``U_t = exp(i s(t) sum_a T^a eta^a) U_0`` with ``eta [B, D, *L, n_generators]`` standard normal.

        Returns ``(U_t, eta)``.
        """
        _check_batch("perturb", U0, t)
        group = U0.group
        shape = (*U0.data.shape[:-2], group.n_generators)
        eta = torch.randn(shape, generator=generator, dtype=real_dtype(U0.data.dtype), device=U0.data.device)
        s = expand_like(self.std(t.to(eta.dtype)), eta)
        return U0.with_data(group.exp(group.from_coords(s * eta)) @ U0.data), eta

    def perturb_exact(self, U0: LinkField, t: Time, *, generator: torch.Generator) -> LinkField:
        """``U_t = V U_0`` with ``V`` drawn from the heat kernel ``K_{s(t)^2}``: the exact marginal of Brownian
        motion on the group (U(1), SU(2); for U(1) the same law as :meth:`perturb`)."""
        _check_batch("perturb_exact", U0, t)
        kernel = heat_kernel(U0.group)
        if not kernel.can_sample:
            raise ValueError(
                f"perturb_exact needs exact heat-kernel samples, available for U(1) and SU(2); got {U0.group}. "
                f"Use perturb (the Gaussian kernel) for this group."
            )
        s = self.std(t.to(real_dtype(U0.data.dtype)))
        v = kernel.sample(s * s, tuple(U0.data.shape[1:-2]), generator=generator, dtype=U0.data.dtype)
        return U0.with_data(v @ U0.data)

    def kernel_score(self, U: LinkField, U0: LinkField, t: Time) -> AlgebraField:
        """Exact score of the Brownian transition density: ``nabla^a_U log K_{s(t)^2}(U U_0^dagger)`` per link."""
        _check_batch("kernel_score", U, t)
        if U0.group != U.group or U0.lattice != U.lattice or U0.batch != U.batch:
            raise ValueError(f"kernel_score: U0 {U0!r} does not match U {U!r}; both must have the same group, "
                             f"lattice and batch")
        s = self.std(t.to(real_dtype(U.data.dtype)))
        v = U.data @ U0.data.mH
        tau = expand_like(s * s, v[..., 0, 0])
        return AlgebraField(heat_kernel(U.group).score(v, tau), U.group, U.lattice)

    def prior(self, group: AbstractGroup, lattice: Lattice, *, batch: int, generator: torch.Generator,
              dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None) -> LinkField:
        """Haar-random links: the t = T marginal up to ``exp(-C_F s(T)^2 / 2)`` (class docstring)."""
        return LinkField.random(group, lattice, batch=batch, generator=generator, dtype=dtype, device=device)

    # ---- training -------------------------------------------------------------------------------

    def dsm_loss(self, score_fn: GroupScore, U0: LinkField, *, generator: torch.Generator, t_min: float = 1e-3,
                 target: str = "gaussian", shard: slice | None = None) -> Tensor:
        r"""Denoising score matching, the ``s^2``-weighted form (PHYSICS.md), averaged over the batch and per link:

        ``L = mean_b (1 / (D V)) sum_{x, mu, a} (s(t) score^a(U_t, t) - s(t) target^a)^2``, ``t ~ U(t_min, T)``
        per configuration, ``score^a = group.to_coords(score_fn(U_t, t))``.

        ``target="gaussian"``: ``U_t`` from :meth:`perturb` and ``s target^a = -eta^a`` (PHYSICS.md).
        ``target="heat_kernel"`` (U(1), SU(2)): ``U_t`` from :meth:`perturb_exact` and the exact
        ``target^a = nabla^a log K_{s^2}(U_t U_0^dagger)``, whose minimiser is the score of the Brownian
        marginals that the reverse SDE assumes (for U(1) the two targets share their minimiser; the
        heat-kernel one has less variance). For SU(2) the Gaussian minimiser ``E[-eta / s | U_t]`` differs
        from the exact score by a relative RMS of ``s^2 / 12`` at small ``s`` (measured over ``U_t ~ K_{s^2}``:
        0.8% at s = 0.3, 10% at s = 1, 30% at s = 1.5, 77% at s = 2; beyond, the exact score vanishes and
        the Gaussian one does not). Integrated over the sigma = 25 schedule, a network that learns the
        Gaussian minimiser exactly has a path KL (Girsanov bound) of up to ``0.47`` nats per link.

        ``shard`` (data-parallel training): ``t`` and the noise are drawn for the whole batch ``U0`` and the loss
        is the mean over the configurations ``U0[shard]`` only (as `lgdiff._train.dsm.dsm_loss` does).
        """
        if target not in TARGETS:
            raise ValueError(f"dsm_loss target must be one of {TARGETS}; got {target!r}")
        if not 0.0 < t_min < self.T:
            raise ValueError(f"dsm_loss needs 0 < t_min < T = {self.T}; got t_min = {t_min}")
        rdt = real_dtype(U0.data.dtype)
        t = t_min + (self.T - t_min) * torch.rand((U0.batch,), generator=generator, dtype=rdt, device=U0.data.device)
        s = self.std(t)
        if target == "gaussian":
            Ut, eta = self.perturb(U0, t, generator=generator)
            goal = -eta
        else:
            Ut = self.perturb_exact(U0, t, generator=generator)
            kernel = self.kernel_score(Ut, U0, t).coords()
            goal = expand_like(s, kernel) * kernel
        if shard is not None:
            Ut, t, s, goal = Ut[shard], t[shard], s[shard], goal[shard]
        out = _checked_score(score_fn, Ut, t)
        resid = expand_like(s, goal) * U0.group.to_coords(out.data) - goal
        n_links = U0.lattice.dim * U0.lattice.volume
        return (resid * resid).reshape(Ut.batch, -1).sum(1).mean() / n_links

    # ---- time grids -----------------------------------------------------------------------------

    def time_points(self, steps: int, *, t_min: float, spacing: str = "uniform") -> tuple[float, ...]:
        """``steps + 1`` host-side times from T down to ``t_min``: ``"uniform"`` in t (the papers), or
        ``"geometric"`` in ``s(t)^2`` (constant ratio of kernel variances: steps concentrate near t_min,
        where the uniform grid's relative step ``g^2 dt / s^2`` blows up)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"need an integer steps >= 1; got {steps!r}")
        if not 0.0 < t_min < self.T:
            raise ValueError(f"need 0 < t_min < T = {self.T}; got t_min = {t_min}. The score diverges at t = 0.")
        if spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}; got {spacing!r}")
        if spacing == "uniform":
            out = [self.T + (t_min - self.T) * k / steps for k in range(steps + 1)]
        else:
            two_log = 2 * math.log(self.sde.sigma)
            v_hi = math.expm1(two_log * self.T) / two_log
            v_lo = math.expm1(two_log * t_min) / two_log
            out = [math.log1p(two_log * v_hi * (v_lo / v_hi) ** (k / steps)) / two_log for k in range(steps + 1)]
        out[0], out[-1] = self.T, t_min
        return tuple(out)


def _check_batch(what: str, U: LinkField, t: Tensor) -> None:
    if t.ndim != 1 or t.shape[0] != U.batch:
        raise ValueError(f"{what}: t must be one time per configuration, shape [{U.batch}]; got {tuple(t.shape)}")


def _checked_score(score_fn: GroupScore, U: LinkField, t: Tensor) -> AlgebraField:
    out = score_fn(U, t)
    if not isinstance(out, AlgebraField):
        raise TypeError(f"the score must return an AlgebraField (i sum_a s^a T^a per link); got {type(out).__name__}")
    if out.group != U.group or out.lattice != U.lattice or out.data.shape != U.data.shape:
        raise ValueError(f"the score returned {out!r} for links {U!r}: group, lattice and batch must match")
    if out.data.dtype != U.data.dtype:
        raise ValueError(f"the score returned {out.data.dtype} for links of {U.data.dtype}; return the links' dtype "
                         f"(a silent promotion would change the precision of the whole trajectory)")
    return out


# ---- reverse-time integrators -----------------------------------------------------------------------

@attrs.frozen
class GroupStepInfo:
    """Passed to callbacks after each integration step: the step index, the time reached (host float) and the links."""

    step: int
    t: float
    links: LinkField


def _schedule(process: GroupVE, steps: int, t_min: float, spacing: str) -> tuple[list[float], list[float]]:
    """Host-side times and ``g(t)^2`` on them, computed once (no device synchronisation in the loop)."""
    ts = process.time_points(steps, t_min=t_min, spacing=spacing)
    g = process.diffusion(torch.tensor(ts, dtype=torch.float64))
    return list(ts), (g * g).tolist()


def _check_initial(process: object, initial: object) -> None:
    if not isinstance(process, GroupVE):
        raise TypeError(f"the process must be a GroupVE; got {type(process).__name__}")
    if not isinstance(initial, LinkField):
        raise TypeError(f"the initial state must be a LinkField (e.g. process.prior(...)); "
                        f"got {type(initial).__name__}")


def _times(t: float, U: Tensor) -> Tensor:
    return torch.full((U.shape[0],), t, dtype=real_dtype(U.dtype), device=U.device)


def reverse_sde_group(score: GroupScore, process: GroupVE, initial: LinkField, *, steps: int,
                      generator: torch.Generator, callback: Callable[[GroupStepInfo], None] | None = None,
                      t_min: float = 1e-3, spacing: str = "uniform", corrector_steps: int = 0,
                      corrector_scale: float = 1.0) -> LinkField:
    r"""Exponential Euler-Maruyama on the group from ``t = T`` down to ``t_min`` (PHYSICS.md):

    ``U <- exp(i sum_a T^a (g(t)^2 s^a(U, t) dt + g(t) sqrt(dt) z^a)) U``, ``z ~ N(0, 1)``.

    Every update is a group exponential, so links stay on the group to rounding; they are
    re-unitarised once at the end. First order in ``dt``: on the uniform grid with 500 steps and
    ``t_min = 1e-3`` the last steps have ``g^2 dt / s^2 ~ 1`` and the final kernel variance comes out
    2.5x too large; ``spacing="geometric"`` (:meth:`GroupVE.time_points`) brings that to 2%.

    **Corrector** (annealed Langevin, Song et al. ICLR 2021 Alg. 4 on the group; the seed talk's "ensure
    equilibrium at each noise scale"): after each predictor step to ``t'``, ``corrector_steps`` unadjusted
    Langevin steps at fixed ``t'``, ``U <- exp(i sum_a T^a (e s^a(U, t') + sqrt(2 e) z^a)) U`` with
    ``e = corrector_scale s(t')^2``. They pull the links towards the model's ``p_t'`` at every level, which the
    predictor alone does not do when the score is imperfect. Unadjusted: on a Gaussian level of variance
    ``s^2`` their fixed point has variance ``s^2 / (1 - corrector_scale / 2)``; stable for
    ``0 < corrector_scale < 2``. Each corrector step costs one score evaluation.

    **Arguments:** ``score(U, t) -> AlgebraField``; ``initial``: links at ``t = T`` (``process.prior(...)``);
    ``callback`` receives a :class:`GroupStepInfo` after every predictor step (and its correctors).

    **Returns:** the links at ``t_min``.
    """
    _check_initial(process, initial)
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be an int >= 0; got {corrector_steps!r}")
    if not 0.0 < corrector_scale < 2.0:
        raise ValueError(f"corrector_scale must be in (0, 2) (the Langevin step e = corrector_scale s(t)^2 is "
                         f"unstable beyond 2); got {corrector_scale!r}")
    ts, g2 = _schedule(process, steps, t_min, spacing)
    s2 = (process.std(torch.tensor(ts, dtype=torch.float64)) ** 2).tolist()
    group = initial.group
    u = initial.data
    noise_shape = (*u.shape[:-2], group.n_generators)
    rdt = real_dtype(u.dtype)
    for i in range(steps):
        dt = ts[i] - ts[i + 1]
        s = _checked_score(score, initial.with_data(u), _times(ts[i], u))
        z = torch.randn(noise_shape, generator=generator, dtype=rdt, device=u.device)
        x = (g2[i] * dt) * s.data + math.sqrt(g2[i] * dt) * group.from_coords(z)
        u = group.exp(x) @ u
        eps = corrector_scale * s2[i + 1]
        for _ in range(corrector_steps):
            s = _checked_score(score, initial.with_data(u), _times(ts[i + 1], u))
            z = torch.randn(noise_shape, generator=generator, dtype=rdt, device=u.device)
            u = group.exp(eps * s.data + math.sqrt(2 * eps) * group.from_coords(z)) @ u
        if callback is not None:
            callback(GroupStepInfo(step=i, t=ts[i + 1], links=initial.with_data(u)))
    return initial.with_data(group.reunitarize(u))


PF_METHODS = ("euler", "heun")


def probability_flow_group(score: GroupScore, process: GroupVE, initial: LinkField, *, steps: int,
                           generator: torch.Generator | None = None,
                           callback: Callable[[GroupStepInfo], None] | None = None, t_min: float = 1e-3,
                           method: str = "heun", spacing: str = "uniform") -> LinkField:
    r"""The probability-flow ODE ``dU/dt = -(1/2) g(t)^2 S(U, t) U`` (``S = i sum_a s^a T^a``) from ``T`` to
    ``t_min``, by Lie-Euler ``U <- exp(h F(U, t)) U`` with ``F = g^2 S / 2``, ``h = t_k - t_{k+1}``, or by the
    second-order Runge-Kutta-Munthe-Kaas Heun scheme (``method="heun"``, default)

    ``U~ = exp(h F(U, t_k)) U``, ``U' = exp(h (F(U, t_k) + F(U~, t_{k+1})) / 2) U``

    (order 2 needs no ``dexp^{-1}`` commutator correction). ``generator`` is accepted for the uniform
    sampler signature and unused: the flow is deterministic.
    """
    del generator
    _check_initial(process, initial)
    if method not in PF_METHODS:
        raise ValueError(f"probability_flow_group method must be one of {PF_METHODS}; got {method!r}")
    ts, g2 = _schedule(process, steps, t_min, spacing)
    group = initial.group
    u = initial.data

    def velocity(v: Tensor, k: int) -> Tensor:
        return (0.5 * g2[k]) * _checked_score(score, initial.with_data(v), _times(ts[k], v)).data

    for i in range(steps):
        h = ts[i] - ts[i + 1]
        f0 = velocity(u, i)
        if method == "euler":
            u = group.exp(h * f0) @ u
        else:
            u_tilde = group.exp(h * f0) @ u
            u = group.exp((h / 2) * (f0 + velocity(u_tilde, i + 1))) @ u
        if callback is not None:
            callback(GroupStepInfo(step=i, t=ts[i + 1], links=initial.with_data(u)))
    return initial.with_data(group.reunitarize(u))


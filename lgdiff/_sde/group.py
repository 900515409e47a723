r"""The group-preserving variance-expanding diffusion on link fields and its denoising score-matching loss
(docs/conventions.md, Diffusion models, gauge part). The reverse-time integrators are written once for every
process in :mod:`lgdiff._samplers.reverse`.

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

import typing

import attrs
import torch
from torch import Tensor

from .._fields.links import AlgebraField, LinkField
from .._geometry.lattice import Lattice
from .._groups.base import AbstractGroup, real_dtype
from .._types import Time
from .base import AbstractProcess, expand_like
from .heat_kernel import heat_kernel
from .score import Score
from .ve import VESDE

TARGETS = ("gaussian", "heat_kernel")


@typing.final
@attrs.frozen(kw_only=True)
class GroupVE(AbstractProcess[LinkField]):
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

    def drift(self, x: LinkField, t: Tensor) -> Tensor:
        """No drift: ``f = 0``."""
        return torch.zeros(self.tangent_shape(x), dtype=torch.float64, device=x.data.device)

    def time_points(self, steps: int, *, t_min: float, spacing: str = "uniform",
                    t_max: float | None = None) -> tuple[float, ...]:
        """The wrapped :class:`VESDE`'s grid (``"uniform"`` or ``"geometric"``) from ``t_max`` (default T);
        ``t_min > 0`` (the score diverges at ``t = 0``)."""
        if not 0.0 < t_min < self.T:
            raise ValueError(f"need 0 < t_min < T = {self.T}; got t_min = {t_min}. The score diverges at t = 0.")
        return self.sde.time_points(steps, t_min=t_min, spacing=spacing, t_max=t_max)

    # ---- the group as a state space ----------------------------------------------------------------
    # Tangent vectors are float64 algebra coordinates ``[B, D, *L, n_generators]`` (omega in ``i omega.T``):
    # chains keep their links in the precision they were given and every increment is summed in float64.

    def tangent_shape(self, x: LinkField) -> tuple[int, ...]:
        return (*x.data.shape[:-2], x.group.n_generators)

    def retract(self, x: LinkField, v: Tensor) -> LinkField:
        """``exp(i sum_a v^a T^a) U``: a left translation, which preserves Haar measure."""
        group = x.group
        return x.with_data(group.exp(group.from_coords(v.to(real_dtype(x.data.dtype)))) @ x.data)

    def local_coords(self, y: LinkField, base: LinkField) -> Tensor:
        """Coordinates of the anti-Hermitian part of ``y base^dagger``: the increment ``v`` with
        ``y = exp(i v.T) base`` to first order (exact for the linear part)."""
        group = y.group
        return group.to_coords(group.project_algebra(y.data @ base.data.mH)).to(torch.float64)

    def score_coords(self, score: Score, x: LinkField, t: Tensor) -> Tensor:
        return x.group.to_coords(_checked_score(score, x, t).data).to(torch.float64)

    def _real_like(self, x: LinkField) -> Tensor:
        return torch.empty(0, dtype=torch.float64, device=x.data.device)

    def times(self, t: float, x: LinkField) -> Tensor:
        """``[B]`` copies of ``t`` in the real dtype of the links (what a network of the links' precision takes)."""
        return torch.full((x.batch,), t, dtype=real_dtype(x.data.dtype), device=x.data.device)

    def prior_like(self, x: LinkField, *, generator: torch.Generator) -> LinkField:
        """Haar-random links shaped like ``x``."""
        return self.prior(x.group, x.lattice, batch=x.batch, generator=generator, dtype=x.data.dtype,
                          device=x.data.device)

    def prior_logp(self, x: LinkField) -> Tensor:
        """0: the prior is normalised Haar measure (the reference measure of link densities)."""
        return torch.zeros(x.batch, dtype=torch.float64, device=x.data.device)

    def finalize(self, x: LinkField) -> LinkField:
        """Re-unitarise once at the end of a generation (the exponential updates keep links on the group to rounding)."""
        return x.with_data(x.group.reunitarize(x.data))

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

    def dsm_loss(self, score: Score, x0: LinkField, *, generator: torch.Generator, t_min: float = 1e-3,
                 shard: slice | None = None, target: str = "gaussian") -> Tensor:
        r"""Denoising score matching, the ``s^2``-weighted form (docs/conventions.md), averaged over the batch and per link:

        ``L = mean_b (1 / (D V)) sum_{x, mu, a} (s(t) score^a(U_t, t) - s(t) target^a)^2``, ``t ~ U(t_min, T)``
        per configuration, ``score^a = group.to_coords(score_fn(U_t, t))``.

        ``target="gaussian"``: ``U_t`` from :meth:`perturb` and ``s target^a = -eta^a`` (docs/conventions.md).
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
        U0 = x0
        like = torch.empty(0, dtype=real_dtype(U0.data.dtype), device=U0.data.device)
        t = self._draw_times(U0.batch, like, t_min, generator)
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
        out = _checked_score(score, Ut, t)
        resid = expand_like(s, goal) * U0.group.to_coords(out.data) - goal
        n_links = U0.lattice.dim * U0.lattice.volume
        return (resid * resid).reshape(Ut.batch, -1).sum(1).mean() / n_links


def _check_batch(what: str, U: LinkField, t: Tensor) -> None:
    if t.ndim != 1 or t.shape[0] != U.batch:
        raise ValueError(f"{what}: t must be one time per configuration, shape [{U.batch}]; got {tuple(t.shape)}")


def _checked_score(score: Score, U: LinkField, t: Tensor) -> AlgebraField:
    out = score(U, t)
    if not isinstance(out, AlgebraField):
        raise TypeError(f"the score must return an AlgebraField (i sum_a s^a T^a per link); got {type(out).__name__}")
    if out.group != U.group or out.lattice != U.lattice or out.data.shape != U.data.shape:
        raise ValueError(f"the score returned {out!r} for links {U!r}: group, lattice and batch must match")
    if out.data.dtype != U.data.dtype:
        raise ValueError(f"the score returned {out.data.dtype} for links of {U.data.dtype}; return the links' dtype "
                         f"(a silent promotion would change the precision of the whole trajectory)")
    return out

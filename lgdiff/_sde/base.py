r"""Forward diffusion processes as objects, one ABC for every field type (docs/conventions.md, Diffusion models).

A process is a forward SDE on a state space: real fields (``Tensor [B, *L]``, :class:`AbstractSDE`) or link fields
on a group (:class:`lgdiff.LinkField`, :class:`lgdiff.GroupVE`). :class:`AbstractProcess` holds everything the
samplers (:mod:`lgdiff._samplers.reverse`, :mod:`lgdiff._samplers.independence`) and the training loss need, so each
sampler is written once for both:

- the schedule: ``T``, ``std(t)`` (kernel width ``s(t)``), ``diffusion(t)`` (``g(t)``), ``drift`` (``f``), the time
  grid (:meth:`AbstractProcess.time_points`);
- the geometry of the state space in real tangent coordinates: :meth:`~AbstractProcess.retract`
  (``x + v``, or ``exp(i v.T) U``), :meth:`~AbstractProcess.local_coords` (its first-order inverse), the score in
  those coordinates (:meth:`~AbstractProcess.score_coords`);
- the prior at ``t = T`` (:meth:`~AbstractProcess.prior_like`, :meth:`~AbstractProcess.prior_logp`);
- the forward kernel (:meth:`~AbstractProcess.perturb`) and the denoising score-matching loss
  (:meth:`~AbstractProcess.dsm_loss`).

Densities of states are with respect to Lebesgue measure in the coordinates for real fields and Haar measure for
links (normalised to 1); the coordinates of a tangent vector are the same in both cases, so a Gaussian density of an
increment is the same formula for both.
"""

import abc
import math
import typing

import torch
from torch import Tensor

from .._provenance import AbstractRecorded
from .score import Score

S = typing.TypeVar("S")
"""The state type of a process: ``Tensor`` for real fields, ``LinkField`` for links."""

SPACINGS = ("uniform", "geometric")


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """Append exactly ``x.ndim - t.ndim`` singleton axes to ``t`` (per-configuration scalars over fields of any D)."""
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def flat_sq(v: Tensor) -> Tensor:
    """``|v|^2`` per configuration, ``[B]`` (sum over everything but the batch axis)."""
    return (v * v).reshape(v.shape[0], -1).sum(1)


class AbstractProcess(AbstractRecorded, typing.Generic[S]):
    r"""A forward diffusion ``dx = f(x, t) dt + g(t) dW`` on ``t in [0, T]`` over states of type ``S``, with the
    state-space geometry its samplers need (module docstring).

    Tangent vectors are real tensors of the shape :meth:`tangent_shape` gives; a reverse-SDE step moves a state by
    ``retract(x, v)``. Adding a process is one file that implements these methods.
    """

    # ---- the schedule -----------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def T(self) -> float:
        """Final time."""

    @abc.abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """g(t), ``[B]``."""

    @abc.abstractmethod
    def std(self, t: Tensor) -> Tensor:
        """s(t), the width of the forward kernel, ``[B]``."""

    @abc.abstractmethod
    def drift(self, x: S, t: Tensor) -> Tensor:
        """f(x, t) as a tangent vector at ``x`` (``t`` is ``[B]``)."""

    def time_points(self, steps: int, *, t_min: float, spacing: str = "uniform",
                    t_max: float | None = None) -> tuple[float, ...]:
        """``steps + 1`` host-side times from ``t_max`` (default ``T``) down to ``t_min``. ``"uniform"`` in t;
        processes with a closed-form inverse of ``s(t)^2`` add ``"geometric"`` (constant ratio of kernel variances).
        A ``t_max < T`` is the grid of a partial path (:class:`lgdiff.DiffusionResample`)."""
        top = self._check_grid(steps, t_min, t_max)
        if spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}; got {spacing!r}")
        if spacing != "uniform":
            raise ValueError(f"the {self.name} process has no {spacing!r} time grid; use spacing='uniform'")
        out = [top + (t_min - top) * k / steps for k in range(steps + 1)]
        out[0], out[-1] = top, t_min
        return tuple(out)

    def _check_grid(self, steps: int, t_min: float, t_max: float | None) -> float:
        """Validates ``steps`` and ``0 <= t_min < t_max <= T``; returns the top of the grid."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"need an integer steps >= 1; got {steps!r}")
        top = self.T if t_max is None else t_max
        if not 0.0 <= t_min < self.T:
            raise ValueError(f"need 0 <= t_min < T = {self.T}; got t_min = {t_min}")
        if not t_min < top <= self.T:
            raise ValueError(f"need t_min < t_max <= T = {self.T}; got t_min = {t_min}, t_max = {top}")
        return float(top)

    # ---- the state space --------------------------------------------------------------------------

    @abc.abstractmethod
    def tangent_shape(self, x: S) -> tuple[int, ...]:
        """Shape of a tangent vector at ``x`` (batch first)."""

    @abc.abstractmethod
    def retract(self, x: S, v: Tensor) -> S:
        """Move ``x`` along the tangent vector ``v``: ``x + v`` or ``exp(i v.T) U``."""

    @abc.abstractmethod
    def local_coords(self, y: S, base: S) -> Tensor:
        """Tangent coordinates of ``y`` near ``base``, exact to first order: ``retract(base, local_coords(y, base)) = y
        + O(|y - base|^2)``, and linear in ``y`` at ``y = base`` (for Jacobians)."""

    @abc.abstractmethod
    def score_coords(self, score: Score, x: S, t: Tensor) -> Tensor:
        """The score ``score(x, t)`` as a tangent vector (checked: shape, type, dtype)."""

    @abc.abstractmethod
    def prior_like(self, x: S, *, generator: torch.Generator) -> S:
        """A fresh sample of the prior at ``t = T`` with the shape, dtype and device of ``x``."""

    @abc.abstractmethod
    def prior_logp(self, x: S) -> Tensor:
        """Log density of the prior, ``[B]`` (Lebesgue in coordinates, or normalised Haar measure)."""

    def finalize(self, x: S) -> S:
        """Called on the output of a generation (e.g. re-unitarisation of links). Identity by default."""
        return x

    def batch(self, x: S) -> int:
        """Number of configurations in ``x``."""
        return self.tangent_shape(x)[0]

    def noise(self, x: S, *, generator: torch.Generator) -> Tensor:
        """A standard-normal tangent vector at ``x`` (float64 for links, the field's dtype for real fields)."""
        like = self._real_like(x)
        return torch.randn(self.tangent_shape(x), generator=generator, dtype=like.dtype, device=like.device)

    def times(self, t: float, x: S) -> Tensor:
        """``[B]`` copies of the host time ``t`` in the real dtype of ``x``."""
        like = self._real_like(x)
        return torch.full((self.batch(x),), t, dtype=like.dtype, device=like.device)

    @abc.abstractmethod
    def _real_like(self, x: S) -> Tensor:
        """A real tensor with the dtype and device that tangent vectors at ``x`` take."""

    # ---- the forward kernel and the loss ------------------------------------------------------------

    @abc.abstractmethod
    def perturb(self, x0: S, t: Tensor, *, generator: torch.Generator) -> tuple[S, Tensor]:
        """Sample ``x_t`` from the forward kernel. Returns ``(x_t, eps)`` with ``eps`` the standard-normal tangent
        noise that made it."""

    @abc.abstractmethod
    def dsm_loss(self, score: Score, x0: S, *, generator: torch.Generator, t_min: float = 1e-3,
                 shard: slice | None = None) -> Tensor:
        r"""The ``s(t)^2``-weighted denoising score-matching loss, ``t ~ U(t_min, T)`` per configuration.

        ``shard`` (data-parallel training): ``t`` and the noise are drawn for the whole batch ``x0`` and the loss is
        the mean over ``x0[shard]`` only, so every rank's slice sees the noise of a single-process run."""

    def _draw_times(self, batch: int, like: Tensor, t_min: float, generator: torch.Generator) -> Tensor:
        if not 0.0 < t_min < self.T:
            raise ValueError(f"dsm_loss needs 0 < t_min < T = {self.T}; got t_min = {t_min}")
        return t_min + (self.T - t_min) * torch.rand(batch, generator=generator, dtype=like.dtype, device=like.device)


class AbstractSDE(AbstractProcess[Tensor]):
    r"""A linear forward SDE ``dx = -h(t) x dt + g(t) dW`` on real fields ``[B, *L]`` whose marginals are
    Gaussian: ``x_t = a(t) x_0 + s(t) eps`` (the perturbation kernel). The state space is flat: tangent vectors are
    fields, ``retract(x, v) = x + v``."""

    @abc.abstractmethod
    def mean_coeff(self, t: Tensor) -> Tensor:
        """a(t) in ``x_t = a(t) x_0 + s(t) eps``, ``[B]``."""

    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior at t = T (per component)."""

    # ---- flat geometry ----------------------------------------------------------------------------

    def tangent_shape(self, x: Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def retract(self, x: Tensor, v: Tensor) -> Tensor:
        return x + v

    def local_coords(self, y: Tensor, base: Tensor) -> Tensor:
        return y - base

    def score_coords(self, score: Score, x: Tensor, t: Tensor) -> Tensor:
        out = score(x, t)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the score must return a tensor shaped like the field {tuple(x.shape)}; got {got}")
        return out

    def _real_like(self, x: Tensor) -> Tensor:
        return x

    def prior_like(self, x: Tensor, *, generator: torch.Generator) -> Tensor:
        return self.prior_sample(tuple(x.shape), generator=generator, dtype=x.dtype, device=x.device)

    def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> Tensor:
        return self.prior_std() * torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def prior_logp(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std^2) summed over everything but the batch axis, ``[B]``."""
        s2 = self.prior_std() ** 2
        n = x[0].numel()
        return -0.5 * flat_sq(x) / s2 - 0.5 * n * math.log(2 * math.pi * s2)

    # ---- forward kernel and loss --------------------------------------------------------------------

    def perturb(self, x0: Tensor, t: Tensor, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Sample ``x_t`` from the kernel. Returns ``(x_t, eps)``."""
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return expand_like(self.mean_coeff(t), x0) * x0 + expand_like(self.std(t), x0) * eps, eps

    def dsm_loss(self, score: Score, x0: Tensor, *, generator: torch.Generator, t_min: float = 1e-3,
                 shard: slice | None = None) -> Tensor:
        r"""``mean_b mean_x (s(t) s_theta(x_t, t) + eps)^2`` with ``t ~ U(t_min, T)`` per configuration (the
        sigma^2-weighted DSM loss, per site so that it is O(1) at any volume)."""
        t = self._draw_times(x0.shape[0], x0, t_min, generator)
        xt, eps = self.perturb(x0, t, generator=generator)
        if shard is not None:
            t, xt, eps = t[shard], xt[shard], eps[shard]
        residual = expand_like(self.std(t), eps) * score(xt, t) + eps
        return (residual * residual).reshape(eps.shape[0], -1).mean(1).mean()

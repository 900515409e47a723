"""The variance-expanding SDE of the source papers."""

import math
import typing

import attrs
import torch
from torch import Tensor

from .base import AbstractSDE


@typing.final
@attrs.frozen(kw_only=True)
class VESDE(AbstractSDE):
    r"""Variance expanding: ``dx = sigma^t dW``, no drift, ``t in [0, T]``.

    Kernel ``x_t = x_0 + s(t) eps`` with ``s(t)^2 = int_0^t sigma^{2 tau} d tau = (sigma^{2t} - 1) / (2 ln sigma)``
    (docs/conventions.md; Wang, Aarts, Zhou, JHEP 05 (2024) 060, eq. (3.9)). ``sigma = 25``, ``T = 1`` in the papers.
    """

    sigma: float = attrs.field(default=25.0, converter=float)
    t_final: float = attrs.field(default=1.0, converter=float)

    def __attrs_post_init__(self) -> None:
        if not self.sigma > 1:
            raise ValueError(f"VESDE needs sigma > 1 (g(t) = sigma^t must grow); got {self.sigma}")
        if not self.t_final > 0:
            raise ValueError(f"VESDE needs T > 0; got {self.t_final}")

    @property
    def T(self) -> float:
        return self.t_final

    @property
    def name(self) -> str:
        return "ve"

    def settings(self) -> dict[str, float | int | str]:
        return {"sigma": self.sigma, "T": self.t_final}

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.sigma**t

    def mean_coeff(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def std(self, t: Tensor) -> Tensor:
        return torch.sqrt((self.sigma ** (2 * t) - 1) / (2 * math.log(self.sigma)))

    def prior_std(self) -> float:
        return math.sqrt((self.sigma ** (2 * self.t_final) - 1) / (2 * math.log(self.sigma)))

    def time_points(self, steps: int, *, t_min: float, spacing: str = "uniform",
                    t_max: float | None = None) -> tuple[float, ...]:
        """``steps + 1`` host-side times from ``t_max`` (default T) down to ``t_min``: ``"uniform"`` in t (the papers),
        or ``"geometric"`` in ``s(t)^2`` (constant ratio of kernel variances: steps concentrate near ``t_min``, where
        the uniform grid's relative step ``g^2 dt / s^2`` blows up; needs ``t_min > 0``)."""
        if spacing != "geometric":
            return AbstractSDE.time_points(self, steps, t_min=t_min, spacing=spacing, t_max=t_max)
        top = self._check_grid(steps, t_min, t_max)
        if t_min <= 0.0:
            raise ValueError(f"the geometric grid needs t_min > 0 (s(0) = 0); got t_min = {t_min}")
        two_log = 2 * math.log(self.sigma)
        v_hi = math.expm1(two_log * top) / two_log
        v_lo = math.expm1(two_log * t_min) / two_log
        out = [math.log1p(two_log * v_hi * (v_lo / v_hi) ** (k / steps)) / two_log for k in range(steps + 1)]
        out[0], out[-1] = top, t_min
        return tuple(out)

"""The variance-preserving (DDPM) SDE."""

import math
import typing

import attrs
import torch
from torch import Tensor

from .base import AbstractSDE, expand_like


@typing.final
@attrs.frozen(kw_only=True)
class VPSDE(AbstractSDE):
    r"""Variance preserving: ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW``, ``beta(t) = b_min + t (b_max - b_min)``.

    Kernel ``x_t = a(t) x_0 + s(t) eps`` with ``a(t) = exp(-B(t)/2)``, ``s(t)^2 = 1 - a(t)^2``,
    ``B(t) = b_min t + (b_max - b_min) t^2 / 2`` (Song et al., ICLR 2021, the DDPM limit).
    """

    beta_min: float = attrs.field(default=0.1, converter=float)
    beta_max: float = attrs.field(default=20.0, converter=float)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.beta_min < self.beta_max:
            raise ValueError(f"VPSDE needs 0 < beta_min < beta_max; got {self.beta_min}, {self.beta_max}")

    @property
    def T(self) -> float:
        return 1.0

    @property
    def name(self) -> str:
        return "vp"

    def settings(self) -> dict[str, float | int | str]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}

    def _beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _big_b(self, t: Tensor) -> Tensor:
        return self.beta_min * t + (self.beta_max - self.beta_min) * t * t / 2

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -0.5 * expand_like(self._beta(t), x) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self._beta(t))

    def mean_coeff(self, t: Tensor) -> Tensor:
        return torch.exp(-0.5 * self._big_b(t))

    def std(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(-self._big_b(t)))

    def prior_std(self) -> float:
        return math.sqrt(-math.expm1(-(self.beta_min + (self.beta_max - self.beta_min) / 2)))

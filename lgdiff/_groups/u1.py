"""U(1) as 1x1 unitary matrices: the same interface as SU(N)."""

import math
import typing

import attrs
import torch
from torch import Tensor

from .base import AbstractGroup, complex_dtype, real_dtype


@typing.final
@attrs.frozen
class U1(AbstractGroup):
    """U(1) = {e^{i theta}}, as 1x1 complex matrices; single generator T = 1 (norm 1)."""

    @property
    def n(self) -> int:
        return 1

    @property
    def n_generators(self) -> int:
        return 1

    @property
    def norm(self) -> float:
        return 1.0

    def _generators(self) -> Tensor:
        return torch.ones((1, 1, 1), dtype=torch.complex128)

    def exp(self, x: Tensor) -> Tensor:
        """``exp(i theta) = cos theta + i sin theta`` for ``x = i theta``."""
        return torch.polar(torch.ones_like(x.imag), x.imag)

    def log(self, u: Tensor) -> Tensor:
        return 1j * torch.angle(u).to(u.dtype)

    def project_algebra(self, m: Tensor) -> Tensor:
        return 1j * m.imag.to(complex_dtype(m.dtype)) if m.is_complex() else torch.zeros_like(m, dtype=complex_dtype(m.dtype))

    def reunitarize(self, u: Tensor) -> Tensor:
        return u / u.abs()

    def random(self, shape: tuple[int, ...], *, generator: torch.Generator, dtype: torch.dtype = torch.complex128,
               device: torch.device | str | None = None) -> Tensor:
        theta = (2 * torch.rand((*shape, 1, 1), generator=generator, dtype=real_dtype(dtype), device=device) - 1) * math.pi
        return torch.polar(torch.ones_like(theta), theta)

    def membership_error(self, u: Tensor) -> Tensor:
        return (u.abs() - 1).abs()[..., 0, 0]

    def __str__(self) -> str:
        return "U(1)"

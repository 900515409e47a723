"""Real scalar fields phi(x), batch first."""

import typing

import attrs
import torch

from .._geometry.lattice import Lattice
from .._types import ScalarData


@typing.final
@attrs.frozen
class Field:
    """A real scalar field ``[B, *L]`` on a lattice: an ensemble of B configurations.

    >>> f = Field.zeros(Lattice(shape=(4, 4)), batch=2)
    >>> f
    Field(L=(4, 4), B=2, torch.float64, cpu)
    """

    data: ScalarData
    lattice: Lattice

    def __attrs_post_init__(self) -> None:  # jaxtyping does not see attrs fields: check here
        if not isinstance(self.data, torch.Tensor):
            raise TypeError(f"Field.data must be a torch.Tensor, got {type(self.data).__name__}")
        if not self.data.is_floating_point():
            raise ValueError(
                f"Field.data must be a real floating tensor [B, {', '.join(map(str, self.lattice.shape))}]; "
                f"got dtype {self.data.dtype}. Convert with data.to(torch.float64)."
            )
        if self.data.ndim < 1 or tuple(self.data.shape[1:]) != self.lattice.shape:
            want = ", ".join(["B", *map(str, self.lattice.shape)])
            raise ValueError(
                f"Field.data must have shape [{want}] for lattice {self.lattice.shape}; got {tuple(self.data.shape)}. "
                f"The batch axis comes first: use data[None] for a single configuration."
            )

    @classmethod
    def zeros(cls, lattice: Lattice, *, batch: int, dtype: torch.dtype = torch.float64,
              device: torch.device | str | None = None) -> "Field":
        return cls(torch.zeros((batch, *lattice.shape), dtype=dtype, device=device), lattice)

    @classmethod
    def randn(cls, lattice: Lattice, *, batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float64,
              device: torch.device | str | None = None) -> "Field":
        """Unit Gaussian white noise."""
        return cls(torch.randn((batch, *lattice.shape), generator=generator, dtype=dtype, device=device), lattice)

    @property
    def batch(self) -> int:
        return self.data.shape[0]

    def with_data(self, data: ScalarData) -> "Field":
        """The same lattice with new values."""
        return Field(data, self.lattice)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Field":
        return Field(self.data.to(device=device, dtype=dtype), self.lattice)

    def __getitem__(self, index: int | slice | torch.Tensor) -> "Field":
        """Select configurations along the batch axis (keeps the batch axis)."""
        data = self.data[index]
        if data.ndim == self.data.ndim - 1:
            data = data[None]
        return Field(data, self.lattice)

    def __repr__(self) -> str:
        return f"Field(L={self.lattice.shape}, B={self.batch}, {self.data.dtype}, {self.data.device})"

"""Periodic hypercubic lattices and the one shift primitive."""

import itertools
import math
import typing

import attrs
import torch
from torch import Tensor

MAX_DIM = 4


def shift(f: Tensor, mu: int, *, site_axis: int, steps: int = 1) -> Tensor:
    """Return g with g[..., x, ...] = f[..., x + steps * mu_hat, ...] (periodic).

    ``site_axis`` is the axis of the first lattice direction in ``f`` (1 for a scalar
    field ``[B, *L]``, 2 for a link component stack ``[B, D, *L, N, N]``).
    Rolling by ``-steps`` fetches the neighbour in the positive direction.
    """
    return torch.roll(f, shifts=-steps, dims=site_axis + mu)


def _check_shape(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise TypeError(f"Lattice shape must be a tuple of ints, e.g. Lattice(shape=(8, 8)); got {value!r}")
    if len(value) > MAX_DIM:
        raise ValueError(
            f"Lattice dimension must be 0..{MAX_DIM}; got shape {value} with D={len(value)}. "
            f"lgdiff supports D = 0 (toy model) up to D = 4."
        )
    if any(s < 1 for s in value):
        raise ValueError(f"Lattice sizes must be positive; got shape {value}")


@typing.final
@attrs.frozen
class Lattice:
    """Periodic hypercubic lattice with sizes ``(L_0, ..., L_{D-1})``, D = 0..4.

    D = 0 is the one-variable toy model (a single site).

    >>> lat = Lattice(shape=(4, 6))
    >>> lat.dim, lat.volume, lat.planes
    (2, 24, ((0, 1),))
    """

    shape: tuple[int, ...] = attrs.field(converter=lambda s: tuple(s) if isinstance(s, list) else s, validator=_check_shape)

    @classmethod
    def hypercube(cls, L: int, dim: int) -> "Lattice":
        """``Lattice(shape=(L,) * dim)``."""
        return cls(shape=(L,) * dim)

    @property
    def dim(self) -> int:
        """Number of directions D."""
        return len(self.shape)

    @property
    def volume(self) -> int:
        """Number of sites V."""
        return math.prod(self.shape)

    @property
    def directions(self) -> range:
        """The directions mu = 0..D-1."""
        return range(self.dim)

    @property
    def planes(self) -> tuple[tuple[int, int], ...]:
        """The oriented plaquette planes (mu, nu) with mu < nu."""
        return tuple(itertools.combinations(range(self.dim), 2))

    @property
    def site_dims(self) -> tuple[int, ...]:
        """Axes of the sites in a batch-first scalar field ``[B, *L]``."""
        return tuple(range(1, 1 + self.dim))

    def momenta(self, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """Lattice momenta ``p_mu = 2 pi n_mu / L_mu`` as ``[D, *L]``, FFT ordering (torch.fft)."""
        axes = [2 * math.pi * torch.fft.fftfreq(L, d=1.0, dtype=dtype, device=device) for L in self.shape]
        if not axes:
            return torch.zeros((0,), dtype=dtype, device=device)
        return torch.stack(torch.meshgrid(*axes, indexing="ij"))

    def momentum_squared(self, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """``p_hat^2 = sum_mu 4 sin^2(p_mu / 2)`` as ``[*L]``: the lattice Laplacian's eigenvalues."""
        if self.dim == 0:
            return torch.zeros((), dtype=dtype, device=device)
        p = self.momenta(dtype=dtype, device=device)
        return (4 * torch.sin(p / 2) ** 2).sum(0)

    def __str__(self) -> str:
        return "x".join(map(str, self.shape)) if self.shape else "point"

"""Group-valued link fields U_mu(x), algebra-valued fields and gauge transformations."""

import typing

import attrs
import torch

from .._geometry.lattice import Lattice, shift
from .._groups.base import AbstractGroup
from .._types import Algebra, GaugeMatrices, Links
from ._validate import check_matrix_field, check_members


@typing.final
@attrs.frozen
class GaugeTransform:
    """A gauge transformation Omega(x), ``[B, *L, N, N]``, one group element per site."""

    data: GaugeMatrices
    group: AbstractGroup
    lattice: Lattice

    def __attrs_post_init__(self) -> None:
        check_matrix_field("GaugeTransform", self.data, self.group, self.lattice, with_dim=False)
        check_members("GaugeTransform", self.data, self.group)

    @classmethod
    def random(cls, group: AbstractGroup, lattice: Lattice, *, batch: int, generator: torch.Generator,
               dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None) -> "GaugeTransform":
        """Haar-random Omega(x) at every site."""
        return cls(group.random((batch, *lattice.shape), generator=generator, dtype=dtype, device=device), group, lattice)

    def __repr__(self) -> str:
        return f"GaugeTransform({self.group}, L={self.lattice.shape}, B={self.data.shape[0]}, {self.data.dtype})"


@typing.final
@attrs.frozen
class AlgebraField:
    """Algebra-valued field per link, ``[B, D, *L, N, N]`` anti-Hermitian (traceless for SU(N)).

    Momenta, forces and scores live here; only these can be exponentiated.
    """

    data: Algebra
    group: AbstractGroup
    lattice: Lattice

    def __attrs_post_init__(self) -> None:
        check_matrix_field("AlgebraField", self.data, self.group, self.lattice, with_dim=True)

    @classmethod
    def from_coords(cls, omega: torch.Tensor, group: AbstractGroup, lattice: Lattice) -> "AlgebraField":
        """From real coordinates ``[B, D, *L, n_generators]``."""
        return cls(group.from_coords(omega), group, lattice)

    @classmethod
    def randn(cls, group: AbstractGroup, lattice: Lattice, *, batch: int, generator: torch.Generator,
              dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None) -> "AlgebraField":
        """Gaussian ``i sum_a eta^a T^a`` per link, eta ~ N(0, 1): HMC momenta, diffusion noise."""
        x = group.random_algebra((batch, lattice.dim, *lattice.shape), generator=generator, dtype=dtype, device=device)
        return cls(x, group, lattice)

    def coords(self) -> torch.Tensor:
        """Real coordinates ``omega^a``, ``[B, D, *L, n_generators]``."""
        return self.group.to_coords(self.data)

    def exp(self) -> "LinkField":
        """The link field exp(X) (a group element per link)."""
        return LinkField(self.group.exp(self.data), self.group, self.lattice)

    def norm2(self) -> torch.Tensor:
        """``sum_{x, mu, a} (omega^a)^2`` per configuration, ``[B]``."""
        return self.group.lie_inner(self.data, self.data).flatten(1).sum(1)

    def __mul__(self, c: float | torch.Tensor) -> "AlgebraField":
        return AlgebraField(self.data * c, self.group, self.lattice)

    __rmul__ = __mul__

    def __add__(self, other: "AlgebraField") -> "AlgebraField":
        return AlgebraField(self.data + other.data, self.group, self.lattice)

    def __sub__(self, other: "AlgebraField") -> "AlgebraField":
        return AlgebraField(self.data - other.data, self.group, self.lattice)

    def __repr__(self) -> str:
        return f"AlgebraField({self.group}, L={self.lattice.shape}, B={self.data.shape[0]}, {self.data.dtype})"


@typing.final
@attrs.frozen
class LinkField:
    """Gauge links U_mu(x), ``[B, D, *L, N, N]`` complex: an ensemble of B configurations.

    >>> from lgdiff import SU
    >>> U = LinkField.identity(SU(3), Lattice(shape=(4, 4)), batch=2)
    >>> U
    LinkField(SU(3), L=(4, 4), B=2, torch.complex128, cpu)
    """

    data: Links
    group: AbstractGroup
    lattice: Lattice

    def __attrs_post_init__(self) -> None:  # jaxtyping's hook skips attrs __init__: check here
        check_matrix_field("LinkField", self.data, self.group, self.lattice, with_dim=True)
        if self.lattice.dim < 1:
            raise ValueError("LinkField needs a lattice with D >= 1 directions; got D = 0")
        check_members("LinkField", self.data, self.group)

    @classmethod
    def identity(cls, group: AbstractGroup, lattice: Lattice, *, batch: int, dtype: torch.dtype = torch.complex128,
                 device: torch.device | str | None = None) -> "LinkField":
        """The cold start U = 1."""
        return cls(group.identity((batch, lattice.dim, *lattice.shape), dtype=dtype, device=device), group, lattice)

    @classmethod
    def random(cls, group: AbstractGroup, lattice: Lattice, *, batch: int, generator: torch.Generator,
               dtype: torch.dtype = torch.complex128, device: torch.device | str | None = None) -> "LinkField":
        """The hot start: Haar-random links."""
        u = group.random((batch, lattice.dim, *lattice.shape), generator=generator, dtype=dtype, device=device)
        return cls(u, group, lattice)

    @property
    def batch(self) -> int:
        return self.data.shape[0]

    def with_data(self, data: Links) -> "LinkField":
        return LinkField(data, self.group, self.lattice)

    def left_multiply(self, g: "LinkField") -> "LinkField":
        """``U_mu(x) -> g_mu(x) U_mu(x)`` link by link."""
        return self.with_data(g.data @ self.data)

    def evolve(self, x: AlgebraField, eps: float | torch.Tensor = 1.0) -> "LinkField":
        """The left group update ``U' = exp(eps X) U`` (docs/conventions.md, Groups)."""
        return self.with_data(self.group.exp(eps * x.data) @ self.data)

    def gauge_transform(self, omega: GaugeTransform) -> "LinkField":
        """``U_mu(x) -> Omega(x) U_mu(x) Omega(x + mu)^dagger``."""
        if omega.group != self.group or omega.lattice != self.lattice:
            raise ValueError(
                f"gauge transform of {omega.group} on L={omega.lattice.shape} does not fit links of {self.group} "
                f"on L={self.lattice.shape}"
            )
        w = omega.data
        out = torch.stack(
            [w @ self.data[:, mu] @ shift(w, mu, site_axis=1).mH for mu in self.lattice.directions], dim=1
        )
        return self.with_data(out)

    def reunitarize(self) -> "LinkField":
        return self.with_data(self.group.reunitarize(self.data))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "LinkField":
        return self.with_data(self.data.to(device=device, dtype=dtype))

    def __getitem__(self, index: int | slice | torch.Tensor) -> "LinkField":
        data = self.data[index]
        if data.ndim == self.data.ndim - 1:
            data = data[None]
        return self.with_data(data)

    def __repr__(self) -> str:
        return (f"LinkField({self.group}, L={self.lattice.shape}, B={self.batch}, {self.data.dtype}, "
                f"{self.data.device})")

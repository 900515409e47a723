"""Shared constructor checks for matrix-valued fields (attrs classes check themselves)."""

import typing

import torch

from .._checks import checks_enabled
from .._geometry.lattice import Lattice
from .._groups.base import AbstractGroup


@typing.no_type_check  # called on every field construction in hot loops: skip the test-suite hook
def check_matrix_field(cls_name: str, data: object, group: object, lattice: object, *, with_dim: bool) -> None:
    if not isinstance(group, AbstractGroup):
        raise TypeError(f"{cls_name}.group must be a group such as U1() or SU(3); got {group!r}")
    if not isinstance(lattice, Lattice):
        raise TypeError(f"{cls_name}.lattice must be a Lattice; got {lattice!r}")
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"{cls_name}.data must be a torch.Tensor; got {type(data).__name__}")
    n = group.n
    want = ((lattice.dim,) if with_dim else ()) + (*lattice.shape, n, n)
    want_str = ", ".join(["B", *map(str, want)])
    if not data.is_complex():
        raise ValueError(
            f"{cls_name}.data must be complex [{want_str}] for {group} on L={lattice.shape}; got real dtype "
            f"{data.dtype}. U(1) links are 1x1 complex matrices: use torch.polar(ones, theta)[..., None, None]."
        )
    if data.ndim < 1 or tuple(data.shape[1:]) != want:
        raise ValueError(
            f"{cls_name}.data must have shape [{want_str}] for {group} on L={lattice.shape}; got {tuple(data.shape)}"
        )


@typing.no_type_check
def check_members(cls_name: str, data: torch.Tensor, group: AbstractGroup) -> None:
    """Membership check, only when ``lgdiff.checks()`` is on (it synchronises the device)."""
    if not checks_enabled() or data.numel() == 0:
        return
    err = group.membership_error(data.detach())
    atol = 1e-4 if data.dtype == torch.complex64 else 1e-9
    worst = float(err.max())
    if not worst <= atol:
        raise ValueError(
            f"{cls_name}.data is not in {group}: max distance from the group {worst:.2e} > {atol:.0e} "
            f"(unitarity and det = 1). Re-unitarise with {group}.reunitarize(data) or check the input."
        )

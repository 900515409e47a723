"""Named theories (phi4, toy, u1, su2, su3 ...) as validated value objects: what the CLI and the
ensemble files call a theory, and how to build its action and a starting configuration."""

import typing

import attrs
import torch

from .._actions.base import AbstractGaugeAction, AbstractScalarAction
from .._actions.phi4 import Phi4Action, ToyAction
from .._actions.wilson import WilsonAction
from .._fields.links import LinkField
from .._fields.scalar import Field
from .._geometry.lattice import Lattice
from .._groups.base import AbstractGroup
from .._groups.sun import SU
from .._groups.u1 import U1

SCALAR_THEORIES = ("phi4", "toy")
GAUGE_THEORIES = ("u1", "su2", "su3")
THEORIES = SCALAR_THEORIES + GAUGE_THEORIES


def _theory_name(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value not in THEORIES:
        raise ValueError(f"unknown theory {value!r}; expected one of {', '.join(THEORIES)}")


@typing.final
@attrs.frozen(kw_only=True)
class Theory:
    """A theory on a lattice with its couplings: ``phi4`` (kappa, lam), ``toy`` (m2, g; D = 0),
    ``u1``/``su2``/``su3`` (beta)."""

    name: str = attrs.field(validator=_theory_name)
    lattice: Lattice
    params: dict[str, float] = attrs.field(factory=dict, converter=lambda d: {k: float(v) for k, v in d.items()})

    def __attrs_post_init__(self) -> None:
        need = {"phi4": {"kappa", "lam"}, "toy": {"m2", "g"}}.get(self.name, {"beta"})
        got = set(self.params)
        if got != need:
            missing, extra = sorted(need - got), sorted(got - need)
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unexpected {', '.join(extra)}"] if extra else [])
            raise ValueError(f"theory {self.name} takes parameters {sorted(need)}: {'; '.join(parts)}")
        if self.name == "toy" and self.lattice.dim != 0:
            raise ValueError(f"the toy model lives on D = 0 (a single site); got D = {self.lattice.dim}")
        if self.name == "phi4" and self.lattice.dim == 0:
            raise ValueError("phi4 needs D >= 1; for D = 0 use the toy model (theory 'toy', parameters m2 and g)")
        if self.name in GAUGE_THEORIES and self.lattice.dim < 2:
            raise ValueError(f"gauge theory {self.name} needs D >= 2 (plaquettes); got D = {self.lattice.dim}")

    @property
    def is_gauge(self) -> bool:
        return self.name in GAUGE_THEORIES

    @property
    def group(self) -> AbstractGroup | None:
        return {"u1": U1(), "su2": SU(2), "su3": SU(3)}.get(self.name)

    def action(self) -> AbstractScalarAction | AbstractGaugeAction:
        p = self.params
        if self.name == "phi4":
            return Phi4Action(kappa=p["kappa"], lam=p["lam"])
        if self.name == "toy":
            return ToyAction(m2=p["m2"], g=p["g"])
        group = self.group
        assert group is not None  # internal: gauge theories have a group
        return WilsonAction(beta=p["beta"], group=group)

    def initial(self, *, chains: int, generator: torch.Generator, dtype: torch.dtype,
                device: torch.device | str | None = None) -> Field | LinkField:
        """A hot start: unit Gaussian scalars or Haar-random links (thermalise before measuring)."""
        if self.is_gauge:
            group = self.group
            assert group is not None
            cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
            return LinkField.random(group, self.lattice, batch=chains, generator=generator, dtype=cdtype, device=device)
        return Field.randn(self.lattice, batch=chains, generator=generator, dtype=dtype, device=device)

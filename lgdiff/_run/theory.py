"""Named theories (phi4, toy, u1, su2, su3 ...) as validated value objects: what the CLI and the
ensemble files call a theory, with its group and its action, each built once from the name.

The name and ``params`` are the form the CLI and the files use (ensemble metadata ``theory`` and ``params``);
everything downstream asks the object: `Theory.group` (``None`` for scalars), `Theory.action`, `Theory.beta`.
"""

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
from .._groups.names import group_from_name

SCALAR_THEORIES = ("phi4", "toy")
GAUGE_THEORIES = ("u1", "su2", "su3")
THEORIES = SCALAR_THEORIES + GAUGE_THEORIES
COUPLINGS: dict[str, tuple[str, ...]] = {"phi4": ("kappa", "lam"), "toy": ("m2", "g"),
                                         **{name: ("beta",) for name in GAUGE_THEORIES}}
"""theory name -> the names of its couplings (the keys of `Theory.params`)."""


def theory_group(name: str) -> AbstractGroup | None:
    """The gauge group of the theory called ``name`` (by `lgdiff.group_from_name`); ``None`` for a scalar theory.

    >>> theory_group("su3"), theory_group("phi4")
    (SU(N=3), None)
    """
    if name not in THEORIES:
        raise ValueError(f"unknown theory {name!r}; expected one of {', '.join(THEORIES)}")
    return group_from_name(name) if name in GAUGE_THEORIES else None


def _theory_name(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value not in THEORIES:
        raise ValueError(f"unknown theory {value!r}; expected one of {', '.join(THEORIES)}")


_SCALAR_ACTIONS: dict[str, type[Phi4Action] | type[ToyAction]] = {"phi4": Phi4Action, "toy": ToyAction}
"""scalar theory name -> its action class, built from the couplings (`COUPLINGS`) as keywords."""


def _build_action(name: str, params: dict[str, float],
                  group: AbstractGroup | None) -> AbstractScalarAction | AbstractGaugeAction:
    if group is not None:
        return WilsonAction(beta=params["beta"], group=group)
    return _SCALAR_ACTIONS[name](**params)


@typing.final
@attrs.frozen(kw_only=True)
class Theory:
    """A theory on a lattice with its couplings: ``phi4`` (kappa, lam), ``toy`` (m2, g; D = 0),
    ``u1``/``su2``/``su3`` (beta).

    ``group`` (the gauge group, ``None`` for scalar theories) and the action are built once, at construction,
    from ``name`` and ``params``; they are not part of the equality or the repr (both follow from the name).

    >>> th = Theory(name="su2", lattice=Lattice(shape=(4, 4)), params={"beta": 2.0})
    >>> th.group, th.beta, th.action() is th.action()
    (SU(N=2), 2.0, True)
    """

    name: str = attrs.field(validator=_theory_name)
    lattice: Lattice
    params: dict[str, float] = attrs.field(factory=dict, converter=lambda d: {k: float(v) for k, v in d.items()})
    group: AbstractGroup | None = attrs.field(init=False, eq=False, repr=False)
    _action: AbstractScalarAction | AbstractGaugeAction = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        need, got = set(COUPLINGS[self.name]), set(self.params)
        if got != need:
            missing, extra = sorted(need - got), sorted(got - need)
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unexpected {', '.join(extra)}"] if extra else [])
            raise ValueError(f"theory {self.name} takes parameters {sorted(need)}: {'; '.join(parts)}")
        group = theory_group(self.name)
        if self.name == "toy" and self.lattice.dim != 0:
            raise ValueError(f"the toy model lives on D = 0 (a single site); got D = {self.lattice.dim}")
        if self.name == "phi4" and self.lattice.dim == 0:
            raise ValueError("phi4 needs D >= 1; for D = 0 use the toy model (theory 'toy', parameters m2 and g)")
        if group is not None and self.lattice.dim < 2:
            raise ValueError(f"gauge theory {self.name} needs D >= 2 (plaquettes); got D = {self.lattice.dim}")
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "_action", _build_action(self.name, self.params, group))

    @property
    def is_gauge(self) -> bool:
        """Whether the theory has a gauge group (its configurations are links)."""
        return self.group is not None

    @property
    def beta(self) -> float:
        """The gauge coupling of a gauge theory (its Wilson action's ``beta``); a `ValueError` for a scalar theory."""
        if self.group is None:
            raise ValueError(f"theory {self.name} has no gauge coupling beta; its couplings are "
                             f"{', '.join(COUPLINGS[self.name])}")
        return self.params["beta"]

    def action(self) -> AbstractScalarAction | AbstractGaugeAction:
        """The action (`Phi4Action`, `ToyAction`, or `WilsonAction` on `group`): the one object built at
        construction."""
        return self._action

    def initial(self, *, chains: int, generator: torch.Generator, dtype: torch.dtype,
                device: torch.device | str | None = None) -> Field | LinkField:
        """A hot start: unit Gaussian scalars or Haar-random links (thermalise before measuring)."""
        if self.group is not None:
            cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
            return LinkField.random(self.group, self.lattice, batch=chains, generator=generator, dtype=cdtype,
                                    device=device)
        return Field.randn(self.lattice, batch=chains, generator=generator, dtype=dtype, device=device)

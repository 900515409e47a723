"""lgdiff: lattice field theory with diffusion models.

The public API is curated here; modules starting with ``_`` are private.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._actions.base import AbstractGaugeAction as AbstractGaugeAction
from ._actions.base import AbstractScalarAction as AbstractScalarAction
from ._actions.phi4 import Phi4Action as Phi4Action
from ._actions.phi4 import ToyAction as ToyAction
from ._actions.wilson import WilsonAction as WilsonAction
from ._checks import checks as checks
from ._checks import checks_enabled as checks_enabled
from ._fields.links import AlgebraField as AlgebraField
from ._fields.links import GaugeTransform as GaugeTransform
from ._fields.links import LinkField as LinkField
from ._fields.scalar import Field as Field
from ._geometry.lattice import Lattice as Lattice
from ._geometry.lattice import shift as shift
from ._groups.base import AbstractGroup as AbstractGroup
from ._groups.sun import SU as SU
from ._groups.u1 import U1 as U1

try:
    __version__ = _version("lgdiff")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


def group_from_name(name: str) -> AbstractGroup:
    """``"u1" -> U1()``, ``"su2" -> SU(2)``, ``"su3" -> SU(3)``, ``"suN" -> SU(N)``."""
    key = name.strip().lower().replace("(", "").replace(")", "")
    if key == "u1":
        return U1()
    if key.startswith("su") and key[2:].isdigit() and int(key[2:]) >= 2:
        return SU(int(key[2:]))
    raise ValueError(f"unknown gauge group {name!r}; expected 'u1', 'su2', 'su3' or 'suN' with N >= 2")

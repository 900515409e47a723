"""The one parser from a group's name to the group: every string that names a group (a theory name, an ensemble
file's ``group``, a model file's ``config.group``) is read by `group_from_name`."""

from .base import AbstractGroup
from .sun import SU
from .u1 import U1


def group_from_name(name: str) -> AbstractGroup:
    """``"u1" -> U1()``, ``"su2" -> SU(2)``, ``"su3" -> SU(3)``, ``"suN" -> SU(N)``; case, surrounding blanks and
    parentheses are ignored, so ``str(group)`` (``"U(1)"``, ``"SU(3)"``) reads back as the group.

    >>> group_from_name("su3"), group_from_name(str(U1()))
    (SU(N=3), U1())
    """
    key = name.strip().lower().replace("(", "").replace(")", "")
    if key == "u1":
        return U1()
    if key.startswith("su") and key[2:].isdigit() and int(key[2:]) >= 2:
        return SU(int(key[2:]))
    raise ValueError(f"unknown gauge group {name!r}; expected 'u1', 'su2', 'su3' or 'suN' with N >= 2")

"""Value-dependent checks (group membership, finiteness), off by default because they
synchronise the device. Switch them on with ``with lgdiff.checks(): ...``; the test suite
runs with them on."""

import contextlib
import contextvars
from collections.abc import Iterator

_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("lgdiff_checks", default=False)


@contextlib.contextmanager
def checks(enabled: bool = True) -> Iterator[None]:
    """Enable (or disable) value-dependent checks inside the block; restores on exit."""
    token = _CHECKS.set(enabled)
    try:
        yield
    finally:
        _CHECKS.reset(token)


def checks_enabled() -> bool:
    """Whether value-dependent checks are on in this context."""
    return _CHECKS.get()

"""Helpers shared by the command modules (`cli.main`, `cli.compare`, `cli.convert`, `cli.plot`): every command
module imports these, none imports `cli.main` (which registers the commands), so the import graph has no cycle."""

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import torch

from cli import _memory


def _clean(value: Any) -> Any:
    """NaN and infinities become null: the JSON output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input becomes a one-line message and exit code 1, never a traceback; so does an allocation that fails
    (a lattice too large for the memory check's estimate, `cli._memory`)."""
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one, and so is the CPU allocator's failure
        if not isinstance(e, torch.cuda.OutOfMemoryError) and "can't allocate memory" not in str(e):
            raise
        tried = re.search(r"allocate (\d+) bytes|allocate ([0-9.]+ ?[KMGT]i?B)", str(e))
        size = "" if tried is None else f" allocating {tried.group(2) or _memory.format_bytes(int(tried.group(1)))}"
        raise click.ClickException(f"out of memory{size}: use a smaller --L or fewer --chains (files written so far "
                                   f"are intact)") from None

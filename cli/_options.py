"""Option types of the command line that refuse bad values at parsing, naming the option (click's
``Invalid value for '--device': ...``), instead of failing deep in torch with a traceback."""

import math
from typing import Any

import click
import torch


class Device(click.ParamType):
    """A torch device this machine can run lgdiff on: ``cpu``, or ``cuda``/``cuda:N`` where CUDA is available.
    Converts to the normalised device string (``"cuda:0"``), which the provenance records."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        try:
            device = torch.device(text)
        except (RuntimeError, ValueError):
            self.fail(f"{text!r} is not a torch device; use cpu, cuda or cuda:N", param, ctx)
        if device.type == "cpu":
            return text
        if device.type != "cuda":
            self.fail(f"{text!r}: lgdiff runs on cpu or cuda (cuda:N), not on {device.type}", param, ctx)
        if not torch.cuda.is_available():
            self.fail(f"{text!r}: CUDA is not available on this machine (torch {torch.__version__}); use cpu", param,
                      ctx)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            self.fail(f"{text!r}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                      f"(cuda:0..cuda:{count - 1})", param, ctx)
        return text


class FiniteFloat(click.ParamType):
    """A finite float (``nan`` and ``inf`` are refused), optionally ``> 0``."""

    name = "float"

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.positive and number <= 0:
            self.fail(f"{value!r} must be > 0", param, ctx)
        return number


DEVICE = Device()
FINITE = FiniteFloat()
POSITIVE = FiniteFloat(positive=True)
SEED = click.IntRange(0, 2**64 - 1)
"""Seeds of torch generators: 64-bit unsigned integers."""

__all__ = ["DEVICE", "FINITE", "POSITIVE", "SEED", "Device", "FiniteFloat"]

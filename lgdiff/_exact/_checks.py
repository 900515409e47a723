"""Argument validation shared by the exact reference values (user errors: ValueError)."""

import math


def check_beta(beta: float, *, where: str) -> None:
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"{where}: beta must be a finite number >= 0; got beta={beta!r}")


def check_torus_2d(shape: tuple[int, int], *, where: str) -> int:
    """Return the number of plaquettes V = L0 * L1 of a periodic 2D torus."""
    if any(s < 1 for s in shape):
        raise ValueError(f"{where}: the torus sizes must be positive, e.g. shape=(8, 8); got shape={shape}")
    return shape[0] * shape[1]

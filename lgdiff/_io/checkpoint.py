"""Model checkpoints: safetensors files with the weights, the EMA weights, the optimiser state and a JSON
provenance record (architecture, SDE, training data, settings, lgdiff version), written atomically.

Every floating-point tensor of a model file is finite: `save_checkpoint` writes nothing else and
`load_checkpoint` reads nothing else (a diverged training run must not become a model that samples NaN)."""

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .ensemble import _atomic_save, _lgdiff_version, _now

FORMAT = "lgdiff.model"
METADATA_KEY = "lgdiff"


class CheckpointError(ValueError):
    """A model file that cannot be read or does not fit."""


def _check_finite(tensors: dict[str, torch.Tensor], where: str, advice: str) -> None:
    """Raise `CheckpointError` naming the first floating-point tensor with a NaN or an infinity."""
    for name, value in tensors.items():
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where}: tensor {name!r} is not finite (nan or inf); {advice}")


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` (moved to the CPU, made contiguous) and ``meta`` (JSON) to ``path`` atomically.
    A non-finite tensor raises `CheckpointError` and nothing is written."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"model files end in .safetensors; got {path.name}")
    _check_finite(tensors, f"{path} was not written", "a model that diverged in training cannot be saved")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "lgdiff_version": _lgdiff_version(), "saved": _now(), **meta}
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic_save(path, cpu, {METADATA_KEY: json.dumps(record, sort_keys=True)}, 0o644)


def load_checkpoint(path: str | os.PathLike, *, device: torch.device | str | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a model file: ``(tensors, meta)``. Foreign, corrupt, non-finite or missing files raise
    `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file; check --model")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}); "
                              f"it is truncated, corrupt or of another format") from None
    try:
        meta = json.loads(raw[METADATA_KEY])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is a safetensors file but not an lgdiff model (no lgdiff metadata)") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an lgdiff file of format {meta.get('format')!r}, not a model "
                              f"({FORMAT!r}); an ensemble goes to --data, a model to --model")
    _check_finite(tensors, str(path), "the model diverged in training or the file is damaged: retrain it")
    if device is not None:
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, meta

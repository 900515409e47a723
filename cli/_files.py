"""Reading the files a user hands to the command line: ensembles (with a pointer to ``lgdiff convert`` for the
community formats it cannot read directly) and model files (for ``lgdiff info``)."""

import json
from pathlib import Path
from typing import Any

from lgdiff._io.checkpoint import CheckpointError, load_checkpoint
from lgdiff._io.convert import ConvertError, sniff_format
from lgdiff._io.ensemble import Ensemble, EnsembleError

_COMMUNITY = {"nersc": "a NERSC", "ildg": "an ILDG/LIME"}


def load_ensemble(path: Path) -> Ensemble:
    """`Ensemble.load`; a NERSC or ILDG gauge configuration is refused with the `lgdiff convert` command that
    imports it (`EnsembleError`, one line)."""
    try:
        return Ensemble.load(path)
    except EnsembleError:
        try:
            fmt = sniff_format(path)
        except ConvertError:
            fmt = None
        if fmt not in _COMMUNITY:
            raise
        raise EnsembleError(f"{path} is {_COMMUNITY[fmt]} gauge configuration, not an lgdiff ensemble: import it "
                            f"with `lgdiff convert {path} {path.with_suffix('.safetensors').name}` (add --beta B "
                            f"if the file does not record beta)") from None


def describe_model(meta: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """What ``lgdiff info`` prints for a model file: kind, theory, couplings and lattice of the training data,
    architecture, optimiser steps, weights, final loss (mean of the last 50 steps), provenance."""
    losses = meta.get("losses") or []
    tail = losses[-min(50, len(losses)):]
    weights = [t for name, t in tensors.items() if name.startswith("ema.")] or list(tensors.values())
    params = meta.get("params") or ({"beta": meta["beta"]} if "beta" in meta else None)
    report: dict[str, Any] = {"format": meta.get("format"), "kind": meta.get("kind"), "theory": meta.get("theory"),
                              "params": params, "lattice": meta.get("lattice"), "step": meta.get("step"),
                              "parameters": sum(int(t.numel()) for t in weights)}
    if tail:
        report["final_loss"] = sum(tail) / len(tail)
    for key in ("config", "sde", "process", "osq", "action", "train", "dtype", "data", "command", "data_command",
                "lgdiff_version", "saved"):
        if key in meta:
            report[key] = meta[key]
    return report


def describe_file(path: Path) -> dict[str, Any]:
    """``lgdiff info FILE``: an ensemble (metadata, counts) or a model file (`describe_model`). A file that is
    neither raises the ensemble reader's error."""
    try:
        ens = load_ensemble(path)
    except EnsembleError as ensemble_error:
        try:
            tensors, meta = load_checkpoint(path)
        except CheckpointError:
            raise ensemble_error from None
        return {"file": str(path), **describe_model(meta, tensors)}
    report = {"file": str(path), "records": ens.n_records, "configurations": ens.n_records * ens.chains,
              **json.loads(ens.metadata.to_json())}
    if ens.n_records:
        report["index_range"] = [int(ens.index[0]), int(ens.index[-1])]
        report["mean_acceptance"] = float(ens.acceptance.mean())
    return report


__all__ = ["describe_file", "describe_model", "load_ensemble"]

r"""Model files: the safetensors files (`lgdiff._io.checkpoint`) that hold a trained score network.

**Tensors.** ``ema.<name>``: the exponential moving average of the weights, which the samplers use (shipped
models keep only these); while training also ``model.<name>`` (the weights), ``optim.<i>.<key>`` (the Adam state
of parameter i) and ``rng_state`` (the training generator), so that a run resumes bit for bit.

**Metadata.** ``kind`` says which network the file holds and how it is rebuilt:

- ``"ncsnpp"``: a periodic NCSN++ on scalar fields; ``config`` (`NCSNppConfig.to_dict`), ``sde``
  (`sde_to_dict`, the forward process) and ``dtype``.
- ``"lcnn"``: a gauge-equivariant L-CNN on links; ``config`` (`LCNNConfig.to_dict`), ``process``
  (`GroupVE.settings`) and ``time_input`` (what the network sees as time, `TIME_INPUT`).
- ``"osq"``: the residual drift of optimal stochastic quantisation (`lgdiff._models.osq.OSQDrift`, trained without
  data by `lgdiff._train.osq`); ``network`` (``"ncsnpp"`` or ``"mlp"``, the body), ``config``, ``osq`` (the
  `OSQProcess` settings), ``dtype``, and ``action`` (the theory's name and couplings it was trained for).

All record the training settings (``train``), the training data (``data_identity``: sha256, number of
configurations, lattice, theory; `lgdiff._train.loop`), ``step``, the thinned loss history ``losses``,
``train_seconds`` (wall), ``train_cpu_seconds`` (process CPU time, summed over resumes) and the provenance the trainer was given (``theory``, ``command``, ...).

`load_model` reads either kind. Every tensor of a model file is finite (`save_checkpoint` and `load_checkpoint`
refuse anything else).
"""

import os
import typing
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from .._fields.links import AlgebraField, LinkField
from .._groups.base import complex_dtype, real_dtype
from .._io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .._sde.base import AbstractSDE
from .._sde.group import GroupVE
from .._sde.score import Score
from .._sde.ve import VESDE
from .._samplers.osq import OSQProcess
from .lcnn import LCNN, LCNNConfig
from .mlp import MLPConfig
from .ncsnpp import NCSNpp, NCSNppConfig, sde_from_dict
from .osq import OSQDrift, network_drift

TIME_INPUT = "ln_s/4"
"""What the L-CNN sees as its time argument (recorded in model files as ``time_input``)."""


# ---- the L-CNN's score and forward process ---------------------------------------------------------------------

def lcnn_score(net: LCNN, process: GroupVE) -> Score:
    r"""The score ``s_theta(U, t) = LCNN(U, ln s(t) / 4) / s(t)`` as a :class:`lgdiff.Score` (the parametrisation is
    explained in `lgdiff._train.gauge`).

    Links of another precision than the network's are cast for the network and the score is returned in the
    links' dtype: a float32 network serves complex128 chains.
    """
    return score_from_raw(net.score_raw, complex_dtype(next(net.parameters()).dtype), process)


def score_from_raw(score_raw: Callable[[Tensor, Tensor], Tensor], net_dtype: torch.dtype,
                   process: GroupVE) -> Score:
    """`lcnn_score` for any ``score_raw(u, tau)``: the network itself, or its `DistributedDataParallel` wrapper
    while training."""

    def score(U: LinkField, t: Tensor) -> AlgebraField:
        s = process.std(t.to(real_dtype(U.data.dtype)))
        raw = score_raw(U.data.to(net_dtype), (torch.log(s) / 4).to(real_dtype(net_dtype)))
        out = raw.to(U.data.dtype) / s.reshape(-1, *([1] * (raw.ndim - 1)))
        return AlgebraField(out, U.group, U.lattice)

    return score


def process_from_settings(settings: dict[str, Any]) -> GroupVE:
    """Inverse of ``GroupVE.settings()`` (``{"process": "group_ve", "sigma": ..., "T": ...}``)."""
    if settings.get("process") != "group_ve":
        raise CheckpointError(f"unknown diffusion process {settings.get('process')!r} in the model file; "
                              f"this lgdiff knows 'group_ve'")
    return GroupVE(sde=VESDE(sigma=float(settings["sigma"]), t_final=float(settings["T"])))


# ---- reading ---------------------------------------------------------------------------------------------------

def _ncsnpp(path: str | os.PathLike, meta: dict[str, Any], device: torch.device | str) -> tuple[NCSNpp, AbstractSDE]:
    sde = sde_from_dict(meta["sde"])
    net = NCSNpp(NCSNppConfig.from_dict(meta["config"]), sde, generator=torch.Generator().manual_seed(0),
                 dtype=getattr(torch, meta.get("dtype", "float32")), device=device)
    return net, sde


def _lcnn(path: str | os.PathLike, meta: dict[str, Any], device: torch.device | str) -> tuple[LCNN, GroupVE]:
    if meta.get("time_input") != TIME_INPUT:
        raise CheckpointError(f"{path} was trained with time input {meta.get('time_input')!r}; this lgdiff feeds the "
                              f"network {TIME_INPUT!r}: retrain the model with lgdiff._train.gauge.train_lcnn")
    net = LCNN(LCNNConfig.from_dict(meta["config"]), generator=torch.Generator(device=device).manual_seed(0))
    return net, process_from_settings(meta["process"])


def _osq(path: str | os.PathLike, meta: dict[str, Any], device: torch.device | str) -> tuple[OSQDrift, OSQProcess]:
    arch: NCSNppConfig | MLPConfig = (MLPConfig.from_dict(meta["config"]) if meta["network"] == "mlp"
                                      else NCSNppConfig.from_dict(meta["config"]))
    net = OSQDrift(arch, generator=torch.Generator().manual_seed(0), dtype=getattr(torch, meta.get("dtype", "float32")),
                   device=device)
    return net, OSQProcess.from_settings(meta["osq"])


_KINDS: dict[str, tuple[str, Callable[..., tuple[nn.Module, Any]]]] = {
    "ncsnpp": ("a scalar NCSN++ score network", _ncsnpp),
    "lcnn": ("a gauge L-CNN score network", _lcnn),
    "osq": ("an optimal-stochastic-quantisation drift", _osq),
}


def _load(path: str | os.PathLike, device: torch.device | str, ema: bool, kind: str | None
          ) -> tuple[nn.Module, Any, dict[str, Any]]:
    tensors, meta = load_checkpoint(path, device=device)
    got = meta.get("kind")
    if kind is not None and got != kind:
        raise CheckpointError(f"{path} holds a {got!r} model, not {_KINDS[kind][0]} (kind {kind!r}); "
                              f"load_model reads either kind")
    if got not in _KINDS:
        raise CheckpointError(f"{path} holds a {got!r} model; this lgdiff reads "
                              + " and ".join(f"{k!r} ({what})" for k, (what, _) in _KINDS.items()))
    prefix = "ema." if ema else "model."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path} has no {prefix.rstrip('.')} weights (shipped models keep only the EMA "
                              f"weights: load with ema=True)")
    try:
        net, process = _KINDS[got][1](path, meta, device)
        net.load_state_dict(state)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the {got!r} model cannot be rebuilt from its metadata and weights "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              f"the file is damaged or from another lgdiff") from None
    return net.eval().requires_grad_(False), process, meta


def load_model(path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True
               ) -> tuple[NCSNpp | LCNN, AbstractSDE | GroupVE, dict[str, Any]]:
    """The network of a model file of either kind (its ``kind`` says which), frozen and in eval mode, with the
    EMA weights by default; its forward process (the SDE of an NCSN++, the `GroupVE` of an L-CNN) and the
    file's metadata. Any problem with the file raises `CheckpointError` with a one-line reason."""
    return _load(path, device, ema, None)


@typing.final
@attrs.frozen
class LoadedModel:
    """A model file ready to sample with: its ``score`` (a :class:`lgdiff.Score` of the file's field type), the
    forward ``process`` it was trained with, the ``network`` itself (frozen, in eval mode) and the file's
    ``metadata``."""

    score: Score
    process: AbstractSDE | GroupVE
    network: NCSNpp | LCNN
    metadata: dict[str, Any]

    @property
    def dtype(self) -> torch.dtype:
        """The network's (real) parameter dtype."""
        return next(self.network.parameters()).dtype


def load_score(path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True) -> LoadedModel:
    """The one way sampling reads a model file of either kind: the score ``net(x, t)`` of an NCSN++ (differentiable,
    for the exact Jacobians of marginal independence Metropolis) or ``LCNN(U, ...) / s(t)`` of an L-CNN
    (:func:`lcnn_score`), with its process and metadata."""
    net, process, meta = _load(path, device, ema, None)
    if isinstance(net, OSQDrift):
        raise CheckpointError(f"{path} holds an optimal-stochastic-quantisation drift, not a score network: sample "
                              f"it with --method osq or osq-imh (lgdiff._models.files.load_osq)")
    if isinstance(net, LCNN):
        assert isinstance(process, GroupVE)
        return LoadedModel(lcnn_score(net, process), process, net, meta)
    return LoadedModel(net, process, net, meta)


@typing.final
@attrs.frozen
class LoadedOSQ:
    """An OSQ model file ready to sample with: its ``drift`` (`lgdiff._samplers.osq.Drift`, evaluated in the
    network's precision on states of any), the ``process`` it was trained along, the ``network`` (frozen, eval
    mode) and the file's ``metadata``."""

    drift: Callable[[Tensor, Tensor, Tensor], Tensor]
    process: OSQProcess
    network: OSQDrift
    metadata: dict[str, Any]


def load_osq(path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True) -> LoadedOSQ:
    """An optimal-stochastic-quantisation model file (kind ``"osq"``): drift, process, network and metadata."""
    net, process, meta = _load(path, device, ema, "osq")
    return LoadedOSQ(network_drift(net, next(net.parameters()).dtype), typing.cast(OSQProcess, process),
                     typing.cast(OSQDrift, net), meta)


def load_ncsnpp(path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True
                ) -> tuple[NCSNpp, dict[str, Any]]:
    """The trained NCSN++ (EMA weights by default) and the metadata; its SDE is ``net.sde``."""
    net, _, meta = _load(path, device, ema, "ncsnpp")
    return typing.cast(NCSNpp, net), meta


def load_lcnn(path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True
              ) -> tuple[LCNN, GroupVE, dict[str, Any]]:
    """The trained L-CNN (EMA weights by default, frozen, in eval mode), its diffusion process and the
    metadata of the model file. ``lcnn_score(net, process)`` is the score."""
    net, process, meta = _load(path, device, ema, "lcnn")
    return typing.cast(LCNN, net), typing.cast(GroupVE, process), meta


# ---- the training state ----------------------------------------------------------------------------------------

def save_training_state(path: str | os.PathLike, *, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
                        generator: torch.Generator, meta: dict[str, Any], losses: list[float]) -> None:
    """Write the model file of a training run (module docstring): weights, EMA weights, optimiser and generator
    state, and ``meta`` with the loss history thinned to at most 200 entries (a small file)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        for k, v in state.items():
            tensors[f"optim.{i}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
    tensors["rng_state"] = generator.get_state()
    save_checkpoint(path, tensors, {**meta, "losses": losses[:: max(1, len(losses) // 200)][-200:]})


def restore_training_state(path: str | os.PathLike, tensors: dict[str, Tensor], *, model: nn.Module, ema: nn.Module,
                           optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
    """Inverse of `save_training_state` on the tensors of the model file ``path`` (`load_checkpoint`)."""
    if "rng_state" not in tensors or not any(k.startswith("model.") for k in tensors):
        raise CheckpointError(f"{path} holds no training state (a shipped model keeps only its EMA weights) and "
                              f"cannot be resumed; train into another output file")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state = optimizer.state_dict()
    for i in range(len(state["param_groups"][0]["params"])):
        entries = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"optim.{i}.")}
        if entries:
            state["state"][i] = entries
    optimizer.load_state_dict(state)
    generator.set_state(tensors["rng_state"].to("cpu"))


__all__ = ["TIME_INPUT", "LoadedOSQ", "lcnn_score", "load_lcnn", "load_model", "load_ncsnpp", "load_osq", "process_from_settings",
           "restore_training_state", "save_training_state", "score_from_raw"]

r"""Denoising score matching for link fields: an :class:`LCNN` trained with :meth:`GroupVE.dsm_loss`, with EMA
weights and resumable safetensors checkpoints (the gauge counterpart of :mod:`lgdiff._train.dsm`).

**Parametrisation.** The L-CNN output is not divided by ``s(t)`` (lgdiff/_models/lcnn.py); the score is

    ``s_theta(U, t) = LCNN(U, tau(t)) / s(t)``,  ``tau(t) = ln s(t) / 4``

(:func:`lcnn_score`), which is what ``GroupVE.dsm_loss`` takes: its residual per link and generator is
``s(t) s_theta^a(U_t, t) + eta^a = LCNN^a(U_t, tau) + eta^a``, so the network regresses ``-eta`` (an O(1)
target at every t), and the score keeps the ``1 / s(t)`` growth of the true score at small t. The network sees
the noise level ``tau = ln s / 4`` (EDM's ``c_noise``; NCSN++ embeds ``ln s`` too) rather than t: with t itself
the Fourier time features (a few cycles per unit of t) cannot tell t = 0.001 from t = 0.01, the output stayed
flat there and the score overshot the exact one by ``s(0.01) / s(0.001) ~ 3`` (measured on the first models).
Near t -> 0 the ideal output is ``s(t) x (-grad S)``, proportional to s, which ``tau`` resolves.

Checkpoint metadata (``kind = "lcnn"``): the architecture (``config``, `LCNNConfig.to_dict`), the process
(``process``, `GroupVE.settings`), the training settings (``train``), ``theory``, ``beta`` (= beta_0),
``lattice``/``L`` of the training data, the data provenance, the training ``command``, ``step``, the loss
history (thinned) and ``train_seconds`` (wall time summed over resumed runs).
"""

import copy
import os
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from .. import _dist
from .._fields.links import AlgebraField, LinkField
from .._groups.base import complex_dtype, real_dtype
from .._io.checkpoint import CheckpointError, load_checkpoint
from .._models.lcnn import LCNN, LCNNConfig
from .._sde.group import TARGETS, GroupScore, GroupVE
from .._sde.ve import VESDE
from .dsm import TrainReport, _data_parallel_shard, _load_state, _save, _wrap_data_parallel


@typing.final
@attrs.frozen(kw_only=True)
class GaugeTrainConfig:
    """Training settings (recorded in the checkpoint).

    ``target``: ``"gaussian"`` (PHYSICS.md's loss) or ``"heat_kernel"`` (exact Brownian kernels; U(1), SU(2)),
    see ``GroupVE.dsm_loss``. ``t_min``: the smallest training time. ``t_focus``: if set, every other optimiser
    step draws ``t ~ U(t_min, t_focus)`` instead of ``U(t_min, T)``: the structure of the ensemble is learned at
    small and intermediate noise, while for ``t`` near T the score is nearly zero (Haar) and half of the uniform
    draws would teach little. A positive weighting of t does not change the minimiser of the loss (the true score).
    """

    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    ema: float = 0.995
    t_min: float = 1e-3
    target: str = "gaussian"
    seed: int = 0
    checkpoint_every: int = 100
    t_focus: float | None = None

    def __attrs_post_init__(self) -> None:
        if (self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or not 0 <= self.ema < 1
                or self.checkpoint_every < 1):
            raise ValueError(f"GaugeTrainConfig needs steps >= 1, batch_size >= 1, lr > 0, 0 <= ema < 1, "
                             f"checkpoint_every >= 1; got {self}")
        if self.target not in TARGETS:
            raise ValueError(f"GaugeTrainConfig.target must be one of {TARGETS}; got {self.target!r}")
        if self.t_focus is not None and not self.t_min < self.t_focus:
            raise ValueError(f"GaugeTrainConfig.t_focus must be None or > t_min = {self.t_min}; got {self.t_focus!r}")


TIME_INPUT = "ln_s/4"
"""What the network sees as its time argument (recorded in model files as ``time_input``)."""


def lcnn_score(net: LCNN, process: GroupVE) -> GroupScore:
    r"""The score ``s_theta(U, t) = LCNN(U, ln s(t) / 4) / s(t)`` as a ``GroupScore`` (module docstring).

    Links of another precision than the network's are cast for the network and the score is returned in the
    links' dtype: a float32 network serves complex128 chains.
    """
    return _score_of(net.score_raw, complex_dtype(next(net.parameters()).dtype), process)


def _score_of(score_raw: Callable[[Tensor, Tensor], Tensor], net_dtype: torch.dtype, process: GroupVE) -> GroupScore:
    """`lcnn_score` for any ``score_raw(u, tau)``: the network itself, or its `DistributedDataParallel` wrapper."""

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


def train_lcnn(data: LinkField, out: str | os.PathLike, *, config: GaugeTrainConfig, arch: LCNNConfig,
               process: GroupVE, provenance: dict[str, Any], device: torch.device | str = "cpu",
               progress: Callable[[int, float], None] | None = None) -> TrainReport:
    """Train an :class:`LCNN` on ``data`` (links ``[N, D, *L, n, n]``, converted to the architecture's precision)
    with ``process.dsm_loss`` and write ``out`` (weights, EMA weights, Adam state, step, generator state,
    metadata; module docstring) every ``checkpoint_every`` steps and at the end.

    If ``out`` exists and holds the same architecture, process and settings, training resumes from it bit for
    bit; a finished checkpoint is left as it is. ``provenance`` adds keys to the metadata (``theory``, ``beta``,
    ``data``, ``command``, ...). ``progress(step, loss)`` is called after every optimiser step.

    Inside a process group (``torchrun``) training is data-parallel exactly as in
    :func:`lgdiff._train.dsm.train_ncsnpp`: one global batch of ``batch_size`` (divisible by the world size)
    drawn identically on every rank, a shard per rank, DDP-averaged gradients, rank 0 alone keeps the EMA and
    writes ``out`` (docs/distributed.md).
    """
    if not isinstance(data, LinkField):
        raise TypeError(f"train_lcnn needs the training configurations as a LinkField; got {type(data).__name__}")
    if data.group != arch.group or data.lattice.dim != arch.dim:
        raise ValueError(f"train_lcnn: the data are {data.group} links in D = {data.lattice.dim} but the architecture "
                         f"is for {arch.group} in D = {arch.dim}; build LCNNConfig(group={data.group}, "
                         f"dim={data.lattice.dim}, ...)")
    out = Path(out)
    world, shard = _data_parallel_shard(config.batch_size, "GaugeTrainConfig.batch_size")
    device = _dist.device_for_rank(device) if world > 1 else device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    model = LCNN(arch, generator=torch.Generator(device=device).manual_seed(config.seed))
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    meta_run: dict[str, Any] = {"kind": "lcnn", "time_input": TIME_INPUT, "config": arch.to_dict(),
                                "process": process.settings(),
                                "train": attrs.asdict(config), "lattice": list(data.lattice.shape),
                                "world_size": world, **provenance}
    start, losses, seconds = 0, [], 0.0
    if out.exists():
        tensors, meta = load_checkpoint(out, device=device)
        for key in ("kind", "time_input", "config", "process", "train"):
            if meta.get(key) != meta_run[key]:
                raise ValueError(f"{out} holds a model trained with other {key} ({meta.get(key)} != {meta_run[key]}); "
                                 f"choose another output file or delete it")
        _load_state(model, ema, opt, tensors)
        generator.set_state(tensors["rng_state"].to("cpu"))
        start, losses, seconds = int(meta["step"]), list(meta.get("losses", [])), float(meta.get("train_seconds", 0))
    links = data.to(device=device, dtype=complex_dtype(arch.torch_dtype))
    # DDP hooks the gradients only of calls to its forward: route score_raw through it (a one-rank run: the net)
    score = _score_of(_wrap_data_parallel(_ScoreRaw(model), world), complex_dtype(arch.torch_dtype), process)
    # the same s(t) and g(t) on the shorter interval [0, t_focus] (VESDE's s(t) does not depend on T)
    focus = None if config.t_focus is None else GroupVE(sde=attrs.evolve(process.sde, t_final=config.t_focus))
    n = links.batch
    t0 = time.perf_counter()
    for step in range(start, config.steps):
        # the global batch and its noise are drawn on every rank; each rank evaluates its shard (train_ncsnpp)
        idx = torch.randint(0, n, (config.batch_size,), generator=generator, device=device)
        loss_process = focus if focus is not None and step % 2 == 1 else process
        loss = loss_process.dsm_loss(score, links[idx], generator=generator, t_min=config.t_min, target=config.target,
                                     shard=shard)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if _dist.is_main():
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.lerp_(p, 1 - config.ema)
        # one host sync per optimiser step, negligible next to the backward
        losses.append(float(_dist.mean_over_ranks(loss.detach())))
        if progress is not None:
            progress(step + 1, losses[-1])
        if _dist.is_main() and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            elapsed = seconds + time.perf_counter() - t0
            _save(out, model, ema, opt, generator, {**meta_run, "train_seconds": elapsed}, step + 1, losses)
    _dist.barrier()  # the final checkpoint exists for every rank once training returns
    return TrainReport(steps_done=config.steps, losses=losses, seconds=time.perf_counter() - t0)


class _ScoreRaw(nn.Module):
    """``LCNN.score_raw`` as a module's ``forward``, so that `DistributedDataParallel` can wrap it."""

    def __init__(self, net: LCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, u: Tensor, tau: Tensor) -> Tensor:
        return self.net.score_raw(u, tau)


def load_lcnn(path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True
              ) -> tuple[LCNN, GroupVE, dict[str, Any]]:
    """The trained network (EMA weights by default, frozen, in eval mode), its diffusion process and the
    metadata of the model file. ``lcnn_score(net, process)`` is the score."""
    tensors, meta = load_checkpoint(path, device=device)
    if meta.get("kind") != "lcnn":
        raise CheckpointError(f"{path} holds a {meta.get('kind')!r} model, not a gauge L-CNN score network "
                              f"(kind 'lcnn'); scalar models are read by load_ncsnpp")
    if meta.get("time_input") != TIME_INPUT:
        raise CheckpointError(f"{path} was trained with time input {meta.get('time_input')!r}; this lgdiff feeds the "
                              f"network {TIME_INPUT!r}: retrain the model with lgdiff._train.gauge.train_lcnn")
    config = LCNNConfig.from_dict(meta["config"])
    net = LCNN(config, generator=torch.Generator(device=device).manual_seed(0))
    prefix = "ema." if ema else "model."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path} has no {prefix.rstrip('.')} weights (shipped models keep only the EMA "
                              f"weights: load with ema=True)")
    net.load_state_dict(state)
    return net.eval().requires_grad_(False), process_from_settings(meta["process"]), meta


__all__ = ["TIME_INPUT", "GaugeTrainConfig", "load_lcnn", "lcnn_score", "process_from_settings",
           "train_lcnn"]

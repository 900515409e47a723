r"""Denoising score matching for link fields: an :class:`LCNN` trained with :meth:`GroupVE.dsm_loss`, with EMA
weights and resumable safetensors checkpoints, by the training loop of :mod:`lgdiff._train.loop` (which also
trains the scalar NCSN++ of :mod:`lgdiff._train.dsm`).

**Parametrisation.** The L-CNN output is not divided by ``s(t)`` (lgdiff/_models/lcnn.py); the score is

    ``s_theta(U, t) = LCNN(U, tau(t)) / s(t)``,  ``tau(t) = ln s(t) / 4``

(:func:`lgdiff._models.files.lcnn_score`), which is what ``GroupVE.dsm_loss`` takes: its residual per link and
generator is ``s(t) s_theta^a(U_t, t) + eta^a = LCNN^a(U_t, tau) + eta^a``, so the network regresses ``-eta`` (an O(1)
target at every t), and the score keeps the ``1 / s(t)`` growth of the true score at small t. The network sees
the noise level ``tau = ln s / 4`` (EDM's ``c_noise``; NCSN++ embeds ``ln s`` too) rather than t: with t itself
the Fourier time features (a few cycles per unit of t) cannot tell t = 0.001 from t = 0.01, the output stayed
flat there and the score overshot the exact one by ``s(0.01) / s(0.001) ~ 3`` (measured on the first models).
Near t -> 0 the ideal output is ``s(t) x (-grad S)``, proportional to s, which ``tau`` resolves.

Checkpoint metadata (``kind = "lcnn"``, `lgdiff._models.files`): the architecture (``config``,
`LCNNConfig.to_dict`), the process (``process``, `GroupVE.settings`), the training settings (``train``), the
training data's identity (``data_identity``), ``theory``, ``beta`` (= beta_0), ``lattice``/``L`` of the training
data, the data provenance, the training ``command``, ``step``, the loss history (thinned) and ``train_seconds``
(wall time summed over resumed runs).
"""

import os
import typing
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from .._fields.links import LinkField
from .._groups.base import complex_dtype
from .._models.files import TIME_INPUT, lcnn_score, load_lcnn, process_from_settings, score_from_raw
from .._models.lcnn import LCNN, LCNNConfig
from .._sde.group import TARGETS, GroupVE
from .loop import AbstractFieldTraining, AbstractTrainConfig, StepLoss, TrainReport, train, wrap_data_parallel


@typing.final
@attrs.frozen(kw_only=True)
class GaugeTrainConfig(AbstractTrainConfig):
    """Training settings (recorded in the checkpoint).

    ``target``: ``"gaussian"`` (docs/conventions.md's loss) or ``"heat_kernel"`` (exact Brownian kernels; U(1), SU(2)),
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
        AbstractTrainConfig.__attrs_post_init__(self)
        if self.target not in TARGETS:
            raise ValueError(f"GaugeTrainConfig.target must be one of {TARGETS}; got {self.target!r}")
        if self.t_focus is not None and not self.t_min < self.t_focus:
            raise ValueError(f"GaugeTrainConfig.t_focus must be None or > t_min = {self.t_min}; got {self.t_focus!r}")


@typing.final
@attrs.frozen(kw_only=True)
class GaugeTraining(AbstractFieldTraining):
    """An :class:`LCNN` on links with ``process.dsm_loss`` for the score ``LCNN(U, ln s / 4) / s`` (module
    docstring); with ``config.t_focus`` every other step draws its times from ``[t_min, t_focus]``."""

    data: LinkField
    config: GaugeTrainConfig
    arch: LCNNConfig
    process: GroupVE

    def metadata(self) -> dict[str, Any]:
        return {"kind": "lcnn", "time_input": TIME_INPUT, "config": self.arch.to_dict(),
                "process": self.process.settings()}

    def network(self, device: torch.device | str) -> LCNN:
        return LCNN(self.arch, generator=torch.Generator(device=device).manual_seed(self.config.seed))

    def training_data(self, device: torch.device | str) -> LinkField:
        return self.data.to(device=device, dtype=complex_dtype(self.arch.torch_dtype))

    def step_loss(self, model: nn.Module, world: int, shard: slice | None) -> StepLoss:
        config, process = self.config, self.process
        # DDP hooks the gradients only of calls to its forward: route score_raw through it (a one-rank run: the net)
        net = wrap_data_parallel(_ScoreRaw(typing.cast(LCNN, model)), world)
        score = score_from_raw(net, complex_dtype(self.arch.torch_dtype), process)
        # the same s(t) and g(t) on the shorter interval [0, t_focus] (VESDE's s(t) does not depend on T)
        focus = None if config.t_focus is None else GroupVE(sde=attrs.evolve(process.sde, t_final=config.t_focus))

        def loss(U0: LinkField, generator: torch.Generator, step: int) -> Tensor:
            step_process = focus if focus is not None and step % 2 == 1 else process
            return step_process.dsm_loss(score, U0, generator=generator, t_min=config.t_min, target=config.target,
                                         shard=shard)

        return loss


class _ScoreRaw(nn.Module):
    """``LCNN.score_raw`` as a module's ``forward``, so that `DistributedDataParallel` can wrap it."""

    def __init__(self, net: LCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, u: Tensor, tau: Tensor) -> Tensor:
        return self.net.score_raw(u, tau)


def train_lcnn(data: LinkField, out: str | os.PathLike, *, config: GaugeTrainConfig, arch: LCNNConfig,
               process: GroupVE, provenance: dict[str, Any], device: torch.device | str = "cpu",
               progress: Callable[[int, float], None] | None = None) -> TrainReport:
    """Train an :class:`LCNN` on ``data`` (links ``[N, D, *L, n, n]``, converted to the architecture's precision)
    with ``process.dsm_loss`` and write ``out`` (weights, EMA weights, Adam state, step, generator state,
    metadata; module docstring) every ``checkpoint_every`` steps and at the end.

    If ``out`` exists and holds the same architecture, process, settings and training data, training resumes
    from it bit for bit; a finished checkpoint is left as it is. ``provenance`` adds keys to the metadata
    (``theory``, ``beta``, ``data``, ``command``, ...). ``progress(step, loss)`` is called after every optimiser
    step. Non-finite data, a non-finite loss and resuming on other data raise `ValueError` (`lgdiff._train.loop`).

    Inside a process group (``torchrun``) training is data-parallel as in
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
    task = GaugeTraining(data=data, config=config, arch=arch, process=process)
    return train(task, out, provenance=provenance, device=device, progress=progress)


__all__ = ["TIME_INPUT", "GaugeTrainConfig", "GaugeTraining", "load_lcnn", "lcnn_score", "process_from_settings",
           "train_lcnn"]

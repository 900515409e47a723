r"""Denoising score matching for scalar fields: an NCSN++ trained with `dsm_loss` and Z2 augmentation by the
training loop of `lgdiff._train.loop` (EMA weights, data parallelism, resumable safetensors model files)
(docs/conventions.md: ``L = E_t E_x0 E_eps || s(t) s_theta(x_t, t) + eps ||^2``)."""

import os
import typing
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from .._models.files import load_ncsnpp
from .._models.ncsnpp import NCSNpp, NCSNppConfig, sde_to_dict
from .._sde.base import AbstractSDE, expand_like
from .loop import AbstractFieldTraining, AbstractTrainConfig, StepLoss, TrainReport, train, wrap_data_parallel


def dsm_loss(model: Callable[[Tensor, Tensor], Tensor], sde: AbstractSDE, x0: Tensor, *, generator: torch.Generator,
             t_min: float = 1e-3, shard: slice | None = None) -> Tensor:
    r"""The denoising score-matching loss of a real-field score: ``sde.dsm_loss(model, x0, ...)``
    (:meth:`lgdiff.AbstractSDE.dsm_loss`, the one implementation; the field type's process decides the loss).

    ``shard`` (data-parallel training, `lgdiff._dist`): ``t`` and ``eps`` are drawn for the whole batch ``x0``, as
    without it, and the loss is the mean over the configurations ``x0[shard]`` only. Every rank draws the same
    global batch and evaluates its own slice, so the noise of a sample depends on its index in the global batch,
    not on the rank, and the mean of the ranks' losses over equal slices is the loss of the whole batch.
    """
    return sde.dsm_loss(model, x0, generator=generator, t_min=t_min, shard=shard)


@typing.final
@attrs.frozen(kw_only=True)
class TrainConfig(AbstractTrainConfig):
    """Training settings (recorded in the checkpoint; checked by `AbstractTrainConfig`)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    ema: float = 0.999
    z2_augment: bool = True
    t_min: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 200


@typing.final
@attrs.frozen(kw_only=True)
class ScalarTraining(AbstractFieldTraining):
    """An :class:`NCSNpp` on scalar configurations ``data [N, *L]`` with `dsm_loss`; with ``z2_augment`` every
    configuration of a batch is flipped, ``phi -> -phi``, with probability 1/2 (the symmetry of phi^4)."""

    data: Tensor
    config: TrainConfig
    arch: NCSNppConfig
    sde: AbstractSDE
    dtype: torch.dtype

    def metadata(self) -> dict[str, Any]:
        return {"kind": "ncsnpp", "config": self.arch.to_dict(), "sde": sde_to_dict(self.sde),
                "dtype": str(self.dtype).removeprefix("torch.")}

    def network(self, device: torch.device | str) -> NCSNpp:
        return NCSNpp(self.arch, self.sde, generator=torch.Generator().manual_seed(self.config.seed), dtype=self.dtype,
                      device=device)

    def training_data(self, device: torch.device | str) -> Tensor:
        return self.data.to(device=device, dtype=self.dtype)

    def step_loss(self, model: torch.nn.Module, world: int, shard: slice | None) -> StepLoss:
        net, config, sde = wrap_data_parallel(model, world), self.config, self.sde

        def loss(x0: Tensor, generator: torch.Generator, step: int) -> Tensor:
            if config.z2_augment:
                sign = torch.randint(0, 2, (x0.shape[0],), generator=generator, device=x0.device).to(x0.dtype) * 2 - 1
                x0 = x0 * expand_like(sign, x0)
            return dsm_loss(net, sde, x0, generator=generator, t_min=config.t_min, shard=shard)

        return loss


def train_ncsnpp(data: Tensor, out: str | os.PathLike, *, config: TrainConfig, arch: NCSNppConfig,
                 sde: AbstractSDE, provenance: dict[str, Any], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, progress: Callable[[int, float], None] | None = None
                 ) -> TrainReport:
    """Train an :class:`NCSNpp` on ``data [N, *L]`` and write ``out`` (weights, EMA weights, Adam state, step,
    generator state, provenance) every ``checkpoint_every`` steps and at the end. If ``out`` exists and its
    settings and training data match, training resumes from it; a finished checkpoint is left as it is.
    Non-finite data, a non-finite loss and resuming on other data raise `ValueError` (`lgdiff._train.loop`).

    **Data parallel** (inside an initialised process group, e.g. under ``torchrun``; docs/distributed.md): every
    rank draws the same global batch of ``config.batch_size`` samples, their signs, times and noise, evaluates
    its slice of it, and DDP averages the gradients: every optimiser step equals the single-process step with
    batch B (up to the order of floating-point sums); rank 0 alone keeps the EMA and writes ``out``
    (`lgdiff._train.loop`). ``batch_size`` must be divisible by the number of processes.
    """
    task = ScalarTraining(data=data, config=config, arch=arch, sde=sde, dtype=dtype)
    return train(task, out, provenance=provenance, device=device, progress=progress)


__all__ = ["ScalarTraining", "TrainConfig", "TrainReport", "dsm_loss", "load_ncsnpp", "train_ncsnpp"]

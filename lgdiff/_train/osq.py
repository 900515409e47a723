r"""Optimal stochastic quantisation as one more entry of the training loop (`lgdiff._train.loop`): a residual drift
``v_theta`` trained without data on the OSQ objective of `lgdiff._samplers.osq` (``"exact"``: ``E_Q[-log w]``,
whose optimum samples ``exp(-S)`` exactly; ``"plain"``: the seed talk's ``E[sum h |v|^2 / (2 g^2) + S(phi_T)]``,
which targets ``p_ref,T exp(-S)``). The network is an :class:`lgdiff._models.osq.OSQDrift`: a linear head in the
force and the field plus the periodic NCSN++ without an SDE (``D >= 1``) or a one-site MLP (``D = 0``). Each optimiser step draws ``batch_size`` prior fields from the
training generator and simulates their paths: the run resumes bit for bit from its model file like every other
training run. It runs in one process (no data parallelism: the paths' noise is drawn for the whole batch)."""

import os
import typing
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from .._actions.base import AbstractScalarAction
from .._models.mlp import MLPConfig
from .._models.ncsnpp import NCSNppConfig
from .._models.osq import OSQDrift, network_drift
from .._samplers.osq import GRADIENTS, OBJECTIVES, Drift, OSQProcess, osq_loss
from .loop import AbstractFieldTraining, AbstractTrainConfig, StepLoss, TrainReport, train, wrap_data_parallel


@typing.final
@attrs.frozen(kw_only=True)
class OSQTrainConfig(AbstractTrainConfig):
    """Training settings of an OSQ drift (recorded in the model file; checked by `AbstractTrainConfig`)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    ema: float = 0.99
    seed: int = 0
    checkpoint_every: int = 100
    objective: str = "exact"
    gradient: str = "path"

    def __attrs_post_init__(self) -> None:
        AbstractTrainConfig.__attrs_post_init__(self)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"OSQ objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"OSQ gradient must be one of {', '.join(GRADIENTS)}; got {self.gradient!r}")


@typing.final
@attrs.frozen(kw_only=True)
class OSQTraining(AbstractFieldTraining):
    """A residual drift for ``action`` on a lattice of shape ``lattice_shape`` (``()`` for one site), trained on
    the OSQ objective of ``config`` along ``process`` (module docstring). No training data."""

    action: AbstractScalarAction
    lattice_shape: tuple[int, ...] = attrs.field(converter=tuple)
    config: OSQTrainConfig
    arch: NCSNppConfig | MLPConfig
    process: OSQProcess
    dtype: torch.dtype = torch.float32
    data: None = None

    def __attrs_post_init__(self) -> None:
        dim = len(self.lattice_shape)
        if isinstance(self.arch, MLPConfig) != (dim == 0):
            raise ValueError(f"an OSQ drift on a {dim}-dimensional lattice needs "
                             f"{'the one-site MLP (MLPConfig)' if dim == 0 else 'an NCSN++ (NCSNppConfig)'}")
        if isinstance(self.arch, NCSNppConfig) and self.arch.dim != dim:
            raise ValueError(f"NCSNppConfig(dim={self.arch.dim}) cannot act on a {dim}-dimensional lattice")

    def metadata(self) -> dict[str, Any]:
        network = "mlp" if isinstance(self.arch, MLPConfig) else "ncsnpp"
        return {"kind": "osq", "network": network, "config": self.arch.to_dict(), "osq": self.process.settings(),
                "dtype": str(self.dtype).removeprefix("torch."),
                "action": {"class": type(self.action).__name__, **attrs.asdict(self.action)}}

    def network(self, device: torch.device | str) -> OSQDrift:
        return OSQDrift(self.arch, generator=torch.Generator().manual_seed(self.config.seed), dtype=self.dtype,
                        device=device)

    def training_data(self, device: torch.device | str) -> None:
        return None

    def lattice(self) -> list[int]:
        return list(self.lattice_shape)

    def draw(self, data: None, generator: torch.Generator) -> Tensor:
        return self.process.prior((self.config.batch_size, *self.lattice_shape), dtype=self.dtype,
                                  device=generator.device, generator=generator)

    def step_loss(self, model: nn.Module, world: int, shard: slice | None) -> StepLoss:
        if world > 1:
            # the path noise is drawn step by step for the whole batch: a rank's slice of it is not the noise that
            # the same configurations get in one process, so data parallelism would change the training run
            raise ValueError("OSQ training runs in one process (its paths draw their noise step by step for the whole "
                             "batch); run it without torchrun")
        net, config = wrap_data_parallel(model, world), self.config
        drift = network_drift(net, self.dtype)

        def loss(x0: Tensor, generator: torch.Generator, step: int) -> Tensor:
            return osq_loss(drift, self.action, self.process, x0, generator=generator, objective=config.objective,
                            gradient=config.gradient)

        return loss


def train_osq(action: AbstractScalarAction, lattice_shape: tuple[int, ...], out: str | os.PathLike, *,
              config: OSQTrainConfig, arch: NCSNppConfig | MLPConfig, process: OSQProcess,
              provenance: dict[str, Any], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
              progress: Callable[[int, float], None] | None = None) -> TrainReport:
    """Train an OSQ residual drift for ``action`` on ``lattice_shape`` and write ``out`` every
    ``checkpoint_every`` steps and at the end (weights, EMA weights, Adam state, generator, provenance); a rerun
    resumes from it (`lgdiff._train.loop.train`). ``provenance`` should name the theory and its couplings."""
    task = OSQTraining(action=action, lattice_shape=lattice_shape, config=config, arch=arch, process=process,
                       dtype=dtype)
    return train(task, out, provenance=provenance, device=device, progress=progress)


__all__ = ["OSQTrainConfig", "OSQTraining", "train_osq"]

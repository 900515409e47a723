r"""The training loop of both score networks: denoising score matching with Adam, EMA weights, data parallelism and
resumable model files (`lgdiff._models.files`).

What differs between the networks is an `AbstractFieldTraining`: the network, the loss of its field type and
the metadata that rebuilds it from the model file. `lgdiff._train.dsm.ScalarTraining` trains an NCSN++ on scalar
fields with `dsm_loss`; `lgdiff._train.gauge.GaugeTraining` an L-CNN on links with `GroupVE.dsm_loss`.

**Checks.** The training data must be finite (a non-finite configuration is named and refused before the first
step). A loss that becomes non-finite stops the run with `TrainingError` before the optimiser step it would
spoil; the model file keeps its last (finite) checkpoint, and no non-finite model file is ever written
(`save_checkpoint`). The model file records the identity of its training data (``data_identity``: sha256 of
the configurations as given, their number, lattice and theory): a resume on other data is refused, as one
with another architecture, process or training settings is.

**Data parallel** (inside an initialised process group, e.g. under ``torchrun``; docs/distributed.md): the
network is wrapped in ``DistributedDataParallel``. Every rank draws the same global batch of
``config.batch_size`` configurations and their noise from the same seeded generator, and rank ``r`` of ``W``
evaluates the slice ``[r B/W, (r+1) B/W)``; DDP averages the gradients, so every optimiser step equals the
single-process step with batch B (up to the order of floating-point sums). ``progress`` and the losses get the
mean over ranks; the EMA weights and the model file are kept and written by rank 0 only. All ranks read the
model file to resume (a file system shared by the ranks). ``batch_size`` must be divisible by W.
"""

import abc
import copy
import hashlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from .. import _dist
from .._fields.links import LinkField
from .._io.checkpoint import load_checkpoint
from .._models.files import restore_training_state, save_training_state


class AbstractTrainConfig(abc.ABC):
    """The settings the loop reads; each field type's config (a frozen attrs class) adds those of its loss.
    All are recorded in the model file (``train``), and a resume needs them unchanged."""

    steps: int
    batch_size: int
    lr: float
    ema: float
    seed: int
    checkpoint_every: int

    def __attrs_post_init__(self) -> None:  # a subclass that checks more calls this first
        if (self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or not 0 <= self.ema < 1
                or self.checkpoint_every < 1):
            raise ValueError(f"{type(self).__name__} needs steps >= 1, batch_size >= 1, lr > 0, 0 <= ema < 1, "
                             f"checkpoint_every >= 1; got {self}")


StepLoss = Callable[[Any, torch.Generator, int], Tensor]
"""``loss(x0, generator, step)``: the DSM loss of a global batch ``x0`` (this rank's shard of it)."""


class AbstractFieldTraining(abc.ABC):
    """One network trained on one field type: everything `train` needs besides the loop itself."""

    data: Tensor | LinkField | None
    """The training configurations, batch N first (checked finite and identified by `train`); ``None`` for a
    data-free objective (optimal stochastic quantisation, `lgdiff._train.osq`), whose :meth:`draw` makes the batch."""
    config: AbstractTrainConfig

    @abc.abstractmethod
    def metadata(self) -> dict[str, Any]:
        """The model-file keys that rebuild the network (``kind``, architecture, forward process, ...); a model
        file resumes only if they are unchanged."""

    @abc.abstractmethod
    def network(self, device: torch.device | str) -> nn.Module:
        """The initial network, seeded by ``config.seed``."""

    @abc.abstractmethod
    def training_data(self, device: torch.device | str) -> Tensor | LinkField | None:
        """``data`` on ``device`` in the network's precision."""

    def draw(self, data: Tensor | LinkField | None, generator: torch.Generator) -> Tensor | LinkField:
        """The global batch of one optimiser step: ``config.batch_size`` configurations drawn uniformly with
        replacement from ``data`` (a data-free task overrides this)."""
        assert data is not None
        raw = data.data if isinstance(data, LinkField) else data
        idx = torch.randint(0, raw.shape[0], (self.config.batch_size,), generator=generator, device=raw.device)
        return data[idx]

    def lattice(self) -> list[int]:
        """The lattice shape the network is trained on (default: the training data's)."""
        assert self.data is not None
        return list(self.data.lattice.shape) if isinstance(self.data, LinkField) else list(self.data.shape[1:])

    @abc.abstractmethod
    def step_loss(self, model: nn.Module, world: int, shard: slice | None) -> StepLoss:
        """The loss of one optimiser step of ``model`` (wrapped for data parallelism when ``world > 1``; ``shard``
        is this rank's slice of the global batch, ``None`` in one process)."""


@attrs.frozen
class TrainReport:
    steps_done: int
    losses: list[float]
    seconds: float


class TrainingError(ValueError):
    """A training run that cannot go on (its loss became non-finite)."""


def first_non_finite(x: Tensor) -> int | None:
    """The index of the first configuration of ``x [N, ...]`` with a NaN or an infinity, or ``None``."""
    finite = torch.isfinite(x).reshape(x.shape[0], -1).all(1)
    return None if bool(finite.all()) else int(torch.argmin(finite.to(torch.uint8)))


def data_identity(x: Tensor | LinkField | None, theory: object, lattice: list[int] | None = None) -> dict[str, Any]:
    """What identifies training data: ``{"sha256", "configurations", "lattice", "theory"}``; the hash covers the
    dtype, shape and values of the configurations in their order (as given, before any conversion). A data-free
    task (``x = None``) is identified by its theory and ``lattice`` alone (``sha256`` None, 0 configurations)."""
    if x is None:
        return {"sha256": None, "configurations": 0, "lattice": lattice, "theory": theory}
    raw = x.data if isinstance(x, LinkField) else x
    lattice = list(x.lattice.shape) if isinstance(x, LinkField) else list(raw.shape[1:])
    cpu = raw.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{cpu.dtype} {tuple(cpu.shape)}".encode())
    digest.update((torch.view_as_real(cpu) if cpu.is_complex() else cpu).reshape(-1).view(torch.uint8).numpy())
    return {"sha256": digest.hexdigest(), "configurations": int(raw.shape[0]), "lattice": lattice, "theory": theory}


def _describe(identity: dict[str, Any]) -> str:
    theory = f"{identity['theory']} " if identity.get("theory") is not None else ""
    return (f"{identity.get('configurations')} {theory}configurations on "
            f"{'x'.join(map(str, identity.get('lattice', [])))}, sha256 {str(identity.get('sha256'))[:12]}")


def data_parallel_shard(batch_size: int, name: str) -> tuple[int, slice | None]:
    """``(world size, this rank's slice of a global batch)``; the slice is ``None`` in a single process."""
    world = _dist.world_size()
    if world == 1:
        return 1, None
    if batch_size % world:
        raise ValueError(f"{name} = {batch_size} is the global batch of a data-parallel run and must be divisible "
                         f"by the number of processes, {world}; choose a multiple of {world}")
    per_rank = batch_size // world
    return world, slice(_dist.rank() * per_rank, (_dist.rank() + 1) * per_rank)


def wrap_data_parallel(model: nn.Module, world: int) -> nn.Module:
    """``DistributedDataParallel(model)`` in a multi-process run (gradients averaged over ranks), else ``model``."""
    if world == 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def train(task: AbstractFieldTraining, out: str | os.PathLike, *, provenance: dict[str, Any],
          device: torch.device | str = "cpu", progress: Callable[[int, float], None] | None = None) -> TrainReport:
    """Train ``task``'s network and write the model file ``out`` every ``checkpoint_every`` steps and at the end
    (module docstring). If ``out`` exists with the same network, settings and data, training resumes from it bit
    for bit; a finished one is left as it is. ``provenance`` adds keys to the metadata (``theory``, ``command``,
    ...); ``progress(step, loss)`` is called after every optimiser step."""
    config = task.config
    out = Path(out)
    world, shard = data_parallel_shard(config.batch_size, f"{type(config).__name__}.batch_size")
    device = _dist.device_for_rank(device) if world > 1 else device
    raw = task.data.data if isinstance(task.data, LinkField) else task.data
    if raw is not None and (bad := first_non_finite(raw)) is not None:
        raise ValueError(f"training configuration {bad} of {raw.shape[0]} is not finite (nan or inf); remove it from "
                         f"the training data")
    identity = data_identity(task.data, provenance.get("theory"), task.lattice())
    data = task.training_data(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    model = task.network(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    defining = {**task.metadata(), "train": attrs.asdict(config)}
    meta_run = {"lattice": identity["lattice"], "world_size": world, **provenance, **defining,
                "data_identity": identity}
    start, losses, seconds, cpu_seconds, saved = 0, [], 0.0, 0.0, None
    if out.exists():
        tensors, meta = load_checkpoint(out, device=device)
        for key, value in defining.items():
            if key == "train" and isinstance(meta.get(key), dict):  # more steps extend the run (constant rate: the
                value, held = dict(value), dict(meta[key])          # same weights as a run this long from the start)
                value.pop("steps"), held.pop("steps", None)
            else:
                held = meta.get(key)
            if held != value:
                raise ValueError(f"{out} holds a model trained with other {key} ({held} != {value}); "
                                 f"choose another --out or delete it")
        if int(meta.get("step", 0)) > config.steps:
            raise ValueError(f"{out} holds {meta['step']} training steps, more than the {config.steps} asked for; "
                             f"ask for at least {meta['step']} steps to extend it, or train into another --out")
        if "data_identity" not in meta:
            raise ValueError(f"{out} does not record its training data (an older lgdiff wrote it), so resuming it "
                             f"on this data cannot be checked; train into another --out")
        if meta["data_identity"] != identity:
            raise ValueError(f"{out} was trained on other data ({_describe(meta['data_identity'])}) than this run's "
                             f"({_describe(identity)}); resume with its --data or train into another --out")
        restore_training_state(out, tensors, model=model, ema=ema, optimizer=opt, generator=generator)
        start, losses, seconds = int(meta["step"]), list(meta.get("losses", [])), float(meta.get("train_seconds", 0))
        cpu_seconds = float(meta.get("train_cpu_seconds", 0))
        saved = start
    step_loss = task.step_loss(model, world, shard)
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(start, config.steps):
        # the whole global batch is drawn on every rank (same generator, same sequence as one process)
        loss = step_loss(task.draw(data, generator), generator, step)
        # one host sync per optimiser step, negligible next to the backward pass; before the step it would spoil
        value = float(_dist.mean_over_ranks(loss.detach()))
        if not math.isfinite(value):
            kept = f"{out} keeps step {saved}" if saved is not None else f"no model file was written to {out}"
            raise TrainingError(f"the training loss became {value} at step {step + 1}; {kept}: lower the learning "
                                f"rate (--lr) or check the training data")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if _dist.is_main():
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.lerp_(p, 1 - config.ema)
        losses.append(value)
        if progress is not None:
            progress(step + 1, value)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            if _dist.is_main():
                record = {**meta_run, "step": step + 1, "train_seconds": seconds + time.perf_counter() - t0,
                          "train_cpu_seconds": cpu_seconds + time.process_time() - c0}
                save_training_state(out, model=model, ema=ema, optimizer=opt, generator=generator, meta=record,
                                    losses=losses)
            saved = step + 1
    _dist.barrier()  # the final model file exists for every rank once training returns
    return TrainReport(steps_done=config.steps, losses=losses, seconds=time.perf_counter() - t0)


__all__ = ["AbstractFieldTraining", "AbstractTrainConfig", "StepLoss", "TrainReport", "TrainingError",
           "data_identity", "data_parallel_shard", "first_non_finite", "train", "wrap_data_parallel"]

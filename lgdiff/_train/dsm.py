r"""Denoising score matching for scalar fields, with EMA weights, Z2 augmentation and resumable
safetensors checkpoints (PHYSICS.md: ``L = E_t E_x0 E_eps || s(t) s_theta(x_t, t) + eps ||^2``)."""

import copy
import math
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
from .._io.checkpoint import load_checkpoint, save_checkpoint
from .._models.ncsnpp import NCSNpp, NCSNppConfig, sde_from_dict, sde_to_dict
from .._sde.base import AbstractSDE, expand_like


def dsm_loss(model: Callable[[Tensor, Tensor], Tensor], sde: AbstractSDE, x0: Tensor, *, generator: torch.Generator,
             t_min: float = 1e-3, shard: slice | None = None) -> Tensor:
    r"""``mean_b mean_x (s(t) s_theta(x_t, t) + eps)^2`` with ``t ~ U(t_min, T)`` per configuration
    (the sigma^2-weighted DSM loss, per site so that it is O(1) at any volume).

    ``shard`` (data-parallel training, `lgdiff._dist`): ``t`` and ``eps`` are drawn for the whole batch ``x0``, as
    without it, and the loss is the mean over the configurations ``x0[shard]`` only. Every rank draws the same
    global batch and evaluates its own slice, so the noise of a sample depends on its index in the global batch,
    not on the rank, and the mean of the ranks' losses over equal slices is the loss of the whole batch.
    """
    t = t_min + (sde.T - t_min) * torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype, device=x0.device)
    xt, eps = sde.perturb(x0, t, generator=generator)
    if shard is not None:
        t, xt, eps = t[shard], xt[shard], eps[shard]
    residual = expand_like(sde.std(t), eps) * model(xt, t) + eps
    return (residual * residual).reshape(eps.shape[0], -1).mean(1).mean()


@typing.final
@attrs.frozen(kw_only=True)
class TrainConfig:
    """Training settings (recorded in the checkpoint)."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    ema: float = 0.999
    z2_augment: bool = True
    t_min: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 200

    def __attrs_post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or not 0 <= self.ema < 1:
            raise ValueError(f"TrainConfig needs steps >= 1, batch_size >= 1, lr > 0, 0 <= ema < 1; got {self}")


@attrs.frozen
class TrainReport:
    steps_done: int
    losses: list[float]
    seconds: float


def _rng_tensor(g: torch.Generator) -> Tensor:
    return g.get_state()


def train_ncsnpp(data: Tensor, out: str | os.PathLike, *, config: TrainConfig, arch: NCSNppConfig,
                 sde: AbstractSDE, provenance: dict[str, Any], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, progress: Callable[[int, float], None] | None = None
                 ) -> TrainReport:
    """Train an :class:`NCSNpp` on ``data [N, *L]`` and write ``out`` (weights, EMA weights, Adam state, step,
    generator state, provenance) every ``checkpoint_every`` steps and at the end. If ``out`` exists and its
    settings match, training resumes from it; a finished checkpoint is left as it is.

    **Data parallel** (inside an initialised process group, e.g. under ``torchrun``; docs/distributed.md): the
    model is wrapped in ``DistributedDataParallel``. Every rank draws the same global batch of
    ``config.batch_size`` samples, their signs, times and noise from the same seeded generator, and rank ``r``
    of ``W`` evaluates the slice ``[r B/W, (r+1) B/W)``; DDP averages the gradients, so every optimiser step
    equals the single-process step with batch B (up to the order of floating-point sums). ``progress`` and
    the losses get the mean over ranks; EMA weights and the checkpoint are kept and written by rank 0 only.
    All ranks read ``out`` to resume (a file system shared by the ranks). ``batch_size`` must be divisible by W.
    """
    out = Path(out)
    world, shard = _data_parallel_shard(config.batch_size, "TrainConfig.batch_size")
    device = _dist.device_for_rank(device) if world > 1 else device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    model = NCSNpp(arch, sde, generator=torch.Generator().manual_seed(config.seed), dtype=dtype, device=device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    meta_run = {"kind": "ncsnpp", "config": arch.to_dict(), "sde": sde_to_dict(sde), "dtype": str(dtype).removeprefix("torch."),
                "train": attrs.asdict(config), "world_size": world, **provenance}
    start, losses = 0, []
    if out.exists():
        tensors, meta = load_checkpoint(out, device=device)
        for key in ("config", "sde", "train", "dtype"):
            if meta.get(key) != meta_run[key]:
                raise ValueError(f"{out} holds a model trained with other {key} ({meta.get(key)} != {meta_run[key]}); "
                                 f"choose another --out or delete it")
        _load_state(model, ema, opt, tensors)
        generator.set_state(tensors["rng_state"].to("cpu"))
        start, losses = int(meta["step"]), list(meta.get("losses", []))
    data = data.to(device=device, dtype=dtype)
    n = data.shape[0]
    net = _wrap_data_parallel(model, world)
    t0 = time.perf_counter()
    for step in range(start, config.steps):
        # the whole global batch is drawn on every rank (same generator, same sequence as one process)
        idx = torch.randint(0, n, (config.batch_size,), generator=generator, device=device)
        x0 = data[idx]
        if config.z2_augment:
            sign = torch.randint(0, 2, (config.batch_size,), generator=generator, device=device).to(dtype) * 2 - 1
            x0 = x0 * expand_like(sign, x0)
        loss = dsm_loss(net, sde, x0, generator=generator, t_min=config.t_min, shard=shard)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if _dist.is_main():
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(p, 1 - config.ema)
        # one host sync per optimiser step: negligible next to the backward pass
        losses.append(float(_dist.mean_over_ranks(loss.detach())))
        if progress is not None:
            progress(step + 1, losses[-1])
        if _dist.is_main() and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            _save(out, model, ema, opt, generator, meta_run, step + 1, losses)
    _dist.barrier()  # the final checkpoint exists for every rank once training returns
    return TrainReport(steps_done=config.steps, losses=losses, seconds=time.perf_counter() - t0)


def _data_parallel_shard(batch_size: int, name: str) -> tuple[int, slice | None]:
    """``(world size, this rank's slice of a global batch)``; the slice is ``None`` in a single process."""
    world = _dist.world_size()
    if world == 1:
        return 1, None
    if batch_size % world:
        raise ValueError(f"{name} = {batch_size} is the global batch of a data-parallel run and must be divisible "
                         f"by the number of processes, {world}; choose a multiple of {world}")
    per_rank = batch_size // world
    return world, slice(_dist.rank() * per_rank, (_dist.rank() + 1) * per_rank)


def _wrap_data_parallel(model: nn.Module, world: int) -> nn.Module:
    """``DistributedDataParallel(model)`` in a multi-process run (gradients averaged over ranks), else ``model``."""
    if world == 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _save(out: Path, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, generator: torch.Generator,
          meta: dict[str, Any], step: int, losses: list[float]) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    for i, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            tensors[f"optim.{i}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
    tensors["rng_state"] = generator.get_state()
    # a thinned loss history keeps the file small
    save_checkpoint(out, tensors, {**meta, "step": step, "losses": losses[:: max(1, len(losses) // 200)][-200:]})


def _load_state(model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state = opt.state_dict()
    for i in range(len(state["param_groups"][0]["params"])):
        entries = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"optim.{i}.")}
        if entries:
            state["state"][i] = entries
    opt.load_state_dict(state)


def load_ncsnpp(path: str | os.PathLike, *, device: torch.device | str = "cpu", ema: bool = True
                ) -> tuple[NCSNpp, dict[str, Any]]:
    """The trained network (EMA weights by default) and its provenance record."""
    tensors, meta = load_checkpoint(path, device=device)
    if meta.get("kind") != "ncsnpp":
        raise ValueError(f"{path} holds a {meta.get('kind')!r} model, not a scalar NCSN++ score network")
    dtype = getattr(torch, meta.get("dtype", "float32"))
    model = NCSNpp(NCSNppConfig.from_dict(meta["config"]), sde_from_dict(meta["sde"]),
                   generator=torch.Generator().manual_seed(0), dtype=dtype, device=device)
    prefix = "ema." if ema else "model."
    model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return model.eval().requires_grad_(False), meta


__all__ = ["TrainConfig", "TrainReport", "dsm_loss", "load_ncsnpp", "train_ncsnpp", "math"]

r"""The one run loop of lgdiff: a Markov chain (any kernel: HMC, heatbath, MAALA, independence samplers, raw
diffusion draws) recorded in an ensemble file, resumable bit for bit after a kill, on one process or split into
independently seeded blocks over the ranks of a ``torchrun`` launch (docs/distributed.md). ``lgdiff generate`` and
``lgdiff sample`` both run through :func:`run_ensemble`.

**Ordinary run** (``blocks=None``, :func:`generate_ensemble`): one generator seeded with ``seed`` drives all chains.

**Blocks** (``blocks=K``, :func:`generate_split_ensemble`). A run with seed ``s``, ``C`` chains and ``K`` blocks
consists of K independent Markov chains of ``C / K`` configurations each: block ``b`` runs with the generator seeded
``block_seed(s, b)`` (`lgdiff._dist.block_seed`), and chains ``[b C/K, (b+1) C/K)`` of the file are its chains.
How the blocks are placed does not matter: ``W`` ranks (``K`` a multiple of ``W``) run blocks ``[r K/W, (r+1) K/W)``
each, and one process runs them all (``--blocks K``); the files agree bit for bit (tests/dist), apart from the
provenance (``created``, ``command``). A step-size adaptation during thermalisation (MAALA) averages the acceptance
over all blocks (an all-reduce across ranks), so every block runs the same tuned kernel.

**File.** Chain-defining settings ``run.therm``/``run.every`` (and for blocks ``run.blocks = K``,
``run.block_seeds``) are recorded; ``seed`` and ``chains`` are those of the whole run. ``rng_state`` is the
concatenation over blocks (block order, K equal parts) of each block's *resume state*: its generator state, followed,
for kernels that carry state beyond the configurations (independence samplers: the log importance weight of each
chain's current configuration), by that state as float64 bytes (:func:`pack_resume`). A file is resumed by a run with
the same K, on any number of processes that divides K.

**Reductions.** After every kept step rank 0 gathers (``torch.distributed.gather``) the configurations, the
acceptances and the resume states of every block, in block order, and appends them; other ranks write nothing.
Rank 0 opens the file first and sends every rank its blocks' part of the last record to resume from.
"""

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import torch
import torch.distributed as dist
from torch import Tensor

from .. import _dist
from .._fields.links import LinkField
from .._fields.scalar import Field
from .._io.ensemble import Ensemble, EnsembleError, EnsembleMetadata, EnsembleWriter, JSONScalar, restore_generator
from .._samplers.base import AbstractKernel, StepSizeAdaptation, run_chain

State = Field | LinkField


# ---- resume states ------------------------------------------------------------------------------------

def pack_resume(rng_state: Tensor, carry: Mapping[str, Tensor]) -> Tensor:
    """One block's resume state: the generator state followed by the carried per-chain tensors (sorted by name,
    float64 bytes). Without a carry it is the generator state itself."""
    if not carry:
        return rng_state
    parts = [carry[k].detach().to("cpu", torch.float64).reshape(-1) for k in sorted(carry)]
    return torch.cat([rng_state.to("cpu"), torch.cat(parts).view(torch.uint8)])


def unpack_resume(blob: Tensor, rng_size: int, keys: tuple[str, ...], chains: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Inverse of :func:`pack_resume` for a block of ``chains`` chains whose kernel carries ``keys``."""
    want = rng_size + 8 * chains * len(keys)
    if blob.numel() != want:
        raise EnsembleError(f"the saved resume state has {blob.numel()} bytes; this run's kernel needs {want} (a "
                            f"generator state of {rng_size} bytes and {len(keys)} float64 value(s) per chain): the "
                            f"file was written by another kernel or device type")
    rng = blob[:rng_size].clone()  # set_state on a view crashes torch: give it its own storage
    values = blob[rng_size:].clone().view(torch.float64).reshape(len(keys), chains)
    return rng, {k: values[i].clone() for i, k in enumerate(sorted(keys))}


# ---- ranks and blocks -----------------------------------------------------------------------------------

def _blocks_of_rank(blocks: int) -> range:
    world, rank = _dist.world_size(), _dist.rank()
    if blocks % world:
        raise ValueError(f"--blocks {blocks} must be a multiple of the number of processes ({world}): every rank "
                         f"runs the same number of blocks. Use --blocks {world} or launch a divisor of {blocks} "
                         f"processes")
    per_rank = blocks // world
    return range(rank * per_rank, (rank + 1) * per_rank)


def _gather_blocks(local: Tensor) -> Tensor | None:
    """The concatenation over ranks (rank order = block order) of ``local`` on rank 0; ``None`` on other ranks."""
    if _dist.world_size() == 1:
        return local
    wire = torch.view_as_real(local) if local.is_complex() else local  # gloo has no complex types
    wire = wire.contiguous()
    parts = [torch.empty_like(wire) for _ in range(_dist.world_size())] if _dist.is_main() else None
    dist.gather(wire, parts, dst=0)
    if parts is None:
        return None
    out = torch.cat(parts)
    return torch.view_as_complex(out) if local.is_complex() else out


def _mean_over_ranks(value: float) -> float:
    if _dist.world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0]) / _dist.world_size()


@attrs.frozen
class _Opened:
    """What rank 0 learns on opening the file, broadcast to every rank: an error message, or where to resume
    (every block's part of the last record and its resume state; ``states is None`` for a new file)."""

    error: str | None = None
    n_records: int = 0
    index: int = -1
    states: list[State] | None = None
    resume: list[Tensor] | None = None


def _open_on_main(path: str | os.PathLike, meta: EnsembleMetadata, flush_every: int, blocks: int
                  ) -> tuple[EnsembleWriter | None, _Opened]:
    """Rank 0 opens (or continues) the file and tells every rank what it found (`_Opened`); an error found by
    rank 0 is raised on every rank, so that no rank waits forever for the others."""
    writer, opened = None, _Opened()
    if _dist.is_main():
        try:
            writer = EnsembleWriter.open(path, meta, flush_every=flush_every)
            point = writer.resume_state(device="cpu")
            if point is not None:
                if point.rng_state.numel() % blocks:
                    raise ValueError(f"{path}: its rng_state does not split into {blocks} resume states; the "
                                     f"file was not written by a {blocks}-block run")
                per_block = point.state.batch // blocks
                opened = _Opened(n_records=point.n_records, index=point.index,
                                 states=[point.state[b * per_block:(b + 1) * per_block] for b in range(blocks)],
                                 resume=[part.clone() for part in point.rng_state.chunk(blocks)])
        except ValueError as e:  # EnsembleError included
            if writer is not None:
                writer.close()
                writer = None
            opened = _Opened(error=str(e))
    if _dist.world_size() > 1:
        message = [opened]
        dist.broadcast_object_list(message, src=0)
        opened = message[0]
    if opened.error is not None:
        if writer is not None:
            writer.close()
        raise EnsembleError(opened.error)
    return writer, opened


# ---- the run loop ---------------------------------------------------------------------------------------

def run_ensemble(path: str | os.PathLike, kernel: AbstractKernel, initial: State | Callable[[torch.Generator], State],
                 *, blocks: int | None, theory: str, params: Mapping[str, JSONScalar], seed: int, n: int,
                 therm: int = 0, every: int = 1, device: torch.device | str = "cpu", flush_every: int = 1,
                 command: str | None = None, progress: Callable[[int], None] | None = None,
                 adapt: StepSizeAdaptation | None = None,
                 settings: Mapping[str, JSONScalar] | None = None) -> Ensemble | None:
    """Run ``kernel`` and record ``n`` records in ``path``, or continue the file if it exists (module docstring).

    A fresh run builds each block's chains with ``initial(generator)`` (or takes ``initial`` as given; for a
    diffusion sampler, the denoised start), makes them the kernel's chain state (``kernel.init``: an independence
    sampler starts from its first proposal), thermalises ``therm`` steps (tuning the kernel's step size with
    ``adapt``, then freezing it) and records every ``every``-th state. If ``path`` holds records of the same run
    (same metadata, including ``run.therm``/``run.every`` and the tuned step), it continues from the last record
    with the saved resume state: an interrupted and resumed run gives bit for bit the file of an uninterrupted one,
    and rerunning a finished command does nothing. ``n`` is the total wanted, so a larger ``n`` extends an
    ensemble. ``settings`` are extra provenance (e.g. the model file and its hash). ``progress`` counts the steps
    of one block (the first of rank 0).

    **Returns:** the ensemble loaded from the file on rank 0, ``None`` on other ranks.
    """
    if n < 1 or therm < 0 or every < 1 or (blocks is not None and blocks < 1):
        raise ValueError(f"an ensemble run needs n >= 1, therm >= 0, every >= 1, blocks >= 1; got n={n}, "
                         f"therm={therm}, every={every}, blocks={blocks}")
    k_blocks = 1 if blocks is None else blocks
    mine = _blocks_of_rank(k_blocks)
    seeds = [seed] if blocks is None else [_dist.block_seed(seed, b) for b in range(k_blocks)]
    generators = [torch.Generator(device=device).manual_seed(seeds[b]) for b in mine]
    extra: dict[str, JSONScalar] = {"run.therm": therm, "run.every": every}
    if blocks is not None:
        extra |= {"run.blocks": blocks, "run.block_seeds": ",".join(map(str, seeds))}
    if adapt is not None:
        extra["run.adapt_target"] = adapt.target
    extra |= dict(settings or {})
    main_progress = progress if _dist.is_main() else None

    existing = Ensemble.load(path) if Path(path).exists() else None
    chains: list | None = None
    tuned = 0
    if existing is not None and existing.n_records:
        if adapt is not None and "step_size" in existing.metadata.settings:
            kernel = adapt.restore(kernel, existing.metadata.settings)
        like = existing.record(existing.n_records - 1)
        per_block = like.batch // k_blocks
        like = like[:per_block]
    else:
        states = [initial(g) if callable(initial) else initial.to(device=device) for g in generators]
        chains = [kernel.init(s, generator=g) for s, g in zip(states, generators, strict=True)]
        if adapt is not None:
            kernel, chains = adapt.tune_blocks(kernel, chains, generators, steps=therm, progress=main_progress,
                                               reduce=_mean_over_ranks)
            tuned, therm = therm, 0
        like = kernel.config(chains[0])
        per_block = like.batch
    meta = EnsembleMetadata.for_run(like, kernel, theory=theory, params=params, seed=seed, command=command)
    meta = attrs.evolve(meta, chains=per_block * k_blocks, settings={**meta.settings, **extra})
    writer, opened = _open_on_main(path, meta, flush_every, k_blocks)
    start = tuned  # the thermalisation steps that tuned the kernel count in the record indices
    if opened.states is not None and opened.resume is not None:
        rng_size = generators[0].get_state().numel()
        chains = []
        for g, b in zip(generators, mine, strict=True):
            rng, carry = unpack_resume(opened.resume[b], rng_size, kernel.carry_keys, per_block)
            restore_generator(g, rng)
            chains.append(kernel.restore(opened.states[b].to(device=device), carry))
        start, therm = opened.index + 1, 0
    assert chains is not None
    todo = max(n - opened.n_records, 0)
    runs = [run_chain(kernel, chain, n=todo, generator=g, therm=therm, every=every, start=start,
                      progress=main_progress if i == 0 else None)
            for i, (chain, g) in enumerate(zip(chains, generators, strict=True))]
    with writer if writer is not None else contextlib.nullcontext():
        for steps in zip(*runs, strict=True):
            local = steps[0].state.with_data(torch.cat([s.state.data for s in steps]))
            data = _gather_blocks(local.data)
            acceptance = _gather_blocks(torch.cat([s.acceptance.to(torch.float64) for s in steps]))
            resume = _gather_blocks(torch.cat([pack_resume(g.get_state(), s.carry)
                                               for s, g in zip(steps, generators, strict=True)]))
            if writer is not None:
                assert data is not None and acceptance is not None and resume is not None
                writer.append(local.with_data(data), steps[0].index, acceptance, resume)
    if writer is None:
        return None
    return Ensemble.load(path)


def generate_ensemble(path: str | os.PathLike, kernel: AbstractKernel, initial: State | Callable[[torch.Generator], State],
                      *, theory: str, params: Mapping[str, JSONScalar], seed: int, n: int, therm: int = 0,
                      every: int = 1, device: torch.device | str = "cpu", flush_every: int = 1,
                      command: str | None = None, progress: Callable[[int], None] | None = None,
                      adapt: StepSizeAdaptation | None = None,
                      settings: Mapping[str, JSONScalar] | None = None) -> Ensemble:
    """The ordinary run of :func:`run_ensemble`: one generator ``torch.Generator(device).manual_seed(seed)``
    for all chains (module docstring)."""
    out = run_ensemble(path, kernel, initial, blocks=None, theory=theory, params=params, seed=seed, n=n,
                       therm=therm, every=every, device=device, flush_every=flush_every, command=command,
                       progress=progress, adapt=adapt, settings=settings)
    assert out is not None  # one process writes
    return out


def generate_split_ensemble(path: str | os.PathLike, kernel: AbstractKernel,
                            initial: Callable[[torch.Generator], State], *, blocks: int, theory: str,
                            params: Mapping[str, JSONScalar], seed: int, n: int, therm: int = 0, every: int = 1,
                            device: torch.device | str = "cpu", flush_every: int = 1, command: str | None = None,
                            progress: Callable[[int], None] | None = None, adapt: StepSizeAdaptation | None = None,
                            settings: Mapping[str, JSONScalar] | None = None) -> Ensemble | None:
    """The block run of :func:`run_ensemble` (module docstring): ``initial(generator)`` builds one block's chains
    (``C / blocks`` of them). **Returns:** the ensemble on rank 0, ``None`` on other ranks."""
    return run_ensemble(path, kernel, initial, blocks=blocks, theory=theory, params=params, seed=seed, n=n,
                        therm=therm, every=every, device=device, flush_every=flush_every, command=command,
                        progress=progress, adapt=adapt, settings=settings)


__all__ = ["generate_ensemble", "generate_split_ensemble", "pack_resume", "run_ensemble", "unpack_resume"]

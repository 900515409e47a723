r"""An ensemble whose chains are split into independently seeded blocks, run on one process or over the ranks
of a ``torchrun`` launch, and written by rank 0 as one file (docs/distributed.md).

**Definition.** A run with seed ``s``, ``C`` chains and ``K`` blocks consists of K independent Markov chains of
``C / K`` configurations each: block ``b`` is *exactly* the ordinary single-block run (`generate_ensemble`) with
seed ``block_seed(s, b)`` (`lgdiff._dist.block_seed`) and ``C / K`` chains, and chains ``[b C/K, (b+1) C/K)``
of the file are its chains. How the blocks are placed does not matter: ``W`` ranks (``K`` a multiple of ``W``)
run blocks ``[r K/W, (r+1) K/W)`` each, and one process runs them all (``lgdiff generate --blocks K``); the
files agree bit for bit (tests/dist/test_split_generate.py), apart from the provenance (``created``, ``command``).

**File.** Chain-defining settings ``run.blocks = K`` and ``run.block_seeds`` (the K seeds, comma-separated)
join ``run.therm``/``run.every``; ``seed`` and ``chains`` are those of the whole run. ``rng_state`` is the
concatenation of the K generator states (K equal parts, block order). A file is resumed by a run with the same
K, on any number of processes that divides K.

**Reductions.** After every kept step rank 0 gathers (``torch.distributed.gather``) the configurations, the
acceptances and the generator states of every block, in block order, and appends them; other ranks write
nothing. Rank 0 opens the file first and sends every rank its blocks' part of the last record to resume from.
"""

import contextlib
import os
from collections.abc import Callable, Mapping

import attrs
import torch
import torch.distributed as dist
from torch import Tensor

from .. import _dist
from .._fields.links import LinkField
from .._fields.scalar import Field
from .._io.ensemble import Ensemble, EnsembleMetadata, EnsembleWriter, JSONScalar
from .._samplers.base import AbstractKernel, run_chain

State = Field | LinkField


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


@attrs.frozen
class _Opened:
    """What rank 0 learns on opening the file, broadcast to every rank: an error message, or where to resume
    (every block's part of the last record and its generator state; ``states is None`` for a new file)."""

    error: str | None = None
    n_records: int = 0
    index: int = -1
    states: list[State] | None = None
    rng_states: list[Tensor] | None = None


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
                    raise ValueError(f"{path}: its rng_state does not split into {blocks} generator states; the "
                                     f"file was not written by a {blocks}-block run")
                per_block = point.state.batch // blocks
                opened = _Opened(n_records=point.n_records, index=point.index,
                                 states=[point.state[b * per_block:(b + 1) * per_block] for b in range(blocks)],
                                 # set_state on a view of the concatenation crashes torch: give each its storage
                                 rng_states=[part.clone() for part in point.rng_state.chunk(blocks)])
        except ValueError as e:  # EnsembleError included
            opened = _Opened(error=str(e))
    if _dist.world_size() > 1:
        message = [opened]
        dist.broadcast_object_list(message, src=0)
        opened = message[0]
    if opened.error is not None:
        if writer is not None:
            writer.close()
        raise ValueError(opened.error)
    return writer, opened


def generate_split_ensemble(path: str | os.PathLike, kernel: AbstractKernel,
                            initial: Callable[[torch.Generator], State], *, blocks: int, theory: str,
                            params: Mapping[str, JSONScalar], seed: int, n: int, therm: int = 0, every: int = 1,
                            device: torch.device | str = "cpu", flush_every: int = 1, command: str | None = None,
                            progress: Callable[[int], None] | None = None) -> Ensemble | None:
    """Run ``blocks`` independently seeded blocks of chains (module docstring) on the ranks of the current
    process group (or on this process alone) and record ``n`` records in ``path`` from rank 0.

    ``initial(generator)`` builds one block's chains (``C / blocks`` of them) from the block's generator. A file
    that exists is continued like `generate_ensemble` does. ``progress`` counts the updates of one block (the
    first block of rank 0). **Returns:** the ensemble loaded from the file on rank 0, ``None`` on other ranks.
    """
    if n < 1 or therm < 0 or every < 1 or blocks < 1:
        raise ValueError(f"generate_split_ensemble needs n >= 1, therm >= 0, every >= 1, blocks >= 1; got n={n}, "
                         f"therm={therm}, every={every}, blocks={blocks}")
    mine = _blocks_of_rank(blocks)
    seeds = [_dist.block_seed(seed, b) for b in range(blocks)]
    generators = [torch.Generator(device=device).manual_seed(seeds[b]) for b in mine]
    states = [initial(g) for g in generators]
    chains = states[0].batch * blocks
    meta = EnsembleMetadata.for_run(states[0], kernel, theory=theory, params=params, seed=seed, command=command)
    meta = attrs.evolve(meta, chains=chains, settings={**meta.settings, "run.therm": therm, "run.every": every,
                                                       "run.blocks": blocks,
                                                       "run.block_seeds": ",".join(map(str, seeds))})
    writer, opened = _open_on_main(path, meta, flush_every, blocks)
    start = 0
    if opened.states is not None and opened.rng_states is not None:
        states = [opened.states[b].to(device=device) for b in mine]
        for g, b in zip(generators, mine, strict=True):
            g.set_state(opened.rng_states[b])
        start, therm = opened.index + 1, 0
    todo = max(n - opened.n_records, 0)
    chains_of = [run_chain(kernel, state, n=todo, generator=g, therm=therm, every=every, start=start,
                           progress=progress if i == 0 and _dist.is_main() else None)
                 for i, (state, g) in enumerate(zip(states, generators, strict=True))]
    with writer if writer is not None else contextlib.nullcontext():
        for steps in zip(*chains_of, strict=True):
            local = steps[0].state.with_data(torch.cat([s.state.data for s in steps]))
            data = _gather_blocks(local.data)
            acceptance = _gather_blocks(torch.cat([s.acceptance.to(torch.float64) for s in steps]))
            rng = _gather_blocks(torch.cat([g.get_state() for g in generators]))
            if writer is not None:
                assert data is not None and acceptance is not None and rng is not None
                writer.append(local.with_data(data), steps[0].index, acceptance, rng)
    if writer is None:
        return None
    return Ensemble.load(path)


__all__ = ["generate_split_ensemble"]

r"""Multi-process runs under ``torchrun``: launch detection, the process group, ranks and seed streams.

``torchrun --nproc-per-node W ...`` starts W copies of a program and tells each its place through the
environment: ``WORLD_SIZE`` (W), ``RANK`` (0..W-1, global), ``LOCAL_RANK`` (the index on this node, which picks
the GPU) and ``MASTER_ADDR``/``MASTER_PORT`` (the rendezvous). A plain ``python``/``lgdiff`` start sets none of
them and is a world of one: every helper here then answers rank 0 of 1 and needs no process group, so library
code calls them unconditionally.

**Seed streams.** Block (or rank) ``r`` of a run with seed ``s`` draws from the generator seeded with

    ``block_seed(s, r) = SeedSequence(entropy = s mod 2^64, spawn_key = (r,)).generate_state(1, uint64)[0]``

(numpy's ``SeedSequence``, built for exactly this: independent child streams of one root seed). ``s + r`` is
what one writes first, and it collides: block 1 of the run with seed 0 would repeat block 0 of the run with
seed 1. The hashed child seeds of distinct ``(s, r)`` differ unless two 64-bit hashes collide (probability about
``2^-64`` per pair), and they do not depend on the number of blocks, so block ``r`` is the same stream in every
run that has one.
"""

import contextlib
import datetime
import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist

_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name} must be an integer (torchrun sets it); got {value!r}. "
                         f"Unset {', '.join(_ENV)} for a single-process run") from None


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment)."""
    present = [name for name in _ENV if name in os.environ]
    if not present:
        return False
    if len(present) != len(_ENV):
        missing = sorted(set(_ENV) - set(present))
        raise ValueError(f"a torchrun launch sets {', '.join(_ENV)}; this environment has {', '.join(present)} "
                         f"but not {', '.join(missing)}. Start with torchrun, or unset them")
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"torchrun environment out of range: RANK={rank}, WORLD_SIZE={world} (need 0 <= RANK < "
                         f"WORLD_SIZE)")
    return world > 1


def world_size() -> int:
    """The number of processes of this run (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without an initialised process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the process that writes files and prints."""
    return rank() == 0


def device_for_rank(device: torch.device | str) -> torch.device:
    """The device of this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun (one GPU per process);
    any other device, or an explicit ``cuda:i``, is kept."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", _env_int("LOCAL_RANK"))
    return device


@contextlib.contextmanager
def process_group(device: torch.device | str = "cpu", *, timeout_s: float = 600.0) -> Iterator[int]:
    """Join the torchrun process group for the duration of the block; yields the world size.

    The backend is ``nccl`` when ``device`` is a CUDA device and ``gloo`` otherwise. Without a torchrun launch,
    or when a group is already initialised (by the caller, or by a test harness), nothing is set up or torn
    down. The group is destroyed on exit, also when the body raises.
    """
    if (dist.is_available() and dist.is_initialized()) or not launched_by_torchrun():
        yield world_size()
        return
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run in a single process (plain lgdiff)")
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dev = device_for_rank(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield dist.get_world_size()
    finally:
        dist.destroy_process_group()


def block_seed(seed: int, block: int) -> int:
    """The seed of block (rank) ``block`` of a run with seed ``seed``: a ``SeedSequence`` child (module docstring).

    >>> block_seed(0, 1) == block_seed(0, 1) != block_seed(1, 0)
    True
    """
    if block < 0:
        raise ValueError(f"block_seed needs a block index >= 0; got {block}")
    sequence = np.random.SeedSequence(entropy=seed % 2**64, spawn_key=(block,))
    # torch seeds are 64-bit; keep it below 2^63 so that it prints and round-trips through JSON as a plain int
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (every rank gets it); the tensor itself in a world of one."""
    if world_size() == 1:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def barrier() -> None:
    """Wait for every rank (no-op in a world of one)."""
    if world_size() > 1:
        dist.barrier()


__all__ = ["barrier", "block_seed", "device_for_rank", "is_main", "launched_by_torchrun", "mean_over_ranks",
           "process_group", "rank", "world_size"]

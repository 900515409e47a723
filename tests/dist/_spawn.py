"""Start W CPU processes joined in a gloo process group on localhost (the harness of tests/dist)."""

import os
import socket
import subprocess
import sys
import typing
from pathlib import Path
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn: Callable[..., None], args: tuple) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # as tests/conftest.py does for the parent process
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., None], *args: object, world: int = 2) -> None:
    """Run ``fn(*args)`` on ``world`` spawned processes inside one gloo group; an exception on any rank fails."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(world, free_port(), fn, args), nprocs=world, join=True)


def torchrun(command: str, args: list[str], out: Path, *, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc-per-node 2 -m cli.main -- COMMAND ARGS --out OUT`` on localhost, one thread per rank."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "cli.main", "--", command, *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def assert_same_records(a: typing.Any, b: typing.Any) -> None:
    """Two ensembles hold the same records bit for bit, the same resume state and the same run."""
    assert torch.equal(a.configs().data, b.configs().data)  # bit for bit
    assert torch.equal(a.index, b.index) and torch.equal(a.acceptance, b.acceptance)
    assert torch.equal(a.rng_state, b.rng_state)
    assert a.metadata.differences(b.metadata) == {}

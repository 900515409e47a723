"""lgdiff._dist without a process group: launch detection, device choice, seed streams."""

import doctest

import numpy as np
import pytest
import torch

from lgdiff import _dist

_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_plain_start_is_a_world_of_one(no_torchrun):
    assert not _dist.launched_by_torchrun()
    with _dist.process_group("cpu") as world:  # sets nothing up
        assert world == 1 and _dist.rank() == 0 and _dist.is_main()
        x = torch.tensor([1.5, -2.0])
        assert _dist.mean_over_ranks(x) is x
        _dist.barrier()


def test_torchrun_environment_is_read_and_checked(no_torchrun):
    no_torchrun.setenv("WORLD_SIZE", "1")
    no_torchrun.setenv("RANK", "0")
    no_torchrun.setenv("LOCAL_RANK", "0")
    assert not _dist.launched_by_torchrun()  # torchrun --nproc-per-node 1: nothing to distribute
    no_torchrun.setenv("WORLD_SIZE", "2")
    assert _dist.launched_by_torchrun()
    no_torchrun.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK=2, WORLD_SIZE=2 \(need 0 <= RANK < WORLD_SIZE\)"):
        _dist.launched_by_torchrun()
    no_torchrun.setenv("RANK", "one")
    with pytest.raises(ValueError, match="RANK must be an integer .* got 'one'"):
        _dist.launched_by_torchrun()
    no_torchrun.delenv("LOCAL_RANK")
    with pytest.raises(ValueError, match="but not LOCAL_RANK"):
        _dist.launched_by_torchrun()


def test_cuda_becomes_the_local_rank_gpu(no_torchrun):
    assert _dist.device_for_rank("cuda") == torch.device("cuda")
    no_torchrun.setenv("LOCAL_RANK", "1")
    assert _dist.device_for_rank("cuda") == torch.device("cuda", 1)
    assert _dist.device_for_rank("cuda:0") == torch.device("cuda", 0)  # an explicit GPU is kept
    assert _dist.device_for_rank("cpu") == torch.device("cpu")


def test_block_seeds_are_seed_sequence_children_and_do_not_collide():
    # the documented formula, written out with numpy
    want = int(np.random.SeedSequence(entropy=7, spawn_key=(1,)).generate_state(1, np.uint64)[0]) >> 1
    assert _dist.block_seed(7, 1) == want
    seeds = {(s, b): _dist.block_seed(s, b) for s in range(-3, 40) for b in range(8)}
    assert len(set(seeds.values())) == len(seeds)  # s + b would give 43 + 7 values for 344 pairs
    assert all(0 <= v < 2**63 for v in seeds.values())
    torch.Generator().manual_seed(seeds[(-3, 7)])  # a valid torch seed
    with pytest.raises(ValueError, match="block index >= 0; got -1"):
        _dist.block_seed(0, -1)


def test_docstring_examples_run():
    result = doctest.testmod(_dist)
    assert result.attempted > 0 and result.failed == 0
